import Foundation
import Logging
import Testing
import OpusCodec
import RTP
import SRTP
import DTLS
@testable import StageMedia

/// PeerConnection against a real WebRTC peer: aiortc (Python) answering our offer over loopback
/// and sending a 440 Hz sine at amplitude 0.25 as Opus. Skipped when aiortc is not installed.
@Suite("StageMedia PeerConnection against aiortc", .serialized)
struct StageMediaPeerTests {
    static let configuration = PeerConfiguration(loopbackOnly: true, consentTimeout: .seconds(3), connectTimeout: .seconds(10))

    @Test(.enabled(if: StageMediaAiortc.available, "python3 with aiortc, av and numpy is not installed"),
          .timeLimit(.minutes(1)), arguments: ["active", "passive", "active ice-lite"])
    func receivesToneReportsAndDropsJunk(_ mode: String) throws {
        let setup = mode.hasPrefix("passive") ? "passive" : "active"
        let iceLite = mode.hasSuffix("ice-lite")
        let logs = StageMediaLogCapture()
        let peer = try PeerConnection(label: "aiortc-\(mode)", configuration: Self.configuration, logger: logs.logger)
        let rec = StageMediaRecorder()
        peer.onState = { rec.state($0) }
        peer.onAudioRTP = { rec.audio($0, $1) }

        let offer = peer.makeOffer()
        #expect(offer.contains(" 127.0.0.1 \(peer.localCandidates.first { $0.address.ip.isIPv4 }?.port ?? 0) typ host"))
        let aiortc = try StageMediaAiortc(args: [setup, "--junk"] + (iceLite ? ["--ice-lite"] : []))
        defer { aiortc.stop() }
        let answer = try aiortc.answer(to: offer)
        #expect(answer.contains("a=setup:\(setup)"))
        #expect(answer.contains("a=ice-lite") == iceLite)
        #expect(answer.contains(" 127.0.0.1 "))

        try peer.applyAnswer(answer)
        #expect(rec.waitState(timeout: .seconds(15)) { $0.contains(.connected) }, "not connected: \(rec.states) \(aiortc.stderrTail)")
        // 2.5 s of audio by RTP timestamps, the peer's view of our receiver reports, its junk sent.
        #expect(rec.waitAudio(timeout: .seconds(15)) { packets in
            guard let first = packets.first, let last = packets.last else { return false }
            return last.packet.timestamp &- first.packet.timestamp >= 120_000
        })
        let rr = aiortc.waitLine(prefix: "RR ", timeout: .seconds(10)) { line in
            (StageMediaAiortc.json(line, "RR ")?["rtt"] as? Double) != nil
        }
        #expect(aiortc.waitLine(prefix: "JUNK ", timeout: .seconds(5)) != nil)
        // Give the junk time to arrive before reading the counters.
        Thread.sleep(forTimeInterval: 0.3)

        let stats = peer.stats
        #expect(stats.state == .connected)
        #expect(stats.dtlsRole == (setup == "active" ? .server : .client))
        // A full agent checks us too (we answer); an ICE-lite one never does.
        #expect(iceLite ? stats.ice.responsesSent == 0 : stats.ice.responsesSent >= 1)
        #expect(stats.ice.consentRequestsSent >= 2)
        let dtlsLine = try #require(aiortc.waitLine(prefix: "DTLS ", timeout: .seconds(1)))
        let dtlsInfo = try #require(StageMediaAiortc.json(dtlsLine, "DTLS "))
        #expect(dtlsInfo["role"] as? String == (setup == "active" ? "client" : "server"))
        let profileNames: [String: SRTPProfile] = ["SRTP_AES128_CM_SHA1_80": .aes128CmSha1_80,
                                                   "SRTP_AEAD_AES_128_GCM": .aeadAes128Gcm,
                                                   "SRTP_AEAD_AES_256_GCM": .aeadAes256Gcm]
        #expect(stats.srtpProfile != nil && stats.srtpProfile == profileNames[dtlsInfo["profile"] as? String ?? ""])

        // Receiver-report path: the sender saw our RR for its stream, with a plausible RTT.
        let rrInfo = try #require(rr.flatMap { StageMediaAiortc.json($0, "RR ") }, "aiortc never computed an RTT from our RR")
        #expect((rrInfo["ssrc"] as? NSNumber)?.uint32Value == peer.localSSRC)
        #expect((rrInfo["lost"] as? Int) == 0)
        let rtt = rrInfo["rtt"] as? Double ?? -1
        #expect(rtt > -0.005 && rtt < 0.25, "RTT \(rtt) s from aiortc")
        #expect(stats.receiverReportsSent >= 2)
        #expect(stats.senderReportsReceived >= 1)
        #expect(stats.lastSenderReport?.ssrc == stats.audioSSRC)
        #expect(stats.audioPacketsLost == 0)

        // Junk: 5 forged SRTP + 3 forged SRTCP packets fail authentication; 4 genuine video
        // packets are dropped by payload type. Each cause is logged once.
        #expect(stats.dropped(.srtpAuthentication) == 8)
        #expect(stats.dropped(.otherPayloadType) == 4)
        #expect(stats.dropped(.rtpMalformed) == 0 && stats.dropped(.rtcpMalformed) == 0)
        #expect(logs.count(.warning, containing: "(srtp-authentication)") == 1)
        #expect(logs.count(.warning, containing: "(other-payload-type)") == 1)

        // Audio: only the Opus payload type arrived; decode and measure the tone.
        let packets = rec.packets.sorted { $0.packet.sequenceNumber &- $1.packet.sequenceNumber > 0x8000 }
        #expect(packets.allSatisfy { $0.packet.payloadType == 111 && $0.packet.ssrc == stats.audioSSRC })
        let level = try StageMediaToneCheck.levelDb(packets.map(\.packet.payload), frequency: 440, skipSeconds: 0.5)
        #expect(abs(level - 20 * log10(0.25)) <= 1.0, "440 Hz at \(level) dBFS, expected \(20 * log10(0.25)) ± 1")

        // Arrival stamps are monotonic in delivery order and span roughly the media time.
        let arrivals = rec.packets.map(\.arrivalNs)
        #expect(zip(arrivals, arrivals.dropFirst()).allSatisfy { $0 <= $1 })
        if let a = packets.first, let b = packets.last {
            let mediaSeconds = Double(b.packet.timestamp &- a.packet.timestamp) / 48_000
            let arrivalSeconds = Double(b.arrivalNs - a.arrivalNs) / 1e9
            #expect(abs(mediaSeconds - arrivalSeconds) < 0.5, "media \(mediaSeconds) s arrived over \(arrivalSeconds) s")
        }
        // Mono Opus, as the IVS SDK sends by default.
        #expect(packets.allSatisfy { (try? OpusDecoder.channels(of: $0.packet.payload)) == 1 })

        // Secrets never reach the log: the remote ICE password, ours.
        let remotePwd = answer.split(separator: "\r\n").first { $0.hasPrefix("a=ice-pwd:") }.map { String($0.dropFirst(10)) }
        let localPwd = offer.split(separator: "\r\n").first { $0.hasPrefix("a=ice-pwd:") }.map { String($0.dropFirst(10)) }
        #expect(remotePwd != nil && localPwd != nil)
        #expect(logs.count(nil, containing: remotePwd ?? "-") == 0)
        #expect(logs.count(nil, containing: localPwd ?? "-") == 0)

        // Our close says goodbye: aiortc sees DTLS close_notify and closes.
        peer.close()
        #expect(rec.states.last == .closed)
        #expect(aiortc.waitLine(prefix: "STATE closed", timeout: .seconds(5)) != nil, "aiortc did not see our close")
        // Every packet counted was delivered, and nothing arrives after close returned.
        let countAfterClose = rec.packets.count
        #expect(peer.stats.audioPackets == countAfterClose)
        Thread.sleep(forTimeInterval: 0.2)
        #expect(rec.packets.count == countAfterClose)
        #expect(rec.states.filter { if case .failed = $0 { true } else { false } }.isEmpty)
    }

    @Test(.enabled(if: StageMediaAiortc.available, "python3 with aiortc, av and numpy is not installed"),
          .timeLimit(.minutes(1)))
    func wrongFingerprintFails() throws {
        let peer = try PeerConnection(label: "aiortc-badfp", configuration: Self.configuration, logger: StageMediaLogCapture().logger)
        let rec = StageMediaRecorder()
        peer.onState = { rec.state($0) }
        peer.onAudioRTP = { rec.audio($0, $1) }
        defer { peer.close() }
        let aiortc = try StageMediaAiortc(args: ["active"])
        defer { aiortc.stop() }
        let answer = try aiortc.answer(to: peer.makeOffer())
        // Flip the last hex digit of every fingerprint the answer carries.
        let mangled = answer.split(separator: "\r\n", omittingEmptySubsequences: false).map { line -> String in
            guard line.hasPrefix("a=fingerprint:"), let last = line.last else { return String(line) }
            return line.dropLast() + (last == "0" ? "1" : "0")
        }.joined(separator: "\r\n")
        #expect(mangled != answer)
        let start = ContinuousClock.now
        try peer.applyAnswer(mangled)
        let failed = rec.waitState(timeout: .seconds(8)) { $0.contains { if case .failed = $0 { true } else { false } } }
        #expect(failed, "no failure: \(rec.states)")
        #expect(ContinuousClock.now - start < .seconds(5))
        let failures = rec.states.compactMap { if case .failed(let f) = $0 { f } else { nil } }
        #expect(failures.count == 1)
        guard case .fingerprintMismatch(let expected, let actual)? = failures.first else {
            Issue.record("expected a fingerprint mismatch, got \(failures)")
            return
        }
        #expect(expected != actual && expected.count == actual.count)
        #expect(!rec.states.contains(.connected))
        #expect(rec.packets.isEmpty)
        #expect(peer.stats.audioPackets == 0)
    }

    @Test(.enabled(if: StageMediaAiortc.available, "python3 with aiortc, av and numpy is not installed"),
          .timeLimit(.minutes(1)))
    func killedPeerFailsWithConsentLoss() throws {
        let peer = try PeerConnection(label: "aiortc-killed", configuration: Self.configuration, logger: StageMediaLogCapture().logger)
        let rec = StageMediaRecorder()
        peer.onState = { rec.state($0) }
        peer.onAudioRTP = { rec.audio($0, $1) }
        defer { peer.close() }
        let aiortc = try StageMediaAiortc(args: ["passive"])
        defer { aiortc.stop() }
        try peer.applyAnswer(try aiortc.answer(to: peer.makeOffer()))
        #expect(rec.waitState(timeout: .seconds(15)) { $0.contains(.connected) }, "not connected: \(rec.states)")
        #expect(rec.waitAudio(timeout: .seconds(10)) { $0.count >= 25 })

        aiortc.kill()
        let killedAt = ContinuousClock.now
        let failed = rec.waitState(timeout: .seconds(7)) { $0.contains { if case .failed = $0 { true } else { false } } }
        let elapsed = ContinuousClock.now - killedAt
        #expect(failed, "no failure after the peer died: \(rec.states)")
        #expect(rec.states.last == .failed(.consentLost(seconds: 3)))
        // Consent had been confirmed at most one interval (0.75 s, ±20 %) before the kill, so the
        // loss shows 2.1...3 s after it; the upper bound leaves 1 s for a loaded machine.
        #expect(elapsed > .seconds(1.5) && elapsed < .seconds(4), "consent loss after \(elapsed)")
        #expect(peer.state == .failed(.consentLost(seconds: 3)))
        peer.close()
        #expect(rec.states.last == .closed)
        #expect(rec.states.filter { if case .failed = $0 { true } else { false } }.count == 1)
    }
}

// MARK: - Test support

/// Audio and states as the peer connection delivers them (any thread); waits are bounded.
final class StageMediaRecorder: @unchecked Sendable {
    struct Received { var packet: RTPPacket; var arrivalNs: UInt64 }
    private let condition = NSCondition()
    private var recordedStates: [PeerState] = []
    private var recordedPackets: [Received] = []

    func state(_ s: PeerState) { condition.lock(); recordedStates.append(s); condition.broadcast(); condition.unlock() }
    func audio(_ p: RTPPacket, _ at: UInt64) {
        condition.lock(); recordedPackets.append(Received(packet: p, arrivalNs: at)); condition.broadcast(); condition.unlock()
    }

    var states: [PeerState] { condition.lock(); defer { condition.unlock() }; return recordedStates }
    var packets: [Received] { condition.lock(); defer { condition.unlock() }; return recordedPackets }

    func waitState(timeout: Duration, _ done: ([PeerState]) -> Bool) -> Bool { wait(timeout) { done(self.recordedStates) } }
    func waitAudio(timeout: Duration, _ done: ([Received]) -> Bool) -> Bool { wait(timeout) { done(self.recordedPackets) } }

    private func wait(_ timeout: Duration, _ done: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18)
        condition.lock(); defer { condition.unlock() }
        while !done() {
            if !condition.wait(until: deadline) { return done() }
        }
        return true
    }
}

/// Captures log records, to count what is logged and check what never is.
final class StageMediaLogCapture: @unchecked Sendable {
    private let lock = NSLock()
    private var records: [(level: Logger.Level, text: String)] = []

    var logger: Logger {
        var l = Logger(label: "test.stagemedia", factory: { _ in Handler(capture: self) })
        l.logLevel = .trace
        return l
    }

    /// Records at `level` (any level when nil) whose message or metadata contains `text`.
    func count(_ level: Logger.Level?, containing text: String) -> Int {
        lock.lock(); defer { lock.unlock() }
        return records.filter { (level == nil || $0.level == level) && $0.text.contains(text) }.count
    }

    fileprivate func append(_ level: Logger.Level, _ text: String) {
        lock.lock(); records.append((level, text)); lock.unlock()
    }

    struct Handler: LogHandler {
        let capture: StageMediaLogCapture
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            let merged = metadata.merging(event.metadata ?? [:]) { $1 }
            capture.append(event.level, "\(event.message) \(merged)")
        }
    }
}

/// Decodes Opus payloads in order and measures one tone's level on the left channel.
enum StageMediaToneCheck {
    static func levelDb(_ payloads: [[UInt8]], frequency: Double, skipSeconds: Double) throws -> Double {
        let decoder = try OpusDecoder()
        var left: [Float] = []
        var frame = [Float](repeating: 0, count: OpusDecoder.maxPacketFrames * OpusDecoder.channels)
        for p in payloads {
            let n = try frame.withUnsafeMutableBufferPointer { buf in
                try decoder.decode(p, into: buf.baseAddress!, maxFrames: OpusDecoder.maxPacketFrames)
            }
            for i in 0..<n { left.append(frame[2 * i]) }
        }
        let skip = Int(skipSeconds * 48_000)
        guard left.count > skip + 48_000 else { return -200 }
        // Short windows, power-averaged: robust to a phase jump anywhere in the stream.
        let window = 4800
        var power = 0.0, windows = 0
        var i = skip
        while i + window <= left.count {
            let a = amplitude(left[i..<(i + window)], frequency: frequency)
            power += a * a
            windows += 1
            i += window
        }
        return 10 * log10(max(power / Double(windows), 1e-20))
    }

    /// Goertzel with a Hann window (gain-corrected): the amplitude of one sinusoid.
    static func amplitude(_ x: ArraySlice<Float>, frequency: Double) -> Double {
        let n = x.count
        let c = 2 * cos(2 * Double.pi * frequency / 48_000)
        var s1 = 0.0, s2 = 0.0, windowSum = 0.0
        for (k, v) in x.enumerated() {
            let w = 0.5 - 0.5 * cos(2 * Double.pi * Double(k) / Double(n - 1))
            windowSum += w
            let s0 = Double(v) * w + c * s1 - s2
            s2 = s1
            s1 = s0
        }
        return 2 * (s1 * s1 + s2 * s2 - c * s1 * s2).squareRoot() / windowSum
    }
}

/// The aiortc peer: a Python child answering our offer (JSON line on stdin) and reporting on
/// stdout, one line each: `ANSWER <json sdp>`, `STATE <state>`, `DTLS {...}`, `RR {...}`, `JUNK {...}`.
/// It exits when its stdin closes.
final class StageMediaAiortc: @unchecked Sendable {
    static let available: Bool = {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", "import aiortc, aioice, av, numpy"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return false }
        p.waitUntilExit()
        return p.terminationStatus == 0
    }()

    private let process = Process()
    private let input = Pipe()
    private let output = Pipe()
    private let errors = Pipe()
    private let scriptPath: String
    private let condition = NSCondition()
    private var lines: [String] = []
    private var partial = Data()
    private var errorText = Data()

    init(args: [String]) throws {
        scriptPath = FileManager.default.temporaryDirectory.appendingPathComponent("stagemedia-aiortc-\(UUID().uuidString).py").path
        try Self.script.write(toFile: scriptPath, atomically: true, encoding: .utf8)
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", scriptPath] + args
        process.standardInput = input
        process.standardOutput = output
        process.standardError = errors
        output.fileHandleForReading.readabilityHandler = { [weak self] h in self?.received(h.availableData) }
        errors.fileHandleForReading.readabilityHandler = { [weak self] h in
            let d = h.availableData
            guard let self else { return }
            self.condition.lock(); self.errorText.append(d); if self.errorText.count > 20_000 { self.errorText.removeFirst(10_000) }
            self.condition.unlock()
        }
        try process.run()
    }

    private func received(_ data: Data) {
        condition.lock()
        partial.append(data)
        while let nl = partial.firstIndex(of: 0x0A) {
            lines.append(String(decoding: partial[partial.startIndex..<nl], as: UTF8.self))
            partial = Data(partial[(nl + 1)...])
        }
        condition.broadcast()
        condition.unlock()
    }

    var stderrTail: String {
        condition.lock(); defer { condition.unlock() }
        return String(decoding: errorText.suffix(2000), as: UTF8.self)
    }

    /// Sends our offer and returns aiortc's answer SDP.
    func answer(to offer: String) throws -> String {
        let request = try JSONSerialization.data(withJSONObject: ["sdp": offer]) + Data([0x0A])
        input.fileHandleForWriting.write(request)
        guard let line = waitLine(prefix: "ANSWER ", timeout: .seconds(20)),
              let sdp = try JSONSerialization.jsonObject(with: Data(line.dropFirst(7).utf8), options: [.fragmentsAllowed]) as? String
        else { throw StageMediaTestError("aiortc gave no answer; stderr: \(stderrTail)") }
        return sdp
    }

    /// The latest line with `prefix` that satisfies `accept`, waiting up to `timeout`.
    func waitLine(prefix: String, timeout: Duration, accept: (String) -> Bool = { _ in true }) -> String? {
        let deadline = Date().addingTimeInterval(Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18)
        condition.lock(); defer { condition.unlock() }
        while true {
            if let l = lines.last(where: { $0.hasPrefix(prefix) && accept($0) }) { return l }
            if !condition.wait(until: deadline) { return lines.last { $0.hasPrefix(prefix) && accept($0) } }
        }
    }

    static func json(_ line: String, _ prefix: String) -> [String: Any]? {
        guard line.hasPrefix(prefix) else { return nil }
        return (try? JSONSerialization.jsonObject(with: Data(line.dropFirst(prefix.count).utf8))) as? [String: Any]
    }

    /// SIGKILL: the peer vanishes without a word (no DTLS close, no RTCP BYE).
    func kill() {
        if process.isRunning { Glibc.kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    func stop() {
        try? input.fileHandleForWriting.close()
        let deadline = Date().addingTimeInterval(3)
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        if process.isRunning { process.terminate(); Thread.sleep(forTimeInterval: 0.5) }
        if process.isRunning { Glibc.kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        output.fileHandleForReading.readabilityHandler = nil
        errors.fileHandleForReading.readabilityHandler = nil
        try? FileManager.default.removeItem(atPath: scriptPath)
    }

    static let script = #"""
import asyncio, fractions, json, os, sys, threading, time
import numpy as np
import av
import aioice.ice
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription

# aioice leaves 127.0.0.1 out of its host candidates; this peer lives on loopback only.
aioice.ice.get_host_addresses = lambda use_ipv4=True, use_ipv6=False: ["127.0.0.1"] if use_ipv4 else []

RATE, FRAME = 48000, 960

def out(*parts):
    print(*parts, flush=True)

class Sine(MediaStreamTrack):
    """440 Hz at amplitude 0.25 as s16 mono 48 kHz frames of 20 ms, paced in real time, encoded
    here as mono Opus (64 kb/s, in-band FEC) like the IVS SDK sends. Handing aiortc the raw mono
    frames instead would go through its stereo resampler, whose mono upmix is 3 dB down."""
    kind = "audio"

    def __init__(self, freq, amp):
        super().__init__()
        self.freq, self.amp, self.n, self.t0 = freq, amp, 0, None
        self.encoder = av.CodecContext.create("libopus", "w")
        self.encoder.sample_rate = RATE
        self.encoder.layout = "mono"
        self.encoder.format = "s16"
        self.encoder.bit_rate = 64000
        self.encoder.time_base = fractions.Fraction(1, RATE)
        self.encoder.options = {"application": "audio", "frame_duration": "20", "fec": "1"}

    async def recv(self):
        while True:
            if self.t0 is None:
                self.t0 = time.monotonic()
            wait = self.t0 + self.n / RATE - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            pts = self.n
            k = np.arange(pts, pts + FRAME)
            pcm = np.round(self.amp * 32767 * np.sin(2 * np.pi * self.freq * k / RATE)).astype(np.int16)
            frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = RATE
            frame.pts = pts
            frame.time_base = fractions.Fraction(1, RATE)
            self.n += FRAME
            encoded = self.encoder.encode(frame)
            if encoded:
                packet = av.Packet(bytes(encoded[0]))
                packet.pts = pts
                packet.time_base = fractions.Fraction(1, RATE)
                return packet

async def send_junk(dtls):
    ice = dtls.transport
    for i in range(5):   # SRTP-shaped but forged: fails authentication
        await ice._send(bytes([0x80, 111, 0, i, 0, 0, 0, i, 1, 2, 3, 4]) + os.urandom(88))
    for i in range(3):   # SRTCP-shaped (RR) but forged
        await ice._send(bytes([0x81, 201, 0, 7]) + os.urandom(36))
    for i in range(4):   # genuine SRTP, but a video payload type on another SSRC
        await dtls._send_rtp(bytes([0x80, 96, 0, 10 + i, 0, 0, 1, i, 0x0B, 0xAD, 0xF0, 0x0D]) + os.urandom(40))
    out("JUNK", json.dumps({"srtp": 5, "srtcp": 3, "video": 4}))

def behave_as_ice_lite(conn):
    """aioice as an ICE-lite agent (RFC 8445 2.5): it sends no checks and no consent requests and
    only answers; a pair is usable once the remote has checked it."""
    State = aioice.ice.CandidatePair.State
    checked = set()
    answer_check = conn.check_incoming

    def check_incoming(message, addr, protocol):
        checked.add((id(protocol), tuple(addr[:2])))
        answer_check(message, addr, protocol)

    async def check_start(pair):
        conn.check_state(pair, State.IN_PROGRESS)
        while (id(pair.protocol), tuple(pair.remote_addr[:2])) not in checked:
            await asyncio.sleep(0.02)
        pair.nominated = pair.nominated or pair.remote_nominated
        conn.check_state(pair, State.SUCCEEDED)
        conn.check_complete(pair)

    async def no_consent():
        return None

    conn.check_incoming, conn.check_start, conn.query_consent = check_incoming, check_start, no_consent

async def main():
    setup = sys.argv[1] if len(sys.argv) > 1 else "active"
    junk = "--junk" in sys.argv
    ice_lite = "--ice-lite" in sys.argv
    offer = json.loads(sys.stdin.readline())["sdp"]
    loop = asyncio.get_running_loop()
    done = asyncio.Event()

    def watch_stdin():
        sys.stdin.read()  # EOF: the test is done with us (or gone)
        loop.call_soon_threadsafe(done.set)
    threading.Thread(target=watch_stdin, daemon=True).start()

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    connected = asyncio.Event()

    @pc.on("connectionstatechange")
    async def on_state():
        out("STATE", pc.connectionState)
        if pc.connectionState == "connected":
            connected.set()

    await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
    sender = None
    for t in pc.getTransceivers():
        if t.kind == "audio" and sender is None:
            sender = pc.addTrack(Sine(440.0, 0.25))
    if setup == "passive":
        # As stage/localstage.py does: force the DTLS role before answering, so the answer says
        # a=setup:passive and aiortc really is the DTLS server.
        for t in pc.getTransceivers():
            t.receiver.transport._set_role("server")
    if ice_lite:
        behave_as_ice_lite(pc.getTransceivers()[0].receiver.transport.transport._connection)
    answer = await pc.createAnswer()
    await pc.setLocalDescription(answer)
    sdp = pc.localDescription.sdp
    if ice_lite:
        sdp = sdp.replace("\r\nt=0 0\r\n", "\r\nt=0 0\r\na=ice-lite\r\n", 1)
    out("ANSWER", json.dumps(sdp))

    reported = junk_sent = False
    while not done.is_set():
        try:
            await asyncio.wait_for(done.wait(), 0.5)
        except asyncio.TimeoutError:
            pass
        if not connected.is_set() or pc.connectionState != "connected":
            continue
        dtls = sender.transport
        if not reported:
            prof = dtls._ssl.get_selected_srtp_profile() if dtls._ssl else b""
            out("DTLS", json.dumps({"role": dtls._role, "profile": prof.decode() if prof else None}))
            reported = True
        if junk and not junk_sent:
            await send_junk(dtls)
            junk_sent = True
        stats = await sender.getStats()
        for s in stats.values():
            if s.type == "remote-inbound-rtp":
                out("RR", json.dumps({"ssrc": s.ssrc, "lost": s.packetsLost, "rtt": s.roundTripTime,
                                      "fractionLost": s.fractionLost}))
    await pc.close()

asyncio.run(main())
"""#
}

struct StageMediaTestError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}
