import Foundation
import PacketCapture
import Testing

private let payload: [UInt8] = [0x80, 0x6F, 0x00, 0x01, 0, 0, 0x03, 0xC0, 0x11, 0x11, 0x11, 0x11, 0xFC, 0xFF, 0xFE]
private let srcV4 = Endpoint(address: .v4(0xC000_0201), port: 5004)
private let dstV4 = Endpoint(address: .v4(0xC633_6407), port: 6000)
private let srcV6 = Endpoint(address: IPAddress("2001:db8::1")!, port: 5004)
private let dstV6 = Endpoint(address: IPAddress("2001:db8::2")!, port: 6000)

private let udp = PCTWire.udp(5004, 6000, payload)
private let ip4 = PCTWire.ipv4(udp)
private let ip6 = PCTWire.ipv6(udp)

private func parse(_ bytes: [UInt8]) throws -> CaptureContents {
    try CaptureFile.parse(bytes, name: "test.pcap")
}

private func parseError(_ bytes: [UInt8], name: String = "bad.pcap") -> CaptureError? {
    do {
        _ = try CaptureFile.parse(bytes, name: name)
        return nil
    } catch {
        return error
    }
}

private func pcap(_ frames: [[UInt8]], linkType: UInt32 = 1, order: PCTOrder = .little, nanosecond: Bool = false,
                  snaplen: UInt32 = 65535) -> [UInt8] {
    var w = PCTPcap(order: order, nanosecond: nanosecond, snaplen: snaplen, linkType: linkType)
    for (i, f) in frames.enumerated() { w.add(f, seconds: 1_700_000_000 + UInt32(i), fraction: 250) }
    return w.bytes
}

@Suite struct PacketCaptureTests {
    // MARK: classic pcap

    @Test func littleEndianMicrosecondEthernetIPv4() throws {
        var w = PCTPcap(order: .little, nanosecond: false, linkType: 1)
        w.add(PCTWire.ethernet(0x0800, ip4), seconds: 1_700_000_000, fraction: 123_456)
        w.add(PCTWire.ethernet(0x0800, ip4), seconds: 1_700_000_001, fraction: 999_999)
        let c = try parse(w.bytes)
        #expect(c.format == .pcap(nanosecond: false, bigEndian: false))
        #expect(c.linkTypes == [1])
        #expect(c.datagrams.count == 2)
        let d = c.datagrams[0]
        #expect(d.timestampNs == 1_700_000_000_123_456_000)
        #expect(c.datagrams[1].timestampNs == 1_700_000_001_999_999_000)
        #expect(d.source == srcV4)
        #expect(d.destination == dstV4)
        #expect(d.payload == payload)
        #expect(c.stats.packets == 2 && c.stats.udp == 2 && c.stats.malformed == 0)
    }

    @Test func bigEndianNanosecond() throws {
        var w = PCTPcap(order: .big, nanosecond: true, linkType: 101)
        w.add(ip6, seconds: 5, fraction: 123_456_789)
        let c = try parse(w.bytes)
        #expect(c.format == .pcap(nanosecond: true, bigEndian: true))
        #expect(c.datagrams.map(\.timestampNs) == [5_123_456_789])
        #expect(c.datagrams.first?.source == srcV6)
        #expect(c.datagrams.first?.destination == dstV6)
        #expect(c.datagrams.first?.payload == payload)
    }

    @Test func modifiedPcapRecordHeaders() throws {
        // Kuznetzov's patched format (magic a1b2cd34): 8 more bytes per record header.
        var b: [UInt8] = []
        b.pct32(0xA1B2_CD34, .little)
        b.pct16(2, .little); b.pct16(4, .little)
        b.pct32(0, .little); b.pct32(0, .little); b.pct32(65535, .little); b.pct32(101, .little)
        for i in 0..<2 {
            b.pct32(10 + UInt32(i), .little); b.pct32(500, .little)
            b.pct32(UInt32(ip4.count), .little); b.pct32(UInt32(ip4.count), .little)
            b.pct32(2, .little); b.pct16(0x0800, .little); b += [0, 0]
            b += ip4
        }
        let c = try parse(b)
        #expect(c.datagrams.map(\.timestampNs) == [10_000_500_000, 11_000_500_000])
        #expect(c.datagrams.allSatisfy { $0.payload == payload })
    }

    struct LinkCase: Sendable, CustomStringConvertible {
        var description: String
        var linkType: UInt32
        var frame: [UInt8]
        var v6: Bool
    }

    static let linkCases: [LinkCase] = [
        LinkCase(description: "ethernet v4", linkType: 1, frame: PCTWire.ethernet(0x0800, ip4), v6: false),
        LinkCase(description: "ethernet v6", linkType: 1, frame: PCTWire.ethernet(0x86DD, ip6), v6: true),
        LinkCase(description: "802.1Q", linkType: 1, frame: PCTWire.ethernet(0x0800, ip4, vlans: [0x8100]), v6: false),
        LinkCase(description: "802.1ad QinQ", linkType: 1,
                 frame: PCTWire.ethernet(0x86DD, ip6, vlans: [0x88A8, 0x8100]), v6: true),
        LinkCase(description: "triple tag", linkType: 1,
                 frame: PCTWire.ethernet(0x0800, ip4, vlans: [0x9100, 0x88A8, 0x8100]), v6: false),
        LinkCase(description: "SLL v4", linkType: 113, frame: PCTWire.sll(0x0800, ip4), v6: false),
        LinkCase(description: "SLL v6", linkType: 113, frame: PCTWire.sll(0x86DD, ip6), v6: true),
        LinkCase(description: "SLL2 v4", linkType: 276, frame: PCTWire.sll2(0x0800, ip4), v6: false),
        LinkCase(description: "SLL2 v6", linkType: 276, frame: PCTWire.sll2(0x86DD, ip6), v6: true),
        LinkCase(description: "NULL LE v4", linkType: 0, frame: PCTWire.null(2, .little, ip4), v6: false),
        LinkCase(description: "NULL BE v4", linkType: 0, frame: PCTWire.null(2, .big, ip4), v6: false),
        LinkCase(description: "NULL Darwin v6", linkType: 0, frame: PCTWire.null(30, .little, ip6), v6: true),
        LinkCase(description: "NULL FreeBSD v6", linkType: 0, frame: PCTWire.null(28, .big, ip6), v6: true),
        LinkCase(description: "NULL OpenBSD v6", linkType: 0, frame: PCTWire.null(24, .little, ip6), v6: true),
        LinkCase(description: "NULL Linux v6", linkType: 0, frame: PCTWire.null(10, .little, ip6), v6: true),
        LinkCase(description: "LOOP v4", linkType: 108, frame: PCTWire.null(2, .big, ip4), v6: false),
        LinkCase(description: "LOOP v6", linkType: 108, frame: PCTWire.null(24, .big, ip6), v6: true),
        LinkCase(description: "raw 101 v4", linkType: 101, frame: ip4, v6: false),
        LinkCase(description: "raw 101 v6", linkType: 101, frame: ip6, v6: true),
        LinkCase(description: "raw 12", linkType: 12, frame: ip4, v6: false),
        LinkCase(description: "raw 14", linkType: 14, frame: ip6, v6: true),
        LinkCase(description: "IPv4 228", linkType: 228, frame: ip4, v6: false),
        LinkCase(description: "IPv6 229", linkType: 229, frame: ip6, v6: true),
    ]

    @Test(arguments: linkCases, [PCTOrder.little, .big])
    func linkTypesInPcapAndPcapng(_ lc: LinkCase, order: PCTOrder) throws {
        let expectedSource = lc.v6 ? srcV6 : srcV4
        let expectedDestination = lc.v6 ? dstV6 : dstV4

        let classic = try parse(pcap([lc.frame, lc.frame], linkType: lc.linkType, order: order))
        #expect(classic.datagrams.count == 2)
        #expect(classic.datagrams.allSatisfy {
            $0.source == expectedSource && $0.destination == expectedDestination && $0.payload == payload
        })
        #expect(classic.datagrams.map(\.timestampNs) == [1_700_000_000_000_250_000, 1_700_000_001_000_250_000])
        #expect(classic.stats.udp == 2 && classic.stats.packets == 2)

        var ng = PCTPcapng(order: order)
        ng.interface(linkType: UInt16(lc.linkType))
        ng.enhanced(lc.frame, units: 1_700_000_000_000_250)
        let n = try parse(ng.bytes)
        #expect(n.format == .pcapng(sections: 1))
        #expect(n.datagrams.count == 1)
        #expect(n.datagrams.first?.timestampNs == 1_700_000_000_000_250_000)
        #expect(n.datagrams.first?.source == expectedSource)
        #expect(n.datagrams.first?.payload == payload)
    }

    @Test func ipv4OptionsAndEthernetPaddingAreHandled() throws {
        // IHL 7 (8 bytes of options) and a short datagram padded to Ethernet's 60-byte minimum.
        let small = PCTWire.udp(1, 2, [0xAB])
        let frame = PCTWire.ethernet(0x0800, PCTWire.ipv4(small, options: [1, 1, 1, 1, 1, 1, 1, 0]), padTo: 60)
        #expect(frame.count == 60)
        let c = try parse(pcap([frame]))
        #expect(c.datagrams.count == 1)
        #expect(c.datagrams.first?.payload == [0xAB])
        #expect(c.datagrams.first?.source.port == 1)
        #expect(c.datagrams.first?.destination.port == 2)
    }

    @Test func ipv4FragmentsAreSkippedAndCounted() throws {
        let first = PCTWire.ethernet(0x0800, PCTWire.ipv4(udp, flagsAndOffset: 0x2000))  // MF, offset 0
        let later = PCTWire.ethernet(0x0800, PCTWire.ipv4(Array(udp.prefix(8)), flagsAndOffset: 0x0003))
        let whole = PCTWire.ethernet(0x0800, PCTWire.ipv4(udp, flagsAndOffset: 0x4000))  // DF only
        let c = try parse(pcap([first, later, whole]))
        #expect(c.stats.fragmentsSkipped == 2)
        #expect(c.stats.udp == 1)
        #expect(c.datagrams.first?.payload == payload)
    }

    @Test func ipv6ExtensionHeadersAreWalked() throws {
        let chained = PCTWire.ipv6(udp, extensions: [
            (0, PCTWire.optionsHeader()),                   // hop-by-hop
            (43, PCTWire.optionsHeader(units: 1)),          // routing, 16 bytes
            (44, PCTWire.fragmentHeader(offset: 0, more: false)),  // atomic fragment
            (60, PCTWire.optionsHeader(units: 2)),          // destination options, 24 bytes
        ])
        let firstFragment = PCTWire.ipv6(udp, extensions: [(44, PCTWire.fragmentHeader(offset: 0, more: true))])
        let laterFragment = PCTWire.ipv6(udp, extensions: [(44, PCTWire.fragmentHeader(offset: 185, more: false))])
        let noNext = PCTWire.ipv6([0, 0, 0, 0], next: 59)
        let icmp = PCTWire.ipv6([128, 0, 0, 0], next: 58)
        let c = try parse(pcap([chained, firstFragment, laterFragment, noNext, icmp], linkType: 101))
        #expect(c.datagrams.count == 1)
        #expect(c.datagrams.first?.payload == payload)
        #expect(c.datagrams.first?.destination == dstV6)
        #expect(c.stats.fragmentsSkipped == 2)
        #expect(c.stats.nonUDP == 2)
    }

    @Test func nonUDPIsCounted() throws {
        let tcp = PCTWire.ethernet(0x0800, PCTWire.ipv4([UInt8](repeating: 0, count: 20), proto: 6))
        let arp = PCTWire.ethernet(0x0806, [UInt8](repeating: 0, count: 28))
        let nullUnknownFamily = PCTWire.null(7, .little, ip4)
        let c1 = try parse(pcap([tcp, arp, PCTWire.ethernet(0x0800, ip4)]))
        #expect(c1.stats.nonUDP == 2)
        #expect(c1.stats.udp == 1)
        let c2 = try parse(pcap([nullUnknownFamily], linkType: 0))
        #expect(c2.stats.nonUDP == 1)
        #expect(c2.datagrams.isEmpty)
    }

    @Test func malformedPacketsAreCountedNotThrown() throws {
        let frames: [[UInt8]] = [
            PCTWire.ipv4(udp, version: 5),                                         // bad version
            PCTWire.ipv4(PCTWire.udp(1, 2, payload, lengthOverride: 200)),         // UDP longer than IP
            PCTWire.ipv4(PCTWire.udp(1, 2, payload, lengthOverride: 7)),           // UDP length < 8
            PCTWire.ipv4(udp, totalLengthOverride: 400),                           // IP longer than frame
            PCTWire.ipv4(udp, totalLengthOverride: 10),                            // total < header
            Array(ip4.prefix(12)),                                                 // not even an IP header
            PCTWire.ipv6(udp, payloadLengthOverride: 0),                           // jumbogram
            [0x00, 0x01],                                                          // raw IP version 0
            ip4,                                                                   // the one good packet
        ]
        let c = try parse(pcap(frames, linkType: 101))
        #expect(c.stats.malformed == 8)
        #expect(c.stats.udp == 1)
        #expect(c.stats.packets == 9)
        // UDP shorter than what IP carries: the UDP length wins (surplus bytes dropped).
        let shortUDP = PCTWire.ipv4(PCTWire.udp(1, 2, payload, lengthOverride: 10))
        #expect(try parse(pcap([shortUDP], linkType: 101)).datagrams.first?.payload == [0x80, 0x6F])
    }

    @Test func snapshotLengthIsRespected() throws {
        // Frames cut by the capture (incl < orig) are not datagrams: the payload would be partial.
        let frame = PCTWire.ethernet(0x0800, ip4)
        var w = PCTPcap(snaplen: 40)
        w.add(Array(frame.prefix(40)), original: frame.count)
        // A record longer than the file's snaplen: only snaplen bytes belong to the packet.
        w.add(frame)
        let c = try parse(w.bytes)
        #expect(c.stats.snapTruncated == 2)
        #expect(c.datagrams.isEmpty)

        // A cut non-UDP packet stays non-UDP, and a cut frame that still holds the whole datagram is fine.
        var w2 = PCTPcap(snaplen: 65535)
        let tcp = PCTWire.ethernet(0x0800, PCTWire.ipv4([UInt8](repeating: 0, count: 200), proto: 6))
        w2.add(Array(tcp.prefix(54)), original: tcp.count)
        w2.add(frame + [0, 0, 0, 0], original: frame.count + 100)
        let c2 = try parse(w2.bytes)
        #expect(c2.stats.nonUDP == 1)
        #expect(c2.datagrams.map(\.payload) == [payload])

        // pcapng: interface snaplen applies to enhanced and simple packet blocks.
        var ng = PCTPcapng()
        ng.interface(linkType: 1, snaplen: 30)
        ng.enhanced(frame, units: 1)
        ng.simple(frame)
        ng.interface(linkType: 1, snaplen: 0)
        ng.enhanced(frame, interface: 1, units: 2)
        let n = try parse(ng.bytes)
        #expect(n.stats.snapTruncated == 2)
        #expect(n.datagrams.count == 1)
    }

    // MARK: pcapng

    @Test func pcapngTimestampResolutionsAndOffsets() throws {
        var ng = PCTPcapng(order: .big)
        ng.interface(linkType: 101)                              // default: microseconds
        ng.interface(linkType: 101, tsresol: 9)                  // nanoseconds
        ng.interface(linkType: 101, tsresol: 0x80 | 10)          // 2^-10 s
        ng.interface(linkType: 101, tsresol: 3, tsoffset: 100)   // milliseconds, +100 s
        ng.interface(linkType: 101, tsresol: 12)                 // picoseconds
        ng.interface(linkType: 101, tsresol: 0x80 | 0)           // whole seconds, base 2
        ng.enhanced(ip4, interface: 0, units: 1_500_000)
        ng.enhanced(ip4, interface: 1, units: 1_500_000_001)
        ng.enhanced(ip4, interface: 2, units: 1536)              // 1.5 s
        ng.enhanced(ip4, interface: 2, units: 1)                 // 1/1024 s = 976562.5 ns
        ng.enhanced(ip4, interface: 3, units: 2500)
        ng.enhanced(ip4, interface: 4, units: 1_500_000_000_123)
        ng.enhanced(ip4, interface: 5, units: 7)
        let c = try parse(ng.bytes)
        #expect(c.datagrams.map(\.timestampNs) == [
            1_500_000_000, 1_500_000_001, 1_500_000_000, 976_562, 102_500_000_000, 1_500_000_000, 7_000_000_000,
        ])
        #expect(c.linkTypes == [101])
    }

    @Test func pcapngMultipleSectionsBothByteOrdersAndSkippedBlocks() throws {
        var ng = PCTPcapng(order: .little)
        ng.interface(linkType: 1)
        ng.block(4, [0, 0, 0, 0])                           // name resolution: skipped
        ng.enhanced(PCTWire.ethernet(0x0800, ip4), units: 10)
        ng.block(5, [UInt8](repeating: 0, count: 12))       // interface statistics: skipped
        ng.block(0x0000_0BAD, [1, 2, 3, 4, 5])              // custom block: skipped
        ng.section(order: .big)
        ng.interface(linkType: 113)                         // interface 0 again, different link type
        ng.enhanced(PCTWire.sll(0x86DD, ip6), units: 20)
        ng.simple(PCTWire.sll(0x0800, ip4))                 // inherits the previous timestamp
        ng.section(order: .little)
        ng.interface(linkType: 276, tsresol: 9)
        ng.enhanced(PCTWire.sll2(0x0800, ip4), units: 30)
        let c = try parse(ng.bytes)
        #expect(c.format == .pcapng(sections: 3))
        #expect(c.linkTypes == [1, 113, 276])
        #expect(c.datagrams.map(\.timestampNs) == [10_000, 20_000, 20_000, 30])
        #expect(c.datagrams.map(\.source) == [srcV4, srcV6, srcV4, srcV4])
        #expect(c.datagrams.allSatisfy { $0.payload == payload })
        #expect(c.stats.packets == 4)
    }

    @Test func unsupportedLinkTypeAloneIsAnErrorButMixedIsCounted() throws {
        let e = parseError(pcap([ip4, ip4], linkType: 105), name: "wifi.pcap")
        #expect(e?.kind == .unsupportedLinkType)
        #expect(e?.description.contains("wifi.pcap") == true)
        #expect(e?.description.contains("IEEE 802.11 (105)") == true)

        var ng = PCTPcapng()
        ng.interface(linkType: 127)
        ng.interface(linkType: 101)
        ng.enhanced(ip4, interface: 0, units: 1)
        ng.enhanced(ip4, interface: 1, units: 2)
        let c = try parse(ng.bytes)
        #expect(c.stats.unsupportedLinkType == 1)
        #expect(c.datagrams.count == 1)

        // Only an unsupported link type and no packets at all: still nothing usable.
        #expect(parseError(pcap([], linkType: 127))?.kind == .unsupportedLinkType)
        // Supported link type, but nothing UDP in it: not an error, just empty.
        let none = try parse(pcap([PCTWire.ethernet(0x0806, [0, 0])]))
        #expect(none.datagrams.isEmpty && none.stats.nonUDP == 1)
        // A header-only capture is empty, not an error.
        #expect(try parse(pcap([])).datagrams.isEmpty)
    }

    // MARK: errors

    @Test func notACapture() {
        let empty = parseError([])
        #expect(empty?.kind == .notACapture)
        let text = parseError(Array("hello, world".utf8), name: "notes.txt")
        #expect(text?.kind == .notACapture)
        #expect(text?.offset == 0)
        #expect(text?.description.contains("notes.txt") == true)
        #expect(text?.description.contains("magic") == true)
        #expect(text?.description.contains("68656c6c") == true)
        #expect(parseError([0xD4, 0xC3])?.kind == .truncated)
    }

    @Test func truncatedPcap() {
        let full = pcap([ip4, ip4], linkType: 101)
        // Global header cut.
        let header = parseError(Array(full.prefix(20)))
        #expect(header?.kind == .truncated)
        #expect(header?.description.contains("20 of 24") == true)
        // Second record header cut: record 2, at offset 24 + 16 + frame.
        let secondRecord = 24 + 16 + ip4.count
        let cutHeader = parseError(Array(full.prefix(secondRecord + 10)), name: "cut.pcap")
        #expect(cutHeader?.kind == .truncated)
        #expect(cutHeader?.record == 2)
        #expect(cutHeader?.offset == secondRecord)
        #expect(cutHeader?.description == "cut.pcap: record 2 at byte offset \(secondRecord): "
                + "record header cut off: 10 of 16 bytes (truncated file)")
        // Second record body cut.
        let cutBody = parseError(Array(full.prefix(full.count - 3)))
        #expect(cutBody?.kind == .truncated)
        #expect(cutBody?.record == 2)
        #expect(cutBody?.offset == secondRecord)
        #expect(cutBody?.description.contains("needs \(ip4.count) bytes, only \(ip4.count - 3) remain") == true)
    }

    @Test func corruptPcap() {
        var w = PCTPcap(snaplen: 65535, linkType: 101)
        w.add(ip4)
        w.add(ip4, includedOverride: 0x7FFF_0000)
        let e = parseError(w.bytes)
        #expect(e?.kind == .corrupt)
        #expect(e?.record == 2)
        #expect(parseError(PCTPcap(version: 3).bytes)?.kind == .corrupt)
    }

    @Test func corruptAndTruncatedPcapng() {
        func ng(_ build: (inout PCTPcapng) -> Void) -> [UInt8] {
            var n = PCTPcapng()
            n.interface(linkType: 101)
            build(&n)
            return n.bytes
        }
        // Block 3 starts after the SHB (28 bytes) and the IDB.
        let good = ng { $0.enhanced(ip4, units: 1) }
        let third = 28 + (good.count - 28 - (12 + 20 + ((ip4.count + 3) & ~3) + 12))

        let notMultiple = parseError(ng { $0.block(6, [UInt8](repeating: 0, count: 24), lengthOverride: 34) })
        #expect(notMultiple?.kind == .corrupt)
        #expect(notMultiple?.record == 3)
        #expect(notMultiple?.offset == third)
        #expect(notMultiple?.description.contains("block 3") == true)

        let tooSmall = parseError(ng { $0.block(6, [], lengthOverride: 8) })
        #expect(tooSmall?.kind == .corrupt)

        let trailer = parseError(ng { $0.block(6, [UInt8](repeating: 0, count: 8), trailerOverride: 24) })
        #expect(trailer?.kind == .corrupt)
        #expect(trailer?.description.contains("trailing length 24") == true)

        let overrun = parseError(ng { $0.block(6, [UInt8](repeating: 0, count: 8), lengthOverride: 4096) })
        #expect(overrun?.kind == .truncated)
        #expect(overrun?.record == 3)

        let cut = parseError(Array(good.prefix(good.count - 6)))
        #expect(cut?.kind == .truncated)
        #expect(cut?.record == 3)
        let cutHeader = parseError(good + [0x06, 0, 0, 0, 0x20])
        #expect(cutHeader?.kind == .truncated)
        #expect(cutHeader?.record == 4)
        #expect(cutHeader?.offset == good.count)

        let badInterface = parseError(ng { $0.enhanced(ip4, interface: 3, units: 1) })
        #expect(badInterface?.kind == .corrupt)
        #expect(badInterface?.description.contains("interface 3") == true)

        let capturedTooLong = parseError(ng { $0.enhanced(ip4, units: 1, capturedOverride: 5000) })
        #expect(capturedTooLong?.kind == .corrupt)

        var badBOM = PCTPcapng().bytes
        badBOM[8] = 0x99
        #expect(parseError(badBOM)?.kind == .corrupt)

        var version2 = PCTPcapng()
        version2.section(order: .little, major: 2)
        #expect(parseError(version2.bytes)?.kind == .corrupt)

        var noInterface = PCTPcapng()
        noInterface.simple(ip4)
        #expect(parseError(noInterface.bytes)?.kind == .corrupt)
    }

    @Test func readFromDisk() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pct-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("one.pcap").path
        let bytes = pcap([ip4, ip6], linkType: 101)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let c = try CaptureFile.read(path: path)
        #expect(c.datagrams.map(\.source) == [srcV4, srcV6])

        let missing = dir.appendingPathComponent("nope.pcap").path
        do {
            _ = try CaptureFile.read(path: missing)
            Issue.record("missing file parsed")
        } catch {
            #expect(error.kind == .unreadable)
            #expect(error.description.contains(missing))
            #expect(error.description.contains("No such file"))
        }
        do {
            _ = try CaptureFile.read(path: dir.path)
            Issue.record("directory parsed")
        } catch {
            #expect(error.kind == .unreadable)
        }
    }

    // MARK: writer and addresses

    @Test func writerRoundTripsThroughTheReader() throws {
        let datagrams = [
            UDPDatagram(timestampNs: 1_700_000_000_123_456_789, source: srcV4, destination: dstV4, payload: payload),
            UDPDatagram(timestampNs: 1_700_000_000_223_456_789, source: srcV6, destination: dstV6, payload: [1, 2, 3]),
            UDPDatagram(timestampNs: 5, source: srcV4, destination: dstV6, payload: []),
        ]
        var w = PcapWriter()
        var file: [UInt8] = []
        for d in datagrams {
            try w.append(d)
            file += w.drain()
        }
        #expect(w.bytes.isEmpty)
        let c = try parse(file)
        #expect(c.format == .pcap(nanosecond: true, bigEndian: false))
        #expect(c.datagrams.count == 3)
        #expect(Array(c.datagrams.prefix(2)) == Array(datagrams.prefix(2)))
        #expect(c.datagrams[2].source.address.description == "::ffff:192.0.2.1")
        #expect(c.datagrams[2].destination == dstV6)

        // The IPv4 header checksum verifies (ones' complement sum of the header is 0xFFFF).
        let ipHeader = Array(file[(24 + 16)..<(24 + 16 + 20)])
        var sum: UInt32 = 0
        for i in stride(from: 0, to: 20, by: 2) { sum += UInt32(ipHeader[i]) << 8 | UInt32(ipHeader[i + 1]) }
        while sum > 0xFFFF { sum = (sum & 0xFFFF) + (sum >> 16) }
        #expect(sum == 0xFFFF)

        var big = PcapWriter()
        #expect(throws: CaptureError.self) {
            try big.append(UDPDatagram(timestampNs: 0, source: srcV4, destination: dstV4,
                                       payload: [UInt8](repeating: 0, count: 65_508)))
        }
    }

    @Test func addressText() {
        #expect(srcV4.description == "192.0.2.1:5004")
        #expect(srcV6.description == "[2001:db8::1]:5004")
        #expect(IPAddress("2001:db8:0:0:1:0:0:1")?.description == "2001:db8::1:0:0:1")
        #expect(IPAddress("2001:db8:0:1:1:1:1:1")?.description == "2001:db8:0:1:1:1:1:1")
        #expect(IPAddress("::")?.description == "::")
        #expect(IPAddress("::ffff:192.0.2.1")?.bytes == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 192, 0, 2, 1])
        #expect(IPAddress("fe80::1:2")?.description == "fe80::1:2")
        #expect(IPAddress(bytes: PCTWire.v6a) == srcV6.address)
        #expect(IPAddress(bytes: [10, 0, 0, 1])?.description == "10.0.0.1")
        #expect(IPAddress("1:2:3") == nil)
        #expect(IPAddress("1::2::3") == nil)
        #expect(IPAddress("256.1.1.1") == nil)
        #expect(IPAddress(bytes: [1, 2, 3]) == nil)
    }

    // MARK: fuzz

    @Test func fuzzedCapturesNeverTrap() throws {
        var rng = PCTRandom(seed: 0x5EED_CA97)
        var seeds: [[UInt8]] = []
        for lc in Self.linkCases.prefix(12) {
            seeds.append(pcap([lc.frame, ip4], linkType: lc.linkType, order: .big, nanosecond: true))
        }
        var ng = PCTPcapng(order: .big)
        ng.interface(linkType: 1, tsresol: 0x80 | 20)
        ng.enhanced(PCTWire.ethernet(0x86DD, PCTWire.ipv6(udp, extensions: [(0, PCTWire.optionsHeader())])), units: 99)
        ng.simple(PCTWire.ethernet(0x0800, ip4, vlans: [0x8100]))
        ng.section(order: .little)
        ng.interface(linkType: 113, snaplen: 50)
        ng.enhanced(PCTWire.sll(0x0800, ip4), units: 1)
        seeds.append(ng.bytes)

        var parsed = 0, failed = 0, datagrams = 0
        let iterations = 40_000
        for i in 0..<iterations {
            var input: [UInt8]
            if i % 10 == 0 {
                // Random garbage behind a valid magic.
                let magic: [[UInt8]] = [[0xD4, 0xC3, 0xB2, 0xA1], [0xA1, 0xB2, 0x3C, 0x4D], [0x0A, 0x0D, 0x0D, 0x0A]]
                input = magic[i / 10 % 3] + rng.bytes(Int.random(in: 0...200, using: &rng))
            } else {
                input = seeds[i % seeds.count]
                switch Int.random(in: 0..<5, using: &rng) {
                case 0:  // flip bytes
                    for _ in 0..<Int.random(in: 1...6, using: &rng) {
                        input[Int.random(in: 0..<input.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                    }
                case 1:  // truncate
                    input = Array(input.prefix(Int.random(in: 0...input.count, using: &rng)))
                case 2:  // extreme 32-bit field
                    let at = Int.random(in: 0..<(input.count - 4), using: &rng)
                    let v: [UInt8] = [[0xFF, 0xFF, 0xFF, 0xFF], [0, 0, 0, 0], [0x7F, 0xFF, 0xFF, 0xFC], [0, 0, 0, 1]][i % 4]
                    input.replaceSubrange(at..<(at + 4), with: v)
                case 3:  // insert junk
                    input.insert(contentsOf: rng.bytes(Int.random(in: 1...9, using: &rng)),
                                 at: Int.random(in: 0...input.count, using: &rng))
                default:  // flip one bit in the frames' region
                    let at = Int.random(in: 24..<input.count, using: &rng)
                    input[at] ^= 1 << UInt8.random(in: 0...7, using: &rng)
                }
            }
            do {
                let c = try CaptureFile.parse(input, name: "fuzz")
                parsed += 1
                datagrams += c.datagrams.count
                let s = c.stats
                #expect(s.udp == c.datagrams.count)
                #expect(s.packets == s.udp + s.nonUDP + s.fragmentsSkipped + s.unsupportedLinkType + s.malformed
                        + s.snapTruncated)
                #expect(c.datagrams.allSatisfy { $0.payload.count < input.count })
            } catch {
                failed += 1
                #expect(!error.description.isEmpty)
            }
        }
        // The mix must exercise both outcomes heavily, or the fuzzing is not reaching the decoders.
        #expect(parsed > iterations / 5)
        #expect(failed > iterations / 10)
        #expect(datagrams > iterations / 5)
    }
}
