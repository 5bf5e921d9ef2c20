import AudioCore
import Foundation
import JitterBuffer
import Logging
import Mixer
import OpusCodec
import ProgramOutput
import Routing
import ShowControl
import Tracklist

/// What `local` was asked to do.
public struct LocalRunOptions: Sendable {
    public var manifestPath: String
    public var output: String
    public var realtime = false
    /// Seconds of program; nil = until the last recorded packet (or the tracklist's end).
    public var duration: Double?
    public var caFile: String?
    /// Who steers the show besides the manifest (the DynamoDB control plane); nil for a pure local run.
    public var control: (any ShowControl)?
    /// A tracklist from the control plane, replacing the manifest's.
    public var tracklist: TracklistSource?
    public init(manifestPath: String, output: String) { self.manifestPath = manifestPath; self.output = output }
}


/// A failure of the local run, with the exit code LOCAL-RUN.md assigns it.
public struct LocalRunError: Error, CustomStringConvertible, Sendable {
    public let description: String
    /// 2: bad usage or input (names the file and field); 1: runtime failure.
    public let exitCode: Int32
    public static func input(_ d: String) -> LocalRunError { .init(description: d, exitCode: 2) }
    public static func runtime(_ d: String) -> LocalRunError { .init(description: d, exitCode: 1) }
}

/// What a finished run produced, for the summary line and for tests.
public struct LocalRunReport: Sendable {
    public struct Participant: Sendable {
        public var participantId: String
        public var role: String
        public var packets: Int
        public var stats: JitterStats
    }
    public var output: String
    public var programFrames: Int64
    public var outputFrames: Int64
    public var participants: [Participant]
    public var tracksStarted: Int
    public var tracksFailed: Int
    public var wallSeconds: Double
    public var clippedSamples: Int
    public var outputStats: OutputStats
    /// Why the run ended before its program length, when the control plane ended it.
    public var stoppedBecause: String?
    public var programSeconds: Double { Double(programFrames) / Double(AudioFormat.sampleRate) }
}

public enum LocalShow {
    public static func run(_ options: LocalRunOptions, logger: Logger) throws(LocalRunError) -> LocalRunReport {
        let manifest: Manifest
        do { manifest = try Manifest.load(path: options.manifestPath) } catch { throw .input(error.description) }

        // Inputs: everything is opened and checked before the first block, so bad input fails fast.
        let streams: [RecordedStream]
        do { streams = try RecordedStreams.load(manifest.captures) } catch { throw .input("\(error)") }
        var missing = manifest.tracks.map(\.file).filter { !FileManager.default.fileExists(atPath: $0) }
        if let art = manifest.artwork, !FileManager.default.fileExists(atPath: art) { missing.append(art) }
        if let first = missing.first {
            // A live show skips a missing track; a local manifest that names one is a typo worth stopping for.
            throw .input("\(manifest.path): \(first): no such file")
        }
        let target: OutputTarget
        do { target = try OutputTarget.parse(options.output) } catch { throw .input("--output: \(error)") }

        let tracklist = options.tracklist ?? TracklistSource(
            tracks: manifest.tracks.map { Track(title: $0.title, location: .file($0.file)) }, loop: manifest.loop,
            resolver: LocalFileResolver())

        let programFrames: Int64
        if let d = options.duration {
            programFrames = Int64((d * Double(AudioFormat.sampleRate)).rounded())
        } else if let end = streams.compactMap({ $0.packets.last }).map({ lastFrameEndNs($0) }).max() {
            programFrames = end * Int64(AudioFormat.sampleRate) / 1_000_000_000
        } else if !tracklist.loop, !tracklist.tracks.isEmpty {
            programFrames = -1  // until the tracklist ends
        } else {
            throw .input("\(manifest.path): nothing bounds the program (no captures and a looping tracklist): give --duration")
        }

        // Sources.
        var inputs: [MixInput] = []
        var buffers: [(stream: RecordedStream, buffer: JitterBuffer)] = []
        for var s in streams {
            // DATA-MODEL.md: the participants table's role wins over the recording's.
            if let role = options.control?.role(participantId: s.capture.participantId) { s.capture.role = role }
            guard s.capture.role != .virtualParticipant else { continue }
            let jb = JitterBuffer(label: s.capture.participantId)
            buffers.append((s, jb))
            inputs.append(MixInput(kind: .voice(role: s.capture.role, participantId: s.capture.participantId, userId: s.capture.userId), source: jb))
        }
        var player: TracklistPlayer?
        if !tracklist.tracks.isEmpty {
            // A local run waits for a track to open (local files open in milliseconds), in both modes:
            // LOCAL-RUN.md promises offline and --realtime the same audio, so nothing may depend on timing.
            // Remote tracks are prefetched while the previous one plays; a late one gives silence, not a stall.
            let p = TracklistPlayer(tracks: tracklist.tracks, loop: tracklist.loop, resolver: tracklist.resolver,
                                    handoverTimeout: options.tracklist == nil ? 10 : 0, logger: logger)
            player = p
            inputs.append(MixInput(kind: .music, source: p))
        }
        if inputs.isEmpty { inputs.append(MixInput(kind: .music, source: SilenceSource())) }

        let mixer: ProgramMixer
        let sink: ProgramSink
        do {
            mixer = try ProgramMixer(inputs: inputs, routing: manifest.routing)
            var outOptions = OutputOptions()
            outOptions.artworkPath = manifest.artwork
            outOptions.caFile = options.caFile
            sink = try makeSink(target, options: outOptions)
        } catch let e as ProgramOutputError {
            throw e.isBadInput ? .input("--output: \(e)") : .runtime("output \(target.redactedDescription): \(e)")
        } catch {
            throw .runtime("cannot start the mix: \(error)")
        }
        logger.info("local run started", metadata: [
            "manifest": .string(manifest.path), "output": .string(target.redactedDescription),
            "participants": .stringConvertible(buffers.count), "tracks": .stringConvertible(manifest.tracks.count),
            "realtime": .stringConvertible(options.realtime),
        ])

        // The loop: one mix block per step of the one clock.
        // The first track opens before program time starts, so music begins on the first block even
        // when later tracks are fetched while the show runs.
        if let player, !player.prepare(timeout: 30) {
            logger.warning("the first track is not ready; music starts when it is")
        }
        var clock = MixClock(realtime: options.realtime)
        let wallStart = MixClock.monotonicNs()
        clock.start()
        var routing = manifest.routing
        var nextChange = 0
        var nextPacket = Array(repeating: 0, count: buffers.count)
        var skipSeq = routing.tracklist.skipSeq
        var t: Int64 = 0
        var nextStatus: Int64 = 0
        var stoppedBecause: String?
        func apply(_ new: Routing) {
            routing = new
            mixer.apply(new)
            guard let player else { return }
            if new.tracklist.state == .paused { player.pause() } else { player.play() }
            // skipSeq counts skips; a lower value (a reset item) is taken as the new baseline.
            if new.tracklist.skipSeq < skipSeq { skipSeq = new.tracklist.skipSeq }
            while skipSeq < new.tracklist.skipSeq { player.skip(); skipSeq += 1 }
        }
        func status(at t: Int64) -> ShowStatus {
            let voices = buffers.enumerated().map { i, b in
                let c = b.stream.capture, st = b.buffer.stats
                return VoiceStatus(participantId: c.participantId, userId: c.userId, role: c.role,
                                   onAir: routing.isOnAir(role: c.role, participantId: c.participantId, userId: c.userId),
                                   levelDbfs: mixer.sourceMeters[i].dbfsValue, packets: st.received, lost: st.lost,
                                   concealedMs: Double(st.concealedFrames) / 48, jitterTargetMs: st.targetDelayMs)
            }
            let out = sink.stats
            return ShowStatus(programSeconds: Double(t) / Double(AudioFormat.sampleRate),
                              uptimeSeconds: Double(MixClock.monotonicNs() - wallStart) / 1e9, voices: voices,
                              masterLevelDbfs: mixer.programMeter.dbfsValue, clipping: mixer.clippedSamples > 0,
                              currentTrack: player?.currentTrack, outputState: .connected, outputDownSeconds: 0,
                              outputKbps: out.kbps)
        }
        var outputFrames: Int64 = 0
        let write: (UnsafePointer<Float>, Int) throws -> Void = { p, n in
            try sink.write(p, frames: n)
            outputFrames += Int64(n)
        }
        do {
            while programFrames < 0 ? !(player.map { $0.state == .stopped || $0.state == .failed } ?? true) : t < programFrames {
                let frames = programFrames < 0 ? AudioFormat.mixBlockFrames : Int(min(Int64(AudioFormat.mixBlockFrames), programFrames - t))
                // Packets that have arrived by the start of this block.
                let nowNs = t * 1_000_000_000 / Int64(AudioFormat.sampleRate)
                for i in buffers.indices {
                    let pkts = buffers[i].stream.packets
                    while nextPacket[i] < pkts.count, pkts[nextPacket[i]].arrivalNs <= nowNs {
                        let tp = pkts[nextPacket[i]]
                        buffers[i].buffer.insert(sequenceNumber: tp.packet.sequenceNumber, timestamp: tp.packet.timestamp,
                                                 ssrc: tp.packet.ssrc, payload: tp.packet.payload,
                                                 arrival: tp.arrivalNs * Int64(AudioFormat.sampleRate) / 1_000_000_000)
                        nextPacket[i] += 1
                    }
                }
                // Routing changes due by now: the manifest's, then the control plane's newest.
                while nextChange < manifest.routingChanges.count,
                      AudioFormat.frames(milliseconds: manifest.routingChanges[nextChange].atMs) <= t {
                    // Validated at load, so this cannot fail.
                    apply((try? routing.merging(manifest.routingChanges[nextChange].patch, strictness: .strict).0) ?? routing)
                    logger.info("routing change applied", metadata: ["atMs": .stringConvertible(manifest.routingChanges[nextChange].atMs)])
                    nextChange += 1
                }
                if let control = options.control {
                    if let update = control.takeRoutingUpdate() { apply(update) }
                    if let reason = control.stopReason { stoppedBecause = reason; break }
                    if t >= nextStatus {
                        control.publish(status(at: t))
                        nextStatus += Int64(AudioFormat.sampleRate)
                    }
                }
                clock.wait(untilProgramFrame: t)
                try mixer.mixBlock(at: t, frames: frames, output: write)
                t += Int64(frames)
            }
            try mixer.finish(output: write)
            try sink.finish()
        } catch {
            throw .runtime("the mix stopped at \(String(format: "%.2f", Double(t) / Double(AudioFormat.sampleRate))) s: \(error)")
        }

        return LocalRunReport(
            output: target.redactedDescription, programFrames: t, outputFrames: outputFrames,
            participants: buffers.map { .init(participantId: $0.stream.capture.participantId, role: $0.stream.capture.role.rawValue,
                                              packets: $0.stream.packets.count, stats: $0.buffer.stats) },
            tracksStarted: player?.stats.tracksStarted ?? 0, tracksFailed: player?.stats.tracksFailed ?? 0,
            wallSeconds: Double(MixClock.monotonicNs() - wallStart) / 1e9,
            clippedSamples: mixer.clippedSamples, outputStats: sink.stats, stoppedBecause: stoppedBecause)
    }

    /// The end of a packet's audio: its arrival plus the duration its Opus frame carries (20 ms if unknown).
    static func lastFrameEndNs(_ p: TimedPacket) -> Int64 {
        let frames = (try? OpusDecoder.frameCount(of: p.packet.payload)) ?? 960
        return p.arrivalNs + Int64(frames) * 1_000_000_000 / Int64(AudioFormat.sampleRate)
    }
}
