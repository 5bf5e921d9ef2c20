/// What GetObject wrote.
public struct S3ObjectInfo: Sendable, Equatable {
    public var bytes: Int
    public var contentType: String?
    public var eTag: String?
}

/// GetObject only (the worker reads tracklist files). Virtual-host addressing on AWS
/// (bucket.s3.region.amazonaws.com), path-style when an endpoint override is set or the bucket
/// name does not fit in a TLS host name; payload signed as UNSIGNED-PAYLOAD.
public struct S3Client: Sendable {
    public let client: AWSClient
    /// Total timeout for one download attempt, seconds.
    public var downloadTimeout: Double

    public init(client: AWSClient, downloadTimeout: Double = 300) {
        self.client = client
        self.downloadTimeout = downloadTimeout
    }

    /// Base URL and path of an object.
    public func location(bucket: String, key: String) throws(AWSError) -> (baseURL: String, path: String) {
        guard Self.isValidBucket(bucket) else {
            throw AWSError(kind: .configuration, code: "InvalidBucketName", message: "bucket name \"\(bucket.prefix(70))\" is not valid",
                           operation: "s3 GetObject")
        }
        guard !key.isEmpty, key.utf8.count <= 1024 else {
            throw AWSError(kind: .configuration, code: "InvalidKey", message: "object key is empty or longer than 1024 bytes",
                           operation: "s3 GetObject")
        }
        let encodedKey = SigV4Signer.uriEncode(key, encodeSlash: false)
        let endpoint = try client.environment.endpoint(for: .s3)
        // Dots break the wildcard certificate; upper case and '_' are not host names.
        let hostSafe = bucket.utf8.allSatisfy { ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2D }
        if endpoint.isOverride || !hostSafe {
            return (endpoint.url, "/\(bucket)/\(encodedKey)")
        }
        let host = "https://\(bucket).s3.\(client.environment.region).\(client.environment.dnsSuffix)"
        return (host, "/\(encodedKey)")
    }

    /// Downloads the object to `path` (atomically: the file appears only when complete).
    /// More than `maxBytes` fails with code "ResponseTooLarge"; a missing key with "NoSuchKey" (404).
    @discardableResult
    public func getObject(bucket: String, key: String, toFile path: String, maxBytes: Int) throws(AWSError) -> S3ObjectInfo {
        let loc = try location(bucket: bucket, key: key)
        let request = AWSRequest(service: .s3, operation: "GetObject", method: "GET", path: loc.path,
                                 unsignedPayload: true, baseURL: loc.baseURL, timeout: downloadTimeout)
        let response = try client.download(request, toFile: path, maxBytes: maxBytes)
        return S3ObjectInfo(bytes: response.downloadedBytes ?? 0, contentType: response.headers["Content-Type"],
                            eTag: response.headers["ETag"])
    }

    /// 3-63 of a-z 0-9 . - (upper case and '_' accepted for legacy buckets), no leading/trailing '.'/'-'.
    static func isValidBucket(_ b: String) -> Bool {
        guard (3...63).contains(b.utf8.count) else { return false }
        let ok = b.utf8.allSatisfy {
            ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2E || $0 == 0x2D || $0 == 0x5F
        }
        guard ok, let f = b.utf8.first, let l = b.utf8.last else { return false }
        return f != 0x2E && f != 0x2D && l != 0x2E && l != 0x2D
    }
}
