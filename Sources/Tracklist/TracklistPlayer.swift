import AudioCore
import Foundation
import Logging

/// What the tracklist is doing, for status and heartbeats.
public enum TracklistState: String, Sendable, Equatable {
    /// Waiting for a track to be opened (start-up, or a live run whose next track is not ready).
    case loading = "LOADING"
    case playing = "PLAYING"
    case paused = "PAUSED"
    /// Played to the end of a non-looping list (or the list is empty).
    case stopped = "STOPPED"
    /// No track could be opened at all; playing silence.
    case failed = "FAILED"
}

/// The heartbeat's `currentTrack`: which entry is playing and how far in.
public struct TrackStatus: Sendable, Equatable {
    public var index: Int
    public var title: String
    public var positionMs: Int64
    public init(index: Int, title: String, positionMs: Int64) {
        self.index = index
        self.title = title
        self.positionMs = positionMs
    }
}

public struct TracklistStats: Sendable, Equatable {
    /// Tracks that began playing (a looped track counts each time).
    public var tracksStarted: Int
    /// Tracks skipped because they were missing, not audio or undecodable (each attempt counts).
    public var tracksFailed: Int
    /// Corrupt packets skipped inside tracks that did play.
    public var packetsSkipped: Int
    /// Why the last failed track could not play (names the file).
    public var lastFailure: String?
}

/// Plays a list of audio files in order, gaplessly, as an `AudioSource` of the mix.
///
/// Threads: `render` is called by the one mix thread; `play`, `pause`, `skip` and the status
/// properties may be used from any thread. Controls take effect at the next rendered block.
/// The next track is opened ahead of time on a background queue, so a track change inside `render`
/// only swaps decoders; decoding itself runs in `render` into buffers allocated up front.
public final class TracklistPlayer: AudioSource, @unchecked Sendable {
    public let tracks: [Track]
    public let loop: Bool

    private let logger: Logger
    private let prefetcher: TrackPrefetcher
    private let handoverTimeout: Double

    // Shared between control threads and the mix thread.
    private let lock = NSLock()
    private var paused = false
    private var pendingSkips = 0
    private var published = Snapshot()

    private struct Snapshot {
        var state: TracklistState = .loading
        var index = -1
        var title = ""
        var positionFrames: Int64 = 0
        var started = 0
        var packetsSkipped = 0
    }

    // Mix-thread state.
    private enum Phase { case waiting, playing, stopped, failed }
    private var phase = Phase.waiting
    private var current: AudioFileDecoder?
    private var currentIndex = -1
    private var positionFrames: Int64 = 0
    private var started = 0
    private var packetsSkipped = 0
    private var audible = true
    /// After one handover wait timed out, later blocks only poll until that track arrives.
    private var handoverWaited = false
    private let scratch: UnsafeMutablePointer<Float>
    private let scratchFrames = 4_800

    /// - Parameters:
    ///   - loop: start again at the first track after the last (the tracklist record's `loop`).
    ///   - resolver: turns track locations into local paths; runs on the prefetch queue.
    ///   - handoverTimeout: how long `render` may wait at a track change for the next track if it is
    ///     not open yet. Offline runs keep a generous wait so output never depends on timing; a live
    ///     run passes 0 and plays silence until the track is ready instead of stalling the mix.
    public init(tracks: [Track], loop: Bool = true, resolver: any TrackFileResolver = LocalFileResolver(),
                handoverTimeout: Double = 10, logger: Logger = Logger(label: "shelcaster.tracklist")) {
        self.tracks = tracks
        self.loop = loop
        self.logger = logger
        self.handoverTimeout = max(0, handoverTimeout)
        prefetcher = TrackPrefetcher(tracks: tracks, loop: loop, resolver: resolver, logger: logger)
        scratch = .allocate(capacity: scratchFrames * AudioFormat.channels)
        if tracks.isEmpty {
            phase = .stopped
            published.state = .stopped
        } else {
            prefetcher.request(from: 0)
        }
    }

    deinit { scratch.deallocate() }

    /// Blocks until the track being opened (before playback: the first one) is open or found
    /// unplayable, up to `timeout` seconds, so a run can start its clock with music ready.
    /// Returns whether an answer arrived in time.
    @discardableResult
    public func prepare(timeout: Double) -> Bool {
        if tracks.isEmpty { return true }
        return prefetcher.waitReady(timeout: timeout)
    }

    // MARK: - Controls

    public func play() { lock.withLock { paused = false } }
    public func pause() { lock.withLock { paused = true } }
    /// Moves to the next track at the next block (the tracklist record's `skipSeq` increments).
    public func skip() { lock.withLock { pendingSkips += 1 } }

    public var isPaused: Bool { lock.withLock { paused } }

    public var state: TracklistState {
        lock.withLock {
            if paused && published.state != .stopped && published.state != .failed { return .paused }
            return published.state
        }
    }

    public var currentTrack: TrackStatus? {
        lock.withLock {
            guard published.index >= 0 else { return nil }
            return TrackStatus(index: published.index, title: published.title,
                               positionMs: AudioFormat.milliseconds(frames: published.positionFrames))
        }
    }

    public var stats: TracklistStats {
        let snapshot = lock.withLock { published }
        return TracklistStats(tracksStarted: snapshot.started, tracksFailed: prefetcher.failedCount,
                              packetsSkipped: snapshot.packetsSkipped, lastFailure: prefetcher.lastFailureText)
    }

    /// Whether the upcoming track is already open (or known not to exist), so the switch to it
    /// will not wait.
    public var isNextTrackReady: Bool { prefetcher.isReady }

    // MARK: - Rendering

    public func render(into out: UnsafeMutablePointer<Float>, frames: Int, at: Int64) {
        guard frames > 0 else { return }
        let canSkip = current != nil
        let (isPaused, skipNow) = lock.withLock { () -> (Bool, Bool) in
            if phase == .stopped || phase == .failed { pendingSkips = 0 }
            let skipNow = canSkip && pendingSkips > 0
            if skipNow { pendingSkips -= 1 }
            return (paused, skipNow)
        }

        let ramp = min(frames, AudioFormat.blockFrames)
        switch (isPaused, audible) {
        case (false, true):
            if skipNow && frames <= scratchFrames {
                // A 10 ms crossfade: the old track fades out under the new one fading in.
                let old = current
                _ = produce(into: scratch, frames: frames)
                if current === old {
                    fade(scratch, frames: frames, ramp: ramp, in: false)
                    dropCurrent()
                    _ = produce(into: out, frames: frames)
                    fade(out, frames: frames, ramp: ramp, in: true)
                    for i in 0..<(frames * 2) { out[i] += scratch[i] }
                } else {
                    // The old track ended inside this block anyway: the skip is already done.
                    out.update(from: scratch, count: frames * 2)
                }
            } else {
                if skipNow { dropCurrent() }
                _ = produce(into: out, frames: frames)
            }
        case (false, false):
            // Resuming from pause.
            if skipNow { dropCurrent() }
            _ = produce(into: out, frames: frames)
            fade(out, frames: frames, ramp: ramp, in: true)
        case (true, true) where started == 0:
            // Paused before anything played: nothing to fade out.
            out.update(repeating: 0, count: frames * 2)
        case (true, true):
            // Pausing: this block fades out, the position stops after it.
            _ = produce(into: out, frames: frames)
            fade(out, frames: frames, ramp: ramp, in: false)
            if skipNow { dropCurrent() }
        case (true, false):
            out.update(repeating: 0, count: frames * 2)
            if skipNow { dropCurrent() }
        }
        audible = !isPaused
        publish()
    }

    /// Fills `out` from the current track, moving straight on to the next one when it ends (same
    /// block, no gap). Returns the frames of audio written; the rest of `out` is zeroed.
    private func produce(into out: UnsafeMutablePointer<Float>, frames: Int) -> Int {
        var done = 0
        while done < frames {
            if current == nil && !acquireNext() { break }
            guard let decoder = current else { break }
            let n = decoder.read(into: out + done * 2, frames: frames - done)
            done += n
            positionFrames += Int64(n)
            if done < frames { finishCurrent() }
        }
        if done < frames { (out + done * 2).update(repeating: 0, count: (frames - done) * 2) }
        return done
    }

    private func acquireNext() -> Bool {
        guard phase == .waiting || phase == .playing else { return false }
        guard let outcome = prefetcher.take(timeout: handoverWaited ? 0 : handoverTimeout) else {
            if !handoverWaited && handoverTimeout > 0 {
                logger.warning("tracklist: next track not ready after \(handoverTimeout) s; playing silence until it is")
            }
            handoverWaited = true
            phase = .waiting
            return false
        }
        handoverWaited = false
        switch outcome {
        case .ready(let index, let decoder):
            current = decoder
            currentIndex = index
            positionFrames = 0
            phase = .playing
            started += 1
            logger.info("tracklist: playing track \(index + 1)/\(tracks.count) '\(tracks[index].title)'",
                        metadata: ["file": "\(decoder.path)", "codec": "\(decoder.codecName)"])
            prefetcher.request(from: index + 1)
            return true
        case .endOfList:
            current = nil
            phase = .stopped
            if started == 0 {
                logger.warning("tracklist: none of the \(tracks.count) tracks could be played; playing silence")
            } else {
                logger.info("tracklist: end of tracklist")
            }
            return false
        case .nonePlayable:
            current = nil
            phase = .failed
            logger.warning("tracklist: none of the \(tracks.count) tracks could be played; playing silence")
            return false
        }
    }

    /// The current track reached its end.
    private func finishCurrent() {
        guard let decoder = current else { return }
        packetsSkipped += decoder.skippedPackets
        if let why = decoder.endedEarly {
            logger.warning("tracklist: track \(currentIndex + 1) ended early: \(why)", metadata: ["file": "\(decoder.path)"])
        } else if decoder.skippedPackets > 0 {
            logger.warning("tracklist: skipped \(decoder.skippedPackets) corrupt packets in track \(currentIndex + 1)",
                           metadata: ["file": "\(decoder.path)"])
        }
        current = nil
        phase = .waiting
    }

    /// Leaves the current track before its end (skip).
    private func dropCurrent() {
        guard let decoder = current else { return }
        logger.info("tracklist: skipping track \(currentIndex + 1) at \(AudioFormat.milliseconds(frames: positionFrames)) ms")
        packetsSkipped += decoder.skippedPackets
        current = nil
        phase = .waiting
    }

    private func publish() {
        let state: TracklistState
        switch phase {
        case .waiting: state = .loading
        case .playing: state = .playing
        case .stopped: state = .stopped
        case .failed: state = .failed
        }
        let hasTrack = current != nil
        lock.withLock {
            published.state = state
            if hasTrack {
                if published.index != currentIndex { published.title = tracks[currentIndex].title }
                published.index = currentIndex
                published.positionFrames = positionFrames
            } else {
                published.index = -1
            }
            published.started = started
            published.packetsSkipped = packetsSkipped
        }
    }

    private func fade(_ buffer: UnsafeMutablePointer<Float>, frames: Int, ramp: Int, in fadeIn: Bool) {
        let step = 1 / Float(ramp)
        for i in 0..<frames {
            let g: Float
            if i < ramp {
                g = fadeIn ? Float(i) * step : 1 - Float(i + 1) * step
            } else {
                g = fadeIn ? 1 : 0
            }
            buffer[2 * i] *= g
            buffer[2 * i + 1] *= g
        }
    }
}
