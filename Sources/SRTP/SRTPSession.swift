import CSRTP

/// libsrtp must be initialised once per process before any session; a global `let` runs its
/// initialiser exactly once, thread-safely.
private let srtpLibraryReady: Bool = srtp_init() == srtp_err_status_ok

/// One SRTP/SRTCP crypto context over libsrtp, either inbound (decrypt any SSRC the peer sends,
/// replay window 1024, replay protection on) or outbound (encrypt ours).
///
/// Every input is length- and header-checked before libsrtp sees it, so hostile bytes give a
/// typed error, never a trap or an out-of-bounds read. Failures are counted per cause in
/// `counters`; log a cause when its count becomes 1 to log each cause once.
///
/// Not thread-safe: one owner calls it (libsrtp keeps per-stream replay state inside).
public final class SRTPSession {
    public let profile: SRTPProfile
    public let direction: SRTPDirection
    public private(set) var counters = SRTPCounters()

    private let session: OpaquePointer  // srtp_t

    /// Room libsrtp may write past the packet in protect: its SRTP_MAX_TRAILER_LEN (tag 16 +
    /// MKI 128) plus the 4-byte SRTCP index.
    static let trailerRoom = 16 + 128 + 4
    /// Nothing bigger arrives in one UDP datagram; keeps lengths far from Int32 limits.
    static let maxPacketLength = 65_535

    /// Initialises libsrtp now if it is not yet. The first initialisation brings up its crypto
    /// backend (Debian's libsrtp2 uses NSS: ~60 ms); call this before the first handshake so that
    /// cost is not paid on the thread that reads every peer's packets. False if libsrtp failed.
    @discardableResult
    public static func initializeLibrary() -> Bool { srtpLibraryReady }

    /// - Parameters:
    ///   - key, salt: master key and salt (`profile.keyLength`, `profile.saltLength` bytes).
    ///   - windowSize: replay window in packets (libsrtp allows 64...32767).
    public init(profile: SRTPProfile, key: [UInt8], salt: [UInt8], direction: SRTPDirection,
                windowSize: Int = 1024) throws(SRTPError) {
        guard srtpLibraryReady else { throw .libsrtp(operation: "srtp_init", status: -1) }
        guard key.count == profile.keyLength else {
            throw .invalidKey("\(profile) needs a \(profile.keyLength)-byte key, got \(key.count)")
        }
        guard salt.count == profile.saltLength else {
            throw .invalidKey("\(profile) needs a \(profile.saltLength)-byte salt, got \(salt.count)")
        }
        guard (64..<32_768).contains(windowSize) else {
            throw .invalidKey("replay window \(windowSize) outside 64...32767")
        }

        var policy = srtp_policy_t()
        switch profile {
        case .aes128CmSha1_80:
            // srtp_crypto_policy_set_aes_cm_128_hmac_sha1_80 is a C macro for these defaults.
            srtp_crypto_policy_set_rtp_default(&policy.rtp)
            srtp_crypto_policy_set_rtcp_default(&policy.rtcp)
        case .aeadAes128Gcm:
            srtp_crypto_policy_set_aes_gcm_128_16_auth(&policy.rtp)
            srtp_crypto_policy_set_aes_gcm_128_16_auth(&policy.rtcp)
        case .aeadAes256Gcm:
            srtp_crypto_policy_set_aes_gcm_256_16_auth(&policy.rtp)
            srtp_crypto_policy_set_aes_gcm_256_16_auth(&policy.rtcp)
        }
        policy.ssrc.type = direction == .inbound ? ssrc_any_inbound : ssrc_any_outbound
        policy.ssrc.value = 0
        policy.window_size = UInt(windowSize)
        policy.allow_repeat_tx = 0
        policy.next = nil

        // libsrtp wants key || salt in one buffer; it copies what it needs during srtp_create.
        var keyAndSalt = key + salt
        var created: srtp_t?
        let status = keyAndSalt.withUnsafeMutableBufferPointer { buffer -> srtp_err_status_t in
            policy.key = buffer.baseAddress
            return srtp_create(&created, &policy)
        }
        // Do not leave key bytes lying around in our heap copy.
        for index in keyAndSalt.indices { keyAndSalt[index] = 0 }
        guard status == srtp_err_status_ok, let created else {
            throw .libsrtp(operation: "srtp_create", status: Int32(bitPattern: status.rawValue))
        }
        self.profile = profile
        self.direction = direction
        self.session = created
    }

    deinit {
        _ = srtp_dealloc(session)
    }

    // MARK: - Inbound

    /// Verifies and decrypts one SRTP packet, returning the RTP packet.
    public func unprotect(_ packet: [UInt8]) throws(SRTPError) -> [UInt8] {
        var copy = packet
        try unprotect(inPlace: &copy)
        return copy
    }

    /// Verifies and decrypts in place (no allocation); on success `packet` is the RTP packet.
    /// On failure the contents are unspecified and the length unchanged.
    public func unprotect(inPlace packet: inout [UInt8]) throws(SRTPError) {
        try run(.unprotectRTP, &packet)
    }

    /// Verifies and decrypts one SRTCP packet, returning the RTCP compound packet.
    public func unprotectRTCP(_ packet: [UInt8]) throws(SRTPError) -> [UInt8] {
        var copy = packet
        try unprotectRTCP(inPlace: &copy)
        return copy
    }

    public func unprotectRTCP(inPlace packet: inout [UInt8]) throws(SRTPError) {
        try run(.unprotectRTCP, &packet)
    }

    // MARK: - Outbound

    public func protect(_ packet: [UInt8]) throws(SRTPError) -> [UInt8] {
        var copy = packet
        try protect(inPlace: &copy)
        return copy
    }

    /// Encrypts and appends the tag in place (the array grows by the trailer).
    public func protect(inPlace packet: inout [UInt8]) throws(SRTPError) {
        try run(.protectRTP, &packet)
    }

    public func protectRTCP(_ packet: [UInt8]) throws(SRTPError) -> [UInt8] {
        var copy = packet
        try protectRTCP(inPlace: &copy)
        return copy
    }

    public func protectRTCP(inPlace packet: inout [UInt8]) throws(SRTPError) {
        try run(.protectRTCP, &packet)
    }

    // MARK: - Internals

    private enum Operation: String {
        case unprotectRTP = "srtp_unprotect"
        case unprotectRTCP = "srtp_unprotect_rtcp"
        case protectRTP = "srtp_protect"
        case protectRTCP = "srtp_protect_rtcp"

        var isInbound: Bool { self == .unprotectRTP || self == .unprotectRTCP }
        var isRTCP: Bool { self == .unprotectRTCP || self == .protectRTCP }
    }

    private func run(_ operation: Operation, _ packet: inout [UInt8]) throws(SRTPError) {
        do {
            try validate(operation, packet)
            try callLibSRTP(operation, &packet)
        } catch {
            counters.failures[error.cause, default: 0] &+= 1
            throw error
        }
        if operation.isRTCP { counters.rtcpPackets &+= 1 } else { counters.rtpPackets &+= 1 }
    }

    /// Everything libsrtp would read is inside the packet, and the trailer it needs is there.
    private func validate(_ operation: Operation, _ packet: [UInt8]) throws(SRTPError) {
        guard (direction == .inbound) == operation.isInbound else { throw .wrongDirection }
        guard packet.count <= Self.maxPacketLength else {
            throw .malformed("packet of \(packet.count) bytes exceeds \(Self.maxPacketLength)")
        }
        let tag = profile.tagLength
        if operation.isRTCP {
            // Fixed RTCP header (8); SRTCP adds the E|index word (4) and the tag.
            let minimum = operation.isInbound ? 8 + 4 + tag : 8
            guard packet.count >= minimum else { throw .truncated(length: packet.count, minimum: minimum) }
            guard packet[0] >> 6 == 2 else { throw .malformed("RTCP version \(packet[0] >> 6), expected 2") }
        } else {
            let header = try Self.rtpHeaderLength(packet)
            let minimum = operation.isInbound ? header + tag : header
            guard packet.count >= minimum else { throw .truncated(length: packet.count, minimum: minimum) }
        }
    }

    /// Fixed header + CSRCs + header extension, each bounds-checked.
    static func rtpHeaderLength(_ packet: [UInt8]) throws(SRTPError) -> Int {
        guard packet.count >= 12 else { throw .truncated(length: packet.count, minimum: 12) }
        guard packet[0] >> 6 == 2 else { throw .malformed("RTP version \(packet[0] >> 6), expected 2") }
        var length = 12 + Int(packet[0] & 0x0F) * 4
        guard packet.count >= length else { throw .truncated(length: packet.count, minimum: length) }
        if packet[0] & 0x10 != 0 {
            guard packet.count >= length + 4 else { throw .truncated(length: packet.count, minimum: length + 4) }
            let words = Int(packet[length + 2]) << 8 | Int(packet[length + 3])
            length += 4 + words * 4
            guard packet.count >= length else { throw .truncated(length: packet.count, minimum: length) }
        }
        return length
    }

    private func callLibSRTP(_ operation: Operation, _ packet: inout [UInt8]) throws(SRTPError) {
        let originalLength = packet.count
        let growsPacket = !operation.isInbound
        if growsPacket { packet.append(contentsOf: repeatElement(0, count: Self.trailerRoom)) }
        var length = Int32(originalLength)
        let session = self.session
        let status = packet.withUnsafeMutableBytes { bytes -> srtp_err_status_t in
            guard let base = bytes.baseAddress else { return srtp_err_status_bad_param }
            switch operation {
            case .unprotectRTP: return srtp_unprotect(session, base, &length)
            case .unprotectRTCP: return srtp_unprotect_rtcp(session, base, &length)
            case .protectRTP: return srtp_protect(session, base, &length)
            case .protectRTCP: return srtp_protect_rtcp(session, base, &length)
            }
        }
        guard status == srtp_err_status_ok else {
            if growsPacket { packet.removeLast(Self.trailerRoom) }
            throw Self.error(for: status, operation.rawValue)
        }
        // libsrtp only shrinks on unprotect and grows within trailerRoom on protect.
        let newLength = Int(length)
        guard newLength >= 0, newLength <= packet.count else {
            throw .libsrtp(operation: operation.rawValue + " returned a bad length", status: length)
        }
        packet.removeLast(packet.count - newLength)
    }

    private static func error(for status: srtp_err_status_t, _ operation: String) -> SRTPError {
        switch status {
        case srtp_err_status_auth_fail: return .authenticationFailed
        case srtp_err_status_replay_fail: return .replayed
        case srtp_err_status_replay_old: return .tooOld
        case srtp_err_status_bad_param, srtp_err_status_parse_err:
            return .malformed("libsrtp \(operation) rejected the packet layout")
        default:
            return .libsrtp(operation: operation, status: Int32(bitPattern: status.rawValue))
        }
    }
}
