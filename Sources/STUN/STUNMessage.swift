/// STUN message classes (RFC 8489 section 5).
public enum STUNClass: UInt16, Sendable, Hashable {
    case request = 0
    case indication = 1
    case successResponse = 2
    case errorResponse = 3
}

/// STUN method numbers used here; any 12-bit method parses.
public enum STUNMethod {
    public static let binding: UInt16 = 0x001
}

/// The 96-bit transaction id, held in two integers so it hashes without allocating.
public struct STUNTransactionID: Sendable, Hashable, CustomStringConvertible {
    public let high: UInt32
    public let low: UInt64

    public init(high: UInt32, low: UInt64) {
        self.high = high; self.low = low
    }

    /// Exactly 12 bytes, else nil.
    public init?<C: Collection>(bytes: C) where C.Element == UInt8 {
        guard bytes.count == 12 else { return nil }
        var h: UInt32 = 0, l: UInt64 = 0
        for (i, b) in bytes.enumerated() {
            if i < 4 { h = h << 8 | UInt32(b) } else { l = l << 8 | UInt64(b) }
        }
        high = h; low = l
    }

    /// A fresh id from the system's cryptographic generator (RFC 8489 asks for uniform randomness).
    public static func random() -> STUNTransactionID {
        var g = SystemRandomNumberGenerator()
        return STUNTransactionID(high: g.next(), low: g.next())
    }

    public var bytes: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(12)
        out.stunPut32(high)
        out.stunPut32(UInt32(truncatingIfNeeded: low >> 32))
        out.stunPut32(UInt32(truncatingIfNeeded: low))
        return out
    }

    public var description: String {
        bytes.map { b in (b < 16 ? "0" : "") + String(b, radix: 16) }.joined()
    }
}

/// One attribute: its type, its value, and the padding bytes that followed it on the wire.
/// Padding content is meaningless (RFC 8489 says ignore it) but is covered by MESSAGE-INTEGRITY,
/// so it is kept to re-serialize received messages byte for byte.
public struct STUNAttribute: Sendable, Equatable {
    public var type: UInt16
    public var value: [UInt8]
    /// The padding as received; when its length does not fit the value, zeros are written instead.
    public var padding: [UInt8]

    public init(type: UInt16, value: [UInt8], padding: [UInt8] = []) {
        self.type = type; self.value = value; self.padding = padding
    }

    /// Types below 0x8000 must be understood by the receiver (RFC 8489 section 14).
    public var isComprehensionRequired: Bool { type < 0x8000 }
}

/// Attribute type numbers (RFC 8489 section 18.3, RFC 8445 section 16.1).
public enum STUNAttributeType {
    public static let mappedAddress: UInt16 = 0x0001
    public static let username: UInt16 = 0x0006
    public static let messageIntegrity: UInt16 = 0x0008
    public static let errorCode: UInt16 = 0x0009
    public static let unknownAttributes: UInt16 = 0x000A
    public static let realm: UInt16 = 0x0014
    public static let nonce: UInt16 = 0x0015
    public static let messageIntegritySHA256: UInt16 = 0x001C
    public static let xorMappedAddress: UInt16 = 0x0020
    public static let priority: UInt16 = 0x0024
    public static let useCandidate: UInt16 = 0x0025
    public static let software: UInt16 = 0x8022
    public static let alternateServer: UInt16 = 0x8023
    public static let fingerprint: UInt16 = 0x8028
    public static let iceControlled: UInt16 = 0x8029
    public static let iceControlling: UInt16 = 0x802A

    /// The comprehension-required types this implementation understands.
    public static let understood: Set<UInt16> = [
        mappedAddress, username, messageIntegrity, errorCode, unknownAttributes, realm, nonce,
        messageIntegritySHA256, xorMappedAddress, priority, useCandidate,
    ]
}

/// A STUN message (RFC 8489). Parsing checks the header, the length, every attribute's bounds,
/// the fixed sizes of MESSAGE-INTEGRITY/FINGERPRINT and FINGERPRINT's position; integrity and
/// fingerprint values are checked against the raw bytes by `checkIntegrity`/`checkFingerprint`.
public struct STUNMessage: Sendable, Equatable {
    public static let magicCookie: UInt32 = 0x2112_A442
    public static let headerLength = 20

    public var method: UInt16
    public var messageClass: STUNClass
    public var transactionID: STUNTransactionID
    public var attributes: [STUNAttribute]

    public init(method: UInt16 = STUNMethod.binding, messageClass: STUNClass,
                transactionID: STUNTransactionID = .random(), attributes: [STUNAttribute] = []) {
        self.method = method & 0x0FFF
        self.messageClass = messageClass
        self.transactionID = transactionID
        self.attributes = attributes
    }

    /// The 14-bit message type: method bits interleaved with the two class bits.
    public var messageType: UInt16 {
        let m = method & 0x0FFF, c = messageClass.rawValue
        return (m & 0x000F) | ((c & 1) << 4) | ((m & 0x0070) << 1) | ((c & 2) << 7) | ((m & 0x0F80) << 2)
    }

    static func split(messageType t: UInt16) -> (method: UInt16, cls: STUNClass) {
        let m = (t & 0x000F) | ((t >> 1) & 0x0070) | ((t >> 2) & 0x0F80)
        let c = ((t >> 4) & 1) | ((t >> 7) & 2)
        return (m, STUNClass(rawValue: c) ?? .request)
    }

    /// Cheap test used by demultiplexers: the header shape and magic cookie of RFC 8489.
    public static func looksLikeSTUN(_ b: [UInt8]) -> Bool {
        b.count >= headerLength && b[0] & 0xC0 == 0 && b[3] & 0x03 == 0 && b.stunU32(4) == magicCookie
    }

    public static func parse(_ b: [UInt8]) throws(STUNError) -> STUNMessage {
        guard b.count >= headerLength else { throw .tooShort(length: b.count) }
        guard b[0] & 0xC0 == 0 else { throw .notSTUN(firstByte: b[0]) }
        let cookie = b.stunU32(4)
        guard cookie == magicCookie else { throw .badMagicCookie(cookie) }
        let declared = Int(b.stunU16(2))
        guard declared % 4 == 0, declared == b.count - headerLength else {
            throw .badLength(declared: declared, available: b.count - headerLength)
        }
        let (method, cls) = split(messageType: b.stunU16(0))
        let tid = STUNTransactionID(bytes: b[8..<20]) ?? STUNTransactionID(high: 0, low: 0)

        var attrs: [STUNAttribute] = []
        var i = headerLength
        var sawIntegrity = false
        var sawFingerprint = false
        while i < b.count {
            guard b.count - i >= 4 else { throw .truncatedAttribute(type: 0, declared: 4, available: b.count - i) }
            let type = b.stunU16(i)
            let len = Int(b.stunU16(i + 2))
            let start = i + 4
            let padded = (len + 3) & ~3
            guard b.count - start >= padded else {
                throw .truncatedAttribute(type: type, declared: len, available: b.count - start)
            }
            if sawFingerprint { throw .fingerprintNotLast }
            switch type {
            case STUNAttributeType.messageIntegrity where len != 20:
                throw .malformedAttribute(type: type, reason: "MESSAGE-INTEGRITY must be 20 bytes, got \(len)")
            case STUNAttributeType.messageIntegritySHA256 where len < 16 || len > 32 || len % 4 != 0:
                throw .malformedAttribute(type: type, reason: "MESSAGE-INTEGRITY-SHA256 length \(len) is invalid")
            case STUNAttributeType.fingerprint where len != 4:
                throw .malformedAttribute(type: type, reason: "FINGERPRINT must be 4 bytes, got \(len)")
            default: break
            }
            // After MESSAGE-INTEGRITY only FINGERPRINT counts; anything else is ignored (RFC 8489 14.5).
            if !sawIntegrity || type == STUNAttributeType.fingerprint {
                attrs.append(STUNAttribute(type: type, value: Array(b[start..<start + len]),
                                           padding: padded > len ? Array(b[start + len..<start + padded]) : []))
            }
            if type == STUNAttributeType.messageIntegrity { sawIntegrity = true }
            if type == STUNAttributeType.fingerprint { sawFingerprint = true }
            i = start + padded
        }
        return STUNMessage(method: method, messageClass: cls, transactionID: tid, attributes: attrs)
    }

    /// Writes the message. With `integrityKey`, any stored MESSAGE-INTEGRITY/FINGERPRINT are
    /// dropped and a fresh HMAC-SHA1 is appended; with `fingerprint`, a fresh FINGERPRINT is appended
    /// last. Without either, stored attributes (including received MI/FP) are written as they are.
    public func serialized(integrityKey: [UInt8]? = nil, fingerprint: Bool = false) throws(STUNError) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(128)
        try serialize(into: &out, integrityKey: integrityKey, fingerprint: fingerprint)
        return out
    }

    /// As `serialized`, reusing `out`'s storage (it is cleared first).
    public func serialize(into out: inout [UInt8], integrityKey: [UInt8]? = nil, fingerprint: Bool = false) throws(STUNError) {
        out.removeAll(keepingCapacity: true)
        out.stunPut16(messageType)
        out.stunPut16(0)
        out.stunPut32(Self.magicCookie)
        out.stunPut32(transactionID.high)
        out.stunPut32(UInt32(truncatingIfNeeded: transactionID.low >> 32))
        out.stunPut32(UInt32(truncatingIfNeeded: transactionID.low))
        for a in attributes {
            if integrityKey != nil, a.type == STUNAttributeType.messageIntegrity || a.type == STUNAttributeType.fingerprint { continue }
            if fingerprint, a.type == STUNAttributeType.fingerprint { continue }
            guard a.value.count <= 0xFFFF else { throw .unserializable("attribute 0x\(String(a.type, radix: 16)) value exceeds 65535 bytes") }
            out.stunPut16(a.type)
            out.stunPut16(UInt16(a.value.count))
            out.append(contentsOf: a.value)
            let pad = (4 - a.value.count % 4) % 4
            if a.padding.count == pad { out.append(contentsOf: a.padding) } else {
                for _ in 0..<pad { out.append(0) }
            }
        }
        if let key = integrityKey {
            try setLength(&out, out.count - Self.headerLength + 24)
            let mac = STUNCrypto.hmacSHA1(key: key, data: out)
            out.stunPut16(STUNAttributeType.messageIntegrity)
            out.stunPut16(20)
            out.append(contentsOf: mac)
        }
        if fingerprint {
            try setLength(&out, out.count - Self.headerLength + 8)
            let crc = STUNCrypto.crc32(out) ^ 0x5354_554E
            out.stunPut16(STUNAttributeType.fingerprint)
            out.stunPut16(4)
            out.stunPut32(crc)
        }
        try setLength(&out, out.count - Self.headerLength)
    }

    private func setLength(_ out: inout [UInt8], _ n: Int) throws(STUNError) {
        guard n <= 0xFFFF else { throw .unserializable("message body of \(n) bytes exceeds the 16-bit length field") }
        out[2] = UInt8(n >> 8); out[3] = UInt8(truncatingIfNeeded: n)
    }

    // MARK: - Attribute lookup

    /// The first attribute of `type`, if any.
    public func attribute(_ type: UInt16) -> STUNAttribute? {
        attributes.first { $0.type == type }
    }

    public func has(_ type: UInt16) -> Bool {
        attributes.contains { $0.type == type }
    }

    /// Comprehension-required attribute types this implementation does not know (RFC 8489 section 7.3:
    /// a request carrying one gets a 420 answer, a response carrying one is discarded).
    public var unknownComprehensionRequired: [UInt16] {
        attributes.compactMap { a in
            a.isComprehensionRequired && !STUNAttributeType.understood.contains(a.type) ? a.type : nil
        }
    }

    public mutating func append(_ a: STUNAttribute) {
        attributes.append(a)
    }
}

// Bounds are checked by callers before these reads.
extension Array where Element == UInt8 {
    @inline(__always) func stunU16(_ i: Int) -> UInt16 {
        UInt16(self[i]) << 8 | UInt16(self[i + 1])
    }

    @inline(__always) func stunU32(_ i: Int) -> UInt32 {
        UInt32(self[i]) << 24 | UInt32(self[i + 1]) << 16 | UInt32(self[i + 2]) << 8 | UInt32(self[i + 3])
    }

    @inline(__always) mutating func stunPut16(_ v: UInt16) {
        append(UInt8(v >> 8)); append(UInt8(truncatingIfNeeded: v))
    }

    @inline(__always) mutating func stunPut32(_ v: UInt32) {
        append(UInt8(v >> 24)); append(UInt8(truncatingIfNeeded: v >> 16))
        append(UInt8(truncatingIfNeeded: v >> 8)); append(UInt8(truncatingIfNeeded: v))
    }
}
