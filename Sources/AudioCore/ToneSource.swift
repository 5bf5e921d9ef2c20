import Foundation

/// A continuous sine at a fixed amplitude in both channels: the reference source for level
/// tests and benchmarks, and a stand-in where a real source is not wanted.
public final class ToneSource: AudioSource {
    public let frequency: Double
    public let amplitude: Float
    public init(frequency: Double, amplitude: Float) {
        self.frequency = frequency
        self.amplitude = amplitude
    }

    public func render(into out: UnsafeMutablePointer<Float>, frames: Int, at: Int64) {
        // Phase from absolute program time, so the tone is continuous whatever the block size.
        let w = 2 * Double.pi * frequency / Double(AudioFormat.sampleRate)
        let period = Double(AudioFormat.sampleRate) / frequency
        for i in 0..<frames {
            let n = Double(at + Int64(i)).truncatingRemainder(dividingBy: period * 1000)
            let v = amplitude * Float(sin(w * n))
            out[2 * i] = v
            out[2 * i + 1] = v
        }
    }
}

/// Silence: for sources that have nothing yet.
public final class SilenceSource: AudioSource {
    public init() {}
    public func render(into out: UnsafeMutablePointer<Float>, frames: Int, at: Int64) {
        out.update(repeating: 0, count: frames * AudioFormat.channels)
    }
}
