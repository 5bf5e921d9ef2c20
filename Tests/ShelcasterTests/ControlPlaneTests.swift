import Foundation
import Testing
import AWSCore
import DynamoDB
import Routing
import ShowControl
import Tracklist
@testable import ControlPlane

/// The control plane's parts that need no AWS: configuration, lenient routing items, the
/// metrics map, roles, tracklist records, and the S3 fetcher against a stub server.
struct ControlPlaneConfigTests {
    static let base = ["SHOW_ID": "show-1", "TASK_ARN": "arn:aws:ecs:us-east-1:1:task/c/abc"]

    @Test func defaultsAndOverrides() throws {
        let c = try ControlPlaneConfig.fromEnvironment(Self.base)
        #expect(c.showId == "show-1")
        #expect(c.showsTable == "shelcaster-active-shows" && c.participantsTable == "shelcaster-participants")
        #expect(c.routingTable == "shelcaster-audio-routing" && c.tracklistsTable == "shelcaster-tracklists")
        #expect(c.routingPollMs == 500 && c.heartbeatIntervalS == 5)
        #expect(c.tracklistId == nil && c.tracklistBucket == nil)
        #expect(c.taskArn == "arn:aws:ecs:us-east-1:1:task/c/abc" && c.taskArnSource == "TASK_ARN")

        var env = Self.base
        env.merge(["SHOWS_TABLE": "s-t", "PARTICIPANTS_TABLE": "p.t", "ROUTING_TABLE": "r_t", "TRACKLISTS_TABLE": "tl-t",
                   "ROUTING_POLL_MS": "200", "HEARTBEAT_INTERVAL_S": "1.5", "TRACKLIST_ID": "tl-9",
                   "TRACKLIST_BUCKET": "music-bucket"]) { _, n in n }
        let o = try ControlPlaneConfig.fromEnvironment(env, showIdOverride: "other-show")
        #expect(o.showId == "other-show")
        #expect(o.showsTable == "s-t" && o.participantsTable == "p.t" && o.routingTable == "r_t" && o.tracklistsTable == "tl-t")
        #expect(o.routingPollMs == 200 && o.heartbeatIntervalS == 1.5)
        #expect(o.tracklistId == "tl-9" && o.tracklistBucket == "music-bucket")
    }

    @Test(arguments: [
        ("SHOW_ID", nil as String?, "SHOW_ID"),
        ("ROUTING_POLL_MS", "abc", "ROUTING_POLL_MS"),
        ("ROUTING_POLL_MS", "10", "ROUTING_POLL_MS"),
        ("ROUTING_POLL_MS", "99999999", "ROUTING_POLL_MS"),
        ("HEARTBEAT_INTERVAL_S", "0", "HEARTBEAT_INTERVAL_S"),
        ("HEARTBEAT_INTERVAL_S", "nan", "HEARTBEAT_INTERVAL_S"),
        ("SHOWS_TABLE", "a", "SHOWS_TABLE"),
        ("ROUTING_TABLE", "bad name!", "ROUTING_TABLE"),
        ("TRACKLIST_BUCKET", "-nope", "TRACKLIST_BUCKET"),
        ("TRACKLIST_ID", "a\u{01}b", "TRACKLIST_ID"),
    ])
    func badValuesNameTheVariable(name: String, value: String?, variable: String) {
        var env = Self.base
        env[name] = value
        do {
            _ = try ControlPlaneConfig.fromEnvironment(env)
            Issue.record("\(name)=\(value ?? "(unset)") was accepted")
        } catch {
            #expect(error.variable == variable)
            #expect(error.description.hasPrefix(variable + ":"), "\(error)")
            #expect(error.exitCode == 2)
        }
    }

    @Test func taskArnFromECSMetadataElseTaskArnElseHostname() throws {
        let stub = try HTTPStubServer { req, _ in
            req.path == "/v4/abc/task"
                ? .json(200, #"{"Cluster": "c", "TaskARN": "arn:aws:ecs:us-east-1:1:task/c/from-metadata", "Family": "w"}"#)
                : .text(404, "no")
        }
        defer { stub.stop() }
        var env = Self.base
        env["ECS_CONTAINER_METADATA_URI_V4"] = stub.baseURL + "/v4/abc"
        let c = try ControlPlaneConfig.fromEnvironment(env)
        #expect(c.taskArn == "arn:aws:ecs:us-east-1:1:task/c/from-metadata")
        #expect(c.taskArnSource == "ECS task metadata" && c.warnings.isEmpty)

        // The endpoint failing falls back to TASK_ARN, with a warning naming the variable.
        env["ECS_CONTAINER_METADATA_URI_V4"] = "http://127.0.0.1:\(HTTPTestKit.closedPort())/v4/x"
        let f = try ControlPlaneConfig.fromEnvironment(env)
        #expect(f.taskArn == Self.base["TASK_ARN"] && f.taskArnSource == "TASK_ARN")
        #expect(f.warnings.count == 1 && f.warnings[0].hasPrefix("ECS_CONTAINER_METADATA_URI_V4:"))

        let h = try ControlPlaneConfig.fromEnvironment(["SHOW_ID": "s"])
        #expect(h.taskArnSource == "hostname" && h.taskArn.hasPrefix("host/") && h.taskArn.count > 5)
    }

    @Test func awsSettingsAreCheckedUpFront() {
        let config = ControlPlaneConfig(showId: "s", taskArn: "t")
        func variable(_ env: [String: String]) -> String? {
            do {
                _ = try ControlPlane(config: config, environment: env, logger: .init(label: "t"))
                return nil
            } catch {
                #expect(error.exitCode == 2)
                return error.description.split(separator: ":").first.map(String.init)
            }
        }
        let keys = ["AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret-value-123"]
        #expect(variable(keys) == "AWS_REGION")
        #expect(variable(["AWS_REGION": "us-east-1"]) == "AWS_ACCESS_KEY_ID")
        #expect(variable(["AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE"]) == "AWS_SECRET_ACCESS_KEY")
        #expect(variable(keys.merging(["AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": "ftp://x"]) { $1 }) == "AWS_ENDPOINT_URL")
        #expect(variable(keys.merging(["AWS_REGION": "us-east-1"]) { $1 }) == nil)
    }
}

struct ControlPlaneRoutingItemTests {
    @Test func dynamoValuesMapToControlValues() {
        let item: DynamoItem = [
            "showId": "s", "n": .n("12.5"), "s": "x", "b": true, "l": .l([.n("1"), "a"]), "m": .m(["k": .n("2")]),
            "ss": .ss(["p", "q"]), "ns": .ns(["3"]), "nul": .null, "bin": .b([1, 2, 3]),
        ]
        let o = RoutingItem.controlObject(item)
        #expect(o["showId"] == nil)
        #expect(o["n"] == .number(12.5) && o["s"] == .string("x") && o["b"] == .bool(true))
        #expect(o["l"] == .array([.number(1), .string("a")]) && o["m"] == .object(["k": .number(2)]))
        #expect(o["ss"] == .array([.string("p"), .string("q")]) && o["ns"] == .array([.number(3)]))
        #expect(o["nul"] == .null)
        #expect(o["bin"] == .string("<binary, 3 bytes>"))
    }

    @Test func lenientReadClampsIgnoresAndDefaults() {
        var last = Routing()
        last.hostVolume = 40
        last.callersVolume = 60
        last.compression.threshold = -30
        let item: DynamoItem = [
            "showId": "s", "hostVolume": "loud", "callersVolume": .n("500"), "tracklistVolume": .n("-3"),
            "onAirCallerIds": .l(["c1", .n("7"), "c2"]),
            "participantVolumes": .m(["c1": .n("50"), "c2": "x"]),
            "compression": .m(["enabled": false]),
            "limiter": "off",
            "tracklist": .m(["state": "PAUSED", "skipSeq": .n("2.5")]),
        ]
        let (r, warnings) = RoutingItem.resolve(item, lastGood: last)
        #expect(r.hostVolume == 40, "a string keeps the last good value")
        #expect(r.callersVolume == 100 && r.tracklistVolume == 0, "out of range is clamped")
        #expect(r.masterVolume == 100, "a missing field is the default")
        #expect(r.onAirCallerIds == ["c1", "c2"])
        #expect(r.participantVolumes == ["c1": 50, "c2": 100])
        #expect(r.compression == Routing.Compression(enabled: false, threshold: -20, ratio: 4),
                "a group's missing fields are defaults, not the last value")
        #expect(r.limiter == Routing().limiter)
        #expect(r.tracklist.state == .paused && r.tracklist.skipSeq == 0)
        let joined = warnings.joined(separator: "\n")
        for field in ["hostVolume:", "callersVolume:", "tracklistVolume:", "onAirCallerIds[1]:", "participantVolumes.c2:",
                      "limiter:", "tracklist.skipSeq:"] {
            #expect(joined.contains(field), "no warning naming \(field) in:\n\(joined)")
        }
        #expect(warnings.count == 7)

        let (missing, none) = RoutingItem.resolve(nil, lastGood: last)
        #expect(missing == Routing() && none.isEmpty, "a missing item means the defaults")
        // Rendered back, a routing reads as itself.
        var full: DynamoItem = ["showId": "s"]
        for (k, v) in RoutingItem.object(r) { full[k] = AttributeValue(plain: Self.plain(v)) }
        #expect(RoutingItem.resolve(full, lastGood: Routing()) == (r, []))
    }

    static func plain(_ v: ControlValue) -> PlainValue {
        switch v {
        case .number(let n): .number(n)
        case .string(let s): .string(s)
        case .bool(let b): .bool(b)
        case .array(let a): .array(a.map(plain))
        case .object(let o): .object(o.mapValues(plain))
        case .null: .null
        }
    }
}

struct ControlPlaneRecordTests {
    @Test func metricsMapHasEveryFieldOfTheContract() {
        let voices = [
            VoiceStatus(participantId: "host", userId: "u1", role: .host, onAir: true, levelDbfs: -15.06, packets: 1, lost: 0,
                        concealedMs: 0, jitterTargetMs: 40),
            VoiceStatus(participantId: "caller-1", userId: nil, role: .caller, onAir: false, levelDbfs: -.infinity, packets: 1,
                        lost: 0, concealedMs: 0, jitterTargetMs: 40),
        ]
        let status = ShowStatus(programSeconds: 3, uptimeSeconds: 3.2, voices: voices, masterLevelDbfs: -9.94, clipping: true,
                                currentTrack: TrackStatus(index: 2, title: "Song", positionMs: 1234), outputState: .reconnecting,
                                outputDownSeconds: 2.5, outputKbps: 130.04)
        guard case .m(let m) = HeartbeatMetrics.item(status: status, uptimeSeconds: 12.34, rssMb: 55.55, cpuPercent: 17.25,
                                                      routingPollErrors: 3, heartbeatErrors: 1) else {
            Issue.record("not a map"); return
        }
        #expect(m["participants"] == .n("2") && m["onAir"] == .n("1"))
        #expect(m["outputState"] == .s("RECONNECTING") && m["outputDownSeconds"] == .n("2.5") && m["outputKbps"] == .n("130"))
        #expect(m["masterLevelDbfs"] == .n("-9.9") && m["clipping"] == .bool(true))
        #expect(m["levels"] == .m(["host": .n("-15.1"), "caller-1": .n("-120")]))
        #expect(m["currentTrack"] == .m(["index": .n("2"), "title": .s("Song"), "positionMs": .n("1234")]))
        #expect(m["uptimeSeconds"] == .n("12.3") && m["rssMb"] == .n("55.6") && m["cpuPercent"] == .n("17.3"))
        #expect(m["routingPollErrors"] == .n("3") && m["heartbeatErrors"] == .n("1"))

        guard case .m(let empty) = HeartbeatMetrics.item(status: nil, uptimeSeconds: 0, rssMb: 0, cpuPercent: 0,
                                                          routingPollErrors: 0, heartbeatErrors: 0) else { return }
        #expect(empty["outputState"] == .s("CONNECTING") && empty["currentTrack"] == .m([:]) && empty["levels"] == .m([:]))
        #expect(ProcessUsage.rssMb() > 1, "VmRSS read from /proc/self/status")
    }

    @Test func rolesFollowTheDataModelOrder() {
        #expect(ParticipantRoles.resolve(tableRole: .caller, stageAttribute: "HOST", userId: "h", hostUserId: "h") == .caller)
        #expect(ParticipantRoles.resolve(tableRole: nil, stageAttribute: "virtual_participant", userId: "h", hostUserId: "h") == .virtualParticipant)
        #expect(ParticipantRoles.resolve(tableRole: nil, stageAttribute: nil, userId: "h", hostUserId: "h") == .host)
        #expect(ParticipantRoles.resolve(tableRole: nil, stageAttribute: "guest", userId: "x", hostUserId: "h") == .caller)
        let (roles, warnings) = ParticipantRoles.fromItems([
            ["showId": "s", "participantId": "a", "role": "HOST"],
            ["showId": "s", "participantId": "b", "role": "CALLER"],
            ["showId": "s", "participantId": "c", "role": .n("1")],
            ["showId": "s", "participantId": "d"],
        ])
        #expect(roles == ["a": .host, "b": .caller])
        #expect(warnings.count == 1 && warnings[0].hasPrefix("participants[c].role:"))
    }

    @Test func tracklistRecordSkipsBadEntriesWithWarnings() {
        let item: DynamoItem = [
            "tracklistId": "tl", "loop": false,
            "tracks": .l([
                .m(["s3Key": "music/a.mp3", "title": "A"]),
                .m(["s3Key": "b.flac", "bucket": "other-bucket"]),
                .m(["title": "no key"]),
                "not a map",
                .m(["s3Key": "c.wav", "bucket": .n("5")]),
            ]),
        ]
        let r = TracklistRecord(item: item, tracklistId: "tl", defaultBucket: "main")
        #expect(!r.loop)
        #expect(r.tracks == [Track(title: "A", location: .s3(bucket: "main", key: "music/a.mp3")),
                             Track(title: "b.flac", location: .s3(bucket: "other-bucket", key: "b.flac")),
                             Track(title: "c.wav", location: .s3(bucket: "main", key: "c.wav"))])
        #expect(r.warnings.count == 3)
        #expect(r.warnings.contains { $0.hasPrefix("tracks[2].s3Key:") })
        #expect(r.warnings.contains { $0.hasPrefix("tracks[4].bucket:") })
        let noBucket = TracklistRecord(item: ["tracks": .l([.m(["s3Key": "x.mp3"])])], tracklistId: "t", defaultBucket: nil)
        #expect(noBucket.tracks.isEmpty && noBucket.loop && noBucket.warnings[0].hasPrefix("tracks[0].bucket:"))
    }
}

struct ControlPlaneFetcherTests {
    static func fetcher(_ endpoint: String, dir: String, maxBytes: Int = 1 << 20) throws -> S3TrackFetcher {
        let s3 = S3Client(client: try AWSTestKit.client(endpoint: endpoint, retry: RetryPolicy(maxAttempts: 2, baseDelay: 0.01)))
        return try S3TrackFetcher(s3: s3, directory: dir, maxBytesPerFile: maxBytes, maxFilesOnDisk: 3,
                                  retry: RetryPolicy(maxAttempts: 3, baseDelay: 0.01, maxDelay: 0.05))
    }

    @Test func transientErrorsAreRetriedAndMissingKeysFailAtOnce() throws {
        let stub = try HTTPStubServer { req, i in
            if req.path.hasSuffix("/missing.mp3") { return .text(404, "<Error><Code>NoSuchKey</Code><Message>gone</Message></Error>") }
            if req.path.hasSuffix("/big.mp3") { return HTTPStubResponse(status: 200, body: [UInt8](repeating: 7, count: 5000)) }
            // The first three requests fail as S3 does under load; the fourth succeeds.
            return i < 3 ? .text(503, "<Error><Code>SlowDown</Code></Error>") : HTTPStubResponse(status: 200, body: Array("audio".utf8))
        }
        defer { stub.stop() }
        let dir = Paths.tempDir("cp-fetch")
        let f = try Self.fetcher(stub.baseURL, dir: dir, maxBytes: 1000)
        let path = try f.localPath(for: .s3(bucket: "tracks", key: "music/ok.mp3"))
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "audio")
        #expect(stub.hits == 4, "2 attempts by the client × 2 by the fetcher")
        #expect(f.downloads.last?.attempts == 2)
        #expect(stub.requests.allSatisfy { $0.path == "/tracks/music/ok.mp3" })

        do {
            _ = try f.localPath(for: .s3(bucket: "tracks", key: "music/missing.mp3"))
            Issue.record("a missing key was resolved")
        } catch let e as TrackResolveError {
            #expect(e.reason.contains("not found") && e.reason.contains("NoSuchKey"))
        }
        #expect(stub.hits == 5, "a 404 is not retried")
        do {
            _ = try f.localPath(for: .s3(bucket: "tracks", key: "big.mp3"))
            Issue.record("an object over the cap was resolved")
        } catch let e as TrackResolveError {
            #expect(e.reason.contains("limit"))
        }
        // Nothing partial is left behind by the failures.
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).count == 1)
        // A cached track is not fetched again.
        let again = try f.localPath(for: .s3(bucket: "tracks", key: "music/ok.mp3"))
        #expect(again == path && stub.hits == 6)
        f.removeAll()
        #expect(!FileManager.default.fileExists(atPath: dir))
    }

    @Test func atMostThreeFilesStayOnDisk() throws {
        let stub = try HTTPStubServer { req, _ in HTTPStubResponse(status: 200, body: Array(req.path.utf8)) }
        defer { stub.stop() }
        let dir = Paths.tempDir("cp-lru")
        let f = try Self.fetcher(stub.baseURL, dir: dir)
        defer { f.removeAll() }
        var paths: [String] = []
        for i in 0..<6 {
            paths.append(try f.localPath(for: .s3(bucket: "tracks", key: "t\(i).mp3")))
            let onDisk = try FileManager.default.contentsOfDirectory(atPath: dir)
            #expect(onDisk.count == min(i + 1, 3))
        }
        #expect(f.filesOnDisk == Array(paths.suffix(3)))
        #expect(!FileManager.default.fileExists(atPath: paths[0]))
        #expect(paths[5].hasSuffix("-t5.mp3"))
        #expect(S3TrackFetcher.safeName("a/b/../My Song ü.mp3") == "My_Song__.mp3")
        #expect(S3TrackFetcher.safeName("dir/.hidden") == "_hidden")
    }
}
