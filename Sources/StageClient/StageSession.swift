import AudioCore
import Foundation
import HTTPClient
import Logging
import Routing
import RTP
import SDP
import ShowControl

/// Timing of subscriptions.
public struct SubscriptionTuning: Sendable {
    /// ICE + DTLS must be up this long after the answer.
    public var connectTimeout: Double = 10
    /// Connected but nothing received (no RTP, no RTCP) for this long: the peer is taken for dead
    /// and resubscribed. A sender in DTX still sends a frame every 400 ms, and a paused one still
    /// sends RTCP, so silence this long means a broken path.
    public var silenceTimeout: Double = 5
    /// A subscription connected at least this long resets the backoff.
    public var healthyAfter: Double = 10
    public var backoff = Backoff(initial: 0.3, factor: 2, cap: 8, jitter: 0.25)
    public init() {}
}

/// What one participant's subscriptions amounted to.
public struct SubscriptionStats: Sendable, Equatable {
    public var attempts = 0
    public var connected = 0
    public var failures = 0
    public var deletes = 0
    public var packets = 0
    /// Packets of another payload type than the answer's Opus one (dropped).
    public var foreignPackets = 0
    /// Seconds from the participant becoming wanted to its first subscription POST.
    public var firstPostDelay: Double?
}

/// The orchestrator: desired set = publishing participants minus ourselves (the token's jti)
/// minus VIRTUAL_PARTICIPANTs; one `ParticipantLink` (its own thread, its own resubscribe loop)
/// per wanted participant, a voice slot for each.
public final class StageSession: @unchecked Sendable {
    public struct Configuration: Sendable {
        public var selfParticipantId: String
        public var hostUserId: String?
        public var tuning = SubscriptionTuning()
        public init(selfParticipantId: String, hostUserId: String? = nil) {
            self.selfParticipantId = selfParticipantId; self.hostUserId = hostUserId
        }
    }

    let config: Configuration
    let whip: WHIPSubscriber
    let peerFactory: StagePeerFactory
    let slots: SlotTable
    let recorder: RTPRecorder?
    let control: (any ShowControl)?
    let causes: CauseLog
    let logger: Logger
    /// Monotonic ns at program time 0.
    let startNs: UInt64

    private let lock = NSLock()
    private var snapshot: StageSnapshot?
    private var links: [String: ParticipantLink] = [:]
    private var stopping: [ParticipantLink] = []
    private var finishedStats: [String: SubscriptionStats] = [:]
    private var voices: [String: SlotVoice] = [:]
    private var order: [String] = []
    private let wake = Wakeup()
    private let done = DispatchSemaphore(value: 0)
    private var started = false

    public init(config: Configuration, whip: WHIPSubscriber, peerFactory: @escaping StagePeerFactory, slots: SlotTable,
                recorder: RTPRecorder?, control: (any ShowControl)?, causes: CauseLog, logger: Logger, startNs: UInt64) {
        self.config = config; self.whip = whip; self.peerFactory = peerFactory; self.slots = slots
        self.recorder = recorder; self.control = control; self.causes = causes; self.logger = logger; self.startNs = startNs
    }

    /// A new STAGE_STATE (from the events thread): reconciled at once on the session thread.
    public func update(_ snap: StageSnapshot, changes: [StageChange]) {
        for c in changes {
            switch c {
            case .joined(let p): logger.info("participant joined", metadata: ["participant": .string(p.id), "publishing": .stringConvertible(p.isPublishing)])
            case .left(let p): logger.info("participant left", metadata: ["participant": .string(p.id)])
            case .publishingChanged(let p): logger.info(p.isPublishing ? "participant publishing" : "participant stopped publishing", metadata: ["participant": .string(p.id)])
            case .updated(let p): logger.debug("participant updated", metadata: ["participant": .string(p.id)])
            }
        }
        lock.lock()
        snapshot = snap
        lock.unlock()
        wake.poke()
    }

    public func start() {
        lock.lock(); started = true; lock.unlock()
        let t = Thread { [self] in
            while !self.wake.wait(0.25) { self.reconcile() }
            self.done.signal()
        }
        t.name = "stage-session"
        t.start()
    }

    /// Ends every subscription (close + DELETE), bounded.
    public func stop(timeout: Double = 5) {
        wake.set()
        lock.lock()
        let wasStarted = started
        lock.unlock()
        if wasStarted { _ = done.wait(timeout: .now() + 2) }
        lock.lock()
        let all = Array(links.values) + stopping
        links.removeAll()
        stopping = all
        lock.unlock()
        for l in all { l.stop() }
        let deadline = Date().addingTimeInterval(timeout)
        for l in all { _ = l.join(until: deadline) }
        lock.lock()
        for l in all { merge(l) }
        stopping.removeAll()
        lock.unlock()
    }

    /// Who should be subscribed, per the latest snapshot, with their roles.
    public static func desired(_ snap: StageSnapshot?, selfId: String, hostUserId: String?,
                               roleOverride: (String) -> ParticipantRole?) -> [SlotVoice] {
        guard let snap else { return [] }
        var out: [SlotVoice] = []
        for p in snap.participants where p.isPublishing && p.id != selfId {
            let role = roleOverride(p.id) ?? p.role(hostUserId: hostUserId)
            guard role != .virtualParticipant else { continue }
            out.append(SlotVoice(participantId: p.id, userId: p.userId, role: role))
        }
        return out
    }

    private func reconcile() {
        lock.lock()
        let snap = snapshot
        lock.unlock()
        let want = Self.desired(snap, selfId: config.selfParticipantId, hostUserId: config.hostUserId,
                                roleOverride: { [control] id in control?.role(participantId: id) })
        let wantIds = Set(want.map(\.participantId))
        lock.lock()
        // Leaves and unpublishes first, so their slots drain while newcomers take free ones.
        for (id, link) in links where !wantIds.contains(id) {
            links[id] = nil
            stopping.append(link)
            link.stop()
            slots.release(slot: link.slot, inbox: link.inbox)
        }
        for v in want {
            if let link = links[v.participantId] {
                if link.voice != v {
                    link.voice = v
                    slots.update(slot: link.slot, inbox: link.inbox, voice: v)
                }
                continue
            }
            let inbox = PacketInbox()
            guard let slot = slots.assign(v, inbox: inbox) else {
                causes.note("no free voice slot", "all \(slots.count) voice slots are taken: \(v.participantId) is not mixed until one frees")
                continue
            }
            if voices[v.participantId] == nil { order.append(v.participantId) }
            voices[v.participantId] = v
            let link = ParticipantLink(voice: v, slot: slot, inbox: inbox, session: self,
                                       recorder: recorder?.stream(for: v))
            links[v.participantId] = link
            link.start()
        }
        // Reap links that have finished stopping.
        var still: [ParticipantLink] = []
        for l in stopping {
            if l.isFinished { merge(l) } else { still.append(l) }
        }
        stopping = still
        lock.unlock()
    }

    /// Caller holds the lock.
    private func merge(_ l: ParticipantLink) {
        let s = l.stats
        var m = finishedStats[l.voice.participantId] ?? SubscriptionStats()
        m.attempts += s.attempts; m.connected += s.connected; m.failures += s.failures; m.deletes += s.deletes
        m.packets += s.packets; m.foreignPackets += s.foreignPackets
        if m.firstPostDelay == nil { m.firstPostDelay = s.firstPostDelay }
        finishedStats[l.voice.participantId] = m
    }

    /// Per participant (in the order first wanted): its latest voice and subscription totals.
    public var participantStats: [(voice: SlotVoice, stats: SubscriptionStats)] {
        lock.lock(); defer { lock.unlock() }
        return order.compactMap { id in
            guard let v = voices[id] else { return nil }
            var s = finishedStats[id] ?? SubscriptionStats()
            if let live = links[id]?.stats {
                s.attempts += live.attempts; s.connected += live.connected; s.failures += live.failures
                s.deletes += live.deletes; s.packets += live.packets; s.foreignPackets += live.foreignPackets
                if s.firstPostDelay == nil { s.firstPostDelay = live.firstPostDelay }
            }
            return (v, s)
        }
    }

    public var activeSubscriptions: Int {
        lock.lock(); defer { lock.unlock() }
        return links.values.filter(\.isConnected).count
    }

    func programFrames(monotonic ns: UInt64) -> Int64 {
        Int64(bitPattern: ns &- startNs) * Int64(AudioFormat.sampleRate) / 1_000_000_000
    }
}

/// One wanted participant: subscribes, watches, resubscribes with backoff, unsubscribes when
/// told to stop. Runs on its own thread; the peer's callbacks feed the inbox (and the recorder).
final class ParticipantLink: @unchecked Sendable {
    private let lock = NSLock()
    private var _voice: SlotVoice
    var voice: SlotVoice {
        get { lock.lock(); defer { lock.unlock() }; return _voice }
        set { lock.lock(); _voice = newValue; lock.unlock() }
    }
    let slot: Int
    let inbox: PacketInbox
    /// Strong: a link thread stuck in a slow POST past `stop`'s deadline must still find its session.
    private let session: StageSession
    private let recorder: ParticipantRecorder?
    private let wake = Wakeup()
    private let stateWake = Wakeup()
    private let finished = DispatchSemaphore(value: 0)
    private var isDone = false

    private var counters = SubscriptionStats()
    private var state: StagePeerState = .connecting
    private var attemptId = 0
    private var opusPT: UInt8?
    private var connectedNow = false
    private let createdNs = monotonicNs()

    init(voice: SlotVoice, slot: Int, inbox: PacketInbox, session: StageSession, recorder: ParticipantRecorder?) {
        _voice = voice; self.slot = slot; self.inbox = inbox; self.session = session; self.recorder = recorder
    }

    var stats: SubscriptionStats {
        lock.lock(); defer { lock.unlock() }
        return counters
    }

    var isFinished: Bool {
        lock.lock(); defer { lock.unlock() }
        return isDone
    }

    var isConnected: Bool {
        lock.lock(); defer { lock.unlock() }
        return connectedNow
    }

    func start() {
        let t = Thread { [self] in
            self.run()
            self.lock.lock(); self.isDone = true; self.lock.unlock()
            self.finished.signal()
        }
        t.name = "stage-sub"
        t.start()
    }

    func stop() {
        wake.set()
        stateWake.poke()
    }

    func join(until deadline: Date) -> Bool {
        finished.wait(timeout: .now() + max(0, deadline.timeIntervalSinceNow)) == .success
    }

    private var id: String { voice.participantId }

    private func run() {
        var backoff = session.config.tuning.backoff
        while !wake.isSetNow {
            let healthyFor = attempt()
            if wake.isSetNow { break }
            if healthyFor >= session.config.tuning.healthyAfter { backoff.reset() }
            if wake.wait(backoff.next()) { break }
        }
    }

    /// One subscription from POST to its end. Returns how long it was connected (0 if never).
    private func attempt() -> Double {
        let tuning = session.config.tuning
        let logger = session.logger
        lock.lock()
        counters.attempts += 1
        attemptId += 1
        let myAttempt = attemptId
        state = .connecting
        opusPT = nil
        let n = counters.attempts
        lock.unlock()

        let peer: any StagePeer
        do { peer = try session.peerFactory("\(id)#\(n)") } catch {
            fail("peer setup", "cannot set up a peer connection for \(id): \(error)")
            return 0
        }
        peer.setHandlers(onState: { [weak self] st in self?.peerState(st, attempt: myAttempt) },
                         onAudioRTP: { [weak self] p, ns in self?.rtp(p, arrivalNs: ns, attempt: myAttempt) })
        let offer = peer.makeOffer()
        lock.lock()
        if counters.firstPostDelay == nil { counters.firstPostDelay = Double(monotonicNs() &- createdNs) / 1e9 }
        lock.unlock()
        let sub: WHIPSubscription
        do { sub = try session.whip.subscribe(participantId: id, offer: offer) } catch {
            peer.close()
            fail("subscribe: \(error.cause)", "subscribing to \(id) failed: \(error)")
            return 0
        }
        let answer: SubscribeAnswer
        do { answer = try SubscribeAnswer(parsing: sub.answer) } catch {
            cleanup(peer, sub.location)
            fail("bad SDP answer", "the stage's answer for \(id) is unusable: \(error)")
            return 0
        }
        lock.lock(); opusPT = answer.opus.payloadType; lock.unlock()
        do { try peer.applyAnswer(sub.answer) } catch {
            cleanup(peer, sub.location)
            fail("answer refused", "the peer refused the answer for \(id): \(error)")
            return 0
        }
        // Wait for ICE + DTLS.
        let deadline = monotonicNs() &+ UInt64(tuning.connectTimeout * 1e9)
        while true {
            if wake.isSetNow { cleanup(peer, sub.location); return 0 }
            switch currentState {
            case .connected: break
            case .failed(let cause, let why):
                cleanup(peer, sub.location)
                fail("peer: \(cause)", "subscription to \(id) failed: \(why)")
                return 0
            case .closed:
                cleanup(peer, sub.location)
                fail("peer closed before connecting", "subscription to \(id) closed before connecting")
                return 0
            case .connecting:
                if monotonicNs() >= deadline {
                    cleanup(peer, sub.location)
                    fail("connect timeout", "subscription to \(id) did not connect within \(Int(tuning.connectTimeout)) s")
                    return 0
                }
                stateWake.wait(0.05)
                continue
            }
            break
        }
        let connectedAt = monotonicNs()
        lock.lock()
        counters.connected += 1
        connectedNow = true
        lock.unlock()
        logger.info("subscribed", metadata: [
            "participant": .string(id), "dtls": .string(answer.setup == .active ? "server" : "client"),
            "opusPT": .stringConvertible(answer.opus.payloadType), "redirects": .stringConvertible(sub.redirects),
            "iceLite": .stringConvertible(answer.iceLite),
        ])
        // Watch it: the peer's own consent checks catch a dead path after seconds; no datagram at
        // all (RTP or RTCP) for `silenceTimeout` is caught here, sooner.
        var outcome: (cause: String, message: String)?
        var lastDatagrams = peer.inboundDatagrams
        var lastInbound = connectedAt
        while outcome == nil {
            if wake.isSetNow { break }
            switch currentState {
            case .failed(let cause, let why): outcome = ("peer: \(cause)", "subscription to \(id) failed: \(why)")
            case .closed: outcome = ("peer: closed", "subscription to \(id) was closed")
            default:
                let now = monotonicNs()
                let seen = peer.inboundDatagrams
                if seen != lastDatagrams { lastDatagrams = seen; lastInbound = now }
                let silent = Double(now &- lastInbound) / 1e9
                if silent >= tuning.silenceTimeout {
                    outcome = ("peer silent", "nothing from \(id) for \(String(format: "%.1f", silent)) s (no RTP, no RTCP): taking the peer for dead, resubscribing")
                } else {
                    // Until the timeout would be reached (a state change pokes sooner): one wake-up
                    // per timeout while datagrams flow, not ten a second.
                    stateWake.wait(max(0.01, tuning.silenceTimeout - silent))
                }
            }
        }
        let healthy = Double(monotonicNs() &- connectedAt) / 1e9
        lock.lock(); connectedNow = false; lock.unlock()
        // A participant leaving closes its peer about when the STAGE_STATE saying so arrives:
        // give the snapshot a moment before calling the close a failure.
        if outcome != nil, case .failed(let cause, _) = currentState, cause == "remote closed", wake.wait(0.5) { outcome = nil }
        cleanup(peer, sub.location)
        if let outcome { fail(outcome.cause, outcome.message) }
        return healthy
    }

    private var currentState: StagePeerState {
        lock.lock(); defer { lock.unlock() }
        return state
    }

    private func peerState(_ s: StagePeerState, attempt: Int) {
        lock.lock()
        guard attempt == attemptId else { lock.unlock(); return }
        state = s
        lock.unlock()
        stateWake.poke()
    }

    private func rtp(_ p: RTPPacket, arrivalNs: UInt64, attempt: Int) {
        let now = monotonicNs()
        // The peer's arrival stamp should be CLOCK_MONOTONIC; if it is not, our own clock is.
        let ns = (arrivalNs > 0 && arrivalNs <= now &+ 1_000_000_000 && now &- arrivalNs < 10_000_000_000) ? arrivalNs : now
        lock.lock()
        guard attempt == attemptId else { lock.unlock(); return }
        if let pt = opusPT, p.payloadType != pt {
            counters.foreignPackets += 1
            lock.unlock()
            return
        }
        counters.packets += 1
        lock.unlock()
        inbox.push(.init(arrival: session.programFrames(monotonic: ns), packet: p))
        if let recorder, let err = recorder.record(p, arrivalMonoNs: ns) {
            session.causes.note("recording failed", "--record-rtp: \(err); recording of \(id) stopped")
        }
    }

    private func fail(_ cause: String, _ message: String) {
        lock.lock(); counters.failures += 1; lock.unlock()
        session.causes.note(cause, message, metadata: ["participant": .string(id)])
    }

    /// DELETE the subscription, then close the peer (errors logged once per cause). DELETE first:
    /// the server then ends the session itself, rather than seeing our close_notify and
    /// forgetting the subscription before the DELETE arrives.
    private func cleanup(_ peer: any StagePeer, _ location: String?) {
        lock.lock(); attemptId += 1; lock.unlock()  // late callbacks of this peer are ignored
        if let location {
            do {
                try session.whip.unsubscribe(location: location)
                lock.lock(); counters.deletes += 1; lock.unlock()
            } catch {
                session.causes.note("unsubscribe: \(error.cause)", "DELETE of the subscription to \(id) failed: \(error)")
            }
        }
        peer.close()
    }

}
