import Testing
import AudioCore
import Routing
@testable import Mixer

/// A constant (DC) source: output = gain × value exactly, so ramps can be checked sample by sample.
final class ConstantSource: AudioSource {
    var value: Float
    init(_ value: Float) { self.value = value }
    func render(into out: UnsafeMutablePointer<Float>, frames: Int, at: Int64) {
        out.update(repeating: value, count: frames * 2)
    }
}

/// A source that is a tone between two program times and silent otherwise.
final class GatedTone: AudioSource {
    let tone: ToneSource
    let from: Int64, until: Int64
    init(frequency: Double, amplitude: Float, from: Int64, until: Int64) {
        tone = ToneSource(frequency: frequency, amplitude: amplitude); self.from = from; self.until = until
    }
    func render(into out: UnsafeMutablePointer<Float>, frames: Int, at: Int64) {
        tone.render(into: out, frames: frames, at: at)
        for i in 0..<frames where at + Int64(i) < from || at + Int64(i) >= until {
            out[2 * i] = 0; out[2 * i + 1] = 0
        }
    }
}

func plainRouting() -> Routing {
    var r = Routing()
    r.compression.enabled = false
    r.limiter.enabled = false
    r.ducking.enabled = false
    r.hostVolume = 100; r.callersVolume = 100; r.tracklistVolume = 100; r.masterVolume = 100
    return r
}

/// Runs `blocks` mix blocks, calling `before` ahead of each, and returns the interleaved program.
func runMix(_ mixer: ProgramMixer, blocks: Int, before: (Int, Int64) -> Void = { _, _ in }) throws -> [Float] {
    var out: [Float] = []
    out.reserveCapacity(blocks * AudioFormat.mixBlockFrames * 2)
    for b in 0..<blocks {
        let t = Int64(b * AudioFormat.mixBlockFrames)
        before(b, t)
        try mixer.mixBlock(at: t) { p, n in out.append(contentsOf: UnsafeBufferPointer(start: p, count: n * 2)) }
    }
    try mixer.finish { p, n in out.append(contentsOf: UnsafeBufferPointer(start: p, count: n * 2)) }
    return out
}

@Suite struct MixerTests {
    @Test func everySourceAtTheLevelTheRoutingImplies() throws {
        var r = plainRouting()
        r.hostVolume = 50; r.callersVolume = 80; r.tracklistVolume = 30; r.masterVolume = 90
        r.onAirCallerIds = ["c1", "user-3"]
        r.participantVolumes = ["c1": 50]
        let amp: Float = 0.25
        let inputs = [
            MixInput(kind: .voice(role: .host, participantId: "h", userId: "host-1"), source: ToneSource(frequency: 350, amplitude: amp)),
            MixInput(kind: .voice(role: .caller, participantId: "c1", userId: nil), source: ToneSource(frequency: 550, amplitude: amp)),
            MixInput(kind: .voice(role: .caller, participantId: "c2", userId: "user-2"), source: ToneSource(frequency: 750, amplitude: amp)),
            MixInput(kind: .voice(role: .caller, participantId: "c3", userId: "user-3"), source: ToneSource(frequency: 950, amplitude: amp)),
            MixInput(kind: .music, source: ToneSource(frequency: 1500, amplitude: amp)),
        ]
        let mixer = try ProgramMixer(inputs: inputs, routing: r)
        let out = Analysis.left(try runMix(mixer, blocks: 100))
        #expect(out.count == 100 * AudioFormat.mixBlockFrames)
        let window = out[4800..<43200]
        let expected: [(Double, Double)] = [(350, 0.5 * 0.9), (550, 0.8 * 0.5 * 0.9), (950, 0.8 * 0.9), (1500, 0.3 * 0.9)]
        for (f, g) in expected {
            let got = Analysis.toneDbfs(window, frequency: f)
            #expect(abs(got - dbfs(Double(amp) * g)) < 0.2, "tone \(f) Hz: \(got) dBFS, expected \(dbfs(Double(amp) * g))")
        }
        #expect(Analysis.toneDbfs(window, frequency: 750) < -60, "the off-air caller must not be heard")
    }

    @Test func aChangeRampsLinearlyAndArrivesWithinTheRamp() throws {
        var r = plainRouting()
        let dc: Float = 0.5
        let mixer = try ProgramMixer(inputs: [MixInput(kind: .voice(role: .host, participantId: "h", userId: nil), source: ConstantSource(dc))], routing: r)
        let changeBlock = 50
        let out = Analysis.left(try runMix(mixer, blocks: 100) { b, _ in
            if b == changeBlock { r.hostVolume = 20; mixer.apply(r) }
        })
        let t0 = changeBlock * AudioFormat.mixBlockFrames
        let rampFrames = Int(mixer.tuning.rampMs) * 48
        #expect(abs(out[t0 - 1] - dc) < 1e-5)
        #expect(abs(out[t0 + rampFrames + 1] - dc * 0.2) < 1e-5, "new level reached at the end of the ramp")
        // No step larger than a linear ramp's slope anywhere.
        let maxStep = Double(dc) * 0.8 / Double(rampFrames) * 1.01 + 1e-6
        var worst = 0.0
        for i in 1..<out.count { worst = max(worst, Double(abs(out[i] - out[i - 1]))) }
        #expect(worst <= maxStep, "largest sample-to-sample change \(worst) exceeds the ramp's \(maxStep)")
    }

    @Test func aReversedRampStaysContinuous() throws {
        var r = plainRouting()
        let mixer = try ProgramMixer(inputs: [MixInput(kind: .voice(role: .host, participantId: "h", userId: nil), source: ConstantSource(0.5))], routing: r)
        let out = Analysis.left(try runMix(mixer, blocks: 60) { b, _ in
            if b == 20 { r.hostVolume = 0; mixer.apply(r) }
            if b == 21 { r.hostVolume = 100; mixer.apply(r) }   // mid-ramp: back to where it came from
        })
        let rampFrames = Double(mixer.tuning.rampMs * 48)
        var worst = 0.0
        for i in 1..<out.count { worst = max(worst, Double(abs(out[i] - out[i - 1]))) }
        #expect(worst <= 0.5 / rampFrames * 1.01 + 1e-6)
        #expect(abs(out[out.count - 1] - 0.5) < 1e-5)
        let reversedAt = 21 * AudioFormat.mixBlockFrames
        #expect(out[reversedAt] < 0.5 && out[reversedAt] > 0.1, "mid-ramp value when reversed: \(out[reversedAt])")
    }

    @Test func limiterHoldsAHotInputUnderTheCeiling() throws {
        var r = plainRouting()
        r.limiter = .init(enabled: true, ceiling: -1)
        let mixer = try ProgramMixer(inputs: [
            MixInput(kind: .voice(role: .host, participantId: "h", userId: nil), source: ToneSource(frequency: 997, amplitude: 2.0)),
        ], routing: r)
        let out = try runMix(mixer, blocks: 200)
        let peak = Analysis.peak(out[9600...])
        #expect(dbfs(peak) <= -1 + 0.5, "peak \(dbfs(peak)) dBFS over a -1 dBFS ceiling")
        #expect(dbfs(peak) > -3, "the limiter should not crush the signal far below its ceiling")
    }

    @Test func compressorReducesALoudInput() throws {
        var r = plainRouting()
        r.compression = .init(enabled: true, threshold: -30, ratio: 4)
        let mixer = try ProgramMixer(inputs: [
            MixInput(kind: .voice(role: .host, participantId: "h", userId: nil), source: ToneSource(frequency: 440, amplitude: 0.5)),
        ], routing: r)
        let out = Analysis.left(try runMix(mixer, blocks: 200))
        let level = Analysis.toneDbfs(out[48000...], frequency: 440)
        #expect(level < dbfs(0.5) - 6, "compressed \(level) dBFS")
    }

    @Test func duckingLowersTheMusicByItsDepthWhileAVoiceSpeaks() throws {
        var r = plainRouting()
        r.ducking = .init(enabled: true, depthDb: 12)
        let voiceFrom: Int64 = 48_000, voiceUntil: Int64 = 96_000
        let mixer = try ProgramMixer(inputs: [
            MixInput(kind: .voice(role: .host, participantId: "h", userId: nil), source: GatedTone(frequency: 550, amplitude: 0.25, from: voiceFrom, until: voiceUntil)),
            MixInput(kind: .music, source: ToneSource(frequency: 1500, amplitude: 0.25)),
        ], routing: r)
        let out = Analysis.left(try runMix(mixer, blocks: 400))
        let before = Analysis.toneDbfs(out[9600..<45600], frequency: 1500)
        let during = Analysis.toneDbfs(out[60000..<94000], frequency: 1500)
        let after = Analysis.toneDbfs(out[125000..<187000], frequency: 1500)
        #expect(abs(before - dbfs(0.25)) < 0.2)
        #expect(abs((before - during) - 12) < 2, "ducked by \(before - during) dB")
        #expect(abs(after - before) < 0.2, "restored after the voice: \(after) vs \(before)")
    }

    /// Sources at gain 0 are left out of the gain graph; joining and leaving it must not be heard:
    /// the program follows the ramps sample by sample, also when the graph is rebuilt in the middle
    /// of another source's ramp.
    @Test func silentSourcesLeaveTheGraphWithoutATrace() throws {
        var r = plainRouting()
        r.onAirCallerIds = []
        let host: Float = 0.25, caller: Float = 0.125
        let mixer = try ProgramMixer(inputs: [
            MixInput(kind: .voice(role: .host, participantId: "h", userId: nil), source: ConstantSource(host)),
            MixInput(kind: .voice(role: .caller, participantId: "c1", userId: nil), source: ConstantSource(caller)),
        ], routing: r)
        let b = AudioFormat.mixBlockFrames
        let ramp = Int(mixer.tuning.rampMs) * 48
        // Caller on air at block 10, off at block 40 (silent from 40b + ramp, so it leaves at block 42);
        // host to 50 % at block 41: its ramp (41b ... 41b + ramp) is running when the graph is rebuilt.
        let out = Analysis.left(try runMix(mixer, blocks: 80) { blk, _ in
            if blk == 10 { r.onAirCallerIds = ["c1"]; mixer.apply(r) }
            if blk == 40 { r.onAirCallerIds = []; mixer.apply(r) }
            if blk == 41 { r.hostVolume = 50; mixer.apply(r) }
            if blk == 60 { #expect(mixer.graphRebuilds == 2, "rebuilds: \(mixer.graphRebuilds)") }
        })
        func linear(_ t: Int, from: Int, _ a: Double, _ z: Double) -> Double {
            t <= from ? a : t >= from + ramp ? z : a + (z - a) * Double(t - from) / Double(ramp)
        }
        var worst = 0.0
        for t in 0..<out.count {
            let gc = t < 40 * b ? linear(t, from: 10 * b, 0, 1) : linear(t, from: 40 * b, 1, 0)
            let gh = linear(t, from: 41 * b, 1, 0.5)
            worst = max(worst, abs(Double(out[t]) - (Double(host) * gh + Double(caller) * gc)))
        }
        #expect(worst < 1e-4, "largest difference from the ramps: \(worst)")
        #expect(mixer.graphRebuilds == 2)
        // The caller off air from the start: it was never in the graph.
        let quiet = try ProgramMixer(inputs: [
            MixInput(kind: .voice(role: .host, participantId: "h", userId: nil), source: ConstantSource(host)),
            MixInput(kind: .voice(role: .caller, participantId: "c1", userId: nil), source: ConstantSource(caller)),
        ], routing: plainRouting())
        let q = Analysis.left(try runMix(quiet, blocks: 10))
        #expect(quiet.graphRebuilds == 0 && q.allSatisfy { $0 == host })
    }

    /// An idle source (an empty voice slot) out of the graph is not rendered at all; once it has
    /// something to play and a gain, it is heard from its first block, ramped as usual.
    @Test func idleSourcesAreNotRenderedUntilTheyMatter() throws {
        final class Slot: AudioSource {
            var idle = true
            var renders = 0
            func render(into out: UnsafeMutablePointer<Float>, frames: Int, at: Int64) {
                renders += 1
                out.update(repeating: idle ? 0 : 0.125, count: frames * 2)
            }
            var isIdle: Bool { idle }
        }
        var r = plainRouting()
        r.onAirCallerIds = []
        let slot = Slot()
        let mixer = try ProgramMixer(inputs: [
            MixInput(kind: .voice(role: .host, participantId: "h", userId: nil), source: ConstantSource(0.25)),
            MixInput(kind: .voice(role: .caller, participantId: "c1", userId: nil), source: slot),
        ], routing: r)
        let b = AudioFormat.mixBlockFrames
        var rendersWhileIdle = -1
        let out = Analysis.left(try runMix(mixer, blocks: 40) { blk, _ in
            if blk == 10 { rendersWhileIdle = slot.renders }
            // Same block: the slot gets a participant and goes on air.
            if blk == 10 { slot.idle = false; r.onAirCallerIds = ["c1"]; mixer.apply(r) }
        })
        #expect(rendersWhileIdle == 0)
        #expect(slot.renders == 30)
        let ramp = Int(mixer.tuning.rampMs) * 48
        #expect(out[10 * b - 1] == 0.25)
        #expect(abs(out[10 * b + ramp / 2] - (0.25 + 0.0625)) < 1e-4, "half-way up the ramp")
        #expect(abs(out[12 * b] - 0.375) < 1e-5)
        #expect(mixer.lastSourceLevels[1].peak > 0.12)
    }
}
