import Foundation
import HTTPClient
import Logging

/// Why the events connection could not be set up at start.
public enum StageEventsError: Error, Sendable, CustomStringConvertible {
    /// 401/403 on the upgrade: the stage does not accept this token.
    case tokenRefused(status: Int, detail: String)
    /// Every attempt failed (bounded); the last error.
    case unreachable(attempts: Int, last: WebSocketError)
    /// Retrying cannot help (bad URL, certificate).
    case fatal(WebSocketError)
    case stopped

    public var description: String {
        let text: String
        switch self {
        case .tokenRefused(let s, let d):
            text = "the stage refused the token (HTTP \(s))" + (d.isEmpty ? "" : ": \(d)")
        case .unreachable(let n, let last):
            text = "the stage's events endpoint is unreachable after \(n) attempt\(n == 1 ? "" : "s"): \(last)"
        case .fatal(let e): text = "cannot connect to the stage's events endpoint: \(e)"
        case .stopped: text = "stopped before the events connection was up"
        }
        return Secrets.redact(text)
    }
}

/// The events WebSocket of a stage, kept alive: `{"type":"PING"}` every few seconds, reconnect
/// with backoff when it drops (the server sends a full STAGE_STATE on every connect, so
/// diffing self-heals), snapshots and their diff handed to `onSnapshot` on the reader thread.
public final class StageEventsConnection: @unchecked Sendable {
    public struct Options: Sendable {
        public var pingInterval: Double = 5
        /// Nothing received (not even a PONG) for this long counts as a dead connection.
        public var readTimeout: Double = 15
        public var connectTimeout: Double = 5
        /// Attempts at start before giving up (later drops are retried for as long as the show runs).
        public var initialAttempts = 4
        public var backoff = Backoff(initial: 0.5, factor: 2, cap: 10, jitter: 0.25)
        public var caFile: String?
        public init() {}
    }

    public struct Stats: Sendable, Equatable {
        public var connects = 0
        public var drops = 0
        public var messages = 0
        public var snapshots = 0
        public var malformed = 0
        public var unknown = 0
        public var pings = 0
        public var pongs = 0
        public var reconnects: Int { max(0, connects - 1) }
    }

    public let url: String
    private let token: StageToken
    private let options: Options
    private let logger: Logger
    private let causes: CauseLog
    private let onSnapshot: @Sendable (StageSnapshot, [StageChange]) -> Void

    private let lock = NSLock()
    private var client: WebSocketClient?
    private var connected = false
    private var last: StageSnapshot?
    private var counters = Stats()
    private let wake = Wakeup()
    private let finished = DispatchSemaphore(value: 0)
    private var running = false

    public init(url: String, token: StageToken, options: Options = Options(), logger: Logger, causes: CauseLog,
                onSnapshot: @escaping @Sendable (StageSnapshot, [StageChange]) -> Void) {
        self.url = url; self.token = token; self.options = options; self.logger = logger
        self.causes = causes; self.onSnapshot = onSnapshot
    }

    public var stats: Stats {
        lock.lock(); defer { lock.unlock() }
        return counters
    }

    public var isConnected: Bool {
        lock.lock(); defer { lock.unlock() }
        return connected
    }

    /// Connects (bounded attempts with backoff), then keeps the connection up on its own thread.
    public func start() throws(StageEventsError) {
        var backoff = options.backoff
        var lastError: WebSocketError = .notConnected
        for attempt in 1...max(1, options.initialAttempts) {
            if wake.isSetNow { throw .stopped }
            do {
                try connectOnce()
                lastError = .notConnected
                break
            } catch {
                lastError = error
                if case .handshakeRejected(let s, let d) = error, s == 401 || s == 403 { throw .tokenRefused(status: s, detail: d) }
                if !error.isRetryable { throw .fatal(error) }
                causes.note("events: \(Self.kind(error))", "events connection attempt \(attempt) failed: \(error)")
                if attempt == options.initialAttempts { throw .unreachable(attempts: attempt, last: error) }
                if wake.wait(backoff.next()) { throw .stopped }
            }
        }
        if case .notConnected = lastError {} else { throw .unreachable(attempts: options.initialAttempts, last: lastError) }
        lock.lock(); running = true; lock.unlock()
        let t = Thread { [self] in self.keepAlive() }
        t.name = "stage-events"
        t.start()
    }

    /// Closes the connection and ends the keep-alive thread (bounded).
    public func stop() {
        wake.set()
        lock.lock()
        let c = client
        let wasRunning = running
        lock.unlock()
        c?.close(code: 1000, reason: "", wait: 1)
        if wasRunning { _ = finished.wait(timeout: .now() + 3) }
    }

    // MARK: - internals

    private func connectOnce() throws(WebSocketError) {
        var o = WebSocketClient.Options()
        o.connectTimeout = options.connectTimeout
        o.handshakeTimeout = options.connectTimeout
        o.readTimeout = options.readTimeout
        o.maxMessageBytes = StageEvents.maxMessageBytes
        o.caFile = options.caFile
        o.subprotocol = token.secret
        let ws = try WebSocketClient(url: url, options: o)
        // Install before connecting: the snapshot arrives right after the upgrade.
        lock.lock()
        client = ws
        connected = true
        lock.unlock()
        do {
            try ws.connect(onMessage: { [weak self] text in self?.handle(text) },
                           onClose: { [weak self, weak ws] error in
                               guard let self, let ws else { return }
                               self.dropped(ws, error)
                           })
        } catch {
            lock.lock()
            if client === ws { client = nil; connected = false }
            lock.unlock()
            throw error
        }
        lock.lock()
        counters.connects += 1
        let n = counters.connects
        lock.unlock()
        logger.info(n == 1 ? "events connected" : "events reconnected", metadata: ["url": .string(ws.url.redacted)])
    }

    private func handle(_ text: String) {
        let parsed: StageEventMessage
        do { parsed = try StageEvents.parse(text) } catch {
            lock.lock(); counters.messages += 1; counters.malformed += 1; lock.unlock()
            causes.note("events: malformed message", "dropped a malformed events message (\(error.problem))")
            return
        }
        switch parsed {
        case .pong:
            lock.lock(); counters.messages += 1; counters.pongs += 1; lock.unlock()
        case .unknown(let type):
            lock.lock(); counters.messages += 1; counters.unknown += 1; lock.unlock()
            causes.note("events: unknown type \(type)", level: .info, "ignoring events messages of unknown type \(type)")
        case .stageState(let snap):
            lock.lock()
            counters.messages += 1
            counters.snapshots += 1
            let changes = StageEvents.diff(from: last, to: snap)
            last = snap
            lock.unlock()
            onSnapshot(snap, changes)
        }
    }

    private func dropped(_ ws: WebSocketClient, _ error: WebSocketError?) {
        lock.lock()
        guard client === ws else { lock.unlock(); return }
        client = nil
        connected = false
        counters.drops += 1
        lock.unlock()
        if wake.isSetNow { return }
        let why = error.map { "\($0)" } ?? "closed"
        causes.note("events: drop \(error.map(Self.kind) ?? "closed")", "events connection dropped (\(why)); reconnecting")
        wake.poke()
    }

    private func keepAlive() {
        defer { finished.signal() }
        var backoff = options.backoff
        var nextPing = Date().addingTimeInterval(options.pingInterval)
        while !wake.isSetNow {
            lock.lock()
            let c = client
            lock.unlock()
            if let c {
                let wait = nextPing.timeIntervalSinceNow
                if wait > 0 { if wake.wait(wait) { break }; continue }
                nextPing = Date().addingTimeInterval(options.pingInterval)
                do {
                    try c.send(text: #"{"type":"PING"}"#)
                    lock.lock(); counters.pings += 1; lock.unlock()
                    backoff.reset()
                } catch {
                    // The reader notices the broken connection too; make sure we reconnect.
                    c.close(code: 1001, reason: "", wait: 0.5)
                    dropped(c, error)
                }
                continue
            }
            if wake.wait(backoff.next()) { break }
            do {
                try connectOnce()
                nextPing = Date().addingTimeInterval(options.pingInterval)
            } catch {
                causes.note("events: \(Self.kind(error))", "events reconnect failed: \(error)")
            }
        }
    }

    /// A short, stable name for a cause (the log-once key).
    static func kind(_ e: WebSocketError) -> String {
        switch e {
        case .invalidURL: "invalid URL"
        case .dns: "DNS"
        case .connectFailed: "connect failed"
        case .timeout(let w): "timeout (\(w.split(separator: " ").first ?? ""))"
        case .tls: "TLS"
        case .tlsVerification: "TLS verification"
        case .handshakeRejected(let s, _): "HTTP \(s)"
        case .handshakeInvalid: "bad upgrade"
        case .protocolViolation: "protocol violation"
        case .messageTooLarge: "message too large"
        case .closed(let c, _): "closed \(c.map(String.init) ?? "(no frame)")"
        case .connectionLost: "connection lost"
        case .notConnected: "not connected"
        }
    }
}
