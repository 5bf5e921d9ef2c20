import Foundation
import PacketCapture
import Routing
import RTP

/// `join --record-rtp DIR`: every participant's decrypted RTP as a pcap (arrival time as the
/// capture timestamp) plus DIR/manifest.json that `local` replays to the same mix.
///
/// Timeline: capture timestamps are wall-clock (start of the mix + arrival in program time), and
/// every capture gets `offsetMs` = the earliest first arrival of all of them, in program ms.
/// `local` puts time 0 at the earliest packet and shifts each capture by `offsetMs`, so its
/// program time equals the join's (to the millisecond).
public final class RTPRecorder: @unchecked Sendable {
    public let directory: String
    /// Wall clock (Unix ns) and monotonic ns at program time 0.
    let epochStartNs: Int64
    let monoStartNs: UInt64

    private let lock = NSLock()
    private var streams: [ParticipantRecorder] = []
    private var usedNames = Set<String>()

    public init(directory: String, epochStartNs: Int64, monoStartNs: UInt64) throws {
        self.directory = directory
        self.epochStartNs = epochStartNs
        self.monoStartNs = monoStartNs
        try FileManager.default.createDirectory(atPath: directory + "/captures", withIntermediateDirectories: true)
    }

    /// A new capture for one participant (one per participant id; a rejoin is a new id).
    public func stream(for voice: SlotVoice) -> ParticipantRecorder {
        lock.lock(); defer { lock.unlock() }
        if let existing = streams.first(where: { $0.voice.participantId == voice.participantId }) { return existing }
        var base = String(voice.participantId.unicodeScalars.map { s -> Character in
            let c = Character(s)
            return (c.isASCII && (c.isLetter || c.isNumber)) || c == "-" || c == "_" || c == "." ? c : "_"
        }.prefix(80))
        if base.isEmpty || base.hasPrefix(".") { base = "p" + base }
        var name = base
        var k = 2
        while usedNames.contains(name) { name = "\(base)-\(k)"; k += 1 }
        usedNames.insert(name)
        let n = streams.count
        // One fake UDP flow per participant: 10.0.x.y:5004 → 10.255.255.1:40000.
        let src = Endpoint(address: .v4(0x0A00_0000 | UInt32((n + 2) & 0xFFFF)), port: 5004)
        let dst = Endpoint(address: .v4(0x0AFF_FF01), port: 40000)
        let s = ParticipantRecorder(voice: voice, relativePath: "captures/\(name).pcap", directory: directory,
                                    source: src, destination: dst, epochStartNs: epochStartNs, monoStartNs: monoStartNs)
        streams.append(s)
        return s
    }

    /// Closes every capture and writes the manifest; returns its path. Captures without packets
    /// are left out (and their empty files removed): `local` refuses a capture with no RTP.
    public func finish(showId: String, routing: Routing, routingChanges: [(atMs: Int64, routing: Routing)]) throws -> String {
        lock.lock()
        let all = streams
        lock.unlock()
        for s in all { s.close() }
        let kept = all.filter { $0.packetCount > 0 }
        for s in all where s.packetCount == 0 { try? FileManager.default.removeItem(atPath: directory + "/" + s.relativePath) }
        let offsetMs = kept.compactMap(\.firstProgramNs).min().map { Int64(($0 + 500_000) / 1_000_000) } ?? 0
        var captures: [[String: Any]] = []
        for s in kept {
            var c: [String: Any] = ["file": s.relativePath, "participantId": s.voice.participantId,
                                    "role": s.voice.role.rawValue, "offsetMs": offsetMs]
            if let u = s.voice.userId { c["userId"] = u }
            let info = s.streamInfo
            // One SSRC / payload type: name it. A resubscription brings a new SSRC in the same flow,
            // which `local` follows when no ssrc is given.
            if info.ssrcs.count == 1, let only = info.ssrcs.first { c["ssrc"] = Int(only) }
            if info.payloadTypes.count == 1, let pt = info.payloadTypes.first { c["payloadType"] = Int(pt) }
            captures.append(c)
        }
        var manifest: [String: Any] = [
            "show": ["showId": showId],
            "captures": captures,
            "routing": RoutingJSON.object(routing),
        ]
        if !routingChanges.isEmpty {
            manifest["routingChanges"] = routingChanges.map { ["atMs": $0.atMs, "routing": RoutingJSON.object($0.routing)] }
        }
        let data = try JSONSerialization.data(withJSONObject: manifest, options: [.prettyPrinted, .sortedKeys])
        let path = directory + "/manifest.json"
        try data.write(to: URL(fileURLWithPath: path), options: .atomic)
        return path
    }

    public var packetCount: Int {
        lock.lock(); defer { lock.unlock() }
        return streams.reduce(0) { $0 + $1.packetCount }
    }
}

/// One participant's capture file. `record` is called from the peer's thread.
public final class ParticipantRecorder: @unchecked Sendable {
    public let voice: SlotVoice
    public let relativePath: String
    private let path: String
    private let source: Endpoint
    private let destination: Endpoint
    private let epochStartNs: Int64
    private let monoStartNs: UInt64

    private let lock = NSLock()
    private var writer = PcapWriter()
    private var handle: FileHandle?
    private var failed: String?
    private var closed = false
    private var scratch: [UInt8] = []
    private var packets = 0
    private var ssrcs = Set<UInt32>()
    private var payloadTypes = Set<UInt8>()
    private var firstNs: Int64?

    init(voice: SlotVoice, relativePath: String, directory: String, source: Endpoint, destination: Endpoint,
         epochStartNs: Int64, monoStartNs: UInt64) {
        self.voice = voice
        self.relativePath = relativePath
        path = directory + "/" + relativePath
        self.source = source
        self.destination = destination
        self.epochStartNs = epochStartNs
        self.monoStartNs = monoStartNs
        scratch.reserveCapacity(1500)
    }

    /// Flush threshold: a few hundred packets per write.
    private static let flushBytes = 32 << 10

    /// Appends one packet; returns an error text the first time writing fails (then it stops).
    @discardableResult
    public func record(_ packet: RTPPacket, arrivalMonoNs: UInt64) -> String? {
        lock.lock()
        defer { lock.unlock() }
        guard !closed, failed == nil else { return nil }
        let programNs = Int64(bitPattern: arrivalMonoNs &- monoStartNs)
        scratch.removeAll(keepingCapacity: true)
        do {
            try packet.serialize(into: &scratch)
            try writer.append(UDPDatagram(timestampNs: epochStartNs &+ programNs, source: source, destination: destination, payload: scratch))
        } catch {
            return fail("cannot record a packet: \(error)")
        }
        packets += 1
        ssrcs.insert(packet.ssrc)
        payloadTypes.insert(packet.payloadType)
        if firstNs == nil { firstNs = programNs }
        if writer.bytes.count >= Self.flushBytes { return flush() }
        return nil
    }

    private func flush() -> String? {
        let bytes = writer.drain()
        guard !bytes.isEmpty else { return nil }
        if handle == nil {
            guard FileManager.default.createFile(atPath: path, contents: nil), let h = FileHandle(forWritingAtPath: path) else {
                return fail("cannot create \(path)")
            }
            handle = h
        }
        do { try handle?.write(contentsOf: bytes) } catch { return fail("cannot write \(path): \(error.localizedDescription)") }
        return nil
    }

    private func fail(_ why: String) -> String {
        failed = why
        return why
    }

    func close() {
        lock.lock()
        defer { lock.unlock() }
        guard !closed else { return }
        if packets > 0 && failed == nil { _ = flush() }
        try? handle?.close()
        handle = nil
        closed = true
    }

    public var packetCount: Int {
        lock.lock(); defer { lock.unlock() }
        return failed == nil ? packets : 0
    }

    var firstProgramNs: Int64? {
        lock.lock(); defer { lock.unlock() }
        return firstNs
    }

    var streamInfo: (ssrcs: Set<UInt32>, payloadTypes: Set<UInt8>) {
        lock.lock(); defer { lock.unlock() }
        return (ssrcs, payloadTypes)
    }

    public var failure: String? {
        lock.lock(); defer { lock.unlock() }
        return failed
    }
}

/// The routing item's JSON shape (DATA-MODEL.md), every field written out.
public enum RoutingJSON {
    public static func object(_ r: Routing) -> [String: Any] {
        [
            "tracklistVolume": r.tracklistVolume, "hostVolume": r.hostVolume, "callersVolume": r.callersVolume,
            "masterVolume": r.masterVolume, "onAirCallerIds": r.onAirCallerIds.sorted(),
            "participantVolumes": r.participantVolumes,
            "compression": ["enabled": r.compression.enabled, "threshold": r.compression.threshold, "ratio": r.compression.ratio],
            "limiter": ["enabled": r.limiter.enabled, "ceiling": r.limiter.ceiling],
            "ducking": ["enabled": r.ducking.enabled, "depthDb": r.ducking.depthDb],
            "tracklist": ["state": r.tracklist.state.rawValue, "skipSeq": r.tracklist.skipSeq],
        ]
    }
}
