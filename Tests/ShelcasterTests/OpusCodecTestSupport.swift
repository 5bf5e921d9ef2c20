import Foundation
import AudioCore
import OpusCodec
import JitterBuffer

/// Signals, Opus streams and a simulated network for the OpusCodec and JitterBuffer tests.
enum OpusTestKit {
    static let rate = 48_000

    /// Interleaved sine(s): one frequency/amplitude per channel.
    static func tone(seconds: Double, frequencies: [Double], amplitudes: [Double], startFrame: Int = 0) -> [Float] {
        let frames = Int(seconds * Double(rate))
        let ch = frequencies.count
        var out = [Float](repeating: 0, count: frames * ch)
        for i in 0..<frames {
            let t = Double(i + startFrame) / Double(rate)
            for c in 0..<ch { out[i * ch + c] = Float(amplitudes[c] * sin(2 * Double.pi * frequencies[c] * t)) }
        }
        return out
    }

    static func monoTone(seconds: Double, frequency: Double = 440, amplitude: Double = 0.25, startFrame: Int = 0) -> [Float] {
        tone(seconds: seconds, frequencies: [frequency], amplitudes: [amplitude], startFrame: startFrame)
    }

    /// 440 Hz at `amplitude` in 250 ms "syllables" separated by 50 ms dips to 0.01, so SILK's VAD
    /// keeps calling it speech (and so codes in-band FEC), unlike a steady tone.
    static func syllabicTone(seconds: Double, amplitude: Double = 0.25) -> [Float] {
        let frames = Int(seconds * Double(rate))
        return (0..<frames).map { i in
            let on = i % 14_400 < 12_000
            return Float((on ? amplitude : 0.01) * sin(2 * Double.pi * 440 * Double(i) / Double(rate)))
        }
    }

    /// Decodes packets in order with a fresh decoder: interleaved stereo.
    static func decodeAll(_ packets: [[UInt8]]) throws -> [Float] {
        let dec = try OpusDecoder()
        var out: [Float] = []
        var buf = [Float](repeating: 0, count: OpusDecoder.maxPacketFrames * 2)
        for p in packets {
            let n = try buf.withUnsafeMutableBufferPointer { try dec.decode(p, into: $0.baseAddress!, maxFrames: OpusDecoder.maxPacketFrames) }
            out.append(contentsOf: buf[0..<(n * 2)])
        }
        return out
    }

    static func channel(_ interleaved: [Float], _ c: Int, channels: Int = 2) -> [Float] {
        stride(from: c, to: interleaved.count, by: channels).map { interleaved[$0] }
    }

    static func rms(_ x: ArraySlice<Float>) -> Double {
        guard !x.isEmpty else { return 0 }
        var s = 0.0
        for v in x { s += Double(v) * Double(v) }
        return (s / Double(x.count)).squareRoot()
    }

    /// Amplitude of the sinusoid at `frequency` (Goertzel with a Hann window, gain corrected).
    static func toneAmplitude(_ x: ArraySlice<Float>, frequency: Double) -> Double {
        let n = x.count
        guard n > 1 else { return 0 }
        let w = 2 * Double.pi * frequency / Double(rate)
        let c = 2 * cos(w)
        var s1 = 0.0, s2 = 0.0, wsum = 0.0
        for (k, v) in x.enumerated() {
            let h = 0.5 - 0.5 * cos(2 * Double.pi * Double(k) / Double(n - 1))
            wsum += h
            let s0 = Double(v) * h + c * s1 - s2
            s2 = s1; s1 = s0
        }
        return 2 * (s1 * s1 + s2 * s2 - c * s1 * s2).squareRoot() / wsum
    }

    /// dBFS RMS of the left channel per 10 ms block of an interleaved stereo buffer.
    static func blockLevels(_ stereo: [Float]) -> [Double] {
        let blocks = stereo.count / 960
        return (0..<blocks).map { b in
            var s = 0.0
            for i in 0..<480 { let v = Double(stereo[b * 960 + 2 * i]); s += v * v }
            return dbfs((s / 480).squareRoot())
        }
    }

    /// Longest run of consecutive blocks below `threshold` dBFS within `range` (block indices).
    static func longestQuietRun(_ levels: [Double], in range: Range<Int>, below threshold: Double) -> Int {
        var best = 0, run = 0
        for b in range where b < levels.count {
            if levels[b] < threshold { run += 1; best = max(best, run) } else { run = 0 }
        }
        return best
    }

    /// Largest sample-to-sample step in the left channel over the given frame range.
    static func maxStep(_ stereo: [Float], frames: Range<Int>) -> Float {
        var m: Float = 0
        for i in max(frames.lowerBound, 1)..<min(frames.upperBound, stereo.count / 2) {
            m = max(m, abs(stereo[2 * i] - stereo[2 * i - 2]))
        }
        return m
    }
}

/// One RTP packet as the jitter buffer sees it.
struct SimPacket {
    var seq: UInt16
    var ts: UInt32
    var ssrc: UInt32
    var payload: [UInt8]
    var arrival: Int64
    /// Sender-side index (for tests that drop or reorder by position).
    var index: Int
}

/// A deterministic pseudo-random source (LCG) so network simulations repeat exactly.
struct SimRandom {
    var state: UInt64
    init(seed: UInt64) { state = seed &* 6364136223846793005 &+ 1442695040888963407 }
    mutating func next() -> Double {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Double(state >> 11) / Double(1 << 53)
    }
}

enum JitterSim {
    /// Packets of a live sender: packet i's audio starts at program frame `start + (frames before i)`,
    /// it is sent once its last sample is captured and arrives `transit` frames later.
    static func packets(_ payloads: [[UInt8]], frames: [Int], seq0: UInt16 = 1000, ts0: UInt32 = 90_000,
                        ssrc: UInt32 = 0x1111, start: Int64 = 0, transit: Int64 = 960) -> [SimPacket] {
        var out: [SimPacket] = []
        var seq = seq0, ts = ts0, t = start
        for (i, p) in payloads.enumerated() {
            out.append(SimPacket(seq: seq, ts: ts, ssrc: ssrc, payload: p, arrival: t + Int64(frames[i]) + transit, index: i))
            seq &+= 1
            ts &+= UInt32(frames[i])
            t += Int64(frames[i])
        }
        return out
    }

    static func packets(_ payloads: [[UInt8]], frameSize: Int, seq0: UInt16 = 1000, ts0: UInt32 = 90_000,
                        ssrc: UInt32 = 0x1111, start: Int64 = 0, transit: Int64 = 960) -> [SimPacket] {
        packets(payloads, frames: [Int](repeating: frameSize, count: payloads.count), seq0: seq0, ts0: ts0,
                ssrc: ssrc, start: start, transit: transit)
    }

    struct Run {
        var output: [Float] = []
        /// Stats after each block.
        var stats: [JitterBufferStats] = []
    }

    /// Feeds packets (in arrival order; equal arrivals keep their order) and pulls `blocks` 10 ms blocks.
    static func run(_ jb: JitterBuffer, _ packets: [SimPacket], blocks: Int, blockFrames: Int = 480) -> Run {
        let ordered = packets.enumerated().sorted { a, b in
            a.element.arrival != b.element.arrival ? a.element.arrival < b.element.arrival : a.offset < b.offset
        }.map(\.element)
        var run = Run()
        run.output.reserveCapacity(blocks * blockFrames * 2)
        var buf = [Float](repeating: 0, count: blockFrames * 2)
        var k = 0
        for b in 0..<blocks {
            let t = Int64(b * blockFrames)
            while k < ordered.count && ordered[k].arrival <= t {
                let p = ordered[k]
                jb.insert(sequenceNumber: p.seq, timestamp: p.ts, ssrc: p.ssrc, payload: p.payload, arrival: p.arrival)
                k += 1
            }
            buf.withUnsafeMutableBufferPointer { jb.render(into: $0.baseAddress!, frames: blockFrames, at: t) }
            run.output.append(contentsOf: buf)
            run.stats.append(jb.stats)
        }
        return run
    }
}
