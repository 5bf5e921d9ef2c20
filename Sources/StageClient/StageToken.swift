import Foundation
import HTTPClient

/// A token (or endpoint) problem. Never contains the token itself.
public struct StageTokenError: Error, Sendable, Equatable, CustomStringConvertible {
    public let problem: String
    public init(_ problem: String) { self.problem = problem }
    public var description: String { Secrets.redact(problem) }
}

/// The claims of an IVS participant token that the worker uses. The JWT is decoded without
/// verification (the stage verifies it; AWS calls it opaque, the samples read it anyway), only
/// to find the participant id and the endpoints. The token itself stays a `SecretString`,
/// registered with `Secrets` the moment it is parsed.
public struct StageToken: Sendable, CustomStringConvertible {
    public let secret: SecretString
    /// `jti`: our own participant id (we must never subscribe to it).
    public let participantId: String
    /// `topic`: the stage id, the events WebSocket path.
    public let topic: String?
    public let resource: String?
    public let eventsURL: String?
    public let whipURL: String?
    public let userId: String?
    public let attributes: [String: String]
    public let allowPublish: Bool?
    public let allowSubscribe: Bool?
    public let version: String?
    public let expiresAt: Date?

    public init(_ raw: String) throws(StageTokenError) {
        let text = raw.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !text.isEmpty else { throw StageTokenError("the token is empty") }
        secret = SecretString(text)
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[1].isEmpty else {
            throw StageTokenError("the token is not a JWT (expected three dot-separated parts, found \(parts.count))")
        }
        if parts[2].utf8.count >= Secrets.minimumLength { Secrets.register(String(parts[2])) }
        guard let payload = StageToken.base64URLDecode(parts[1]) else {
            throw StageTokenError("the token's payload is not base64url")
        }
        guard let obj = (try? JSONSerialization.jsonObject(with: payload)) as? [String: Any] else {
            throw StageTokenError("the token's payload is not a JSON object")
        }
        func string(_ k: String) throws(StageTokenError) -> String? {
            guard let v = obj[k], !(v is NSNull) else { return nil }
            guard let s = v as? String else { throw StageTokenError("the token's \(k) claim is not a string") }
            return s
        }
        guard let jti = try string("jti"), !jti.isEmpty else { throw StageTokenError("the token has no jti (participant id) claim") }
        participantId = jti
        topic = try string("topic")
        resource = try string("resource")
        eventsURL = try string("events_url")
        whipURL = try string("whip_url")
        userId = try string("user_id")
        version = try string("version")
        var attrs: [String: String] = [:]
        if let a = obj["attributes"] as? [String: Any] {
            for (k, v) in a { if let s = v as? String { attrs[k] = s } }
        }
        attributes = attrs
        let caps = obj["capabilities"] as? [String: Any]
        allowPublish = caps?["allow_publish"] as? Bool
        allowSubscribe = caps?["allow_subscribe"] as? Bool
        if let exp = obj["exp"] as? NSNumber, !(obj["exp"] is Bool) {
            expiresAt = Date(timeIntervalSince1970: exp.doubleValue)
        } else {
            expiresAt = nil
        }
    }

    /// `version` minor digit, a bit field (STAGE-PROTOCOL.md): 0 when absent or unparsable.
    public var versionFlags: Int {
        guard let v = version else { return 0 }
        let parts = v.split(separator: ".")
        return parts.count >= 2 ? Int(parts[1]) ?? 0 : 0
    }
    /// Bit 0: the stage wants TURN relay only (not supported here).
    public var turnMandatory: Bool { versionFlags & 1 != 0 }
    /// Bit 1: a legacy stage that wants the subscriber to send audio (not supported here).
    public var legacyStage: Bool { versionFlags & 2 != 0 }

    public func isExpired(at now: Date = Date(), grace: TimeInterval = 60) -> Bool {
        guard let e = expiresAt else { return false }
        return e.addingTimeInterval(grace) < now
    }

    public var description: String {
        "StageToken(participant: \(participantId), topic: \(topic ?? "-"), token: \(Secrets.mask))"
    }

    static func base64URLDecode<S: StringProtocol>(_ s: S) -> Data? {
        var b = s.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        guard b.utf8.allSatisfy({ ($0 >= 0x30 && $0 <= 0x39) || ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x7A) || $0 == 0x2B || $0 == 0x2F || $0 == 0x3D }) else {
            return nil
        }
        while b.utf8.count % 4 != 0 { b += "=" }
        return Data(base64Encoded: b)
    }
}

/// Where the stage is: explicit flags win, then the token's claims (STAGE-PROTOCOL.md).
public struct StageEndpoints: Sendable, Equatable {
    /// Full events WebSocket URL: `{events}/{topic}`.
    public var eventsURL: String
    /// WHIP base URL; subscriptions go to `{whip}/subscribe/{participantId}`.
    public var whipURL: String
    public var topic: String

    public init(eventsURL: String, whipURL: String, topic: String) {
        self.eventsURL = eventsURL; self.whipURL = whipURL; self.topic = topic
    }

    /// - Throws: naming the flag or claim at fault.
    public static func resolve(token: StageToken, events: String?, whip: String?) throws(StageTokenError) -> StageEndpoints {
        guard let topic = token.topic, !topic.isEmpty else { throw StageTokenError("the token has no topic (stage id) claim") }
        let (eventsBase, eventsSource) = events.map { ($0, "--events-url") } ?? (token.eventsURL.map { ($0, "the token's events_url claim") } ?? ("", ""))
        guard !eventsBase.isEmpty else { throw StageTokenError("no events endpoint: give --events-url (the token has no events_url claim)") }
        let (whipBase, whipSource) = whip.map { ($0, "--whip-url") } ?? (token.whipURL.map { ($0, "the token's whip_url claim") } ?? ("", ""))
        guard !whipBase.isEmpty else { throw StageTokenError("no WHIP endpoint: give --whip-url (the token has no whip_url claim)") }

        var e = eventsBase
        while e.hasSuffix("/") { e.removeLast() }
        let lower = e.lowercased()
        guard lower.hasPrefix("ws://") || lower.hasPrefix("wss://") else {
            throw StageTokenError("\(eventsSource) must be a ws:// or wss:// URL")
        }
        let topicPath = topic.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/"))) ?? topic
        let full = "\(e)/\(topicPath)"
        do { _ = try WebSocketURL(parsing: full) } catch { throw StageTokenError("\(eventsSource): \(error)") }

        var w = whipBase
        while w.hasSuffix("/") { w.removeLast() }
        guard let u = HTTPURL(w), u.query == nil else { throw StageTokenError("\(whipSource) must be an http:// or https:// URL without a query") }
        _ = u
        return StageEndpoints(eventsURL: full, whipURL: w, topic: topic)
    }
}
