import AudioCore
import Foundation
import HTTPClient
import ICE
import JitterBuffer
import Logging
import Mixer
import ProgramOutput
import Routing
import ShowControl
import Tracklist

/// What `join` was asked to do.
public struct StageJoinOptions: Sendable {
    public var token: String
    public var eventsURL: String?
    public var whipURL: String?
    /// `--routing FILE`, checked strictly (exit 2 on a bad field).
    public var routingPath: String?
    /// A routing given directly (wins over `routingPath`).
    public var routing: Routing?
    public var output: String
    /// Seconds of program; nil = until `stop` (or the control plane) ends it.
    public var duration: Double?
    public var recordDirectory: String?
    /// Extra CA bundle for wss://, https:// and rtmps://.
    public var caFile: String?
    public var hostUserId: String?
    /// Mixer voice slots: IVS allows 12 publishers per stage (not adjustable), so 12 never turns one away.
    public var voiceSlots = 12
    public var control: (any ShowControl)?
    public var stop: StopSignal?
    public var tuning = SubscriptionTuning()
    public var events = StageEventsConnection.Options()
    /// Music under the voices (`run` plays the show's tracklist from S3); `join` has none.
    public var tracklist: TracklistSource?
    /// Keep the stream live through ingest outages (`run`): reconnect with backoff, never block the mix.
    public var reconnectingOutput = false
    /// nil: `StageMedia.PeerConnection`.
    public var peerFactory: StagePeerFactory?

    public init(token: String, output: String) { self.token = token; self.output = output }
}

/// A failure of `join`, with the exit code LOCAL-RUN.md assigns it. Never contains the token.
public struct StageJoinError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public let exitCode: Int32
    public static func input(_ d: String) -> StageJoinError { .init(description: Secrets.redact(d), exitCode: 2) }
    public static func runtime(_ d: String) -> StageJoinError { .init(description: Secrets.redact(d), exitCode: 1) }
}

public struct StageJoinReport: Sendable {
    public struct Participant: Sendable {
        public var participantId: String
        public var userId: String?
        public var role: String
        public var subscriptions: SubscriptionStats
        /// The jitter buffer's counters over the whole run (summed over its slot assignments).
        public var stats: JitterBufferStats
    }
    public struct Problem: Sendable, Equatable {
        public var cause: String
        public var count: Int
    }
    public var output: String
    public var stageId: String
    public var programFrames: Int64
    public var outputFrames: Int64
    public var wallSeconds: Double
    public var participants: [Participant]
    public var events: StageEventsConnection.Stats
    /// Everything dropped, refused or retried, by cause (each logged once).
    public var problems: [Problem]
    public var recordedManifest: String?
    public var clippedSamples: Int
    public var outputStats: OutputStats
    public var stoppedBecause: String?
    public var programSeconds: Double { Double(programFrames) / Double(AudioFormat.sampleRate) }
}

public enum StageJoin {
    /// Loads a `--routing` file strictly: any bad field is exit-2 material naming file and field.
    public static func loadRouting(path: String) throws(StageJoinError) -> Routing {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw .input("--routing \(path): " + (FileManager.default.fileExists(atPath: path) ? "cannot be read" : "no such file"))
        }
        guard let any = try? JSONSerialization.jsonObject(with: data) else { throw .input("--routing \(path): not valid JSON") }
        guard case .object(let patch) = ControlValue.fromJSONObject(any) else { throw .input("--routing \(path): expected a JSON object") }
        do { return try Routing().merging(patch, strictness: .strict).0 } catch {
            throw .input("--routing \(path): \(error.field): \(error.problem)")
        }
    }

    public static func run(_ options: StageJoinOptions, logger: Logger) throws(StageJoinError) -> StageJoinReport {
        // 1. Inputs, all checked before anything connects.
        let token: StageToken
        do { token = try StageToken(options.token) } catch { throw .input("--token: \(error)") }
        if token.isExpired(), let e = token.expiresAt { throw .input("--token: expired at \(ISO8601DateFormatter().string(from: e))") }
        if token.allowSubscribe == false { throw .input("--token: the token does not allow subscribing (capabilities.allow_subscribe is false)") }
        if token.turnMandatory {
            logger.warning("the token's version \(token.version ?? "") asks for TURN relay only, which is not supported: trying direct UDP")
        }
        if token.legacyStage {
            logger.warning("the token's version \(token.version ?? "") marks a legacy stage that wants subscribers to send audio: not supported")
        }
        let endpoints: StageEndpoints
        do { endpoints = try StageEndpoints.resolve(token: token, events: options.eventsURL, whip: options.whipURL) } catch {
            throw .input("\(error)")
        }
        var routing = Routing()
        if let r = options.routing { routing = r } else if let p = options.routingPath { routing = try loadRouting(path: p) }
        let initialRouting = routing
        if let d = options.duration, !(d > 0) { throw .input("--duration must be above 0") }
        if let ca = options.caFile, !FileManager.default.isReadableFile(atPath: ca) {
            throw .input("--ca-file \(ca): " + (FileManager.default.fileExists(atPath: ca) ? "cannot be read" : "no such file"))
        }
        let target: OutputTarget
        do { target = try OutputTarget.parse(options.output) } catch { throw .input("--output: \(error)") }

        let slotCount = max(1, min(64, options.voiceSlots))
        let slotSources = (0..<slotCount).map { _ in VoiceSlot() }
        var inputs = slotSources.enumerated().map {
            MixInput(kind: .voice(role: .caller, participantId: SlotRouting.slotId($0.offset), userId: nil), source: $0.element)
        }
        // A live show never waits for a track: one not fetched yet plays as silence until it is.
        let player = options.tracklist.flatMap { tl in
            tl.tracks.isEmpty ? nil : TracklistPlayer(tracks: tl.tracks, loop: tl.loop, resolver: tl.resolver,
                                                      handoverTimeout: 0, logger: logger)
        }
        if let player { inputs.append(MixInput(kind: .music, source: player)) }
        let mixer: ProgramMixer
        let sink: ProgramSink
        do {
            mixer = try ProgramMixer(inputs: inputs, routing: SlotRouting.make(routing, voices: Array(repeating: nil, count: slotCount)))
            var outOptions = OutputOptions()
            outOptions.caFile = options.caFile
            outOptions.reconnect = options.reconnectingOutput
            sink = try makeSink(target, options: outOptions)
        } catch let e as ProgramOutputError {
            throw e.isBadInput ? .input("--output: \(e)") : .runtime("output \(target.redactedDescription): \(e)")
        } catch {
            throw .runtime("cannot start the mix: \(error)")
        }

        // 2. Program time 0, then the stage.
        if let player {
            // In short waits, so a stop (SIGTERM while a slow first track downloads) is not held up for 30 s.
            var ready = false
            let readyBy = Date().addingTimeInterval(30)
            var stopping: Bool { options.stop?.reason != nil || options.control?.stopReason != nil }
            while !ready && !stopping && Date() < readyBy { ready = player.prepare(timeout: 0.1) }
            if !ready && !stopping { logger.warning("the first track is not ready; music starts when it is") }
        }
        var skipSeq = routing.tracklist.skipSeq
        var clock = MixClock(realtime: true)
        clock.start()
        let startNs = monotonicNs()
        let epochStartNs = Int64(Date().timeIntervalSince1970 * 1e9)
        let recorder: RTPRecorder?
        if let dir = options.recordDirectory {
            do { recorder = try RTPRecorder(directory: dir, epochStartNs: epochStartNs, monoStartNs: startNs) } catch {
                try? sink.finish()
                throw .input("--record-rtp \(dir): cannot create the directory (\(error.localizedDescription))")
            }
        } else {
            recorder = nil
        }
        let causes = CauseLog(logger: logger)
        let slots = SlotTable(count: slotCount)
        let whip = WHIPSubscriber(whipURL: endpoints.whipURL, token: token.secret, http: HTTPClient(caFile: options.caFile))
        var config = StageSession.Configuration(selfParticipantId: token.participantId, hostUserId: options.hostUserId)
        config.tuning = options.tuning
        let session = StageSession(config: config, whip: whip,
                                   peerFactory: options.peerFactory ?? MediaPeer.factory(
                                       configuration: MediaPeer.configuration(stageHost: HTTPURL(endpoints.whipURL)?.host ?? "",
                                                                              connectTimeout: options.tuning.connectTimeout + 1),
                                       logger: logger),
                                   slots: slots, recorder: recorder, control: options.control, causes: causes,
                                   logger: logger, startNs: startNs)
        var eventOptions = options.events
        if eventOptions.caFile == nil { eventOptions.caFile = options.caFile }
        let events = StageEventsConnection(url: endpoints.eventsURL, token: token, options: eventOptions, logger: logger,
                                           causes: causes, onSnapshot: { snap, changes in session.update(snap, changes: changes) })
        logger.info("joining stage", metadata: [
            "stage": .string(endpoints.topic), "self": .string(token.participantId),
            "events": .string((try? WebSocketURL(parsing: endpoints.eventsURL).redacted) ?? "?"),
            "whip": .string(HTTPURL(endpoints.whipURL)?.redacted ?? "?"), "output": .string(target.redactedDescription),
            "slots": .stringConvertible(slotCount),
        ])
        session.start()
        do { try events.start() } catch {
            session.stop(timeout: 2)
            try? sink.finish()
            throw .runtime("\(error)")
        }

        // 3. The mix loop: one block per step of the clock.
        let programFrames: Int64 = options.duration.map { Int64(($0 * Double(AudioFormat.sampleRate)).rounded()) } ?? -1
        let drainFrames = AudioFormat.frames(milliseconds: 250)
        struct MixVoice {
            var voice: SlotVoice
            let inbox: PacketInbox
            let buffer: JitterBuffer
            var released: Bool
            var drainUntil: Int64?
        }
        var current: [MixVoice?] = Array(repeating: nil, count: slotCount)
        var pending: [[PacketInbox.Item]] = (0..<slotCount).map { _ in [PacketInbox.Item]() }
        for i in pending.indices { pending[i].reserveCapacity(256) }
        var archive: [String: JitterBufferStats] = [:]
        func retire(_ i: Int) {
            guard let c = current[i] else { return }
            archive[c.voice.participantId] = JitterStatsMerge.add(archive[c.voice.participantId], c.buffer.stats)
            slotSources[i].buffer = nil
            current[i] = nil
            pending[i].removeAll(keepingCapacity: true)
        }
        var seenGeneration: UInt64 = 0
        var routingChanges: [(atMs: Int64, routing: Routing)] = []
        var t: Int64 = 0
        var nextStatus: Int64 = 0
        var stoppedBecause: String?
        var outputFrames: Int64 = 0
        let wallStart = monotonicNs()
        let write: (UnsafePointer<Float>, Int) throws -> Void = { p, n in
            try sink.write(p, frames: n)
            outputFrames += Int64(n)
        }
        var mixError: String?
        var lastReadNs: UInt64 = 0
        do {
            while programFrames < 0 || t < programFrames {
                if let why = options.stop?.reason { stoppedBecause = why; break }
                if let why = options.control?.stopReason { stoppedBecause = why; break }
                let frames = programFrames < 0 ? AudioFormat.mixBlockFrames : Int(min(Int64(AudioFormat.mixBlockFrames), programFrames - t))
                let slept = clock.wait(untilProgramFrame: t)
                var routingDirty = false
                // Slot changes from the session.
                if let snap = slots.snapshot(after: seenGeneration) {
                    seenGeneration = snap.generation
                    routingDirty = true
                    for i in 0..<slotCount {
                        guard let e = snap.entries[i] else { if current[i] != nil { retire(i) }; continue }
                        if current[i] == nil || current[i]?.inbox !== e.inbox {
                            retire(i)
                            let jb = JitterBuffer(label: e.voice.participantId)
                            slotSources[i].buffer = jb
                            current[i] = MixVoice(voice: e.voice, inbox: e.inbox, buffer: jb, released: false, drainUntil: nil)
                        }
                        current[i]?.voice = e.voice
                        if e.released, current[i]?.released == false {
                            current[i]?.released = true
                            current[i]?.drainUntil = t + drainFrames
                        }
                    }
                }
                // Released slots whose ramp-out is over are freed for newcomers.
                for i in 0..<slotCount {
                    if let c = current[i], let until = c.drainUntil, t >= until {
                        retire(i)
                        slots.free(slot: i, inbox: c.inbox)
                        routingDirty = true
                    }
                }
                // Packets that have arrived by the start of this block, as `local` does. Reading the
                // sockets here, once per burst (or per 20 ms when the mix runs late and never sleeps),
                // saves the receive thread a wake-up per datagram.
                if slept || monotonicNs() &- lastReadNs >= 20_000_000 {
                    ReceiveLoop.shared.readNow()
                    lastReadNs = monotonicNs()
                }
                for i in 0..<slotCount {
                    guard let c = current[i] else { continue }
                    c.inbox.take(into: &pending[i])
                    var k = 0
                    let q = pending[i]
                    while k < q.count, q[k].arrival <= t {
                        let item = q[k]
                        c.buffer.insert(sequenceNumber: item.packet.sequenceNumber, timestamp: item.packet.timestamp,
                                        ssrc: item.packet.ssrc, payload: item.packet.payload, arrival: max(0, item.arrival))
                        k += 1
                    }
                    if k > 0 { pending[i].removeFirst(k) }
                }
                if let control = options.control, let update = control.takeRoutingUpdate(), update != routing {
                    routing = update
                    routingDirty = true
                    routingChanges.append((AudioFormat.milliseconds(frames: t), routing))
                }
                if routingDirty {
                    mixer.apply(SlotRouting.make(routing, voices: current.map { $0.flatMap { $0.released ? nil : $0.voice } }))
                    if let player {
                        if routing.tracklist.state == .paused { player.pause() } else { player.play() }
                        // skipSeq counts skips; a lower value (a reset item) is the new baseline.
                        if routing.tracklist.skipSeq < skipSeq { skipSeq = routing.tracklist.skipSeq }
                        while skipSeq < routing.tracklist.skipSeq { player.skip(); skipSeq += 1 }
                    }
                }
                if let control = options.control, t >= nextStatus {
                    control.publish(status(t: t, current: current.map { $0.map { ($0.voice, $0.buffer.stats) } }, mixer: mixer,
                                           routing: routing, sink: sink, wallStart: wallStart, player: player,
                                           stageConnected: events.isConnected))
                    nextStatus += Int64(AudioFormat.sampleRate)
                }
                try mixer.mixBlock(at: t, frames: frames, output: write)
                t += Int64(frames)
            }
        } catch {
            mixError = "the mix stopped at \(String(format: "%.2f", Double(t) / Double(AudioFormat.sampleRate))) s: \(error)"
        }

        // 4. Wind down: recording first (it ends with the program), then output, then the stage.
        var manifestPath: String?
        if let recorder {
            do { manifestPath = try recorder.finish(showId: endpoints.topic, routing: initialRouting, routingChanges: routingChanges) } catch {
                causes.note("recording failed", "--record-rtp: cannot write the manifest: \(error)")
            }
        }
        if mixError == nil {
            do {
                try mixer.finish(output: write)
                try sink.finish()
            } catch {
                mixError = "finishing the output failed: \(error)"
            }
        } else {
            try? sink.finish()
        }
        session.stop()
        events.stop()
        for i in 0..<slotCount { retire(i) }
        if let mixError { throw .runtime(mixError) }

        let participants = session.participantStats.map { entry in
            StageJoinReport.Participant(participantId: entry.voice.participantId, userId: entry.voice.userId,
                                        role: entry.voice.role.rawValue, subscriptions: entry.stats,
                                        stats: archive[entry.voice.participantId] ?? JitterBufferStats())
        }
        return StageJoinReport(
            output: target.redactedDescription, stageId: endpoints.topic, programFrames: t, outputFrames: outputFrames,
            wallSeconds: Double(monotonicNs() &- wallStart) / 1e9, participants: participants, events: events.stats,
            problems: causes.summary.map { .init(cause: $0.cause, count: $0.count) }, recordedManifest: manifestPath,
            clippedSamples: mixer.clippedSamples, outputStats: sink.stats, stoppedBecause: stoppedBecause)
    }

    private static func status(t: Int64, current: [(SlotVoice, JitterBufferStats)?], mixer: ProgramMixer, routing: Routing,
                               sink: ProgramSink, wallStart: UInt64, player: TracklistPlayer?, stageConnected: Bool) -> ShowStatus {
        var voices: [VoiceStatus] = []
        for (i, entry) in current.enumerated() {
            guard let (v, st) = entry else { continue }
            voices.append(VoiceStatus(participantId: v.participantId, userId: v.userId, role: v.role,
                                      onAir: routing.isOnAir(role: v.role, participantId: v.participantId, userId: v.userId),
                                      levelDbfs: mixer.sourceMeters[i].dbfsValue, packets: st.received, lost: st.lost,
                                      concealedMs: Double(st.concealedFrames) / 48, jitterTargetMs: st.targetDelayMs))
        }
        return ShowStatus(programSeconds: Double(t) / Double(AudioFormat.sampleRate),
                          uptimeSeconds: Double(monotonicNs() &- wallStart) / 1e9, voices: voices,
                          masterLevelDbfs: mixer.programMeter.dbfsValue, clipping: mixer.clippedSamples > 0,
                          currentTrack: player?.currentTrack, outputState: OutputState(sink.health.state),
                          outputDownSeconds: sink.health.downSeconds, outputKbps: sink.health.kbps,
                          outputReconnects: sink.health.reconnects, stageConnected: stageConnected)
    }
}

/// Sums a participant's jitter-buffer counters over its slot assignments (a re-publish gets a new buffer).
enum JitterStatsMerge {
    static func add(_ a: JitterBufferStats?, _ b: JitterBufferStats) -> JitterBufferStats {
        guard var s = a else { return b }
        s.received += b.received; s.duplicates += b.duplicates; s.late += b.late; s.malformed += b.malformed
        s.lost += b.lost; s.fecRecovered += b.fecRecovered; s.concealedFrames += b.concealedFrames
        s.underruns += b.underruns; s.resyncs += b.resyncs; s.reanchors += b.reanchors
        s.stretchedFrames += b.stretchedFrames; s.shrunkFrames += b.shrunkFrames; s.decodeErrors += b.decodeErrors
        s.currentDelayMs = b.currentDelayMs; s.targetDelayMs = b.targetDelayMs
        return s
    }
}

extension OutputState {
    init(_ s: OutputConnectionState) {
        switch s {
        case .connecting: self = .connecting
        case .connected: self = .connected
        case .reconnecting: self = .reconnecting
        case .down: self = .down
        }
    }
}
