import Foundation
import HTTPClient
import Logging
import StageMedia
import Testing
@testable import StageClient

/// `join` against the local stage (stage/localstage.py, a real aiortc WebRTC peer) on loopback.
/// Serialized: each test runs the stage and a real-time join, and timing checks want the CPU.
@Suite(.serialized, .enabled(if: LocalStage.unavailableReason == nil, "the local stage needs python3 + aiortc"))
struct StageClientStageTests {
    let toneIds = ["host", "caller-1", "caller-2"]

    /// Levels of the fixture tones in [from, to] s of `out`, each within ±1 dB of what the routing implies.
    func expectRoutedLevels(_ x: [Float], ids: [String], from: Double, to: Double, _ context: String) {
        for id in ids {
            guard let hz = StageFixture.tones[id], let want = StageFixture.expected[id] else { continue }
            let got = StageTest.level(x, hz: hz, from: from, to: to)
            #expect(abs(got - want) <= 1, "\(context): \(id) at \(String(format: "%.2f", got)) dBFS, routing implies \(String(format: "%.2f", want))")
        }
    }

    func allSubscriptions(_ stage: LocalStage) throws -> [[String: Any]] {
        let st = try stage.state()
        return (st["subscriptions"] as? [[String: Any]] ?? []) + (st["endedSubscriptions"] as? [[String: Any]] ?? [])
    }

    /// Runs a join like `runJoin` on a background thread, so the test can poke the stage meanwhile.
    final class BackgroundJoin: @unchecked Sendable {
        private let done = DispatchSemaphore(value: 0)
        private(set) var result: Result<RunResult, Error>?
        init(token: String, output: String, duration: Double, extra: [String]) {
            Thread.detachNewThread { [self] in
                result = Result { try StageTest.runJoin(token: token, output: output, duration: duration, extra: extra) }
                done.signal()
            }
        }
        func wait(_ seconds: Double) throws -> RunResult {
            guard done.wait(timeout: .now() + seconds) == .success, let result else { throw PeerError("join did not finish in \(seconds) s") }
            return try result.get()
        }
    }

    func waitForStageTime(_ stage: LocalStage, _ t: Double) throws {
        let deadline = Date().addingTimeInterval(t + 10)
        while try stage.now() < t {
            guard Date() < deadline else { throw PeerError("stage time \(t) never came") }
            Thread.sleep(forTimeInterval: 0.05)
        }
    }

    // MARK: - three tones, DTLS both ways, behind a 307

    @Test func threeTonesAtRoutedLevelsStageActive() throws {
        let stage = try LocalStage(participants: [StageFixture.host, StageFixture.caller1, StageFixture.caller2, StageFixture.virtual],
                                   args: ["--send-unknown"])
        defer { stage.stop() }
        let dir = Paths.tempDir("join-active")
        let token = try stage.token()
        let r = try StageTest.runJoin(token: token, output: dir + "/out.wav", duration: 6,
                                      extra: ["--routing", try StageFixture.writeRouting(in: dir)])
        #expect(r.status == 0, "join failed: \(r.stderr.suffix(3000))")
        #expect(!StageTest.leaks(token, in: [r.stdout, r.stderr]), "the token leaked into the output")
        let x = try StageTest.left(dir + "/out.wav")
        #expect(abs(x.count - 6 * 48_000) <= 960, "program length \(x.count) frames")
        expectRoutedLevels(x, ids: toneIds, from: 1.5, to: 5.9, "stage active")

        let subs = try allSubscriptions(stage)
        #expect(Set(subs.compactMap { $0["participantId"] as? String }) == Set(toneIds),
                "subscribed to exactly the publishing non-virtual others (never vp-2, never ourselves)")
        #expect(subs.count == 3 && subs.allSatisfy { $0["dtlsRole"] as? String == "client" }, "setup:active: the stage is the DTLS client")
        let deletes = try stage.events("delete")
        #expect(deletes.count == 3 && deletes.allSatisfy { $0["status"] as? Int == 204 }, "every subscription DELETEd at the end: \(deletes)")
        #expect(try stage.events("ping", participant: "worker-1").count >= 1, "PING sent on the events socket")
        #expect(r.stdout.contains("host (HOST)") && r.stdout.contains("caller-2 (CALLER)") && !r.stdout.contains("vp-2"))
        #expect(r.stdout.contains("0 malformed message(s)"), "an unknown message type is ignored, not malformed: \(r.stdout)")
    }

    /// Also: Opus frames of 60 and 10 ms (the decoder must not assume 20 ms).
    @Test func threeTonesAtRoutedLevelsStagePassiveIceLite() throws {
        var caller1 = StageFixture.caller1, caller2 = StageFixture.caller2
        caller1["frameMs"] = 60
        caller2["frameMs"] = 10
        let stage = try LocalStage(participants: [StageFixture.host, caller1, caller2],
                                   args: ["--dtls-role", "passive", "--ice-lite"])
        defer { stage.stop() }
        let dir = Paths.tempDir("join-passive")
        let token = try stage.token()
        let r = try StageTest.runJoin(token: token, output: dir + "/out.wav", duration: 6,
                                      extra: ["--routing", try StageFixture.writeRouting(in: dir)])
        #expect(r.status == 0, "join failed: \(r.stderr.suffix(3000))")
        #expect(!StageTest.leaks(token, in: [r.stdout, r.stderr]))
        expectRoutedLevels(try StageTest.left(dir + "/out.wav"), ids: toneIds, from: 1.5, to: 5.9, "stage passive")
        let subs = try allSubscriptions(stage)
        #expect(subs.count == 3 && subs.allSatisfy { $0["dtlsRole"] as? String == "server" }, "setup:passive: we are the DTLS client")
    }

    @Test func threeTonesBehindA307() throws {
        let stage = try LocalStage(participants: [StageFixture.host, StageFixture.caller1, StageFixture.caller2],
                                   args: ["--redirect", "always", "--redirect-relative"])
        defer { stage.stop() }
        let dir = Paths.tempDir("join-307")
        let token = try stage.token()
        let r = try StageTest.runJoin(token: token, output: dir + "/out.wav", duration: 6,
                                      extra: ["--routing", try StageFixture.writeRouting(in: dir)])
        #expect(r.status == 0, "join failed: \(r.stderr.suffix(3000))")
        #expect(!StageTest.leaks(token, in: [r.stdout, r.stderr]))
        expectRoutedLevels(try StageTest.left(dir + "/out.wav"), ids: toneIds, from: 1.5, to: 5.9, "behind a 307")
        #expect(try stage.events("redirect").count == 3)
        let created = try stage.events("subscribe").filter { $0["status"] as? Int == 201 }
        #expect(created.count == 3 && created.allSatisfy { ($0["path"] as? String)?.hasPrefix("/r/subscribe/") == true },
                "the redirected POST carried the token again (the /r/ path wants it)")
        let deletes = try stage.events("delete")
        #expect(deletes.count == 3 && deletes.allSatisfy { $0["status"] as? Int == 204 && ($0["path"] as? String)?.hasPrefix("/r/") == true })
    }

    // MARK: - membership changes

    /// caller-3 joins 5 s in and leaves 10 s later; the events WebSocket is dropped once meanwhile.
    @Test func participantJoinsAndLeavesWhileTheMixGoesOn() throws {
        var caller3: [String: Any] = ["id": "caller-3", "userId": "caller-3-user", "role": "CALLER", "joinAtS": 5, "leaveAtS": 15]
        caller3["tone"] = 950
        let stage = try LocalStage(participants: [StageFixture.host, StageFixture.caller1, caller3])
        defer { stage.stop() }
        let dir = Paths.tempDir("join-leave")
        let token = try stage.token()
        let t0 = try stage.now()
        let duration = max(8, 16.5 - t0)
        let job = BackgroundJoin(token: token, output: dir + "/out.wav", duration: duration,
                                 extra: ["--routing", try StageFixture.writeRouting(in: dir)])
        try waitForStageTime(stage, 9)
        try stage.dropWebSockets()
        let r = try job.wait(duration + 30)
        #expect(r.status == 0, "join failed: \(r.stderr.suffix(3000))")
        #expect(!StageTest.leaks(token, in: [r.stdout, r.stderr]))

        let log = try stage.log()
        func t(_ e: [String: Any]) -> Double { e["t"] as? Double ?? -1 }
        func lists(_ e: [String: Any], _ id: String) -> Bool { (e["participants"] as? [String] ?? []).contains(id) }
        let states = log.filter { $0["event"] as? String == "stage_state" }
        guard let joinState = states.first(where: { lists($0, "caller-3") }),
              let leaveState = states.first(where: { t($0) > t(joinState) && !lists($0, "caller-3") }) else {
            Issue.record("no STAGE_STATE with caller-3 joining and leaving: \(states)")
            return
        }
        let subs = log.filter { $0["event"] as? String == "subscribe" && $0["participantId"] as? String == "caller-3" && $0["status"] as? Int == 201 }
        guard let sub = subs.first else { Issue.record("caller-3 was never subscribed"); return }
        #expect(t(sub) - t(joinState) < 1.0, "subscribed \(t(sub) - t(joinState)) s after its STAGE_STATE")
        #expect(subs.count == 1, "one subscription, no churn")
        let deletes = log.filter { $0["event"] as? String == "delete" && $0["id"] as? String == sub["id"] as? String }
        #expect(deletes.count == 1 && deletes.allSatisfy { t($0) >= t(leaveState) && t($0) - t(leaveState) < 2 },
                "DELETE sent on leave: \(deletes)")
        #expect(log.filter { $0["event"] as? String == "ws_connect" }.count == 2, "reconnected after the drop")
        #expect(r.stdout.contains("1 reconnect(s)"), "\(r.stdout)")

        // Program time ≈ stage time − (stage time of our WebSocket connect).
        let offset = t(log.first { $0["event"] as? String == "ws_connect" } ?? [:])
        let x = try StageTest.left(dir + "/out.wav")
        let end = Double(x.count) / 48_000
        let joinAt = t(sub) - offset, leaveAt = t(leaveState) - offset
        for (id, hz) in [("host", 350.0), ("caller-1", 550.0)] {
            let want = StageFixture.expected[id] ?? 0
            let windows = StageTest.levels(x, hz: hz, from: 1.5, to: end - 0.1)
            let worst = windows.map { abs($0 - want) }.max() ?? 99
            #expect(worst <= 1, "\(id) must go on without a gap through the join, the leave and the reconnect; worst 100 ms window off by \(worst) dB")
        }
        let c3 = StageTest.level(x, hz: 950, from: joinAt + 1, to: leaveAt - 0.3)
        #expect(abs(c3 - (StageFixture.expected["caller-3"] ?? 0)) <= 1, "caller-3 while present: \(c3) dBFS")
        #expect(StageTest.level(x, hz: 950, from: 0.5, to: joinAt - 0.2) < -50, "caller-3 before joining")
        #expect(StageTest.level(x, hz: 950, from: leaveAt + 0.6, to: end - 0.1) < -50, "caller-3 after leaving")
    }

    // MARK: - bad and dead peers

    @Test func peerWithBadFingerprintIsRefused() throws {
        let stage = try LocalStage(participants: [StageFixture.host, StageFixture.caller1], args: ["--bad-fingerprint"])
        defer { stage.stop() }
        let dir = Paths.tempDir("join-badfp")
        let token = try stage.token()
        let r = try StageTest.runJoin(token: token, output: dir + "/out.wav", duration: 4,
                                      extra: ["--routing", try StageFixture.writeRouting(in: dir)])
        #expect(r.status == 0, "a refused peer is retried, not fatal: \(r.stderr.suffix(2000))")
        #expect(!StageTest.leaks(token, in: [r.stdout, r.stderr]))
        let x = try StageTest.left(dir + "/out.wav")
        for hz in [350.0, 550.0] { #expect(StageTest.level(x, hz: hz, from: 0, to: 4) < -60, "no audio from a refused peer (\(hz) Hz)") }
        #expect(try allSubscriptions(stage).allSatisfy { $0["srtpProfile"] is NSNull || $0["srtpProfile"] == nil }, "SRTP never came up")
        #expect(try stage.events("subscribe").filter { $0["status"] as? Int == 201 }.count >= 4, "retried with backoff")
        // Logged once per cause (our own line; the media path logs each peer's failure itself).
        let ours = r.stderr.split(separator: "\n").filter { $0.contains("subscription to") && $0.contains("fingerprint mismatch") }
        #expect(ours.count == 1, "\(ours)")
        #expect(r.stdout.contains("peer: DTLS fingerprint mismatch ×"), "\(r.stdout)")
        #expect(r.stdout.contains("0 subscription(s)"))
    }

    @Test func deadPeerIsDetectedAndResubscribed() throws {
        var caller1 = StageFixture.caller1
        caller1["deadAtS"] = 5
        caller1["deadForS"] = 3
        let stage = try LocalStage(participants: [StageFixture.host, caller1])
        defer { stage.stop() }
        let dir = Paths.tempDir("join-dead")
        let token = try stage.token()
        let t0 = try stage.now()
        let duration = max(8, 14 - t0)
        let r = try StageTest.runJoin(token: token, output: dir + "/out.wav", duration: duration,
                                      extra: ["--routing", try StageFixture.writeRouting(in: dir)])
        #expect(r.status == 0, "join failed: \(r.stderr.suffix(3000))")
        #expect(!StageTest.leaks(token, in: [r.stdout, r.stderr]))
        let subs = try stage.events("subscribe", participant: "caller-1").filter { $0["status"] as? Int == 201 }
        #expect(subs.count >= 2, "resubscribed after the peer died: \(subs.count) subscription(s)")
        #expect(try !stage.events("subscription_dead", participant: "caller-1").isEmpty)
        if let first = subs.first {
            let del = try stage.events("delete", participant: "caller-1").filter { $0["id"] as? String == first["id"] as? String }
            #expect(del.count == 1, "the dead subscription was DELETEd")
        }
        #expect(r.stderr.contains("taking the peer for dead"), "detected as silent")
        let x = try StageTest.left(dir + "/out.wav")
        let end = Double(x.count) / 48_000
        #expect(abs(StageTest.level(x, hz: 550, from: end - 1.8, to: end - 0.1) - (StageFixture.expected["caller-1"] ?? 0)) <= 1,
                "caller-1 back at its level after resubscribing")
        let hostWindows = StageTest.levels(x, hz: 350, from: 1.5, to: end - 0.1)
        #expect((hostWindows.map { abs($0 - (StageFixture.expected["host"] ?? 0)) }.max() ?? 99) <= 1, "the host never drops out")
    }

    // MARK: - record, replay

    @Test func recordedRTPReplaysToTheSameLevels() throws {
        let stage = try LocalStage(participants: [StageFixture.host, StageFixture.caller1, StageFixture.caller2])
        defer { stage.stop() }
        let dir = Paths.tempDir("join-record")
        let token = try stage.token()
        let rec = dir + "/rec"
        let r = try StageTest.runJoin(token: token, output: dir + "/join.wav", duration: 6,
                                      extra: ["--routing", try StageFixture.writeRouting(in: dir), "--record-rtp", rec])
        #expect(r.status == 0, "join failed: \(r.stderr.suffix(3000))")
        #expect(!StageTest.leaks(token, in: [r.stdout, r.stderr]))
        stage.stop()

        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: rec + "/manifest.json"))) as? [String: Any] ?? [:]
        let captures = manifest["captures"] as? [[String: Any]] ?? []
        #expect(Set(captures.compactMap { $0["participantId"] as? String }) == Set(toneIds))
        for c in captures {
            #expect(FileManager.default.fileExists(atPath: rec + "/" + (c["file"] as? String ?? "?")))
            #expect(c["ssrc"] is NSNumber && c["role"] is String && c["userId"] is String && c["offsetMs"] is NSNumber && c["payloadType"] as? Int == 111)
        }
        let routing = manifest["routing"] as? [String: Any] ?? [:]
        #expect((routing["participantVolumes"] as? [String: Any])?["caller-2"] as? Double == 50)

        let local = try runProcess(Paths.composer, [rec + "/manifest.json", "--output", dir + "/local.wav", "--duration", "6"], timeout: 120)
        #expect(local.status == 0, "local refused the recording: \(local.stderr.suffix(2000))")
        let joined = try StageTest.left(dir + "/join.wav"), replayed = try StageTest.left(dir + "/local.wav")
        for id in toneIds {
            guard let hz = StageFixture.tones[id] else { continue }
            let a = StageTest.level(joined, hz: hz, from: 1.5, to: 5.9), b = StageTest.level(replayed, hz: hz, from: 1.5, to: 5.9)
            #expect(abs(a - b) <= 0.5, "\(id): join \(a) dBFS, replay \(b) dBFS")
            #expect(abs(b - (StageFixture.expected[id] ?? 0)) <= 1)
        }
    }

    // MARK: - bad input from the network and the command line

    @Test func badTokensGiveClearErrorsAndNeverLeak() throws {
        let stage = try LocalStage(participants: [StageFixture.host,
                                                  ["id": "caller-3", "role": "CALLER", "publishing": false]])
        defer { stage.stop() }
        let dir = Paths.tempDir("join-badtoken")
        let good = try stage.token()

        let garbage = "not-a-jwt-but-a-long-secret-value"
        let g = try StageTest.runJoin(token: garbage, output: dir + "/g.wav", duration: 2)
        #expect(g.status == 2 && g.stderr.contains("--token") && g.stderr.contains("not a JWT"), "\(g.stderr)")
        #expect(!g.stderr.contains(garbage) && !g.stdout.contains(garbage))

        let expired = try stage.token(ttl: -600)
        let e = try StageTest.runJoin(token: expired, output: dir + "/e.wav", duration: 2)
        #expect(e.status == 2 && e.stderr.contains("expired"), "\(e.stderr)")
        #expect(!StageTest.leaks(expired, in: [e.stdout, e.stderr]))

        let noSub = try stage.token(subscribe: false)
        let n = try StageTest.runJoin(token: noSub, output: dir + "/n.wav", duration: 2)
        #expect(n.status == 2 && n.stderr.contains("allow_subscribe"), "\(n.stderr)")

        let forged = try stage.token(keyFile: dir + "/other-key.pem")
        let started = Date()
        let f = try StageTest.runJoin(token: forged, output: dir + "/f.wav", duration: 5)
        #expect(f.status == 1 && f.stderr.contains("refused the token (HTTP 401)"), "\(f.stderr)")
        #expect(Date().timeIntervalSince(started) < 10, "a refused token fails at once, no retries")
        #expect(!StageTest.leaks(forged, in: [f.stdout, f.stderr]))

        let unreachable = try StageTest.runJoin(token: good, output: dir + "/u.wav", duration: 5,
                                                extra: ["--events-url", "ws://127.0.0.1:\(freeLoopbackPort())"])
        #expect(unreachable.status == 1 && unreachable.stderr.contains("unreachable after 4 attempts"), "\(unreachable.stderr)")

        let badRouting = dir + "/bad-routing.json"
        try #"{"hostVolume": 150}"#.write(toFile: badRouting, atomically: true, encoding: .utf8)
        let b = try StageTest.runJoin(token: good, output: dir + "/b.wav", duration: 2, extra: ["--routing", badRouting])
        #expect(b.status == 2 && b.stderr.contains("bad-routing.json") && b.stderr.contains("hostVolume"), "\(b.stderr)")
        let bad = try runProcess(Paths.composer, ["join", "--token", good, "--output", dir + "/x.wav", "--duration", "abc"])
        #expect(bad.status == 2 && !StageTest.leaks(good, in: [bad.stdout, bad.stderr]), "\(bad.stderr)")

        // The subscribe endpoint's 4xx, typed and redacted.
        let whip = WHIPSubscriber(whipURL: stage.httpBase, token: SecretString(good))
        let forgedWhip = WHIPSubscriber(whipURL: stage.httpBase, token: SecretString(forged))
        let offer = try MediaPeer(label: "t", configuration: PeerConfiguration(loopbackOnly: true), logger: Logger(label: "t"))
        defer { offer.close() }
        let cases: [(WHIPSubscriber, String, String, Int)] = [
            (whip, "nobody", offer.makeOffer(), 404), (whip, "caller-3", offer.makeOffer(), 409),
            (forgedWhip, "host", offer.makeOffer(), 401), (whip, "host", "v=0\r\nbroken", 400),
        ]
        for (w, id, sdp, status) in cases {
            do throws(WHIPError) {
                _ = try w.subscribe(participantId: id, offer: sdp)
                Issue.record("\(id): accepted")
            } catch {
                guard case .status(let s, _) = error else { Issue.record("\(id): \(error)"); continue }
                #expect(s == status, "\(id): \(error)")
                #expect(!StageTest.leaks(good, in: [error.description]) && !StageTest.leaks(forged, in: [error.description]))
            }
        }
    }

    @Test func webSocketClientTalksToTheStage() throws {
        let stage = try LocalStage(participants: [StageFixture.host])
        defer { stage.stop() }
        let token = try stage.token()
        final class Box: @unchecked Sendable {
            let lock = NSLock(); var messages: [String] = []; var closed: [WebSocketError?] = []
            let got = DispatchSemaphore(value: 0)
        }
        let box = Box()
        var o = WebSocketClient.Options()
        o.subprotocol = SecretString(token)
        let ws = try WebSocketClient(url: stage.wsBase + "/st-local", options: o)
        try ws.connect(onMessage: { m in box.lock.lock(); box.messages.append(m); box.lock.unlock(); box.got.signal() },
                       onClose: { e in box.lock.lock(); box.closed.append(e); box.lock.unlock() })
        #expect(box.got.wait(timeout: .now() + 5) == .success)
        try ws.send(text: #"{"type":"PING"}"#)
        #expect(box.got.wait(timeout: .now() + 5) == .success)
        ws.close()
        box.lock.lock()
        let msgs = box.messages, closed = box.closed
        box.lock.unlock()
        guard msgs.count >= 2, case .stageState(let snap) = try StageEvents.parse(msgs[0]) else {
            Issue.record("expected STAGE_STATE then PONG: \(msgs)"); return
        }
        #expect(snap.participants.map(\.id) == ["host", "worker-1"])
        #expect(msgs.dropFirst().contains { (try? StageEvents.parse($0)) == .pong })
        #expect(closed.count == 1 && closed[0] == nil, "our own close ends cleanly: \(closed)")

        var bad = WebSocketClient.Options()
        let forged = try stage.token(keyFile: Paths.tempDir("ws-key") + "/k.pem")
        bad.subprotocol = SecretString(forged)
        do throws(WebSocketError) {
            try WebSocketClient(url: stage.wsBase + "/st-local", options: bad).connect(onMessage: { _ in }, onClose: { _ in })
            Issue.record("a forged token was accepted")
        } catch {
            guard case .handshakeRejected(401, let detail) = error else { Issue.record("\(error)"); return }
            #expect(detail.contains("token rejected"))
            #expect(!StageTest.leaks(forged, in: [error.description]))
        }
    }

    @Test func tlsEndpointsAreVerified() throws {
        let stage = try LocalStage(participants: [StageFixture.host], tls: true)
        defer { stage.stop() }
        let token = try stage.token()
        var o = WebSocketClient.Options()
        o.subprotocol = SecretString(token)
        // Without the stage's self-signed certificate: refused.
        do throws(WebSocketError) {
            try WebSocketClient(url: stage.wsBase + "/st-local", options: o).connect(onMessage: { _ in }, onClose: { _ in })
            Issue.record("an untrusted certificate was accepted")
        } catch {
            guard case .tlsVerification = error else { Issue.record("\(error)"); return }
        }
        // With it: a snapshot arrives.
        o.caFile = stage.certFile
        let got = DispatchSemaphore(value: 0)
        let ws = try WebSocketClient(url: stage.wsBase + "/st-local", options: o)
        try ws.connect(onMessage: { _ in got.signal() }, onClose: { _ in })
        #expect(got.wait(timeout: .now() + 5) == .success)
        ws.close()
        // WHIP over https with the same CA: 201, then DELETE.
        let peer = try MediaPeer(label: "t", configuration: PeerConfiguration(loopbackOnly: true), logger: Logger(label: "t"))
        defer { peer.close() }
        let whip = WHIPSubscriber(whipURL: stage.httpBase, token: SecretString(token), http: HTTPClient(caFile: stage.certFile))
        let sub = try whip.subscribe(participantId: "host", offer: peer.makeOffer())
        #expect(sub.location?.hasPrefix("https://127.0.0.1:") == true)
        if let l = sub.location { try whip.unsubscribe(location: l) }
        #expect(try stage.events("delete").first?["status"] as? Int == 204)

        // The whole join over wss:// and https://: refused without the CA, mixing with it.
        let dir = Paths.tempDir("join-tls")
        let refused = try StageTest.runJoin(token: token, output: dir + "/no.wav", duration: 3)
        #expect(refused.status == 1 && refused.stderr.contains("certificate verification failed"), "\(refused.stderr)")
        let r = try StageTest.runJoin(token: token, output: dir + "/out.wav", duration: 3,
                                      extra: ["--ca-file", stage.certFile, "--routing", try StageFixture.writeRouting(in: dir)])
        #expect(r.status == 0, "\(r.stderr.suffix(2000))")
        #expect(!StageTest.leaks(token, in: [r.stdout, r.stderr, refused.stdout, refused.stderr]))
        let host = StageTest.level(try StageTest.left(dir + "/out.wav"), hz: 350, from: 1.2, to: 2.9)
        #expect(abs(host - 20 * log10(0.25)) <= 1, "host over TLS signalling: \(host) dBFS")
    }
}
