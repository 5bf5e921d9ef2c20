/// A pcapng timestamp unit (`if_tsresol`): 10^-exponent or 2^-exponent seconds.
struct TimestampResolution: Sendable, Equatable {
    var powerOfTwo: Bool
    var exponent: Int  // 0...127

    static let microseconds = TimestampResolution(powerOfTwo: false, exponent: 6)

    init(powerOfTwo: Bool, exponent: Int) {
        self.powerOfTwo = powerOfTwo
        self.exponent = exponent
    }

    /// Decodes the option byte: the top bit selects base 2, the rest is the exponent.
    init(optionByte: UInt8) {
        powerOfTwo = optionByte & 0x80 != 0
        exponent = Int(optionByte & 0x7F)
    }

    /// Converts a count of units to nanoseconds, saturating at Int64.max instead of overflowing.
    func nanoseconds(_ units: UInt64) -> Int64 {
        let result: UInt64
        if powerOfTwo {
            // units * 1e9 / 2^exponent with a 128-bit intermediate.
            let (high, low) = units.multipliedFullWidth(by: 1_000_000_000)
            let e = exponent
            if e == 0 {
                result = high != 0 ? UInt64.max : low
            } else if e < 64 {
                result = (high >> UInt64(e)) != 0 ? UInt64.max : (high << UInt64(64 - e)) | (low >> UInt64(e))
            } else {
                result = e >= 128 ? 0 : high >> UInt64(e - 64)
            }
        } else if exponent <= 9 {
            let (product, overflow) = units.multipliedReportingOverflow(by: pow10(9 - exponent))
            result = overflow ? UInt64.max : product
        } else {
            let divisorExponent = exponent - 9
            // 10^20 exceeds UInt64.max, so any larger divisor leaves nothing.
            result = divisorExponent > 19 ? 0 : units / pow10(divisorExponent)
        }
        return result > UInt64(Int64.max) ? Int64.max : Int64(result)
    }

    private func pow10(_ n: Int) -> UInt64 {
        var v: UInt64 = 1
        for _ in 0..<n { v &*= 10 }
        return v
    }
}

/// Walks pcapng blocks: sections, interfaces and packets; unknown blocks are skipped.
struct PcapngReader {
    struct Interface {
        var linkType: UInt32
        var snaplen: Int
        var resolution = TimestampResolution.microseconds
        var offsetSeconds: Int64 = 0
    }

    private static let sectionHeader: UInt32 = 0x0A0D_0D0A
    private static let byteOrderMagic: UInt32 = 0x1A2B_3C4D

    let b: [UInt8]
    let name: String
    private var sink: DatagramSink
    private var order = ByteOrder.little
    private var interfaces: [Interface] = []
    private var sections = 0
    /// Simple Packet Blocks carry no timestamp; they inherit the previous packet's.
    private var lastTimestamp: Int64 = 0

    init(bytes: [UInt8], name: String) {
        b = bytes
        self.name = name
        sink = DatagramSink(name: name)
    }

    private func error(_ kind: CaptureError.Kind, _ block: Int, _ offset: Int, _ detail: String) -> CaptureError {
        CaptureError(kind, file: name, record: block, offset: offset, recordWord: "block", detail)
    }

    mutating func run() throws(CaptureError) -> CaptureContents {
        var pos = 0
        var block = 0
        while pos < b.count {
            block += 1
            let remaining = b.count - pos
            guard remaining >= 12 else {
                throw error(.truncated, block, pos, "block header cut off: \(remaining) of at least 12 bytes (truncated file)")
            }
            // The section header's type reads the same in both byte orders; its byte-order magic
            // then decides how everything in the section (its own length included) is read.
            let isSection = b.u32be(pos) == Self.sectionHeader
            if isSection {
                if b.u32be(pos + 8) == Self.byteOrderMagic {
                    order = .big
                } else if b.u32(pos + 8, .little) == Self.byteOrderMagic {
                    order = .little
                } else {
                    throw error(.corrupt, block, pos + 8,
                                "section header has a bad byte-order magic \(hex(b.u32be(pos + 8))) (expected 1a2b3c4d)")
                }
            } else if block == 1 {
                throw error(.notACapture, block, pos, "pcapng file does not start with a section header block")
            }
            let type = b.u32(pos, order)
            let length = Int(b.u32(pos + 4, order))
            guard length >= (isSection ? 28 : 12), length % 4 == 0 else {
                throw error(.corrupt, block, pos,
                            "block type \(hex(type)) has an invalid total length \(length) "
                            + "(must be a multiple of 4 and at least \(isSection ? 28 : 12))")
            }
            guard length <= remaining else {
                throw error(.truncated, block, pos,
                            "block type \(hex(type)) declares \(length) bytes but only \(remaining) remain (truncated file)")
            }
            let trailer = Int(b.u32(pos + length - 4, order))
            guard trailer == length else {
                throw error(.corrupt, block, pos,
                            "block type \(hex(type)) length \(length) does not match its trailing length \(trailer)")
            }
            let body = pos + 8
            let bodyEnd = pos + length - 4
            switch type {
            case Self.sectionHeader:
                let major = b.u16(body + 4, order), minor = b.u16(body + 6, order)
                guard major == 1 else {
                    throw error(.corrupt, block, pos, "unsupported pcapng version \(major).\(minor) (expected 1.x)")
                }
                sections += 1
                interfaces.removeAll()  // interface ids are per section
            case 1:
                try interfaceDescription(body: body, end: bodyEnd, block: block, pos: pos)
            case 6:
                try packet(body: body, end: bodyEnd, block: block, pos: pos, obsolete: false)
            case 2:
                try packet(body: body, end: bodyEnd, block: block, pos: pos, obsolete: true)
            case 3:
                try simplePacket(body: body, end: bodyEnd, block: block, pos: pos)
            default:
                break  // statistics, name resolution, decryption secrets, custom: not needed
            }
            pos += length
        }
        return try sink.finish(format: .pcapng(sections: sections))
    }

    private mutating func interfaceDescription(body: Int, end: Int, block: Int, pos: Int) throws(CaptureError) {
        guard end - body >= 8 else {
            throw error(.corrupt, block, pos, "interface description block too short: \(end - body) body bytes, need 8")
        }
        var interface = Interface(linkType: UInt32(b.u16(body, order)), snaplen: Int(b.u32(body + 4, order)))
        var o = body + 8
        while end - o >= 4 {
            let code = b.u16(o, order)
            let optionLength = Int(b.u16(o + 2, order))
            if code == 0 { break }  // opt_endofopt
            guard optionLength <= end - o - 4 else {
                throw error(.corrupt, block, o, "interface option \(code) length \(optionLength) overruns its block")
            }
            switch code {
            case 9 where optionLength >= 1:  // if_tsresol
                interface.resolution = TimestampResolution(optionByte: b[o + 4])
            case 14 where optionLength == 8:  // if_tsoffset, seconds
                let raw = order == .big ? b.u64be(o + 4)
                    : UInt64(b.u32(o + 8, .little)) << 32 | UInt64(b.u32(o + 4, .little))
                interface.offsetSeconds = Int64(bitPattern: raw)
            default:
                break
            }
            // Values are padded to 4 bytes; a final option may omit the padding.
            o += 4 + min((optionLength + 3) & ~3, end - o - 4)
        }
        sink.noteLinkType(interface.linkType)
        interfaces.append(interface)
    }

    private mutating func packet(body: Int, end: Int, block: Int, pos: Int, obsolete: Bool) throws(CaptureError) {
        guard end - body >= 20 else {
            throw error(.corrupt, block, pos, "packet block too short: \(end - body) body bytes, need 20")
        }
        let interfaceID = obsolete ? Int(b.u16(body, order)) : Int(b.u32(body, order))
        guard interfaceID < interfaces.count else {
            throw error(.corrupt, block, pos,
                        "packet refers to interface \(interfaceID) but the section defines \(interfaces.count)")
        }
        let interface = interfaces[interfaceID]
        let units = UInt64(b.u32(body + 4, order)) << 32 | UInt64(b.u32(body + 8, order))
        let captured = Int(b.u32(body + 12, order))
        let original = Int(b.u32(body + 16, order))
        let data = body + 20
        guard captured <= end - data else {
            throw error(.corrupt, block, pos,
                        "captured length \(captured) exceeds the \(end - data) data bytes in the block")
        }
        let kept = interface.snaplen > 0 ? min(captured, interface.snaplen) : captured
        let ts = interface.resolution.nanoseconds(units) &+ interface.offsetSeconds &* 1_000_000_000
        lastTimestamp = ts
        sink.frame(b, start: data, end: data + kept, cut: kept < original, linkType: interface.linkType, timestampNs: ts)
    }

    private mutating func simplePacket(body: Int, end: Int, block: Int, pos: Int) throws(CaptureError) {
        guard end - body >= 4 else {
            throw error(.corrupt, block, pos, "simple packet block too short: \(end - body) body bytes, need 4")
        }
        guard let interface = interfaces.first else {
            throw error(.corrupt, block, pos, "simple packet block but the section defines no interface")
        }
        let original = Int(b.u32(body, order))
        let data = body + 4
        // The captured length is implied: the original length, limited by the block and the snaplen.
        var kept = min(original, end - data)
        if interface.snaplen > 0 { kept = min(kept, interface.snaplen) }
        sink.frame(b, start: data, end: data + kept, cut: kept < original, linkType: interface.linkType,
                   timestampNs: lastTimestamp)
    }
}
