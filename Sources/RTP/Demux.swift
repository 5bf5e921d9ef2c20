/// What arrived on a multiplexed WebRTC port, judged by the first byte (RFC 7983 section 7).
public enum PacketKind: Sendable, Equatable {
    case stun         // 0...3
    case zrtp         // 16...19
    case dtls         // 20...63
    case turnChannel  // 64...79
    case rtpOrRtcp    // 128...191
    case other

    public static func classify(_ firstByte: UInt8) -> PacketKind {
        switch firstByte {
        case 0...3: return .stun
        case 16...19: return .zrtp
        case 20...63: return .dtls
        case 64...79: return .turnChannel
        case 128...191: return .rtpOrRtcp
        default: return .other
        }
    }

    /// Classifies a datagram; an empty one is `.other`.
    public static func classify(_ packet: [UInt8]) -> PacketKind {
        packet.first.map { classify($0) } ?? .other
    }
}

/// RTCP packet types occupy 192...223 in the second byte (RFC 5761 section 4), which is what tells
/// them apart from RTP on a shared port; RTP payload types 64...95 are avoided for that reason.
@inlinable public func isRTCPPacketType(_ secondByte: UInt8) -> Bool {
    (192...223).contains(secondByte)
}

/// True for a datagram shaped like RTP: version 2, not an RTCP type, long enough for its CSRCs.
public func isLikelyRTP(_ bytes: [UInt8]) -> Bool {
    guard bytes.count >= 12, bytes[0] >> 6 == 2, !isRTCPPacketType(bytes[1]) else { return false }
    return bytes.count >= 12 + 4 * Int(bytes[0] & 0x0F)
}

/// True for a datagram shaped like plain (compound) RTCP: version 2, RTCP packet type, whole 32-bit
/// words, and a first packet whose declared length fits. SRTCP appends an index and tag, so on an
/// encrypted port test `isRTCPPacketType` on the second byte instead.
public func isLikelyRTCP(_ bytes: [UInt8]) -> Bool {
    guard bytes.count >= 4, bytes.count % 4 == 0, bytes[0] >> 6 == 2, isRTCPPacketType(bytes[1]) else { return false }
    return (Int(bytes.u16be(2)) + 1) * 4 <= bytes.count
}
