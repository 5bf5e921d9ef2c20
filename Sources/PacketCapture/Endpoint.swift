/// An IP address held inline (no heap allocation per packet).
public enum IPAddress: Sendable, Hashable, CustomStringConvertible {
    /// IPv4 address as a big-endian (network order) 32-bit value: 192.0.2.1 is 0xC000_0201.
    case v4(UInt32)
    /// IPv6 address as two big-endian 64-bit halves.
    case v6(high: UInt64, low: UInt64)

    /// Builds an address from 4 or 16 network-order bytes; nil for any other count.
    public init?(bytes: [UInt8]) {
        switch bytes.count {
        case 4:
            self = .v4(bytes.withUnsafeBufferPointer { b in
                var v: UInt32 = 0
                for x in b { v = v << 8 | UInt32(x) }
                return v
            })
        case 16:
            var hi: UInt64 = 0, lo: UInt64 = 0
            for i in 0..<8 { hi = hi << 8 | UInt64(bytes[i]) }
            for i in 8..<16 { lo = lo << 8 | UInt64(bytes[i]) }
            self = .v6(high: hi, low: lo)
        default:
            return nil
        }
    }

    /// Parses dotted IPv4 ("192.0.2.1") or IPv6 text ("2001:db8::1", "::ffff:192.0.2.1").
    public init?(_ text: String) {
        if let v4 = IPAddress.parseV4(Substring(text)) {
            self = .v4(v4)
        } else if let v6 = IPAddress.parseV6(text) {
            self = v6
        } else {
            return nil
        }
    }

    /// Network-order bytes: 4 for IPv4, 16 for IPv6.
    public var bytes: [UInt8] {
        switch self {
        case .v4(let a):
            return [UInt8(truncatingIfNeeded: a >> 24), UInt8(truncatingIfNeeded: a >> 16),
                    UInt8(truncatingIfNeeded: a >> 8), UInt8(truncatingIfNeeded: a)]
        case .v6(let hi, let lo):
            var out = [UInt8](repeating: 0, count: 16)
            for i in 0..<8 {
                out[i] = UInt8(truncatingIfNeeded: hi >> UInt64(56 - 8 * i))
                out[8 + i] = UInt8(truncatingIfNeeded: lo >> UInt64(56 - 8 * i))
            }
            return out
        }
    }

    public var isIPv4: Bool { if case .v4 = self { return true } else { return false } }

    /// Dotted quad for IPv4; RFC 5952 canonical text for IPv6 (longest zero run compressed).
    public var description: String {
        switch self {
        case .v4(let a):
            return "\(a >> 24).\(a >> 16 & 0xFF).\(a >> 8 & 0xFF).\(a & 0xFF)"
        case .v6(let hi, let lo):
            // IPv4-mapped addresses keep the dotted tail (RFC 5952 section 5).
            if hi == 0 && lo >> 32 == 0xFFFF {
                return "::ffff:" + IPAddress.v4(UInt32(truncatingIfNeeded: lo)).description
            }
            var groups = [UInt16](repeating: 0, count: 8)
            for i in 0..<4 {
                groups[i] = UInt16(truncatingIfNeeded: hi >> UInt64(48 - 16 * i))
                groups[4 + i] = UInt16(truncatingIfNeeded: lo >> UInt64(48 - 16 * i))
            }
            // Longest run of at least two zero groups; the first one wins a tie (RFC 5952 4.2.3).
            var bestStart = -1, bestLen = 0, i = 0
            while i < 8 {
                if groups[i] == 0 {
                    var j = i
                    while j < 8 && groups[j] == 0 { j += 1 }
                    if j - i > bestLen { bestStart = i; bestLen = j - i }
                    i = j
                } else {
                    i += 1
                }
            }
            if bestLen < 2 { bestStart = -1; bestLen = 0 }
            func hex(_ range: Range<Int>) -> String {
                range.map { String(groups[$0], radix: 16) }.joined(separator: ":")
            }
            if bestStart < 0 { return hex(0..<8) }
            return hex(0..<bestStart) + "::" + hex((bestStart + bestLen)..<8)
        }
    }

    private static func parseV4(_ text: Substring) -> UInt32? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var v: UInt32 = 0
        for p in parts {
            guard !p.isEmpty, p.count <= 3, p.allSatisfy({ $0.isASCII && $0.isNumber }),
                  let n = UInt32(p), n <= 255 else { return nil }
            v = v << 8 | n
        }
        return v
    }

    private static func parseV6(_ text: String) -> IPAddress? {
        guard text.contains(":") else { return nil }
        let halves = splitAtDoubleColon(text)
        guard halves.count <= 2 else { return nil }
        func groups(_ s: Substring, allowV4Tail: Bool) -> [UInt16]? {
            if s.isEmpty { return [] }
            var out: [UInt16] = []
            let parts = s.split(separator: ":", omittingEmptySubsequences: false)
            for (i, p) in parts.enumerated() {
                if allowV4Tail && i == parts.count - 1 && p.contains(".") {
                    guard let v4 = parseV4(p) else { return nil }
                    out.append(UInt16(truncatingIfNeeded: v4 >> 16))
                    out.append(UInt16(truncatingIfNeeded: v4))
                } else {
                    guard !p.isEmpty, p.count <= 4, let g = UInt16(p, radix: 16) else { return nil }
                    out.append(g)
                }
            }
            return out
        }
        var all: [UInt16]
        if halves.count == 2 {
            guard let a = groups(halves[0], allowV4Tail: false),
                  let b = groups(halves[1], allowV4Tail: true), a.count + b.count <= 7 else { return nil }
            all = a + [UInt16](repeating: 0, count: 8 - a.count - b.count) + b
        } else {
            guard let a = groups(halves[0], allowV4Tail: true), a.count == 8 else { return nil }
            all = a
        }
        var hi: UInt64 = 0, lo: UInt64 = 0
        for i in 0..<4 { hi = hi << 16 | UInt64(all[i]) }
        for i in 4..<8 { lo = lo << 16 | UInt64(all[i]) }
        return .v6(high: hi, low: lo)
    }
}

/// Splits at each "::" (valid IPv6 text has at most one).
private func splitAtDoubleColon(_ s: String) -> [Substring] {
    var out: [Substring] = []
    var start = s.startIndex
    var i = s.startIndex
    while i < s.endIndex {
        let next = s.index(after: i)
        if s[i] == ":" && next < s.endIndex && s[next] == ":" {
            out.append(s[start..<i])
            start = s.index(after: next)
            i = start
        } else {
            i = next
        }
    }
    out.append(s[start..<s.endIndex])
    return out
}

/// One side of a UDP flow.
public struct Endpoint: Sendable, Hashable, CustomStringConvertible {
    public var address: IPAddress
    public var port: UInt16

    public init(address: IPAddress, port: UInt16) {
        self.address = address
        self.port = port
    }

    /// "192.0.2.1:5004" or "[2001:db8::1]:5004".
    public var description: String {
        switch address {
        case .v4: return "\(address):\(port)"
        case .v6: return "[\(address)]:\(port)"
        }
    }
}

/// A UDP datagram recovered from a capture.
public struct UDPDatagram: Sendable, Equatable {
    /// Capture timestamp in nanoseconds since the Unix epoch.
    public var timestampNs: Int64
    public var source: Endpoint
    public var destination: Endpoint
    /// The UDP payload (for RTP captures: one RTP or RTCP packet).
    public var payload: [UInt8]

    public init(timestampNs: Int64, source: Endpoint, destination: Endpoint, payload: [UInt8]) {
        self.timestampNs = timestampNs
        self.source = source
        self.destination = destination
        self.payload = payload
    }
}
