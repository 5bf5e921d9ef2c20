/// Why RTCP bytes could not be parsed or an RTCP packet could not be serialized.
public struct RTCPError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// The data ends inside a header or before a packet's declared length.
        case truncated
        /// The version field is not 2.
        case badVersion
        /// The padding count is 0 or larger than the packet.
        case badPadding
        /// The packet's contents do not fit its length (report count, SDES items, BYE reason).
        case malformed
        /// A value cannot be written (too many report blocks, an SDES item over 255 bytes, ...).
        case unserializable
    }

    public var kind: Kind
    /// 0-based index of the packet within the compound packet.
    public var packetIndex: Int?
    /// Byte offset of that packet in the compound packet.
    public var offset: Int?
    public var detail: String

    public init(_ kind: Kind, packetIndex: Int? = nil, offset: Int? = nil, _ detail: String) {
        self.kind = kind
        self.packetIndex = packetIndex
        self.offset = offset
        self.detail = detail
    }

    public var description: String {
        if let packetIndex, let offset {
            return "RTCP packet \(packetIndex) at byte offset \(offset): \(detail)"
        }
        return "RTCP: \(detail)"
    }
}

/// RTCP packet type numbers.
public enum RTCPPacketType {
    public static let senderReport: UInt8 = 200
    public static let receiverReport: UInt8 = 201
    public static let sourceDescription: UInt8 = 202
    public static let goodbye: UInt8 = 203
    public static let application: UInt8 = 204
    public static let transportFeedback: UInt8 = 205
    public static let payloadFeedback: UInt8 = 206
    public static let extendedReport: UInt8 = 207
}

/// Reception report block (RFC 3550 6.4.1).
public struct RTCPReportBlock: Sendable, Equatable {
    public var ssrc: UInt32
    /// Fraction lost since the previous report, in 1/256.
    public var fractionLost: UInt8
    /// Cumulative packets lost; 24-bit signed on the wire (duplicates can make it negative).
    public var cumulativeLost: Int32
    /// Extended highest sequence number received (cycles in the upper 16 bits).
    public var highestSequence: UInt32
    /// Interarrival jitter in timestamp units.
    public var jitter: UInt32
    /// Middle 32 bits of the NTP timestamp of the last sender report received (LSR).
    public var lastSenderReport: UInt32
    /// Delay since that sender report, in 1/65536 s (DLSR).
    public var delaySinceLastSenderReport: UInt32

    public init(ssrc: UInt32, fractionLost: UInt8 = 0, cumulativeLost: Int32 = 0, highestSequence: UInt32 = 0,
                jitter: UInt32 = 0, lastSenderReport: UInt32 = 0, delaySinceLastSenderReport: UInt32 = 0) {
        self.ssrc = ssrc
        self.fractionLost = fractionLost
        self.cumulativeLost = cumulativeLost
        self.highestSequence = highestSequence
        self.jitter = jitter
        self.lastSenderReport = lastSenderReport
        self.delaySinceLastSenderReport = delaySinceLastSenderReport
    }

    static let size = 24

    static func parse(_ b: [UInt8], at o: Int) -> RTCPReportBlock {
        let lostRaw = b.u32be(o + 4) & 0x00FF_FFFF
        // Sign-extend the 24-bit count.
        let lost = Int32(bitPattern: lostRaw & 0x0080_0000 != 0 ? lostRaw | 0xFF00_0000 : lostRaw)
        return RTCPReportBlock(ssrc: b.u32be(o), fractionLost: b[o + 4], cumulativeLost: lost,
                               highestSequence: b.u32be(o + 8), jitter: b.u32be(o + 12),
                               lastSenderReport: b.u32be(o + 16), delaySinceLastSenderReport: b.u32be(o + 20))
    }

    func write(into out: inout [UInt8]) {
        out.put32(ssrc)
        // Out-of-range counts saturate to what 24 bits can say (RFC 3550 A.3).
        let clamped = min(max(cumulativeLost, -0x80_0000), 0x7F_FFFF)
        out.put32(UInt32(fractionLost) << 24 | UInt32(bitPattern: clamped) & 0x00FF_FFFF)
        out.put32(highestSequence)
        out.put32(jitter)
        out.put32(lastSenderReport)
        out.put32(delaySinceLastSenderReport)
    }
}

/// Sender report (RFC 3550 6.4.1).
public struct RTCPSenderReport: Sendable, Equatable {
    public var ssrc: UInt32
    /// 64-bit NTP timestamp: seconds since 1900 in the upper 32 bits, fraction in the lower.
    public var ntpTimestamp: UInt64
    public var rtpTimestamp: UInt32
    public var packetCount: UInt32
    public var octetCount: UInt32
    public var reports: [RTCPReportBlock]
    /// Profile-specific extension bytes after the report blocks (kept as-is).
    public var profileExtension: [UInt8]

    public init(ssrc: UInt32, ntpTimestamp: UInt64, rtpTimestamp: UInt32, packetCount: UInt32, octetCount: UInt32,
                reports: [RTCPReportBlock] = [], profileExtension: [UInt8] = []) {
        self.ssrc = ssrc
        self.ntpTimestamp = ntpTimestamp
        self.rtpTimestamp = rtpTimestamp
        self.packetCount = packetCount
        self.octetCount = octetCount
        self.reports = reports
        self.profileExtension = profileExtension
    }

    /// The middle 32 bits of the NTP timestamp, which receivers echo as LSR.
    public var compactNTP: UInt32 { UInt32(truncatingIfNeeded: ntpTimestamp >> 16) }
}

/// Receiver report (RFC 3550 6.4.2).
public struct RTCPReceiverReport: Sendable, Equatable {
    public var ssrc: UInt32
    public var reports: [RTCPReportBlock]
    public var profileExtension: [UInt8]

    public init(ssrc: UInt32, reports: [RTCPReportBlock] = [], profileExtension: [UInt8] = []) {
        self.ssrc = ssrc
        self.reports = reports
        self.profileExtension = profileExtension
    }
}

/// Source description (RFC 3550 6.5).
public struct RTCPSourceDescription: Sendable, Equatable {
    public struct Item: Sendable, Equatable {
        public static let cname: UInt8 = 1
        public var type: UInt8
        public var value: [UInt8]

        public init(type: UInt8, value: [UInt8]) {
            self.type = type
            self.value = value
        }
    }

    public struct Chunk: Sendable, Equatable {
        public var ssrc: UInt32
        public var items: [Item]

        public init(ssrc: UInt32, items: [Item]) {
            self.ssrc = ssrc
            self.items = items
        }
    }

    public var chunks: [Chunk]

    public init(chunks: [Chunk]) {
        self.chunks = chunks
    }

    /// The CNAME given for `ssrc`, decoded as UTF-8 (invalid sequences repaired).
    public func cname(ssrc: UInt32) -> String? {
        for chunk in chunks where chunk.ssrc == ssrc {
            if let item = chunk.items.first(where: { $0.type == Item.cname }) {
                return String(decoding: item.value, as: UTF8.self)
            }
        }
        return nil
    }
}

/// Goodbye (RFC 3550 6.6).
public struct RTCPGoodbye: Sendable, Equatable {
    public var ssrcs: [UInt32]
    /// Optional reason for leaving, raw bytes (UTF-8 by the RFC).
    public var reason: [UInt8]?

    public init(ssrcs: [UInt32], reason: [UInt8]? = nil) {
        self.ssrcs = ssrcs
        self.reason = reason
    }
}

/// A packet kept undecoded: APP, transport/payload feedback, XR and anything unknown.
public struct RTCPRawPacket: Sendable, Equatable {
    public var packetType: UInt8
    /// The 5-bit count / format / subtype field of the header.
    public var count: UInt8
    /// Everything after the 4-byte header, without padding.
    public var body: [UInt8]

    public init(packetType: UInt8, count: UInt8, body: [UInt8]) {
        self.packetType = packetType
        self.count = count
        self.body = body
    }
}

/// One packet of an RTCP compound packet. Padding is consumed when parsing and not written back.
public enum RTCPPacket: Sendable, Equatable {
    case senderReport(RTCPSenderReport)
    case receiverReport(RTCPReceiverReport)
    case sourceDescription(RTCPSourceDescription)
    case goodbye(RTCPGoodbye)
    case other(RTCPRawPacket)

    public var packetType: UInt8 {
        switch self {
        case .senderReport: return RTCPPacketType.senderReport
        case .receiverReport: return RTCPPacketType.receiverReport
        case .sourceDescription: return RTCPPacketType.sourceDescription
        case .goodbye: return RTCPPacketType.goodbye
        case .other(let raw): return raw.packetType
        }
    }

    // MARK: parsing

    /// Parses a compound packet into its parts. Any input gives packets or an `RTCPError`.
    public static func parseCompound(_ b: [UInt8]) throws(RTCPError) -> [RTCPPacket] {
        guard !b.isEmpty else { throw RTCPError(.truncated, "empty RTCP packet") }
        var out: [RTCPPacket] = []
        var o = 0
        var index = 0
        while o < b.count {
            let remaining = b.count - o
            guard remaining >= 4 else {
                throw RTCPError(.truncated, packetIndex: index, offset: o,
                                "header cut off: \(remaining) of 4 bytes")
            }
            let version = b[o] >> 6
            guard version == 2 else {
                throw RTCPError(.badVersion, packetIndex: index, offset: o, "version is \(version), expected 2")
            }
            let length = (Int(b.u16be(o + 2)) + 1) * 4
            guard length <= remaining else {
                throw RTCPError(.truncated, packetIndex: index, offset: o,
                                "packet type \(b[o + 1]) declares \(length) bytes, only \(remaining) remain")
            }
            var end = o + length
            if b[o] & 0x20 != 0 {
                let pad = Int(b[end - 1])
                guard pad >= 1, pad <= length - 4 else {
                    throw RTCPError(.badPadding, packetIndex: index, offset: o,
                                    "padding count \(pad) is invalid (must be 1...\(length - 4))")
                }
                end -= pad
            }
            out.append(try parseOne(b, start: o, end: end, index: index))
            o += length
            index += 1
        }
        return out
    }

    private static func parseOne(_ b: [UInt8], start o: Int, end: Int, index: Int) throws(RTCPError) -> RTCPPacket {
        let count = Int(b[o] & 0x1F)
        let type = b[o + 1]
        func malformed(_ detail: String) -> RTCPError {
            RTCPError(.malformed, packetIndex: index, offset: o, "packet type \(type): \(detail)")
        }
        switch type {
        case RTCPPacketType.senderReport:
            let need = 28 + count * RTCPReportBlock.size
            guard end - o >= need else {
                throw malformed("sender report with \(count) report blocks needs \(need) bytes, has \(end - o)")
            }
            var reports: [RTCPReportBlock] = []
            reports.reserveCapacity(count)
            for i in 0..<count { reports.append(.parse(b, at: o + 28 + i * RTCPReportBlock.size)) }
            return .senderReport(RTCPSenderReport(
                ssrc: b.u32be(o + 4), ntpTimestamp: UInt64(b.u32be(o + 8)) << 32 | UInt64(b.u32be(o + 12)),
                rtpTimestamp: b.u32be(o + 16), packetCount: b.u32be(o + 20), octetCount: b.u32be(o + 24),
                reports: reports, profileExtension: Array(b[(o + need)..<end])))
        case RTCPPacketType.receiverReport:
            let need = 8 + count * RTCPReportBlock.size
            guard end - o >= need else {
                throw malformed("receiver report with \(count) report blocks needs \(need) bytes, has \(end - o)")
            }
            var reports: [RTCPReportBlock] = []
            reports.reserveCapacity(count)
            for i in 0..<count { reports.append(.parse(b, at: o + 8 + i * RTCPReportBlock.size)) }
            return .receiverReport(RTCPReceiverReport(ssrc: b.u32be(o + 4), reports: reports,
                                                      profileExtension: Array(b[(o + need)..<end])))
        case RTCPPacketType.sourceDescription:
            var chunks: [RTCPSourceDescription.Chunk] = []
            var p = o + 4
            for c in 0..<count {
                guard end - p >= 4 else { throw malformed("SDES chunk \(c) of \(count) cut off") }
                var chunk = RTCPSourceDescription.Chunk(ssrc: b.u32be(p), items: [])
                p += 4
                // Items until a null type byte, then zero fill to the next 32-bit boundary. A chunk
                // that ends exactly at the packet end without the null byte is accepted.
                while p < end && b[p] != 0 {
                    guard end - p >= 2 else { throw malformed("SDES item type \(b[p]) has no length byte") }
                    let length = Int(b[p + 1])
                    guard end - p - 2 >= length else {
                        throw malformed("SDES item type \(b[p]) declares \(length) bytes, \(end - p - 2) remain")
                    }
                    chunk.items.append(.init(type: b[p], value: Array(b[(p + 2)..<(p + 2 + length)])))
                    p += 2 + length
                }
                if p < end { p += 1 }  // the null terminator
                p = min(end, o + ((p - o + 3) & ~3))
                chunks.append(chunk)
            }
            return .sourceDescription(RTCPSourceDescription(chunks: chunks))
        case RTCPPacketType.goodbye:
            guard end - o >= 4 + 4 * count else {
                throw malformed("BYE with \(count) sources needs \(4 + 4 * count) bytes, has \(end - o)")
            }
            var ssrcs: [UInt32] = []
            for i in 0..<count { ssrcs.append(b.u32be(o + 4 + 4 * i)) }
            var reason: [UInt8]?
            let p = o + 4 + 4 * count
            if p < end {
                let length = Int(b[p])
                guard end - p - 1 >= length else {
                    throw malformed("BYE reason declares \(length) bytes, \(end - p - 1) remain")
                }
                reason = Array(b[(p + 1)..<(p + 1 + length)])
            }
            return .goodbye(RTCPGoodbye(ssrcs: ssrcs, reason: reason))
        default:
            return .other(RTCPRawPacket(packetType: type, count: UInt8(count), body: Array(b[(o + 4)..<end])))
        }
    }

    // MARK: serializing

    /// Serializes packets one after another into a compound packet.
    public static func serializeCompound(_ packets: [RTCPPacket]) throws(RTCPError) -> [UInt8] {
        var out: [UInt8] = []
        for p in packets { try p.serialize(into: &out) }
        return out
    }

    public func serialized() throws(RTCPError) -> [UInt8] {
        var out: [UInt8] = []
        try serialize(into: &out)
        return out
    }

    /// Appends this packet's wire bytes to `out`; on error `out` is left as it was.
    public func serialize(into out: inout [UInt8]) throws(RTCPError) {
        let start = out.count
        do {
            try write(into: &out, start: start)
        } catch {
            out.removeSubrange(start...)
            throw error
        }
    }

    private func write(into out: inout [UInt8], start: Int) throws(RTCPError) {
        func header(_ count: Int, _ what: String) throws(RTCPError) {
            guard count <= 31 else { throw RTCPError(.unserializable, "\(count) \(what), at most 31 fit in one packet") }
            out.append(0x80 | UInt8(count))
            out.append(packetType)
            out.put16(0)  // length, patched below
        }
        switch self {
        case .senderReport(let sr):
            try header(sr.reports.count, "report blocks")
            guard sr.profileExtension.count % 4 == 0 else {
                throw RTCPError(.unserializable, "profile extension of \(sr.profileExtension.count) bytes is not whole words")
            }
            out.put32(sr.ssrc)
            out.put32(UInt32(truncatingIfNeeded: sr.ntpTimestamp >> 32))
            out.put32(UInt32(truncatingIfNeeded: sr.ntpTimestamp))
            out.put32(sr.rtpTimestamp)
            out.put32(sr.packetCount)
            out.put32(sr.octetCount)
            for r in sr.reports { r.write(into: &out) }
            out.append(contentsOf: sr.profileExtension)
        case .receiverReport(let rr):
            try header(rr.reports.count, "report blocks")
            guard rr.profileExtension.count % 4 == 0 else {
                throw RTCPError(.unserializable, "profile extension of \(rr.profileExtension.count) bytes is not whole words")
            }
            out.put32(rr.ssrc)
            for r in rr.reports { r.write(into: &out) }
            out.append(contentsOf: rr.profileExtension)
        case .sourceDescription(let sdes):
            try header(sdes.chunks.count, "SDES chunks")
            for chunk in sdes.chunks {
                out.put32(chunk.ssrc)
                for item in chunk.items {
                    guard item.type != 0, item.value.count <= 255 else {
                        throw RTCPError(.unserializable, "SDES item type \(item.type) with \(item.value.count) bytes")
                    }
                    out.append(item.type)
                    out.append(UInt8(item.value.count))
                    out.append(contentsOf: item.value)
                }
                // At least one null byte ends the item list, then fill to a 32-bit boundary.
                out.append(0)
                while (out.count - start) % 4 != 0 { out.append(0) }
            }
        case .goodbye(let bye):
            try header(bye.ssrcs.count, "BYE sources")
            for s in bye.ssrcs { out.put32(s) }
            if let reason = bye.reason {
                guard reason.count <= 255 else {
                    throw RTCPError(.unserializable, "BYE reason of \(reason.count) bytes exceeds 255")
                }
                out.append(UInt8(reason.count))
                out.append(contentsOf: reason)
                while (out.count - start) % 4 != 0 { out.append(0) }
            }
        case .other(let raw):
            guard raw.count <= 31 else {
                throw RTCPError(.unserializable, "count field \(raw.count) exceeds 31")
            }
            guard raw.body.count % 4 == 0 else {
                throw RTCPError(.unserializable, "packet type \(raw.packetType) body of \(raw.body.count) bytes is not whole words")
            }
            out.append(0x80 | raw.count)
            out.append(raw.packetType)
            out.put16(0)
            out.append(contentsOf: raw.body)
        }
        let words = (out.count - start) / 4 - 1
        guard words <= 0xFFFF else {
            throw RTCPError(.unserializable, "packet of \(out.count - start) bytes exceeds the 16-bit length field")
        }
        out[start + 2] = UInt8(words >> 8)
        out[start + 3] = UInt8(words & 0xFF)
    }
}
