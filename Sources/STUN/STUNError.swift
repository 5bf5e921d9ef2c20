/// Why bytes are not an acceptable STUN message, or an attribute's value is malformed.
public enum STUNError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Fewer than the 20 bytes of a STUN header.
    case tooShort(length: Int)
    /// The two most significant bits of the first byte are not zero (RFC 8489 section 5).
    case notSTUN(firstByte: UInt8)
    /// The magic cookie is not 0x2112A442 (RFC 3489 messages are not accepted).
    case badMagicCookie(UInt32)
    /// The header's length is not a multiple of 4 or differs from the bytes after the header.
    case badLength(declared: Int, available: Int)
    /// An attribute header or value runs past the end of the message.
    case truncatedAttribute(type: UInt16, declared: Int, available: Int)
    /// FINGERPRINT is followed by more attributes.
    case fingerprintNotLast
    /// An attribute's value does not have the form its type requires.
    case malformedAttribute(type: UInt16, reason: String)
    /// A message cannot be written (its attributes exceed the 16-bit length field, ...).
    case unserializable(String)

    public var description: String {
        switch self {
        case .tooShort(let n):
            return "STUN message too short: \(n) bytes, the header needs 20"
        case .notSTUN(let b):
            return "not a STUN message: first byte 0x\(String(b, radix: 16)) has its top bits set"
        case .badMagicCookie(let c):
            return "STUN magic cookie is 0x\(String(c, radix: 16)), expected 0x2112a442"
        case .badLength(let declared, let available):
            return "STUN length field says \(declared) bytes (must be a multiple of 4) but \(available) follow the header"
        case .truncatedAttribute(let type, let declared, let available):
            return "STUN attribute 0x\(String(type, radix: 16)) declares \(declared) bytes but only \(available) remain"
        case .fingerprintNotLast:
            return "STUN FINGERPRINT attribute is not the last attribute"
        case .malformedAttribute(let type, let reason):
            return "STUN attribute 0x\(String(type, radix: 16)) is malformed: \(reason)"
        case .unserializable(let what):
            return "cannot serialize STUN message: \(what)"
        }
    }
}
