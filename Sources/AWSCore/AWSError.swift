import Foundation

/// Failure of an AWS call. `code` is the service's error code ("ConditionalCheckFailedException",
/// "NoSuchKey", "ThrottlingException"...) or, for failures before a response, one of this
/// package's ("NetworkError", "CredentialsError", "InvalidResponse", ...).
/// The description never holds request bodies, queries, headers or registered secrets.
public struct AWSError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// The service answered with an error status.
        case service
        /// No usable HTTP exchange (see `transport`).
        case transport
        /// No credentials could be had.
        case credentials
        /// A success status with a body this client could not use.
        case invalidResponse
        /// Region, endpoint, bucket or arguments unusable before anything was sent.
        case configuration
    }

    public var kind: Kind
    public var code: String
    public var message: String
    public var status: Int?
    public var isRetryable: Bool
    public var requestId: String?
    /// "service Operation", e.g. "dynamodb UpdateItem".
    public var operation: String
    public var transport: HTTPError?
    /// Attempts made before giving up.
    public var attempts: Int

    public init(kind: Kind, code: String, message: String, status: Int? = nil, isRetryable: Bool = false,
                requestId: String? = nil, operation: String = "", transport: HTTPError? = nil, attempts: Int = 1) {
        self.kind = kind
        self.code = code
        self.message = message
        self.status = status
        self.isRetryable = isRetryable
        self.requestId = requestId
        self.operation = operation
        self.transport = transport
        self.attempts = attempts
    }

    public var isConditionalCheckFailed: Bool { code == "ConditionalCheckFailedException" }
    public var isThrottling: Bool { Self.throttlingCodes.contains(code) || status == 429 }
    public var isNotFound: Bool {
        status == 404 || ["ResourceNotFoundException", "NoSuchKey", "NoSuchBucket", "NotFound"].contains(code)
    }
    public var isAccessDenied: Bool {
        status == 403 || ["AccessDeniedException", "AccessDenied", "UnrecognizedClientException"].contains(code)
    }
    /// The credentials used were expired: refetch them before trying again.
    public var isExpiredCredentials: Bool {
        ["ExpiredToken", "ExpiredTokenException", "RequestExpired", "TokenRefreshRequired"].contains(code)
    }

    public var description: String {
        var parts = [operation.isEmpty ? "AWS" : operation, "failed:", code]
        if let status { parts.append("(HTTP \(status))") }
        var text = parts.joined(separator: " ")
        if !message.isEmpty { text += ": " + message }
        if let requestId { text += " [request \(requestId)]" }
        if attempts > 1 { text += " after \(attempts) attempts" }
        return Secrets.redact(text)
    }

    static let throttlingCodes: Set<String> = [
        "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
        "TooManyRequestsException", "ProvisionedThroughputExceededException", "TransactionInProgressException",
        "RequestLimitExceeded", "BandwidthLimitExceeded", "RequestThrottled", "SlowDown", "PriorRequestNotComplete",
        "EC2ThrottledException", "ThrottledRequestException",
    ]
    static let transientCodes: Set<String> = [
        "RequestTimeout", "RequestTimeoutException", "InternalError", "InternalFailure", "InternalServerError",
        "ServiceUnavailable", "ServiceUnavailableException", "InternalServerException",
    ]

    // MARK: - decoding an error response

    /// Builds the error from a non-2xx response: JSON `__type` (text after '#'), the
    /// x-amzn-ErrorType header (text before ':'), or S3's XML `<Code>`; message likewise.
    public static func decode(_ response: HTTPResponse, operation: String) -> AWSError {
        var code: String?
        var message: String?
        if let t = response.headers["x-amzn-ErrorType"], !t.isEmpty {
            code = String(t.split(separator: ":", maxSplits: 1).first ?? Substring(t))
        }
        let body = response.body
        let firstByte = body.first { $0 != 0x20 && $0 != 0x0A && $0 != 0x0D && $0 != 0x09 }
        if firstByte == UInt8(ascii: "{"), let json = try? JSONValue.parse(body) {
            if code == nil {
                code = json["__type"]?.stringValue ?? json["code"]?.stringValue ?? json["Code"]?.stringValue
            }
            message = json["message"]?.stringValue ?? json["Message"]?.stringValue ?? json["errorMessage"]?.stringValue
        } else if firstByte == UInt8(ascii: "<") {
            let text = String(decoding: body.prefix(64 << 10), as: UTF8.self)
            if code == nil { code = xmlElement("Code", in: text) }
            message = xmlElement("Message", in: text)
        }
        if let c = code, let hash = c.lastIndex(of: "#") { code = String(c[c.index(after: hash)...]) }
        let finalCode = (code?.isEmpty == false ? code : nil) ?? Self.codeForStatus(response.status)
        let requestId = response.headers["x-amzn-RequestId"] ?? response.headers["x-amz-request-id"]
        var msg = message ?? ""
        if msg.count > 500 { msg = String(msg.prefix(500)) + "…" }
        let retryable = response.status >= 500 || response.status == 429
            || throttlingCodes.contains(finalCode) || transientCodes.contains(finalCode)
        return AWSError(kind: .service, code: finalCode, message: msg, status: response.status, isRetryable: retryable,
                        requestId: requestId, operation: operation)
    }

    static func codeForStatus(_ status: Int) -> String {
        switch status {
        case 400: "BadRequest"
        case 401: "Unauthorized"
        case 403: "Forbidden"
        case 404: "NotFound"
        case 429: "TooManyRequests"
        case 500: "InternalServerError"
        case 502: "BadGateway"
        case 503: "ServiceUnavailable"
        case 504: "GatewayTimeout"
        default: "HTTP\(status)"
        }
    }

    /// Text of the first <name>…</name>, entities decoded.
    static func xmlElement(_ name: String, in text: String) -> String? {
        guard let open = text.range(of: "<\(name)>"),
              let close = text.range(of: "</\(name)>", range: open.upperBound..<text.endIndex) else { return nil }
        return String(text[open.upperBound..<close.lowerBound])
            .replacingOccurrences(of: "&lt;", with: "<")
            .replacingOccurrences(of: "&gt;", with: ">")
            .replacingOccurrences(of: "&quot;", with: "\"")
            .replacingOccurrences(of: "&apos;", with: "'")
            .replacingOccurrences(of: "&amp;", with: "&")
    }

    static func fromTransport(_ e: HTTPError, operation: String, attempts: Int) -> AWSError {
        let code: String
        switch e.kind {
        case .responseTooLarge: code = "ResponseTooLarge"
        case .file: code = "FileError"
        case .invalidRequest: code = "InvalidRequest"
        default: code = "NetworkError"
        }
        return AWSError(kind: .transport, code: code, message: e.description, isRetryable: e.isTransient,
                        operation: operation, transport: e, attempts: attempts)
    }
}
