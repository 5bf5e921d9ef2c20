import Foundation
import HTTPClient

/// The local stage stand-in (stage/localstage.py, aiortc) as a child process on 127.0.0.1,
/// with its test hooks. Stopped (SIGTERM, then SIGKILL) by `stop()` or deinit.
final class LocalStage {
    let dir: String
    let keyFile: String
    private(set) var port: UInt16 = 0
    private var process: Process?
    let tls: Bool

    static var script: String { Paths.root.appendingPathComponent("stage/localstage.py").path }

    /// python3 as the shell would find it (pyenv or venv first, where pip put aiortc).
    static let python: String? = {
        let dirs = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map(String.init) + ["/usr/local/bin", "/usr/bin"]
        return dirs.map { $0 + "/python3" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }()

    static var unavailableReason: String? {
        guard let py = python else { return "python3 is not installed" }
        guard FileManager.default.fileExists(atPath: script) else { return "stage/localstage.py is missing" }
        let r = try? runProcess(py, ["-c", "import aiortc, aiohttp, jwt"], timeout: 30)
        return r?.status == 0 ? nil : "aiortc/aiohttp/PyJWT are not installed (pip install -r stage/requirements.txt)"
    }

    /// - Parameters:
    ///   - participants: the config's participant entries (localstage README).
    ///   - args: extra `serve` flags (`--dtls-role passive`, `--redirect always`, ...).
    init(participants: [[String: Any]], args: [String] = [], tls: Bool = false) throws {
        dir = Paths.tempDir("stage")
        keyFile = dir + "/key.pem"
        self.tls = tls
        let config: [String: Any] = ["stageId": "st-local", "participants": participants]
        try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: dir + "/stage.json"))
        var serveArgs = [LocalStage.script, "serve", "--port", "0", "--key-file", keyFile, "--config", dir + "/stage.json"] + args
        if tls {
            let r = try runProcess(LocalStage.python ?? "/usr/bin/python3",
                                   [LocalStage.script, "cert", "--cert", certFile, "--key", dir + "/tls.key"], timeout: 60)
            guard r.status == 0 else { throw PeerError("localstage cert failed: \(r.stderr)") }
            serveArgs += ["--tls-cert", certFile, "--tls-key", dir + "/tls.key"]
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: LocalStage.python ?? "/usr/bin/python3")
        // The test runner's threads block SIGTERM/SIGINT and a child inherits that mask: unblock
        // them before exec'ing the stage, so `stop()` gets its clean shutdown.
        p.arguments = ["-c", "import os, signal, sys; signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT}); "
                       + "os.execv(sys.executable, [sys.executable] + sys.argv[1:])"] + serveArgs
        _ = FileManager.default.createFile(atPath: dir + "/stdout", contents: nil)
        _ = FileManager.default.createFile(atPath: dir + "/stderr", contents: nil)
        p.standardOutput = FileHandle(forWritingAtPath: dir + "/stdout")
        p.standardError = FileHandle(forWritingAtPath: dir + "/stderr")
        try p.run()
        process = p
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            let out = (try? String(contentsOfFile: dir + "/stdout", encoding: .utf8)) ?? ""
            if let line = out.split(separator: "\n").first(where: { $0.hasPrefix("READY ") }),
               let n = UInt16(line.dropFirst(6).trimmingCharacters(in: .whitespaces)) {
                port = n
                return
            }
            if !p.isRunning { break }
            Thread.sleep(forTimeInterval: 0.05)
        }
        let err = (try? String(contentsOfFile: dir + "/stderr", encoding: .utf8)) ?? ""
        stop()
        throw PeerError("localstage did not start: \(err.suffix(2000))")
    }

    var certFile: String { dir + "/tls.crt" }
    var httpBase: String { "\(tls ? "https" : "http")://127.0.0.1:\(port)" }
    var wsBase: String { "\(tls ? "wss" : "ws")://127.0.0.1:\(port)" }

    /// A token from the `token` subcommand, signed with this stage's key.
    func token(participant: String = "worker-1", user: String = "worker", subscribe: Bool = true,
               attributes: [String: String] = ["role": "VIRTUAL_PARTICIPANT"], ttl: Double? = nil,
               keyFile: String? = nil, extra: [String] = []) throws -> String {
        var args = [LocalStage.script, "token", "--key-file", keyFile ?? self.keyFile, "--stage", "st-local",
                    "--participant", participant, "--user", user,
                    "--events-url", wsBase, "--whip-url", httpBase]
        if subscribe { args.append("--subscribe") }
        for (k, v) in attributes.sorted(by: { $0.key < $1.key }) { args += ["--attr", "\(k)=\(v)"] }
        if let ttl { args += ["--ttl", String(ttl)] }
        if keyFile != nil { args.append("--create-key") }
        args += extra
        let r = try runProcess(LocalStage.python ?? "/usr/bin/python3", args, timeout: 60)
        guard r.status == 0 else { throw PeerError("localstage token failed: \(r.stderr)") }
        return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    private func admin(_ method: String, _ path: String, _ body: [String: Any]? = nil) throws -> Any {
        let client = HTTPClient(caFile: tls ? certFile : nil)
        var req = HTTPRequest(method: method, url: httpBase + path, timeout: 10)
        if let body {
            req.body = Array(try JSONSerialization.data(withJSONObject: body))
            req.headers["Content-Type"] = "application/json"
        }
        let r = try client.send(req)
        guard r.isSuccess else { throw PeerError("\(method) \(path): HTTP \(r.status) \(r.bodyText)") }
        return try JSONSerialization.jsonObject(with: Data(r.body))
    }

    /// The stage's event log (`/_admin/log`).
    func log() throws -> [[String: Any]] { (try admin("GET", "/_admin/log") as? [[String: Any]]) ?? [] }
    func state() throws -> [String: Any] { (try admin("GET", "/_admin/state") as? [String: Any]) ?? [:] }
    /// Stage seconds since READY.
    func now() throws -> Double { (try state()["t"] as? Double) ?? 0 }
    func dropWebSockets() throws { _ = try admin("POST", "/_admin/drop-websockets") }

    func events(_ name: String, participant: String? = nil) throws -> [[String: Any]] {
        try log().filter { e in
            e["event"] as? String == name && (participant == nil || e["participantId"] as? String == participant)
        }
    }

    func stderr() -> String { (try? String(contentsOfFile: dir + "/stderr", encoding: .utf8)) ?? "" }

    func stop() {
        guard let p = process else { return }
        process = nil
        if p.isRunning {
            p.terminate()
            let deadline = Date().addingTimeInterval(5)
            while p.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
            if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        }
        p.waitUntilExit()
    }

    deinit { stop() }
}

/// The fixture participants: tones by id, amplitude 0.25 (stage/README.md).
enum StageFixture {
    static var host: [String: Any] { ["id": "host", "userId": "host-1", "role": "HOST"] }
    static var caller1: [String: Any] { ["id": "caller-1", "userId": "caller-1-user", "role": "CALLER"] }
    static var caller2: [String: Any] { ["id": "caller-2", "userId": "caller-2-user", "role": "CALLER"] }
    /// Another worker: must never be subscribed to.
    static var virtual: [String: Any] { ["id": "vp-2", "userId": "other-worker", "role": "VIRTUAL_PARTICIPANT"] }
    static let tones: [String: Double] = ["host": 350, "caller-1": 550, "caller-2": 750, "caller-3": 950]

    /// All on air, dynamics off; callers at 80 % and caller-2 at 50 % on top, so each tone has its
    /// own routed level.
    static let routing = #"{"hostVolume": 100, "callersVolume": 80, "masterVolume": 100, "participantVolumes": {"caller-2": 50}, "onAirCallerIds": ["caller-1", "caller-2", "caller-3"], "compression": {"enabled": false}, "limiter": {"enabled": false}, "ducking": {"enabled": false}}"#
    /// dBFS each participant's 0.25 tone should have in the mix under `routing`.
    static let expected: [String: Double] = [
        "host": 20 * log10(0.25), "caller-1": 20 * log10(0.25 * 0.8),
        "caller-2": 20 * log10(0.25 * 0.8 * 0.5), "caller-3": 20 * log10(0.25 * 0.8),
    ]

    static func writeRouting(in dir: String) throws -> String {
        let path = dir + "/routing.json"
        try routing.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }
}

/// Helpers of the stage tests (prefixed: the test target is shared).
enum StageTest {
    /// Runs `shelcaster-composer join` (the built binary) and returns its result.
    static func runJoin(token: String, output: String, duration: Double, extra: [String] = [], timeout: Double = 60) throws -> RunResult {
        try runProcess(Paths.composer, ["join", "--token", token, "--output", output, "--duration", String(duration)] + extra,
                       timeout: timeout, environment: ProcessInfo.processInfo.environment.merging(["LOG_LEVEL": "info"]) { $1 })
    }

    /// Left channel of a WAV the worker wrote.
    static func left(_ path: String) throws -> [Float] {
        let w = try WAVFile.read(path)
        return w.channels == 2 ? Analysis.left(w.samples) : w.samples
    }

    /// Tone level (dBFS, windowed power) of `hz` between `from` and `to` seconds.
    static func level(_ x: [Float], hz: Double, from: Double, to: Double) -> Double {
        let a = max(0, Int(from * 48_000)), b = min(x.count, Int(to * 48_000))
        guard b - a >= 4800 else { return -120 }
        return Analysis.windowedToneDbfs(x[a..<b], frequency: hz, window: 4800)
    }

    /// Levels of `hz` in consecutive `window`-second windows from `from` to `to`.
    static func levels(_ x: [Float], hz: Double, from: Double, to: Double, window: Double = 0.1) -> [Double] {
        var out: [Double] = []
        var t = from
        while t + window <= to + 1e-9 {
            let a = Int(t * 48_000), b = min(x.count, Int((t + window) * 48_000))
            if b - a < 960 { break }
            out.append(Analysis.toneDbfs(x[a..<b], frequency: hz))
            t += window
        }
        return out
    }

    /// Asserts nothing in `texts` reveals the token (whole, or its signature part).
    static func leaks(_ token: String, in texts: [String]) -> Bool {
        let sig = token.split(separator: ".").last.map(String.init) ?? token
        return texts.contains { $0.contains(token) || (sig.count >= 16 && $0.contains(sig)) }
    }
}

/// A minimal HTTP/1.1 server on 127.0.0.1 (one connection at a time, `Connection: close`), for
/// subscribe-endpoint misbehaviour the local stage cannot produce. Stopped by `stop()`/deinit.
final class StageFakeHTTPServer: @unchecked Sendable {
    struct Request: Sendable {
        var method: String
        var path: String
        var headers: [String: String]
        var body: String
        var at: Date
    }
    struct Response: Sendable {
        var status: Int
        var headers: [(String, String)] = []
        var body = ""
    }

    private(set) var port: UInt16 = 0
    private let fd: Int32
    private let lock = NSLock()
    private var got: [Request] = []
    private var stopped = false
    private let done = DispatchSemaphore(value: 0)

    init(handler: @escaping @Sendable (Request, Int) -> Response) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } } == 0
            && listen(fd, 16) == 0
        guard ok else { close(fd); throw PeerError("fake HTTP server cannot listen") }
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        port = UInt16(bigEndian: addr.sin_port)
        Thread.detachNewThread { [self] in
            while !isStopped {
                var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                guard poll(&p, 1, 100) > 0 else { continue }
                let c = accept(fd, nil, nil)
                guard c >= 0 else { continue }
                serve(c, handler)
                close(c)
            }
            done.signal()
        }
    }

    var base: String { "http://127.0.0.1:\(port)" }

    var requests: [Request] {
        lock.lock(); defer { lock.unlock() }
        return got
    }

    private var isStopped: Bool {
        lock.lock(); defer { lock.unlock() }
        return stopped
    }

    private func serve(_ c: Int32, _ handler: (Request, Int) -> Response) {
        var tv = timeval(tv_sec: 2, tv_usec: 0)
        _ = setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var data: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        var headEnd: Int?
        var need = Int.max
        while data.count < need {
            let n = buf.withUnsafeMutableBytes { recv(c, $0.baseAddress, $0.count, 0) }
            guard n > 0 else { return }
            data.append(contentsOf: buf[0..<n])
            if headEnd == nil, let r = String(decoding: data, as: UTF8.self).range(of: "\r\n\r\n") {
                let head = String(decoding: data, as: UTF8.self)[..<r.lowerBound]
                headEnd = head.utf8.count + 4
                let cl = head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
                    .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? 0
                need = (headEnd ?? 0) + cl
            }
        }
        guard let headEnd else { return }
        let lines = String(decoding: data[..<(headEnd - 4)], as: UTF8.self).components(separatedBy: "\r\n")
        let first = lines.first?.split(separator: " ") ?? []
        var headers: [String: String] = [:]
        for l in lines.dropFirst() {
            guard let colon = l.firstIndex(of: ":") else { continue }
            headers[l[..<colon].lowercased()] = l[l.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        let req = Request(method: first.first.map(String.init) ?? "", path: first.count > 1 ? String(first[1]) : "",
                          headers: headers, body: String(decoding: data[headEnd...], as: UTF8.self), at: Date())
        lock.lock()
        got.append(req)
        let index = got.count - 1
        lock.unlock()
        let resp = handler(req, index)
        var text = "HTTP/1.1 \(resp.status) X\r\nConnection: close\r\nContent-Length: \(resp.body.utf8.count)\r\n"
        for (k, v) in resp.headers { text += "\(k): \(v)\r\n" }
        text += "\r\n" + resp.body
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { send(c, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    func stop() {
        lock.lock()
        let was = stopped
        stopped = true
        lock.unlock()
        guard !was else { return }
        _ = done.wait(timeout: .now() + 2)
        close(fd)
    }

    deinit { stop() }
}
