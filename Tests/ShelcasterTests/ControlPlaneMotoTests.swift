import Foundation
import Testing
import AWSCore
import AudioCore
import ControlPlane
import DynamoDB
import Routing
import ShowControl
import Tracklist
@testable import LocalRun

/// The control plane against moto_server on loopback, driving real-time runs of the tone show
/// (fixtures/tones: every source a sine of its own frequency, so each one's level can be read
/// from the output). Serialized: the timing checks should not share the two cores with each other.
@Suite(.serialized, .enabled(if: AWSTestKit.motoAvailable, "moto_server is not installed (pip install \"moto[server]\")"))
struct ControlPlaneMotoTests {
    static let arnA = "arn:aws:ecs:us-east-1:123456789012:task/cluster/worker-a"
    static let arnB = "arn:aws:ecs:us-east-1:123456789012:task/cluster/worker-b"

    /// boto3 sleeps until each planned wall time itself (interpreter start-up does not count) and
    /// prints when each write was sent, as epoch seconds.
    static func timedWrites(_ moto: CPMoto, _ writes: [(at: Double, python: String)]) throws -> [Double] {
        var script = """
            def at(t):
                d = t - time.time()
                if d > 0: time.sleep(d)
            sent = []

            """
        for w in writes {
            script += "at(\(w.at))\nsent.append(time.time())\n\(w.python)\n"
        }
        script += "print('SENT ' + json.dumps(sent))\n"
        let out = try moto.boto3(script)
        guard let line = out.split(separator: "\n").last(where: { $0.hasPrefix("SENT ") }),
              let data = line.dropFirst(5).data(using: .utf8),
              let times = try JSONSerialization.jsonObject(with: data) as? [Double] else {
            throw PeerError("boto3 printed no times: \(out)")
        }
        return times
    }

    static func setRouting(_ show: String, _ assignments: String, _ values: String) -> String {
        #"ddb.update_item(TableName="shelcaster-audio-routing", Key={"showId": {"S": "\#(show)"}}, UpdateExpression="SET \#(assignments)", ExpressionAttributeValues=\#(values))"#
    }

    // MARK: - routing

    @Test func routingWriteIsHeardWithinAPollAndBadValuesAreClampedOrIgnored() throws {
        let moto = try CPMoto()
        defer { moto.stop() }
        let show = "routing-show"
        try moto.putShow(show)
        try moto.putRouting(show, CPRouting.plain(host: 100, callers: 50, onAir: ["caller-1"]))
        let logs = CPLogCapture()
        let pollMs = 200
        let plane = try moto.plane(showId: show, pollMs: pollMs, logger: logs.logger())
        let control = plane.makeShowControl(show: try plane.readShow())
        try control.start()
        let timed = CPTimedControl(control)
        let dir = Paths.tempDir("cp-routing")
        // Host 350 Hz and caller-1 550 Hz; the manifest's routing is replaced by the table's.
        var o = LocalRunOptions(manifestPath: try ToneShow.manifest(routing: ToneShow.plain, voices: 2, music: false, dir: dir),
                                output: dir + "/out.wav")
        o.realtime = true
        o.duration = 7
        o.control = timed
        let run = CPBackgroundRun(o, logger: logs.logger("mix"))
        let origin = try #require(timed.waitForOrigin())
        // A random phase against the poll ticks, so runs cover the whole range of waits.
        let phase = Double.random(in: 0..<(Double(pollMs) / 1000))
        let sent = try Self.timedWrites(moto, [
            (origin + 2.0 + phase, Self.setRouting(show, "hostVolume = :v", #"{":v": {"N": "20"}}"#)),
            // Wrongly typed and out of range: ignored (last good value kept) and clamped.
            (origin + 4.5, Self.setRouting(show, "hostVolume = :h, callersVolume = :c", #"{":h": {"S": "loud"}, ":c": {"N": "500"}}"#)),
        ])
        let report = try run.wait(timeout: 30)
        #expect(control.finish(clean: true))
        #expect(report.outputFrames == 7 * 48000, "the mix ran its full length")

        let left = Analysis.left(try WAVFile.read(dir + "/out.wav").samples)
        let full = dbfs(ToneShow.amplitude), low = dbfs(ToneShow.amplitude * 0.2), half = dbfs(ToneShow.amplitude * 0.5)
        #expect(abs(level(left, hz: 350, from: 1, to: 1.9) - full) < 1)
        #expect(abs(level(left, hz: 550, from: 1, to: 1.9) - half) < 1, "the table's callersVolume 50 is in force")

        // The write's program time; audible = the host tone 3 dB down from where it was.
        let w1 = sent[0] - origin
        let heard = try #require(CPAudio.firstTime(left, hz: 350, from: w1 - 0.1, to: w1 + 1.5) { $0 < full - 3 },
                                 "the routing change never reached the output")
        let latency = heard - w1
        print("control plane: routing write heard after \(Int(latency * 1000)) ms (poll \(pollMs) ms)")
        #expect(latency >= -0.02, "the change showed before it was written (\(latency) s): a clock mix-up")
        #expect(latency <= Double(pollMs) / 1000 + 0.1, "heard \(Int(latency * 1000)) ms after the write, allowed \(pollMs + 100) ms")
        #expect(abs(level(left, hz: 350, from: heard + 0.1, to: w1 + 2.4) - low) < 1, "hostVolume 20 holds")

        // Bad values: the host keeps 20, the callers' 500 is clamped to 100, the mix goes on.
        let w2 = sent[1] - origin
        let callerUp = try #require(CPAudio.firstTime(left, hz: 550, from: w2 - 0.1, to: w2 + 1.5) { $0 > half + 3 })
        #expect(callerUp - w2 <= Double(pollMs) / 1000 + 0.1)
        #expect(abs(level(left, hz: 350, from: w2 + 0.5, to: 6.95) - low) < 1, "the string was ignored, the last good value kept")
        #expect(abs(level(left, hz: 550, from: w2 + 0.5, to: 6.95) - full) < 1, "500 was clamped to 100")
        // No dropout anywhere: every 20 ms window has the host tone.
        let quietest = stride(from: 0.1, through: 6.95, by: 0.02).map { CPAudio.level(left, hz: 350, end: $0) }.min() ?? -120
        #expect(quietest > low - 3, "a window fell to \(quietest) dBFS")

        // Each warning names its field and is logged once, although ~12 polls saw it.
        #expect(logs.count(.warning, containing: "hostVolume: expected a number, got \"loud\"") == 1, "\(logs.text)")
        #expect(logs.count(.warning, containing: "callersVolume: 500.0 is out of range 0...100; clamped to 100") == 1, "\(logs.text)")
        let s = control.stats
        #expect(s.routingPollErrors == 0)
        #expect(s.routingPolls >= 25, "\(s.routingPolls) polls in 7 s at 200 ms")
        #expect(s.routingUpdates == 3, "initial, the change, the clamped one: \(s)")
    }

    // MARK: - heartbeats and status

    @Test func heartbeatsCarryTheMetricsAndStatusGoesStartingRunningStopped() throws {
        let moto = try CPMoto()
        defer { moto.stop() }
        let show = "hb-show"
        try moto.putShow(show)
        try moto.putRouting(show, CPRouting.plain(callers: 50, tracklist: 50))
        try moto.putParticipant(show, "host", role: "HOST")
        try moto.putParticipant(show, "caller-1", role: "CALLER")
        // The table's role wins over the recording's: caller-4 is never mixed.
        try moto.putParticipant(show, "caller-4", role: "VIRTUAL_PARTICIPANT")
        let logs = CPLogCapture()
        let plane = try moto.plane(showId: show, heartbeatS: 1, logger: logs.logger())
        let control = plane.makeShowControl(show: try plane.readShow())
        try control.start()

        let claimed = try #require(try moto.show(show))
        #expect(claimed["compositionServiceStatus"] == .s("STARTING"))
        #expect(claimed["compositionServiceTaskArn"] == .s(Self.arnA))
        #expect(claimed["status"] == .s("STARTING"), "the show lifecycle is not the worker's until LIVE")
        #expect(control.participantRoles == ["host": .host, "caller-1": .caller, "caller-4": .virtualParticipant])
        #expect(control.role(participantId: "caller-4", userId: "host-1", stageAttribute: "HOST") == .virtualParticipant)
        #expect(control.role(participantId: "new-1", userId: "host-1", stageAttribute: nil) == .host, "the show's hostUserId")
        #expect(control.role(participantId: "new-2", userId: "u-9", stageAttribute: nil) == .caller)

        let sampler = CPShowSampler(moto: moto, showId: show)
        for _ in 0..<50 where sampler.samples.isEmpty { Thread.sleep(forTimeInterval: 0.05) }
        let dir = Paths.tempDir("cp-heartbeat")
        var o = LocalRunOptions(manifestPath: try ToneShow.manifest(routing: ToneShow.plain, dir: dir), output: dir + "/out.wav")
        o.realtime = true
        o.duration = 5.5
        o.control = control
        let report = try CPBackgroundRun(o, logger: logs.logger("mix")).wait(timeout: 30)
        let samples = sampler.stop()
        #expect(control.finish(clean: true))
        let final = try #require(try moto.show(show))

        #expect(report.participants.map(\.participantId).sorted() == ["caller-1", "caller-2", "caller-3", "host"])
        // STARTING → RUNNING while mixing → STOPPED (STOPPING in between is written too).
        var seen: [String] = []
        for s in samples {
            if case .s(let st)? = s.item["compositionServiceStatus"], seen.last != st { seen.append(st) }
        }
        #expect(seen.first == "STARTING" && seen.contains("RUNNING"), "statuses seen: \(seen)")
        #expect(final["compositionServiceStatus"] == .s("STOPPED") && final["status"] == .s("STOPPED"))
        #expect(final["compositionServiceTaskArn"] == .s(Self.arnA))
        #expect(control.writtenStatuses == [.starting, .running, .stopping, .stopped])

        // A heartbeat every interval: the distinct lastHeartbeat values written while RUNNING.
        let running = samples.filter { $0.item["compositionServiceStatus"] == .s("RUNNING") }
        let beats = Array(Set(running.compactMap { $0.item["lastHeartbeat"]?.int64Value })).sorted()
        #expect(beats.count >= 5, "\(beats.count) heartbeats in a 5.5 s run at 1 s")
        let gaps = zip(beats.dropFirst(), beats).map { Double($0 - $1) / 1000 }
        #expect(gaps.allSatisfy { (0.8...1.3).contains($0) }, "heartbeat gaps \(gaps)")
        for s in running {
            #expect(s.item["updatedAt"] == s.item["lastHeartbeat"])
        }

        // The metrics map of the last heartbeat seen while mixing.
        let last = try #require(running.last?.item["metrics"]?.mapValue, "no metrics map")
        #expect(last["participants"]?.intValue == 4 && last["onAir"]?.intValue == 4)
        #expect(last["outputState"] == .s("CONNECTED") && last["clipping"] == .bool(false))
        #expect(last["outputDownSeconds"]?.doubleValue == 0 && (last["outputKbps"]?.doubleValue ?? 0) > 1000, "WAV is 1536 kb/s")
        let levels = try #require(last["levels"]?.mapValue)
        #expect(Set(levels.keys) == ["host", "caller-1", "caller-2", "caller-3"])
        for (id, v) in levels {
            // Each voice is a 0.25 sine: -15.05 dBFS RMS before routing gains.
            #expect(abs((v.doubleValue ?? -120) + 15.05) < 1.5, "\(id) at \(v)")
        }
        let master = try #require(last["masterLevelDbfs"]?.doubleValue)
        #expect(master > -30 && master < 0)
        let track = try #require(last["currentTrack"]?.mapValue)
        #expect(track["index"]?.intValue == 0 && track["title"] == .s("t1-1500.mp3"))
        #expect((1000...5600).contains(track["positionMs"]?.intValue ?? -1), "\(track)")
        #expect((last["uptimeSeconds"]?.doubleValue ?? 0) > 3)
        #expect((last["rssMb"]?.doubleValue ?? 0) > 5)
        #expect((0...400).contains(last["cpuPercent"]?.doubleValue ?? -1))
        #expect(last["routingPollErrors"]?.intValue == 0 && last["heartbeatErrors"]?.intValue == 0)
        let uptimes = running.compactMap { $0.item["metrics"]?["uptimeSeconds"]?.doubleValue }
        #expect(uptimes == uptimes.sorted() && (uptimes.last ?? 0) > (uptimes.first ?? 0))
    }

    @Test func liveAndErrorAreWrittenAndARestartOfTheSameTaskClearsTheError() throws {
        let moto = try CPMoto()
        defer { moto.stop() }
        let show = "life-show"
        try moto.putShow(show)
        let logs = CPLogCapture()
        let plane = try moto.plane(showId: show, heartbeatS: 5, logger: logs.logger())
        let control = plane.makeShowControl(show: nil)
        try control.start()
        #expect(try moto.show(show)?["compositionServiceStatus"] == .s("STARTING"))
        // The first status from the mix loop is written at once, not at the next 5 s tick.
        let t0 = Date()
        control.publish(ShowStatus(programSeconds: 0, uptimeSeconds: 0, voices: [], masterLevelDbfs: -120, clipping: false,
                                   currentTrack: nil, outputState: .connected, outputDownSeconds: 0, outputKbps: 0))
        #expect(Self.waitFor(2) { (try? moto.show(show))?["compositionServiceStatus"] == .s("RUNNING") })
        #expect(Date().timeIntervalSince(t0) < 1.5)
        control.markLive()
        #expect(Self.waitFor(2) { (try? moto.show(show))?["status"] == .s("LIVE") })

        Secrets.register("sk_us-east-1_SECRETKEY42")
        #expect(control.finish(clean: false, error: "ingest refused rtmps://x/app/sk_us-east-1_SECRETKEY42"))
        let failed = try #require(try moto.show(show))
        #expect(failed["compositionServiceStatus"] == .s("ERROR") && failed["status"] == .s("ERROR"))
        #expect(failed["errorMessage"] == .s("ingest refused rtmps://x/app/[REDACTED]"))
        #expect(control.writtenStatuses == [.starting, .running, .error])

        // The same task starting again (a restart) may claim the show; the old error goes.
        let again = plane.makeShowControl(show: nil)
        try again.start()
        let restarted = try #require(try moto.show(show))
        #expect(restarted["compositionServiceStatus"] == .s("STARTING") && restarted["errorMessage"] == nil)
        #expect(again.finish(clean: true))
        #expect(try moto.show(show)?["compositionServiceStatus"] == .s("STOPPED"))
        // A show that does not exist is not created by the claim.
        let ghost = try moto.plane(showId: "no-such-show", logger: logs.logger()).makeShowControl(show: nil)
        #expect(throws: ControlPlaneError.self) { try ghost.start() }
        #expect(try moto.show("no-such-show") == nil)
    }

    static func waitFor(_ seconds: Double, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if condition() { return true }
            Thread.sleep(forTimeInterval: 0.05)
        }
        return condition()
    }

    // MARK: - fencing

    @Test func aSecondTaskIsFencedOutAndTheFirstStopsWhenTakenOver() throws {
        let moto = try CPMoto()
        defer { moto.stop() }
        let show = "fence-show"
        try moto.putShow(show)
        try moto.putRouting(show, CPRouting.plain())
        let logsA = CPLogCapture(), logsB = CPLogCapture()
        let a = try moto.plane(showId: show, taskArn: Self.arnA, heartbeatS: 1, logger: logsA.logger()).makeShowControl(show: nil)
        try a.start()
        let timed = CPTimedControl(a)
        let dir = Paths.tempDir("cp-fence")
        var o = LocalRunOptions(manifestPath: try ToneShow.manifest(routing: ToneShow.plain, voices: 1, music: false, dir: dir),
                                output: dir + "/out.wav")
        o.realtime = true
        o.duration = 8
        o.control = timed
        let run = CPBackgroundRun(o, logger: logsA.logger("mix"))
        let origin = try #require(timed.waitForOrigin())

        // B cannot claim a show A holds.
        let b = try moto.plane(showId: show, taskArn: Self.arnB, heartbeatS: 1, logger: logsB.logger()).makeShowControl(show: nil)
        do {
            try b.start()
            Issue.record("a second task claimed a held show")
        } catch {
            #expect(error.kind == .fenced && error.exitCode == 1)
            #expect(error.description.contains(Self.arnA))
        }
        #expect(b.stopReason == "fenced out by task \(Self.arnA)")
        #expect(try moto.show(show)?["compositionServiceTaskArn"] == .s(Self.arnA))
        #expect(!b.finish(clean: true), "a fenced task writes no final status")

        // The control plane hands the show to B: A's next heartbeat loses its condition and A stops.
        let sent = try Self.timedWrites(moto, [(origin + 2.0, #"""
            ddb.update_item(TableName="shelcaster-active-shows", Key={"showId": {"S": "\#(show)"}}, UpdateExpression="SET compositionServiceTaskArn = :b, compositionServiceStatus = :s", ExpressionAttributeValues={":b": {"S": "\#(Self.arnB)"}, ":s": {"S": "STARTING"}})
            """#)])
        let report = try run.wait(timeout: 30)
        #expect(report.stoppedBecause == "fenced out by task \(Self.arnB)")
        let takeover = sent[0] - origin
        #expect(report.programSeconds > takeover && report.programSeconds < takeover + 1.6,
                "stopped at \(report.programSeconds) s, taken over at \(takeover) s (heartbeat every 1 s)")
        #expect(logsA.count(.error, containing: "fenced out by task \(Self.arnB)") == 1, "\(logsA.text)")
        #expect(!a.finish(clean: true))
        let item = try #require(try moto.show(show))
        #expect(item["compositionServiceTaskArn"] == .s(Self.arnB) && item["compositionServiceStatus"] == .s("STARTING"),
                "A overwrote B's claim")
        let polls = a.stats.routingPolls
        Thread.sleep(forTimeInterval: 0.6)
        #expect(a.stats.routingPolls == polls, "A's poller stopped")
    }

    // MARK: - tracklist from S3

    @Test func s3TracksPlayInOrderBadOnesAreSkippedAndTheNextIsLocalBeforeTheCurrentEnds() throws {
        let moto = try CPMoto()
        defer { moto.stop() }
        let show = "tracks-show"
        try moto.putShow(show, extra: ["tracklistId": "tl-1"])
        // Music only: the host is on air at volume 0.
        try moto.putRouting(show, CPRouting.plain(host: 0, tracklist: 100))
        let dir = Paths.tempDir("cp-tracks")
        try CPAudio.tone(1500, seconds: 1.5, to: dir + "/a.flac")
        try CPAudio.tone(1800, seconds: 1.5, to: dir + "/b.wav")
        try CPAudio.tone(2100, seconds: 1.5, to: dir + "/c.mp3")
        try moto.boto3("""
            s3.create_bucket(Bucket="tracks")
            s3.create_bucket(Bucket="other-bucket")
            s3.put_object(Bucket="tracks", Key="music/a.flac", Body=open("\(dir)/a.flac", "rb").read())
            s3.put_object(Bucket="tracks", Key="music/b.wav", Body=open("\(dir)/b.wav", "rb").read())
            s3.put_object(Bucket="tracks", Key="music/corrupt.mp3", Body=bytes((i * 31 + 7) % 256 for i in range(40000)))
            s3.put_object(Bucket="other-bucket", Key="c.mp3", Body=open("\(dir)/c.mp3", "rb").read())
            def t(key, title, bucket=None):
                m = {"s3Key": {"S": key}, "title": {"S": title}}
                if bucket: m["bucket"] = {"S": bucket}
                return {"M": m}
            ddb.put_item(TableName="shelcaster-tracklists", Item={"tracklistId": {"S": "tl-1"}, "loop": {"BOOL": False}, "tracks": {"L": [
                t("music/a.flac", "A"), t("music/missing.mp3", "Missing"), t("music/b.wav", "B"),
                t("music/corrupt.mp3", "Corrupt"), t("c.mp3", "C", "other-bucket")]}})
            """)
        let logs = CPLogCapture()
        let plane = try moto.plane(showId: show, logger: logs.logger(), tracklistBucket: "tracks")
        let showRecord = try plane.readShow()
        let record = try plane.loadTracklist(id: try #require(showRecord.tracklistId))
        #expect(record.tracks.map(\.title) == ["A", "Missing", "B", "Corrupt", "C"] && !record.loop)
        let fetcher = try plane.makeTrackFetcher()
        defer { fetcher.removeAll() }
        #expect(fetcher.prefetchFirstPlayable(of: record.tracks) == 0)
        let control = plane.makeShowControl(show: showRecord)
        try control.start()
        let timed = CPTimedControl(control)
        var o = LocalRunOptions(manifestPath: try ToneShow.manifest(routing: ToneShow.plain, voices: 1, music: false, dir: dir),
                                output: dir + "/out.wav")
        o.realtime = true
        o.duration = 5.2
        o.control = timed
        o.tracklist = TracklistSource(tracks: record.tracks, loop: record.loop, resolver: fetcher)
        let report = try CPBackgroundRun(o, logger: logs.logger("mix")).wait(timeout: 30)
        #expect(control.finish(clean: true))
        let origin = try #require(timed.originEpoch)
        #expect(report.tracksStarted == 3 && report.tracksFailed == 2)

        let left = Analysis.left(try WAVFile.read(dir + "/out.wav").samples)
        let music = dbfs(ToneShow.amplitude)
        for (hz, from, to) in [(1500.0, 0.1, 1.4), (1800, 1.6, 2.9), (2100, 3.1, 4.4)] {
            #expect(abs(level(left, hz: hz, from: from, to: to) - music) < 1.5, "\(hz) Hz in \(from)-\(to) s")
            for other in [1500.0, 1800, 2100] where other != hz {
                #expect(level(left, hz: other, from: from, to: to) < -50, "\(other) Hz heard in \(hz) Hz's slot")
            }
        }
        #expect(Analysis.rms(left[Int(4.6 * 48000)..<Int(5.1 * 48000)]) < 0.001, "the tracklist does not loop")
        // Music from the start (the player opens the first track on its own queue while the
        // clock starts, so it may come in a block or two late), then no gap at any change:
        // every 5 ms window up to the end of the last track carries music.
        func rms5ms(_ start: Double) -> Double { Analysis.rms(left[Int(start * 48000)..<Int((start + 0.005) * 48000)]) }
        let onset = try #require(stride(from: 0.0, to: 1, by: 0.005).first { rms5ms($0) > 0.1 })
        #expect(onset <= 0.06, "music started at \(onset) s")
        var quietest = 1.0, at = 0.0
        for start in stride(from: onset, to: 4.48, by: 0.005) {
            let r = rms5ms(start)
            if r < quietest { quietest = r; at = start }
        }
        #expect(quietest > 0.1, "music fell to RMS \(quietest) at \(at) s")
        // Each next track was on disk before the one before it ended.
        let done = Dictionary(fetcher.downloads.map { ($0.location.description, $0.finishedAt.timeIntervalSince1970 - origin) }) { a, _ in a }
        let b = try #require(done["s3://tracks/music/b.wav"]), c = try #require(done["s3://other-bucket/c.mp3"])
        #expect(b < 1.5 && c < 3.0, "b ready at \(b) s (a ends 1.5 s), c at \(c) s (b ends 3.0 s)")
        #expect(fetcher.filesOnDisk.count <= 3)
        #expect(try FileManager.default.contentsOfDirectory(atPath: fetcher.directory).count <= 3)
        // Skips are warnings naming the track and why.
        #expect(logs.count(.warning, containing: "'Missing': s3://tracks/music/missing.mp3: not found in S3") >= 1, "\(logs.text)")
        #expect(logs.count(.warning, containing: "skipping track 4 'Corrupt'") == 1, "\(logs.text)")
    }

    @Test func pauseAndSkipFromTheRoutingItemSteerTheS3Tracklist() throws {
        let moto = try CPMoto()
        defer { moto.stop() }
        let show = "pause-show"
        try moto.putShow(show, extra: ["tracklistId": "tl-2"])
        try moto.putRouting(show, CPRouting.plain(host: 0, tracklist: 100))
        try moto.boto3("""
            s3.create_bucket(Bucket="tracks")
            for name in ["t1-1500.mp3", "t2-1800.m4a"]:
                s3.put_object(Bucket="tracks", Key="music/" + name, Body=open("\(Paths.fixture("tones/music"))/" + name, "rb").read())
            ddb.put_item(TableName="shelcaster-tracklists", Item={"tracklistId": {"S": "tl-2"}, "tracks": {"L": [
                {"M": {"s3Key": {"S": "music/t1-1500.mp3"}}}, {"M": {"s3Key": {"S": "music/t2-1800.m4a"}}}]}})
            """)
        let logs = CPLogCapture()
        let plane = try moto.plane(showId: show, logger: logs.logger(), tracklistBucket: "tracks")
        let record = try plane.loadTracklist(id: "tl-2")
        #expect(record.loop && record.tracks.map(\.title) == ["t1-1500.mp3", "t2-1800.m4a"])
        let fetcher = try plane.makeTrackFetcher()
        defer { fetcher.removeAll() }
        fetcher.prefetchFirstPlayable(of: record.tracks)
        let control = plane.makeShowControl(show: nil)
        try control.start()
        let timed = CPTimedControl(control)
        let dir = Paths.tempDir("cp-pause")
        var o = LocalRunOptions(manifestPath: try ToneShow.manifest(routing: ToneShow.plain, voices: 1, music: false, dir: dir),
                                output: dir + "/out.wav")
        o.realtime = true
        o.duration = 6
        o.control = timed
        o.tracklist = TracklistSource(tracks: record.tracks, loop: record.loop, resolver: fetcher)
        let run = CPBackgroundRun(o, logger: logs.logger("mix"))
        let origin = try #require(timed.waitForOrigin())
        func tracklist(_ state: String, _ skipSeq: Int) -> String {
            Self.setRouting(show, "tracklist = :t", #"{":t": {"M": {"state": {"S": "\#(state)"}, "skipSeq": {"N": "\#(skipSeq)"}}}}"#)
        }
        let sent = try Self.timedWrites(moto, [(origin + 1.5, tracklist("PAUSED", 0)), (origin + 3.0, tracklist("PLAYING", 1))])
        _ = try run.wait(timeout: 30)
        #expect(control.finish(clean: true))

        let left = Analysis.left(try WAVFile.read(dir + "/out.wav").samples)
        let (p, r) = (sent[0] - origin, sent[1] - origin)
        #expect(abs(level(left, hz: 1500, from: 0.3, to: p) - (-12.49)) < 1, "track 1 before the pause")
        #expect(Analysis.rms(left[Int((p + 0.35) * 48000)..<Int(r * 48000)]) < 0.001, "music during the pause")
        // Resumed with skipSeq 1: track 2 (already downloaded while track 1 played), not track 1.
        #expect(abs(level(left, hz: 1800, from: r + 0.35, to: 5.95) - (-12.08)) < 1, "track 2 after the skip")
        #expect(level(left, hz: 1500, from: r + 0.35, to: 5.95) < -50, "track 1 still heard after the skip")
        #expect(fetcher.downloads.map(\.location.description) == ["s3://tracks/music/t1-1500.mp3", "s3://tracks/music/t2-1800.m4a"])
    }

    // MARK: - outage

    /// moto is frozen (SIGSTOP, so it keeps its tables) for 20 s of a 28 s real-time run: calls
    /// hang until they time out, the harder case than refused connections.
    /// moto is frozen (SIGSTOP, so it keeps its tables) for 20 s of a 28 s real-time run: calls
    /// hang until they time out, the harder case than refused connections.
    @Test func dynamoDBFrozenFor20sTheMixGoesOnAndHeartbeatsResume() throws {
        let moto = try CPMoto()
        defer { moto.stop() }
        let show = "outage-show"
        try moto.putShow(show)
        // The looping tone tracklist (12 s tracks) outlasts the 20 s capture: music only.
        try moto.putRouting(show, CPRouting.plain(host: 0, tracklist: 100))
        let logs = CPLogCapture()
        let plane = try moto.plane(showId: show, pollMs: 200, heartbeatS: 1, logger: logs.logger())
        let control = plane.makeShowControl(show: nil)
        try control.start()
        let timed = CPTimedControl(control)
        let dir = Paths.tempDir("cp-outage")
        var o = LocalRunOptions(manifestPath: try ToneShow.manifest(routing: ToneShow.plain, voices: 1, music: true, dir: dir),
                                output: dir + "/out.wav")
        o.realtime = true
        o.duration = 28
        o.control = timed
        let run = CPBackgroundRun(o, logger: logs.logger("mix"))
        let origin = try #require(timed.waitForOrigin())
        func sleep(until t: Double) { let d = origin + t - Date().timeIntervalSince1970; if d > 0 { Thread.sleep(forTimeInterval: d) } }

        sleep(until: 2.5)
        let before = control.stats
        moto.pause()
        let pausedAt = Date().timeIntervalSince1970
        sleep(until: 22.5)
        let during = control.stats
        moto.resume()
        let resumedAt = Date().timeIntervalSince1970
        print("control plane: moto frozen \(String(format: "%.1f", resumedAt - pausedAt)) s; during: \(during.routingPollErrors - before.routingPollErrors) poll errors, \(during.heartbeatErrors - before.heartbeatErrors) heartbeat errors")
        // After the outage, a routing change still gets through.
        let sent = try Self.timedWrites(moto, [(origin + 24.5, Self.setRouting(show, "tracklistVolume = :v", #"{":v": {"N": "50"}}"#))])
        sleep(until: 27)
        let itemLate = try #require(try moto.show(show))
        let report = try run.wait(timeout: 20)
        #expect(control.finish(clean: true))

        #expect(report.outputFrames == 28 * 48000)
        #expect(report.wallSeconds < 29, "the mix was held up: \(report.wallSeconds) s for 28 s")
        // The music (a 0.25 sine, RMS 0.177) at its level through the outage, with no dropout.
        let left = Analysis.left(try WAVFile.read(dir + "/out.wav").samples)
        func rms(_ a: Double, _ b: Double) -> Double { Analysis.rms(left[Int(a * 48000)..<Int(b * 48000)]) }
        for start in stride(from: 0.5, to: 24, by: 0.5) {
            #expect(abs(dbfs(rms(start, start + 0.5)) - dbfs(0.177)) < 1, "music level moved at \(start) s")
        }
        let quietest = stride(from: 0.1, to: 27.9, by: 0.02).map { rms($0, $0 + 0.02) }.min() ?? 0
        #expect(quietest > 0.07, "a dropout: RMS \(quietest) (0.088 after the change to 50)")
        #expect(sent[0] - origin < 25.5)
        #expect(abs(dbfs(rms(26.5, 27.9)) - dbfs(0.177 * 0.5)) < 1, "the routing change after the outage")

        // Errors counted while frozen; heartbeats resumed after.
        #expect(during.routingPollErrors - before.routingPollErrors >= 10, "\(before) → \(during)")
        #expect(during.heartbeatErrors - before.heartbeatErrors >= 5, "\(before) → \(during)")
        #expect(during.heartbeats - before.heartbeats <= 1, "heartbeats landed while moto was frozen")
        let lastBeat = Double(try #require(itemLate["lastHeartbeat"]?.int64Value)) / 1000
        #expect(lastBeat > resumedAt, "no heartbeat after the outage (last \(lastBeat - pausedAt) s after the pause)")
        #expect(itemLate["compositionServiceStatus"] == .s("RUNNING"))
        #expect(logs.count(.warning, containing: "routing poll failed; mixing continues with the last good routing") >= 1)
        #expect(logs.count(.info, containing: "routing poll recovered") == 1, "\(logs.text)")
        #expect(logs.count(.info, containing: "heartbeats resumed") == 1, "\(logs.text)")
    }

    // MARK: - the command line

    @Test func localWithShowIdReadsRoutingAndTracklistAndWritesStatus() throws {
        let moto = try CPMoto()
        defer { moto.stop() }
        let show = "cli-show"
        try moto.putShow(show, extra: ["tracklistId": "tl-cli"])
        try moto.putRouting(show, CPRouting.plain(host: 50, callers: 100, tracklist: 100, onAir: []))
        try moto.boto3("""
            s3.create_bucket(Bucket="tracks")
            s3.put_object(Bucket="tracks", Key="music/one.mp3", Body=open("\(Paths.fixture("tones/music/t1-1500.mp3"))", "rb").read())
            ddb.put_item(TableName="shelcaster-tracklists", Item={"tracklistId": {"S": "tl-cli"}, "tracks": {"L": [
                {"M": {"s3Key": {"S": "music/nope.mp3"}, "title": {"S": "Nope"}}},
                {"M": {"s3Key": {"S": "music/one.mp3"}, "title": {"S": "One"}}}]}})
            """)
        let dir = Paths.tempDir("cp-cli")
        // The manifest has no music and says host 100: what plays comes from the tables.
        let manifest = try ToneShow.manifest(routing: ToneShow.plain, voices: 1, music: false, dir: dir)
        let env: [String: String] = [
            "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin", "HOME": NSTemporaryDirectory(),
            "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": moto.endpoint,
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "TRACKLIST_BUCKET": "tracks", "TASK_ARN": "arn:aws:ecs:task/cli", "HEARTBEAT_INTERVAL_S": "1", "ROUTING_POLL_MS": "200",
        ]
        func composer(_ extra: [String: String?] = [:], show id: String = show) throws -> RunResult {
            var e = env
            for (k, v) in extra { e[k] = v }
            return try runProcess(Paths.composer, ["local", manifest, "--output", dir + "/out.wav", "--duration", "3", "--show-id", id],
                                  timeout: 60, environment: e)
        }

        let ok = try composer()
        #expect(ok.status == 0, "\(ok.stderr)")
        #expect(ok.stdout.contains("tracklist: 1 track(s) started"), "\(ok.stdout)")
        #expect(ok.stderr.contains("music/nope.mp3: not found in S3"), "\(ok.stderr)")
        let left = Analysis.left(try WAVFile.read(dir + "/out.wav").samples)
        #expect(abs(level(left, hz: 350, from: 0.5, to: 2.9) - dbfs(ToneShow.amplitude * 0.5)) < 1, "hostVolume 50 from the table")
        #expect(abs(level(left, hz: 1500, from: 1, to: 2.9) - (-12.49)) < 1.5, "the S3 track plays")
        let item = try #require(try moto.show(show))
        #expect(item["compositionServiceStatus"] == .s("STOPPED") && item["status"] == .s("STOPPED"))
        #expect(item["compositionServiceTaskArn"] == .s("arn:aws:ecs:task/cli"))
        #expect(item["metrics"]?["currentTrack"]?["title"] == .s("One"))

        // Bad configuration: exit 2 naming the variable.
        for (extra, variable) in [(["ROUTING_POLL_MS": "abc"], "ROUTING_POLL_MS"), (["AWS_REGION": nil], "AWS_REGION"),
                                  (["AWS_SECRET_ACCESS_KEY": nil], "AWS_SECRET_ACCESS_KEY"),
                                  (["TRACKLIST_ID": "no-such-list"], "TRACKLIST_ID")] as [([String: String?], String)] {
            let r = try composer(extra)
            #expect(r.status == 2 && r.stderr.contains(variable), "\(variable): exit \(r.status): \(r.stderr)")
        }
        let unknown = try composer(show: "no-such-show")
        #expect(unknown.status == 2 && unknown.stderr.contains("SHOW_ID") && unknown.stderr.contains("no-such-show"), "\(unknown.stderr)")
        // AWS unreachable at start: exit 1 with a message saying what could not be done.
        let down = try composer(["AWS_ENDPOINT_URL": "http://127.0.0.1:\(HTTPTestKit.closedPort())"])
        #expect(down.status == 1 && down.stderr.contains("cannot read show cli-show"), "\(down.stderr)")
        // Another task holds the show: exit 1, and its claim stands.
        try moto.dynamo.updateItem(table: "shelcaster-active-shows", key: ["showId": .s(show)],
                                   updateExpression: "SET compositionServiceTaskArn = :o", values: [":o": .s("arn:other")])
        let fenced = try composer()
        #expect(fenced.status == 1 && fenced.stderr.contains("already served by task arn:other"), "\(fenced.stderr)")
        #expect(try moto.show(show)?["compositionServiceTaskArn"] == .s("arn:other"))

        // Taken over in the middle of a real-time run: the command stops itself, exit 1.
        try moto.dynamo.updateItem(table: "shelcaster-active-shows", key: ["showId": .s(show)],
                                   updateExpression: "REMOVE compositionServiceTaskArn")
        final class Box: @unchecked Sendable { var result: RunResult? }
        let box = Box(), done = DispatchSemaphore(value: 0)
        let started = Date()
        Thread {
            box.result = try? runProcess(Paths.composer, ["local", manifest, "--output", dir + "/rt.wav", "--duration", "10",
                                                          "--realtime", "--show-id", show], timeout: 60, environment: env)
            done.signal()
        }.start()
        #expect(Self.waitFor(15) { (try? moto.show(show))?["compositionServiceStatus"] == .s("RUNNING") })
        try moto.dynamo.updateItem(table: "shelcaster-active-shows", key: ["showId": .s(show)],
                                   updateExpression: "SET compositionServiceTaskArn = :o", values: [":o": .s("arn:next")])
        let takenOver = Date()
        #expect(done.wait(timeout: .now() + 30) == .success)
        let r = try #require(box.result)
        #expect(r.status == 1 && r.stderr.contains("fenced out by task arn:next"), "\(r.stderr)")
        #expect(Date().timeIntervalSince(takenOver) < 3, "took \(Date().timeIntervalSince(takenOver)) s to stop (heartbeat 1 s)")
        #expect(Date().timeIntervalSince(started) < 9, "ran on after being fenced out")
        #expect(try moto.show(show)?["compositionServiceTaskArn"] == .s("arn:next"))
    }
}
