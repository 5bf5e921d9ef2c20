// Link layer → IP → UDP for one captured frame. Every read is preceded by a length check against
// the frame's end, so hostile bytes can only produce a counted outcome, never a trap.

enum ByteOrder: Sendable {
    case big, little
}

extension Array where Element == UInt8 {
    @inline(__always) func u16be(_ i: Int) -> UInt16 {
        UInt16(self[i]) << 8 | UInt16(self[i + 1])
    }

    @inline(__always) func u32be(_ i: Int) -> UInt32 {
        UInt32(self[i]) << 24 | UInt32(self[i + 1]) << 16 | UInt32(self[i + 2]) << 8 | UInt32(self[i + 3])
    }

    @inline(__always) func u16(_ i: Int, _ order: ByteOrder) -> UInt16 {
        order == .big ? u16be(i) : (UInt16(self[i + 1]) << 8 | UInt16(self[i]))
    }

    @inline(__always) func u32(_ i: Int, _ order: ByteOrder) -> UInt32 {
        order == .big ? u32be(i)
            : (UInt32(self[i + 3]) << 24 | UInt32(self[i + 2]) << 16 | UInt32(self[i + 1]) << 8 | UInt32(self[i]))
    }

    @inline(__always) func u64be(_ i: Int) -> UInt64 {
        UInt64(u32be(i)) << 32 | UInt64(u32be(i + 4))
    }
}

/// What became of one frame.
enum FrameOutcome {
    case udp(source: Endpoint, destination: Endpoint, payload: Range<Int>)
    case nonUDP
    case fragment
    case malformed
    case snapTruncated
    case unsupportedLinkType
}

enum PacketDecoder {
    /// Decodes the frame in `b[start..<end]`.
    /// - Parameter cut: the capture kept fewer bytes than were on the wire (snapshot length), so
    ///   running out of bytes means "truncated by the capture" rather than "malformed".
    static func decode(_ b: [UInt8], start: Int, end: Int, cut: Bool, linkType: UInt32) -> FrameOutcome {
        let short: FrameOutcome = cut ? .snapTruncated : .malformed
        switch linkType {
        case LinkType.ethernet:
            guard end - start >= 14 else { return short }
            return etherType(b, b.u16be(start + 12), at: start + 14, end: end, cut: cut)
        case LinkType.linuxSLL:
            guard end - start >= 16 else { return short }
            return etherType(b, b.u16be(start + 14), at: start + 16, end: end, cut: cut)
        case LinkType.linuxSLL2:
            guard end - start >= 20 else { return short }
            return etherType(b, b.u16be(start), at: start + 20, end: end, cut: cut)
        case LinkType.null, LinkType.loop:
            guard end - start >= 4 else { return short }
            // NULL stores the family in the capturing host's order, LOOP in network order. Families
            // are small numbers, so a value with high bits set is simply the other byte order.
            var family = linkType == LinkType.loop ? b.u32be(start) : b.u32(start, .little)
            if family > 0xFFFF { family = family.byteSwapped }
            switch family {
            case 2: return ipv4(b, at: start + 4, end: end, cut: cut)
            case 10, 24, 28, 30: return ipv6(b, at: start + 4, end: end, cut: cut)  // Linux, BSDs, FreeBSD, Darwin
            default: return .nonUDP
            }
        case LinkType.raw, LinkType.rawBSD12, LinkType.rawBSD14, LinkType.ipv4, LinkType.ipv6:
            guard end > start else { return short }
            switch b[start] >> 4 {
            case 4: return ipv4(b, at: start, end: end, cut: cut)
            case 6: return ipv6(b, at: start, end: end, cut: cut)
            default: return .malformed
            }
        default:
            return .unsupportedLinkType
        }
    }

    /// Dispatches on an EtherType, first stepping over any 802.1Q / 802.1ad (QinQ) tags.
    private static func etherType(_ b: [UInt8], _ type: UInt16, at offset: Int, end: Int, cut: Bool) -> FrameOutcome {
        var type = type
        var off = offset
        while type == 0x8100 || type == 0x88A8 || type == 0x9100 || type == 0x9200 {
            guard end - off >= 4 else { return cut ? .snapTruncated : .malformed }
            type = b.u16be(off + 2)
            off += 4
        }
        switch type {
        case 0x0800: return ipv4(b, at: off, end: end, cut: cut)
        case 0x86DD: return ipv6(b, at: off, end: end, cut: cut)
        default: return .nonUDP
        }
    }

    private static func ipv4(_ b: [UInt8], at off: Int, end: Int, cut: Bool) -> FrameOutcome {
        guard end - off >= 20 else { return cut ? .snapTruncated : .malformed }
        guard b[off] >> 4 == 4 else { return .malformed }
        let headerLength = Int(b[off] & 0x0F) * 4
        let totalLength = Int(b.u16be(off + 2))
        guard headerLength >= 20, totalLength >= headerLength else { return .malformed }
        let flagsAndOffset = b.u16be(off + 6)
        // More-fragments set or a non-zero offset: a piece of a datagram we do not reassemble.
        if flagsAndOffset & 0x2000 != 0 || flagsAndOffset & 0x1FFF != 0 { return .fragment }
        guard b[off + 9] == 17 else { return .nonUDP }
        // Total length trims link-layer trailers (Ethernet padding, FCS).
        guard end - off >= totalLength else { return cut ? .snapTruncated : .malformed }
        let source = IPAddress.v4(b.u32be(off + 12))
        let destination = IPAddress.v4(b.u32be(off + 16))
        return udp(b, at: off + headerLength, ipEnd: off + totalLength, source: source, destination: destination)
    }

    private static func ipv6(_ b: [UInt8], at off: Int, end: Int, cut: Bool) -> FrameOutcome {
        guard end - off >= 40 else { return cut ? .snapTruncated : .malformed }
        guard b[off] >> 4 == 6 else { return .malformed }
        let payloadLength = Int(b.u16be(off + 4))
        // Zero means a jumbogram (hop-by-hop option), which never carries RTP.
        guard payloadLength > 0 else { return .malformed }
        let declaredEnd = off + 40 + payloadLength
        let available = end < declaredEnd ? end : declaredEnd
        let short: FrameOutcome = (cut && end < declaredEnd) ? .snapTruncated : .malformed
        var next = b[off + 6]
        var pos = off + 40
        // Each extension header is at least 8 bytes, so this walk ends within the frame.
        extensionHeaders: while true {
            switch next {
            case 0, 43, 60, 135, 139, 140:  // hop-by-hop, routing, destination, mobility, HIP, shim6
                guard available - pos >= 8 else { return short }
                let length = (Int(b[pos + 1]) + 1) * 8
                guard available - pos >= length else { return short }
                next = b[pos]
                pos += length
            case 51:  // authentication header: length in 4-byte units, minus 2
                guard available - pos >= 8 else { return short }
                let length = (Int(b[pos + 1]) + 2) * 4
                guard available - pos >= length else { return short }
                next = b[pos]
                pos += length
            case 44:  // fragment header
                guard available - pos >= 8 else { return short }
                let offsetAndFlags = b.u16be(pos + 2)
                // Atomic fragments (offset 0, no more fragments) hold a whole datagram.
                if offsetAndFlags & 0xFFF8 != 0 || offsetAndFlags & 1 != 0 { return .fragment }
                next = b[pos]
                pos += 8
            default:
                break extensionHeaders
            }
        }
        guard next == 17 else { return .nonUDP }
        guard end >= declaredEnd else { return short }
        var hi: UInt64 = 0, lo: UInt64 = 0, dhi: UInt64 = 0, dlo: UInt64 = 0
        for i in 0..<8 {
            hi = hi << 8 | UInt64(b[off + 8 + i])
            lo = lo << 8 | UInt64(b[off + 16 + i])
            dhi = dhi << 8 | UInt64(b[off + 24 + i])
            dlo = dlo << 8 | UInt64(b[off + 32 + i])
        }
        return udp(b, at: pos, ipEnd: declaredEnd, source: .v6(high: hi, low: lo), destination: .v6(high: dhi, low: dlo))
    }

    private static func udp(_ b: [UInt8], at off: Int, ipEnd: Int, source: IPAddress, destination: IPAddress) -> FrameOutcome {
        guard ipEnd - off >= 8 else { return .malformed }
        let length = Int(b.u16be(off + 4))
        // The UDP length must cover its own header and fit in what IP says it carries.
        guard length >= 8, length <= ipEnd - off else { return .malformed }
        return .udp(source: Endpoint(address: source, port: b.u16be(off)),
                    destination: Endpoint(address: destination, port: b.u16be(off + 2)),
                    payload: (off + 8)..<(off + length))
    }
}
