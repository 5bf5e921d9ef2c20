import Foundation
import Logging
import Testing
import DTLS
import ICE
import RTP
import SDP
@testable import StageMedia

/// StageMedia without a remote peer: the offer, answer validation (typed errors, no side
/// effects), the RTCP receiver side, and a connect attempt that nobody answers. Loopback only.
@Suite("StageMedia offer, answer validation and RTCP")
struct StageMediaTests {
    static func loopbackPeer(_ configuration: PeerConfiguration = PeerConfiguration(loopbackOnly: true, ipv6: false),
                             label: String = "unit") throws -> PeerConnection {
        try PeerConnection(label: label, configuration: configuration, logger: Logger(label: "test.stagemedia", factory: { _ in SwiftLogNoOpLogHandler() }))
    }

    /// A well-formed answer in the shape IVS and aiortc give: BUNDLE, candidates in the first section only.
    static func answer(setup: String = "active", fingerprint: String? = nil, rtcpMux: Bool = true,
                       candidate: String = "candidate:1 1 udp 2130706431 127.0.0.1 9 typ host",
                       bundle: String = "a=group:BUNDLE 0 1", videoDirection: String = "inactive",
                       audioExtra: String = "") -> String {
        let fp = fingerprint ?? "sha-256 " + (0..<32).map { _ in "AB" }.joined(separator: ":")
        var lines = [
            "v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "t=0 0",
        ]
        if !bundle.isEmpty { lines.append(bundle) }
        lines += [
            "m=audio 9 UDP/TLS/RTP/SAVPF 111", "c=IN IP4 127.0.0.1", "a=mid:0", "a=sendonly",
            "a=rtpmap:111 opus/48000/2", "a=fmtp:111 minptime=10;useinbandfec=1",
            "a=ice-ufrag:rUfr", "a=ice-pwd:remotePasswordValue1234567", "a=fingerprint:\(fp)", "a=setup:\(setup)",
        ]
        if rtcpMux { lines.append("a=rtcp-mux") }
        if !candidate.isEmpty { lines.append("a=\(candidate)") }
        if !audioExtra.isEmpty { lines.append(audioExtra) }
        lines += [
            "m=video 9 UDP/TLS/RTP/SAVPF 96", "c=IN IP4 127.0.0.1", "a=mid:1", "a=\(videoDirection)",
            "a=rtpmap:96 VP8/90000", "a=ice-ufrag:rUfr", "a=ice-pwd:remotePasswordValue1234567",
            "a=fingerprint:\(fp)", "a=setup:\(setup)", "a=rtcp-mux",
        ]
        return lines.joined(separator: "\r\n") + "\r\n"
    }

    @Test func offerCarriesTransportAndRecvonlyMedia() throws {
        let peer = try Self.loopbackPeer()
        defer { peer.close() }
        let text = peer.makeOffer()
        #expect(peer.makeOffer() == text)
        let sd = try SessionDescription.parse(text)
        #expect(sd.bundleMids == ["0", "1"])
        #expect(sd.media.map(\.kind) == ["audio", "video"])
        for m in sd.media {
            #expect(m.direction == .recvonly)
            #expect(m.setup == .actpass)
            #expect(m.rtcpMux)
            #expect(m.fingerprints.first?.bytes == peer.localFingerprint.bytes)
            #expect(m.fingerprints.first?.algorithm == "sha-256")
            #expect((m.iceUfrag ?? "").count >= 4 && (m.icePwd ?? "").count >= 22)
        }
        let audio = sd.media[0]
        #expect(audio.rtpMaps.first?.encoding == "opus" && audio.rtpMaps.first?.payloadType == 111)
        let candidates = audio.candidates
        #expect(candidates.count == 1)
        #expect(candidates.first?.address == "127.0.0.1")
        #expect(candidates.first?.port == peer.localCandidates.first?.port)
        #expect(peer.state == .new)

        let audioOnly = try Self.loopbackPeer(PeerConfiguration(loopbackOnly: true, ipv6: false, offerVideo: false, opusPayloadType: 109))
        defer { audioOnly.close() }
        let sd2 = try SessionDescription.parse(audioOnly.makeOffer())
        #expect(sd2.media.map(\.kind) == ["audio"])
        #expect(sd2.bundleMids == ["0"])
        #expect(sd2.media[0].formats == ["109"])
    }

    struct BadAnswer: Sendable, CustomStringConvertible {
        var name: String
        var sdp: String
        var expected: PeerAnswerError
        var description: String { name }
    }

    static let badAnswers: [BadAnswer] = [
        BadAnswer(name: "not SDP", sdp: "hello", expected: .invalid(.unparsable(.missingVersion))),
        BadAnswer(name: "setup actpass", sdp: answer(setup: "actpass"), expected: .invalid(.setupInvalid("actpass"))),
        BadAnswer(name: "no rtcp-mux", sdp: answer(rtcpMux: false).replacingOccurrences(of: "a=rtcp-mux\r\n", with: ""),
                  expected: .rtcpMuxMissing),
        BadAnswer(name: "md5 fingerprint", sdp: answer(fingerprint: "md5 " + (0..<16).map { _ in "0F" }.joined(separator: ":")),
                  expected: .unsupportedFingerprint(["md5"])),
        BadAnswer(name: "only a TCP candidate", sdp: answer(candidate: "candidate:1 1 tcp 2130706431 127.0.0.1 9 typ host tcptype passive"),
                  expected: .invalid(.noCandidates)),
        BadAnswer(name: "IPv4-mapped candidate", sdp: answer(candidate: "candidate:1 1 udp 2130706431 ::ffff:127.0.0.1 9 typ host"),
                  expected: .noUsableCandidates),
        BadAnswer(name: "video active without BUNDLE", sdp: answer(bundle: "", videoDirection: "sendonly"),
                  expected: .notBundled("no a=group:BUNDLE holds the audio mid 0")),
        BadAnswer(name: "video outside the audio BUNDLE group", sdp: answer(bundle: "a=group:BUNDLE 0", videoDirection: "sendonly"),
                  expected: .notBundled("video section mid 1 is not in the audio section's BUNDLE group")),
    ]

    @Test(arguments: badAnswers)
    func badAnswerIsRefusedWithoutSideEffects(_ bad: BadAnswer) throws {
        let peer = try Self.loopbackPeer()
        defer { peer.close() }
        #expect(throws: bad.expected) { try peer.applyAnswer(bad.sdp) }
        #expect(peer.state == .new)
        #expect(peer.stats.ice.checksSent == 0)
    }

    @Test func answerErrorsNameTheProblem() {
        #expect(PeerAnswerError.rtcpMuxMissing.description.contains("rtcp-mux"))
        #expect(PeerAnswerError.unsupportedFingerprint(["md5"]).description.contains("md5"))
        #expect(PeerAnswerError.invalid(.setupInvalid("actpass")).description.contains("actpass"))
    }

    @Test func answerPlanPicksRoleStrongestFingerprintAndOpusType() throws {
        let sha256 = "sha-256 " + (0..<32).map { _ in "11" }.joined(separator: ":")
        let sha512 = "sha-512 " + (0..<64).map { _ in "22" }.joined(separator: ":")
        let text = Self.answer(setup: "passive", fingerprint: sha256, audioExtra: "a=fingerprint:\(sha512)")
            .replacingOccurrences(of: "opus/48000/2", with: "opus/48000/2\r\na=rtpmap:0 PCMU/8000")
        let plan = try AnswerPlan.make(text)
        #expect(plan.role == .client)
        #expect(plan.fingerprint.algorithm == .sha512 && plan.fingerprint.bytes == [UInt8](repeating: 0x22, count: 64))
        #expect(plan.opusPayloadType == 111 && plan.clockRate == 48_000)
        #expect(plan.candidates.map(\.port) == [9])
        #expect(try AnswerPlan.make(Self.answer(setup: "active")).role == .server)
        // An inactive, unbundled video section carries nothing and is accepted.
        #expect(throws: Never.self) { try AnswerPlan.make(Self.answer(bundle: "", videoDirection: "inactive")) }
    }

    @Test func applyOnceThenCloseReportsStatesInOrder() throws {
        let peer = try Self.loopbackPeer()
        let box = StageMediaStateBox()
        peer.onState = { box.append($0) }
        try peer.applyAnswer(Self.answer())
        #expect(peer.state == .connecting)
        #expect(throws: PeerAnswerError.alreadyApplied) { try peer.applyAnswer(Self.answer()) }
        peer.close()
        peer.close()
        #expect(peer.state == .closed)
        #expect(box.states == [.connecting, .closed])
        #expect(throws: PeerAnswerError.closed) { try peer.applyAnswer(Self.answer()) }
        #expect(peer.stats.ice.checksSent >= 1)
    }

    @Test(.timeLimit(.minutes(1)))
    func unansweredChecksFailWithinConnectTimeout() throws {
        // A bound socket that never answers: the checks go unanswered, without ICMP errors.
        let silent = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(silent) }
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_addr = in_addr(s_addr: UInt32(0x7F00_0001).bigEndian)
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &sin) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(silent, $0, len) } }
        _ = withUnsafeMutablePointer(to: &sin) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(silent, $0, &len) } }
        let port = UInt16(bigEndian: sin.sin_port)

        let peer = try Self.loopbackPeer(PeerConfiguration(loopbackOnly: true, ipv6: false, connectTimeout: .seconds(1)))
        defer { peer.close() }
        let box = StageMediaStateBox()
        // Closing from inside the failure callback (a timer or socket thread) must not deadlock.
        peer.onState = { [weak peer] s in
            box.append(s)
            if case .failed = s { peer?.close() }
        }
        let start = ContinuousClock.now
        try peer.applyAnswer(Self.answer(candidate: "candidate:1 1 udp 2130706431 127.0.0.1 \(port) typ host"))
        let failed = box.wait(timeout: .seconds(5)) { $0.contains { if case .failed = $0 { true } else { false } } }
        let elapsed = ContinuousClock.now - start
        #expect(failed)
        #expect(elapsed > .milliseconds(900) && elapsed < .seconds(3))
        let failure = box.states.compactMap { if case .failed(let f) = $0 { f } else { nil } }
        #expect(failure.count == 1)
        switch failure.first {
        case .ice(.timeout(seconds: 1))?, .connectTimeout(seconds: 1)?: break
        default: Issue.record("unexpected failure \(String(describing: failure.first))")
        }
        #expect(box.wait(timeout: .seconds(2)) { $0.last == .closed })
        #expect(box.states.count == 3 && box.states.first == .connecting)
        #expect(peer.state == .closed)
    }

    // MARK: - RTCP receiver side

    static func audio(_ seq: UInt16, ssrc: UInt32 = 0xA0D1_0001) -> RTPPacket {
        RTPPacket(payloadType: 111, sequenceNumber: seq, timestamp: UInt32(seq) &* 960, ssrc: ssrc, payload: [0xF8, 0xFF, 0xFE])
    }

    @Test func receiverReportEchoesTheSenderReport() throws {
        var r = ReceiverRTCP(localSSRC: 0x0102_0304, cname: "cname-test", clockRate: 48_000)
        let t0: UInt64 = 5_000_000_000
        for (i, seq) in (1000...1049).enumerated() where seq != 1020 {
            r.recordAudio(Self.audio(UInt16(seq)), arrivalNs: t0 + UInt64(i) * 20_000_000)
        }
        let srNTP: UInt64 = 0xE8AB_CDEF_1234_5678
        let sr = RTCPSenderReport(ssrc: 0xA0D1_0001, ntpTimestamp: srNTP, rtpTimestamp: 48_000, packetCount: 50, octetCount: 150)
        let taken = r.senderReport(sr, arrivalNs: t0 + 1_000_000_000)
        #expect(taken)
        // Another source's report is not the audio source's: ignored.
        let foreign = r.senderReport(RTCPSenderReport(ssrc: 99, ntpTimestamp: 1, rtpTimestamp: 1, packetCount: 1, octetCount: 1),
                                     arrivalNs: t0)
        #expect(!foreign)
        #expect(r.lastSenderReport?.ssrc == 0xA0D1_0001)
        var out: [UInt8] = []
        r.makeReport(into: &out, nowNs: t0 + 1_250_000_000, ntpNow: 0xE8AB_CE00_0000_0000, includeRRTR: true)
        let packets = try RTCPPacket.parseCompound(out)
        #expect(packets.count == 3)
        guard case .receiverReport(let rr)? = packets.first else { Issue.record("first packet is not an RR"); return }
        #expect(rr.ssrc == 0x0102_0304)
        let block = try #require(rr.reports.first)
        #expect(block.ssrc == 0xA0D1_0001)
        #expect(block.cumulativeLost == 1)
        #expect(block.highestSequence == 1049)
        #expect(block.lastSenderReport == 0xCDEF_1234)
        // 250 ms in 1/65536 s.
        #expect(abs(Int(block.delaySinceLastSenderReport) - 16_384) <= 1)
        guard case .sourceDescription(let sdes) = packets[1] else { Issue.record("second packet is not SDES"); return }
        #expect(sdes.cname(ssrc: 0x0102_0304) == "cname-test")
        guard case .other(let xr) = packets[2] else { Issue.record("third packet is not XR"); return }
        #expect(xr.packetType == 207)
        #expect(Array(xr.body[4..<8]) == [4, 0, 0, 2])
        #expect(Array(xr.body[8..<16]) == [0xE8, 0xAB, 0xCE, 0x00, 0, 0, 0, 0])

        // The BYE variant ends with a BYE for our SSRC.
        r.makeReport(into: &out, nowNs: t0 + 2_000_000_000, ntpNow: 0xE8AB_CF00_0000_0000, includeRRTR: false, bye: true)
        let withBye = try RTCPPacket.parseCompound(out)
        #expect(withBye.last == .goodbye(RTCPGoodbye(ssrcs: [0x0102_0304])))
    }

    @Test func reportBeforeAudioHasNoBlocksAndSSRCChangeRestarts() throws {
        var r = ReceiverRTCP(localSSRC: 7, cname: "c", clockRate: 48_000)
        var out: [UInt8] = []
        r.makeReport(into: &out, nowNs: 1, ntpNow: 1 << 32, includeRRTR: false)
        guard case .receiverReport(let rr)? = try RTCPPacket.parseCompound(out).first else { Issue.record("no RR"); return }
        #expect(rr.reports.isEmpty)
        let changes = [r.recordAudio(Self.audio(1, ssrc: 1), arrivalNs: 10), r.recordAudio(Self.audio(2, ssrc: 1), arrivalNs: 20),
                       r.recordAudio(Self.audio(500, ssrc: 2), arrivalNs: 30)]
        #expect(changes == [false, false, true])
        #expect(r.ssrcChanges == 1 && r.audioSSRC == 2 && r.reception.received == 1)
    }

    @Test func dlrrAboutUsGivesRoundTripTime() {
        var r = ReceiverRTCP(localSSRC: 0x0102_0304, cname: "c", clockRate: 48_000)
        let now: UInt64 = 0xE8AB_0000_0000_0000 | (UInt64(0x4000) << 16)  // compact = 0x0000_4000 + high bits
        let compactNow = MediaClock.compact(now)
        let lrr = compactNow &- 5243   // 80 ms ago
        let dlrr: UInt32 = 3277        // held 50 ms by the sender
        var body: [UInt8] = [0, 0, 0, 9, 5, 0, 0, 6]
        for v in [UInt32(0x0909_0909), lrr, dlrr, UInt32(0x0102_0304), lrr, dlrr] {
            body += [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)]
        }
        let rtt = r.extendedReport(body: body, ntpNow: now)
        let ms = rtt.map { Double($0.components.attoseconds) / 1e15 + Double($0.components.seconds) * 1000 }
        #expect(ms.map { abs($0 - 30) < 0.1 } == true)
        #expect(r.roundTripTime == rtt)
        // Truncated and foreign blocks change nothing.
        let none = r.extendedReport(body: [0, 0, 0, 9, 5, 0, 0, 9, 1, 2], ntpNow: now)
        #expect(none == nil)
        #expect(r.roundTripTime == rtt)
    }

    @Test func ntpClockIsNearTheWallClock() {
        let ntp = MediaClock.ntpNow()
        let unix = Double(ntp >> 32) - 2_208_988_800 + Double(ntp & 0xFFFF_FFFF) / 4_294_967_296
        #expect(abs(unix - Date().timeIntervalSince1970) < 1)
        let a = MediaClock.monotonicNanoseconds(), b = MediaClock.monotonicNanoseconds()
        #expect(b >= a)
    }
}

/// Records peer states from any thread; waits are bounded.
final class StageMediaStateBox: @unchecked Sendable {
    private let condition = NSCondition()
    private var recorded: [PeerState] = []

    func append(_ s: PeerState) {
        condition.lock(); recorded.append(s); condition.broadcast(); condition.unlock()
    }

    var states: [PeerState] {
        condition.lock(); defer { condition.unlock() }
        return recorded
    }

    func wait(timeout: Duration, _ done: ([PeerState]) -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18)
        condition.lock(); defer { condition.unlock() }
        while !done(recorded) {
            if !condition.wait(until: deadline) { return done(recorded) }
        }
        return true
    }
}
