import Foundation
import HTTPClient
import Logging
import RTP
import Testing
@testable import StageClient

/// The orchestrator against a fake subscribe endpoint and fake peers: the failure paths (broken
/// answer, 5xx, redirect loop, a peer dying, a leave) without WebRTC.
@Suite(.serialized) struct StageClientSessionTests {
    static let token = "stage-session-test-token-0123456789abcdef"

    static let validAnswer = [
        "v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "t=0 0", "a=group:BUNDLE 0",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111", "c=IN IP4 127.0.0.1", "a=mid:0", "a=sendonly", "a=rtcp-mux",
        "a=rtpmap:111 opus/48000/2", "a=fmtp:111 minptime=10;useinbandfec=1",
        "a=ice-ufrag:abcd", "a=ice-pwd:abcdefghijklmnopqrstuvwx",
        "a=fingerprint:sha-256 " + (0..<32).map { String(format: "%02X", $0) }.joined(separator: ":"),
        "a=setup:active", "a=candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host",
    ].joined(separator: "\r\n") + "\r\n"

    /// A peer that never touches the network. With `script`, it plays a connection after the answer.
    final class FakePeer: StagePeer, @unchecked Sendable {
        struct Script: Sendable { var packets = 0; var failAfter: Double? }
        let lock = NSLock()
        var onState: (@Sendable (StagePeerState) -> Void)?
        var onAudio: (@Sendable (RTPPacket, UInt64) -> Void)?
        var answers = 0
        var closed = false
        let script: Script?
        init(script: Script?) { self.script = script }

        func makeOffer() -> String { "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n" }
        func applyAnswer(_ sdp: String) throws {
            lock.lock(); answers += 1; lock.unlock()
            guard let script else { return }
            Thread.detachNewThread { [self] in
                lock.lock(); let st = onState, au = onAudio; lock.unlock()
                st?(.connected)
                for k in 0..<script.packets {
                    au?(RTPPacket(payloadType: 111, sequenceNumber: UInt16(k), timestamp: UInt32(k * 960), ssrc: 7, payload: [0xF8, 0xFF, 0xFE]),
                        monotonicNs())
                }
                au?(RTPPacket(payloadType: 96, sequenceNumber: 999, timestamp: 0, ssrc: 7), monotonicNs())
                if let f = script.failAfter {
                    Thread.sleep(forTimeInterval: f)
                    st?(.failed(cause: "consent lost", detail: "consent lost: no ICE consent response for 10 s"))
                }
            }
        }
        var inboundDatagrams: Int { 0 }
        func setHandlers(onState: @escaping @Sendable (StagePeerState) -> Void, onAudioRTP: @escaping @Sendable (RTPPacket, UInt64) -> Void) {
            lock.lock(); self.onState = onState; onAudio = onAudioRTP; lock.unlock()
        }
        func close() { lock.lock(); closed = true; lock.unlock() }
    }

    final class Peers: @unchecked Sendable {
        let lock = NSLock()
        var all: [FakePeer] = []
        let script: FakePeer.Script?
        /// Peers after the first `failing` ones stay up.
        let failing: Int
        init(script: FakePeer.Script? = nil, failing: Int = .max) { self.script = script; self.failing = failing }
        var factory: StagePeerFactory {
            { [self] _ in
                lock.lock(); let n = all.count; lock.unlock()
                var sc = script
                if n >= failing { sc?.failAfter = nil }
                let p = FakePeer(script: sc)
                lock.lock(); all.append(p); lock.unlock()
                return p
            }
        }
        var closedAll: Bool { lock.lock(); defer { lock.unlock() }; return all.allSatisfy { p in p.lock.lock(); defer { p.lock.unlock() }; return p.closed } }
    }

    struct Rig {
        let session: StageSession
        let causes: CauseLog
        let slots: SlotTable
        let log: LogCapture
    }

    /// Keeps every log line (warning and up) for checks.
    final class LogCapture: LogHandler, @unchecked Sendable {
        let lockObj = NSLock()
        var lines: [String] = []
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .warning
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            lockObj.lock(); lines.append("\(event.level): \(event.message)"); lockObj.unlock()
        }
        var all: [String] { lockObj.lock(); defer { lockObj.unlock() }; return lines }
    }

    func rig(_ server: StageFakeHTTPServer, _ peers: Peers, silence: Double = 5) -> Rig {
        let capture = LogCapture()
        let logger = Logger(label: "stage-session-test") { _ in capture }
        let causes = CauseLog(logger: logger)
        let slots = SlotTable(count: 4)
        var config = StageSession.Configuration(selfParticipantId: "me")
        config.tuning.backoff = Backoff(initial: 0.05, factor: 2, cap: 0.4, jitter: 0.25)
        config.tuning.connectTimeout = 2
        config.tuning.silenceTimeout = silence
        let session = StageSession(config: config, whip: WHIPSubscriber(whipURL: server.base, token: SecretString(Self.token), timeout: 3),
                                   peerFactory: peers.factory, slots: slots, recorder: nil, control: nil, causes: causes,
                                   logger: logger, startNs: monotonicNs())
        return Rig(session: session, causes: causes, slots: slots, log: capture)
    }

    static let stage = StageSnapshot(stageId: "s", participants: [
        StageParticipant(id: "p1", userId: "u1", attributes: ["role": "CALLER"], isPublishing: true),
        StageParticipant(id: "me", userId: "w", isPublishing: false),
        StageParticipant(id: "vp", userId: "w2", attributes: ["role": "VIRTUAL_PARTICIPANT"], isPublishing: true),
    ])

    func waitUntil(_ seconds: Double, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline { if condition() { return true }; Thread.sleep(forTimeInterval: 0.02) }
        return condition()
    }

    @Test func brokenAnswerIsDroppedCountedAndRetried() throws {
        let server = try StageFakeHTTPServer { req, i in
            req.method == "POST" ? .init(status: 201, headers: [("Location", "/subscribe/p1/s\(i)")], body: "this is not SDP")
                                 : .init(status: 204)
        }
        defer { server.stop() }
        let peers = Peers()
        let r = rig(server, peers)
        r.session.start()
        r.session.update(Self.stage, changes: StageEvents.diff(from: nil, to: Self.stage))
        #expect(waitUntil(5) { server.requests.filter { $0.method == "POST" }.count >= 3 })
        r.session.stop()
        let reqs = server.requests
        let posts = reqs.filter { $0.method == "POST" }
        #expect(posts.allSatisfy { $0.path == "/subscribe/p1" }, "only p1: never ourselves, never a VIRTUAL_PARTICIPANT")
        #expect(posts.allSatisfy { $0.headers["authorization"] == "Bearer \(Self.token)" && $0.headers["content-type"] == "application/sdp" })
        // Each accepted-but-unusable subscription is DELETEd (with the token) before the retry.
        let deletes = reqs.filter { $0.method == "DELETE" }
        #expect(deletes.count == posts.count && deletes.allSatisfy { $0.headers["authorization"] == "Bearer \(Self.token)" })
        #expect(r.causes.count("bad SDP answer") == posts.count)
        #expect(peers.closedAll, "every peer of a failed attempt is closed")
        #expect(peers.all.allSatisfy { $0.answers == 0 }, "a broken answer never reaches the peer")
    }

    @Test func serverErrorsAreRetriedWithBackoffAndNeverLeakTheToken() throws {
        let server = try StageFakeHTTPServer { _, _ in .init(status: 503, body: "overloaded, your token was \(Self.token)") }
        defer { server.stop() }
        let r = rig(server, Peers())
        r.session.start()
        r.session.update(Self.stage, changes: [])
        #expect(waitUntil(5) { server.requests.count >= 5 })
        r.session.stop()
        let times = server.requests.map(\.at)
        let gaps = zip(times.dropFirst(), times).map { $0.timeIntervalSince($1) }
        #expect(gaps.count >= 4 && gaps[3] > gaps[0] * 2, "exponential backoff between attempts: \(gaps)")
        #expect(gaps.allSatisfy { $0 < 0.4 * 1.25 + 0.3 }, "capped: \(gaps)")
        #expect(r.causes.count("subscribe: HTTP 503") == server.requests.count)
        #expect(r.session.participantStats.first?.stats.failures == server.requests.count)
        let warned = r.log.all.filter { $0.contains("HTTP 503") }
        #expect(warned.count == 1, "logged once per cause: \(warned)")
        #expect(warned.allSatisfy { !$0.contains(Self.token) && $0.contains(Secrets.mask) }, "the echoed token is masked: \(warned)")
    }

    @Test func redirectLoopIsBounded() throws {
        let server = try StageFakeHTTPServer { _, _ in .init(status: 307, headers: [("Location", "/subscribe/p1")]) }
        defer { server.stop() }
        let r = rig(server, Peers())
        r.session.start()
        r.session.update(Self.stage, changes: [])
        #expect(waitUntil(5) { r.causes.count("subscribe: redirect loop") >= 2 })
        r.session.stop()
        let n = r.causes.count("subscribe: redirect loop")
        #expect(server.requests.count == n * 6, "each attempt: the POST plus 5 followed redirects, then it gives up")
        #expect(server.requests.allSatisfy { $0.headers["authorization"] == "Bearer \(Self.token)" }, "the token goes along on every hop")
    }

    @Test func deadPeerIsResubscribedIntoTheSameSlotAndALeaveDeletes() throws {
        let server = try StageFakeHTTPServer { req, i in
            req.method == "POST" ? .init(status: 201, headers: [("Location", "/subscribe/p1/s\(i)")], body: Self.validAnswer)
                                 : .init(status: 204)
        }
        defer { server.stop() }
        let peers = Peers(script: .init(packets: 5, failAfter: 0.3), failing: 2)
        let r = rig(server, peers)
        r.session.start()
        r.session.update(Self.stage, changes: [])
        #expect(waitUntil(5) { r.causes.count("peer: consent lost") == 2 && r.session.activeSubscriptions == 1 })
        // The slot (and its inbox) stays the participant's across resubscriptions.
        let entry = r.slots.snapshot(after: 0)?.entries.compactMap { $0 }
        #expect(entry?.count == 1 && entry?.first?.voice == SlotVoice(participantId: "p1", userId: "u1", role: .caller))
        var items: [PacketInbox.Item] = []
        entry?.first?.inbox.take(into: &items)
        #expect(items.count >= 10 && items.allSatisfy { $0.packet.payloadType == 111 }, "audio reached the mix inbox; other payload types did not")

        // The participant leaves: its subscription is DELETEd and its slot released.
        let before = server.requests.filter { $0.method == "DELETE" }.count
        let left = StageSnapshot(stageId: "s", participants: [])
        r.session.update(left, changes: StageEvents.diff(from: Self.stage, to: left))
        #expect(waitUntil(3) { r.slots.snapshot(after: 0)?.entries.first??.released == true })
        r.session.stop()
        let posts = server.requests.filter { $0.method == "POST" }.count
        let deletes = server.requests.filter { $0.method == "DELETE" }.count
        #expect(deletes == posts && deletes > before, "every subscription DELETEd, the last one on leave")
        let stats = r.session.participantStats.first?.stats
        #expect(stats?.connected == 3 && stats?.failures == 2 && stats?.foreignPackets == 3 && stats?.packets == 15)
        #expect(peers.closedAll)
    }
}
