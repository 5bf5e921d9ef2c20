import Foundation
import Logging

/// AWS credentials. The secret key and session token never show in descriptions, dumps or
/// reflection, and are registered with `Secrets` so any message that echoes them is masked.
public struct AWSCredentials: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible,
    CustomReflectable {
    public let accessKeyId: String
    public let secretAccessKey: String
    public let sessionToken: String?
    public let expiration: Date?

    public init(accessKeyId: String, secretAccessKey: String, sessionToken: String? = nil, expiration: Date? = nil) {
        self.accessKeyId = accessKeyId
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
        self.expiration = expiration
        Secrets.register(secretAccessKey)
        if let sessionToken { Secrets.register(sessionToken) }
    }

    public var description: String {
        let id = accessKeyId.count > 4 ? String(accessKeyId.prefix(4)) + "…" : "…"
        let token = sessionToken == nil ? "none" : Secrets.mask
        let exp = expiration.map { " expires \($0)" } ?? ""
        return "AWSCredentials(\(id), secret \(Secrets.mask), token \(token)\(exp))"
    }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: [], displayStyle: .struct) }
}

public struct CredentialsError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// This source is not set up (its variables are absent): a chain moves on.
        case notConfigured
        /// Set up, but wrongly (half the keys, a forbidden endpoint, unreadable token file).
        case invalidConfiguration
        /// The credentials endpoint could not be reached or answered with an error status.
        case endpointUnavailable
        /// The endpoint's answer was not usable.
        case invalidResponse
    }
    public var kind: Kind
    public var message: String
    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }
    public var description: String { Secrets.redact("credentials: \(message)") }
}

public protocol CredentialsProvider: Sendable {
    func credentials() throws(CredentialsError) -> AWSCredentials
    /// Drops cached credentials (the service said they expired); the next call fetches anew.
    func invalidate()
}

extension CredentialsProvider {
    public func invalidate() {}
}

public struct StaticCredentialsProvider: CredentialsProvider {
    public let value: AWSCredentials
    public init(_ value: AWSCredentials) { self.value = value }
    public func credentials() throws(CredentialsError) -> AWSCredentials { value }
}

/// AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN.
public struct EnvironmentCredentialsProvider: CredentialsProvider {
    let result: Result<AWSCredentials, CredentialsError>

    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        let id = environment["AWS_ACCESS_KEY_ID"].flatMap { $0.isEmpty ? nil : $0 }
        let secret = environment["AWS_SECRET_ACCESS_KEY"].flatMap { $0.isEmpty ? nil : $0 }
        let token = environment["AWS_SESSION_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
        switch (id, secret) {
        case let (id?, secret?):
            result = .success(AWSCredentials(accessKeyId: id, secretAccessKey: secret, sessionToken: token))
        case (nil, nil):
            result = .failure(CredentialsError(.notConfigured, "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set"))
        case (nil, _):
            result = .failure(CredentialsError(.invalidConfiguration, "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not"))
        case (_, nil):
            result = .failure(CredentialsError(.invalidConfiguration, "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not"))
        }
    }

    public func credentials() throws(CredentialsError) -> AWSCredentials { try result.get() }
}

/// The ECS (and EKS pod identity) container credentials endpoint:
/// http://169.254.170.2$AWS_CONTAINER_CREDENTIALS_RELATIVE_URI, or AWS_CONTAINER_CREDENTIALS_FULL_URI
/// with the optional AWS_CONTAINER_AUTHORIZATION_TOKEN(_FILE). Credentials are cached and fetched
/// again `refreshMargin` seconds before their Expiration; a failed refresh keeps the old ones
/// while they are still valid. Calls are serialised, so concurrent callers share one fetch.
public final class ContainerCredentialsProvider: CredentialsProvider, @unchecked Sendable {
    public static let ecsHost = "http://169.254.170.2"

    let endpoint: Result<String, CredentialsError>
    let tokenSource: TokenSource
    let http: HTTPClient
    let refreshMargin: Double
    let now: @Sendable () -> Date
    let logger: Logger

    enum TokenSource { case none, value(String), file(String) }

    private let lock = NSLock()
    private var cached: AWSCredentials?
    private var lastAttempt: Date?
    private var fetchCount = 0

    /// Seconds between refresh attempts while the cached credentials are still usable.
    let minimumRetryInterval: Double = 15

    public init(environment: [String: String] = ProcessInfo.processInfo.environment, http: HTTPClient = .shared,
                refreshMargin: Double = 300, now: @escaping @Sendable () -> Date = { Date() },
                logger: Logger = Logger(label: "aws.credentials")) {
        self.http = http
        self.refreshMargin = refreshMargin
        self.now = now
        self.logger = logger
        endpoint = Self.resolveEndpoint(environment)
        if let file = environment["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"], !file.isEmpty {
            tokenSource = .file(file)
        } else if let token = environment["AWS_CONTAINER_AUTHORIZATION_TOKEN"], !token.isEmpty {
            Secrets.register(token)
            tokenSource = .value(token)
        } else {
            tokenSource = .none
        }
    }

    /// How many times the endpoint was asked (for diagnostics and tests).
    public var fetches: Int {
        lock.lock()
        defer { lock.unlock() }
        return fetchCount
    }

    static func resolveEndpoint(_ env: [String: String]) -> Result<String, CredentialsError> {
        if let rel = env["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"], !rel.isEmpty {
            guard rel.hasPrefix("/"), HTTPURL(ecsHost + rel) != nil else {
                return .failure(CredentialsError(.invalidConfiguration, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI must be a path starting with '/'"))
            }
            return .success(ecsHost + rel)
        }
        if let full = env["AWS_CONTAINER_CREDENTIALS_FULL_URI"], !full.isEmpty {
            guard let url = HTTPURL(full) else {
                return .failure(CredentialsError(.invalidConfiguration, "AWS_CONTAINER_CREDENTIALS_FULL_URI is not an http(s) URL"))
            }
            // Plain http only to the container agent or this machine, as the SDKs require.
            if url.scheme == "http" && !isAllowedPlainHost(url.host) {
                return .failure(CredentialsError(.invalidConfiguration,
                    "AWS_CONTAINER_CREDENTIALS_FULL_URI uses http to \(url.host); only loopback or the ECS/EKS agent addresses may use http"))
            }
            return .success(full)
        }
        return .failure(CredentialsError(.notConfigured, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI / _FULL_URI are not set"))
    }

    static func isAllowedPlainHost(_ host: String) -> Bool {
        if host == "localhost" || host == "[::1]" || host == "169.254.170.2" || host == "169.254.170.23"
            || host == "[fd00:ec2::23]" { return true }
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts[0] == "127" && parts.allSatisfy { UInt8($0) != nil }
    }

    public func invalidate() {
        lock.lock()
        cached = nil
        lastAttempt = nil
        lock.unlock()
    }

    public func credentials() throws(CredentialsError) -> AWSCredentials {
        let url = try endpoint.get()
        lock.lock()
        defer { lock.unlock() }
        let t = now()
        if let c = cached {
            guard let exp = c.expiration else { return c }
            if t < exp.addingTimeInterval(-refreshMargin) { return c }
            // Inside the refresh window: do not hammer the endpoint while the old ones still work.
            if let last = lastAttempt, t.timeIntervalSince(last) < minimumRetryInterval, t < exp.addingTimeInterval(-10) {
                return c
            }
        }
        lastAttempt = t
        do throws(CredentialsError) {
            let fresh = try fetch(url)
            cached = fresh
            return fresh
        } catch {
            if let c = cached, let exp = c.expiration, t < exp.addingTimeInterval(-10) {
                logger.warning("credentials refresh failed; keeping the current ones until they expire",
                               metadata: ["error": "\(error)"])
                return c
            }
            throw error
        }
    }

    private func authorizationToken() throws(CredentialsError) -> String? {
        switch tokenSource {
        case .none: return nil
        case .value(let v): return v
        case .file(let path):
            guard let data = FileManager.default.contents(atPath: path) else {
                throw CredentialsError(.invalidConfiguration, "cannot read AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE \(path)")
            }
            let token = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            Secrets.register(token)
            return token
        }
    }

    private func fetch(_ url: String) throws(CredentialsError) -> AWSCredentials {
        var request = HTTPRequest(method: "GET", url: url, timeout: 5, connectTimeout: 2, maxResponseBytes: 64 << 10)
        if let token = try authorizationToken() {
            guard !token.contains(where: \.isNewline) else {
                throw CredentialsError(.invalidConfiguration, "the container authorization token contains a line break")
            }
            request.headers["Authorization"] = token
        }
        request.headers["Accept"] = "application/json"
        let target = HTTPURL(url)?.redacted ?? "credentials endpoint"
        var lastError = CredentialsError(.endpointUnavailable, "no attempt made")
        for attempt in 1...3 {
            fetchCount += 1
            do {
                let response = try http.send(request)
                guard response.status == 200 else {
                    lastError = CredentialsError(.endpointUnavailable, "\(target) answered HTTP \(response.status)")
                    if response.status < 500 && response.status != 429 { throw lastError }
                    if attempt < 3 { Thread.sleep(forTimeInterval: 0.1 * Double(attempt)) }
                    continue
                }
                return try Self.parse(response.body, from: target)
            } catch let e as HTTPError {
                lastError = CredentialsError(.endpointUnavailable, "\(e)")
                if !e.isTransient { throw lastError }
                if attempt < 3 { Thread.sleep(forTimeInterval: 0.1 * Double(attempt)) }
            } catch let e as CredentialsError {
                throw e
            } catch {
                throw CredentialsError(.endpointUnavailable, "\(target): unexpected error")
            }
        }
        throw lastError
    }

    /// Reads the endpoint's JSON. Messages never quote the body: it holds the secrets.
    static func parse(_ body: [UInt8], from target: String) throws(CredentialsError) -> AWSCredentials {
        guard let json = try? JSONValue.parse(body), json.objectValue != nil else {
            throw CredentialsError(.invalidResponse, "\(target) did not return a JSON object")
        }
        guard let id = json["AccessKeyId"]?.stringValue, !id.isEmpty else {
            throw CredentialsError(.invalidResponse, "\(target) returned no AccessKeyId")
        }
        guard let secret = json["SecretAccessKey"]?.stringValue, !secret.isEmpty else {
            throw CredentialsError(.invalidResponse, "\(target) returned no SecretAccessKey")
        }
        let token = json["Token"]?.stringValue
        var expiration: Date?
        if let text = json["Expiration"]?.stringValue {
            guard let d = parseISO8601(text) else {
                throw CredentialsError(.invalidResponse, "\(target) returned an unreadable Expiration")
            }
            expiration = d
        }
        return AWSCredentials(accessKeyId: id, secretAccessKey: secret, sessionToken: token, expiration: expiration)
    }

    /// "2024-05-01T12:00:00Z", with optional fractional seconds or a numeric offset.
    static func parseISO8601(_ text: String) -> Date? {
        let plain = ISO8601DateFormatter()
        plain.formatOptions = [.withInternetDateTime]
        if let d = plain.date(from: text) { return d }
        let frac = ISO8601DateFormatter()
        frac.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return frac.date(from: text)
    }
}

/// Tries providers in order; those that are not configured are skipped, the first configured
/// one is used from then on (a configured provider that fails is an error, not a fall-through,
/// so a broken ECS setup never silently turns into another identity).
public final class CredentialsProviderChain: CredentialsProvider, @unchecked Sendable {
    public let providers: [any CredentialsProvider]
    private let lock = NSLock()
    private var chosen: Int?

    public init(_ providers: [any CredentialsProvider]) {
        self.providers = providers
    }

    /// Environment keys, then the container endpoint.
    public static func standard(environment: [String: String] = ProcessInfo.processInfo.environment,
                                http: HTTPClient = .shared,
                                logger: Logger = Logger(label: "aws.credentials")) -> CredentialsProviderChain {
        CredentialsProviderChain([
            EnvironmentCredentialsProvider(environment: environment),
            ContainerCredentialsProvider(environment: environment, http: http, logger: logger),
        ])
    }

    public func credentials() throws(CredentialsError) -> AWSCredentials {
        lock.lock()
        let pick = chosen
        lock.unlock()
        if let pick { return try providers[pick].credentials() }
        for (i, p) in providers.enumerated() {
            do throws(CredentialsError) {
                let c = try p.credentials()
                lock.lock()
                chosen = i
                lock.unlock()
                return c
            } catch where error.kind == .notConfigured {
                continue
            }
        }
        throw CredentialsError(.notConfigured,
            "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run with AWS_CONTAINER_CREDENTIALS_RELATIVE_URI (ECS)")
    }

    public func invalidate() {
        for p in providers { p.invalidate() }
    }
}
