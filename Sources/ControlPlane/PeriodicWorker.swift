import Foundation

/// Runs `body` on its own thread every `interval` seconds (fixed rate: a slow run skips the ticks
/// it overran rather than bunching them), until `body` returns false or `stop` is called.
/// `wake` runs it at once and restarts the schedule from there.
final class PeriodicWorker: @unchecked Sendable {
    let name: String
    let interval: Double
    private let body: @Sendable () -> Bool
    private let condition = NSCondition()
    // Guarded by `condition`.
    private var stopping = false
    private var woken = false
    private var started = false
    private let finished = DispatchSemaphore(value: 0)

    init(name: String, interval: Double, body: @escaping @Sendable () -> Bool) {
        self.name = name
        self.interval = max(0.01, interval)
        self.body = body
    }

    /// - Parameter firstAfter: seconds from now until the first run (default: one interval).
    func start(firstAfter delay: Double? = nil) {
        let shouldStart = condition.withLock { () -> Bool in
            guard !started else { return false }
            started = true
            return true
        }
        guard shouldStart else { return }
        let t = Thread { [self] in
            self.loop(firstAfter: delay ?? self.interval)
            self.finished.signal()
        }
        t.name = name
        t.start()
    }

    func wake() {
        condition.withLock {
            woken = true
            condition.signal()
        }
    }

    /// Asks the loop to end and waits up to `timeout` seconds for a run in progress to finish.
    /// Returns whether the thread ended in time.
    @discardableResult
    func stop(timeout: Double) -> Bool {
        requestStop()
        guard condition.withLock({ started }) else { return true }
        guard finished.wait(timeout: .now() + max(0, timeout)) == .success else { return false }
        finished.signal()  // a second stop() returns at once
        return true
    }

    /// Asks the loop to end without waiting for it.
    func requestStop() {
        condition.withLock {
            stopping = true
            condition.signal()
        }
    }

    private func loop(firstAfter delay: Double) {
        var next = Date().addingTimeInterval(delay)
        while true {
            let proceed = condition.withLock { () -> Bool in
                while !stopping && !woken && Date() < next {
                    _ = condition.wait(until: next)
                }
                if woken {
                    woken = false
                    next = Date()
                }
                return !stopping
            }
            guard proceed, body() else { return }
            next = next.addingTimeInterval(interval)
            let now = Date()
            if next < now {
                // Overran: skip the missed ticks, keep the phase.
                let missed = (now.timeIntervalSince(next) / interval).rounded(.down) + 1
                next = next.addingTimeInterval(missed * interval)
            }
        }
    }
}
