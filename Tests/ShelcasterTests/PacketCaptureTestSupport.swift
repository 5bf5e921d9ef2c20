// Builders for capture bytes used by PacketCaptureTests and RTPTests. Everything here is prefixed
// `PCT` because the test target is shared with other modules' tests.

/// SplitMix64: small, fast, seedable; good enough to drive fuzz inputs reproducibly.
struct PCTRandom: RandomNumberGenerator {
    var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func bytes(_ n: Int) -> [UInt8] {
        (0..<n).map { _ in UInt8.random(in: 0...255, using: &self) }
    }
}

enum PCTOrder { case big, little }

extension Array where Element == UInt8 {
    mutating func pct16(_ v: UInt16, _ order: PCTOrder = .big) {
        if order == .big { append(UInt8(v >> 8)); append(UInt8(v & 0xFF)) } else { append(UInt8(v & 0xFF)); append(UInt8(v >> 8)) }
    }

    mutating func pct32(_ v: UInt32, _ order: PCTOrder = .big) {
        if order == .big {
            pct16(UInt16(v >> 16)); pct16(UInt16(v & 0xFFFF))
        } else {
            pct16(UInt16(v & 0xFFFF), .little); pct16(UInt16(v >> 16), .little)
        }
    }
}

/// Frame builders: UDP, IPv4, IPv6 and the link layers.
enum PCTWire {
    static let v4a: [UInt8] = [192, 0, 2, 1]
    static let v4b: [UInt8] = [198, 51, 100, 7]
    static let v6a: [UInt8] = [0x20, 0x01, 0x0D, 0xB8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
    static let v6b: [UInt8] = [0x20, 0x01, 0x0D, 0xB8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]

    static func udp(_ sport: UInt16, _ dport: UInt16, _ payload: [UInt8], lengthOverride: Int? = nil) -> [UInt8] {
        var b: [UInt8] = []
        b.pct16(sport); b.pct16(dport)
        b.pct16(UInt16(lengthOverride ?? 8 + payload.count)); b.pct16(0)
        return b + payload
    }

    static func ipv4(_ payload: [UInt8], src: [UInt8] = v4a, dst: [UInt8] = v4b, proto: UInt8 = 17,
                     options: [UInt8] = [], flagsAndOffset: UInt16 = 0x4000, totalLengthOverride: Int? = nil,
                     version: UInt8 = 4) -> [UInt8] {
        let ihl = (20 + options.count) / 4
        var b: [UInt8] = [version << 4 | UInt8(ihl), 0]
        b.pct16(UInt16(totalLengthOverride ?? 20 + options.count + payload.count))
        b.pct16(0x1234); b.pct16(flagsAndOffset)
        b += [64, proto, 0, 0] + src + dst + options
        return b + payload
    }

    /// `extensions`: (header type, whole header bytes after the next-header byte is filled in).
    static func ipv6(_ payload: [UInt8], src: [UInt8] = v6a, dst: [UInt8] = v6b, next: UInt8 = 17,
                     extensions: [(type: UInt8, body: [UInt8])] = [], payloadLengthOverride: Int? = nil) -> [UInt8] {
        // Chain: fixed header's next = first extension type; each extension's first byte = the next one.
        var chain: [UInt8] = []
        for (i, e) in extensions.enumerated() {
            var h = e.body
            h[0] = i + 1 < extensions.count ? extensions[i + 1].type : next
            chain += h
        }
        let first = extensions.first?.type ?? next
        var b: [UInt8] = [0x60, 0, 0, 0]
        b.pct16(UInt16(payloadLengthOverride ?? chain.count + payload.count))
        b += [first, 64] + src + dst
        return b + chain + payload
    }

    /// An 8-byte-unit extension header (hop-by-hop, destination, routing): `units` extra 8-byte units.
    static func optionsHeader(units: UInt8 = 0) -> [UInt8] {
        [0, units] + [UInt8](repeating: 0, count: 6 + 8 * Int(units))
    }

    static func fragmentHeader(offset: UInt16, more: Bool) -> [UInt8] {
        var b: [UInt8] = [0, 0]
        b.pct16(offset << 3 | (more ? 1 : 0))
        b.pct32(0xCAFE)
        return b
    }

    static func ethernet(_ etherType: UInt16, _ payload: [UInt8], vlans: [UInt16] = [], padTo: Int = 0) -> [UInt8] {
        var b: [UInt8] = [0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2]
        for (i, tpid) in vlans.enumerated() {
            b.pct16(tpid)
            b.pct16(UInt16(100 + i))  // TCI: VLAN id
        }
        b.pct16(etherType)
        b += payload
        while b.count < padTo { b.append(0) }
        return b
    }

    static func sll(_ proto: UInt16, _ payload: [UInt8]) -> [UInt8] {
        var b: [UInt8] = []
        b.pct16(0); b.pct16(1); b.pct16(6)
        b += [2, 0, 0, 0, 0, 1, 0, 0]
        b.pct16(proto)
        return b + payload
    }

    static func sll2(_ proto: UInt16, _ payload: [UInt8]) -> [UInt8] {
        var b: [UInt8] = []
        b.pct16(proto); b.pct16(0); b.pct32(3); b.pct16(1)
        b += [0, 6, 2, 0, 0, 0, 0, 1, 0, 0]
        return b + payload
    }

    static func null(_ family: UInt32, _ order: PCTOrder, _ payload: [UInt8]) -> [UInt8] {
        var b: [UInt8] = []
        b.pct32(family, order)
        return b + payload
    }
}

/// Writes a classic pcap file.
struct PCTPcap {
    var bytes: [UInt8] = []
    let order: PCTOrder
    let nanosecond: Bool

    init(order: PCTOrder = .little, nanosecond: Bool = false, snaplen: UInt32 = 65535, linkType: UInt32 = 1,
         version: UInt16 = 2) {
        self.order = order
        self.nanosecond = nanosecond
        bytes.pct32(nanosecond ? 0xA1B2_3C4D : 0xA1B2_C3D4, order)
        bytes.pct16(version, order); bytes.pct16(4, order)
        bytes.pct32(0, order); bytes.pct32(0, order)
        bytes.pct32(snaplen, order); bytes.pct32(linkType, order)
    }

    mutating func add(_ frame: [UInt8], seconds: UInt32 = 1_700_000_000, fraction: UInt32 = 0,
                      includedOverride: UInt32? = nil, original: Int? = nil) {
        bytes.pct32(seconds, order); bytes.pct32(fraction, order)
        bytes.pct32(includedOverride ?? UInt32(frame.count), order)
        bytes.pct32(UInt32(original ?? frame.count), order)
        bytes += frame
    }
}

/// Writes pcapng blocks.
struct PCTPcapng {
    var bytes: [UInt8] = []
    var order: PCTOrder

    init(order: PCTOrder = .little) {
        self.order = order
        section(order: order)
    }

    mutating func block(_ type: UInt32, _ body: [UInt8], lengthOverride: UInt32? = nil, trailerOverride: UInt32? = nil) {
        var body = body
        while body.count % 4 != 0 { body.append(0) }
        let length = UInt32(12 + body.count)
        bytes.pct32(type, order)
        bytes.pct32(lengthOverride ?? length, order)
        bytes += body
        bytes.pct32(trailerOverride ?? lengthOverride ?? length, order)
    }

    /// Starts a new section, possibly in the other byte order.
    mutating func section(order: PCTOrder, major: UInt16 = 1) {
        self.order = order
        var body: [UInt8] = []
        body.pct32(0x1A2B_3C4D, order)
        body.pct16(major, order); body.pct16(0, order)
        body += [UInt8](repeating: 0xFF, count: 8)  // section length unknown (-1)
        block(0x0A0D_0D0A, body)
    }

    mutating func interface(linkType: UInt16, snaplen: UInt32 = 0, tsresol: UInt8? = nil, tsoffset: Int64? = nil) {
        var body: [UInt8] = []
        body.pct16(linkType, order); body.pct16(0, order); body.pct32(snaplen, order)
        // A comment option first, so option walking (with padding) is exercised.
        let comment = Array("eth0 test".utf8)
        body.pct16(1, order); body.pct16(UInt16(comment.count), order); body += comment
        while body.count % 4 != 0 { body.append(0) }
        if let tsresol {
            body.pct16(9, order); body.pct16(1, order); body += [tsresol, 0, 0, 0]
        }
        if let tsoffset {
            body.pct16(14, order); body.pct16(8, order)
            let raw = UInt64(bitPattern: tsoffset)
            if order == .big { body.pct32(UInt32(raw >> 32)); body.pct32(UInt32(raw & 0xFFFF_FFFF)) } else {
                body.pct32(UInt32(raw & 0xFFFF_FFFF), .little); body.pct32(UInt32(raw >> 32), .little)
            }
        }
        body.pct16(0, order); body.pct16(0, order)
        block(1, body)
    }

    mutating func enhanced(_ frame: [UInt8], interface: UInt32 = 0, units: UInt64, original: Int? = nil,
                           capturedOverride: UInt32? = nil) {
        var body: [UInt8] = []
        body.pct32(interface, order)
        body.pct32(UInt32(units >> 32), order); body.pct32(UInt32(units & 0xFFFF_FFFF), order)
        body.pct32(capturedOverride ?? UInt32(frame.count), order)
        body.pct32(UInt32(original ?? frame.count), order)
        body += frame
        while body.count % 4 != 0 { body.append(0) }
        // An epb_flags option after the data.
        body.pct16(2, order); body.pct16(4, order); body.pct32(1, order)
        body.pct16(0, order); body.pct16(0, order)
        block(6, body)
    }

    mutating func simple(_ frame: [UInt8], original: Int? = nil) {
        var body: [UInt8] = []
        body.pct32(UInt32(original ?? frame.count), order)
        body += frame
        block(3, body)
    }
}
