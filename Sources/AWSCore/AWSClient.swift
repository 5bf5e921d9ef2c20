import Foundation
import Logging

/// Capped exponential backoff with full jitter: before retry n (1-based) sleep a uniformly
/// random time in [0, min(maxDelay, baseDelay * 2^(n-1))].
public struct RetryPolicy: Sendable {
    /// Total attempts including the first (1 = no retries).
    public var maxAttempts: Int
    public var baseDelay: Double
    public var maxDelay: Double

    public init(maxAttempts: Int = 3, baseDelay: Double = 0.05, maxDelay: Double = 5) {
        self.maxAttempts = max(1, maxAttempts)
        self.baseDelay = max(0, baseDelay)
        self.maxDelay = max(0, maxDelay)
    }

    public static let none = RetryPolicy(maxAttempts: 1)

    public func delayCeiling(forRetry n: Int) -> Double {
        let exponent = Double(min(max(n - 1, 0), 30))
        return min(maxDelay, baseDelay * pow(2, exponent))
    }

    public func delay(forRetry n: Int) -> Double {
        let c = delayCeiling(forRetry: n)
        return c > 0 ? Double.random(in: 0...c) : 0
    }
}

/// One call to a service, before signing.
public struct AWSRequest: Sendable {
    public var service: AWSService
    /// Operation name for messages and logs ("GetItem").
    public var operation: String
    public var method: String
    /// Path as sent, already AWS-URI-encoded (see `SigV4Signer.uriEncode`); appended to the base URL.
    public var path: String
    /// Decoded query parameters; encoded here.
    public var query: [(String, String)]
    public var headers: HTTPHeaders
    public var body: [UInt8]
    /// Sign as UNSIGNED-PAYLOAD (S3) instead of hashing the body.
    public var unsignedPayload: Bool
    /// Replaces the environment's endpoint (S3 virtual-host URLs).
    public var baseURL: String?
    /// Total timeout per attempt; the client's default when nil.
    public var timeout: Double?

    public init(service: AWSService, operation: String, method: String = "POST", path: String = "/",
                query: [(String, String)] = [], headers: HTTPHeaders = [:], body: [UInt8] = [],
                unsignedPayload: Bool = false, baseURL: String? = nil, timeout: Double? = nil) {
        self.service = service
        self.operation = operation
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.unsignedPayload = unsignedPayload
        self.baseURL = baseURL
        self.timeout = timeout
    }
}

/// Signs, sends and retries AWS requests; turns error responses into `AWSError`.
/// Retries (per `RetryPolicy`) only throttling errors, 5xx/429 and transient network failures;
/// an expired-credentials answer refetches the credentials once and tries again.
public final class AWSClient: Sendable {
    public let environment: AWSEnvironment
    public let credentials: any CredentialsProvider
    public let http: HTTPClient
    public let retry: RetryPolicy
    /// Default total timeout of one attempt, seconds.
    public let timeout: Double
    public let logger: Logger
    let sleep: @Sendable (Double) -> Void

    public init(environment: AWSEnvironment, credentials: any CredentialsProvider, http: HTTPClient = .shared,
                retry: RetryPolicy = RetryPolicy(), timeout: Double = 10, logger: Logger = Logger(label: "aws"),
                sleep: @escaping @Sendable (Double) -> Void = { Thread.sleep(forTimeInterval: $0) }) {
        self.environment = environment
        self.credentials = credentials
        self.http = http
        self.retry = retry
        self.timeout = timeout
        self.logger = logger
        self.sleep = sleep
    }

    /// Sends the request; returns the 2xx response or throws.
    public func send(_ request: AWSRequest) throws(AWSError) -> HTTPResponse {
        try execute(request, download: nil)
    }

    /// Streams a 2xx body to `path` (see `HTTPClient.download`); each retry starts the file anew.
    public func download(_ request: AWSRequest, toFile path: String, maxBytes: Int) throws(AWSError) -> HTTPResponse {
        try execute(request, download: (path, maxBytes))
    }

    /// AWS JSON protocol (DynamoDB): POST / with X-Amz-Target; returns the parsed answer.
    public func callJSON(service: AWSService, operation: String, target: String, body: JSONValue,
                         jsonVersion: String = "1.0") throws(AWSError) -> JSONValue {
        var headers = HTTPHeaders()
        headers["Content-Type"] = "application/x-amz-json-\(jsonVersion)"
        headers["X-Amz-Target"] = target
        let request = AWSRequest(service: service, operation: operation, headers: headers, body: body.serialized())
        return try parseJSON(try send(request), request)
    }

    /// REST-JSON protocol (IVS): POST <path> with a JSON body; returns the parsed answer.
    public func callRestJSON(service: AWSService, operation: String, path: String, body: JSONValue) throws(AWSError) -> JSONValue {
        var headers = HTTPHeaders()
        headers["Content-Type"] = "application/json"
        let request = AWSRequest(service: service, operation: operation, path: path, headers: headers, body: body.serialized())
        return try parseJSON(try send(request), request)
    }

    func parseJSON(_ response: HTTPResponse, _ request: AWSRequest) throws(AWSError) -> JSONValue {
        if response.body.isEmpty { return .object([:]) }
        do throws(JSONError) {
            return try JSONValue.parse(response.body)
        } catch {
            // The reason and offset only: the body may hold secrets (stream keys).
            throw AWSError(kind: .invalidResponse, code: "InvalidResponse",
                           message: "response is not valid JSON (\(error.reason) at byte \(error.offset))",
                           status: response.status, operation: "\(request.service.id) \(request.operation)")
        }
    }

    /// The full URL the request goes to.
    public func url(for request: AWSRequest) throws(AWSError) -> String {
        let base: String
        if let b = request.baseURL { base = b } else { base = try environment.endpoint(for: request.service).url }
        var url = base + (request.path.hasPrefix("/") ? request.path : "/" + request.path)
        if !request.query.isEmpty {
            url += "?" + request.query.map {
                SigV4Signer.uriEncode($0.0, encodeSlash: true) + "=" + SigV4Signer.uriEncode($0.1, encodeSlash: true)
            }.joined(separator: "&")
        }
        return url
    }

    private func execute(_ request: AWSRequest, download: (path: String, maxBytes: Int)?) throws(AWSError) -> HTTPResponse {
        let operation = "\(request.service.id) \(request.operation)"
        let url = try url(for: request)
        var attempt = 0
        var refreshedCredentials = false
        while true {
            attempt += 1
            let creds: AWSCredentials
            do throws(CredentialsError) {
                creds = try credentials.credentials()
            } catch {
                throw AWSError(kind: .credentials, code: "CredentialsError", message: error.description,
                               operation: operation, attempts: attempt)
            }
            var http = HTTPRequest(method: request.method, url: url, headers: request.headers, body: request.body,
                                   timeout: request.timeout ?? timeout, connectTimeout: min(5, request.timeout ?? timeout))
            let isS3 = request.service.signingName == "s3"
            let signer = isS3 ? SigV4Signer.s3(credentials: creds, region: environment.region)
                : SigV4Signer(credentials: creds, region: environment.region, service: request.service.signingName)
            do throws(AWSError) {
                try signer.sign(&http, unsignedPayload: request.unsignedPayload, addContentSHA256Header: isS3)
            } catch {
                var e = error
                e.operation = operation
                throw e
            }

            let failure: AWSError
            do throws(HTTPError) {
                let response: HTTPResponse
                if let download {
                    response = try self.http.download(http, toFile: download.path, maxBytes: download.maxBytes)
                } else {
                    response = try self.http.send(http)
                }
                if response.isSuccess { return response }
                var e = AWSError.decode(response, operation: operation)
                e.attempts = attempt
                if e.isExpiredCredentials && !refreshedCredentials {
                    // Refetch once; counts as an attempt like any retry.
                    refreshedCredentials = true
                    credentials.invalidate()
                    e.isRetryable = true
                }
                failure = e
            } catch {
                failure = AWSError.fromTransport(error, operation: operation, attempts: attempt)
            }

            guard failure.isRetryable, attempt < retry.maxAttempts else { throw failure }
            let delay = retry.delay(forRetry: attempt)
            logger.warning("AWS call failed, retrying", metadata: [
                "operation": "\(operation)", "code": "\(failure.code)",
                "status": "\(failure.status.map(String.init) ?? "-")",
                "attempt": "\(attempt)", "delayMs": "\(Int(delay * 1000))",
            ])
            sleep(delay)
        }
    }
}
