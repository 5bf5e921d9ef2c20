/// Why RTP bytes could not be parsed or an `RTPPacket` could not be serialized.
public enum RTPError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Fewer than the 12 bytes of a fixed RTP header.
    case tooShort(length: Int)
    /// The version field is not 2.
    case badVersion(UInt8)
    /// The CSRC count promises more identifiers than the packet holds.
    case truncatedCSRCList(count: Int, length: Int)
    /// The header extension (its 4-byte header or its declared data) runs past the packet.
    case truncatedExtension(declared: Int, available: Int)
    /// The padding bit is set but the count byte is 0 or larger than what follows the header.
    case badPadding(count: Int, available: Int)
    /// The header extension is not in an RFC 8285 form (profile 0xBEDE or 0x100X).
    case notRFC8285Extension(profile: UInt16)
    /// An RFC 8285 element runs past the extension data, or a builder got a bad id or length.
    case malformedExtension(String)
    /// A field cannot be written (payload type over 127, more than 15 CSRCs, ...).
    case unserializable(String)

    public var description: String {
        switch self {
        case .tooShort(let n):
            return "RTP packet too short: \(n) bytes, the fixed header needs 12"
        case .badVersion(let v):
            return "RTP version is \(v), expected 2"
        case .truncatedCSRCList(let count, let length):
            return "RTP CSRC count \(count) needs \(12 + 4 * count) header bytes, packet has \(length)"
        case .truncatedExtension(let declared, let available):
            return "RTP header extension declares \(declared) bytes but only \(available) remain"
        case .badPadding(let count, let available):
            return "RTP padding count \(count) is invalid (must be 1...\(available))"
        case .notRFC8285Extension(let profile):
            return "RTP header extension profile 0x\(String(profile, radix: 16)) is not an RFC 8285 form"
        case .malformedExtension(let what):
            return "RTP header extension: \(what)"
        case .unserializable(let what):
            return "cannot serialize RTP packet: \(what)"
        }
    }
}

extension Array where Element == UInt8 {
    @inline(__always) func u16be(_ i: Int) -> UInt16 {
        UInt16(self[i]) << 8 | UInt16(self[i + 1])
    }

    @inline(__always) func u32be(_ i: Int) -> UInt32 {
        UInt32(self[i]) << 24 | UInt32(self[i + 1]) << 16 | UInt32(self[i + 2]) << 8 | UInt32(self[i + 3])
    }

    @inline(__always) mutating func put16(_ v: UInt16) {
        append(UInt8(v >> 8)); append(UInt8(truncatingIfNeeded: v))
    }

    @inline(__always) mutating func put32(_ v: UInt32) {
        append(UInt8(v >> 24)); append(UInt8(truncatingIfNeeded: v >> 16))
        append(UInt8(truncatingIfNeeded: v >> 8)); append(UInt8(truncatingIfNeeded: v))
    }
}

/// One RTP packet (RFC 3550 section 5.1).
public struct RTPPacket: Sendable, Equatable {
    public var marker: Bool
    public var payloadType: UInt8
    public var sequenceNumber: UInt16
    public var timestamp: UInt32
    public var ssrc: UInt32
    public var csrcs: [UInt32]
    public var headerExtension: RTPHeaderExtension?
    public var payload: [UInt8]
    /// Padding after the payload including its final count byte; 0 means the padding bit is clear.
    public var paddingLength: UInt8

    public init(payloadType: UInt8, sequenceNumber: UInt16, timestamp: UInt32, ssrc: UInt32,
                marker: Bool = false, csrcs: [UInt32] = [], headerExtension: RTPHeaderExtension? = nil,
                payload: [UInt8] = [], paddingLength: UInt8 = 0) {
        self.marker = marker
        self.payloadType = payloadType
        self.sequenceNumber = sequenceNumber
        self.timestamp = timestamp
        self.ssrc = ssrc
        self.csrcs = csrcs
        self.headerExtension = headerExtension
        self.payload = payload
        self.paddingLength = paddingLength
    }

    /// Parses one RTP packet. Any input gives a packet or an `RTPError`; nothing traps.
    public static func parse(_ b: [UInt8]) throws(RTPError) -> RTPPacket {
        let n = b.count
        guard n >= 12 else { throw .tooShort(length: n) }
        let version = b[0] >> 6
        guard version == 2 else { throw .badVersion(version) }
        let hasPadding = b[0] & 0x20 != 0
        let hasExtension = b[0] & 0x10 != 0
        let csrcCount = Int(b[0] & 0x0F)
        var off = 12
        guard n - off >= 4 * csrcCount else { throw .truncatedCSRCList(count: csrcCount, length: n) }
        var csrcs: [UInt32] = []
        if csrcCount > 0 {
            csrcs.reserveCapacity(csrcCount)
            for _ in 0..<csrcCount {
                csrcs.append(b.u32be(off))
                off += 4
            }
        }
        var ext: RTPHeaderExtension?
        if hasExtension {
            guard n - off >= 4 else { throw .truncatedExtension(declared: 4, available: n - off) }
            let profile = b.u16be(off)
            let length = Int(b.u16be(off + 2)) * 4
            guard n - off - 4 >= length else { throw .truncatedExtension(declared: length, available: n - off - 4) }
            ext = RTPHeaderExtension(profile: profile, data: Array(b[(off + 4)..<(off + 4 + length)]))
            off += 4 + length
        }
        var end = n
        var padding: UInt8 = 0
        if hasPadding {
            let count = end > off ? Int(b[end - 1]) : 0
            guard count >= 1, count <= end - off else { throw .badPadding(count: count, available: end - off) }
            padding = UInt8(count)
            end -= count
        }
        return RTPPacket(payloadType: b[1] & 0x7F, sequenceNumber: b.u16be(2), timestamp: b.u32be(4),
                         ssrc: b.u32be(8), marker: b[1] & 0x80 != 0, csrcs: csrcs, headerExtension: ext,
                         payload: Array(b[off..<end]), paddingLength: padding)
    }

    /// Size of the header (fixed part, CSRCs, extension) as serialized.
    public var headerLength: Int {
        12 + 4 * csrcs.count + (headerExtension.map { 4 + ($0.data.count + 3) & ~3 } ?? 0)
    }

    /// The packet's wire bytes.
    public func serialized() throws(RTPError) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(headerLength + payload.count + Int(paddingLength))
        try serialize(into: &out)
        return out
    }

    /// Appends the wire bytes to `out` (lets a sender reuse one buffer). Extension data whose length
    /// is not a multiple of 4 is zero-padded, which RFC 8285 parsers read as padding.
    public func serialize(into out: inout [UInt8]) throws(RTPError) {
        guard payloadType <= 127 else { throw .unserializable("payload type \(payloadType) exceeds 127") }
        guard csrcs.count <= 15 else { throw .unserializable("\(csrcs.count) CSRCs, at most 15 fit") }
        let extWords = headerExtension.map { ($0.data.count + 3) / 4 } ?? 0
        guard extWords <= 0xFFFF else { throw .unserializable("header extension of \(extWords) words exceeds 65535") }
        var first: UInt8 = 0x80 | UInt8(csrcs.count)
        if paddingLength > 0 { first |= 0x20 }
        if headerExtension != nil { first |= 0x10 }
        out.append(first)
        out.append((marker ? 0x80 : 0) | payloadType)
        out.put16(sequenceNumber)
        out.put32(timestamp)
        out.put32(ssrc)
        for c in csrcs { out.put32(c) }
        if let ext = headerExtension {
            out.put16(ext.profile)
            out.put16(UInt16(extWords))
            out.append(contentsOf: ext.data)
            for _ in 0..<(extWords * 4 - ext.data.count) { out.append(0) }
        }
        out.append(contentsOf: payload)
        if paddingLength > 0 {
            for _ in 1..<paddingLength { out.append(0) }
            out.append(paddingLength)
        }
    }
}

/// One RFC 8285 header extension element.
public struct RTPHeaderExtensionElement: Sendable, Equatable {
    public var id: UInt8
    public var data: [UInt8]

    public init(id: UInt8, data: [UInt8]) {
        self.id = id
        self.data = data
    }
}

/// The RTP header extension as carried: a 16-bit profile and data. RFC 8285 elements are decoded
/// only when asked for, so packets whose extensions nobody reads cost no extra work.
public struct RTPHeaderExtension: Sendable, Equatable {
    public static let oneByteProfile: UInt16 = 0xBEDE
    public static let twoByteProfile: UInt16 = 0x1000

    public enum Form: Sendable, Equatable {
        case oneByte, twoByte, other
    }

    public var profile: UInt16
    public var data: [UInt8]

    public init(profile: UInt16, data: [UInt8]) {
        self.profile = profile
        self.data = data
    }

    /// RFC 8285 one-byte form: ids 1...14, 1...16 data bytes each.
    public init(oneByte elements: [RTPHeaderExtensionElement]) throws(RTPError) {
        var data: [UInt8] = []
        for e in elements {
            guard (1...14).contains(e.id) else { throw .malformedExtension("one-byte element id \(e.id) is not in 1...14") }
            guard (1...16).contains(e.data.count) else {
                throw .malformedExtension("one-byte element \(e.id) has \(e.data.count) bytes, must be 1...16")
            }
            data.append(e.id << 4 | UInt8(e.data.count - 1))
            data.append(contentsOf: e.data)
        }
        while data.count % 4 != 0 { data.append(0) }
        self.init(profile: Self.oneByteProfile, data: data)
    }

    /// RFC 8285 two-byte form: ids 1...255, 0...255 data bytes each; `appBits` fill the low 4 profile bits.
    public init(twoByte elements: [RTPHeaderExtensionElement], appBits: UInt8 = 0) throws(RTPError) {
        var data: [UInt8] = []
        for e in elements {
            guard e.id != 0 else { throw .malformedExtension("two-byte element id 0 is reserved for padding") }
            guard e.data.count <= 255 else {
                throw .malformedExtension("two-byte element \(e.id) has \(e.data.count) bytes, at most 255")
            }
            data.append(e.id)
            data.append(UInt8(e.data.count))
            data.append(contentsOf: e.data)
        }
        while data.count % 4 != 0 { data.append(0) }
        self.init(profile: Self.twoByteProfile | UInt16(appBits & 0x0F), data: data)
    }

    public var form: Form {
        if profile == Self.oneByteProfile { return .oneByte }
        if profile & 0xFFF0 == Self.twoByteProfile { return .twoByte }
        return .other
    }

    /// Decodes the RFC 8285 elements, skipping padding bytes.
    public func elements() throws(RTPError) -> [RTPHeaderExtensionElement] {
        var out: [RTPHeaderExtensionElement] = []
        let d = data
        var i = 0
        switch form {
        case .oneByte:
            while i < d.count {
                let id = d[i] >> 4
                if id == 0 { i += 1; continue }  // padding byte; its length nibble is ignored
                if id == 15 { break }  // reserved: processing stops here (RFC 8285 4.2)
                let length = Int(d[i] & 0x0F) + 1
                guard d.count - i - 1 >= length else {
                    throw .malformedExtension("element \(id) declares \(length) bytes, \(d.count - i - 1) remain")
                }
                out.append(RTPHeaderExtensionElement(id: id, data: Array(d[(i + 1)..<(i + 1 + length)])))
                i += 1 + length
            }
        case .twoByte:
            while i < d.count {
                let id = d[i]
                if id == 0 { i += 1; continue }
                guard d.count - i >= 2 else { throw .malformedExtension("element \(id) has no length byte") }
                let length = Int(d[i + 1])
                guard d.count - i - 2 >= length else {
                    throw .malformedExtension("element \(id) declares \(length) bytes, \(d.count - i - 2) remain")
                }
                out.append(RTPHeaderExtensionElement(id: id, data: Array(d[(i + 2)..<(i + 2 + length)])))
                i += 2 + length
            }
        case .other:
            throw .notRFC8285Extension(profile: profile)
        }
        return out
    }

    /// The data of the first element with `id`, or nil when absent or the extension is malformed.
    public func element(id: UInt8) -> [UInt8]? {
        guard let all = try? elements() else { return nil }
        return all.first { $0.id == id }?.data
    }
}
