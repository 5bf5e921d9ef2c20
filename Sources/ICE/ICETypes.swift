import STUN

/// Candidate types (RFC 8445 section 5.1.1) with their recommended type preferences.
public enum ICECandidateType: String, Sendable, Hashable {
    case host, srflx, prflx, relay

    public var typePreference: UInt32 {
        switch self {
        case .host: return 126
        case .prflx: return 110
        case .srflx: return 100
        case .relay: return 0
        }
    }
}

/// A UDP candidate for component 1 (RTP and RTCP are muxed, so there is no other component).
public struct ICECandidate: Sendable, Hashable, CustomStringConvertible {
    public var foundation: String
    public var priority: UInt32
    public var address: STUNTransportAddress
    public var type: ICECandidateType
    public var relatedAddress: STUNTransportAddress?

    public init(foundation: String, priority: UInt32, address: STUNTransportAddress, type: ICECandidateType = .host,
                relatedAddress: STUNTransportAddress? = nil) {
        self.foundation = foundation; self.priority = priority; self.address = address
        self.type = type; self.relatedAddress = relatedAddress
    }

    /// From the fields of an SDP `a=candidate` line (as `SDP.SDPCandidate` holds them). Returns nil
    /// for what this agent cannot use: TCP, components other than 1, host names (mDNS), port 0.
    public init?(foundation: String, component: Int, transport: String, priority: UInt32, address: String,
                 port: UInt16, type: String) {
        guard component == 1, transport.lowercased() == "udp", port != 0,
              let ip = STUNIPAddress(address), !ip.isIPv4Mapped else { return nil }
        self.init(foundation: foundation, priority: priority, address: STUNTransportAddress(ip: ip, port: port),
                  type: ICECandidateType(rawValue: type.lowercased()) ?? .host)
    }

    /// RFC 8445 section 5.1.2.1: 2^24 type preference + 2^8 local preference + (256 - component).
    public static func priority(type: ICECandidateType, localPreference: UInt16, component: Int = 1) -> UInt32 {
        type.typePreference << 24 | UInt32(localPreference) << 8 | UInt32(256 - min(max(component, 1), 256))
    }

    /// Fields for an SDP candidate line: component is 1 and transport `udp`.
    public var addressString: String { address.ip.description }
    public var port: UInt16 { address.port }

    public var description: String { "\(type.rawValue) \(address) (priority \(priority))" }
}

/// ICE username fragment and password (RFC 8445 section 5.3).
public struct ICECredentials: Sendable, Hashable {
    public var ufrag: String
    public var pwd: String

    public init(ufrag: String, pwd: String) {
        self.ufrag = ufrag; self.pwd = pwd
    }

    /// 8 and 24 random ice-chars, above the 4/22 minimum (and 24/128 bits of entropy).
    public static func random() -> ICECredentials {
        let chars = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
        var g = SystemRandomNumberGenerator()
        func make(_ n: Int) -> String { String((0..<n).map { _ in chars[Int(g.next(upperBound: UInt64(chars.count)))] }) }
        return ICECredentials(ufrag: make(8), pwd: make(24))
    }
}

/// The pair in use: where we send from (its local host address) and to.
public struct ICECandidatePair: Sendable, Hashable, CustomStringConvertible {
    public var local: ICECandidate
    public var remote: ICECandidate
    public var priority: UInt64

    public init(local: ICECandidate, remote: ICECandidate, priority: UInt64) {
        self.local = local; self.remote = remote; self.priority = priority
    }

    /// RFC 8445 section 6.1.2.3 with us as the controlling agent (G = local).
    public static func pairPriority(controlling g: UInt32, controlled d: UInt32) -> UInt64 {
        let lo = UInt64(min(g, d)), hi = UInt64(max(g, d))
        return lo << 32 + 2 * hi + (g > d ? 1 : 0)
    }

    public var description: String { "\(local.address) -> \(remote.address)" }
}

/// Why checking failed or a connection was lost.
public enum ICEFailureReason: Sendable, Equatable, CustomStringConvertible {
    /// No remote candidate this agent can use (family, transport).
    case noUsablePairs
    /// Every pair's checks failed or timed out.
    case allPairsFailed
    /// No pair was selected within the configured time.
    case timeout(seconds: Double)
    /// No consent response on the selected pair for this long (RFC 7675).
    case consentExpired(seconds: Double)

    public var description: String {
        switch self {
        case .noUsablePairs: return "no usable candidate pairs"
        case .allPairsFailed: return "all candidate pairs failed"
        case .timeout(let s): return "no pair selected within \(s) s"
        case .consentExpired(let s): return "no consent response for \(s) s"
        }
    }
}

/// Agent state as reported to the owner.
public enum ICEState: Sendable, Equatable {
    case new
    case checking
    /// A pair was nominated and confirmed: DTLS may start.
    case connected(ICECandidatePair)
    /// Checks ended without a usable pair. Terminal.
    case failed(ICEFailureReason)
    /// Consent was lost on the selected pair: the peer is gone. Terminal; nothing more is sent.
    case disconnected(ICEFailureReason)
    case closed

    public var isTerminal: Bool {
        switch self {
        case .failed, .disconnected, .closed: return true
        default: return false
        }
    }
}

/// Which host addresses to gather.
public enum ICEInterfaces: Sendable, Equatable {
    /// Every up interface except loopback; link-local addresses are skipped.
    case allExceptLoopback
    /// 127.0.0.1 and ::1 only (tests).
    case loopbackOnly
    /// Exactly these addresses (they must be local).
    case addresses([STUNIPAddress])
}

/// Tunables. Times are seconds.
public struct ICEConfiguration: Sendable {
    public var interfaces: ICEInterfaces
    public var ipv4: Bool
    public var ipv6: Bool
    /// Local UDP port for both sockets; 0 picks an ephemeral port per family.
    public var port: UInt16
    /// Our credentials; random when nil.
    public var credentials: ICECredentials?
    /// Ta: pacing between new checks (RFC 8445 section 14.2 default 50 ms).
    public var checkInterval: Double
    /// First retransmission timeout; it doubles up to `maxRTO`.
    public var initialRTO: Double
    public var maxRTO: Double
    /// Transmissions of one request (first send included) before its transaction times out.
    public var maxTransmissions: Int
    /// After the first pair succeeds, how long to wait for higher-priority pairs before nominating.
    public var nominationWait: Double
    /// Give up when no pair is selected within this time of `start`.
    public var connectTimeout: Double
    /// Mean interval between consent requests; each interval is drawn from 0.8x...1.2x (RFC 7675).
    public var consentInterval: Double
    /// Consent is lost, and the peer declared dead, after this long without a consent response.
    /// RFC 7675 says 30 s; the worker must notice a dead peer within 10 s.
    public var consentTimeout: Double
    /// SOFTWARE attribute for our requests and responses; nil leaves it out.
    public var software: String?

    public init(interfaces: ICEInterfaces = .allExceptLoopback, ipv4: Bool = true, ipv6: Bool = true, port: UInt16 = 0,
                credentials: ICECredentials? = nil, checkInterval: Double = 0.05, initialRTO: Double = 0.5,
                maxRTO: Double = 2.0, maxTransmissions: Int = 7, nominationWait: Double = 0.2,
                connectTimeout: Double = 15, consentInterval: Double = 5, consentTimeout: Double = 10,
                software: String? = nil) {
        self.interfaces = interfaces; self.ipv4 = ipv4; self.ipv6 = ipv6; self.port = port
        self.credentials = credentials; self.checkInterval = checkInterval; self.initialRTO = initialRTO
        self.maxRTO = maxRTO; self.maxTransmissions = maxTransmissions; self.nominationWait = nominationWait
        self.connectTimeout = connectTimeout; self.consentInterval = consentInterval
        self.consentTimeout = consentTimeout; self.software = software
    }
}

/// Setup failures of the agent or its sockets.
public enum ICEError: Error, Sendable, Equatable, CustomStringConvertible {
    case noLocalAddresses
    case socket(operation: String, errno: Int32)

    public var description: String {
        switch self {
        case .noLocalAddresses: return "no usable local address to gather host candidates from"
        case .socket(let op, let e): return "UDP socket \(op) failed: errno \(e)"
        }
    }
}

/// Reasons a datagram is dropped; each is counted and logged the first time it happens.
public enum ICEDropCause: String, Sendable, Hashable, CaseIterable {
    case stunMalformed = "stun-malformed"
    case stunBadFingerprint = "stun-bad-fingerprint"
    case stunMissingFingerprint = "stun-missing-fingerprint"
    case stunBadIntegrity = "stun-bad-integrity"
    case stunMissingIntegrity = "stun-missing-integrity"
    case stunBadUsername = "stun-bad-username"
    case stunMissingPriority = "stun-missing-priority"
    case stunUnknownAttribute = "stun-unknown-comprehension-required-attribute"
    case stunUnsupportedMethod = "stun-unsupported-method"
    case stunUnknownTransaction = "stun-unknown-transaction"
    case stunRoleConflict = "stun-role-conflict"
    case stunBeforeStart = "stun-before-start"
    case stunAfterEnd = "stun-after-end"
    case stunNonSymmetricResponse = "stun-non-symmetric-response"
    case unauthenticatedSource = "dtls-or-media-from-unvalidated-address"
    case unclassified = "unclassified-datagram"
    case sendFailed = "send-failed"
}

/// Running totals.
public struct ICECounters: Sendable, Equatable {
    public var datagramsReceived = 0
    public var stunReceived = 0
    public var dtlsDelivered = 0
    public var mediaDelivered = 0
    public var checksSent = 0
    public var retransmissions = 0
    public var consentRequestsSent = 0
    public var responsesSent = 0
    public var dropped: [ICEDropCause: Int] = [:]

    public init() {}

    public var totalDropped: Int { dropped.values.reduce(0, +) }
    public func dropped(_ cause: ICEDropCause) -> Int { dropped[cause] ?? 0 }
}
