/// SRTP protection profiles; raw values are the IANA DTLS-SRTP ids. The DTLS module negotiates
/// these same values (`DTLSSRTPProfile` is this type).
public enum SRTPProfile: UInt16, Sendable, CaseIterable, Hashable {
    /// AES-128 counter mode, HMAC-SHA1 tag of 80 bits (RFC 3711 / 5764).
    case aes128CmSha1_80 = 0x0001
    /// AES-128-GCM, 16-byte tag (RFC 7714).
    case aeadAes128Gcm = 0x0007
    /// AES-256-GCM, 16-byte tag (RFC 7714).
    case aeadAes256Gcm = 0x0008

    public var keyLength: Int {
        switch self {
        case .aes128CmSha1_80, .aeadAes128Gcm: return 16
        case .aeadAes256Gcm: return 32
        }
    }

    public var saltLength: Int {
        switch self {
        case .aes128CmSha1_80: return 14
        case .aeadAes128Gcm, .aeadAes256Gcm: return 12
        }
    }

    /// Bytes of authentication tag appended to SRTP and SRTCP packets.
    public var tagLength: Int {
        switch self {
        case .aes128CmSha1_80: return 10
        case .aeadAes128Gcm, .aeadAes256Gcm: return 16
        }
    }
}

public enum SRTPDirection: Sendable, Equatable {
    /// Decrypts packets from any SSRC the peer sends (libsrtp ssrc_any_inbound).
    case inbound
    /// Encrypts our packets (libsrtp ssrc_any_outbound): tests, and RTCP reports later.
    case outbound
}

/// The counted reasons a packet is refused.
public enum SRTPFailureCause: String, Sendable, Hashable, CaseIterable {
    case authentication
    case replay
    case truncated
    case malformed
    case wrongDirection
    case other
}

public enum SRTPError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The authentication tag did not verify (wrong key, tampering, or not our stream).
    case authenticationFailed
    /// Already received (inside the replay window).
    case replayed
    /// Older than the replay window allows.
    case tooOld
    /// Shorter than the header plus trailer the profile needs.
    case truncated(length: Int, minimum: Int)
    /// Not an RTP/RTCP packet libsrtp can process (version, header fields, size).
    case malformed(String)
    /// protect on an inbound session or unprotect on an outbound one.
    case wrongDirection
    /// A bad key or salt length at session creation.
    case invalidKey(String)
    /// Any other libsrtp status.
    case libsrtp(operation: String, status: Int32)

    public var cause: SRTPFailureCause {
        switch self {
        case .authenticationFailed: return .authentication
        case .replayed, .tooOld: return .replay
        case .truncated: return .truncated
        case .malformed: return .malformed
        case .wrongDirection: return .wrongDirection
        case .invalidKey, .libsrtp: return .other
        }
    }

    public var description: String {
        switch self {
        case .authenticationFailed: return "SRTP authentication failed"
        case .replayed: return "SRTP replay: packet index already received"
        case .tooOld: return "SRTP replay: packet index older than the replay window"
        case let .truncated(length, minimum): return "SRTP packet truncated: \(length) bytes, need at least \(minimum)"
        case let .malformed(detail): return "malformed packet: \(detail)"
        case .wrongDirection: return "operation does not match the session direction"
        case let .invalidKey(detail): return "invalid SRTP key: \(detail)"
        case let .libsrtp(operation, status): return "libsrtp \(operation) failed with status \(status)"
        }
    }
}

/// Per-session totals.
public struct SRTPCounters: Sendable, Equatable {
    public var rtpPackets = 0
    public var rtcpPackets = 0
    public var failures: [SRTPFailureCause: Int] = [:]

    public init() {}

    /// Failures of one cause; the owner logs a cause when this becomes 1 (once per cause).
    public func count(_ cause: SRTPFailureCause) -> Int { failures[cause] ?? 0 }
    public var totalFailures: Int { failures.values.reduce(0, &+) }
}
