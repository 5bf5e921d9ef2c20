import Foundation
import Logging
import ShowControl
import Synchronization

/// What the health endpoints read. The daemon updates it; the server only reads.
public final class HealthState: Sendable {
    private struct Snapshot {
        var lastMixAdvanceNs: UInt64 = 0
        var stageJoined = false
        var outputConnected = false
        var status: ShowStatus?
        var counters: [String: Double] = [:]
    }
    private let state = Mutex(Snapshot())
    public init() {}

    /// Called by the mix loop whenever it produced a block.
    public func mixAdvanced(atNs now: UInt64 = HealthState.nowNs()) { state.withLock { $0.lastMixAdvanceNs = now } }
    public func setStageJoined(_ v: Bool) { state.withLock { $0.stageJoined = v } }
    public func setOutputConnected(_ v: Bool) { state.withLock { $0.outputConnected = v } }
    public func publish(_ s: ShowStatus) { state.withLock { $0.status = s } }
    /// Monotonic counters and gauges for /metrics (names without the `shelcaster_` prefix).
    public func setMetric(_ name: String, _ value: Double) { state.withLock { $0.counters[name] = value } }

    /// /healthz: the mix clock advanced in the last 2 s.
    public func isLive(now: UInt64 = HealthState.nowNs()) -> Bool {
        state.withLock { $0.lastMixAdvanceNs != 0 && now &- $0.lastMixAdvanceNs < 2_000_000_000 }
    }
    /// /readyz: stage joined and output connected.
    public var isReady: Bool { state.withLock { $0.stageJoined && $0.outputConnected } }
    var status: ShowStatus? { state.withLock { $0.status } }
    var metrics: [String: Double] { state.withLock { $0.counters } }

    public static func nowNs() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }
}

/// A deliberately small HTTP/1.1 server for four read-only endpoints on the task's health port.
/// One short request per connection (the ECS health check, the studio's status poll, Prometheus);
/// requests are capped in size and time so a slow or hostile client cannot hold it.
public final class HealthServer: @unchecked Sendable {
    public let port: UInt16
    private let listener: Int32
    private let state: HealthState
    private let logger: Logger
    private let stopped = Atomic<Bool>(false)
    private var thread: Thread?

    /// Binds at once (so a port clash fails start-up with a clear error); serves after `start()`.
    public init(host: String = "0.0.0.0", port: UInt16, state: HealthState, logger: Logger) throws {
        self.state = state
        self.logger = logger
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw HealthServerError("socket: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        guard inet_pton(AF_INET, host, &addr.sin_addr) == 1 else { close(fd); throw HealthServerError("bad listen address \(host)") }
        let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard bound == 0, listen(fd, 16) == 0 else {
            let e = String(cString: strerror(errno)); close(fd)
            throw HealthServerError("cannot listen on \(host):\(port): \(e)")
        }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        self.port = UInt16(bigEndian: addr.sin_port)
        listener = fd
    }

    public func start() {
        let t = Thread { [self] in serve() }
        t.name = "health-server"
        thread = t
        t.start()
    }

    public func stop() {
        guard !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }

    private func serve() {
        while !stopped.load(ordering: .acquiring) {
            var pfd = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
            guard poll(&pfd, 1, 500) > 0 else { continue }
            let client = accept(listener, nil, nil)
            if client < 0 { continue }
            handle(client)
            close(client)
        }
    }

    private func handle(_ fd: Int32) {
        var tv = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var request = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 2048)
        // Only the request line matters; read until the end of the headers (or the cap).
        while request.count < 8192 {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n <= 0 { break }
            request += buffer[0..<n]
            if HealthServer.hasEndOfHeaders(request) { break }
        }
        let line = String(decoding: request.prefix { $0 != 13 && $0 != 10 }, as: UTF8.self)
        let parts = line.split(separator: " ")
        let response: (Int, String, String)
        if parts.count >= 2, parts[0] == "GET" || parts[0] == "HEAD" {
            let path = String(parts[1].split(separator: "?", maxSplits: 1).first ?? "")
            response = route(path)
        } else {
            response = (405, "text/plain", "method not allowed\n")
        }
        let body = Array(response.2.utf8)
        let reason = [200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"][response.0] ?? "OK"
        let head = "HTTP/1.1 \(response.0) \(reason)\r\nContent-Type: \(response.1)\r\nContent-Length: \(body.count)\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n"
        let out = Array(head.utf8) + (parts.first == "HEAD" ? [] : body)
        var sent = 0
        while sent < out.count {
            let n = out[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { break }
            sent += n
        }
    }

    static func hasEndOfHeaders(_ r: [UInt8]) -> Bool {
        guard r.count >= 4 else { return false }
        for i in 0...(r.count - 4) where r[i] == 13 && r[i + 1] == 10 && r[i + 2] == 13 && r[i + 3] == 10 { return true }
        return false
    }

    func route(_ path: String) -> (Int, String, String) {
        switch path {
        case "/healthz":
            return state.isLive() ? (200, "text/plain", "ok\n") : (503, "text/plain", "mix clock stalled\n")
        case "/readyz":
            return state.isReady ? (200, "text/plain", "ready\n") : (503, "text/plain", "not ready\n")
        case "/status":
            return (200, "application/json", StatusJSON.render(state.status))
        case "/metrics":
            return (200, "text/plain; version=0.0.4", PrometheusText.render(state.status, extra: state.metrics))
        default:
            return (404, "text/plain", "not found\n")
        }
    }
}

public struct HealthServerError: Error, CustomStringConvertible {
    public let description: String
    init(_ d: String) { description = d }
}
