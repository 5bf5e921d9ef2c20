import Foundation
import HTTPClient
import Logging
import Routing
import RTP
import Testing
@testable import StageClient

/// A JWT with the given claims (signature is junk: nothing here verifies it).
func stageTestJWT(_ claims: [String: Any]) -> String {
    func b64url(_ d: Data) -> String {
        d.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
    let header = b64url(Data(#"{"alg":"ES384","typ":"JWT"}"#.utf8))
    let payload = b64url((try? JSONSerialization.data(withJSONObject: claims)) ?? Data())
    return "\(header).\(payload).c2lnbmF0dXJlLW5vdC1jaGVja2VkLWhlcmUtMTIzNDU2Nzg"
}

@Suite struct StageClientWebSocketCodecTests {
    /// A server frame (unmasked) as bytes.
    func serverFrame(_ opcode: UInt8, _ payload: [UInt8], fin: Bool = true) -> [UInt8] {
        var out: [UInt8] = [(fin ? 0x80 : 0) | opcode]
        let n = payload.count
        if n < 126 { out.append(UInt8(n)) } else if n <= 0xFFFF { out += [126, UInt8(n >> 8), UInt8(n & 0xFF)] } else {
            out.append(127)
            for s in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: UInt64(n) >> UInt64(s))) }
        }
        return out + payload
    }

    @Test func readsFramesOfEveryLengthEncodingByteByByte() throws {
        for n in [0, 1, 125, 126, 127, 65_535, 65_536, 70_000] {
            let payload = (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 31) }
            let wire = serverFrame(2, payload)
            var r = WebSocketFrameReader(maxFramePayload: 1 << 20)
            var got: WebSocketFrame?
            // Feed in uneven pieces: nothing may come out before the frame is whole.
            var i = 0
            while i < wire.count {
                let j = min(wire.count, i + (n < 200 ? 1 : 4093))
                r.append(Array(wire[i..<j]))
                if let f = try r.next() { #expect(j == wire.count, "frame of \(n) came out early"); got = f }
                i = j
            }
            #expect(got == WebSocketFrame(fin: true, opcode: .binary, payload: payload), "length \(n)")
            #expect(r.pendingBytes == 0)
        }
    }

    @Test func rejectsWhatRFC6455Forbids() {
        func error(_ bytes: [UInt8], limit: Int = 1 << 20) -> WebSocketError? {
            var r = WebSocketFrameReader(maxFramePayload: limit)
            r.append(bytes)
            do { _ = try r.next(); return nil } catch { return error }
        }
        #expect(error([0x81, 0x85, 1, 2, 3, 4, 0, 0, 0, 0, 0]) == .protocolViolation("server frame is masked"))
        #expect(error([0xC1, 0x00]) == .protocolViolation("reserved bits set without a negotiated extension"))
        #expect(error([0x83, 0x00]) == .protocolViolation("unknown opcode 3"))
        #expect(error([0x09, 0x00]) == .protocolViolation("fragmented control frame"))
        #expect(error(serverFrame(9, Array(repeating: 0, count: 126))) == .protocolViolation("control frame of 126 bytes (limit 125)"))
        #expect(error([0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0]) == .protocolViolation("64-bit length with the top bit set"))
        #expect(error(serverFrame(1, Array(repeating: 0x41, count: 300)), limit: 200) == .messageTooLarge(limit: 200))
        // A declared huge length fails at once, before any payload arrives.
        #expect(error([0x82, 127, 0, 0, 0, 1, 0, 0, 0, 0]) == .messageTooLarge(limit: 1 << 20))
    }

    @Test func reassemblesFragmentsAroundControlFrames() throws {
        var a = WebSocketMessageAssembler(maxMessageBytes: 100)
        #expect(try a.feed(.init(fin: false, opcode: .text, payload: Array("{\"ty".utf8))) == nil)
        #expect(try a.feed(.init(fin: true, opcode: .ping, payload: [7])) == .ping([7]))
        #expect(try a.feed(.init(fin: false, opcode: .continuation, payload: Array("pe\":".utf8))) == nil)
        #expect(try a.feed(.init(fin: true, opcode: .continuation, payload: Array("1}".utf8))) == .text("{\"type\":1}"))
        #expect(try a.feed(.init(fin: true, opcode: .close, payload: [0x03, 0xE9] + Array("bye".utf8))) == .close(code: 1001, reason: "bye"))
        #expect(try a.feed(.init(fin: true, opcode: .close, payload: [])) == .close(code: nil, reason: ""))

        var b = WebSocketMessageAssembler(maxMessageBytes: 10)
        #expect(throws: WebSocketError.protocolViolation("continuation frame without a message")) {
            try b.feed(.init(fin: true, opcode: .continuation, payload: []))
        }
        _ = try b.feed(.init(fin: false, opcode: .text, payload: Array("12345678".utf8)))
        #expect(throws: WebSocketError.protocolViolation("new data frame inside a fragmented message")) {
            try b.feed(.init(fin: true, opcode: .text, payload: []))
        }
        var c = WebSocketMessageAssembler(maxMessageBytes: 10)
        _ = try c.feed(.init(fin: false, opcode: .text, payload: Array("12345678".utf8)))
        #expect(throws: WebSocketError.messageTooLarge(limit: 10)) {
            try c.feed(.init(fin: true, opcode: .continuation, payload: Array("9AB".utf8)))
        }
        var d = WebSocketMessageAssembler(maxMessageBytes: 10)
        #expect(throws: WebSocketError.protocolViolation("text message is not UTF-8")) {
            try d.feed(.init(fin: true, opcode: .text, payload: [0xC3, 0x28]))
        }
    }

    @Test func clientFramesAreMaskedAndRoundTrip() throws {
        for n in [0, 5, 125, 126, 65_535, 65_536] {
            let payload = (0..<n).map { UInt8(truncatingIfNeeded: $0) }
            let key: UInt32 = 0xA1B2_C3D4
            let wire = WebSocketFrame.encode(.text, payload, maskKey: key)
            #expect(wire[0] == 0x81)
            #expect(wire[1] & 0x80 != 0, "client frames must be masked")
            let hdr = n < 126 ? 2 : (n <= 0xFFFF ? 4 : 10)
            #expect(wire.count == hdr + 4 + n)
            let mask = Array(wire[hdr..<(hdr + 4)])
            #expect(mask == [0xA1, 0xB2, 0xC3, 0xD4])
            let unmasked = wire[(hdr + 4)...].enumerated().map { $0.element ^ mask[$0.offset & 3] }
            #expect(unmasked == payload)
        }
    }

    @Test func hostileBytesNeverTrap() {
        var g = StageTestRandom(seed: 42)
        var frames = 0, errors = 0
        for _ in 0..<20_000 {
            var r = WebSocketFrameReader(maxFramePayload: 4096)
            var a = WebSocketMessageAssembler(maxMessageBytes: 4096)
            let n = Int.random(in: 0...64, using: &g)
            r.append((0..<n).map { _ in UInt8.random(in: 0...255, using: &g) })
            do {
                while let f = try r.next() { frames += 1; _ = try a.feed(f) }
            } catch { errors += 1 }
        }
        #expect(frames + errors > 1000)
    }

    @Test func handshakeAcceptAndChecks() throws {
        // RFC 6455 section 1.3's example.
        #expect(WebSocketHandshake.accept(for: "dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        let key = "dGhlIHNhbXBsZSBub25jZQ=="
        let head = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: tok-123456789"
        let ok = try WebSocketHandshake.parseHead(ArraySlice(Array(head.utf8)))
        try WebSocketHandshake.validate(ok, key: key, subprotocol: "tok-123456789")
        #expect(throws: WebSocketError.self) { try WebSocketHandshake.validate(ok, key: "AAAAAAAAAAAAAAAAAAAAAA==", subprotocol: "tok-123456789") }
        do {
            try WebSocketHandshake.validate(ok, key: key, subprotocol: "other-token-value")
            Issue.record("a subprotocol we did not offer must be refused")
        } catch {
            #expect(!error.description.contains("tok-123456789"), "the chosen subprotocol is never echoed")
        }
        let refused = try WebSocketHandshake.parseHead(ArraySlice(Array("HTTP/1.1 401 Unauthorized\r\nContent-Length: 3".utf8)))
        #expect(refused.status == 401)
        #expect(throws: WebSocketError.handshakeInvalid("not an HTTP/1.1 status line")) {
            try WebSocketHandshake.parseHead(ArraySlice(Array("garbage".utf8)))
        }
        let req = WebSocketHandshake.request(try WebSocketURL(parsing: "ws://h:81/st?x=1"), key: key, subprotocol: "T", userAgent: "ua")
        #expect(req.hasPrefix("GET /st?x=1 HTTP/1.1\r\nHost: h:81\r\n"))
        #expect(req.contains("Sec-WebSocket-Protocol: T\r\n") && req.hasSuffix("\r\n\r\n"))
    }

    @Test func parsesWebSocketURLs() throws {
        let a = try WebSocketURL(parsing: "wss://events.example.com/st-1")
        #expect(a.secure && a.port == 443 && a.host == "events.example.com" && a.target == "/st-1" && a.hostHeader == "events.example.com")
        let b = try WebSocketURL(parsing: "ws://127.0.0.1:4000?q=1")
        #expect(!b.secure && b.port == 4000 && b.target == "/?q=1" && b.isIPLiteral && b.redacted == "ws://127.0.0.1:4000/")
        let c = try WebSocketURL(parsing: "ws://[::1]:9/x")
        #expect(c.host == "::1" && c.hostHeader == "[::1]:9" && c.isIPLiteral)
        for bad in ["http://x/", "ws://", "ws://h:0/", "ws://h:99999/", "nothing", "ws://h/a b"] {
            #expect(throws: WebSocketError.self, "\(bad)") { try WebSocketURL(parsing: bad) }
        }
    }
}

@Suite struct StageClientTokenTests {
    let claims: [String: Any] = [
        "jti": "worker-7", "topic": "st-abc", "resource": "arn:aws:ivs:us-east-1:1:stage/st-abc",
        "events_url": "wss://global.events.live-video.net", "whip_url": "https://abc.global-bm.whip.live-video.net",
        "capabilities": ["allow_publish": false, "allow_subscribe": true], "attributes": ["role": "VIRTUAL_PARTICIPANT", "n": 5],
        "version": "1.0", "exp": 4_000_000_000, "user_id": "w",
    ]

    @Test func decodesClaimsAndHidesTheToken() throws {
        let jwt = stageTestJWT(claims)
        let t = try StageToken(jwt)
        #expect(t.participantId == "worker-7" && t.topic == "st-abc" && t.userId == "w")
        #expect(t.eventsURL == "wss://global.events.live-video.net" && t.whipURL == "https://abc.global-bm.whip.live-video.net")
        #expect(t.allowSubscribe == true && t.allowPublish == false)
        #expect(t.attributes == ["role": "VIRTUAL_PARTICIPANT"], "non-string attributes are dropped")
        #expect(!t.turnMandatory && !t.legacyStage && !t.isExpired())
        #expect(!"\(t)".contains(jwt) && !String(reflecting: t).contains(jwt) && !"\(t.secret)".contains(jwt))
        #expect(Secrets.redact("header: Bearer \(jwt)") == "header: Bearer \(Secrets.mask)", "parsing registers the token")
    }

    @Test func versionBitsAndExpiry() throws {
        func token(_ extra: [String: Any]) throws -> StageToken { try StageToken(stageTestJWT(claims.merging(extra) { $1 })) }
        #expect(try token(["version": "1.1"]).turnMandatory)
        #expect(try token(["version": "1.2"]).legacyStage)
        let both = try token(["version": "1.3"])
        #expect(both.turnMandatory && both.legacyStage)
        #expect(try token(["exp": 1000]).isExpired())
    }

    @Test func malformedTokensGiveTypedErrorsWithoutTheToken() {
        let cases: [(String, String)] = [
            ("", "empty"),
            ("only.two", "not a JWT"),
            ("aaaa.!!!!.bbbb", "not base64url"),
            ("aaaa.\(Data("[1,2]".utf8).base64EncodedString()).bbbb", "not a JSON object"),
            (stageTestJWT(["topic": "x"]), "no jti"),
            (stageTestJWT(["jti": 5]), "jti claim is not a string"),
        ]
        for (raw, want) in cases {
            do {
                _ = try StageToken(raw)
                Issue.record("\(want): accepted")
            } catch {
                #expect(error.description.contains(want), "\(error.description)")
                if raw.count >= 8 { #expect(!error.description.contains(raw)) }
            }
        }
    }

    @Test func endpointsFromFlagsElseClaims() throws {
        let t = try StageToken(stageTestJWT(claims))
        let fromClaims = try StageEndpoints.resolve(token: t, events: nil, whip: nil)
        #expect(fromClaims.eventsURL == "wss://global.events.live-video.net/st-abc")
        #expect(fromClaims.whipURL == "https://abc.global-bm.whip.live-video.net")
        let fromFlags = try StageEndpoints.resolve(token: t, events: "ws://127.0.0.1:9/", whip: "http://127.0.0.1:9/")
        #expect(fromFlags.eventsURL == "ws://127.0.0.1:9/st-abc" && fromFlags.whipURL == "http://127.0.0.1:9")
        #expect(throws: StageTokenError("--events-url must be a ws:// or wss:// URL")) {
            try StageEndpoints.resolve(token: t, events: "http://x", whip: nil)
        }
        let bare = try StageToken(stageTestJWT(["jti": "a", "topic": "s"]))
        #expect(throws: StageTokenError("no events endpoint: give --events-url (the token has no events_url claim)")) {
            try StageEndpoints.resolve(token: bare, events: nil, whip: "http://x")
        }
        let noTopic = try StageToken(stageTestJWT(["jti": "a"]))
        #expect(throws: StageTokenError("the token has no topic (stage id) claim")) {
            try StageEndpoints.resolve(token: noTopic, events: "ws://x", whip: "http://x")
        }
    }
}

@Suite struct StageClientEventsTests {
    @Test func parsesMessages() throws {
        let state = #"{"type":"STAGE_STATE","payload":{"stageId":"st","participants":[{"id":"host","userId":"host-1","attributes":{"role":"HOST","x":1},"isPublishing":true},{"id":"w","userId":"","attributes":{},"isPublishing":false},{"id":"host","isPublishing":false}]}}"#
        guard case .stageState(let s) = try StageEvents.parse(state) else { Issue.record("not a snapshot"); return }
        #expect(s.stageId == "st")
        #expect(s.participants == [
            StageParticipant(id: "host", userId: "host-1", attributes: ["role": "HOST"], isPublishing: true),
            StageParticipant(id: "w", userId: nil, attributes: [:], isPublishing: false),
        ], "a repeated id keeps its first entry")
        #expect(try StageEvents.parse(#"{"type":"PONG"}"#) == .pong)
        #expect(try StageEvents.parse(#"{"type":"SOMETHING_NEW","payload":[]}"#) == .unknown(type: "SOMETHING_NEW"))
        for bad in ["", "nope", "[]", #"{"payload":{}}"#, #"{"type":"STAGE_STATE"}"#,
                    #"{"type":"STAGE_STATE","payload":{"participants":{}}}"#,
                    #"{"type":"STAGE_STATE","payload":{"participants":[{"userId":"x"}]}}"#,
                    #"{"type":"STAGE_STATE","payload":{"participants":[{"id":"a","isPublishing":"yes"}]}}"#] {
            #expect(throws: StageEventParseError.self, "\(bad)") { try StageEvents.parse(bad) }
        }
    }

    @Test func diffsSnapshots() {
        let a = StageParticipant(id: "a", userId: "ua", isPublishing: true)
        let b = StageParticipant(id: "b", userId: "ub", isPublishing: false)
        let c = StageParticipant(id: "c", isPublishing: true)
        let s1 = StageSnapshot(stageId: "s", participants: [a, b])
        #expect(StageEvents.diff(from: nil, to: s1) == [.joined(a), .joined(b)])
        var b2 = b; b2.isPublishing = true
        var a2 = a; a2.attributes = ["role": "HOST"]
        let s2 = StageSnapshot(stageId: "s", participants: [a2, b2, c])
        #expect(StageEvents.diff(from: s1, to: s2) == [.updated(a2), .publishingChanged(b2), .joined(c)])
        #expect(StageEvents.diff(from: s2, to: StageSnapshot(stageId: "s", participants: [c])) == [.left(a2), .left(b2)])
        #expect(StageEvents.diff(from: s2, to: s2).isEmpty)
    }

    @Test func desiredSetExcludesSelfVirtualAndSilentParticipants() {
        let snap = StageSnapshot(stageId: "s", participants: [
            StageParticipant(id: "host", userId: "host-1", isPublishing: true),
            StageParticipant(id: "c1", userId: "u1", attributes: ["role": "CALLER"], isPublishing: true),
            StageParticipant(id: "c2", userId: "u2", isPublishing: false),
            StageParticipant(id: "vp", userId: "w2", attributes: ["role": "VIRTUAL_PARTICIPANT"], isPublishing: true),
            StageParticipant(id: "me", userId: "w", isPublishing: true),
            StageParticipant(id: "x", userId: "ux", attributes: ["role": "host"], isPublishing: true),
        ])
        let want = StageSession.desired(snap, selfId: "me", hostUserId: "host-1", roleOverride: { $0 == "c1" ? .virtualParticipant : nil })
        #expect(want == [SlotVoice(participantId: "host", userId: "host-1", role: .host),
                         SlotVoice(participantId: "x", userId: "ux", role: .host)])
        let plain = StageSession.desired(snap, selfId: "me", hostUserId: nil, roleOverride: { _ in nil })
        #expect(plain.map(\.participantId) == ["host", "c1", "x"])
        #expect(plain[0].role == .caller, "without a hostUserId and no role attribute: CALLER")
    }
}

@Suite struct StageClientMixPlumbingTests {
    @Test func slotRoutingGivesEachSlotItsParticipantsGain() {
        var r = Routing()
        r.hostVolume = 90; r.callersVolume = 80; r.masterVolume = 50
        r.onAirCallerIds = ["c1", "u3"]
        r.participantVolumes = ["c1": 50, "host": 70]
        let voices: [SlotVoice?] = [
            SlotVoice(participantId: "host", userId: "h", role: .host), nil,
            SlotVoice(participantId: "c1", userId: "u1", role: .caller),
            SlotVoice(participantId: "c2", userId: "u2", role: .caller),
            SlotVoice(participantId: "c3", userId: "u3", role: .caller),
            SlotVoice(participantId: "v", userId: nil, role: .virtualParticipant),
        ]
        let s = SlotRouting.make(r, voices: voices)
        #expect(s.masterVolume == 50 && s.tracklistVolume == r.tracklistVolume && s.compression == r.compression)
        for (i, v) in voices.enumerated() {
            let slotGain = s.voiceGain(role: .caller, participantId: SlotRouting.slotId(i), userId: nil)
            let want = v.map { r.voiceGain(role: $0.role, participantId: $0.participantId, userId: $0.userId) } ?? 0
            #expect(abs(slotGain - want) < 1e-12, "slot \(i)")
        }
        #expect(abs(s.voiceGain(role: .caller, participantId: SlotRouting.slotId(0), userId: nil) - 0.63) < 1e-12)
        #expect(s.voiceGain(role: .caller, participantId: SlotRouting.slotId(3), userId: nil) == 0, "off air")
    }

    @Test func slotTableAssignsReleasesAndFrees() {
        let t = SlotTable(count: 2)
        let g0 = t.generation
        let i1 = PacketInbox(), i2 = PacketInbox(), i3 = PacketInbox()
        #expect(t.assign(SlotVoice(participantId: "a", userId: nil, role: .caller), inbox: i1) == 0)
        #expect(t.assign(SlotVoice(participantId: "b", userId: nil, role: .caller), inbox: i2) == 1)
        #expect(t.assign(SlotVoice(participantId: "c", userId: nil, role: .caller), inbox: i3) == nil, "full")
        t.release(slot: 0, inbox: i1)
        #expect(t.assign(SlotVoice(participantId: "c", userId: nil, role: .caller), inbox: i3) == nil, "draining is not free")
        t.free(slot: 0, inbox: i2)  // wrong inbox: ignored
        #expect(t.occupied == 2)
        t.free(slot: 0, inbox: i1)
        #expect(t.assign(SlotVoice(participantId: "c", userId: nil, role: .caller), inbox: i3) == 0)
        #expect(t.snapshot(after: g0) != nil && t.snapshot(after: t.generation) == nil)
    }

    @Test func inboxIsBounded() {
        let inbox = PacketInbox(capacity: 4)
        for k in 0..<10 { inbox.push(.init(arrival: Int64(k), packet: RTPPacket(payloadType: 111, sequenceNumber: UInt16(k), timestamp: 0, ssrc: 1))) }
        var out: [PacketInbox.Item] = []
        inbox.take(into: &out)
        #expect(out.map(\.arrival) == [6, 7, 8, 9] && inbox.dropped == 6)
        inbox.take(into: &out)
        #expect(out.count == 4)
    }

    @Test func backoffIsExponentialCappedAndJittered() {
        var g = StageTestRandom(seed: 7)
        var b = Backoff(initial: 0.5, factor: 2, cap: 8, jitter: 0.25)
        let d = (0..<8).map { _ in b.next(using: &g) }
        for (k, v) in d.enumerated() {
            let base = min(8, 0.5 * pow(2, Double(k)))
            #expect(v >= base * 0.75 - 1e-9 && v <= min(8, base * 1.25) + 1e-9, "attempt \(k): \(v)")
        }
        #expect(d.last! <= 8)
        #expect(Set(d.prefix(4).map { ($0 * 1000).rounded() }).count == 4)
        b.reset()
        #expect(b.next(using: &g) <= 0.625)
    }

    @Test func causeLogLogsOncePerCause() {
        var logger = Logger(label: "t")
        logger.logLevel = .critical
        let log = CauseLog(logger: logger)
        #expect(log.note("HTTP 404", "x"))
        #expect(!log.note("HTTP 404", "x"))
        #expect(log.note("HTTP 500", "y"))
        #expect(log.summary.map(\.cause) == ["HTTP 404", "HTTP 500"] && log.count("HTTP 404") == 2)
    }

    @Test func resolvesRedirectLocations() throws {
        let base = "http://127.0.0.1:8080/subscribe/host"
        #expect(try WHIPSubscriber.resolve("/r/subscribe/host", against: base) == "http://127.0.0.1:8080/r/subscribe/host")
        #expect(try WHIPSubscriber.resolve("http://10.0.0.1/x", against: base) == "http://10.0.0.1/x")
        #expect(try WHIPSubscriber.resolve("//other:9/y", against: base) == "http://other:9/y")
        #expect(try WHIPSubscriber.resolve("again", against: base) == "http://127.0.0.1:8080/subscribe/again")
        #expect(throws: WHIPError.unsafeRedirect("https to http would expose the token")) {
            try WHIPSubscriber.resolve("http://x/y", against: "https://a/subscribe/b")
        }
        #expect(throws: WHIPError.self) { try WHIPSubscriber.resolve("ftp://x/y", against: base) }
        let w = WHIPSubscriber(whipURL: "https://w.example/", token: SecretString("secret-token-value"))
        #expect(w.subscribeURL("caller 1/x") == "https://w.example/subscribe/caller%201%2Fx")
    }
}

/// A deterministic generator (SplitMix64) for reproducible random tests.
struct StageTestRandom: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
