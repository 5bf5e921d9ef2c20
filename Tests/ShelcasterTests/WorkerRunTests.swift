import DynamoDB
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `shelcaster-composer run`, the ECS task, as a real process: configured only by its environment,
/// against moto (DynamoDB + S3), the local stage (aiortc, three tone publishers) and nginx-rtmp.
/// Serialized: every test mixes in real time and the timing checks want the CPU.
@Suite("Worker run: the ECS task", .serialized,
       .enabled(if: WorkerRunKit.unavailableReason == nil, "needs python3 + aiortc, nginx-rtmp, moto_server, ffmpeg"))
struct WorkerRunTests {
    static func now() -> Double { Date().timeIntervalSince1970 }
    static func sleep(until t: Double) {
        let d = t - now()
        if d > 0 { Thread.sleep(forTimeInterval: d) }
    }
    static func f(_ v: Double) -> String { String(format: "%.2f", v) }

    /// Starts the worker and waits for LIVE + RUNNING and the three voices in /status; returns the
    /// worker and the epoch of program time 0.
    static func startLive(_ rig: WorkerRig) throws -> (WorkerProcess, Double) {
        let worker = try rig.startWorker()
        let live = rig.waitForShow(timeout: 30) { $0.str("status") == "LIVE" && $0.str("compositionServiceStatus") == "RUNNING" }
        try #require(live != nil, "the show never went LIVE/RUNNING: \(rig.showItem().map { "\($0)" } ?? "no item")\n\(worker.output.suffix(4000))")
        let origin = try #require(worker.programOrigin(), "/status never advanced: \(worker.output.suffix(2000))")
        let deadline = now() + 15
        while (worker.status()?["participants"] as? Int ?? 0) < 3 && now() < deadline { Thread.sleep(forTimeInterval: 0.1) }
        try #require(worker.status()?["participants"] as? Int == 3, "not all three voices joined: \(worker.output.suffix(3000))")
        return (worker, origin)
    }

    /// The worker output and the given texts never hold a secret.
    static func expectNoLeaks(_ rig: WorkerRig, _ texts: [String], _ context: String) {
        let leaked = WorkerRunKit.leaked(rig.secrets, in: texts)
        #expect(leaked.isEmpty, "\(context): \(leaked.count) secret(s) printed")
    }

    // MARK: - 1. end to end

    @Test("run: LIVE + RUNNING, heartbeats with metrics, health endpoints, every on-air voice and the S3 music at the routing's level, a live routing change heard")
    func endToEnd() throws {
        let rig = try WorkerRig(name: "run-e2e", routing: WorkerRouting.item, music: true)
        defer { rig.stop() }
        let sampler = CPShowSampler(moto: rig.moto, showId: rig.showId, interval: 0.25)
        let (worker, origin) = try Self.startLive(rig)

        Self.sleep(until: origin + 6)
        let healthz = worker.get("/healthz"), readyz = worker.get("/readyz"), metrics = worker.get("/metrics")
        let status = try #require(worker.status(), "no /status")
        let statusBody = worker.get("/status")?.body ?? ""

        // hostVolume 100 → 25 in the table, mid-show.
        let changeAt = Self.now() - origin
        try rig.setRouting("hostVolume = :v", [":v": 25])
        Self.sleep(until: origin + changeAt + 4.5)
        let statusLater = worker.status()
        let heartbeatItem = rig.showItem()
        worker.signal(SIGTERM)
        let code = worker.waitExit(timeout: 15)
        let samples = sampler.stop()
        let output = worker.output
        #expect(code == 0, "exit \(String(describing: code)): \(output.suffix(3000))")

        // Health endpoints.
        #expect(healthz?.status == 200 && healthz?.body == "ok\n", "/healthz \(String(describing: healthz))")
        #expect(readyz?.status == 200, "/readyz \(String(describing: readyz))")
        #expect(status["participants"] as? Int == 3 && status["onAir"] as? Int == 3, "/status \(status)")
        #expect((status["output"] as? [String: Any])?["state"] as? String == "CONNECTED", "/status \(status)")
        let roles = Dictionary(uniqueKeysWithValues: (status["voices"] as? [[String: Any]] ?? []).compactMap { v -> (String, String)? in
            guard let id = v["participantId"] as? String, let role = v["role"] as? String else { return nil }
            return (id, role)
        })
        #expect(roles == ["host": "HOST", "caller-1": "CALLER", "caller-2": "CALLER"], "roles \(roles)")
        #expect((status["currentTrack"] as? [String: Any])?["title"] as? String == "Bed", "/status currentTrack: \(status)")
        let p1 = status["programSeconds"] as? Double ?? -1, p2 = statusLater?["programSeconds"] as? Double ?? -1
        #expect(p1 >= 5 && p2 - p1 >= 3.5 && p2 - p1 <= 5.5, "programSeconds \(p1) then \(p2), 4.5 s later")
        let metricsText = metrics?.body ?? ""
        #expect(metrics?.status == 200 && metricsText.contains("shelcaster_participants 3.0")
                && metricsText.contains("shelcaster_output_connected 1.0"), "/metrics:\n\(metricsText.prefix(1500))")

        // The show item: LIVE, RUNNING, fenced on our ARN, heartbeats about once a second with metrics.
        let running = samples.filter { $0.item.str("compositionServiceStatus") == "RUNNING" }
        #expect(samples.allSatisfy { !["ERROR", "DEGRADED"].contains($0.item.str("compositionServiceStatus") ?? "") })
        let hb = try #require(heartbeatItem)
        #expect(hb.str("status") == "LIVE" && hb.str("compositionServiceStatus") == "RUNNING", "\(hb)")
        #expect(hb.str("compositionServiceTaskArn") == WorkerRunKit.taskArn)
        let m = hb.metricsMap
        #expect(m["participants"]?.intValue == 3 && m["onAir"]?.intValue == 3, "metrics \(m)")
        #expect(m["outputState"]?.stringValue == "CONNECTED" && (m["outputKbps"]?.doubleValue ?? 0) > 100, "metrics \(m)")
        #expect(Set(m["levels"]?.mapValue?.keys.map { $0 } ?? []) == ["host", "caller-1", "caller-2"], "levels \(String(describing: m["levels"]))")
        #expect(m["currentTrack"]?.mapValue?["title"]?.stringValue == "Bed")
        let beats = Array(Set(running.compactMap { $0.item["lastHeartbeat"]?.int64Value })).sorted()
        let gaps = zip(beats, beats.dropFirst()).map { Double($1 - $0) / 1000 }
        let meanGap = gaps.isEmpty ? 99 : gaps.reduce(0, +) / Double(gaps.count)
        #expect(beats.count >= 8 && meanGap > 0.7 && meanGap < 1.4 && (gaps.max() ?? 99) < 2.5,
                "\(beats.count) heartbeats, gaps \(gaps.map(Self.f))")

        // The recording at the ingest: every on-air voice and the music at the routing's level,
        // then the host at 25 % after the table changed.
        let decoded = try decodeToWAV(rig.recording)
        let x = Analysis.left(decoded.samples)
        let end = Double(x.count) / 48_000
        #expect(end > changeAt + 4, "recording \(Self.f(end)) s")
        var report: [String] = []
        for (before, after) in zip(WorkerRouting.expected(host: 100), WorkerRouting.expected(host: 25)) {
            let b = StageTest.level(x, hz: before.hz, from: 2, to: changeAt - 0.3)
            let a = StageTest.level(x, hz: after.hz, from: changeAt + 1.2, to: min(end - 0.3, changeAt + 4))
            report.append("\(before.id) \(Self.f(b))→\(Self.f(a)) (want \(Self.f(before.dbfs))→\(Self.f(after.dbfs)))")
            #expect(abs(b - before.dbfs) <= 1, "\(before.id) before the change: \(Self.f(b)) dBFS, routing implies \(Self.f(before.dbfs))")
            #expect(abs(a - after.dbfs) <= 1, "\(after.id) after the change: \(Self.f(a)) dBFS, routing implies \(Self.f(after.dbfs))")
        }
        let full = WorkerRouting.db(0.25)
        let heard = CPAudio.firstTime(x, hz: 350, from: changeAt - 0.2, to: changeAt + 2) { $0 < full - 3 }
        #expect(heard.map { $0 - changeAt <= 1.0 } == true, "host change heard \(heard.map { Self.f($0 - changeAt) } ?? "never") s after the write")
        Self.expectNoLeaks(rig, [output, statusBody, metricsText], "end to end")
        print("[worker run] e2e: \(report.joined(separator: ", ")); change heard \(heard.map { Self.f($0 - changeAt) } ?? "-") s after the write; "
              + "\(beats.count) heartbeats, mean gap \(Self.f(meanGap)) s; recording \(Self.f(end)) s")
    }

    // MARK: - 2. SIGTERM

    @Test("SIGTERM: exit 0 within 10 s, STOPPED written, every subscription deleted, the recording closed whole")
    func sigtermStopsGracefully() throws {
        let rig = try WorkerRig(name: "run-term", routing: WorkerRouting.item, music: false)
        defer { rig.stop() }
        let (worker, origin) = try Self.startLive(rig)
        // Meaningful only if the signal can arrive: the worker must not block it.
        let blocked = try #require(worker.blockedSignals)
        #expect(blocked & (1 << UInt64(SIGTERM - 1)) == 0 && blocked & (1 << UInt64(SIGINT - 1)) == 0,
                "SigBlk \(String(blocked, radix: 16))")

        Self.sleep(until: origin + 6)
        let termAt = Self.now() - origin
        worker.signal(SIGTERM)
        let t0 = Self.now()
        let code = worker.waitExit(timeout: 20)
        let took = Self.now() - t0
        let output = worker.output
        #expect(code == 0, "exit \(String(describing: code)): \(output.suffix(3000))")
        #expect(took < 10, "exited \(Self.f(took)) s after SIGTERM")
        #expect(output.contains("asked to stop (SIGTERM)"), "\(output.suffix(2000))")

        let item = try #require(rig.showItem())
        #expect(item.str("compositionServiceStatus") == "STOPPED" && item.str("status") == "STOPPED", "\(item)")
        #expect(item.str("compositionServiceTaskArn") == WorkerRunKit.taskArn && item["errorMessage"] == nil)

        // The stage saw every subscription deleted (unsubscribed, not dropped).
        let deletes = try rig.stage.events("delete")
        #expect(deletes.count == 3 && deletes.allSatisfy { $0["status"] as? Int == 204 }, "DELETEs \(deletes)")

        // The recording: whole FLV, AAC + H.264, as long as the program was, decodes to the end.
        let rec = rig.recording
        let whole = WorkerRunKit.flvIsWhole(rec)
        #expect(whole.whole, "FLV not whole: \(whole.why)")
        let probe = try Probe.run(rec)
        #expect(Set(probe.streams.map(\.codec)) == ["aac", "h264"], "\(probe.streams)")
        #expect(abs(probe.duration - termAt) < 1.0, "ffprobe duration \(Self.f(probe.duration)) s, program at SIGTERM \(Self.f(termAt)) s")
        let ffmpeg = try #require(Paths.which("ffmpeg"))
        let check = try runProcess(ffmpeg, ["-v", "error", "-i", rec, "-f", "null", "-"])
        #expect(check.status == 0 && check.stderr.isEmpty, "decoding reported: \(check.stderr.prefix(1000))")
        let x = Analysis.left(try decodeToWAV(rec).samples)
        let end = Double(x.count) / 48_000
        #expect(abs(end - probe.duration) < 0.2, "decoded \(Self.f(end)) s of \(Self.f(probe.duration)) s")
        // The program's last second reached the ingest: the host tone is there to the end.
        let tail = StageTest.level(x, hz: 350, from: end - 1.0, to: end - 0.1)
        #expect(abs(tail - WorkerRouting.db(0.25)) <= 1, "host in the last second: \(Self.f(tail)) dBFS")
        Self.expectNoLeaks(rig, [output], "SIGTERM")
        print("[worker run] SIGTERM at program \(Self.f(termAt)) s: exit \(code ?? -1) after \(Self.f(took)) s; recording \(Self.f(probe.duration)) s, "
              + "\(whole.tags) FLV tags, host in the last second \(Self.f(tail)) dBFS")
    }

    /// ECS may stop a task that is still starting. Killed there by the default action of SIGTERM,
    /// the worker would leave the show STARTING and claimed by its ARN, fencing out the next task.
    @Test("SIGTERM while starting (show claimed, stage not joined yet): exit 0 and STOPPED, the show not left claimed")
    func sigtermDuringStartup() throws {
        let rig = try WorkerRig(name: "run-term-early", routing: WorkerRouting.item, music: true)
        defer { rig.stop() }
        let worker = try rig.startWorker()
        // The claim is the first write (STARTING + our ARN); the stage is joined a moment later.
        let deadline = Self.now() + 20
        var claimed = false
        while !claimed && Self.now() < deadline && worker.isRunning {
            claimed = rig.showItem()?.str("compositionServiceTaskArn") == WorkerRunKit.taskArn
            if !claimed { Thread.sleep(forTimeInterval: 0.005) }
        }
        try #require(claimed, "never claimed: \(worker.output.suffix(2000))")
        let joinedBefore = worker.output.contains("joining stage")
        worker.signal(SIGTERM)
        let t0 = Self.now()
        let code = worker.waitExit(timeout: 20)
        let took = Self.now() - t0
        let output = worker.output
        #expect(code == 0, "exit \(String(describing: code)) after \(Self.f(took)) s: \(output.suffix(3000))")
        #expect(took < 10, "exited \(Self.f(took)) s after SIGTERM")
        let item = try #require(rig.showItem())
        #expect(item.str("compositionServiceStatus") == "STOPPED" && item.str("status") == "STOPPED", "\(item)")
        Self.expectNoLeaks(rig, [output], "SIGTERM while starting")
        print("[worker run] SIGTERM while starting (stage joined before: \(joinedBefore)): exit \(code ?? -1) after \(Self.f(took)) s, "
              + "compositionServiceStatus \(item.str("compositionServiceStatus") ?? "-")")
    }

    /// The first track is fetched before program time 0 (up to 30 s). A SIGTERM meanwhile must not
    /// wait for it: S3 here is a port that accepts connections and never answers.
    @Test("SIGTERM while the first track is still downloading: exit 0 within 3 s and STOPPED")
    func sigtermWhileTheFirstTrackDownloads() throws {
        let rig = try WorkerRig(name: "run-term-s3", routing: WorkerRouting.item, music: true)
        defer { rig.stop() }
        let blackhole = try WorkerBlackhole()
        defer { blackhole.close() }
        let worker = try rig.startWorker(["AWS_ENDPOINT_URL_S3": "http://127.0.0.1:\(blackhole.port)"])
        let claimed = rig.waitForShow(timeout: 20) { $0.str("compositionServiceTaskArn") == WorkerRunKit.taskArn }
        try #require(claimed != nil, "never claimed: \(worker.output.suffix(2000))")
        Thread.sleep(forTimeInterval: 1.5)
        // Still waiting for the track: the stage has not been joined.
        try #require(worker.isRunning && !worker.output.contains("joining stage"), "not waiting for the track: \(worker.output.suffix(2000))")
        worker.signal(SIGTERM)
        let t0 = Self.now()
        let code = worker.waitExit(timeout: 40)
        let took = Self.now() - t0
        let output = worker.output
        #expect(code == 0, "exit \(String(describing: code)) after \(Self.f(took)) s: \(output.suffix(3000))")
        #expect(took < 3, "exited \(Self.f(took)) s after SIGTERM")
        let item = try #require(rig.showItem())
        #expect(item.str("compositionServiceStatus") == "STOPPED" && item.str("status") == "STOPPED", "\(item)")
        Self.expectNoLeaks(rig, [output], "SIGTERM while downloading")
        print("[worker run] SIGTERM while the first track downloads: exit \(code ?? -1) after \(Self.f(took)) s")
    }

    // MARK: - 3. bad configuration

    /// Runs `run` with `extra` over an environment whose every peer is a closed port.
    static func runBadConfig(_ name: String, _ extra: [String: String]) throws -> (code: Int32?, output: String, secrets: [String]) {
        let dir = Paths.tempDir(name)
        let closed = freeLoopbackPort()
        let token = try WorkerRunKit.offlineToken(dir: dir, eventsURL: "ws://127.0.0.1:\(closed)", whipURL: "http://127.0.0.1:\(closed)")
        let key = WorkerRunKit.streamKey()
        let port = freeLoopbackPort()
        let env = WorkerRunKit.environment(showId: "show-\(name)", token: token, eventsURL: "ws://127.0.0.1:\(closed)",
                                           whipURL: "http://127.0.0.1:\(closed)", ingestPort: closed, streamKey: key,
                                           awsEndpoint: "http://127.0.0.1:\(closed)", healthPort: port, extra: extra)
        let w = try WorkerProcess(environment: env, healthPort: port, dir: dir)
        defer { w.kill() }
        let code = w.waitExit(timeout: 20)
        return (code, w.output, [token, key, WorkerRunKit.secretKey])
    }

    @Test("no SHOW_ID: exit 2 naming SHOW_ID, no secret printed")
    func missingShowId() throws {
        let r = try Self.runBadConfig("run-noshow", ["SHOW_ID": ""])
        #expect(r.code == 2, "exit \(String(describing: r.code)): \(r.output)")
        #expect(r.output.contains("SHOW_ID"), "\(r.output)")
        #expect(WorkerRunKit.leaked(r.secrets, in: [r.output]).isEmpty, "a secret was printed: \(r.output)")
    }

    @Test("INGEST_URL ftp://x: exit 2 naming INGEST_URL, the stream key not printed")
    func badIngestURL() throws {
        let r = try Self.runBadConfig("run-badingest", ["INGEST_URL": "ftp://x"])
        #expect(r.code == 2, "exit \(String(describing: r.code)): \(r.output)")
        #expect(r.output.contains("INGEST_URL") && r.output.contains("ftp"), "\(r.output)")
        #expect(WorkerRunKit.leaked(r.secrets, in: [r.output]).isEmpty, "a secret was printed: \(r.output)")
    }

    @Test("unreachable stage: exit 1 with a clear message, ERROR + errorMessage written, no secret printed")
    func unreachableStage() throws {
        let moto = try CPMoto()
        defer { moto.stop() }
        let dir = Paths.tempDir("run-nostage")
        let show = "show-run-nostage"
        try moto.putShow(show)
        let closed = freeLoopbackPort()
        let events = "ws://127.0.0.1:\(closed)", whip = "http://127.0.0.1:\(closed)"
        let token = try WorkerRunKit.offlineToken(dir: dir, eventsURL: events, whipURL: whip)
        let key = WorkerRunKit.streamKey()
        let port = freeLoopbackPort()
        let env = WorkerRunKit.environment(showId: show, token: token, eventsURL: events, whipURL: whip, ingestPort: freeLoopbackPort(),
                                           streamKey: key, awsEndpoint: moto.endpoint, healthPort: port)
        let w = try WorkerProcess(environment: env, healthPort: port, dir: dir)
        defer { w.kill() }
        let t0 = Self.now()
        let code = w.waitExit(timeout: 60)
        let took = Self.now() - t0
        let output = w.output
        #expect(code == 1, "exit \(String(describing: code)) after \(Self.f(took)) s: \(output.suffix(3000))")
        #expect(output.contains("stage's events endpoint is unreachable") && output.contains("127.0.0.1:\(closed)"), "\(output.suffix(3000))")
        let item = try #require(try moto.show(show))
        #expect(item.str("compositionServiceStatus") == "ERROR" && item.str("status") == "ERROR", "\(item)")
        let message = item.str("errorMessage") ?? ""
        #expect(message.contains("unreachable"), "errorMessage \"\(message)\"")
        #expect(WorkerRunKit.leaked([token, key, WorkerRunKit.secretKey], in: [output, message]).isEmpty, "a secret was printed")
        print("[worker run] unreachable stage: exit \(code ?? -1) after \(Self.f(took)) s, errorMessage \"\(message)\"")
    }

    // MARK: - 4. ingest outages

    struct OutageRun {
        var killAt: Double
        var backAt: Double
        /// Seconds from the ingest listening again to the first bytes of the new recording.
        var firstBytes: Double?
        var samples: [CPShowSampler.Sample]
        var healthzDuring: [Int]
        var readyzDuring: [Int]
        var aliveDuring: Bool
        var exitCode: Int32?
        var output: String
        var secondRecordingGrew: Bool
        /// The show item after the worker exited.
        var finalItem: DynamoItem?
    }

    /// Runs the show, kills the ingest (SIGKILL) for `outage` s, restarts it on the same port,
    /// runs `after` s more, then SIGTERM.
    static func runWithOutage(_ rig: WorkerRig, outage: Double, after: Double) throws -> OutageRun {
        let sampler = CPShowSampler(moto: rig.moto, showId: rig.showId, interval: 0.25)
        let (worker, origin) = try startLive(rig)
        sleep(until: origin + 4)
        let killAt = now()
        rig.ingest.killNow()
        var healthz: [Int] = [], readyz: [Int] = []
        var alive = true
        while now() < killAt + outage {
            alive = alive && worker.isRunning
            if now() > killAt + 1 {
                healthz.append(worker.get("/healthz")?.status ?? 0)
                readyz.append(worker.get("/readyz")?.status ?? 0)
            }
            Thread.sleep(forTimeInterval: 0.5)
        }
        try rig.ingest.restart()
        let backAt = now()
        var firstBytes: Double?
        while now() < backAt + 10 && firstBytes == nil {
            if WorkerRunKit.fileSize(rig.recording) > 13 { firstBytes = now() - backAt }
            Thread.sleep(forTimeInterval: 0.02)
        }
        let sizeThen = WorkerRunKit.fileSize(rig.recording)
        sleep(until: backAt + after)
        let grew = WorkerRunKit.fileSize(rig.recording) > sizeThen + 20_000
        alive = alive && worker.isRunning
        worker.signal(SIGTERM)
        let code = worker.waitExit(timeout: 15)
        return OutageRun(killAt: killAt, backAt: backAt, firstBytes: firstBytes, samples: sampler.stop(), healthzDuring: healthz,
                         readyzDuring: readyz, aliveDuring: alive, exitCode: code, output: worker.output, secondRecordingGrew: grew,
                         finalItem: rig.showItem())
    }

    /// Both recordings (before the kill, after the restart) decode and hold the host at its level.
    static func expectRecordingsHoldTheShow(_ rig: WorkerRig) throws {
        for run in [0, 1] {
            let rec = rig.recording(run: run)
            let x = Analysis.left(try decodeToWAV(rec).samples)
            let end = Double(x.count) / 48_000
            #expect(end > 2.5, "recording \(run): \(Self.f(end)) s")
            let host = StageTest.level(x, hz: 350, from: 0.5, to: end - 0.3)
            #expect(abs(host - WorkerRouting.db(0.25)) <= 1, "recording \(run): host at \(Self.f(host)) dBFS")
        }
    }

    @Test("ingest down 15 s: RUNNING throughout (not DEGRADED), heartbeats go on, no crash, the stream resumes within 3 s")
    func shortIngestOutage() throws {
        let rig = try WorkerRig(name: "run-outage15", routing: WorkerRouting.item, music: false)
        defer { rig.stop() }
        let outage = 15.0
        let r = try Self.runWithOutage(rig, outage: outage, after: 5)
        #expect(r.exitCode == 0, "exit \(String(describing: r.exitCode)): \(r.output.suffix(3000))")
        #expect(r.aliveDuring, "the worker died during the outage: \(r.output.suffix(3000))")
        let back = try #require(r.firstBytes, "nothing reached the ingest after it came back: \(r.output.suffix(3000))")
        #expect(back <= 3, "the stream resumed \(Self.f(back)) s after the ingest returned")
        #expect(r.secondRecordingGrew, "the second recording did not keep growing")

        let during = r.samples.filter { $0.at > r.killAt && $0.at < r.backAt + back }
        let states = Set(during.compactMap { $0.item.str("compositionServiceStatus") })
        #expect(!during.isEmpty && states == ["RUNNING"], "compositionServiceStatus during the outage: \(states)")
        let outputStates = during.compactMap { $0.item.metricsMap["outputState"]?.stringValue }
        #expect(outputStates.contains("RECONNECTING") && outputStates.contains("DOWN"), "outputState during the outage: \(Set(outputStates))")
        let maxDown = during.compactMap { $0.item.metricsMap["outputDownSeconds"]?.doubleValue }.max() ?? 0
        #expect(maxDown > outage - 3 && maxDown < outage + 2, "longest outputDownSeconds \(maxDown)")
        let beats = Set(during.compactMap { $0.item["lastHeartbeat"]?.int64Value })
        #expect(Double(beats.count) >= outage - 3, "\(beats.count) heartbeats during the \(outage) s outage")
        #expect(r.healthzDuring.allSatisfy { $0 == 200 }, "/healthz during the outage: \(r.healthzDuring)")
        #expect(r.readyzDuring.allSatisfy { $0 == 503 }, "/readyz during the outage: \(r.readyzDuring)")
        let after = r.samples.filter { $0.at > r.backAt + back + 2.5 }
        #expect(after.contains { $0.item.str("compositionServiceStatus") == "RUNNING" && $0.item.metricsMap["outputState"]?.stringValue == "CONNECTED" },
                "not CONNECTED again after the return")
        #expect(r.samples.allSatisfy { $0.item.str("status") != "ERROR" })
        #expect(r.finalItem?.str("compositionServiceStatus") == "STOPPED" && r.finalItem?.str("status") == "STOPPED")
        try Self.expectRecordingsHoldTheShow(rig)
        Self.expectNoLeaks(rig, [r.output], "15 s outage")
        print("[worker run] 15 s outage: stream back \(Self.f(back)) s after the ingest, states \(states), outputState \(Set(outputStates)), "
              + "max outputDownSeconds \(maxDown), \(beats.count) heartbeats meanwhile")
    }

    @Test("ingest down 35 s: DEGRADED after 30 s (+ ≤ 2 heartbeat/status periods), RUNNING again once the stream is back")
    func longIngestOutage() throws {
        let rig = try WorkerRig(name: "run-outage35", routing: WorkerRouting.item, music: false)
        defer { rig.stop() }
        let outage = 35.0
        let r = try Self.runWithOutage(rig, outage: outage, after: 6)
        #expect(r.exitCode == 0, "exit \(String(describing: r.exitCode)): \(r.output.suffix(3000))")
        #expect(r.aliveDuring)
        let back = try #require(r.firstBytes, "nothing reached the ingest after it came back")
        #expect(back <= 3, "the stream resumed \(Self.f(back)) s after the ingest returned")

        func css(_ s: CPShowSampler.Sample) -> String { s.item.str("compositionServiceStatus") ?? "" }
        let degraded = r.samples.filter { css($0) == "DEGRADED" }
        let first = try #require(degraded.first, "never DEGRADED: \(Set(r.samples.map(css)))")
        let degradedAfter = first.at - r.killAt
        #expect(degradedAfter >= 29.5 && degradedAfter <= 34, "DEGRADED \(Self.f(degradedAfter)) s into the outage")
        #expect(r.samples.filter { $0.at > r.killAt && $0.at < first.at }.allSatisfy { css($0) == "RUNNING" })
        let recovered = r.samples.first { $0.at > r.backAt && css($0) == "RUNNING" }
        let recoveredAfter = (recovered?.at ?? 99) - r.backAt
        #expect(recoveredAfter <= back + 3, "RUNNING again \(Self.f(recoveredAfter)) s after the ingest returned")
        if let rec = recovered {
            #expect(r.samples.filter { $0.at > rec.at }.allSatisfy { css($0) == "RUNNING" || css($0) == "STOPPING" || css($0) == "STOPPED" },
                    "DEGRADED again after recovering")
        }
        #expect(r.finalItem?.str("compositionServiceStatus") == "STOPPED" && r.finalItem?.str("status") == "STOPPED",
                "after SIGTERM: \(r.finalItem.map { "\($0)" } ?? "no item")")
        try Self.expectRecordingsHoldTheShow(rig)
        Self.expectNoLeaks(rig, [r.output], "35 s outage")
        print("[worker run] 35 s outage: DEGRADED \(Self.f(degradedAfter)) s in, stream back \(Self.f(back)) s and RUNNING \(Self.f(recoveredAfter)) s after the ingest returned")
    }
}
