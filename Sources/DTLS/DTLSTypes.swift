/// Value types shared by the DTLS endpoint: fingerprints, SRTP profiles, keying material,
/// events, failures and counters.

@_exported import SRTP

/// Hash functions an SDP `a=fingerprint` may name (RFC 8122 §5, the ones OpenSSL provides).
public enum DTLSHashAlgorithm: String, Sendable, CaseIterable, Hashable {
    case sha1 = "sha-1"
    case sha224 = "sha-224"
    case sha256 = "sha-256"
    case sha384 = "sha-384"
    case sha512 = "sha-512"

    /// Accepts the SDP spelling ("sha-256") in any case, and the dashless form ("SHA256").
    public init?(name: String) {
        let lowered = name.lowercased()
        if let exact = DTLSHashAlgorithm(rawValue: lowered) { self = exact; return }
        guard let match = DTLSHashAlgorithm.allCases.first(where: {
            String($0.rawValue.filter { $0 != "-" }) == lowered
        }) else { return nil }
        self = match
    }

    /// Digest length in bytes.
    public var digestLength: Int {
        switch self {
        case .sha1: return 20
        case .sha224: return 28
        case .sha256: return 32
        case .sha384: return 48
        case .sha512: return 64
        }
    }
}

/// A certificate fingerprint as carried by SDP `a=fingerprint:<algorithm> <AB:CD:...>`.
public struct DTLSFingerprint: Sendable, Hashable, CustomStringConvertible {
    public let algorithm: DTLSHashAlgorithm
    public let bytes: [UInt8]

    /// Fails when the byte count does not match the algorithm's digest length.
    public init(algorithm: DTLSHashAlgorithm, bytes: [UInt8]) throws(DTLSError) {
        guard bytes.count == algorithm.digestLength else {
            throw .invalidFingerprint("\(algorithm.rawValue) digest must be \(algorithm.digestLength) bytes, got \(bytes.count)")
        }
        self.algorithm = algorithm
        self.bytes = bytes
    }

    /// From the two SDP tokens: algorithm name and colon-separated hex ("AB:CD:...").
    public init(algorithm name: String, hex: String) throws(DTLSError) {
        guard let algorithm = DTLSHashAlgorithm(name: name) else {
            throw .invalidFingerprint("unsupported fingerprint hash \"\(name)\"")
        }
        var bytes: [UInt8] = []
        for part in hex.split(separator: ":", omittingEmptySubsequences: false) {
            guard part.count == 2, let byte = UInt8(part, radix: 16) else {
                throw .invalidFingerprint("fingerprint byte \"\(part)\" is not two hex digits")
            }
            bytes.append(byte)
        }
        try self.init(algorithm: algorithm, bytes: bytes)
    }

    /// From a whole attribute value: "sha-256 AB:CD:...".
    public init(sdpAttributeValue value: String) throws(DTLSError) {
        let tokens = value.split(whereSeparator: { $0 == " " || $0 == "\t" })
        guard tokens.count == 2 else {
            throw .invalidFingerprint("expected \"<hash> <hex>\", got \"\(value)\"")
        }
        try self.init(algorithm: String(tokens[0]), hex: String(tokens[1]))
    }

    /// Upper-case colon-separated hex, the SDP form.
    public var hexValue: String {
        bytes.map { byte in
            let digits = String(byte, radix: 16, uppercase: true)
            return digits.count == 1 ? "0" + digits : digits
        }.joined(separator: ":")
    }

    /// "sha-256 AB:CD:..." — the value of an `a=fingerprint` attribute.
    public var sdpAttributeValue: String { "\(algorithm.rawValue) \(hexValue)" }

    public var description: String { sdpAttributeValue }
}

/// DTLS-SRTP protection profiles (RFC 5764 §4.1.2, RFC 7714 §14.2): the SRTP module's own type, so
/// key and salt lengths are defined once and the negotiated profile feeds `SRTPSession` directly.
public typealias DTLSSRTPProfile = SRTPProfile

extension SRTPProfile {
    /// The name OpenSSL's `SSL_CTX_set_tlsext_use_srtp` understands.
    public var openSSLName: String {
        switch self {
        case .aes128CmSha1_80: return "SRTP_AES128_CM_SHA1_80"
        case .aeadAes128Gcm: return "SRTP_AEAD_AES_128_GCM"
        case .aeadAes256Gcm: return "SRTP_AEAD_AES_256_GCM"
        }
    }

    /// Default offer order: AEAD first (cheaper, stronger); AES-CM last as the one known to work
    /// everywhere. A DTLS server picks by its own order among what the client offers.
    public static let defaultPreference: [DTLSSRTPProfile] = [.aeadAes128Gcm, .aeadAes256Gcm, .aes128CmSha1_80]
}

/// SRTP keys exported after a verified handshake. `remote*` are the peer's write keys, i.e. what
/// an inbound SRTP session decrypts with; `local*` are ours, for an outbound session.
public struct DTLSSRTPKeyingMaterial: Sendable, Equatable, CustomStringConvertible {
    public let profile: DTLSSRTPProfile
    public let localKey: [UInt8]
    public let localSalt: [UInt8]
    public let remoteKey: [UInt8]
    public let remoteSalt: [UInt8]

    public init(profile: DTLSSRTPProfile, localKey: [UInt8], localSalt: [UInt8], remoteKey: [UInt8], remoteSalt: [UInt8]) {
        self.profile = profile
        self.localKey = localKey
        self.localSalt = localSalt
        self.remoteKey = remoteKey
        self.remoteSalt = remoteSalt
    }

    /// Never prints key bytes (they would end up in logs).
    public var description: String { "DTLS-SRTP keys (\(profile.openSSLName))" }
}

/// Why a handshake or session ended in `.failed`.
public enum DTLSFailure: Error, Sendable, Equatable, CustomStringConvertible {
    /// The peer's certificate digest is not the one the SDP answer announced: refused.
    case fingerprintMismatch(expected: String, actual: String)
    /// The peer completed without presenting a certificate.
    case noPeerCertificate
    /// The handshake finished without a common `use_srtp` profile.
    case noSRTPProfile
    /// SSL_export_keying_material failed (OpenSSL ERR queue text).
    case keyExport(String)
    /// The peer sent a fatal alert (its description, e.g. "bad certificate").
    case peerAlert(String)
    /// Retransmissions exhausted without an answer.
    case timeout
    /// Any other handshake or record-layer failure, with the OpenSSL ERR queue text.
    case handshake(String)

    public var description: String {
        switch self {
        case let .fingerprintMismatch(expected, actual):
            return "peer certificate fingerprint mismatch: expected \(expected), got \(actual)"
        case .noPeerCertificate: return "peer presented no certificate"
        case .noSRTPProfile: return "no common DTLS-SRTP protection profile negotiated"
        case let .keyExport(detail): return "SRTP keying material export failed: \(detail)"
        case let .peerAlert(detail): return "peer sent fatal alert: \(detail)"
        case .timeout: return "DTLS handshake timed out after retransmissions"
        case let .handshake(detail): return "DTLS handshake failed: \(detail)"
        }
    }
}

/// Errors from building a certificate or an endpoint (not from network input).
public enum DTLSError: Error, Sendable, Equatable, CustomStringConvertible {
    /// An OpenSSL call failed; `detail` is the ERR queue text.
    case openSSL(operation: String, detail: String)
    case invalidFingerprint(String)
    case invalidConfiguration(String)

    public var description: String {
        switch self {
        case let .openSSL(operation, detail): return "OpenSSL \(operation) failed: \(detail)"
        case let .invalidFingerprint(detail): return "invalid fingerprint: \(detail)"
        case let .invalidConfiguration(detail): return "invalid DTLS configuration: \(detail)"
        }
    }
}

/// Causes of dropped network input, each reported once through `DTLSEvent.firstDrop`.
public enum DTLSDropCause: String, Sendable, Hashable, CaseIterable {
    /// A record header that is not DTLS (bad content type, version or length).
    case malformedRecord
    /// A datagram whose first byte is outside the DTLS range 20...63 (RFC 7983).
    case notDTLS
    /// Input after the session failed or closed.
    case afterClose
    /// An alert received from the peer (warning or fatal).
    case alertReceived
}

public enum DTLSState: Sendable, Equatable {
    case new, connecting, connected, failed, closed
}

/// What happened as a result of feeding input or handling a timer.
public enum DTLSEvent: Sendable, Equatable {
    /// Handshake done, peer fingerprint verified, SRTP keys exported.
    case connected(DTLSSRTPKeyingMaterial)
    /// The session is unusable; the endpoint refuses further input.
    case failed(DTLSFailure)
    /// The peer sent close_notify.
    case closed
    /// Decrypted application data (not used by WebRTC media; kept for completeness).
    case applicationData([UInt8])
    /// First occurrence of a drop cause, so the owner can log each cause once.
    case firstDrop(DTLSDropCause, detail: String)
}

/// Running totals; read them for stats and tests.
public struct DTLSCounters: Sendable, Equatable {
    public var datagramsReceived = 0
    public var datagramsSent = 0
    /// Datagrams (or tails of datagrams) dropped because a record header was malformed.
    public var malformedRecords = 0
    public var notDTLSDatagrams = 0
    public var droppedAfterClose = 0
    public var alertsReceived = 0
    public var alertsSent = 0
    /// Flights resent by the retransmission timer.
    public var retransmissions = 0
    public var applicationBytesReceived = 0

    public init() {}
}
