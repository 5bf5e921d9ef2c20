import AudioCore
import PacketCapture
import RTP

/// One RTP packet of a recorded stream, with its arrival in program time.
public struct TimedPacket: Sendable {
    public var arrivalNs: Int64
    public var packet: RTPPacket
}

/// The packets a manifest capture entry selects from its file, in arrival order.
public struct RecordedStream: Sendable {
    public var capture: Manifest.Capture
    public var packets: [TimedPacket]
    public var skippedDatagrams: Int
}

/// Problems with a capture file or the packets a capture entry selects: always exit-code-2 material.
public struct CaptureSelectionError: Error, CustomStringConvertible, Sendable {
    public let description: String
}

enum RecordedStreams {
    /// Reads every capture file once (several entries may share one), selects each entry's packets
    /// and puts all of them on one program timeline: time 0 is the earliest selected packet.
    static func load(_ captures: [Manifest.Capture]) throws -> [RecordedStream] {
        var files: [String: ParsedCapture] = [:]
        var streams: [RecordedStream] = []
        for c in captures {
            let parsed: ParsedCapture
            if let cached = files[c.file] { parsed = cached } else {
                do { parsed = ParsedCapture(try CaptureFile.read(path: c.file)) } catch {
                    throw CaptureSelectionError(description: error.description)
                }
                files[c.file] = parsed
            }
            streams.append(try select(c, from: parsed))
        }
        guard let start = streams.compactMap({ $0.packets.first?.arrivalNs }).min() else { return streams }
        for i in streams.indices {
            let shift = streams[i].capture.offsetMs * 1_000_000 - start
            for k in streams[i].packets.indices { streams[i].packets[k].arrivalNs += shift }
        }
        return streams
    }

    /// A capture file's UDP datagrams with their RTP parsed once (several entries may select from one file).
    struct ParsedCapture {
        struct Entry { let datagram: UDPDatagram; let rtp: RTPPacket? }
        let entries: [Entry]
        init(_ contents: CaptureContents) {
            entries = contents.datagrams.map { d in
                let rtp = d.payload.count > 1 && !isRTCPPacketType(d.payload[1]) ? try? RTPPacket.parse(d.payload) : nil
                return Entry(datagram: d, rtp: rtp)
            }
        }
    }

    static func select(_ c: Manifest.Capture, from capture: ParsedCapture) throws -> RecordedStream {
        var skipped = 0
        // Group RTP by UDP flow: "one RTP stream" is one flow, even across an SSRC change.
        struct Flow: Hashable { let src: Endpoint; let dst: Endpoint }
        var byFlow: [Flow: [TimedPacket]] = [:]
        var flowOrder: [Flow] = []
        for entry in capture.entries {
            let d = entry.datagram
            guard let p = entry.rtp else { skipped += 1; continue }
            if let ssrc = c.ssrc, p.ssrc != ssrc { continue }
            if let pt = c.payloadType { if p.payloadType != pt { continue } } else if !(96...127).contains(p.payloadType) { continue }
            let flow = Flow(src: d.source, dst: d.destination)
            if byFlow[flow] == nil { flowOrder.append(flow) }
            byFlow[flow, default: []].append(TimedPacket(arrivalNs: d.timestampNs, packet: p))
        }
        let name = "\(c.file) (participant \(c.participantId))"
        if byFlow.isEmpty {
            let what = c.ssrc.map { "with ssrc \($0)" } ?? "at all"
            throw CaptureSelectionError(description: "\(name): no RTP packets \(what) among \(capture.entries.count) UDP datagrams")
        }
        var packets: [TimedPacket]
        if c.ssrc == nil && flowOrder.count > 1 {
            let listed = flowOrder.prefix(6).map { f in
                "\(f.src) → \(f.dst) (ssrc \(byFlow[f]?.first?.packet.ssrc ?? 0))"
            }.joined(separator: ", ")
            throw CaptureSelectionError(description: "\(name): the file holds \(flowOrder.count) RTP streams (\(listed)); name one with \"ssrc\"")
        }
        packets = flowOrder.flatMap { byFlow[$0] ?? [] }
        packets.sort { $0.arrivalNs < $1.arrivalNs }
        return RecordedStream(capture: c, packets: packets, skippedDatagrams: skipped)
    }
}
