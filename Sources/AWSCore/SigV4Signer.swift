import Foundation

/// AWS Signature Version 4, header form.
///
/// Canonical request rules (as in the AWS SigV4 test suite): the path is normalised (dot
/// segments and repeated slashes removed) and each segment URI-encoded once more (so "%20"
/// on the wire signs as "%2520") - except for S3, whose path is signed exactly as sent;
/// query parameters are decoded, re-encoded with the AWS rules and sorted by name then value;
/// header names are lower-cased and sorted, values trimmed with inner runs of spaces folded to
/// one, folded (multi-line) values and repeated headers joined with ','.
public struct SigV4Signer: Sendable {
    public var credentials: AWSCredentials
    public var region: String
    /// The signing name ("dynamodb", "s3", "ivs" - also for ivs-realtime).
    public var service: String
    public var doubleEncodePath: Bool
    public var normalizePath: Bool

    public static let algorithm = "AWS4-HMAC-SHA256"
    public static let unsignedPayload = "UNSIGNED-PAYLOAD"
    public static let emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

    /// Never signed: they are added or changed on the way (proxies, curl) or are the signature itself.
    static let unsignedHeaders: Set<String> = [
        "authorization", "user-agent", "x-amzn-trace-id", "expect", "connection", "content-length",
        "transfer-encoding", "keep-alive", "te", "upgrade", "proxy-authorization", "proxy-connection",
    ]

    public init(credentials: AWSCredentials, region: String, service: String,
                doubleEncodePath: Bool = true, normalizePath: Bool = true) {
        self.credentials = credentials
        self.region = region
        self.service = service
        self.doubleEncodePath = doubleEncodePath
        self.normalizePath = normalizePath
    }

    /// S3 signs the path as sent: no normalisation, no second encoding.
    public static func s3(credentials: AWSCredentials, region: String) -> SigV4Signer {
        SigV4Signer(credentials: credentials, region: region, service: "s3", doubleEncodePath: false, normalizePath: false)
    }

    public struct Signature: Sendable {
        public var canonicalRequest: String
        public var stringToSign: String
        public var signature: String
        public var signedHeaders: String
        public var authorization: String
        /// The input headers with X-Amz-Date, X-Amz-Security-Token, X-Amz-Content-Sha256 (when asked)
        /// and Authorization set.
        public var headers: HTTPHeaders
    }

    /// Signs request parts. `path` is the path as sent; `query` the raw text after '?';
    /// `headers` must include Host. `payloadHash` is the hex SHA-256 of the body or `unsignedPayload`.
    public func sign(method: String, path: String, query: String?, headers: HTTPHeaders, payloadHash: String,
                     date: Date, addContentSHA256Header: Bool = false) -> Signature {
        let (amzDate, day) = Self.timestamps(date)
        var h = headers
        h.remove("Authorization")
        h["X-Amz-Date"] = amzDate
        if let token = credentials.sessionToken, !token.isEmpty {
            h["X-Amz-Security-Token"] = token
        }
        if addContentSHA256Header { h["X-Amz-Content-Sha256"] = payloadHash }

        let (canonicalHeaders, signedHeaders) = Self.canonicalHeaders(h)
        let canonicalRequest = [
            method.uppercased(),
            canonicalURI(path),
            Self.canonicalQuery(query),
            canonicalHeaders,
            signedHeaders,
            payloadHash,
        ].joined(separator: "\n")
        let scope = "\(day)/\(region)/\(service)/aws4_request"
        let stringToSign = [Self.algorithm, amzDate, scope, AWSCrypto.sha256Hex(canonicalRequest)].joined(separator: "\n")
        let signature = AWSCrypto.hex(AWSCrypto.hmacSHA256(key: signingKey(day: day), data: Array(stringToSign.utf8)))
        let authorization = "\(Self.algorithm) Credential=\(credentials.accessKeyId)/\(scope), SignedHeaders=\(signedHeaders), Signature=\(signature)"
        h["Authorization"] = authorization
        return Signature(canonicalRequest: canonicalRequest, stringToSign: stringToSign, signature: signature,
                         signedHeaders: signedHeaders, authorization: authorization, headers: h)
    }

    /// Signs an HTTP request in place: sets Host from the URL, hashes the body (or declares
    /// UNSIGNED-PAYLOAD), adds the X-Amz-* headers and Authorization.
    @discardableResult
    public func sign(_ request: inout HTTPRequest, date: Date = Date(), unsignedPayload: Bool = false,
                     addContentSHA256Header: Bool = false) throws(AWSError) -> Signature {
        guard let url = HTTPURL(request.url) else {
            throw AWSError(kind: .configuration, code: "InvalidURL", message: "cannot sign: the URL is not absolute http(s)")
        }
        var headers = request.headers
        headers["Host"] = url.hostHeader
        let payloadHash = unsignedPayload ? Self.unsignedPayload : AWSCrypto.sha256Hex(request.body)
        let s = sign(method: request.method, path: url.path, query: url.query, headers: headers,
                     payloadHash: payloadHash, date: date, addContentSHA256Header: addContentSHA256Header)
        request.headers = s.headers
        return s
    }

    public func signingKey(day: String) -> [UInt8] {
        var k = AWSCrypto.hmacSHA256(key: Array("AWS4\(credentials.secretAccessKey)".utf8), data: Array(day.utf8))
        k = AWSCrypto.hmacSHA256(key: k, data: Array(region.utf8))
        k = AWSCrypto.hmacSHA256(key: k, data: Array(service.utf8))
        return AWSCrypto.hmacSHA256(key: k, data: Array("aws4_request".utf8))
    }

    // MARK: - canonical parts

    public func canonicalURI(_ path: String) -> String {
        let p = path.isEmpty ? "/" : path
        if !doubleEncodePath && !normalizePath { return p }
        var segments = p.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        if normalizePath {
            var out: [String] = []
            for s in segments {
                switch s {
                case "", ".": continue
                case "..": if !out.isEmpty { out.removeLast() }
                default: out.append(s)
                }
            }
            let trailing = p.hasSuffix("/") && !out.isEmpty
            segments = [""] + out + (trailing ? [""] : [])
            if out.isEmpty { return "/" }
        }
        if doubleEncodePath {
            segments = segments.map { Self.uriEncode($0, encodeSlash: true) }
        }
        let joined = segments.joined(separator: "/")
        return joined.isEmpty ? "/" : joined
    }

    public static func canonicalQuery(_ query: String?) -> String {
        guard let query, !query.isEmpty else { return "" }
        var pairs: [(String, String)] = []
        for item in query.split(separator: "&", omittingEmptySubsequences: true) {
            let key: Substring, value: Substring
            if let eq = item.firstIndex(of: "=") {
                key = item[..<eq]
                value = item[item.index(after: eq)...]
            } else {
                key = item
                value = ""
            }
            pairs.append((uriEncode(percentDecode(key), encodeSlash: true), uriEncode(percentDecode(value), encodeSlash: true)))
        }
        pairs.sort { $0.0 != $1.0 ? $0.0 < $1.0 : $0.1 < $1.1 }
        return pairs.map { "\($0.0)=\($0.1)" }.joined(separator: "&")
    }

    /// "name:value\n" lines and the ';'-joined signed header names.
    static func canonicalHeaders(_ headers: HTTPHeaders) -> (String, String) {
        var order: [String] = []
        var values: [String: [String]] = [:]
        for h in headers {
            let name = h.name.lowercased()
            if unsignedHeaders.contains(name) { continue }
            if values[name] == nil { order.append(name) }
            values[name, default: []].append(canonicalValue(h.value))
        }
        let names = order.sorted()
        var text = ""
        for n in names {
            text += n + ":" + (values[n] ?? []).joined(separator: ",") + "\n"
        }
        return (text, names.joined(separator: ";"))
    }

    /// Trims, folds runs of blanks to one space; lines of a folded value are joined with ','.
    static func canonicalValue(_ value: String) -> String {
        let lines = value.split(whereSeparator: { $0 == "\n" || $0 == "\r" || $0 == "\r\n" })
        var parts: [String] = []
        for line in lines {
            var out = ""
            var pendingSpace = false
            for ch in line {
                if ch == " " || ch == "\t" {
                    pendingSpace = !out.isEmpty
                } else {
                    if pendingSpace { out.append(" ") }
                    pendingSpace = false
                    out.append(ch)
                }
            }
            if !out.isEmpty { parts.append(out) }
        }
        return parts.joined(separator: ",")
    }

    // MARK: - encoding helpers

    private static let hexUpper = Array("0123456789ABCDEF".utf8)

    /// AWS URI encoding: A-Z a-z 0-9 - . _ ~ kept, everything else %XX (upper-case hex, UTF-8).
    public static func uriEncode<S: StringProtocol>(_ text: S, encodeSlash: Bool) -> String {
        uriEncode(Array(text.utf8), encodeSlash: encodeSlash)
    }

    /// Decodes %XX escapes; malformed escapes are kept literally. Invalid UTF-8 results are
    /// kept as bytes, so re-encoding reproduces them.
    static func percentDecode<S: StringProtocol>(_ text: S) -> [UInt8] {
        let b = Array(text.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(b.count)
        var i = 0
        while i < b.count {
            if b[i] == UInt8(ascii: "%"), i + 2 < b.count,
               let hi = hexValue(b[i + 1]), let lo = hexValue(b[i + 2]) {
                out.append(hi << 4 | lo)
                i += 3
            } else {
                out.append(b[i])
                i += 1
            }
        }
        return out
    }

    static func uriEncode(_ bytes: [UInt8], encodeSlash: Bool) -> String {
        var out: [UInt8] = []
        for b in bytes {
            switch b {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.append(b)
            case UInt8(ascii: "/") where !encodeSlash:
                out.append(b)
            default:
                out.append(UInt8(ascii: "%"))
                out.append(hexUpper[Int(b >> 4)])
                out.append(hexUpper[Int(b & 0xF)])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }

    /// ("20150830T123600Z", "20150830") in UTC.
    public static func timestamps(_ date: Date) -> (String, String) {
        var t = time_t(date.timeIntervalSince1970.rounded(.down))
        var tm = tm()
        gmtime_r(&t, &tm)
        func pad(_ v: Int32, _ width: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        let day = pad(tm.tm_year + 1900, 4) + pad(tm.tm_mon + 1, 2) + pad(tm.tm_mday, 2)
        return (day + "T" + pad(tm.tm_hour, 2) + pad(tm.tm_min, 2) + pad(tm.tm_sec, 2) + "Z", day)
    }
}
