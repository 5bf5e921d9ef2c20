import Foundation
import Logging
import DTLS
import ICE
import RTP
import SDP
import SRTP

/// The media path of one subscription (one remote participant): our recvonly offer, then ICE
/// (controlling) → DTLS (either role) → SRTP/SRTCP → decrypted Opus RTP to `onAudioRTP`, with
/// RTCP receiver reports going back every `receiverReportInterval`.
///
/// Thread-safe. Callbacks run on internal threads (the ICE receive loop for audio: its thread, or
/// once connected the `ReceiveLoop.readNow` caller; that loop or a timer thread for states), never while an internal lock is held, so they may call any
/// method, `close()` included. States are delivered one at a time, in order. Set the callbacks
/// before `applyAnswer`. Once `close()` returns (called from another thread than a callback), no
/// further audio callback starts.
public final class PeerConnection: @unchecked Sendable {
    public let label: String
    public let configuration: PeerConfiguration
    /// The SSRC of our receiver reports.
    public let localSSRC: UInt32
    public let localCandidates: [ICECandidate]
    /// Our certificate's fingerprint, as offered.
    public let localFingerprint: DTLSFingerprint

    private let logger: Logger
    private let agent: ICEAgent
    private let certificate: DTLSCertificate
    private let offerText: String
    private let cname: String
    private let wake = PeerWakeup()

    // Everything below is guarded by `lock`.
    private let lock = NSLock()
    private var current: PeerState = .new
    private var stateCallback: (@Sendable (PeerState) -> Void)?
    private var audioCallback: (@Sendable (RTPPacket, UInt64) -> Void)?
    private var answerApplied = false
    private var dtls: DTLSEndpoint?
    /// ICE has a selected pair: `agent.send` works from now on.
    private var iceSelected = false
    /// DTLS flights produced before ICE selected a pair (a server answering an early ClientHello).
    private var dtlsBacklog: [[UInt8]] = []
    private var inbound: SRTPSession?
    private var outbound: SRTPSession?
    private var audioPayloadType: UInt8
    private var rtcp: ReceiverRTCP
    private var counters = PeerStats()
    private var loggedDrops: Set<PeerDropCause> = []
    private var pendingStates: [PeerState] = []
    private var startNs: UInt64 = 0
    private var connectDeadlineNs: UInt64 = 0
    private var nextReportNs: UInt64 = 0
    /// Reused per packet: decryption happens in place here, and reports are built here.
    private var scratch: [UInt8] = []
    private var reportBuffer: [UInt8] = []

    /// A thread is delivering states; others leave theirs queued for it (so nobody blocks on a
    /// user callback, and a callback calling `close()` gets `.closed` right after it returns).
    private var delivering = false

    /// Gathers host candidates (binds the UDP sockets) and makes the DTLS certificate.
    public init(label: String, configuration: PeerConfiguration = PeerConfiguration(), logger: Logger) throws(PeerSetupError) {
        self.label = label
        self.configuration = configuration
        var log = logger
        log[metadataKey: "peer"] = "\(label)"
        self.logger = log
        // Here, on the caller's thread, rather than inside the handshake on the shared receive thread.
        SRTPSession.initializeLibrary()

        let consentTimeout = configuration.consentTimeout.asSeconds
        let iceConfiguration = ICEConfiguration(
            interfaces: configuration.interfaces ?? (configuration.loopbackOnly ? .loopbackOnly : .allExceptLoopback),
            ipv4: configuration.ipv4, ipv6: configuration.ipv6, port: configuration.port,
            connectTimeout: configuration.connectTimeout.asSeconds,
            consentInterval: configuration.consentInterval?.asSeconds ?? min(5, consentTimeout / 4),
            consentTimeout: consentTimeout)
        do { agent = try ICEAgent(configuration: iceConfiguration, logger: log) } catch { throw .ice(error) }
        do { certificate = try DTLSCertificate.generate(commonName: "shelcaster") } catch { throw .certificate(error) }

        localCandidates = agent.localCandidates
        localFingerprint = certificate.fingerprint
        localSSRC = UInt32.random(in: 1...UInt32.max)
        let chars = Array("abcdefghijklmnopqrstuvwxyz0123456789")
        cname = String((0..<16).map { _ in chars.randomElement() ?? "x" })
        audioPayloadType = configuration.opusPayloadType
        rtcp = ReceiverRTCP(localSSRC: localSSRC, cname: cname, clockRate: 48_000)

        let offer = makeSubscribeOffer(SubscribeOfferOptions(
            iceUfrag: agent.credentials.ufrag, icePwd: agent.credentials.pwd,
            fingerprint: SDPFingerprint(algorithm: certificate.fingerprint.algorithm.rawValue, bytes: certificate.fingerprint.bytes),
            candidates: agent.localCandidates.map {
                SDPCandidate(foundation: $0.foundation, priority: $0.priority, address: $0.addressString, port: $0.port,
                             type: $0.type.rawValue)
            },
            includeVideo: configuration.offerVideo, stereo: configuration.stereo,
            opusPayloadType: configuration.opusPayloadType))
        offerText = offer.serialized()
        scratch.reserveCapacity(1500)
        reportBuffer.reserveCapacity(256)
        self.logger.debug("peer created: \(localCandidates.count) host candidates \(localCandidates.map(\.description))")
    }

    deinit {
        wake.stop()
        agent.close()
    }

    // MARK: - Public interface

    /// Called with every state change, in order. Set it before `applyAnswer`.
    public var onState: (@Sendable (PeerState) -> Void)? {
        get { lock.lock(); defer { lock.unlock() }; return stateCallback }
        set { lock.lock(); stateCallback = newValue; lock.unlock() }
    }

    /// Decrypted audio RTP (the answer's Opus payload type only) with its arrival time: when the
    /// kernel received it, on the clock of `MediaClock.monotonicNanoseconds()`. Called on the ICE
    /// receive loop: return quickly.
    public var onAudioRTP: (@Sendable (RTPPacket, _ arrivalNs: UInt64) -> Void)? {
        get { lock.lock(); defer { lock.unlock() }; return audioCallback }
        set { lock.lock(); audioCallback = newValue; lock.unlock() }
    }

    public var state: PeerState {
        lock.lock(); defer { lock.unlock() }
        return current
    }

    /// The subscribe offer: recvonly Opus (+ video when configured), BUNDLE, rtcp-mux, actpass,
    /// our fingerprint, ICE credentials and host candidates. The same text on every call.
    public func makeOffer() -> String { offerText }

    /// Validates the answer and starts ICE; DTLS follows once a pair is selected. Errors leave
    /// the connection as it was (another answer may be applied).
    public func applyAnswer(_ sdp: String) throws(PeerAnswerError) {
        try checkCanApply()
        let plan = try AnswerPlan.make(sdp)
        let endpoint: DTLSEndpoint
        do {
            endpoint = try DTLSEndpoint(role: plan.role, certificate: certificate, expectedPeerFingerprint: plan.fingerprint,
                                        srtpProfiles: configuration.srtpProfiles,
                                        initialRetransmitTimeout: configuration.dtlsRetransmitTimeout)
        } catch {
            throw .dtlsSetup(error)
        }

        let now = MediaClock.monotonicNanoseconds()
        lock.lock()
        // Again under the lock: another thread may have applied or closed meanwhile.
        if case .closed = current { lock.unlock(); throw .closed }
        if answerApplied { lock.unlock(); throw .alreadyApplied }
        answerApplied = true
        dtls = endpoint
        audioPayloadType = plan.opusPayloadType
        rtcp = ReceiverRTCP(localSSRC: localSSRC, cname: cname, clockRate: plan.clockRate)
        counters.dtlsRole = plan.role
        startNs = now
        connectDeadlineNs = now &+ configuration.connectTimeout.asNanoseconds
        setStateLocked(.connecting)
        lock.unlock()

        logger.info("answer applied: \(plan.candidates.count) remote candidates (\(plan.answer.ignoredCandidates) ignored), \(plan.answer.iceLite ? "ice-lite" : "full ICE") peer, we are DTLS \(plan.role == .server ? "server (answer says active)" : "client (answer says passive)"), opus payload type \(plan.opusPayloadType), fingerprint \(plan.fingerprint.algorithm.rawValue)")
        deliverStates()
        startTimer()
        agent.start(remoteCredentials: plan.remoteCredentials, remoteCandidates: plan.candidates,
                    remoteIsLite: plan.answer.iceLite,
                    handlers: ICEHandlers(onState: { [weak self] in self?.iceStateChanged($0) },
                                          onDTLS: { [weak self] in self?.dtlsReceived($0) },
                                          onMedia: { [weak self] in self?.mediaReceived($0, arrivalNs: $1) }))
    }

    public var stats: PeerStats {
        lock.lock()
        var s = counters
        s.state = current
        if let dtls { s.dtls = dtls.counters }
        if let inbound { s.srtpInbound = inbound.counters }
        if let outbound { s.srtpOutbound = outbound.counters }
        s.audioSSRC = rtcp.audioSSRC
        s.audioSSRCChanges = rtcp.ssrcChanges
        s.audioPacketsLost = rtcp.lost
        s.audioJitterSeconds = rtcp.jitterSeconds
        s.lastSenderReport = rtcp.lastSenderReport
        s.roundTripTime = rtcp.roundTripTime
        lock.unlock()
        s.ice = agent.counters
        s.selectedPair = agent.selectedPair
        return s
    }

    /// Sends RTCP BYE and DTLS close_notify while the connection works, stops the threads and
    /// closes the sockets, then reports `.closed` (from inside a state callback: right after that
    /// callback returns). Idempotent.
    public func close() {
        lock.lock()
        if case .closed = current { lock.unlock(); return }
        if !isEndedLocked {
            if case .connected = current { sendReportLocked(now: MediaClock.monotonicNanoseconds(), bye: true) }
            if let dtls, dtls.state == .connecting || dtls.state == .connected {
                dtls.close()
                flushDTLSLocked()
            }
        }
        setStateLocked(.closed)
        lock.unlock()
        wake.stop()
        agent.close()
        deliverStates()
        logger.debug("peer closed")
    }

    // MARK: - ICE receive loop

    private func iceStateChanged(_ s: ICEState) {
        lock.lock()
        var teardown = false
        switch s {
        case .connected(let pair):
            if !isEndedLocked {
                iceSelected = true
                logger.debug("ICE selected \(pair)")
                let backlog = dtlsBacklog
                dtlsBacklog.removeAll()
                for d in backlog { sendLocked(d, what: "DTLS") }
                if let dtls, dtls.role == .client, dtls.state == .new {
                    let events = dtls.start()
                    flushDTLSLocked()
                    teardown = handleDTLSEventsLocked(events)
                }
            }
        case .failed(let reason):
            teardown = failLocked(.ice(reason))
        case .disconnected(let reason):
            if case .consentExpired(let seconds) = reason {
                teardown = failLocked(.consentLost(seconds: seconds))
            } else {
                teardown = failLocked(.ice(reason))
            }
        case .new, .checking, .closed:
            break
        }
        lock.unlock()
        wake.poke()
        deliverStates()
        if teardown { tearDown() }
    }

    private func dtlsReceived(_ bytes: [UInt8]) {
        lock.lock()
        guard !isEndedLocked, let dtls else { lock.unlock(); return }
        let events = dtls.feed(bytes)
        flushDTLSLocked()
        let teardown = handleDTLSEventsLocked(events)
        lock.unlock()
        // The retransmission deadline may have moved.
        wake.poke()
        deliverStates()
        if teardown { tearDown() }
    }

    private func mediaReceived(_ bytes: [UInt8], arrivalNs arrival: UInt64) {
        lock.lock()
        guard !isEndedLocked else { lock.unlock(); return }
        counters.mediaDatagrams &+= 1
        counters.mediaBytes &+= bytes.count
        guard let inbound else {
            dropLocked(.mediaBeforeKeys, "\(bytes.count)-byte SRTP datagram before the DTLS handshake finished")
            lock.unlock()
            return
        }
        // RFC 5761: the second byte of RTCP is a packet type 192...223, which RTP never uses there.
        if bytes.count >= 2, isRTCPPacketType(bytes[1]) {
            rtcpReceivedLocked(bytes, inbound, arrival)
            lock.unlock()
            return
        }
        // The payload type is in the clear: skip decrypting what we would drop (video can be
        // most of the traffic when the participant publishes it).
        if bytes.count >= 2, bytes[1] & 0x7F != audioPayloadType {
            dropLocked(.otherPayloadType, "payload type \(bytes[1] & 0x7F); audio is \(audioPayloadType)")
            lock.unlock()
            return
        }
        scratch.removeAll(keepingCapacity: true)
        scratch.append(contentsOf: bytes)
        do {
            try inbound.unprotect(inPlace: &scratch)
        } catch {
            dropLocked(Self.dropCause(error), "SRTP: \(error)")
            lock.unlock()
            return
        }
        let packet: RTPPacket
        do {
            packet = try RTPPacket.parse(scratch)
        } catch {
            dropLocked(.rtpMalformed, "\(error)")
            lock.unlock()
            return
        }
        let first = rtcp.audioSSRC == nil
        if rtcp.recordAudio(packet, arrivalNs: arrival) {
            logger.notice("audio SSRC changed to \(packet.ssrc); reception statistics restart")
        } else if first {
            logger.debug("first audio packet: SSRC \(packet.ssrc), sequence \(packet.sequenceNumber)")
        }
        counters.audioPackets &+= 1
        counters.audioPayloadBytes &+= packet.payload.count
        let callback = audioCallback
        lock.unlock()
        callback?(packet, arrival)
    }

    private func rtcpReceivedLocked(_ bytes: [UInt8], _ inbound: SRTPSession, _ arrival: UInt64) {
        scratch.removeAll(keepingCapacity: true)
        scratch.append(contentsOf: bytes)
        do {
            try inbound.unprotectRTCP(inPlace: &scratch)
        } catch {
            dropLocked(Self.dropCause(error), "SRTCP: \(error)")
            return
        }
        let packets: [RTCPPacket]
        do {
            packets = try RTCPPacket.parseCompound(scratch)
        } catch {
            dropLocked(.rtcpMalformed, "\(error)")
            return
        }
        counters.rtcpPacketsReceived &+= 1
        for p in packets {
            switch p {
            case .senderReport(let sr):
                counters.senderReportsReceived &+= 1
                rtcp.senderReport(sr, arrivalNs: arrival)
            case .goodbye(let bye):
                if let ssrc = rtcp.audioSSRC, bye.ssrcs.contains(ssrc) {
                    logger.info("audio sender \(ssrc) sent RTCP BYE")
                }
            case .other(let raw) where raw.packetType == RTCPPacketType.extendedReport:
                rtcp.extendedReport(body: raw.body, ntpNow: MediaClock.ntpNow())
            default:
                break
            }
        }
    }

    // MARK: - Timer thread

    private func startTimer() {
        let wake = self.wake
        let thread = Thread { [weak self] in
            while true {
                // The strong reference lasts only for the tick, never across the wait.
                guard let next = self?.timerTick() else { return }
                if !wake.wait(untilNs: next) { return }
            }
        }
        thread.name = "peer-timer"
        thread.start()
    }

    /// DTLS retransmissions, the connect deadline and receiver reports. Returns when to run
    /// next, or nil when the connection has ended.
    private func timerTick() -> UInt64? {
        let now = MediaClock.monotonicNanoseconds()
        var next = now &+ 500_000_000
        var teardown = false
        lock.lock()
        if isEndedLocked { lock.unlock(); return nil }
        if case .connecting = current, now >= connectDeadlineNs {
            teardown = failLocked(.connectTimeout(seconds: configuration.connectTimeout.asSeconds))
        } else {
            if let dtls, let due = dtls.nextTimeoutInterval {
                if due <= .zero {
                    let events = dtls.handleTimeout()
                    flushDTLSLocked()
                    teardown = handleDTLSEventsLocked(events)
                }
                if let again = dtls.nextTimeoutInterval { next = min(next, now &+ max(again.asNanoseconds, 1_000_000)) }
            }
            switch current {
            case .connecting:
                next = min(next, connectDeadlineNs)
            case .connected:
                if now >= nextReportNs {
                    sendReportLocked(now: now, bye: false)
                    // At least 100 ms apart, whatever the configuration says.
                    nextReportNs = now &+ max(configuration.receiverReportInterval.asNanoseconds, 100_000_000)
                }
                next = min(next, nextReportNs)
            default:
                break
            }
        }
        let ended = isEndedLocked
        lock.unlock()
        deliverStates()
        if teardown { tearDown() }
        return ended ? nil : next
    }

    // MARK: - Internals (lock held where the name says Locked)

    private var isEndedLocked: Bool {
        switch current {
        case .failed, .closed: return true
        default: return false
        }
    }

    private func checkCanApply() throws(PeerAnswerError) {
        lock.lock(); defer { lock.unlock() }
        if case .closed = current { throw .closed }
        if answerApplied { throw .alreadyApplied }
    }

    private func setStateLocked(_ s: PeerState) {
        current = s
        pendingStates.append(s)
    }

    /// Moves to `.failed` once; returns true when the caller must tear the transport down.
    private func failLocked(_ reason: PeerFailure) -> Bool {
        guard !isEndedLocked else { return false }
        logger.warning("peer connection failed: \(reason)")
        setStateLocked(.failed(reason))
        return true
    }

    /// After a failure: stop checks and consent (nothing more is sent). Outside the lock, since
    /// closing the agent reports to our ICE handler.
    private func tearDown() {
        wake.stop()
        agent.close()
    }

    private func handleDTLSEventsLocked(_ events: [DTLSEvent]) -> Bool {
        var teardown = false
        for e in events {
            switch e {
            case .connected(let keys):
                teardown = dtlsConnectedLocked(keys) || teardown
            case .failed(let failure):
                if case let .fingerprintMismatch(expected, actual) = failure {
                    teardown = failLocked(.fingerprintMismatch(expected: expected, actual: actual)) || teardown
                } else {
                    teardown = failLocked(.dtls(failure)) || teardown
                }
            case .closed:
                teardown = failLocked(.remoteClosed) || teardown
            case .firstDrop(let cause, let detail):
                logger.warning("DTLS dropped input (\(cause.rawValue)): \(detail); further drops of this cause are only counted")
            case .applicationData:
                break
            }
        }
        return teardown
    }

    private func dtlsConnectedLocked(_ keys: DTLSSRTPKeyingMaterial) -> Bool {
        guard !isEndedLocked else { return false }
        let profile = keys.profile
        do {
            inbound = try SRTPSession(profile: profile, key: keys.remoteKey, salt: keys.remoteSalt, direction: .inbound)
            outbound = try SRTPSession(profile: profile, key: keys.localKey, salt: keys.localSalt, direction: .outbound)
        } catch {
            return failLocked(.srtp(error.description))
        }
        let now = MediaClock.monotonicNanoseconds()
        counters.srtpProfile = profile
        counters.timeToConnect = .nanoseconds(Int64(clamping: now &- startNs))
        // A first report soon (the sender learns we are here), then every interval.
        nextReportNs = now &+ min(configuration.receiverReportInterval.asNanoseconds, 200_000_000)
        setStateLocked(.connected)
        // Handshakes done: from here the mix loop, when it drives the receive loop, reads our packets.
        agent.deliverInBatches()
        logger.info("connected in \(Double(now &- startNs) / 1e6) ms: \(keys)")
        return false
    }

    /// Sends what DTLS produced, or holds it until ICE has a pair.
    private func flushDTLSLocked() {
        guard let dtls else { return }
        for d in dtls.pendingOutput() {
            if iceSelected {
                sendLocked(d, what: "DTLS")
            } else if dtlsBacklog.count < 64 {
                dtlsBacklog.append(d)
            }
        }
    }

    private func sendLocked(_ bytes: [UInt8], what: String) {
        if !agent.send(bytes) { dropLocked(.sendFailed, "\(what) datagram of \(bytes.count) bytes not sent") }
    }

    private func sendReportLocked(now: UInt64, bye: Bool) {
        guard let outbound else { return }
        rtcp.makeReport(into: &reportBuffer, nowNs: now, ntpNow: MediaClock.ntpNow(),
                        includeRRTR: configuration.requestRoundTripTime, bye: bye)
        do {
            try outbound.protectRTCP(inPlace: &reportBuffer)
        } catch {
            dropLocked(.sendFailed, "SRTCP protect of our report failed: \(error)")
            return
        }
        if agent.send(reportBuffer) {
            counters.receiverReportsSent &+= 1
        } else {
            dropLocked(.sendFailed, "receiver report not sent")
        }
    }

    private func dropLocked(_ cause: PeerDropCause, _ detail: @autoclosure () -> String) {
        counters.dropped[cause, default: 0] &+= 1
        if loggedDrops.insert(cause).inserted {
            logger.warning("dropped (\(cause.rawValue)): \(detail()); further drops of this cause are only counted")
        } else {
            logger.trace("dropped (\(cause.rawValue)): \(detail())")
        }
    }

    private static func dropCause(_ error: SRTPError) -> PeerDropCause {
        switch error.cause {
        case .authentication: return .srtpAuthentication
        case .replay: return .srtpReplay
        default: return .srtpMalformed
        }
    }

    /// Delivers queued states in order, outside the state lock. Never waits: when another
    /// thread (or an outer call on this one) is delivering, it takes ours too.
    private func deliverStates() {
        lock.lock()
        if delivering { lock.unlock(); return }
        delivering = true
        while !pendingStates.isEmpty {
            let s = pendingStates.removeFirst()
            let callback = stateCallback
            lock.unlock()
            callback?(s)
            lock.lock()
        }
        delivering = false
        lock.unlock()
    }
}

/// Wakes the timer thread early (new DTLS deadline) or for good (stop).
final class PeerWakeup: @unchecked Sendable {
    private let condition = NSCondition()
    private var poked = false
    private var stopped = false

    func poke() {
        condition.lock(); poked = true; condition.signal(); condition.unlock()
    }

    func stop() {
        condition.lock(); stopped = true; condition.broadcast(); condition.unlock()
    }

    /// Waits until the monotonic deadline (at most 0.5 s), a poke or stop. False once stopped.
    func wait(untilNs deadline: UInt64) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        if !poked && !stopped {
            let now = MediaClock.monotonicNanoseconds()
            if deadline > now {
                let seconds = min(Double(deadline - now) / 1e9, 0.5)
                _ = condition.wait(until: Date(timeIntervalSinceNow: seconds))
            }
        }
        poked = false
        return !stopped
    }
}

extension Duration {
    var asSeconds: Double {
        let c = components
        return Double(c.seconds) + Double(c.attoseconds) / 1e18
    }

    /// Non-negative nanoseconds, saturating.
    var asNanoseconds: UInt64 {
        let c = components
        guard c.seconds >= 0, c.attoseconds >= 0 else { return 0 }
        let (whole, overflow) = UInt64(c.seconds).multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return UInt64.max }
        return whole &+ UInt64(c.attoseconds / 1_000_000_000)
    }
}
