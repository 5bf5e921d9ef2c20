/// Typed readers (throwing on malformed values) and builders for the attributes ICE uses.
extension STUNMessage {
    /// USERNAME as UTF-8 (RFC 8489 limits it to 513 bytes).
    public func username() throws(STUNError) -> String? {
        guard let a = attribute(STUNAttributeType.username) else { return nil }
        guard a.value.count <= 513 else {
            throw .malformedAttribute(type: a.type, reason: "USERNAME of \(a.value.count) bytes exceeds 513")
        }
        guard let s = String(validating: a.value, as: UTF8.self) else {
            throw .malformedAttribute(type: a.type, reason: "USERNAME is not UTF-8")
        }
        return s
    }

    public func software() -> String? {
        attribute(STUNAttributeType.software).map { String(decoding: $0.value, as: UTF8.self) }
    }

    public func priority() throws(STUNError) -> UInt32? {
        guard let a = attribute(STUNAttributeType.priority) else { return nil }
        guard a.value.count == 4 else { throw .malformedAttribute(type: a.type, reason: "PRIORITY must be 4 bytes, got \(a.value.count)") }
        return a.value.stunU32(0)
    }

    public var useCandidate: Bool { has(STUNAttributeType.useCandidate) }

    /// The tie-breaker of ICE-CONTROLLING.
    public func iceControlling() throws(STUNError) -> UInt64? {
        try tieBreaker(STUNAttributeType.iceControlling)
    }

    /// The tie-breaker of ICE-CONTROLLED.
    public func iceControlled() throws(STUNError) -> UInt64? {
        try tieBreaker(STUNAttributeType.iceControlled)
    }

    private func tieBreaker(_ type: UInt16) throws(STUNError) -> UInt64? {
        guard let a = attribute(type) else { return nil }
        guard a.value.count == 8 else { throw .malformedAttribute(type: type, reason: "tie-breaker must be 8 bytes, got \(a.value.count)") }
        return UInt64(a.value.stunU32(0)) << 32 | UInt64(a.value.stunU32(4))
    }

    /// XOR-MAPPED-ADDRESS decoded with this message's transaction id.
    public func xorMappedAddress() throws(STUNError) -> STUNTransportAddress? {
        guard let a = attribute(STUNAttributeType.xorMappedAddress) else { return nil }
        return try Self.decodeAddress(a, xorWith: transactionID)
    }

    /// MAPPED-ADDRESS (the RFC 3489-era form without XOR).
    public func mappedAddress() throws(STUNError) -> STUNTransportAddress? {
        guard let a = attribute(STUNAttributeType.mappedAddress) else { return nil }
        return try Self.decodeAddress(a, xorWith: nil)
    }

    static func decodeAddress(_ a: STUNAttribute, xorWith tid: STUNTransactionID?) throws(STUNError) -> STUNTransportAddress {
        let v = a.value
        guard v.count >= 4 else { throw .malformedAttribute(type: a.type, reason: "address value of \(v.count) bytes is shorter than 4") }
        var port = v.stunU16(2)
        let family = v[1]
        let mask = xorMask(tid)
        if tid != nil { port ^= 0x2112 }
        switch family {
        case 0x01:
            guard v.count == 8 else { throw .malformedAttribute(type: a.type, reason: "IPv4 address value must be 8 bytes, got \(v.count)") }
            var raw = v.stunU32(4)
            if tid != nil { raw ^= STUNMessage.magicCookie }
            return STUNTransportAddress(ip: STUNIPAddress(ipv4: raw), port: port)
        case 0x02:
            guard v.count == 20 else { throw .malformedAttribute(type: a.type, reason: "IPv6 address value must be 20 bytes, got \(v.count)") }
            var bytes = Array(v[4..<20])
            if tid != nil { for i in 0..<16 { bytes[i] ^= mask[i] } }
            guard let ip = STUNIPAddress(bytes: bytes) else { throw .malformedAttribute(type: a.type, reason: "bad IPv6 address") }
            return STUNTransportAddress(ip: ip, port: port)
        default:
            throw .malformedAttribute(type: a.type, reason: "unknown address family \(family)")
        }
    }

    /// Magic cookie followed by the transaction id: the IPv6 XOR mask.
    static func xorMask(_ tid: STUNTransactionID?) -> [UInt8] {
        var m: [UInt8] = []
        m.reserveCapacity(16)
        m.stunPut32(STUNMessage.magicCookie)
        if let tid { m.append(contentsOf: tid.bytes) } else { m.append(contentsOf: [UInt8](repeating: 0, count: 12)) }
        return m
    }

    /// ERROR-CODE as (code 300...699, reason phrase).
    public func errorCode() throws(STUNError) -> (code: Int, reason: String)? {
        guard let a = attribute(STUNAttributeType.errorCode) else { return nil }
        guard a.value.count >= 4 else { throw .malformedAttribute(type: a.type, reason: "ERROR-CODE shorter than 4 bytes") }
        let cls = Int(a.value[2] & 0x07), number = Int(a.value[3])
        guard (3...6).contains(cls), number < 100 else {
            throw .malformedAttribute(type: a.type, reason: "ERROR-CODE class \(cls) number \(number) is out of range")
        }
        return (cls * 100 + number, String(decoding: a.value[4...], as: UTF8.self))
    }

    /// UNKNOWN-ATTRIBUTES as a list of types.
    public func unknownAttributes() throws(STUNError) -> [UInt16]? {
        guard let a = attribute(STUNAttributeType.unknownAttributes) else { return nil }
        guard a.value.count % 2 == 0 else { throw .malformedAttribute(type: a.type, reason: "UNKNOWN-ATTRIBUTES has an odd length") }
        return stride(from: 0, to: a.value.count, by: 2).map { a.value.stunU16($0) }
    }
}

extension STUNAttribute {
    public static func username(_ s: String) -> STUNAttribute {
        STUNAttribute(type: STUNAttributeType.username, value: Array(s.utf8))
    }

    public static func software(_ s: String) -> STUNAttribute {
        STUNAttribute(type: STUNAttributeType.software, value: Array(s.utf8))
    }

    public static func priority(_ p: UInt32) -> STUNAttribute {
        var v: [UInt8] = []
        v.stunPut32(p)
        return STUNAttribute(type: STUNAttributeType.priority, value: v)
    }

    public static var useCandidate: STUNAttribute {
        STUNAttribute(type: STUNAttributeType.useCandidate, value: [])
    }

    public static func iceControlling(_ tieBreaker: UInt64) -> STUNAttribute {
        STUNAttribute(type: STUNAttributeType.iceControlling, value: tieBreakerBytes(tieBreaker))
    }

    public static func iceControlled(_ tieBreaker: UInt64) -> STUNAttribute {
        STUNAttribute(type: STUNAttributeType.iceControlled, value: tieBreakerBytes(tieBreaker))
    }

    private static func tieBreakerBytes(_ t: UInt64) -> [UInt8] {
        var v: [UInt8] = []
        v.stunPut32(UInt32(truncatingIfNeeded: t >> 32))
        v.stunPut32(UInt32(truncatingIfNeeded: t))
        return v
    }

    /// XOR-MAPPED-ADDRESS for a response in transaction `tid`.
    public static func xorMappedAddress(_ address: STUNTransportAddress, transactionID tid: STUNTransactionID) -> STUNAttribute {
        var v: [UInt8] = [0, address.ip.isIPv4 ? 0x01 : 0x02]
        v.stunPut16(address.port ^ 0x2112)
        if address.ip.isIPv4 {
            v.stunPut32(address.ip.ipv4Value ^ STUNMessage.magicCookie)
        } else {
            let mask = STUNMessage.xorMask(tid)
            for (i, b) in address.ip.bytes.enumerated() { v.append(b ^ mask[i]) }
        }
        return STUNAttribute(type: STUNAttributeType.xorMappedAddress, value: v)
    }

    /// ERROR-CODE for `code` in 300...699 with a reason phrase.
    public static func errorCode(_ code: Int, reason: String) -> STUNAttribute {
        let c = min(max(code, 300), 699)
        var v: [UInt8] = [0, 0, UInt8(c / 100), UInt8(c % 100)]
        v.append(contentsOf: reason.utf8.prefix(763))
        return STUNAttribute(type: STUNAttributeType.errorCode, value: v)
    }

    public static func unknownAttributes(_ types: [UInt16]) -> STUNAttribute {
        var v: [UInt8] = []
        for t in types { v.stunPut16(t) }
        return STUNAttribute(type: STUNAttributeType.unknownAttributes, value: v)
    }
}
