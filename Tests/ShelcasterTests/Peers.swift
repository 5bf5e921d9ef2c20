import Foundation

/// Locations and helpers shared by the end-to-end tests.
enum Paths {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static func fixture(_ p: String) -> String { root.appendingPathComponent("fixtures").appendingPathComponent(p).path }
    /// The built executable sits beside the test bundle (`swift test` builds every product).
    static var composer: String {
        if let env = ProcessInfo.processInfo.environment["SHELCASTER_COMPOSER"] { return env }
        let besideTests = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
            .appendingPathComponent("shelcaster-composer").path
        if FileManager.default.isExecutableFile(atPath: besideTests) { return besideTests }
        return root.appendingPathComponent(".build/debug/shelcaster-composer").path
    }
    static func tempDir(_ name: String) -> String {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("shelcaster-\(name)-\(UUID().uuidString.prefix(8))").path
        try? FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        return d
    }
    static func which(_ tool: String) -> String? {
        for dir in ["/usr/local/bin", "/usr/bin", "/usr/sbin", "/bin", "/sbin"] {
            let p = "\(dir)/\(tool)"
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        return nil
    }
}

/// Runs a program to completion with a deadline; returns exit status and output.
struct RunResult { var status: Int32; var stdout: String; var stderr: String; var timedOut: Bool }

func runProcess(_ path: String, _ args: [String], timeout: TimeInterval = 120, environment: [String: String]? = nil) throws -> RunResult {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: path)
    p.arguments = args
    if let environment { p.environment = environment }
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    // Read both pipes while the process runs so a chatty child cannot fill a pipe and stall.
    final class Box: @unchecked Sendable { var data = Data() }
    let o = Box(), e = Box()
    let group = DispatchGroup()
    group.enter(); DispatchQueue.global().async { o.data = out.fileHandleForReading.readDataToEndOfFile(); group.leave() }
    group.enter(); DispatchQueue.global().async { e.data = err.fileHandleForReading.readDataToEndOfFile(); group.leave() }
    try p.run()
    let deadline = Date().addingTimeInterval(timeout)
    while p.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
    let timedOut = p.isRunning
    if timedOut { p.terminate(); Thread.sleep(forTimeInterval: 0.5); if p.isRunning { kill(p.processIdentifier, SIGKILL) } }
    p.waitUntilExit()
    group.wait()
    return RunResult(status: p.terminationStatus, stdout: String(decoding: o.data, as: UTF8.self),
                     stderr: String(decoding: e.data, as: UTF8.self), timedOut: timedOut)
}

/// A free loopback TCP port (bound then released; good enough for tests on one machine).
func freeLoopbackPort() -> UInt16 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = 0
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
    _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
    return UInt16(bigEndian: addr.sin_port)
}

func waitForPort(_ port: UInt16, timeout: TimeInterval = 10) -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = port.bigEndian
        let r = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        close(fd)
        if r == 0 { return true }
        Thread.sleep(forTimeInterval: 0.05)
    }
    return false
}

/// A real RTMP ingest: nginx with the rtmp module, recording every published stream to FLV,
/// optionally fronted by stunnel for rtmps. Everything on 127.0.0.1; stopped by `stop()`.
final class RTMPIngest {
    let dir: String
    let rtmpPort: UInt16
    private(set) var rtmpsPort: UInt16?
    private var nginx: Process?
    private var stunnel: Process?
    /// Times `restart()` ran; the recordings of run `n` (0 = before the first restart) stay in `rec.n`.
    private(set) var restarts = 0
    var certificatePath: String { dir + "/cert.pem" }

    static var unavailableReason: String? {
        if Paths.which("nginx") == nil { return "nginx is not installed (scripts/setup.sh --test installs it)" }
        if !FileManager.default.fileExists(atPath: moduleFile) { return "libnginx-mod-rtmp is not installed" }
        return nil
    }
    static let moduleFile = "/usr/lib/nginx/modules/ngx_rtmp_module.so"

    init(tls: Bool) throws {
        dir = Paths.tempDir("ingest")
        try FileManager.default.createDirectory(atPath: dir + "/rec", withIntermediateDirectories: true)
        // nginx workers may drop privileges: let them write the recordings.
        chmod(dir, 0o777); chmod(dir + "/rec", 0o777)
        rtmpPort = freeLoopbackPort()
        let conf = """
        load_module \(RTMPIngest.moduleFile);
        worker_processes 1;
        daemon off;
        master_process off;
        pid \(dir)/nginx.pid;
        error_log \(dir)/error.log info;
        events { worker_connections 64; }
        rtmp {
          server {
            listen 127.0.0.1:\(rtmpPort);
            chunk_size 4096;
            application app {
              live on;
              record all;
              record_path \(dir)/rec;
              record_unique off;
            }
          }
        }
        """
        try conf.write(toFile: dir + "/nginx.conf", atomically: true, encoding: .utf8)
        try launchNginx()
        if tls {
            guard let stunnelPath = Paths.which("stunnel4") ?? Paths.which("stunnel"), let openssl = Paths.which("openssl") else {
                stop(); throw PeerError("stunnel or openssl missing")
            }
            let r = try runProcess(openssl, ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                                             "-keyout", dir + "/key.pem", "-out", certificatePath, "-days", "2",
                                             "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
            guard r.status == 0 else { stop(); throw PeerError("openssl req failed: \(r.stderr)") }
            let port = freeLoopbackPort()
            let sconf = """
            foreground = yes
            pid =
            [rtmps]
            accept = 127.0.0.1:\(port)
            connect = 127.0.0.1:\(rtmpPort)
            cert = \(certificatePath)
            key = \(dir)/key.pem
            """
            try sconf.write(toFile: dir + "/stunnel.conf", atomically: true, encoding: .utf8)
            try launchStunnel(stunnelPath, port: port)
            rtmpsPort = port
        }
    }

    private func launchNginx() throws {
        let n = Process()
        n.executableURL = URL(fileURLWithPath: Paths.which("nginx")!)
        n.arguments = ["-p", dir, "-c", dir + "/nginx.conf", "-e", dir + "/error.log"]
        n.standardOutput = FileHandle.nullDevice; n.standardError = FileHandle.nullDevice
        try n.run()
        nginx = n
        guard waitForPort(rtmpPort) else { stop(); throw PeerError("nginx did not listen on \(rtmpPort): \(log("error.log"))") }
    }

    private func launchStunnel(_ stunnelPath: String, port: UInt16) throws {
        let s = Process()
        s.executableURL = URL(fileURLWithPath: stunnelPath)
        s.arguments = [dir + "/stunnel.conf"]
        s.standardOutput = FileHandle.nullDevice; s.standardError = FileHandle.nullDevice
        try s.run()
        stunnel = s
        guard waitForPort(port) else { stop(); throw PeerError("stunnel did not listen") }
    }

    /// Stops the ingest (if running) and starts it again on the same ports, with the same directory and
    /// certificate. The recordings made so far move to `rec.<n>` first, so the next publish of the same
    /// key (nginx truncates `rec/<key>.flv`) cannot overwrite them. Returns once it listens again.
    func restart() throws {
        stop()
        let fm = FileManager.default
        try fm.moveItem(atPath: dir + "/rec", toPath: "\(dir)/rec.\(restarts)")
        restarts += 1
        try fm.createDirectory(atPath: dir + "/rec", withIntermediateDirectories: true)
        chmod(dir + "/rec", 0o777)
        try launchNginx()
        if let port = rtmpsPort {
            guard let stunnelPath = Paths.which("stunnel4") ?? Paths.which("stunnel") else { stop(); throw PeerError("stunnel missing") }
            try launchStunnel(stunnelPath, port: port)
        }
    }

    func recording(_ key: String) -> String { "\(dir)/rec/\(key).flv" }
    /// The recording of `key` made during run `run` (0 = before the first `restart()`).
    func recording(_ key: String, run: Int) -> String { run >= restarts ? recording(key) : "\(dir)/rec.\(run)/\(key).flv" }
    func log(_ name: String) -> String { (try? String(contentsOfFile: "\(dir)/\(name)", encoding: .utf8)) ?? "" }

    func stop() {
        for p in [stunnel, nginx].compactMap({ $0 }) where p.isRunning {
            p.terminate()
            let deadline = Date().addingTimeInterval(5)
            while p.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
            if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        }
        stunnel = nil; nginx = nil
    }
    /// Kills the ingest at once (SIGKILL, like a crash): nginx does not exit on SIGTERM while a
    /// publisher is connected, so `stop()` would wait its 5 s first.
    func killNow() {
        for p in [stunnel, nginx].compactMap({ $0 }) where p.isRunning {
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
        }
        stunnel = nil; nginx = nil
    }

    deinit { stop() }
}

struct PeerError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// ffprobe's view of a media file: stream codecs and format duration.
struct Probe {
    var streams: [(type: String, codec: String)]
    var duration: Double
    static func run(_ path: String) throws -> Probe {
        guard let ffprobe = Paths.which("ffprobe") else { throw PeerError("ffprobe missing") }
        let r = try runProcess(ffprobe, ["-v", "error", "-show_entries", "stream=codec_type,codec_name:format=duration", "-of", "json", path])
        guard r.status == 0, let obj = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any] else {
            throw PeerError("ffprobe failed on \(path): \(r.stderr)")
        }
        let streams = (obj["streams"] as? [[String: Any]] ?? []).map { ($0["codec_type"] as? String ?? "", $0["codec_name"] as? String ?? "") }
        let duration = Double(((obj["format"] as? [String: Any])?["duration"] as? String) ?? "") ?? 0
        return Probe(streams: streams, duration: duration)
    }
}

/// Decodes any media file's audio to 48 kHz stereo float WAV with the ffmpeg CLI, for analysis.
func decodeToWAV(_ path: String) throws -> WAVFile.Contents {
    guard let ffmpeg = Paths.which("ffmpeg") else { throw PeerError("ffmpeg missing") }
    let wav = path + ".decoded.wav"
    let r = try runProcess(ffmpeg, ["-v", "error", "-y", "-i", path, "-vn", "-ac", "2", "-ar", "48000", "-c:a", "pcm_f32le", wav])
    guard r.status == 0 else { throw PeerError("ffmpeg could not decode \(path): \(r.stderr)") }
    return try WAVFile.read(wav)
}
