import Foundation
import PacketCapture
import RTP
import Testing

// Reads the generated captures in fixtures/ (see fixtures/linktypes/README.md and fixtures/bad/README.md).
private let fixturesRoot = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().appendingPathComponent("../../fixtures").standardizedFileURL.path

private let linktypeFiles = [
    "eth-ipv4.pcap", "eth-ipv6.pcapng", "eth-vlan.pcap", "sll.pcap", "sll2.pcapng", "null.pcap", "raw.pcap",
    "pcap-nanosecond.pcap", "pcap-bigendian.pcap", "pcapng-nanosecond.pcapng",
]

private let fixturesPresent = FileManager.default.fileExists(atPath: fixturesRoot + "/linktypes/eth-ipv4.pcap")

@Suite(.enabled(if: fixturesPresent, "fixtures/linktypes not generated"))
struct PacketCaptureFixtureTests {
    struct Seen: Equatable {
        var timestampNs: Int64
        var packet: RTPPacket
    }

    static func rtp(_ file: String) throws -> (CaptureContents, [Seen]) {
        let contents = try CaptureFile.read(path: fixturesRoot + "/linktypes/" + file)
        let packets = try contents.datagrams.map { d throws -> Seen in
            #expect(isLikelyRTP(d.payload))
            return Seen(timestampNs: d.timestampNs, packet: try RTPPacket.parse(d.payload))
        }
        return (contents, packets)
    }

    @Test func everyLinkTypeFileYieldsTheSameRTPStream() throws {
        let (_, reference) = try Self.rtp("eth-ipv4.pcap")
        #expect(reference.count == 200)
        let epoch: Int64 = 1_767_225_600 * 1_000_000_000  // 2026-01-01T00:00:00Z
        var unwrap = SequenceUnwrapper()
        let first = reference.first.map { unwrap.unwrap($0.packet.sequenceNumber) } ?? 0
        for (k, seen) in reference.enumerated() {
            #expect(seen.packet.ssrc == 0x1111_1111)
            #expect(seen.packet.payloadType == 111)
            #expect(seen.timestampNs == epoch + Int64(k) * 20_000_000)
            #expect(seen.packet.timestamp == reference[0].packet.timestamp &+ UInt32(k * 960))
            if k > 0 { #expect(unwrap.unwrap(seen.packet.sequenceNumber) == first + Int64(k)) }
            #expect(!seen.packet.payload.isEmpty)
        }
        for file in linktypeFiles.dropFirst() {
            let (contents, packets) = try Self.rtp(file)
            #expect(packets == reference, "\(file)")
            #expect(contents.stats.packets == 200 && contents.stats.udp == 200, "\(file)")
            let d = try #require(contents.datagrams.first)
            if file == "eth-ipv6.pcapng" {
                #expect(d.source.description == "[2001:db8::10]:50000")
                #expect(d.destination.description == "[2001:db8::1]:40000")
            } else {
                #expect(d.source.description == "203.0.113.10:50000", "\(file)")
                #expect(d.destination.description == "192.0.2.1:40000", "\(file)")
            }
        }
    }

    @Test func badCapturesGiveTypedErrors() throws {
        do {
            _ = try CaptureFile.read(path: fixturesRoot + "/bad/truncated.pcap")
            Issue.record("truncated.pcap parsed")
        } catch {
            #expect(error.kind == .truncated)
            #expect(error.record == 51)
            #expect(error.offset == 11734)
            #expect(error.description.contains("truncated.pcap"))
        }
        do {
            _ = try CaptureFile.read(path: fixturesRoot + "/bad/garbage.pcap")
            Issue.record("garbage.pcap parsed")
        } catch {
            #expect(error.kind == .notACapture)
            #expect(error.description.contains("garbage.pcap"))
            #expect(error.description.contains("magic"))
        }
        let empty = try CaptureFile.read(path: fixturesRoot + "/bad/empty.pcap")
        #expect(empty.stats.packets == 0 && empty.datagrams.isEmpty)
        let dns = try CaptureFile.read(path: fixturesRoot + "/bad/not-rtp.pcap")
        #expect(dns.datagrams.count == 50)
        #expect(dns.datagrams.allSatisfy { !isLikelyRTP($0.payload) && $0.destination.port == 53 })
        #expect(dns.datagrams.allSatisfy { (try? RTPPacket.parse($0.payload)) == nil })
    }
}
