import COpenSSL

/// HMAC-SHA1 (OpenSSL) and CRC-32 (here: the FINGERPRINT polynomial needs no library).
public enum STUNCrypto {
    /// HMAC-SHA1 of `data` under `key`; 20 bytes.
    public static func hmacSHA1(key: [UInt8], data: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 20)
        var outLen: UInt32 = 0
        // OpenSSL wants a non-null key pointer even for an empty key.
        let k = key.isEmpty ? [0] : key
        k.withUnsafeBufferPointer { kp in
            data.withUnsafeBufferPointer { dp in
                out.withUnsafeMutableBufferPointer { op in
                    _ = HMAC(EVP_sha1(), kp.baseAddress, Int32(key.count), dp.baseAddress, dp.count, op.baseAddress, &outLen)
                }
            }
        }
        return out
    }

    /// CRC-32 as in ISO-HDLC / zlib (reflected polynomial 0xEDB88320), over `data[range]`.
    public static func crc32(_ data: [UInt8], upTo end: Int? = nil) -> UInt32 {
        let n = min(end ?? data.count, data.count)
        var c: UInt32 = 0xFFFF_FFFF
        data.withUnsafeBufferPointer { p in
            for i in 0..<n {
                c = crcTable[Int((c ^ UInt32(p[i])) & 0xFF)] ^ (c >> 8)
            }
        }
        return c ^ 0xFFFF_FFFF
    }

    static let crcTable: [UInt32] = (0..<256).map { n -> UInt32 in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    /// Compares without an early exit, so timing does not reveal how many bytes matched.
    public static func constantTimeEqual(_ a: [UInt8], _ b: ArraySlice<UInt8>) -> Bool {
        guard a.count == b.count else { return false }
        var diff: UInt8 = 0
        for (x, y) in zip(a, b) { diff |= x ^ y }
        return diff == 0
    }
}

/// Outcome of checking MESSAGE-INTEGRITY or FINGERPRINT in received bytes.
public enum STUNCheck: Sendable, Equatable {
    case absent
    case valid
    case invalid
}

extension STUNMessage {
    /// Finds where MESSAGE-INTEGRITY and FINGERPRINT start in raw bytes; nil if the attribute
    /// walk fails (which `parse` would have reported).
    static func integrityOffsets(_ b: [UInt8]) -> (integrity: Int?, fingerprint: Int?)? {
        guard b.count >= headerLength, Int(b.stunU16(2)) == b.count - headerLength else { return nil }
        var i = headerLength
        var mi: Int?, fp: Int?
        while i < b.count {
            guard b.count - i >= 4 else { return nil }
            let type = b.stunU16(i)
            let len = Int(b.stunU16(i + 2))
            let padded = (len + 3) & ~3
            guard b.count - (i + 4) >= padded else { return nil }
            if type == STUNAttributeType.messageIntegrity, mi == nil, fp == nil {
                guard len == 20 else { return nil }
                mi = i
            } else if type == STUNAttributeType.fingerprint, fp == nil {
                guard len == 4 else { return nil }
                fp = i
            }
            i += 4 + padded
        }
        return (mi, fp)
    }

    /// Verifies FINGERPRINT (CRC-32 of everything before it, XOR 0x5354554E) in received bytes.
    public static func checkFingerprint(_ b: [UInt8]) -> STUNCheck {
        guard let offsets = integrityOffsets(b) else { return .invalid }
        guard let fp = offsets.fingerprint else { return .absent }
        guard fp + 8 == b.count else { return .invalid }
        let expected = STUNCrypto.crc32(b, upTo: fp) ^ 0x5354_554E
        return b.stunU32(fp + 4) == expected ? .valid : .invalid
    }

    /// Verifies MESSAGE-INTEGRITY (HMAC-SHA1 over the message up to it, with the header length
    /// adjusted to end just after it, RFC 8489 section 14.5) in received bytes under `key`.
    public static func checkIntegrity(_ b: [UInt8], key: [UInt8]) -> STUNCheck {
        guard let offsets = integrityOffsets(b) else { return .invalid }
        guard let mi = offsets.integrity else { return .absent }
        var covered = Array(b[0..<mi])
        let len = mi - headerLength + 24
        covered[2] = UInt8(len >> 8); covered[3] = UInt8(truncatingIfNeeded: len)
        let mac = STUNCrypto.hmacSHA1(key: key, data: covered)
        return STUNCrypto.constantTimeEqual(mac, b[(mi + 4)..<(mi + 24)]) ? .valid : .invalid
    }
}
