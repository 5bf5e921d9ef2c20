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

/// The program mix in two libavfilter graphs:
/// - the gain graph, `abuffer → asplit → 2×(volume → afade) → amix`, holds the sources that can be
///   heard (gain above 0 or ramping);
/// - the dynamics graph, `abuffer → acompressor → alimiter → aformat → abuffersink`, takes its sum.
///
/// Master volume and ducking are folded into the per-source gains (the mix is linear up to the
/// compressor), so one ramp mechanism serves every change. Ducking is driven by voice activity on
/// the on-air voices, which gives the exact configured depth rather than a level-dependent one.
///
/// A source at gain 0 adds exactly nothing to the sum, so it is left out of the gain graph; when
/// one goes silent or is about to be heard, the gain graph is rebuilt at the block boundary (a few
/// filters, no state: amix holds nothing between blocks and the ramps carry over, see `GainStage`).
/// The program is sample-for-sample the same as with every source in the graph, while an idle
/// voice slot or an off-air caller costs no filtering. The dynamics graph, whose compressor and
/// limiter keep envelopes and look-ahead, is never rebuilt.
/// Every source is still rendered each block: jitter buffers and the tracklist keep time, and the
/// meters show off-air levels too.
public final class ProgramMixer {
    public let inputs: [MixInput]
    public private(set) var routing: Routing
    public let tuning: MixerTuning

    private var gainGraph: FilterGraph
    /// Per input: its buffer source in the current gain graph, nil while it is left out.
    private var buffersrcs: [FilterContext?]
    private var sumSink: FilterContext
    private var stages: [GainStage]
    private let dynamicsGraph: FilterGraph
    private let dynamicsSource: FilterContext
    private let compressor: FilterContext
    private let limiter: FilterContext
    private let sink: FilterContext
    private var inFrames: [UnsafeMutablePointer<AVFrame>] = []
    /// Per input: not rendered in the current block (idle and out of the graph).
    private var skipped: [Bool]
    private let sumFrame: UnsafeMutablePointer<AVFrame>
    private let outFrame: UnsafeMutablePointer<AVFrame>
    private var appliedDynamics: (Routing.Compression, Routing.Limiter)?
    /// Gain graph rebuilds so far (sources joining or leaving it).
    public private(set) var graphRebuilds = 0

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
    private var framesSummed: Int64 = 0

    public init(inputs: [MixInput], routing: Routing, tuning: MixerTuning = MixerTuning()) throws {
        precondition(!inputs.isEmpty, "a mix needs at least one input")
        self.inputs = inputs
        self.routing = routing
        self.tuning = tuning
        sourceMeters = Array(repeating: LevelMeter(), count: inputs.count)
        lastSourceLevels = Array(repeating: BlockLevel(rms: 0, peak: 0), count: inputs.count)
        stages = inputs.map { GainStage(initialGain: ProgramMixer.targetGain($0.kind, routing: routing, ducked: false)) }
        skipped = Array(repeating: false, count: inputs.count)

        let d = try FilterGraph()
        dynamicsGraph = d
        dynamicsSource = try d.add("abuffer", name: "sum", ProgramMixer.bufferArgs)
        compressor = try d.add("acompressor", name: "compressor",
                               ProgramMixer.compressorArgs(routing.compression, tuning) +
                               ":attack=\(tuning.compressorAttackMs):release=\(tuning.compressorReleaseMs)")
        // level=0: no auto make-up gain; latency=1: output aligned with input, nothing lost at the end.
        limiter = try d.add("alimiter", name: "limiter",
                            ProgramMixer.limiterArgs(routing.limiter) +
                            ":attack=\(tuning.limiterAttackMs):release=\(tuning.limiterReleaseMs):level=0:latency=1")
        let format = try d.add("aformat", name: "format", "sample_fmts=flt:sample_rates=\(AudioFormat.sampleRate):channel_layouts=stereo")
        sink = try d.add("abuffersink", name: "out", nil)
        try d.link(dynamicsSource, to: compressor)
        try d.link(compressor, to: limiter)
        try d.link(limiter, to: format)
        try d.link(format, to: sink)
        try d.configure()
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
        guard let o = av_frame_alloc(), let sf = av_frame_alloc() else { throw FFmpegError(cff_averror(ENOMEM), "av_frame_alloc") }
        outFrame = o
        sumFrame = sf
        let members = ProgramMixer.members(stages, at: 0)
        (gainGraph, buffersrcs, sumSink) = try ProgramMixer.buildGainGraph(inputs: inputs, stages: stages, members: members)
    }

    deinit {
        for f in inFrames { var p: UnsafeMutablePointer<AVFrame>? = f; av_frame_free(&p) }
        var o: UnsafeMutablePointer<AVFrame>? = outFrame
        av_frame_free(&o)
        var sf: UnsafeMutablePointer<AVFrame>? = sumFrame
        av_frame_free(&sf)
    }

    private static let bufferArgs =
        "sample_rate=\(AudioFormat.sampleRate):sample_fmt=flt:channel_layout=stereo:time_base=1/\(AudioFormat.sampleRate)"

    /// Which inputs belong in the gain graph at `t`: those that can be heard. At least one, so the
    /// graph always has an input (a silent one adds nothing).
    private static func members(_ stages: [GainStage], at t: Int64) -> [Bool] {
        var m = stages.map { !$0.isSilent(at: t) }
        if !m.contains(true) { m[0] = true }
        return m
    }

    /// The gain graph for the `members`, each stage bound to its new filters.
    private static func buildGainGraph(inputs: [MixInput], stages: [GainStage], members: [Bool]) throws
        -> (FilterGraph, [FilterContext?], FilterContext) {
        let g = try FilterGraph()
        let count = members.filter { $0 }.count
        let amix = try g.add("amix", name: "mix", "inputs=\(2 * count):normalize=0:duration=longest")
        var sources: [FilterContext?] = Array(repeating: nil, count: inputs.count)
        var bound: [(GainStage, [GainStage.Path])] = []
        var pad = 0
        for i in inputs.indices where members[i] {
            let src = try g.add("abuffer", name: "src\(i)", bufferArgs)
            let split = try g.add("asplit", name: "split\(i)", "outputs=2")
            try g.link(src, to: split)
            var paths: [GainStage.Path] = []
            for p in 0..<2 {
                let args = stages[i].args(path: p)
                let vol = try g.add("volume", name: "gain\(i)\(p == 0 ? "a" : "b")", args.volume)
                let fade = try g.add("afade", name: "fade\(i)\(p == 0 ? "a" : "b")", args.fade)
                try g.link(split, p, to: vol)
                try g.link(vol, to: fade)
                try g.link(fade, to: amix, pad)
                pad += 1
                paths.append(.init(volume: vol, fade: fade))
            }
            sources[i] = src
            bound.append((stages[i], paths))
        }
        let out = try g.add("abuffersink", name: "sum", nil)
        try g.link(amix, to: out)
        try g.configure()
        // Only once the graph is whole: a failed build leaves every stage on the old one.
        for s in stages { s.unbind() }
        for (stage, paths) in bound { stage.bind(graph: g, paths: paths) }
        return (g, sources, out)
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
            // An idle source that is not in the gain graph would only render silence nobody hears.
            skipped[i] = buffersrcs[i] == nil && inputs[i].source.isIdle && stages[i].isSilent(at: t)
            if skipped[i] {
                lastSourceLevels[i] = BlockLevel(rms: 0, peak: 0)
                sourceMeters[i].add(lastSourceLevels[i])
                continue
            }
            let data = try inputSamples(i, frames: frames, at: t)
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
        }
        ducking = duckNow
        // A source about to be heard joins the graph before its ramp starts; one that went silent leaves.
        let members = ProgramMixer.members(stages, at: t)
        if zip(members, buffersrcs).contains(where: { $0 != ($1 != nil) }) {
            (gainGraph, buffersrcs, sumSink) = try ProgramMixer.buildGainGraph(inputs: inputs, stages: stages, members: members)
            graphRebuilds += 1
        }
        for stage in stages { try stage.update(at: t) }
        try applyDynamicsIfChanged()
        // 4. Push, sum, and on through the dynamics.
        for i in inputs.indices {
            guard let src = buffersrcs[i] else { continue }
            if skipped[i] {
                // Joined the graph in this very block without having rendered: it is silence.
                try inputSamples(i, frames: frames, at: t).update(repeating: 0, count: frames * AudioFormat.channels)
            }
            try ffCheck(av_buffersrc_add_frame_flags(src, inFrames[i], Int32(AV_BUFFERSRC_FLAG_KEEP_REF)),
                        "feed \(inputs[i].label) to the mix")
        }
        framesIn += Int64(frames)
        try passSum()
        try drain(output)
    }

    /// Input `i`'s reused frame made writable and stamped for the block at `t`: its samples.
    private func inputSamples(_ i: Int, frames: Int, at t: Int64) throws -> UnsafeMutablePointer<Float> {
        let f = inFrames[i]
        try ffCheck(av_frame_make_writable(f), "make an input frame writable")
        f.pointee.nb_samples = Int32(frames)
        f.pointee.pts = t
        return UnsafeMutableRawPointer(f.pointee.data.0!).assumingMemoryBound(to: Float.self)
    }

    /// Moves what the gain graph summed into the dynamics graph (program time stamps, whichever
    /// gain graph made it).
    private func passSum() throws {
        while true {
            let r = av_buffersink_get_frame(sumSink, sumFrame)
            if r == cff_eagain() || r == cff_eof() { return }
            try ffCheck(r, "read the sum")
            sumFrame.pointee.pts = framesSummed
            framesSummed += Int64(sumFrame.pointee.nb_samples)
            // Without KEEP_REF the source takes the frame's reference and leaves it blank.
            try ffCheck(av_buffersrc_add_frame_flags(dynamicsSource, sumFrame, 0), "feed the sum to the dynamics")
        }
    }

    /// Ends every input and delivers what the graph still holds (the limiter's look-ahead).
    public func finish(output: (UnsafePointer<Float>, Int) throws -> Void) throws {
        for case let src? in buffersrcs {
            try ffCheck(av_buffersrc_add_frame_flags(src, nil, 0), "end a mix input")
        }
        try passSum()
        try ffCheck(av_buffersrc_add_frame_flags(dynamicsSource, nil, 0), "end the sum")
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
            try dynamicsGraph.command(compressor, kv[0], kv[1])
        }
        for part in ProgramMixer.limiterArgs(routing.limiter).split(separator: ":") {
            let kv = part.split(separator: "=", maxSplits: 1).map(String.init)
            try dynamicsGraph.command(limiter, kv[0], kv[1])
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
