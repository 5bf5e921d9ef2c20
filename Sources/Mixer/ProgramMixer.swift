import AudioCore
import CFFmpeg
import FFmpegSupport
import Routing

/// One input of the mix.
public struct MixInput {
    public enum Kind: Sendable, Equatable {
        case voice(role: ParticipantRole, participantId: String, userId: String?)
        case music
    }
    public let kind: Kind
    public let source: AudioSource
    public init(kind: Kind, source: AudioSource) { self.kind = kind; self.source = source }

    public var label: String {
        switch kind {
        case .voice(_, let id, _): id
        case .music: "tracklist"
        }
    }
}

public struct MixerTuning: Sendable {
    /// Ramp for routing changes: long enough to be click-free, well inside the 100 ms budget.
    public var rampMs: Int64 = 30
    public var duckAttackMs: Int64 = 40
    public var duckReleaseMs: Int64 = 250
    /// Hold after the last voiced block before the music comes back up.
    public var duckHoldMs: Int64 = 300
    /// On-air voice level (after its gain) that counts as speech, dBFS.
    public var voiceActivityDbfs: Double = -45
    public var compressorAttackMs: Double = 20
    public var compressorReleaseMs: Double = 250
    public var limiterAttackMs: Double = 5
    public var limiterReleaseMs: Double = 50
    public init() {}
}

/// The program mix: every source through its gain stage into one libavfilter graph
/// (`abuffer → asplit → 2×(volume → afade) → amix → acompressor → alimiter → abuffersink`).
///
/// Master volume and ducking are folded into the per-source gains (the mix is linear up to the
/// compressor), so one ramp mechanism serves every change. Ducking is driven by voice activity on
/// the on-air voices, which gives the exact configured depth rather than a level-dependent one.
public final class ProgramMixer {
    public let inputs: [MixInput]
    public private(set) var routing: Routing
    public let tuning: MixerTuning

    private let graph: FilterGraph
    private var buffersrcs: [FilterContext] = []
    private var stages: [GainStage] = []
    private let compressor: FilterContext
    private let limiter: FilterContext
    private let sink: FilterContext
    private var inFrames: [UnsafeMutablePointer<AVFrame>] = []
    private let outFrame: UnsafeMutablePointer<AVFrame>
    private var appliedDynamics: (Routing.Compression, Routing.Limiter)?

    // Meters (pre-gain per source; program after the graph).
    public private(set) var sourceMeters: [LevelMeter]
    public private(set) var lastSourceLevels: [BlockLevel]
    public private(set) var programMeter = LevelMeter()
    /// Output samples at or above full scale (after the limiter): a sign the program is clipping.
    public private(set) var clippedSamples = 0
    public private(set) var ducking = false
    private var lastVoiceActivity: Int64 = .min / 2
    public private(set) var framesIn: Int64 = 0
    public private(set) var framesOut: Int64 = 0

    public init(inputs: [MixInput], routing: Routing, tuning: MixerTuning = MixerTuning()) throws {
        precondition(!inputs.isEmpty, "a mix needs at least one input")
        self.inputs = inputs
        self.routing = routing
        self.tuning = tuning
        sourceMeters = Array(repeating: LevelMeter(), count: inputs.count)
        lastSourceLevels = Array(repeating: BlockLevel(rms: 0, peak: 0), count: inputs.count)
        let g = try FilterGraph()
        graph = g

        let amix = try g.add("amix", name: "mix", "inputs=\(2 * inputs.count):normalize=0:duration=longest")
        var gains: [Double] = []
        for (i, input) in inputs.enumerated() {
            let gain = ProgramMixer.targetGain(input.kind, routing: routing, ducked: false)
            gains.append(gain)
            let src = try g.add("abuffer", name: "src\(i)",
                                "sample_rate=\(AudioFormat.sampleRate):sample_fmt=flt:channel_layout=stereo:time_base=1/\(AudioFormat.sampleRate)")
            let split = try g.add("asplit", name: "split\(i)", "outputs=2")
            try g.link(src, to: split)
            var paths: [GainStage.Path] = []
            for p in 0..<2 {
                let args = GainStage.initialArgs(gain: gain, path: p)
                let vol = try g.add("volume", name: "gain\(i)\(p == 0 ? "a" : "b")", args.volume)
                let fade = try g.add("afade", name: "fade\(i)\(p == 0 ? "a" : "b")", args.fade)
                try g.link(split, p, to: vol)
                try g.link(vol, to: fade)
                try g.link(fade, to: amix, 2 * i + p)
                paths.append(.init(volume: vol, fade: fade))
            }
            buffersrcs.append(src)
            stages.append(GainStage(graph: g, paths: paths, initialGain: gain))
        }
        compressor = try g.add("acompressor", name: "compressor",
                               ProgramMixer.compressorArgs(routing.compression, tuning) +
                               ":attack=\(tuning.compressorAttackMs):release=\(tuning.compressorReleaseMs)")
        // level=0: no auto make-up gain; latency=1: output aligned with input, nothing lost at the end.
        limiter = try g.add("alimiter", name: "limiter",
                            ProgramMixer.limiterArgs(routing.limiter) +
                            ":attack=\(tuning.limiterAttackMs):release=\(tuning.limiterReleaseMs):level=0:latency=1")
        let format = try g.add("aformat", name: "format", "sample_fmts=flt:sample_rates=\(AudioFormat.sampleRate):channel_layouts=stereo")
        sink = try g.add("abuffersink", name: "out", nil)
        try g.link(amix, to: compressor)
        try g.link(compressor, to: limiter)
        try g.link(limiter, to: format)
        try g.link(format, to: sink)
        try g.configure()
        appliedDynamics = (routing.compression, routing.limiter)

        for _ in inputs {
            guard let f = av_frame_alloc() else { throw FFmpegError(cff_averror(ENOMEM), "av_frame_alloc") }
            f.pointee.format = AV_SAMPLE_FMT_FLT.rawValue
            f.pointee.sample_rate = Int32(AudioFormat.sampleRate)
            f.pointee.ch_layout = cff_layout_stereo()
            f.pointee.nb_samples = Int32(AudioFormat.mixBlockFrames)
            try ffCheck(av_frame_get_buffer(f, 0), "allocate an input frame")
            inFrames.append(f)
        }
        guard let o = av_frame_alloc() else { throw FFmpegError(cff_averror(ENOMEM), "av_frame_alloc") }
        outFrame = o
    }

    deinit {
        for f in inFrames { var p: UnsafeMutablePointer<AVFrame>? = f; av_frame_free(&p) }
        var o: UnsafeMutablePointer<AVFrame>? = outFrame
        av_frame_free(&o)
    }

    /// New routing; takes effect, ramped, from the next block.
    public func apply(_ newRouting: Routing) {
        routing = newRouting
    }

    /// Linear gain a source should have under `routing`, master included.
    static func targetGain(_ kind: MixInput.Kind, routing: Routing, ducked: Bool) -> Double {
        switch kind {
        case .voice(let role, let id, let user):
            return routing.voiceGain(role: role, participantId: id, userId: user) * routing.masterGain
        case .music:
            let duck = ducked && routing.ducking.enabled ? linearGain(db: -routing.ducking.depthDb) : 1
            return routing.musicGain * duck * routing.masterGain
        }
    }

    /// Pulls one block from every source at program time `t`, mixes it, and hands the program
    /// (any number of frames, in order) to `output`.
    public func mixBlock(at t: Int64, frames: Int = AudioFormat.mixBlockFrames,
                         output: (UnsafePointer<Float>, Int) throws -> Void) throws {
        precondition(frames > 0 && frames <= AudioFormat.mixBlockFrames, "a mix block is 1...\(AudioFormat.mixBlockFrames) frames")
        // 1. Render every source into its (reused) frame.
        var voiceActive = false
        for i in inputs.indices {
            let f = inFrames[i]
            try ffCheck(av_frame_make_writable(f), "make an input frame writable")
            f.pointee.nb_samples = Int32(frames)
            f.pointee.pts = t
            let data = UnsafeMutableRawPointer(f.pointee.data.0!).assumingMemoryBound(to: Float.self)
            inputs[i].source.render(into: data, frames: frames, at: t)
            let level = BlockLevel.measure(data, count: frames * AudioFormat.channels)
            lastSourceLevels[i] = level
            sourceMeters[i].add(level)
            if case .voice = inputs[i].kind,
               level.rms * ProgramMixer.targetGain(inputs[i].kind, routing: routing, ducked: false) > linearGain(db: tuning.voiceActivityDbfs) {
                voiceActive = true
            }
        }
        // 2. Ducking follows on-air speech, with a hold so it does not pump between words.
        if voiceActive { lastVoiceActivity = t }
        let frameRate = Int64(AudioFormat.sampleRate)
        let duckNow = routing.ducking.enabled && t - lastVoiceActivity <= tuning.duckHoldMs * frameRate / 1000
        // 3. Gains and dynamics for this block.
        for (i, input) in inputs.enumerated() {
            let goal = ProgramMixer.targetGain(input.kind, routing: routing, ducked: duckNow)
            if goal != stages[i].target {
                var ramp = tuning.rampMs
                if case .music = input.kind, duckNow != ducking {
                    ramp = duckNow ? tuning.duckAttackMs : tuning.duckReleaseMs
                }
                stages[i].request(goal, rampFrames: ramp * frameRate / 1000)
            }
            try stages[i].update(at: t)
        }
        ducking = duckNow
        try applyDynamicsIfChanged()
        // 4. Push and pull.
        for i in inputs.indices {
            try ffCheck(av_buffersrc_add_frame_flags(buffersrcs[i], inFrames[i], Int32(AV_BUFFERSRC_FLAG_KEEP_REF)),
                        "feed \(inputs[i].label) to the mix")
        }
        framesIn += Int64(frames)
        try drain(output)
    }

    /// Ends every input and delivers what the graph still holds (the limiter's look-ahead).
    public func finish(output: (UnsafePointer<Float>, Int) throws -> Void) throws {
        for src in buffersrcs {
            try ffCheck(av_buffersrc_add_frame_flags(src, nil, 0), "end a mix input")
        }
        try drain(output)
    }

    /// Gain currently heard from input `i` (for status and tests).
    public func currentGain(input i: Int, at t: Int64) -> Double { stages[i].gain(at: t) }

    private func drain(_ output: (UnsafePointer<Float>, Int) throws -> Void) throws {
        while true {
            let r = av_buffersink_get_frame(sink, outFrame)
            if r == cff_eagain() || r == cff_eof() { return }
            try ffCheck(r, "read the mix")
            defer { av_frame_unref(outFrame) }
            let n = Int(outFrame.pointee.nb_samples)
            let data = UnsafeRawPointer(outFrame.pointee.data.0!).assumingMemoryBound(to: Float.self)
            let level = BlockLevel.measure(data, count: n * AudioFormat.channels)
            programMeter.add(level)
            if level.peak >= 1 {
                for k in 0..<(n * AudioFormat.channels) where abs(data[k]) >= 1 { clippedSamples += 1 }
            }
            framesOut += Int64(n)
            try output(data, n)
        }
    }

    private func applyDynamicsIfChanged() throws {
        if let (c, l) = appliedDynamics, c == routing.compression, l == routing.limiter { return }
        // Disabled compression is ratio 1; a disabled limiter sits at 0 dBFS. Both stay in the graph
        // so the signal path, and the limiter's look-ahead delay, never change mid-show.
        for part in ProgramMixer.compressorArgs(routing.compression, tuning).split(separator: ":") {
            let kv = part.split(separator: "=", maxSplits: 1).map(String.init)
            try graph.command(compressor, kv[0], kv[1])
        }
        for part in ProgramMixer.limiterArgs(routing.limiter).split(separator: ":") {
            let kv = part.split(separator: "=", maxSplits: 1).map(String.init)
            try graph.command(limiter, kv[0], kv[1])
        }
        appliedDynamics = (routing.compression, routing.limiter)
    }

    static func compressorArgs(_ c: Routing.Compression, _ t: MixerTuning) -> String {
        let threshold = max(0.000976563, min(1, linearGain(db: c.threshold)))
        return "threshold=\(threshold):ratio=\(c.enabled ? c.ratio : 1)"
    }

    static func limiterArgs(_ l: Routing.Limiter) -> String {
        "limit=\(l.enabled ? max(0.0625, min(1, linearGain(db: l.ceiling))) : 1)"
    }
}
