/// Counters for what a capture held besides the UDP datagrams it yielded.
public struct CaptureStats: Sendable, Equatable {
    /// Packet records read (pcap records; pcapng enhanced/simple/obsolete packet blocks).
    public var packets = 0
    /// Datagrams returned in `CaptureContents.datagrams`.
    public var udp = 0
    /// Well-formed packets that are not UDP over IPv4/IPv6 (ARP, TCP, ICMP, ...).
    public var nonUDP = 0
    /// IP fragments (first and later ones alike): not reassembled, skipped.
    public var fragmentsSkipped = 0
    /// Packets on an interface whose link type this reader does not decode.
    public var unsupportedLinkType = 0
    /// Packets whose link, IP or UDP header is inconsistent (bad version, lengths that do not add up).
    public var malformed = 0
    /// UDP packets cut short by the capture's snapshot length, so the payload is incomplete.
    public var snapTruncated = 0

    public init() {}
}

/// The file format a capture was read from.
public enum CaptureFormat: Sendable, Equatable {
    /// Classic libpcap; `nanosecond` for the 0xa1b23c4d magic, `bigEndian` for the writer's byte order.
    case pcap(nanosecond: Bool, bigEndian: Bool)
    /// pcapng, with the number of sections read.
    case pcapng(sections: Int)
}

/// Everything recovered from one capture file.
public struct CaptureContents: Sendable {
    /// UDP datagrams in file order.
    public var datagrams: [UDPDatagram]
    public var stats: CaptureStats
    public var format: CaptureFormat
    /// Link types of the file (pcap) or of its interfaces (pcapng), in order of first appearance.
    public var linkTypes: [UInt32]

    public init(datagrams: [UDPDatagram], stats: CaptureStats, format: CaptureFormat, linkTypes: [UInt32]) {
        self.datagrams = datagrams
        self.stats = stats
        self.format = format
        self.linkTypes = linkTypes
    }
}

/// A capture that cannot be used at all. Per-packet problems are counted in `CaptureStats` instead.
public struct CaptureError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// Missing, unreadable or not a regular file.
        case unreadable
        /// Neither pcap nor pcapng (the magic number is wrong).
        case notACapture
        /// The file ends inside a header, record or block.
        case truncated
        /// A structural field is impossible (block length, version, interface reference, option).
        case corrupt
        /// Every packet is on a link type this reader does not decode, so nothing is usable.
        case unsupportedLinkType
        /// A value cannot be written (PcapWriter: a payload too large for one UDP datagram).
        case unwritable
    }

    public var kind: Kind
    /// The file name or path as given by the caller.
    public var file: String
    /// 1-based record (pcap) or block (pcapng) number where the problem is, if it is in one.
    public var record: Int?
    /// Byte offset in the file where the problem is, if known.
    public var offset: Int?
    /// What is wrong, in words.
    public var detail: String
    /// "record" or "block", for the message.
    public var recordWord: String

    public init(_ kind: Kind, file: String, record: Int? = nil, offset: Int? = nil,
                recordWord: String = "record", _ detail: String) {
        self.kind = kind
        self.file = file
        self.record = record
        self.offset = offset
        self.recordWord = recordWord
        self.detail = detail
    }

    public var description: String {
        var place = ""
        if let record { place += "\(recordWord) \(record)" }
        if let offset { place += (place.isEmpty ? "" : " ") + "at byte offset \(offset)" }
        return place.isEmpty ? "\(file): \(detail)" : "\(file): \(place): \(detail)"
    }
}

/// Link-layer header types (tcpdump.org LINKTYPE_ values) this reader knows by name.
public enum LinkType {
    public static let null: UInt32 = 0
    public static let ethernet: UInt32 = 1
    public static let rawBSD12: UInt32 = 12
    public static let rawBSD14: UInt32 = 14
    public static let raw: UInt32 = 101
    public static let loop: UInt32 = 108
    public static let linuxSLL: UInt32 = 113
    public static let ipv4: UInt32 = 228
    public static let ipv6: UInt32 = 229
    public static let linuxSLL2: UInt32 = 276

    /// Link types `CaptureFile` decodes.
    public static let supported: [UInt32] = [null, ethernet, rawBSD12, rawBSD14, raw, loop, linuxSLL, ipv4, ipv6, linuxSLL2]

    /// A readable name such as "Ethernet (1)" for messages.
    public static func name(_ type: UInt32) -> String {
        let n: String
        switch type {
        case null: n = "BSD loopback NULL"
        case ethernet: n = "Ethernet"
        case 9: n = "PPP"
        case rawBSD12, rawBSD14, raw: n = "raw IP"
        case 105: n = "IEEE 802.11"
        case loop: n = "OpenBSD loopback LOOP"
        case linuxSLL: n = "Linux cooked v1"
        case 127: n = "802.11 radiotap"
        case 147...162: n = "user-defined"
        case 192: n = "PPI"
        case 220: n = "USB Linux mmapped"
        case ipv4: n = "raw IPv4"
        case ipv6: n = "raw IPv6"
        case 249: n = "netlink"
        case linuxSLL2: n = "Linux cooked v2"
        default: n = "link type"
        }
        return "\(n) (\(type))"
    }
}
