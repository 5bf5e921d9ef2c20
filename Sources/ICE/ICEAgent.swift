import Foundation
import Logging
import RTP
import STUN

/// Where the agent delivers what it receives. All run on the receive loop (its thread, or the
/// `ReceiveLoop.readNow` caller once the connection delivers in batches), one at a time, in order.
public struct ICEHandlers: Sendable {
    public var onState: @Sendable (ICEState) -> Void
    /// DTLS records (first byte 20...63) from a validated remote address.
    public var onDTLS: @Sendable ([UInt8]) -> Void
    /// SRTP/SRTCP (first byte 128...191) from a validated remote address.
    public var onMedia: @Sendable (_ bytes: [UInt8], _ arrivalNs: UInt64) -> Void

    public init(onState: @escaping @Sendable (ICEState) -> Void = { _ in },
                onDTLS: @escaping @Sendable ([UInt8]) -> Void = { _ in },
                onMedia: @escaping @Sendable (_ bytes: [UInt8], _ arrivalNs: UInt64) -> Void = { _, _ in }) {
        self.onState = onState; self.onDTLS = onDTLS; self.onMedia = onMedia
    }
}

/// A controlling, full ICE agent for one peer connection: host candidates on a `UDPMux`, checks,
/// nomination, consent freshness, and `send` on the selected pair for DTLS/SRTP/SRTCP.
///
/// Typical use: create (gathers and binds), put `localCandidates`/`credentials` in the offer,
/// `start` with the answer's, wait for `.connected`, then hand DTLS bytes both ways.
public final class ICEAgent: @unchecked Sendable {
    public let credentials: ICECredentials
    public let localCandidates: [ICECandidate]
    /// Every state change, also given to `ICEHandlers.onState`. Finishes on a terminal state.
    public let events: AsyncStream<ICEState>

    private let configuration: ICEConfiguration
    private let mux: UDPMux
    private let engine: ICEEngine
    private let lock = NSLock()
    private var handlers = ICEHandlers()
    private let continuation: AsyncStream<ICEState>.Continuation
    private let logger: Logger

    public init(configuration: ICEConfiguration = ICEConfiguration(), logger: Logger = Logger(label: "shelcaster.ice")) throws(ICEError) {
        self.configuration = configuration
        self.logger = logger
        mux = try UDPMux(interfaces: configuration.interfaces, ipv4: configuration.ipv4, ipv6: configuration.ipv6, port: configuration.port)
        credentials = configuration.credentials ?? ICECredentials.random()
        // Local preference: IPv6 above IPv4 (RFC 8421 spirit), then gathering order.
        var locals: [ICECandidate] = []
        var foundations: [STUNIPAddress: String] = [:]
        for (i, a) in mux.localAddresses.enumerated() {
            let pref = UInt16((a.ip.isIPv4 ? 40000 : 60000) - min(i, 1000))
            let f = foundations[a.ip] ?? "\(foundations.count + 1)"
            foundations[a.ip] = f
            locals.append(ICECandidate(foundation: f, priority: ICECandidate.priority(type: .host, localPreference: pref),
                                       address: a, type: .host))
        }
        localCandidates = locals
        engine = ICEEngine(configuration: configuration, credentials: credentials, localCandidates: locals, logger: logger,
                           localSelector: { remote, candidates in
                               let same = candidates.filter { $0.address.ip.family == remote.family }
                               if let src = UDPMux.routeSource(to: remote), let c = same.first(where: { $0.address.ip == src }) { return c }
                               return same.first
                           })
        (events, continuation) = AsyncStream.makeStream(of: ICEState.self, bufferingPolicy: .unbounded)
    }

    deinit {
        mux.close()
        continuation.finish()
    }

    /// Starts checks. Candidates the agent cannot use (wrong family, no local address) are skipped.
    public func start(remoteCredentials: ICECredentials, remoteCandidates: [ICECandidate], remoteIsLite: Bool = false,
                      handlers: ICEHandlers) {
        lock.lock()
        self.handlers = handlers
        engine.start(remoteCredentials: remoteCredentials, remoteCandidates: remoteCandidates, now: ICEClock.now())
        let (out, changes) = (engine.drainOutbox(), engine.drainStateChanges())
        lock.unlock()
        logger.debug("ICE starting: \(remoteCandidates.count) remote candidates, peer is \(remoteIsLite ? "ice-lite" : "full")")
        flush(out, changes)
        mux.start(onDatagram: { [weak self] kind, bytes, from, arrival in self?.received(kind, bytes, from, arrival) },
                  onTimer: { [weak self] now in self?.timer(now) })
    }

    public func addRemoteCandidate(_ c: ICECandidate) {
        lock.lock()
        engine.addRemoteCandidate(c, now: ICEClock.now())
        lock.unlock()
        mux.timerChanged()
    }

    /// The connection carries media now: its datagrams may wait for the receive loop's driver (see
    /// `ReceiveLoop`) instead of waking a thread each.
    public func deliverInBatches() {
        mux.deliverInBatches()
    }

    /// Sends on the selected pair. False before `.connected`, after consent is lost, or if sendto fails.
    @discardableResult
    public func send(_ bytes: [UInt8]) -> Bool {
        lock.lock()
        let target = engine.sendTarget
        lock.unlock()
        guard let target else { return false }
        if mux.send(bytes, to: target) { return true }
        let e = errno
        lock.lock()
        engine.drop(.sendFailed, "sendto \(target) failed: errno \(e)")
        lock.unlock()
        return false
    }

    public var state: ICEState {
        lock.lock(); defer { lock.unlock() }
        return engine.state
    }

    public var selectedPair: ICECandidatePair? {
        lock.lock(); defer { lock.unlock() }
        return engine.selectedPair
    }

    public var counters: ICECounters {
        lock.lock(); defer { lock.unlock() }
        return engine.counters
    }

    /// Stops the socket thread, closes the sockets and reports `.closed` (unless already terminal).
    public func close() {
        mux.close()
        lock.lock()
        engine.close()
        let changes = engine.drainStateChanges()
        lock.unlock()
        flush([], changes)
        continuation.finish()
    }

    // MARK: - Receive loop

    private func received(_ kind: PacketKind, _ bytes: [UInt8], _ from: STUNTransportAddress, _ arrivalNs: UInt64) {
        switch kind {
        case .stun:
            lock.lock()
            engine.count { $0.datagramsReceived += 1 }
            engine.handleSTUN(bytes, from: from, now: ICEClock.now())
            let (out, changes) = (engine.drainOutbox(), engine.drainStateChanges())
            lock.unlock()
            flush(out, changes)
        case .dtls, .rtpOrRtcp:
            lock.lock()
            engine.count { $0.datagramsReceived += 1 }
            let ok = engine.acceptsMedia(from: from)
            if ok {
                engine.count { if kind == .dtls { $0.dtlsDelivered += 1 } else { $0.mediaDelivered += 1 } }
            } else {
                engine.drop(.unauthenticatedSource, "\(kind) from \(from), which has not passed an ICE check")
            }
            let h = handlers
            lock.unlock()
            if ok { if kind == .dtls { h.onDTLS(bytes) } else { h.onMedia(bytes, arrivalNs) } }
        case .zrtp, .turnChannel, .other:
            lock.lock()
            engine.count { $0.datagramsReceived += 1 }
            engine.drop(.unclassified, "\(bytes.count)-byte datagram from \(from) with first byte \(bytes.first ?? 0)")
            lock.unlock()
        }
    }

    private func timer(_ now: Double) -> Double? {
        lock.lock()
        engine.tick(now: now)
        let (out, changes) = (engine.drainOutbox(), engine.drainStateChanges())
        let next = engine.nextDeadline()
        lock.unlock()
        flush(out, changes)
        return next
    }

    /// Sends and reports outside the lock, so handlers may call back into the agent.
    private func flush(_ out: [ICEEngine.Transmission], _ changes: [ICEState]) {
        for t in out where !mux.send(t.bytes, to: t.to) {
            let e = errno
            lock.lock()
            engine.drop(.sendFailed, "sendto \(t.to) failed: errno \(e)")
            lock.unlock()
        }
        guard !changes.isEmpty else { return }
        lock.lock()
        let h = handlers
        lock.unlock()
        for s in changes {
            h.onState(s)
            continuation.yield(s)
            if s.isTerminal { continuation.finish() }
        }
    }
}
