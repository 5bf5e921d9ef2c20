import Foundation
import Logging

/// Opens tracks on a background queue so the mix thread only swaps in a ready decoder.
///
/// One request at a time: the player asks for "the first playable track from index i", takes the
/// answer, then asks for the one after. Tracks that fail to open are logged and counted here.
final class TrackPrefetcher: @unchecked Sendable {
    enum Outcome {
        case ready(index: Int, decoder: AudioFileDecoder)
        /// Not looping and no playable track remains.
        case endOfList
        /// Looping, and a whole lap of tracks failed: nothing can ever play.
        case nonePlayable
    }

    private let tracks: [Track]
    private let loop: Bool
    private let resolver: any TrackFileResolver
    private let logger: Logger
    private let queue = DispatchQueue(label: "shelcaster.tracklist.prefetch", qos: .userInitiated)
    private let condition = NSCondition()
    // Guarded by `condition`.
    private var outcome: Outcome?
    private var inFlight = false
    private var failures = 0
    private var lastFailure: String?

    init(tracks: [Track], loop: Bool, resolver: any TrackFileResolver, logger: Logger) {
        self.tracks = tracks
        self.loop = loop
        self.resolver = resolver
        self.logger = logger
    }

    var failedCount: Int { condition.withLock { failures } }
    var lastFailureText: String? { condition.withLock { lastFailure } }
    var isReady: Bool { condition.withLock { outcome != nil } }

    /// Starts looking for the first playable track at `start` (wrapping when looping).
    func request(from start: Int) {
        condition.withLock {
            outcome = nil
            inFlight = true
        }
        queue.async { [self] in
            let result = self.scan(from: start)
            self.condition.withLock {
                self.outcome = result
                self.inFlight = false
                self.condition.broadcast()
            }
        }
    }

    /// The answer to the last request, waiting up to `timeout` seconds for it; nil if not ready.
    func take(timeout: Double) -> Outcome? {
        condition.lock()
        defer { condition.unlock() }
        if outcome == nil && inFlight && timeout > 0 {
            let deadline = Date(timeIntervalSinceNow: timeout)
            while outcome == nil && inFlight {
                if !condition.wait(until: deadline) { break }
            }
        }
        let result = outcome
        outcome = nil
        return result
    }

    /// Waits up to `timeout` seconds until the pending request has an answer.
    func waitReady(timeout: Double) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        let deadline = Date(timeIntervalSinceNow: timeout)
        while outcome == nil && inFlight {
            if !condition.wait(until: deadline) { break }
        }
        return outcome != nil
    }

    private func scan(from start: Int) -> Outcome {
        let n = tracks.count
        guard n > 0 else { return loop ? .nonePlayable : .endOfList }
        let attempts = loop ? n : max(0, n - start)
        for step in 0..<attempts {
            let index = (start + step) % n
            let track = tracks[index]
            do {
                let path = try resolver.localPath(for: track.location)
                let decoder = try AudioFileDecoder(path: path)
                return .ready(index: index, decoder: decoder)
            } catch {
                let text = "\(error)"
                condition.withLock {
                    failures += 1
                    lastFailure = text
                }
                logger.warning("tracklist: skipping track \(index + 1) '\(track.title)': \(text)",
                               metadata: ["track": "\(index)", "file": "\(track.location)"])
            }
        }
        return loop ? .nonePlayable : .endOfList
    }
}
