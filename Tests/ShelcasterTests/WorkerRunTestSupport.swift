import DynamoDB
import Foundation
import HTTPClient
#if canImport(Glibc)
import Glibc
#endif

/// `shelcaster-composer run` (the built binary) as a child process with an explicit environment,
/// its stdout/stderr in files, its health port reachable. Killed (SIGKILL) by `kill()` or deinit
/// if still running.
final class WorkerProcess: @unchecked Sendable {
    let dir: String
    let healthPort: UInt16
    private let process: Process
    var pid: Int32 { process.processIdentifier }

    /// The test runner's threads block SIGTERM/SIGINT and a spawned child inherits that mask, so a
    /// SIGTERM from the test would never arrive. The child is python unblocking both and exec'ing
    /// the worker (same pid), as a container's init would leave them.
    init(environment: [String: String], healthPort: UInt16, dir: String) throws {
        self.dir = dir
        self.healthPort = healthPort
        let p = Process()
        p.executableURL = URL(fileURLWithPath: WorkerRunKit.wrapperPython)
        p.arguments = ["-c", "import os, signal, sys; signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT}); "
                       + "os.execv(sys.argv[1], sys.argv[1:])", Paths.composer, "run"]
        p.environment = environment
        _ = FileManager.default.createFile(atPath: dir + "/worker.stdout", contents: nil)
        _ = FileManager.default.createFile(atPath: dir + "/worker.stderr", contents: nil)
        p.standardInput = FileHandle.nullDevice
        p.standardOutput = FileHandle(forWritingAtPath: dir + "/worker.stdout")
        p.standardError = FileHandle(forWritingAtPath: dir + "/worker.stderr")
        try p.run()
        process = p
    }

    deinit { kill() }

    var isRunning: Bool { process.isRunning }

    /// Everything the worker printed (JSON log lines on stdout, anything else on stderr).
    var output: String {
        let out = (try? String(contentsOfFile: dir + "/worker.stdout", encoding: .utf8)) ?? ""
        let err = (try? String(contentsOfFile: dir + "/worker.stderr", encoding: .utf8)) ?? ""
        return out + err
    }

    func signal(_ sig: Int32) { if process.isRunning { Glibc.kill(process.processIdentifier, sig) } }

    /// The exit status once it exited within `timeout` s; nil if it is still running.
    func waitExit(timeout: Double) -> Int32? {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        if process.isRunning { return nil }
        process.waitUntilExit()
        return process.terminationReason == .exit ? process.terminationStatus : 128 + process.terminationStatus
    }

    func kill() {
        guard process.isRunning else { return }
        Glibc.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// The signals the worker's main thread blocks (/proc/PID/status SigBlk), while it runs.
    var blockedSignals: UInt64? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("SigBlk:") }) else { return nil }
        return UInt64(line.dropFirst(7).trimmingCharacters(in: .whitespaces), radix: 16)
    }

    /// GET on the health port: (status, body), nil when nothing answered.
    func get(_ path: String) -> (status: Int, body: String)? {
        guard let r = try? HTTPClient.shared.send(HTTPRequest(url: "http://127.0.0.1:\(healthPort)\(path)", timeout: 2,
                                                              connectTimeout: 1)) else { return nil }
        return (r.status, r.bodyText)
    }

    /// /status as a JSON object.
    func status() -> [String: Any]? {
        guard let r = get("/status"), r.status == 200 else { return nil }
        return (try? JSONSerialization.jsonObject(with: Data(r.body.utf8))) as? [String: Any]
    }

    /// Epoch seconds of program time 0: /status reports `programSeconds` as whole seconds published
    /// on the second, so the moment it steps is program time `programSeconds` (± the 10 ms poll).
    func programOrigin(timeout: Double = 15) -> Double? {
        let deadline = Date().addingTimeInterval(timeout)
        var last: Double?
        while Date() < deadline {
            if let p = status()?["programSeconds"] as? Double {
                if let l = last, p > l { return Date().timeIntervalSince1970 - p }
                last = p
            }
            Thread.sleep(forTimeInterval: 0.01)
        }
        return nil
    }
}

enum WorkerRunKit {
    /// A python for the signal-unblocking wrapper that needs no PATH (the pyenv shim does).
    static var wrapperPython: String {
        ["/usr/bin/python3", "/usr/local/bin/python3"].first { FileManager.default.isExecutableFile(atPath: $0) }
            ?? LocalStage.python ?? "/usr/bin/python3"
    }

    static var unavailableReason: String? {
        if let why = LocalStage.unavailableReason { return why }
        if let why = RTMPIngest.unavailableReason { return why }
        if !AWSTestKit.motoAvailable { return "moto_server is not installed" }
        if Paths.which("ffmpeg") == nil || Paths.which("ffprobe") == nil { return "ffmpeg/ffprobe not installed" }
        return nil
    }

    /// Fake AWS keys, long enough to be registered (and masked) as secrets.
    static let accessKey = "AKIAWORKERRUNTEST01"
    static let secretKey = "worker-run-test-secret-key-0123456789"
    static let taskArn = "arn:aws:ecs:us-east-1:123456789012:task/shelcaster/worker-run-test"

    /// The environment of the ECS task (DATA-MODEL.md), pointed at loopback peers. `extra` wins;
    /// a value of "" removes the variable.
    static func environment(showId: String, token: String, eventsURL: String, whipURL: String, ingestPort: UInt16,
                            streamKey: String, awsEndpoint: String, healthPort: UInt16,
                            extra: [String: String] = [:]) -> [String: String] {
        var env: [String: String] = [
            "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": NSTemporaryDirectory(),
            "SHOW_ID": showId, "STAGE_TOKEN": token, "STAGE_EVENTS_URL": eventsURL, "STAGE_WHIP_URL": whipURL,
            "INGEST_URL": "rtmp://127.0.0.1:\(ingestPort)/app/", "STREAM_KEY": streamKey,
            "AWS_ENDPOINT_URL": awsEndpoint, "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": accessKey, "AWS_SECRET_ACCESS_KEY": secretKey,
            "HEALTH_PORT": String(healthPort), "ROUTING_POLL_MS": "200", "HEARTBEAT_INTERVAL_S": "1",
            "TASK_ARN": taskArn, "LOG_LEVEL": "info",
            "SHOWS_TABLE": "shelcaster-active-shows", "PARTICIPANTS_TABLE": "shelcaster-participants",
            "ROUTING_TABLE": "shelcaster-audio-routing", "TRACKLISTS_TABLE": "shelcaster-tracklists",
        ]
        for (k, v) in extra { env[k] = v.isEmpty ? nil : v }
        return env
    }

    /// A stream key unique to the test, long enough to be masked.
    static func streamKey() -> String { "sk_test_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased() }

    /// A subscribe token signed with a throw-away key, without a running stage (for checks that
    /// fail before or at connecting).
    static func offlineToken(dir: String, eventsURL: String, whipURL: String) throws -> String {
        let r = try runProcess(LocalStage.python ?? "/usr/bin/python3",
                               [LocalStage.script, "token", "--key-file", dir + "/offline-key.pem", "--create-key", "--stage", "st-local",
                                "--participant", "worker-1", "--user", "worker", "--subscribe", "--attr", "role=VIRTUAL_PARTICIPANT",
                                "--events-url", eventsURL, "--whip-url", whipURL], timeout: 60)
        guard r.status == 0 else { throw PeerError("localstage token failed: \(r.stderr)") }
        return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Whether any of the secrets (whole) appears in any of the texts.
    static func leaked(_ secrets: [String], in texts: [String]) -> [String] {
        secrets.filter { s in texts.contains { $0.contains(s) } }
    }

    static func fileSize(_ path: String) -> Int64 {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.int64Value ?? -1
    }

    /// Walks an FLV file tag by tag: true when it is whole — header, then tags each followed by a
    /// PreviousTagSize equal to 11 + its data size, ending exactly at the end of the file.
    static func flvIsWhole(_ path: String) -> (whole: Bool, tags: Int, why: String) {
        guard let d = FileManager.default.contents(atPath: path).map({ [UInt8]($0) }) else { return (false, 0, "unreadable") }
        guard d.count >= 13, d[0] == 0x46, d[1] == 0x4C, d[2] == 0x56 else { return (false, 0, "no FLV header") }
        var pos = Int(d[5]) << 24 | Int(d[6]) << 16 | Int(d[7]) << 8 | Int(d[8])
        pos += 4
        var tags = 0
        while pos < d.count {
            guard pos + 11 <= d.count else { return (false, tags, "tag header cut at byte \(pos) of \(d.count)") }
            let size = Int(d[pos + 1]) << 16 | Int(d[pos + 2]) << 8 | Int(d[pos + 3])
            let end = pos + 11 + size
            guard end + 4 <= d.count else { return (false, tags, "tag \(tags) cut: needs \(end + 4) bytes, file has \(d.count)") }
            let prev = Int(d[end]) << 24 | Int(d[end + 1]) << 16 | Int(d[end + 2]) << 8 | Int(d[end + 3])
            guard prev == 11 + size else { return (false, tags, "tag \(tags): PreviousTagSize \(prev) ≠ \(11 + size)") }
            pos = end + 4
            tags += 1
        }
        return (true, tags, "")
    }
}

/// Reading the show item the worker writes.
extension DynamoItem {
    func str(_ name: String) -> String? { self[name]?.stringValue }
    var metricsMap: [String: AttributeValue] { self["metrics"]?.mapValue ?? [:] }
}

/// One live show for `run`: moto with the four tables (show, routing, optional S3 tracklist),
/// the local stage with host + caller-1 + caller-2 publishing tones, and an nginx-rtmp ingest.
/// `stop()` (also deinit) ends every process it started.
final class WorkerRig: @unchecked Sendable {
    let moto: CPMoto
    let stage: LocalStage
    let ingest: RTMPIngest
    let dir: String
    let showId: String
    let token: String
    let streamKey = WorkerRunKit.streamKey()
    let healthPort = freeLoopbackPort()
    private(set) var worker: WorkerProcess?

    /// The tracklist's one track (a 0.25 sine at 2100 Hz, 16-bit WAV) played from moto's S3.
    static let musicHz = 2100.0
    static let musicAmplitude = 0.25

    init(name: String, routing: DynamoItem, music: Bool) throws {
        dir = Paths.tempDir(name)
        showId = "show-" + name
        moto = try CPMoto()
        do {
            stage = try LocalStage(participants: [StageFixture.host, StageFixture.caller1, StageFixture.caller2])
        } catch {
            moto.stop()
            throw error
        }
        do {
            ingest = try RTMPIngest(tls: false)
            token = try stage.token()
            try moto.putRouting(showId, routing)
            var show: DynamoItem = [:]
            if music {
                try moto.boto3("""
                    s3.create_bucket(Bucket="shows-music")
                    s3.put_object(Bucket="shows-music", Key="beds/t3.wav", Body=open("\(Paths.fixture("tones/music/t3-2100.wav"))", "rb").read())
                    ddb.put_item(TableName="shelcaster-tracklists", Item={"tracklistId": {"S": "tl-\(name)"}, "loop": {"BOOL": True},
                        "tracks": {"L": [{"M": {"s3Key": {"S": "beds/t3.wav"}, "bucket": {"S": "shows-music"}, "title": {"S": "Bed"}}}]}})
                    """)
                show["tracklistId"] = .s("tl-\(name)")
            }
            try moto.putShow(showId, extra: show)
        } catch {
            stage.stop()
            moto.stop()
            throw error
        }
    }

    deinit { stop() }

    func environment(_ extra: [String: String] = [:]) -> [String: String] {
        WorkerRunKit.environment(showId: showId, token: token, eventsURL: stage.wsBase, whipURL: stage.httpBase,
                                 ingestPort: ingest.rtmpPort, streamKey: streamKey, awsEndpoint: moto.endpoint,
                                 healthPort: healthPort, extra: extra)
    }

    @discardableResult
    func startWorker(_ extra: [String: String] = [:]) throws -> WorkerProcess {
        let w = try WorkerProcess(environment: environment(extra), healthPort: healthPort, dir: dir)
        worker = w
        return w
    }

    var secrets: [String] { [token, streamKey, WorkerRunKit.secretKey] }
    var recording: String { ingest.recording(streamKey) }
    func recording(run: Int) -> String { ingest.recording(streamKey, run: run) }

    func showItem() -> DynamoItem? { try? moto.show(showId) }

    /// Waits (bounded) until the show item satisfies `predicate`; returns the item that did.
    func waitForShow(timeout: Double, _ predicate: (DynamoItem) -> Bool) -> DynamoItem? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let item = showItem(), predicate(item) { return item }
            if worker?.isRunning == false { return nil }
            Thread.sleep(forTimeInterval: 0.1)
        }
        return nil
    }

    func setRouting(_ assignment: String, _ values: DynamoItem) throws {
        try moto.dynamo.updateItem(table: "shelcaster-audio-routing", key: ["showId": .s(showId)],
                                   updateExpression: "SET " + assignment, values: values)
    }

    func stop() {
        worker?.kill()
        ingest.killNow()
        stage.stop()
        moto.stop()
    }
}

/// The routing of the worker tests: both callers on air, caller-2 at 50 % on top of the callers'
/// 80 %, music at 50 %, dynamics and ducking off (levels are exact).
enum WorkerRouting {
    static var item: DynamoItem {
        var r = CPRouting.plain(host: 100, callers: 80, tracklist: 50, onAir: ["caller-1", "caller-2"])
        r["participantVolumes"] = .m(["caller-2": 50])
        return r
    }
    static func db(_ amplitude: Double) -> Double { 20 * log10(amplitude) }
    /// dBFS of each tone in the program under `item` (tones 0.25; host volume `host` %).
    static func expected(host: Double = 100) -> [(id: String, hz: Double, dbfs: Double)] {
        [("host", 350, db(0.25 * host / 100)), ("caller-1", 550, db(0.25 * 0.8)), ("caller-2", 750, db(0.25 * 0.8 * 0.5)),
         ("music", WorkerRig.musicHz, db(WorkerRig.musicAmplitude * 0.5))]
    }
}

/// A loopback port that accepts TCP connections (the kernel's backlog) and never answers: an
/// endpoint that hangs every request.
final class WorkerBlackhole: @unchecked Sendable {
    let port: UInt16
    private var fd: Int32

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } } == 0
            && listen(fd, 64) == 0
        guard ok else { Glibc.close(fd); throw PeerError("blackhole cannot listen") }
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        port = UInt16(bigEndian: addr.sin_port)
        self.fd = fd
    }

    func close() {
        if fd >= 0 { Glibc.close(fd); fd = -1 }
    }

    deinit { close() }
}
