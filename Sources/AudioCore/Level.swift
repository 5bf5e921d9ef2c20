import Foundation

/// dBFS of a linear amplitude, floored so silence gives a finite number for logs and JSON.
@inlinable public func dbfs(_ linear: Double, floor: Double = -120) -> Double {
    linear > 0 ? max(floor, 20 * log10(linear)) : floor
}

/// Linear gain from a decibel figure.
@inlinable public func linearGain(db: Double) -> Double { pow(10, db / 20) }

/// RMS and peak over an interleaved buffer, used for per-source meters and voice activity.
public struct BlockLevel: Sendable, Equatable {
    public var rms: Double
    public var peak: Double
    public init(rms: Double, peak: Double) { self.rms = rms; self.peak = peak }

    /// Runs on every source every block, so it works eight lanes at a time.
    public static func measure(_ p: UnsafePointer<Float>, count: Int) -> BlockLevel {
        guard count > 0 else { return BlockLevel(rms: 0, peak: 0) }
        var sum8 = SIMD8<Float>()
        var peak8 = SIMD8<Float>()
        let lanes = count / 8
        let raw = UnsafeRawPointer(p)
        for i in 0..<lanes {
            // Unaligned: callers pass any offset into their buffers.
            let x = raw.loadUnaligned(fromByteOffset: i * MemoryLayout<SIMD8<Float>>.stride, as: SIMD8<Float>.self)
            sum8 += x * x
            // Compare-and-select: the generic pointwiseMax is not vectorised, and this runs on every
            // source every block.
            let a = x.replacing(with: -x, where: x .< 0)
            peak8.replace(with: a, where: a .> peak8)
        }
        var sum = sum8.sum()
        var peak = peak8.max()
        for i in (lanes * 8)..<count {
            sum += p[i] * p[i]
            peak = max(peak, abs(p[i]))
        }
        return BlockLevel(rms: Double((sum / Float(count)).squareRoot()), peak: Double(peak))
    }
}

/// Short-term level meter (exponential smoothing of block RMS), for status and heartbeats.
public struct LevelMeter: Sendable {
    public private(set) var rms: Double = 0
    public private(set) var peakHold: Double = 0
    let smoothing: Double
    /// `tau` is the time constant in blocks (30 blocks = 300 ms at 10 ms blocks).
    public init(tau: Double = 30) { smoothing = 1 / max(1, tau) }
    public mutating func add(_ level: BlockLevel) {
        rms += (level.rms * level.rms - rms) * smoothing
        peakHold = max(level.peak, peakHold * (1 - smoothing))
    }
    public var dbfsValue: Double { dbfs(rms.squareRoot()) }
}
