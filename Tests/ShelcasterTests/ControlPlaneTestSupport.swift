import Foundation
import AWSCore
import ControlPlane
import DynamoDB
import Logging
import Routing
import ShowControl
import Tracklist
@testable import LocalRun
#if canImport(Glibc)
import Glibc
#endif

/// Log lines kept in memory, to check what the control plane warned about (and how often).
final class CPLogCapture: @unchecked Sendable {
    struct Line: Sendable { var level: Logger.Level; var message: String }
    private let lock = NSLock()
    private var stored: [Line] = []

    var lines: [Line] { lock.withLock { stored } }
    func append(_ l: Line) { lock.withLock { stored.append(l) } }
    func count(_ level: Logger.Level? = nil, containing text: String) -> Int {
        lines.filter { (level == nil || $0.level == level) && $0.message.contains(text) }.count
    }
    var text: String { lines.map { "[\($0.level)] \($0.message)" }.joined(separator: "\n") }

    func logger(_ label: String = "cp-test") -> Logger {
        var l = Logger(label: label) { _ in CPLogHandler(capture: self) }
        l.logLevel = .info
        return l
    }
}

struct CPLogHandler: LogHandler {
    let capture: CPLogCapture
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
    func log(event: LogEvent) {
        capture.append(.init(level: event.level, message: "\(event.message)"))
    }
}

/// A moto_server with the four tables of DATA-MODEL.md (default names) and helpers to seed them.
final class CPMoto: @unchecked Sendable {
    let server: AWSMotoServer
    let dynamo: DynamoDBClient
    var endpoint: String { server.endpoint }

    init() throws {
        server = try AWSMotoServer()
        dynamo = DynamoDBClient(client: try AWSTestKit.client(endpoint: server.endpoint))
        try dynamo.createTable(name: "shelcaster-active-shows", partitionKey: ("showId", .s))
        try dynamo.createTable(name: "shelcaster-participants", partitionKey: ("showId", .s), sortKey: ("participantId", .s))
        try dynamo.createTable(name: "shelcaster-audio-routing", partitionKey: ("showId", .s))
        try dynamo.createTable(name: "shelcaster-tracklists", partitionKey: ("tracklistId", .s))
    }

    /// SIGKILL: moto exits on SIGTERM only once every client connection has closed, and our
    /// HTTP client keeps idle ones open (AWSMotoServer.stop would wait its full 5 s).
    func stop() {
        let p = server.process
        if p.isRunning {
            kill(p.processIdentifier, SIGKILL)
            let deadline = Date().addingTimeInterval(5)
            while p.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
        }
        server.stop()
    }

    /// SIGSTOP: the server keeps its state (and its listening socket) but answers nothing.
    func pause() { kill(server.process.processIdentifier, SIGSTOP) }
    func resume() { kill(server.process.processIdentifier, SIGCONT) }

    /// Runs a boto3 script with `ddb`, `s3` and `MOTO` defined; returns its stdout.
    @discardableResult
    func boto3(_ body: String, timeout: Double = 60) throws -> String {
        try AWSTestKit.python("""
            import boto3, os, sys, time, json
            MOTO = os.environ["MOTO"]
            ddb = boto3.client("dynamodb", endpoint_url=MOTO, region_name="us-east-1")
            s3 = boto3.client("s3", endpoint_url=MOTO, region_name="us-east-1")
            \(body)
            """, environment: ["MOTO": endpoint], timeout: timeout)
    }

    func show(_ id: String) throws -> DynamoItem? {
        try dynamo.getItem(table: "shelcaster-active-shows", key: ["showId": .s(id)])
    }

    func putShow(_ id: String, extra: DynamoItem = [:]) throws {
        var item: DynamoItem = ["showId": .s(id), "status": .s("STARTING"), "hostUserId": .s("host-1")]
        item.merge(extra) { _, n in n }
        try dynamo.putItem(table: "shelcaster-active-shows", item: item)
    }

    func putRouting(_ id: String, _ fields: DynamoItem) throws {
        var item = fields
        item["showId"] = .s(id)
        try dynamo.putItem(table: "shelcaster-audio-routing", item: item)
    }

    func putParticipant(_ show: String, _ participantId: String, role: String) throws {
        try dynamo.putItem(table: "shelcaster-participants",
                           item: ["showId": .s(show), "participantId": .s(participantId), "role": .s(role), "isOnAir": .bool(true)])
    }

    /// A control plane pointed at this server with fake credentials.
    func plane(showId: String, taskArn: String = "arn:aws:ecs:us-east-1:123456789012:task/cluster/worker-a",
               pollMs: Int = 200, heartbeatS: Double = 1, logger: Logger, tracklistBucket: String? = nil) throws -> ControlPlane {
        var config = ControlPlaneConfig(showId: showId, taskArn: taskArn)
        config.routingPollMs = pollMs
        config.heartbeatIntervalS = heartbeatS
        config.tracklistBucket = tracklistBucket
        let env = try AWSEnvironment(region: "us-east-1", variables: ["AWS_ENDPOINT_URL": endpoint])
        return ControlPlane(config: config, aws: env, credentials: StaticCredentialsProvider(AWSTestKit.fakeCredentials), logger: logger)
    }
}

/// Routing items of the tone show, as DynamoDB items: no dynamics, so levels are exact.
enum CPRouting {
    static func plain(host: Double = 100, callers: Double = 100, tracklist: Double = 100,
                      onAir: [String] = ["caller-1", "caller-2", "caller-3", "caller-4"]) -> DynamoItem {
        [
            "hostVolume": .number(host), "callersVolume": .number(callers), "tracklistVolume": .number(tracklist),
            "masterVolume": 100, "onAirCallerIds": .l(onAir.map { .s($0) }), "participantVolumes": .m([:]),
            "compression": .m(["enabled": false, "threshold": -20, "ratio": 4]),
            "limiter": .m(["enabled": false, "ceiling": -1]),
            "ducking": .m(["enabled": false, "depthDb": 12]),
            "tracklist": .m(["state": "PLAYING", "skipSeq": 0]),
            "updatedAt": 0,
        ]
    }
}

/// Wraps the control to learn when program time 0 happened on the wall clock: the mix loop
/// publishes its first status right after starting its clock, at program time 0.
final class CPTimedControl: ShowControl, @unchecked Sendable {
    let inner: DynamoShowControl
    private let lock = NSLock()
    private var origin: Double?
    init(_ inner: DynamoShowControl) { self.inner = inner }

    func takeRoutingUpdate() -> Routing? { inner.takeRoutingUpdate() }
    func role(participantId: String) -> ParticipantRole? { inner.role(participantId: participantId) }
    func publish(_ status: ShowStatus) {
        lock.withLock {
            if origin == nil { origin = Date().timeIntervalSince1970 - status.programSeconds }
        }
        inner.publish(status)
    }
    var stopReason: String? { inner.stopReason }
    /// Epoch seconds of program time 0, once the run started.
    var originEpoch: Double? { lock.withLock { origin } }

    func waitForOrigin(timeout: Double = 20) -> Double? {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let o = originEpoch { return o }
            Thread.sleep(forTimeInterval: 0.01)
        }
        return nil
    }
}

/// Runs a `LocalShow` on a background thread, so the test can act on the tables meanwhile.
final class CPBackgroundRun: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private let lock = NSLock()
    private var outcome: Result<LocalRunReport, LocalRunError>?

    init(_ options: LocalRunOptions, logger: Logger) {
        Thread { [self] in
            let r: Result<LocalRunReport, LocalRunError>
            do throws(LocalRunError) { r = .success(try LocalShow.run(options, logger: logger)) } catch { r = .failure(error) }
            lock.withLock { outcome = r }
            done.signal()
        }.start()
    }

    /// The report, waiting at most `timeout` seconds.
    func wait(timeout: Double) throws -> LocalRunReport {
        guard done.wait(timeout: .now() + timeout) == .success else { throw PeerError("the run did not end within \(timeout) s") }
        done.signal()
        switch lock.withLock({ outcome }) {
        case .success(let r)?: return r
        case .failure(let e)?: throw PeerError("the run failed: \(e)")
        case nil: throw PeerError("no outcome")
        }
    }
}

/// Reads the show item every `interval` seconds on its own thread (what the studio UI sees).
final class CPShowSampler: @unchecked Sendable {
    struct Sample { var at: Double; var item: DynamoItem }
    private let lock = NSLock()
    private var stored: [Sample] = []
    private var stopping = false
    private let finished = DispatchSemaphore(value: 0)

    init(moto: CPMoto, showId: String, interval: Double = 0.1) {
        Thread { [self] in
            while !lock.withLock({ stopping }) {
                if let item = try? moto.show(showId) {
                    lock.withLock { stored.append(Sample(at: Date().timeIntervalSince1970, item: item)) }
                }
                Thread.sleep(forTimeInterval: interval)
            }
            finished.signal()
        }.start()
    }

    func stop() -> [Sample] {
        lock.withLock { stopping = true }
        _ = finished.wait(timeout: .now() + 10)
        return lock.withLock { stored }
    }
    var samples: [Sample] { lock.withLock { stored } }
}

enum CPAudio {
    /// Level (dBFS of the sine amplitude) of `hz` in a window ending at `end` seconds.
    static func level(_ left: [Float], hz: Double, end: Double, window: Double = 0.02) -> Double {
        let b = max(0, Int((end - window) * 48000)), e = min(left.count, Int(end * 48000))
        guard e > b else { return -120 }
        return Analysis.toneDbfs(left[b..<e], frequency: hz)
    }

    /// The first window end (stepping by `step` from `from`) where `predicate(level)` holds.
    static func firstTime(_ left: [Float], hz: Double, from: Double, to: Double, step: Double = 0.005,
                          _ predicate: (Double) -> Bool) -> Double? {
        var t = from
        while t <= to {
            if predicate(level(left, hz: hz, end: t)) { return t }
            t += step
        }
        return nil
    }

    /// Writes a sine as a file ffmpeg can encode (format from the extension).
    static func tone(_ hz: Double, seconds: Double, to path: String) throws {
        guard let ffmpeg = Paths.which("ffmpeg") else { throw PeerError("ffmpeg missing") }
        let expr = "0.25*sin(2*PI*\(hz)*t)"
        let r = try runProcess(ffmpeg, ["-v", "error", "-y", "-f", "lavfi", "-i",
                                        "aevalsrc=\(expr)|\(expr):s=44100:d=\(seconds)", path])
        guard r.status == 0 else { throw PeerError("ffmpeg: \(r.stderr)") }
    }
}
