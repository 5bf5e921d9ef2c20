import Testing
import STUN

/// RFC 5769 test vectors, written out from the RFC's hex dumps.
enum STUNVectors {
    static let password = Array("VOkJxbRl1RmTxUk/WvJxBt".utf8)

    static func hex(_ s: String) -> [UInt8] {
        let digits = Array(s.filter { !$0.isWhitespace })
        return stride(from: 0, to: digits.count, by: 2).map { UInt8(String(digits[$0...$0 + 1]), radix: 16)! }
    }

    /// 2.1 Sample Request (SOFTWARE, PRIORITY, ICE-CONTROLLED, USERNAME padded with spaces, MI, FP).
    static let request = hex("""
        00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
        80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74
        00 24 00 04 6e 00 01 ff
        80 29 00 08 93 2f f9 b1 51 26 3b 36
        00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20
        00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2
        80 28 00 04 e5 7a 3b cf
        """)

    /// 2.2 Sample IPv4 Response: 192.0.2.1 port 32853.
    static let responseV4 = hex("""
        01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
        80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
        00 20 00 08 00 01 a1 47 e1 12 a6 43
        00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7
        80 28 00 04 c0 7d 4c 96
        """)

    /// 2.3 Sample IPv6 Response: 2001:db8:1234:5678:11:2233:4455:6677 port 32853.
    static let responseV6 = hex("""
        01 01 00 48 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
        80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
        00 20 00 14 00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9
        00 08 00 14 a3 82 95 4e 4b e6 7b f1 17 84 c9 7c 82 92 c2 75 bf e3 ed 41
        80 28 00 04 c8 fb 0b 4c
        """)

    /// 2.4 Sample Request with Long-Term Authentication (no FINGERPRINT).
    static let longTermRequest = hex("""
        00 01 00 60 21 12 a4 42 78 ad 34 33 c6 ad 72 c0 29 da 41 2e
        00 06 00 12 e3 83 9e e3 83 88 e3 83 aa e3 83 83 e3 82 af e3 82 b9 00 00
        00 15 00 1c 66 2f 2f 34 39 39 6b 39 35 34 64 36 4f 4c 33 34 6f 4c 39 46 53 54 76 79 36 34 73 41
        00 14 00 0b 65 78 61 6d 70 6c 65 2e 6f 72 67 00
        00 08 00 14 f6 70 24 65 6d d6 4a 3e 02 b8 e0 71 2e 85 c9 a2 8c a8 96 66
        """)
}

@Suite struct STUNVectorTests {
    @Test func sampleRequestParsesVerifiesAndReserializes() throws {
        let raw = STUNVectors.request
        #expect(raw.count == 108)
        let m = try STUNMessage.parse(raw)
        #expect(m.method == STUNMethod.binding)
        #expect(m.messageClass == .request)
        #expect(m.transactionID.description == "b7e7a701bc34d686fa87dfae")
        #expect(m.software() == "STUN test client")
        #expect(try m.priority() == 0x6E00_01FF)
        #expect(try m.iceControlled() == 0x932F_F9B1_5126_3B36)
        #expect(try m.iceControlling() == nil)
        #expect(try m.username() == "evtj:h6vY")
        #expect(m.attributes.map(\.type) == [0x8022, 0x0024, 0x8029, 0x0006, 0x0008, 0x8028])
        #expect(m.unknownComprehensionRequired.isEmpty)

        #expect(STUNMessage.checkIntegrity(raw, key: STUNVectors.password) == .valid)
        #expect(STUNMessage.checkIntegrity(raw, key: Array("VOkJxbRl1RmTxUk/WvJxBT".utf8)) == .invalid)
        #expect(STUNMessage.checkFingerprint(raw) == .valid)

        // Stored attributes written back as they came: byte-exact.
        #expect(try m.serialized() == raw)
        // Recomputing MESSAGE-INTEGRITY and FINGERPRINT from scratch gives the RFC's values.
        var stripped = m
        stripped.attributes.removeAll { $0.type == STUNAttributeType.messageIntegrity || $0.type == STUNAttributeType.fingerprint }
        #expect(try stripped.serialized(integrityKey: STUNVectors.password, fingerprint: true) == raw)
    }

    @Test func sampleIPv4ResponseDecodesXorMappedAddress() throws {
        let raw = STUNVectors.responseV4
        let m = try STUNMessage.parse(raw)
        #expect(m.messageClass == .successResponse)
        #expect(m.messageType == 0x0101)
        #expect(m.software() == "test vector")
        let a = try #require(try m.xorMappedAddress())
        #expect(a.ip == STUNIPAddress("192.0.2.1"))
        #expect(a.port == 32853)
        #expect(STUNMessage.checkIntegrity(raw, key: STUNVectors.password) == .valid)
        #expect(STUNMessage.checkFingerprint(raw) == .valid)
        #expect(try m.serialized() == raw)

        // Built from typed values, the message reproduces the vector exactly (SOFTWARE padding
        // in the vector is a space, so that attribute keeps its received padding).
        var built = STUNMessage(messageClass: .successResponse, transactionID: m.transactionID)
        built.append(m.attributes[0])
        built.append(.xorMappedAddress(a, transactionID: m.transactionID))
        #expect(try built.serialized(integrityKey: STUNVectors.password, fingerprint: true) == raw)
    }

    @Test func sampleIPv6ResponseDecodesXorMappedAddress() throws {
        let raw = STUNVectors.responseV6
        let m = try STUNMessage.parse(raw)
        let a = try #require(try m.xorMappedAddress())
        #expect(a.ip == STUNIPAddress("2001:db8:1234:5678:11:2233:4455:6677"))
        #expect(a.ip.description == "2001:db8:1234:5678:11:2233:4455:6677")
        #expect(a.port == 32853)
        #expect(a.description == "[2001:db8:1234:5678:11:2233:4455:6677]:32853")
        #expect(STUNMessage.checkIntegrity(raw, key: STUNVectors.password) == .valid)
        #expect(STUNMessage.checkFingerprint(raw) == .valid)
        #expect(try m.serialized() == raw)
        var built = STUNMessage(messageClass: .successResponse, transactionID: m.transactionID)
        built.append(m.attributes[0])
        built.append(.xorMappedAddress(a, transactionID: m.transactionID))
        #expect(try built.serialized(integrityKey: STUNVectors.password, fingerprint: true) == raw)
    }

    @Test func longTermRequestParsesWithoutFingerprint() throws {
        let raw = STUNVectors.longTermRequest
        let m = try STUNMessage.parse(raw)
        #expect(try m.username() == "マトリックス")
        #expect(m.attribute(STUNAttributeType.realm)?.value == Array("example.org".utf8))
        #expect(m.attribute(STUNAttributeType.nonce)?.value == Array("f//499k954d6OL34oL9FSTvy64sA".utf8))
        #expect(STUNMessage.checkFingerprint(raw) == .absent)
        // Long-term keys are MD5(user:realm:pass), not the short-term password: must not verify.
        #expect(STUNMessage.checkIntegrity(raw, key: Array("TheMatrIX".utf8)) == .invalid)
        #expect(try m.serialized() == raw)
    }

    @Test func everySingleByteChangeOfTheRequestIsDetected() throws {
        let raw = STUNVectors.request
        for i in 0..<raw.count {
            var b = raw
            b[i] ^= 0x01
            guard (try? STUNMessage.parse(b)) != nil else { continue }
            let intact = STUNMessage.checkIntegrity(b, key: STUNVectors.password) == .valid
                && STUNMessage.checkFingerprint(b) == .valid
            #expect(!intact, "flipping byte \(i) went unnoticed")
        }
    }

    @Test func crc32CheckValue() {
        #expect(STUNCrypto.crc32(Array("123456789".utf8)) == 0xCBF4_3926)
        #expect(STUNCrypto.crc32([]) == 0)
    }

    @Test func hmacSHA1KnownAnswer() {
        // RFC 2202 test case 2.
        let mac = STUNCrypto.hmacSHA1(key: Array("Jefe".utf8), data: Array("what do ya want for nothing?".utf8))
        #expect(mac == STUNVectors.hex("effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"))
    }
}

@Suite struct STUNMessageTests {
    @Test func messageTypeEncodingFollowsRFC8489() throws {
        #expect(STUNMessage(messageClass: .request).messageType == 0x0001)
        #expect(STUNMessage(messageClass: .indication).messageType == 0x0011)
        #expect(STUNMessage(messageClass: .successResponse).messageType == 0x0101)
        #expect(STUNMessage(messageClass: .errorResponse).messageType == 0x0111)
        // Allocate (0x003) error response is 0x0113 (RFC 5766).
        #expect(STUNMessage(method: 0x003, messageClass: .errorResponse).messageType == 0x0113)
        for method in [UInt16(0x001), 0x0ABC, 0x0FFF, 0x0080] {
            for cls in [STUNClass.request, .indication, .successResponse, .errorResponse] {
                let m = STUNMessage(method: method, messageClass: cls)
                let back = try STUNMessage.parse(try m.serialized())
                #expect(back.method == method && back.messageClass == cls)
            }
        }
    }

    @Test func iceRequestRoundTrip() throws {
        let tid = STUNTransactionID.random()
        var m = STUNMessage(messageClass: .request, transactionID: tid)
        m.append(.username("remote:local"))
        m.append(.iceControlling(0x0123_4567_89AB_CDEF))
        m.append(.priority(1_853_824_767))
        m.append(.useCandidate)
        let key = Array("a-password-of-22-chars".utf8)
        let raw = try m.serialized(integrityKey: key, fingerprint: true)
        #expect(raw.count % 4 == 0)
        #expect(Int(raw[2]) << 8 | Int(raw[3]) == raw.count - 20)
        let p = try STUNMessage.parse(raw)
        #expect(p.transactionID == tid)
        #expect(try p.username() == "remote:local")
        #expect(try p.iceControlling() == 0x0123_4567_89AB_CDEF)
        #expect(try p.priority() == 1_853_824_767)
        #expect(p.useCandidate)
        #expect(STUNMessage.checkIntegrity(raw, key: key) == .valid)
        #expect(STUNMessage.checkIntegrity(raw, key: Array("wrong".utf8)) == .invalid)
        #expect(STUNMessage.checkFingerprint(raw) == .valid)
        #expect(STUNMessage.looksLikeSTUN(raw))
    }

    @Test func errorCodeAndUnknownAttributesRoundTrip() throws {
        var m = STUNMessage(messageClass: .errorResponse)
        m.append(.errorCode(420, reason: "Unknown Attribute"))
        m.append(.unknownAttributes([0x0031, 0x7777]))
        let p = try STUNMessage.parse(try m.serialized(fingerprint: true))
        let e = try #require(try p.errorCode())
        #expect(e.code == 420 && e.reason == "Unknown Attribute")
        #expect(try p.unknownAttributes() == [0x0031, 0x7777])
    }

    @Test func xorMappedAddressRoundTripsForBothFamilies() throws {
        for text in ["203.0.113.7", "::1", "2001:db8::ff00:42:8329", "fe80::1"] {
            let addr = STUNTransportAddress(ip: try #require(STUNIPAddress(text)), port: 50_123)
            let tid = STUNTransactionID.random()
            var m = STUNMessage(messageClass: .successResponse, transactionID: tid)
            m.append(.xorMappedAddress(addr, transactionID: tid))
            let p = try STUNMessage.parse(try m.serialized())
            #expect(try p.xorMappedAddress() == addr)
        }
    }

    @Test func malformedMessagesGiveTypedErrors() throws {
        let good = STUNVectors.request
        func err(_ b: [UInt8]) -> STUNError? {
            do { _ = try STUNMessage.parse(b); return nil } catch { return error }
        }
        #expect(err(Array(good.prefix(19))) == .tooShort(length: 19))
        var b = good; b[0] = 0x40
        #expect(err(b) == .notSTUN(firstByte: 0x40))
        b = good; b[4] = 0x22
        #expect(err(b) == .badMagicCookie(0x2212_A442))
        #expect(err(Array(good.dropLast(4))) == .badLength(declared: 88, available: 84))
        b = good; b[3] = 0x59
        #expect(err(b) == .badLength(declared: 89, available: 88))
        // An attribute claiming more than remains (SOFTWARE length 0xF0).
        b = good; b[23] = 0xF0
        #expect(err(b) == .truncatedAttribute(type: 0x8022, declared: 0xF0, available: 84))
        // MESSAGE-INTEGRITY with a 16-byte value.
        var m = STUNMessage(messageClass: .request)
        m.append(STUNAttribute(type: STUNAttributeType.messageIntegrity, value: [UInt8](repeating: 0, count: 16)))
        #expect(err(try m.serialized()) == .malformedAttribute(type: 0x0008, reason: "MESSAGE-INTEGRITY must be 20 bytes, got 16"))
        // FINGERPRINT followed by another attribute.
        m = STUNMessage(messageClass: .request)
        m.append(STUNAttribute(type: STUNAttributeType.fingerprint, value: [0, 0, 0, 0]))
        m.append(.priority(1))
        #expect(err(try m.serialized()) == .fingerprintNotLast)
        // Bad typed values are errors from the readers, not traps.
        m = STUNMessage(messageClass: .request)
        m.append(STUNAttribute(type: STUNAttributeType.priority, value: [1, 2]))
        m.append(STUNAttribute(type: STUNAttributeType.xorMappedAddress, value: [0, 3, 0, 0, 1, 2, 3, 4]))
        let p = try STUNMessage.parse(try m.serialized())
        #expect(throws: STUNError.self) { try p.priority() }
        #expect(throws: STUNError.self) { try p.xorMappedAddress() }
    }

    @Test func attributesAfterIntegrityAreIgnored() throws {
        var m = STUNMessage(messageClass: .request)
        m.append(.username("a:b"))
        let key = Array("pw".utf8)
        var raw = try m.serialized(integrityKey: key)
        // Append PRIORITY after MESSAGE-INTEGRITY and fix the length.
        raw += [0x00, 0x24, 0x00, 0x04, 0, 0, 0, 1]
        raw[3] = UInt8(raw.count - 20)
        let p = try STUNMessage.parse(raw)
        #expect(try p.priority() == nil)
        #expect(STUNMessage.checkIntegrity(raw, key: key) == .valid)
    }
}

@Suite struct STUNFuzzTests {
    /// 100 000 random and mutated inputs: the parser and checks never trap, and no mutation of an
    /// authenticated message passes both integrity and fingerprint checks.
    @Test func parserSurvivesRandomAndMutatedInput() throws {
        var rng = STUNTestRandom(seed: 0x5354_554E)
        let seeds = [STUNVectors.request, STUNVectors.responseV4, STUNVectors.responseV6, STUNVectors.longTermRequest]
        var parsed = 0, rejected = 0, forged = 0
        for i in 0..<100_000 {
            var b: [UInt8]
            let seed = seeds[i % seeds.count]
            switch i % 5 {
            case 0:
                // Random bytes behind a plausible header, so the attribute walk gets exercised.
                let n = Int(rng.next() % 120)
                b = [0x00, 0x01, UInt8(n >> 8), UInt8(n & 0xFF), 0x21, 0x12, 0xA4, 0x42]
                b += (0..<(12 + n)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            case 1:
                b = (0..<Int(rng.next() % 64)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            default:
                b = seed
                for _ in 0..<(1 + Int(rng.next() % 4)) {
                    guard !b.isEmpty else { break }
                    let at = Int(rng.next() % UInt64(b.count))
                    switch rng.next() % 4 {
                    case 0: b[at] = UInt8(truncatingIfNeeded: rng.next())
                    case 1: b.removeSubrange(at...)
                    case 2: b.insert(UInt8(truncatingIfNeeded: rng.next()), at: at)
                    default: b[at] ^= 1 << (rng.next() % 8)
                    }
                }
            }
            do {
                let m = try STUNMessage.parse(b)
                parsed += 1
                _ = try? m.username(); _ = try? m.priority(); _ = try? m.xorMappedAddress()
                _ = try? m.errorCode(); _ = try? m.iceControlled(); _ = try? m.unknownAttributes()
                _ = try? m.serialized()
                if seed != STUNVectors.longTermRequest, b != seed, i % 5 >= 2,
                   STUNMessage.checkIntegrity(b, key: STUNVectors.password) == .valid,
                   STUNMessage.checkFingerprint(b) == .valid {
                    forged += 1
                }
            } catch {
                rejected += 1
                _ = STUNMessage.checkFingerprint(b)
                _ = STUNMessage.checkIntegrity(b, key: STUNVectors.password)
            }
        }
        #expect(parsed + rejected == 100_000)
        #expect(parsed > 1_000)
        #expect(rejected > 10_000)
        #expect(forged == 0)
    }
}

/// Small deterministic generator so fuzz failures reproduce.
struct STUNTestRandom: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
