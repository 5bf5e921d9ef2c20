#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An IPv4 or IPv6 address held in two words, so it hashes and compares without allocating
/// (the ICE receive path looks pairs up by address for every datagram).
public struct STUNIPAddress: Sendable, Hashable, CustomStringConvertible {
    public enum Family: Sendable, Hashable { case v4, v6 }
    public let family: Family
    /// Network-order bytes 0...7 (IPv6) or 0 (IPv4).
    @usableFromInline let high: UInt64
    /// Network-order bytes 8...15 (IPv6) or the IPv4 address in the low 32 bits.
    @usableFromInline let low: UInt64

    public init(ipv4 value: UInt32) {
        family = .v4; high = 0; low = UInt64(value)
    }

    /// 4 bytes make an IPv4 address, 16 an IPv6 one; any other count gives nil.
    public init?<C: Collection>(bytes: C) where C.Element == UInt8 {
        var h: UInt64 = 0, l: UInt64 = 0
        switch bytes.count {
        case 4:
            for b in bytes { l = l << 8 | UInt64(b) }
            family = .v4
        case 16:
            for (i, b) in bytes.enumerated() {
                if i < 8 { h = h << 8 | UInt64(b) } else { l = l << 8 | UInt64(b) }
            }
            family = .v6
        default:
            return nil
        }
        high = h; low = l
    }

    /// Parses a numeric IPv4 or IPv6 literal (no host names, no zone ids).
    public init?(_ text: String) {
        if text.contains(":") {
            var a = in6_addr()
            guard inet_pton(AF_INET6, text, &a) == 1 else { return nil }
            let b = withUnsafeBytes(of: &a) { Array($0) }
            self.init(bytes: b)
        } else {
            var a = in_addr()
            guard inet_pton(AF_INET, text, &a) == 1 else { return nil }
            let b = withUnsafeBytes(of: &a) { Array($0) }
            self.init(bytes: b)
        }
    }

    public var isIPv4: Bool { family == .v4 }

    /// The IPv4 address as a host-order integer (0 for IPv6).
    public var ipv4Value: UInt32 { family == .v4 ? UInt32(truncatingIfNeeded: low) : 0 }

    /// Network-order bytes: 4 for IPv4, 16 for IPv6.
    public var bytes: [UInt8] {
        switch family {
        case .v4:
            let v = UInt32(truncatingIfNeeded: low)
            return [UInt8(v >> 24), UInt8(truncatingIfNeeded: v >> 16), UInt8(truncatingIfNeeded: v >> 8), UInt8(truncatingIfNeeded: v)]
        case .v6:
            var out = [UInt8](repeating: 0, count: 16)
            for i in 0..<8 {
                out[i] = UInt8(truncatingIfNeeded: high >> UInt64(56 - 8 * i))
                out[8 + i] = UInt8(truncatingIfNeeded: low >> UInt64(56 - 8 * i))
            }
            return out
        }
    }

    public var isLoopback: Bool {
        switch family {
        case .v4: return ipv4Value >> 24 == 127
        case .v6: return high == 0 && low == 1
        }
    }

    /// IPv4 169.254/16 or IPv6 fe80::/10: unusable without a scope, never offered as candidates.
    public var isLinkLocal: Bool {
        switch family {
        case .v4: return ipv4Value >> 16 == 0xA9FE
        case .v6: return high >> 54 == 0x3FA
        }
    }

    /// An IPv4-mapped IPv6 address (::ffff:a.b.c.d).
    public var isIPv4Mapped: Bool { family == .v6 && high == 0 && low >> 32 == 0xFFFF }

    public var description: String {
        switch family {
        case .v4:
            let v = ipv4Value
            return "\(v >> 24).\((v >> 16) & 0xFF).\((v >> 8) & 0xFF).\(v & 0xFF)"
        case .v6:
            var a = in6_addr()
            let b = bytes
            withUnsafeMutableBytes(of: &a) { dst in for i in 0..<16 { dst[i] = b[i] } }
            var buf = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
            guard inet_ntop(AF_INET6, &a, &buf, socklen_t(INET6_ADDRSTRLEN)) != nil else { return "?" }
            return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
    }
}

/// An IP address and UDP port, as carried in (XOR-)MAPPED-ADDRESS and used for ICE candidates.
public struct STUNTransportAddress: Sendable, Hashable, CustomStringConvertible {
    public var ip: STUNIPAddress
    public var port: UInt16

    public init(ip: STUNIPAddress, port: UInt16) {
        self.ip = ip; self.port = port
    }

    public var description: String {
        ip.isIPv4 ? "\(ip):\(port)" : "[\(ip)]:\(port)"
    }
}
