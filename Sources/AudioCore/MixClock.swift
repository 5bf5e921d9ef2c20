import Foundation

/// Paces the mix: offline runs go as fast as they can, real-time runs wait for the wall clock.
/// Program time is the same in both, so both produce the same audio.
public struct MixClock: Sendable {
    public let realtime: Bool
    /// Real-time runs wake once per burst and mix every block then due, back to back: fewer
    /// wake-ups (each costs tens of microseconds on a virtual machine), and the blocks run on warm
    /// caches. The program lags the wall clock by at most one burst, which an RTMP ingest's seconds
    /// of buffer never notice; what the mix hears does not change (packets are taken by arrival
    /// time, not by when the block is mixed).
    public let burstFrames: Int64
    private var startNs: UInt64 = 0

    public init(realtime: Bool, burstMs: Int64 = 160) {
        self.realtime = realtime
        burstFrames = AudioFormat.frames(milliseconds: max(0, burstMs))
    }

    public mutating func start() { startNs = MixClock.monotonicNs() }

    /// Returns once program time `frames` is due (at once when offline or already late). When it
    /// has to sleep, it sleeps until a whole burst is due. True if it slept.
    @discardableResult
    public func wait(untilProgramFrame frames: Int64) -> Bool {
        guard realtime else { return false }
        let now = MixClock.monotonicNs()
        guard dueNs(frames) > now else { return false }
        let due = dueNs(frames + burstFrames)
        var request = timespec(tv_sec: Int((due - now) / 1_000_000_000), tv_nsec: Int((due - now) % 1_000_000_000))
        var remaining = timespec()
        while nanosleep(&request, &remaining) != 0 && errno == EINTR { request = remaining }
        return true
    }

    private func dueNs(_ frames: Int64) -> UInt64 {
        startNs &+ UInt64(max(0, frames)) &* 1_000_000_000 / UInt64(AudioFormat.sampleRate)
    }

    /// How far the wall clock is ahead of program time `frames`, in ms (lateness of the mix).
    public func lagMs(atProgramFrame frames: Int64) -> Double {
        guard realtime else { return 0 }
        let elapsed = Double(MixClock.monotonicNs() &- startNs) / 1e6
        return elapsed - Double(frames) * 1000 / Double(AudioFormat.sampleRate)
    }

    public static func monotonicNs() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }
}
