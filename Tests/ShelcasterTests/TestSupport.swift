import Foundation
import AudioCore

/// Test-side analysis of rendered audio (left channel unless stated).
enum Analysis {
    /// Amplitude of the sinusoid at `frequency` in `x`, by a Goertzel filter over a whole number
    /// of periods (Hann window corrected), so nearby tones at other frequencies do not leak in.
    static func toneAmplitude(_ x: ArraySlice<Float>, frequency: Double, sampleRate: Double = 48_000) -> Double {
        let n = x.count
        guard n > 0 else { return 0 }
        let w = 2 * Double.pi * frequency / sampleRate
        var s1 = 0.0, s2 = 0.0
        let c = 2 * cos(w)
        var windowSum = 0.0
        for (k, v) in x.enumerated() {
            let hann = 0.5 - 0.5 * cos(2 * Double.pi * Double(k) / Double(n - 1))
            windowSum += hann
            let s0 = Double(v) * hann + c * s1 - s2
            s2 = s1; s1 = s0
        }
        let power = s1 * s1 + s2 * s2 - c * s1 * s2
        return 2 * power.squareRoot() / windowSum
    }

    static func toneDbfs(_ x: ArraySlice<Float>, frequency: Double) -> Double {
        dbfs(toneAmplitude(x, frequency: frequency))
    }

    /// Tone level as the mean power of short windows: robust to phase jumps (a jitter buffer
    /// changing its delay, a resync), which would cancel in one long coherent measurement.
    static func windowedToneDbfs(_ x: ArraySlice<Float>, frequency: Double, window: Int = 9600) -> Double {
        var power = 0.0, count = 0
        var i = x.startIndex
        while i + window <= x.endIndex {
            let a = toneAmplitude(x[i..<i + window], frequency: frequency)
            power += a * a; count += 1
            i += window
        }
        return count > 0 ? dbfs((power / Double(count)).squareRoot()) : -120
    }

    static func left(_ interleaved: [Float]) -> [Float] {
        stride(from: 0, to: interleaved.count, by: 2).map { interleaved[$0] }
    }

    static func rms(_ x: ArraySlice<Float>) -> Double {
        guard !x.isEmpty else { return 0 }
        return (x.reduce(0.0) { $0 + Double($1) * Double($1) } / Double(x.count)).squareRoot()
    }

    static func peak(_ x: ArraySlice<Float>) -> Double { x.reduce(0.0) { max($0, Double(abs($1))) } }
}

/// Reads a canonical 16-bit PCM or 32-bit float WAV file (what the worker writes) into interleaved floats.
enum WAVFile {
    struct Contents { var sampleRate: Int; var channels: Int; var samples: [Float] }
    enum Failure: Error { case malformed(String) }

    static func read(_ path: String) throws -> Contents {
        let d = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        func u32(_ o: Int) -> Int { Int(d[o]) | Int(d[o+1]) << 8 | Int(d[o+2]) << 16 | Int(d[o+3]) << 24 }
        func u16(_ o: Int) -> Int { Int(d[o]) | Int(d[o+1]) << 8 }
        guard d.count >= 12, String(decoding: d[0..<4], as: UTF8.self) == "RIFF" else { throw Failure.malformed("not RIFF") }
        var o = 12
        var rate = 0, channels = 0, bits = 0, format = 0
        while o + 8 <= d.count {
            let id = String(decoding: d[o..<o+4], as: UTF8.self)
            var size = u32(o + 4)
            if id == "fmt " {
                format = u16(o + 8); channels = u16(o + 10); rate = u32(o + 12); bits = u16(o + 22)
                if format == 0xFFFE { format = u16(o + 32) }
            } else if id == "data" {
                if size == 0 || o + 8 + size > d.count { size = d.count - o - 8 }  // streamed WAV
                var out: [Float] = []
                if format == 1 && bits == 16 {
                    out.reserveCapacity(size / 2)
                    var k = o + 8
                    while k + 1 < o + 8 + size { out.append(Float(Int16(bitPattern: UInt16(u16(k)))) / 32768); k += 2 }
                } else if format == 3 && bits == 32 {
                    out.reserveCapacity(size / 4)
                    var k = o + 8
                    while k + 3 < o + 8 + size { out.append(Float(bitPattern: UInt32(u32(k)))); k += 4 }
                } else { throw Failure.malformed("unsupported format \(format)/\(bits)") }
                return Contents(sampleRate: rate, channels: channels, samples: out)
            }
            o += 8 + size + (size & 1)
        }
        throw Failure.malformed("no data chunk")
    }
}
