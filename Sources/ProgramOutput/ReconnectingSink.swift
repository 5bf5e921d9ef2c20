import AudioCore
import CFFmpeg
import FFmpegSupport
import Foundation
import Synchronization

/// How a reconnecting stream retries, buffers and reports.
///
/// Defaults: retries 0.25 s after a loss, doubling to a 2 s cap, each delay shortened by up to 25 %
/// at random (so a fleet of workers does not hammer a recovering ingest in step). The 2 s cap is what
/// bounds how long after the ingest returns the stream resumes: at most one delay plus one connect.
public struct ReconnectPolicy: Sendable, Equatable {
    public var initialDelaySeconds: Double
    public var maxDelaySeconds: Double
    /// Each delay is multiplied by a random factor in `[1 - jitter, 1]`.
    public var jitter: Double
    /// Program audio kept while the connection is slow or down; older audio is dropped first.
    /// It is sent in a burst when the connection returns (its timestamps are its program time).
    public var queueSeconds: Double
    /// An outage is `reconnecting` (or `connecting` before the first connection) for this long,
    /// then `down`.
    public var downAfterSeconds: Double
    /// `finish()` spends at most this long sending what is queued and closing; then the connection
    /// is cut (no trailer).
    public var finishTimeoutSeconds: Double

    public init(initialDelaySeconds: Double = 0.25, maxDelaySeconds: Double = 2, jitter: Double = 0.25,
                queueSeconds: Double = 2, downAfterSeconds: Double = 10, finishTimeoutSeconds: Double = 3) {
        self.initialDelaySeconds = initialDelaySeconds
        self.maxDelaySeconds = maxDelaySeconds
        self.jitter = jitter
        self.queueSeconds = queueSeconds
        self.downAfterSeconds = downAfterSeconds
        self.finishTimeoutSeconds = finishTimeoutSeconds
    }

    func validate() throws {
        func bad(_ s: String) -> ProgramOutputError { .invalidOptions("reconnectPolicy.\(s)") }
        guard initialDelaySeconds > 0, initialDelaySeconds <= 60 else { throw bad("initialDelaySeconds \(initialDelaySeconds) is outside (0, 60]") }
        guard maxDelaySeconds >= initialDelaySeconds, maxDelaySeconds <= 300 else {
            throw bad("maxDelaySeconds \(maxDelaySeconds) is outside [initialDelaySeconds, 300]")
        }
        guard jitter >= 0, jitter < 1 else { throw bad("jitter \(jitter) is outside [0, 1)") }
        guard queueSeconds >= 0.1, queueSeconds <= 30 else { throw bad("queueSeconds \(queueSeconds) is outside [0.1, 30]") }
        guard downAfterSeconds >= 0, downAfterSeconds <= 3600 else { throw bad("downAfterSeconds \(downAfterSeconds) is outside [0, 3600]") }
        guard finishTimeoutSeconds > 0, finishTimeoutSeconds <= 60 else {
            throw bad("finishTimeoutSeconds \(finishTimeoutSeconds) is outside (0, 60]")
        }
    }

    /// The wait before retry number `attempt` (1-based) of one outage, without jitter.
    func delay(attempt: Int) -> Double {
        let doublings = Double(min(max(attempt - 1, 0), 30))
        return min(maxDelaySeconds, initialDelaySeconds * pow(2, doublings))
    }
}

/// DATA-MODEL.md `outputState`.
public enum OutputConnectionState: String, Sendable, Equatable {
    /// Not connected yet (the first connection is being attempted).
    case connecting = "CONNECTING"
    case connected = "CONNECTED"
    /// Lost after having been connected, for less than `downAfterSeconds`.
    case reconnecting = "RECONNECTING"
    /// Not connected for `downAfterSeconds` or more, or failed for good.
    case down = "DOWN"
}

/// What the control plane reports about the output. The daemon turns a long outage into DEGRADED.
public struct OutputHealth: Sendable, Equatable {
    public var state: OutputConnectionState
    /// Length of the current outage (0 while connected). Before the first connection, counted from
    /// the sink's creation.
    public var downSeconds: Double
    /// Connections made after a loss (the first connection is not counted).
    public var reconnects: Int
    /// Connection attempts that failed.
    public var failedAttempts: Int
    /// Program audio never sent: dropped because the queue was full (oldest first) or still queued
    /// when the output finished while down.
    public var droppedAudioMs: Double
    /// Program audio waiting to be sent.
    public var queuedMs: Double
    /// Bytes handed to the connections, all of them together.
    public var bytesWritten: Int64
    /// Output rate over the last few seconds (0 while down).
    public var kbps: Double
    /// The most recent connection failure, redacted.
    public var lastError: String?

    public init(state: OutputConnectionState, downSeconds: Double = 0, reconnects: Int = 0, failedAttempts: Int = 0,
                droppedAudioMs: Double = 0, queuedMs: Double = 0, bytesWritten: Int64 = 0, kbps: Double = 0,
                lastError: String? = nil) {
        self.state = state
        self.downSeconds = downSeconds
        self.reconnects = reconnects
        self.failedAttempts = failedAttempts
        self.droppedAudioMs = droppedAudioMs
        self.queuedMs = queuedMs
        self.bytesWritten = bytesWritten
        self.kbps = kbps
        self.lastError = lastError
    }

    /// DATA-MODEL.md: the service is DEGRADED while the output has been down this long (30 s).
    public func isDegraded(afterSeconds threshold: Double = 30) -> Bool {
        state != .connected && downSeconds >= threshold
    }
}

/// An RTMP(S) output that survives the ingest going away.
///
/// `write` never touches the network: it copies the block into a bounded queue (`queueSeconds`) and
/// returns; when the queue is full the oldest audio is dropped, so the program stays live. A
/// connection thread encodes (AAC + the cached H.264 still GOP) and sends. When a write or connect
/// fails, the connection is closed and reopened with capped exponential backoff and jitter; each new
/// connection is a new FLV/RTMP session (new header, video from an IDR) whose timestamps continue the
/// program's clock.
///
/// Errors: the first connection is tried in `init`. Until one connection has succeeded, only network
/// failures (refused, reset, timed out, unreachable) are retried; anything else — a certificate that
/// does not verify, a name that does not resolve, an RTMP server refusing the app or key — means the
/// configuration is wrong and is thrown as `ProgramOutputError.connectFailed` (from `init`, or from
/// the next `write` if it happens on a retry). Once connected, every failure is retried: the same
/// settings worked, so the cause is on the other side.
///
/// States (`health.state`): CONNECTED while a connection works; on a loss RECONNECTING, or CONNECTING
/// before the first connection; DOWN once the outage has lasted `downAfterSeconds` (10 s) or after a
/// configuration failure. `health.downSeconds` is the current outage. Turning a long outage into the
/// service's DEGRADED (30 s, `OutputHealth.isDegraded`) is the caller's job.
///
/// Timestamps: each connection's FLV carries program time (frames written since the start), so they
/// rise across reconnections; the audio dropped during an outage is a jump in them, not a shift.
/// nginx-rtmp records them as sent; IVS documents nothing on timestamps across RTMP sessions (a new
/// connection is a new stream session, which a recording configuration's reconnect window may merge).
///
/// `stats` and `health` may be read from any thread.
public final class ReconnectingSink: ProgramSink, @unchecked Sendable {
    private let core: Core

    init(url: String, options: OutputOptions) throws {
        let label = OutputTarget.redact(url)
        let gop: StillGOP
        do {
            gop = try ReconnectingSink.makeGOP(options)
        } catch let error as ProgramOutputError {
            throw error
        } catch {
            throw ProgramOutputError.setupFailed(label, reason: "\(error)")
        }
        core = Core(url: url, label: label, options: options, gop: gop)
        // The first attempt is made (on the connection thread, which owns every connection) before
        // this returns, so a wrong configuration fails here, before the show starts.
        try core.start()
    }

    deinit {
        try? finish()
    }

    public var stats: OutputStats { core.stats }
    public var health: OutputHealth { core.health }

    public func write(_ samples: UnsafePointer<Float>, frames: Int) throws {
        try core.write(samples, frames: frames)
    }

    /// Sends what is queued (at most `finishTimeoutSeconds`), writes the trailer and closes. When the
    /// output is down at that moment, the queue is dropped. Throws only a configuration failure that
    /// `write` would have thrown.
    public func finish() throws {
        try core.finish()
    }

    /// The still picture's GOP, encoded once and reused by every connection.
    static func makeGOP(_ options: OutputOptions) throws -> StillGOP {
        let artwork = try options.artworkPath.map { try DecodedImage(path: $0) }
        let size = StillPicture.videoSize(for: artwork, requested: options.videoSize)
        var picture: UnsafeMutablePointer<AVFrame>? = try StillPicture.render(size: size, artwork: artwork)
        defer { av_frame_free(&picture) }
        guard let picture else { throw FFmpegError(cff_averror(ENOMEM), "still picture") }
        guard let flv = av_guess_format("flv", nil, nil) else { throw ProgramOutputError.unavailable("the flv muxer") }
        return try StillGOP(picture: picture, frameRate: options.frameRate,
                            gopLength: options.frameRate * options.gopSeconds,
                            globalHeader: (flv.pointee.flags & AVFMT_GLOBALHEADER) != 0)
    }
}

/// Lets `finish` (or a dead connection being closed) cut FFmpeg's blocking I/O short.
final class ConnectionInterrupt: @unchecked Sendable {
    /// Raised for good when `finish` runs out of time.
    let stop = Atomic<Bool>(false)
    /// Raised while a failed connection is being closed, so RTMP's goodbye cannot block.
    let abandoning = Atomic<Bool>(false)

    var callback: AVIOInterruptCB {
        AVIOInterruptCB(
            callback: { opaque in
                guard let opaque else { return 0 }
                let flags = Unmanaged<ConnectionInterrupt>.fromOpaque(opaque).takeUnretainedValue()
                return flags.stop.load(ordering: .relaxed) || flags.abandoning.load(ordering: .relaxed) ? 1 : 0
            },
            opaque: Unmanaged.passUnretained(self).toOpaque())
    }
}

extension ReconnectingSink {
    /// State shared by the writing thread, the connection thread and readers of `health`.
    /// Fields marked "worker" are touched only by the connection thread; the rest only under `lock`.
    final class Core: @unchecked Sendable {
        let url: String
        let label: String
        let options: OutputOptions
        let policy: ReconnectPolicy
        let gop: StillGOP
        /// Referenced by every FFmpeg connection this core opens; lives as long as the core.
        let interrupt = ConnectionInterrupt()

        private let lock = NSCondition()
        private let queue: ProgramAudioQueue
        private var connected = false
        private var everConnected = false
        private var outageStartNs: Int64
        private var reconnects = 0
        private var failedAttempts = 0
        private var lastError: String?
        private var fatal: ProgramOutputError?
        private var finishing = false
        private var finished = false
        /// True while no connection thread runs (before `start`, after it exits).
        private var workerDone = true
        private var firstAttemptDone = false
        private var bytesTotal: Int64 = 0
        private var videoTotal: Int64 = 0
        /// (time, bytesTotal) once a second, for a recent output rate.
        private var rateSamples: [(ns: Int64, bytes: Int64)] = []
        private static let rateWindow = 6
        /// Queued frames that wake the connection thread: five AAC frames of 1024.
        static let wakeFrames = 5 * 1024

        // worker
        private var session: LiveFLVSession?
        private var completedBytes: Int64 = 0
        private var completedVideo: Int64 = 0

        init(url: String, label: String, options: OutputOptions, gop: StillGOP) {
            self.url = url
            self.label = label
            self.options = options
            policy = options.reconnectPolicy
            self.gop = gop
            queue = ProgramAudioQueue(capacityFrames: Int(policy.queueSeconds * Double(AudioFormat.sampleRate)))
            outageStartNs = Core.nowNs()
            rateSamples.reserveCapacity(Core.rateWindow + 1)
        }

        static func nowNs() -> Int64 {
            var ts = timespec()
            clock_gettime(CLOCK_MONOTONIC, &ts)
            return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
        }

        // MARK: writing thread

        func write(_ samples: UnsafePointer<Float>, frames: Int) throws {
            lock.lock()
            defer { lock.unlock() }
            if finished { throw ProgramOutputError.alreadyFinished(label) }
            if let fatal { throw fatal }
            guard frames > 0 else { return }
            queue.push(interleaved: samples, frames: frames)
            let now = Core.nowNs()
            if rateSamples.last.map({ now - $0.ns >= 1_000_000_000 }) ?? true {
                if rateSamples.count == Core.rateWindow { rateSamples.removeFirst() }
                rateSamples.append((now, bytesTotal))
            }
            // Woken per five AAC frames (about 100 ms), not per write: each wake-up and each flush
            // of the RTMP layer costs more than the tags it sends, and an ingest buffers seconds.
            if queue.count >= Core.wakeFrames { lock.signal() }
        }

        func finish() throws {
            lock.lock()
            if finished {
                lock.unlock()
                return
            }
            finished = true
            finishing = true
            lock.broadcast()
            let deadline = Date(timeIntervalSinceNow: policy.finishTimeoutSeconds)
            while !workerDone && Date() < deadline { _ = lock.wait(until: deadline) }
            if !workerDone {
                // Still sending or stuck in a connect: cut the I/O; the thread then exits promptly.
                interrupt.stop.store(true, ordering: .relaxed)
                let grace = Date(timeIntervalSinceNow: 2)
                while !workerDone && Date() < grace { _ = lock.wait(until: grace) }
            }
            let error = fatal
            lock.unlock()
            if let error { throw error }
        }

        var stats: OutputStats {
            lock.lock()
            defer { lock.unlock() }
            return OutputStats(bytesWritten: bytesTotal, audioFrames: queue.end, videoPackets: videoTotal)
        }

        var health: OutputHealth {
            lock.lock()
            defer { lock.unlock() }
            let now = Core.nowNs()
            let down = connected ? 0 : Double(now - outageStartNs) / 1e9
            let state: OutputConnectionState
            if connected {
                state = .connected
            } else if fatal != nil || down >= policy.downAfterSeconds {
                state = .down
            } else {
                state = everConnected ? .reconnecting : .connecting
            }
            var kbps = 0.0
            if let oldest = rateSamples.first, now - oldest.ns >= 500_000_000 {
                kbps = Double(bytesTotal - oldest.bytes) * 8 / (Double(now - oldest.ns) / 1e9) / 1000
            }
            let rate = Double(AudioFormat.sampleRate)
            return OutputHealth(state: state, downSeconds: down, reconnects: reconnects, failedAttempts: failedAttempts,
                                droppedAudioMs: Double(queue.droppedFrames) * 1000 / rate,
                                queuedMs: Double(queue.count) * 1000 / rate, bytesWritten: bytesTotal, kbps: kbps,
                                lastError: lastError)
        }

        // MARK: connection thread

        /// Starts the connection thread and waits for its first connection attempt. Throws when that
        /// attempt failed for a reason other than the network (the thread has then stopped).
        func start() throws {
            lock.lock()
            workerDone = false
            lock.unlock()
            let thread = Thread { [self] in run() }
            thread.name = "program-output"
            thread.start()
            lock.lock()
            defer { lock.unlock() }
            while !firstAttemptDone { lock.wait() }
            if let fatal { throw fatal }
        }

        private func run() {
            var attempt = 0
            var nextAttemptNs: Int64 = 0
            while true {
                if let current = session {
                    if !sendOnce(current) { break }
                    if session == nil {
                        // Lost: the first retry comes after the initial delay.
                        attempt = 1
                        nextAttemptNs = Core.nowNs() + delayNs(attempt: 1)
                    }
                    continue
                }
                // Not connected: wait for the next attempt; finish does not wait for a reconnection.
                lock.lock()
                while !finishing && Core.nowNs() < nextAttemptNs {
                    _ = lock.wait(until: Date(timeIntervalSinceNow: Double(nextAttemptNs - Core.nowNs()) / 1e9))
                }
                let stop = finishing || fatal != nil
                lock.unlock()
                if stop { break }
                do {
                    let fresh = try LiveFLVSession(url: url, options: options, gop: gop, interrupt: interrupt.callback)
                    session = fresh
                    attempt = 0
                    lock.lock()
                    connected = true
                    if everConnected { reconnects += 1 }
                    everConnected = true
                    firstAttemptDone = true
                    lock.broadcast()
                    lock.unlock()
                } catch {
                    let failure = error as? LiveFLVSession.OpenFailure
                    let reported = failure?.error ?? .connectFailed(label, reason: "\(error)")
                    attempt += 1
                    lock.lock()
                    failedAttempts += 1
                    lastError = reported.description
                    // Before the first connection only network failures are retried; an attempt cut
                    // short by finish is neither.
                    if !everConnected && !(failure?.isNetworkFailure ?? false) && !finishing { fatal = reported }
                    let giveUp = fatal != nil
                    firstAttemptDone = true
                    lock.broadcast()
                    lock.unlock()
                    if giveUp { break }
                    nextAttemptNs = Core.nowNs() + delayNs(attempt: attempt)
                }
            }
            lock.lock()
            // Down (or failed) at the end: what is still queued will never be sent; it counts as dropped.
            queue.discardAll()
            workerDone = true
            firstAttemptDone = true
            lock.broadcast()
            lock.unlock()
        }

        /// One step while connected: waits for a frame's worth of audio, encodes and sends it. Returns
        /// false when the thread should exit (finished, cleanly or not).
        private func sendOnce(_ current: LiveFLVSession) -> Bool {
            let planes: (left: UnsafeMutablePointer<Float>, right: UnsafeMutablePointer<Float>)
            do {
                planes = try current.writablePlanes()
            } catch {
                return connectionLost(current, error)
            }
            lock.lock()
            while queue.count < current.frameSize && !finishing {
                _ = lock.wait(until: Date(timeIntervalSinceNow: 0.25))
            }
            let last = finishing && queue.count <= current.frameSize
            let (start, n) = queue.pop(maxFrames: current.frameSize, left: planes.left, right: planes.right)
            let drained = queue.count < current.frameSize
            lock.unlock()
            do {
                try current.encode(start: start, frames: n)
                if last { try current.finish() } else if drained { try current.flush() }
            } catch {
                return connectionLost(current, error)
            }
            publish(current)
            if last {
                session = nil
                return false
            }
            return true
        }

        private func publish(_ current: LiveFLVSession) {
            let bytes = completedBytes + current.bytesWritten
            let video = completedVideo + current.videoPackets
            lock.lock()
            bytesTotal = bytes
            videoTotal = video
            lock.unlock()
        }

        /// Closes a failed connection and starts the outage. Returns false when finishing (no retry).
        private func connectionLost(_ current: LiveFLVSession, _ error: Error) -> Bool {
            interrupt.abandoning.store(true, ordering: .relaxed)
            current.abandon()
            interrupt.abandoning.store(false, ordering: .relaxed)
            completedBytes += current.bytesWritten
            completedVideo += current.videoPackets
            session = nil
            let failure = (error as? ProgramOutputError) ?? .writeFailed(label, reason: "\(error)")
            lock.lock()
            bytesTotal = completedBytes
            videoTotal = completedVideo
            connected = false
            outageStartNs = Core.nowNs()
            lastError = failure.description
            let stop = finishing
            lock.unlock()
            return !stop
        }

        private func delayNs(attempt: Int) -> Int64 {
            let factor = policy.jitter > 0 ? Double.random(in: (1 - policy.jitter)...1) : 1
            return Int64(policy.delay(attempt: attempt) * factor * 1e9)
        }
    }
}
