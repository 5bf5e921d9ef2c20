import Testing
import SRTP

@Suite("SRTP sessions")
struct SRTPTests {
    static func keys(_ profile: SRTPProfile, seed: UInt8 = 1) -> (key: [UInt8], salt: [UInt8]) {
        let key = (0..<profile.keyLength).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ Int(seed)) }
        let salt = (0..<profile.saltLength).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ Int(seed) &+ 100) }
        return (key, salt)
    }

    static func pair(_ profile: SRTPProfile) throws -> (out: SRTPSession, in: SRTPSession) {
        let (key, salt) = keys(profile)
        return (try SRTPSession(profile: profile, key: key, salt: salt, direction: .outbound),
                try SRTPSession(profile: profile, key: key, salt: salt, direction: .inbound))
    }

    /// RTP/RTCP known-answer vectors from libsrtp's validation (AES-CM-128/HMAC-SHA1-80,
    /// SSRC 0xcafebabe, sequence 0x1234): proves key || salt reach libsrtp the right way round.
    @Test func aesCmKnownAnswer() throws {
        let key: [UInt8] = [0xe1, 0xf9, 0x7a, 0x0d, 0x3e, 0x01, 0x8b, 0xe0, 0xd6, 0x4f, 0xa3, 0x2c, 0x06, 0xde, 0x41, 0x39]
        let salt: [UInt8] = [0x0e, 0xc6, 0x75, 0xad, 0x49, 0x8a, 0xfe, 0xeb, 0xb6, 0x96, 0x0b, 0x3a, 0xab, 0xe6]
        let rtp: [UInt8] = [0x80, 0x0f, 0x12, 0x34, 0xde, 0xca, 0xfb, 0xad, 0xca, 0xfe, 0xba, 0xbe] + [UInt8](repeating: 0xab, count: 16)
        let srtp: [UInt8] = [0x80, 0x0f, 0x12, 0x34, 0xde, 0xca, 0xfb, 0xad, 0xca, 0xfe, 0xba, 0xbe,
                             0x4e, 0x55, 0xdc, 0x4c, 0xe7, 0x99, 0x78, 0xd8, 0x8c, 0xa4, 0xd2, 0x15,
                             0x94, 0x9d, 0x24, 0x02, 0xb7, 0x8d, 0x6a, 0xcc, 0x99, 0xea, 0x17, 0x9b, 0x8d, 0xbb]
        let rtcp: [UInt8] = [0x81, 0xc8, 0x00, 0x0b, 0xca, 0xfe, 0xba, 0xbe] + [UInt8](repeating: 0xab, count: 16)
        let srtcp: [UInt8] = [0x81, 0xc8, 0x00, 0x0b, 0xca, 0xfe, 0xba, 0xbe,
                              0x71, 0x28, 0x03, 0x5b, 0xe4, 0x87, 0xb9, 0xbd, 0xbe, 0xf8, 0x90, 0x41,
                              0xf9, 0x77, 0xa5, 0xa8, 0x80, 0x00, 0x00, 0x01, 0x99, 0x3e, 0x08, 0xcd,
                              0x54, 0xd6, 0xc1, 0x23, 0x07, 0x98]
        let outbound = try SRTPSession(profile: .aes128CmSha1_80, key: key, salt: salt, direction: .outbound)
        #expect(try outbound.protect(rtp) == srtp)
        #expect(try outbound.protectRTCP(rtcp) == srtcp)
        let inbound = try SRTPSession(profile: .aes128CmSha1_80, key: key, salt: salt, direction: .inbound)
        #expect(try inbound.unprotect(srtp) == rtp)
        #expect(try inbound.unprotectRTCP(srtcp) == rtcp)
    }

    /// The AEAD-AES-128-GCM vector of the same validation set (key 00..0f, salt a0..ab).
    @Test func aesGcmKnownAnswer() throws {
        let key: [UInt8] = Array(0x00...0x0f)
        let salt: [UInt8] = Array(0xa0...0xab)
        let rtp: [UInt8] = [0x80, 0x0f, 0x12, 0x34, 0xde, 0xca, 0xfb, 0xad, 0xca, 0xfe, 0xba, 0xbe] + [UInt8](repeating: 0xab, count: 16)
        let srtp: [UInt8] = [0x80, 0x0f, 0x12, 0x34, 0xde, 0xca, 0xfb, 0xad, 0xca, 0xfe, 0xba, 0xbe,
                             0xc5, 0x00, 0x2e, 0xde, 0x04, 0xcf, 0xdd, 0x2e, 0xb9, 0x11, 0x59, 0xe0,
                             0x88, 0x0a, 0xa0, 0x6e, 0xd2, 0x97, 0x68, 0x26, 0xf7, 0x96, 0xb2, 0x01,
                             0xdf, 0x31, 0x31, 0xa1, 0x27, 0xe8, 0xa3, 0x92]
        let rtcp: [UInt8] = [0x81, 0xc8, 0x00, 0x0b, 0xca, 0xfe, 0xba, 0xbe] + [UInt8](repeating: 0xab, count: 16)
        let srtcp: [UInt8] = [0x81, 0xc8, 0x00, 0x0b, 0xca, 0xfe, 0xba, 0xbe,
                              0xc9, 0x8b, 0x8b, 0x5d, 0xf0, 0x39, 0x2a, 0x55, 0x85, 0x2b, 0x6c, 0x21,
                              0xac, 0x8e, 0x70, 0x25, 0xc5, 0x2c, 0x6f, 0xbe, 0xa2, 0xb3, 0xb4, 0x46,
                              0xea, 0x31, 0x12, 0x3b, 0xa8, 0x8c, 0xe6, 0x1e, 0x80, 0x00, 0x00, 0x01]
        let outbound = try SRTPSession(profile: .aeadAes128Gcm, key: key, salt: salt, direction: .outbound)
        #expect(try outbound.protect(rtp) == srtp)
        #expect(try outbound.protectRTCP(rtcp) == srtcp)
        let inbound = try SRTPSession(profile: .aeadAes128Gcm, key: key, salt: salt, direction: .inbound)
        #expect(try inbound.unprotect(srtp) == rtp)
        #expect(try inbound.unprotectRTCP(srtcp) == rtcp)
    }

    @Test(arguments: SRTPProfile.allCases)
    func roundTripRTPAndRTCP(profile: SRTPProfile) throws {
        let (outbound, inbound) = try Self.pair(profile)
        let payload = (0..<160).map { UInt8(truncatingIfNeeded: $0 &* 3) }
        for sequence in UInt16(100)..<UInt16(110) {
            let rtp = dtlsTestRTP(sequence: sequence, payload: payload, csrcs: sequence % 2 == 0 ? [0xAABB_CCDD] : [],
                                  extensionWords: sequence % 3 == 0 ? [0x1020_3040, 0x5060_7080] : nil)
            let protected = try outbound.protect(rtp)
            #expect(protected.count == rtp.count + profile.tagLength)
            #expect(Array(protected.suffix(from: rtp.count - payload.count).prefix(payload.count)) != payload, "payload is encrypted")
            #expect(try inbound.unprotect(protected) == rtp)
        }
        let rtcp = dtlsTestRTCPReceiverReport() + [0x81, 202, 0x00, 0x02, 0x55, 0x66, 0x77, 0x88, 0x01, 0x02, 0x61, 0x62]
        for _ in 0..<3 {
            let protected = try outbound.protectRTCP(rtcp)
            #expect(protected.count == rtcp.count + 4 + profile.tagLength)
            #expect(try inbound.unprotectRTCP(protected) == rtcp)
        }
        #expect(inbound.counters.rtpPackets == 10 && inbound.counters.rtcpPackets == 3)
        #expect(inbound.counters.totalFailures == 0)

        // In place: same bytes, no new array needed by the caller.
        var buffer = try outbound.protect(dtlsTestRTP(sequence: 200, payload: payload))
        try inbound.unprotect(inPlace: &buffer)
        #expect(buffer == dtlsTestRTP(sequence: 200, payload: payload))
    }

    @Test(arguments: SRTPProfile.allCases)
    func tamperingFailsAuthentication(profile: SRTPProfile) throws {
        let (outbound, inbound) = try Self.pair(profile)
        let rtp = dtlsTestRTP(sequence: 1, payload: Array(repeating: 0x42, count: 40))
        let protected = try outbound.protect(rtp)
        for position in [2, 12, 30, protected.count - 1] {
            var tampered = protected
            tampered[position] ^= 0x01
            #expect(throws: SRTPError.authenticationFailed) { try inbound.unprotect(tampered) }
        }
        #expect(inbound.counters.count(.authentication) == 4)
        // Different keys: also an authentication failure.
        let (otherKey, otherSalt) = Self.keys(profile, seed: 9)
        let stranger = try SRTPSession(profile: profile, key: otherKey, salt: otherSalt, direction: .inbound)
        #expect(throws: SRTPError.authenticationFailed) { try stranger.unprotect(protected) }
        // The untouched packet still decrypts after the failures.
        #expect(try inbound.unprotect(protected) == rtp)

        let srtcp = try outbound.protectRTCP(dtlsTestRTCPReceiverReport())
        var tampered = srtcp
        tampered[5] ^= 0x80
        #expect(throws: SRTPError.authenticationFailed) { try inbound.unprotectRTCP(tampered) }
        #expect(inbound.counters.count(.authentication) == 5)
    }

    @Test(arguments: SRTPProfile.allCases)
    func replaysAreRefused(profile: SRTPProfile) throws {
        let (outbound, inbound) = try Self.pair(profile)
        let first = try outbound.protect(dtlsTestRTP(sequence: 10, payload: [1, 2, 3]))
        _ = try inbound.unprotect(first)
        #expect(throws: SRTPError.replayed) { try inbound.unprotect(first) }

        // Far ahead, then one far behind the 1024-packet window: too old. The sender refuses
        // to go back in sequence itself, so the late packets are protected in order up front.
        let old = try outbound.protect(dtlsTestRTP(sequence: 11, payload: [5]))
        var ahead: [[UInt8]] = []
        for sequence in stride(from: UInt16(500), through: 1500, by: 500) {
            ahead.append(try outbound.protect(dtlsTestRTP(sequence: sequence, payload: [4])))
        }
        let late = try outbound.protect(dtlsTestRTP(sequence: 1999, payload: [6]))
        for sequence in stride(from: UInt16(2000), through: 2500, by: 500) {
            ahead.append(try outbound.protect(dtlsTestRTP(sequence: sequence, payload: [4])))
        }
        for packet in ahead { _ = try inbound.unprotect(packet) }
        #expect(throws: SRTPError.tooOld) { try inbound.unprotect(old) }
        // Within the window but unseen: accepted (reordering is not a replay).
        #expect(try inbound.unprotect(late) == dtlsTestRTP(sequence: 1999, payload: [6]))

        let srtcp = try outbound.protectRTCP(dtlsTestRTCPReceiverReport())
        _ = try inbound.unprotectRTCP(srtcp)
        #expect(throws: SRTPError.replayed) { try inbound.unprotectRTCP(srtcp) }
        #expect(inbound.counters.count(.replay) == 3)
        #expect(inbound.counters.count(.authentication) == 0)
    }

    @Test func truncatedAndMalformedPacketsAreTypedErrors() throws {
        let (outbound, inbound) = try Self.pair(.aes128CmSha1_80)
        let protected = try outbound.protect(dtlsTestRTP(sequence: 1, payload: [1, 2, 3, 4]))

        #expect(throws: SRTPError.truncated(length: 0, minimum: 12)) { try inbound.unprotect([]) }
        #expect(throws: SRTPError.truncated(length: 11, minimum: 12)) { try inbound.unprotect(Array(protected.prefix(11))) }
        // A bare header with no room for the 10-byte tag.
        #expect(throws: SRTPError.truncated(length: 15, minimum: 22)) { try inbound.unprotect(Array(protected.prefix(15))) }
        // Four CSRCs announced, none present.
        var csrcs = Array(protected.prefix(14)); csrcs[0] = 0x84
        #expect(throws: SRTPError.truncated(length: 14, minimum: 28)) { try inbound.unprotect(csrcs) }
        // Header extension claiming 255 words.
        let extended: [UInt8] = [0x90, 111, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xBE, 0xDE, 0x00, 0xFF] + [UInt8](repeating: 0, count: 20)
        #expect(throws: SRTPError.truncated(length: 36, minimum: 16 + 255 * 4)) { try inbound.unprotect(extended) }
        var version1 = protected; version1[0] = 0x40
        #expect(throws: SRTPError.malformed("RTP version 1, expected 2")) { try inbound.unprotect(version1) }
        #expect(throws: SRTPError.truncated(length: 21, minimum: 22)) { try inbound.unprotectRTCP(Array(repeating: 0x80, count: 21)) }
        #expect(throws: SRTPError.malformed("packet of 70000 bytes exceeds 65535")) {
            try inbound.unprotect([0x80] + [UInt8](repeating: 0, count: 69_999))
        }
        #expect(throws: SRTPError.wrongDirection) { try inbound.protect(dtlsTestRTP(sequence: 1, payload: [])) }
        #expect(throws: SRTPError.wrongDirection) { try outbound.unprotect(protected) }
        #expect(inbound.counters.count(.truncated) == 6)
        #expect(inbound.counters.count(.malformed) == 2)
        #expect(inbound.counters.count(.wrongDirection) == 1)
        // Nothing above consumed the real packet's index.
        #expect(try inbound.unprotect(protected) == dtlsTestRTP(sequence: 1, payload: [1, 2, 3, 4]))
    }

    @Test func invalidKeysAreRefused() {
        #expect(throws: SRTPError.self) {
            try SRTPSession(profile: .aeadAes256Gcm, key: [UInt8](repeating: 1, count: 16), salt: [UInt8](repeating: 2, count: 12), direction: .inbound)
        }
        #expect(throws: SRTPError.self) {
            try SRTPSession(profile: .aes128CmSha1_80, key: [UInt8](repeating: 1, count: 16), salt: [UInt8](repeating: 2, count: 12), direction: .inbound)
        }
    }

    /// 10 000 hostile inputs per profile to both unprotect paths: every one is refused with a
    /// typed error and counted, none traps, and a genuine packet still decrypts afterwards.
    @Test(arguments: SRTPProfile.allCases)
    func randomInputNeverTraps(profile: SRTPProfile) throws {
        let (outbound, inbound) = try Self.pair(profile)
        var random = DTLSTestRandom(state: UInt64(profile.rawValue) &* 1_000_003)
        var refused = 0
        for index in 0..<10_000 {
            var bytes = random.bytes(random.below(200))
            // Half of them look like RTP/RTCP version 2 so they reach libsrtp itself.
            if index % 2 == 0, !bytes.isEmpty { bytes[0] = 0x80 | (bytes[0] & 0x3F) }
            do {
                if index % 4 < 2 { _ = try inbound.unprotect(bytes) } else { _ = try inbound.unprotectRTCP(bytes) }
            } catch {
                refused += 1
            }
        }
        #expect(refused == 10_000)
        #expect(inbound.counters.totalFailures == 10_000)
        #expect(inbound.counters.count(.authentication) > 1_000, "many reached libsrtp's tag check")
        #expect(inbound.counters.count(.truncated) > 1_000)
        let rtp = dtlsTestRTP(sequence: 77, payload: [9, 9, 9])
        #expect(try inbound.unprotect(try outbound.protect(rtp)) == rtp)
    }
}
