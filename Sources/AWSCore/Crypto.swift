import COpenSSL

/// SHA-256 and HMAC-SHA-256 through OpenSSL's one-shot EVP calls.
public enum AWSCrypto {
    public static func sha256(_ data: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        var len: UInt32 = 0
        // Never hand OpenSSL a nil pointer, even for empty input.
        let input = data.isEmpty ? [UInt8(0)] : data
        input.withUnsafeBufferPointer { p in
            _ = EVP_Digest(p.baseAddress, data.count, &out, &len, EVP_sha256(), nil)
        }
        return out
    }

    public static func sha256Hex(_ data: [UInt8]) -> String { hex(sha256(data)) }
    public static func sha256Hex(_ text: String) -> String { hex(sha256(Array(text.utf8))) }

    public static func hmacSHA256(key: [UInt8], data: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        var len: UInt32 = 0
        let k = key.isEmpty ? [UInt8(0)] : key
        let d = data.isEmpty ? [UInt8(0)] : data
        k.withUnsafeBufferPointer { kp in
            d.withUnsafeBufferPointer { dp in
                _ = HMAC(EVP_sha256(), kp.baseAddress, Int32(key.count), dp.baseAddress, data.count, &out, &len)
            }
        }
        return out
    }

    private static let digits = Array("0123456789abcdef".utf8)

    public static func hex(_ bytes: [UInt8]) -> String {
        var out = [UInt8]()
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
