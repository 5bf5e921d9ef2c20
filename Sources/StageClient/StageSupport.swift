import Foundation
import HTTPClient
import Logging

/// Capped exponential backoff with jitter: `initial · factor^n`, at most `cap`, each delay
/// scaled by a random factor in [1 − jitter, 1 + jitter] (then capped) so that many
/// subscriptions failing together do not retry in lockstep.
public struct Backoff: Sendable {
    public var initial: Double
    public var factor: Double
    public var cap: Double
    public var jitter: Double
    public private(set) var attempts = 0

    public init(initial: Double = 0.5, factor: Double = 2, cap: Double = 8, jitter: Double = 0.25) {
        self.initial = initial; self.factor = factor; self.cap = cap; self.jitter = min(max(jitter, 0), 1)
    }

    public mutating func next<R: RandomNumberGenerator>(using rng: inout R) -> Double {
        let exp = min(Double(attempts), 30)
        attempts += 1
        let base = min(cap, initial * pow(factor, exp))
        let scaled = base * Double.random(in: (1 - jitter)...(1 + jitter), using: &rng)
        return min(cap, max(0, scaled))
    }

    public mutating func next() -> Double {
        var g = SystemRandomNumberGenerator()
        return next(using: &g)
    }

    public mutating func reset() { attempts = 0 }
}

/// Logs each cause once (at `level`), then only counts it: a stage that keeps refusing must not
/// flood the log. Every message is redacted of registered secrets.
public final class CauseLog: @unchecked Sendable {
    private let lock = NSLock()
    private var counts: [String: Int] = [:]
    private var order: [String] = []
    private let logger: Logger

    public init(logger: Logger) { self.logger = logger }

    /// Returns true the first time `cause` is seen.
    @discardableResult
    public func note(_ cause: String, level: Logger.Level = .warning, _ message: @autoclosure () -> String,
                     metadata: Logger.Metadata = [:]) -> Bool {
        lock.lock()
        let n = counts[cause, default: 0] + 1
        counts[cause] = n
        if n == 1 { order.append(cause) }
        lock.unlock()
        let text = Secrets.redact(message())
        if n == 1 {
            logger.log(level: level, "\(text)", metadata: metadata)
        } else {
            logger.debug("\(text) (seen \(n) times)", metadata: metadata)
        }
        return n == 1
    }

    /// Causes in first-seen order with how often each occurred.
    public var summary: [(cause: String, count: Int)] {
        lock.lock(); defer { lock.unlock() }
        return order.map { ($0, counts[$0] ?? 0) }
    }

    public func count(_ cause: String) -> Int {
        lock.lock(); defer { lock.unlock() }
        return counts[cause] ?? 0
    }
}

/// A flag plus a condition: threads sleep on it with a timeout and wake early when it is set
/// (or merely poked).
public final class Wakeup: @unchecked Sendable {
    private let cond = NSCondition()
    private var isSet = false
    private var pokes = 0

    public init() {}

    /// Sets the flag for good and wakes every sleeper.
    public func set() {
        cond.lock(); isSet = true; cond.broadcast(); cond.unlock()
    }

    /// Wakes sleepers once without setting the flag.
    public func poke() {
        cond.lock(); pokes &+= 1; cond.broadcast(); cond.unlock()
    }

    public var isSetNow: Bool {
        cond.lock(); defer { cond.unlock() }
        return isSet
    }

    /// Sleeps up to `seconds`; returns true if the flag is set (now or on waking).
    @discardableResult
    public func wait(_ seconds: Double) -> Bool {
        cond.lock()
        defer { cond.unlock() }
        if isSet { return true }
        let start = pokes
        let deadline = Date().addingTimeInterval(max(0, seconds))
        while !isSet && pokes == start {
            if !cond.wait(until: deadline) { break }
        }
        return isSet
    }
}

/// Asks a running `join` to stop (SIGINT/SIGTERM, a test, the control plane).
public final class StopSignal: @unchecked Sendable {
    private let lock = NSLock()
    private var why: String?
    public init() {}
    public func stop(_ reason: String) {
        lock.lock(); if why == nil { why = reason }; lock.unlock()
    }
    public var reason: String? {
        lock.lock(); defer { lock.unlock() }
        return why
    }
}

/// CLOCK_MONOTONIC in ns, the time base of RTP arrivals and the mix clock.
@inline(__always) func monotonicNs() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}
