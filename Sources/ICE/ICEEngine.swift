import Logging
import STUN

/// The ICE state machine of a full, controlling agent (RFC 8445) with consent freshness (RFC 7675),
/// free of sockets and clocks: the caller feeds it STUN datagrams and the time, and drains what it
/// wants sent and the state changes. `ICEAgent` drives it from its socket thread; tests drive it
/// with a virtual clock. Not thread-safe: one owner at a time.
///
/// Nomination is regular nomination (the only kind RFC 8445 keeps): checks run on every pair; once
/// one succeeds we wait up to `nominationWait` for higher-priority pairs still being checked, then
/// repeat a check with USE-CANDIDATE on the best succeeded pair. Its success selects the pair.
public final class ICEEngine {
    public struct Transmission: Sendable, Equatable {
        public var bytes: [UInt8]
        public var to: STUNTransportAddress
    }

    enum PairState { case frozen, waiting, inProgress, succeeded, failed }

    struct Pair {
        var local: ICECandidate
        var remote: ICECandidate
        var priority: UInt64
        var foundation: String
        var state: PairState
        var view: ICECandidatePair { ICECandidatePair(local: local, remote: remote, priority: priority) }
    }

    enum TransactionKind { case check, nomination, consent }

    struct Transaction {
        var pair: Int
        var kind: TransactionKind
        var bytes: [UInt8]
        var rto: Double
        var nextSend: Double
        var transmissions: Int
    }

    public let configuration: ICEConfiguration
    public let localCredentials: ICECredentials
    public let localCandidates: [ICECandidate]
    public let tieBreaker: UInt64
    let logger: Logger
    /// Picks the local candidate that sends to a remote address (by default the first of its family).
    let localSelector: @Sendable (STUNIPAddress, [ICECandidate]) -> ICECandidate?

    public private(set) var state: ICEState = .new
    public private(set) var counters = ICECounters()
    private(set) var remoteCredentials: ICECredentials?
    private(set) var pairs: [Pair] = []
    private var transactions: [STUNTransactionID: Transaction] = [:]
    private var triggered: [Int] = []
    private var authenticated: Set<STUNTransportAddress> = []
    private var selected: Int?
    private var startTime = 0.0
    private var nextCheckTime = 0.0
    private var firstSuccessTime: Double?
    private var lastConsentResponse = 0.0
    private var nextConsentTime = 0.0
    private var prflxCount = 0
    private var loggedCauses: Set<ICEDropCause> = []
    private var outbox: [Transmission] = []
    private var stateChanges: [ICEState] = []
    private var generator = SystemRandomNumberGenerator()

    public init(configuration: ICEConfiguration, credentials: ICECredentials, localCandidates: [ICECandidate],
                tieBreaker: UInt64 = UInt64.random(in: 0...UInt64.max), logger: Logger = Logger(label: "shelcaster.ice"),
                localSelector: @escaping @Sendable (STUNIPAddress, [ICECandidate]) -> ICECandidate? = { ip, locals in
                    locals.first { $0.address.ip.family == ip.family }
                }) {
        self.configuration = configuration
        self.localCredentials = credentials
        self.localCandidates = localCandidates
        self.tieBreaker = tieBreaker
        self.logger = logger
        self.localSelector = localSelector
    }

    // MARK: - Owner interface

    public var selectedPair: ICECandidatePair? { selected.map { pairs[$0].view } }

    /// Pairs and their states, for diagnostics.
    public var pairSummary: [(pair: ICECandidatePair, state: String)] {
        pairs.map { ($0.view, "\($0.state)") }
    }

    public func drainOutbox() -> [Transmission] {
        defer { outbox.removeAll(keepingCapacity: true) }
        return outbox
    }

    public func drainStateChanges() -> [ICEState] {
        defer { stateChanges.removeAll() }
        return stateChanges
    }

    /// Counts a dropped datagram; logs the first drop of each cause at warning, later ones at trace.
    public func drop(_ cause: ICEDropCause, _ detail: @autoclosure () -> String) {
        counters.dropped[cause, default: 0] += 1
        if loggedCauses.insert(cause).inserted {
            logger.warning("ICE dropped a datagram (\(cause.rawValue)): \(detail()); further drops of this cause are only counted")
        } else {
            logger.trace("ICE dropped a datagram (\(cause.rawValue)): \(detail())")
        }
    }

    func count(_ update: (inout ICECounters) -> Void) { update(&counters) }

    /// Begins checks against the answer's candidates.
    public func start(remoteCredentials: ICECredentials, remoteCandidates: [ICECandidate], now: Double) {
        guard case .new = state else { return }
        self.remoteCredentials = remoteCredentials
        startTime = now
        nextCheckTime = now
        for c in remoteCandidates { addPair(for: c, initialState: .frozen) }
        guard !pairs.isEmpty else {
            setState(.failed(.noUsablePairs))
            return
        }
        // One waiting pair per foundation, the highest; the rest start frozen (RFC 8445 6.1.2.6).
        var seen: Set<String> = []
        for i in pairs.indices.sorted(by: { pairs[$0].priority > pairs[$1].priority }) where seen.insert(pairs[i].foundation).inserted {
            pairs[i].state = .waiting
        }
        setState(.checking)
        tick(now: now)
    }

    /// A candidate learned after `start` (trickle); checked like the others.
    public func addRemoteCandidate(_ c: ICECandidate, now: Double) {
        guard case .checking = state else { return }
        addPair(for: c, initialState: .waiting)
    }

    /// True when DTLS or media from `source` may be delivered: the address has proven it knows the
    /// ICE credentials (a check to it succeeded, or it sent an authenticated request).
    public func acceptsMedia(from source: STUNTransportAddress) -> Bool {
        switch state {
        case .checking, .connected: return authenticated.contains(source)
        default: return false
        }
    }

    /// Where `send` goes: the selected pair's remote address while connected.
    public var sendTarget: STUNTransportAddress? {
        guard case .connected = state, let s = selected else { return nil }
        return pairs[s].remote.address
    }

    public func close() {
        guard !state.isTerminal else { return }
        transactions.removeAll()
        setState(.closed)
    }

    // MARK: - Timers

    public func tick(now: Double) {
        guard !state.isTerminal, remoteCredentials != nil else { return }
        serviceTransactions(now: now)
        guard !state.isTerminal else { return }
        if selected == nil {
            tickChecking(now: now)
        } else {
            tickConsent(now: now)
        }
    }

    /// The earliest time `tick` has work to do, or nil when nothing is scheduled.
    public func nextDeadline() -> Double? {
        guard !state.isTerminal, remoteCredentials != nil else { return nil }
        var d = Double.infinity
        for t in transactions.values { d = min(d, t.nextSend) }
        if selected == nil {
            d = min(d, startTime + configuration.connectTimeout)
            if hasPairToCheck { d = min(d, nextCheckTime) }
            if let (_, due) = nominationDue() { d = min(d, due) }
        } else {
            d = min(d, nextConsentTime, lastConsentResponse + configuration.consentTimeout)
        }
        return d.isFinite ? d : nil
    }

    private func serviceTransactions(now: Double) {
        let due = transactions.filter { $0.value.nextSend <= now }.sorted { $0.value.nextSend < $1.value.nextSend }
        for (tid, var t) in due {
            if t.transmissions >= configuration.maxTransmissions {
                transactions[tid] = nil
                timedOut(t)
                continue
            }
            t.transmissions += 1
            t.rto = min(t.rto * 2, configuration.maxRTO)
            // From the scheduled time, so late ticks do not stretch the schedule.
            let planned = t.nextSend + t.rto
            t.nextSend = planned > now ? planned : now + t.rto
            transactions[tid] = t
            counters.retransmissions += 1
            outbox.append(Transmission(bytes: t.bytes, to: pairs[t.pair].remote.address))
        }
    }

    private func timedOut(_ t: Transaction) {
        switch t.kind {
        case .check, .nomination:
            if t.kind == .nomination || pairs[t.pair].state != .succeeded {
                pairs[t.pair].state = .failed
                logger.debug("ICE check to \(pairs[t.pair].remote.address) timed out")
            }
        case .consent:
            break  // consent expiry is judged by time since the last response
        }
    }

    private var hasNomination: Bool { transactions.values.contains { $0.kind == .nomination } }

    private var hasPairToCheck: Bool {
        triggered.contains { pairs[$0].state != .succeeded && pairs[$0].state != .inProgress }
            || pairs.contains { $0.state == .waiting || $0.state == .frozen }
    }

    private func tickChecking(now: Double) {
        if now >= startTime + configuration.connectTimeout {
            transactions.removeAll()
            setState(.failed(.timeout(seconds: configuration.connectTimeout)))
            return
        }
        if transactions.isEmpty, !hasPairToCheck, bestSucceededPair() == nil {
            setState(.failed(.allPairsFailed))
            return
        }
        // Every new transaction, the nomination included, waits for its Ta slot (RFC 8445 14.2).
        guard now >= nextCheckTime else { return }
        if let (best, due) = nominationDue(), now >= due {
            sendRequest(pair: best, kind: .nomination, now: now)
            nextCheckTime = now + configuration.checkInterval
            return
        }
        if let p = nextPairToCheck() {
            pairs[p].state = .inProgress
            sendRequest(pair: p, kind: .check, now: now)
            nextCheckTime = now + configuration.checkInterval
        }
    }

    private func tickConsent(now: Double) {
        guard let s = selected else { return }
        if now - lastConsentResponse >= configuration.consentTimeout {
            transactions.removeAll()
            logger.warning("ICE consent lost on \(pairs[s].view): no response for \(now - lastConsentResponse) s")
            setState(.disconnected(.consentExpired(seconds: configuration.consentTimeout)))
            return
        }
        if now >= nextConsentTime {
            // A new transaction each interval; older ones keep retransmitting and still count.
            sendRequest(pair: s, kind: .consent, now: now)
            nextConsentTime = now + configuration.consentInterval * Double.random(in: 0.8...1.2, using: &generator)
        }
    }

    /// The pair to nominate and the earliest time to do it: at once (in the next Ta slot) when no
    /// better pair is still being checked, else `nominationWait` after the first success.
    private func nominationDue() -> (Int, Double)? {
        guard !hasNomination, let best = bestSucceededPair() else { return nil }
        let betterPending = pairs.contains { p in
            p.priority > pairs[best].priority && (p.state == .waiting || p.state == .frozen || p.state == .inProgress)
        }
        let earliest = betterPending ? (firstSuccessTime ?? startTime) + configuration.nominationWait : nextCheckTime
        return (best, max(nextCheckTime, earliest))
    }

    private func bestSucceededPair() -> Int? {
        pairs.indices.filter { pairs[$0].state == .succeeded }.max { pairs[$0].priority < pairs[$1].priority }
    }

    private func nextPairToCheck() -> Int? {
        while !triggered.isEmpty {
            let p = triggered.removeFirst()
            if pairs[p].state != .succeeded && pairs[p].state != .inProgress { return p }
        }
        if let w = pairs.indices.filter({ pairs[$0].state == .waiting }).max(by: { pairs[$0].priority < pairs[$1].priority }) {
            return w
        }
        return pairs.indices.filter { pairs[$0].state == .frozen }.max { pairs[$0].priority < pairs[$1].priority }
    }

    // MARK: - Requests we send

    /// PRIORITY of our checks: the priority a peer-reflexive candidate of ours would have.
    private func prflxPriority(_ local: ICECandidate) -> UInt32 {
        ICECandidateType.prflx.typePreference << 24 | (local.priority & 0x00FF_FFFF)
    }

    private func sendRequest(pair p: Int, kind: TransactionKind, now: Double) {
        guard let remote = remoteCredentials else { return }
        let tid = STUNTransactionID.random()
        var m = STUNMessage(messageClass: .request, transactionID: tid)
        m.append(.username("\(remote.ufrag):\(localCredentials.ufrag)"))
        m.append(.iceControlling(tieBreaker))
        m.append(.priority(prflxPriority(pairs[p].local)))
        if kind == .nomination { m.append(.useCandidate) }
        if let sw = configuration.software { m.append(.software(sw)) }
        guard let bytes = try? m.serialized(integrityKey: Array(remote.pwd.utf8), fingerprint: true) else { return }
        transactions[tid] = Transaction(pair: p, kind: kind, bytes: bytes, rto: configuration.initialRTO,
                                        nextSend: now + configuration.initialRTO, transmissions: 1)
        switch kind {
        case .check, .nomination: counters.checksSent += 1
        case .consent: counters.consentRequestsSent += 1
        }
        outbox.append(Transmission(bytes: bytes, to: pairs[p].remote.address))
    }

    // MARK: - STUN we receive

    public func handleSTUN(_ raw: [UInt8], from source: STUNTransportAddress, now: Double) {
        counters.stunReceived += 1
        if state.isTerminal {
            drop(.stunAfterEnd, "STUN from \(source) after the agent ended")
            return
        }
        let m: STUNMessage
        do { m = try STUNMessage.parse(raw) } catch {
            drop(.stunMalformed, "from \(source): \(error)")
            return
        }
        switch STUNMessage.checkFingerprint(raw) {
        case .valid: break
        case .absent:
            drop(.stunMissingFingerprint, "from \(source): no FINGERPRINT (ICE requires it)")
            return
        case .invalid:
            drop(.stunBadFingerprint, "from \(source): FINGERPRINT does not match")
            return
        }
        guard m.method == STUNMethod.binding else {
            drop(.stunUnsupportedMethod, "from \(source): method 0x\(String(m.method, radix: 16))")
            return
        }
        switch m.messageClass {
        case .request: handleRequest(m, raw: raw, from: source, now: now)
        case .successResponse, .errorResponse: handleResponse(m, raw: raw, from: source, now: now)
        case .indication: break  // keepalives need no answer
        }
    }

    private func handleRequest(_ m: STUNMessage, raw: [UInt8], from source: STUNTransportAddress, now: Double) {
        let username: String?
        do { username = try m.username() } catch {
            drop(.stunMalformed, "request from \(source): \(error)")
            return
        }
        guard let username, m.has(STUNAttributeType.messageIntegrity) else {
            drop(.stunMissingIntegrity, "request from \(source) without USERNAME or MESSAGE-INTEGRITY")
            respondError(to: m, from: source, code: 400, reason: "Bad Request", authenticated: false)
            return
        }
        // RFC 8445 7.3: the part before the colon must be our ufrag.
        guard let colon = username.firstIndex(of: ":"), username[..<colon] == localCredentials.ufrag else {
            drop(.stunBadUsername, "request from \(source) with USERNAME \"\(username.prefix(64))\"")
            respondError(to: m, from: source, code: 401, reason: "Unauthenticated", authenticated: false)
            return
        }
        guard STUNMessage.checkIntegrity(raw, key: Array(localCredentials.pwd.utf8)) == .valid else {
            drop(.stunBadIntegrity, "request from \(source): MESSAGE-INTEGRITY does not verify")
            respondError(to: m, from: source, code: 401, reason: "Unauthenticated", authenticated: false)
            return
        }
        let unknown = m.unknownComprehensionRequired
        guard unknown.isEmpty else {
            drop(.stunUnknownAttribute, "request from \(source) with attributes \(unknown)")
            respondError(to: m, from: source, code: 420, reason: "Unknown Attribute", authenticated: true, unknown: unknown)
            return
        }
        let priority: UInt32?
        let theirControlling: UInt64?
        do {
            priority = try m.priority()
            theirControlling = try m.iceControlling()
            _ = try m.iceControlled()
        } catch {
            drop(.stunMalformed, "request from \(source): \(error)")
            respondError(to: m, from: source, code: 400, reason: "Bad Request", authenticated: true)
            return
        }
        guard let priority else {
            drop(.stunMissingPriority, "request from \(source) without PRIORITY")
            respondError(to: m, from: source, code: 400, reason: "Bad Request", authenticated: true)
            return
        }
        // Both controlling: we stay controlling (we made the offer), so the peer must yield (487).
        if theirControlling != nil {
            drop(.stunRoleConflict, "request from \(source) claims ICE-CONTROLLING too")
            respondError(to: m, from: source, code: 487, reason: "Role Conflict", authenticated: true)
            return
        }

        var r = STUNMessage(messageClass: .successResponse, transactionID: m.transactionID)
        r.append(.xorMappedAddress(source, transactionID: m.transactionID))
        if let sw = configuration.software { r.append(.software(sw)) }
        if let bytes = try? r.serialized(integrityKey: Array(localCredentials.pwd.utf8), fingerprint: true) {
            outbox.append(Transmission(bytes: bytes, to: source))
            counters.responsesSent += 1
        }
        authenticated.insert(source)

        // Triggered check (RFC 8445 7.3.1.4), learning a peer-reflexive remote if needed.
        guard case .checking = state else { return }
        var p = pairs.firstIndex { $0.remote.address == source }
        if p == nil {
            prflxCount += 1
            let c = ICECandidate(foundation: "prflx\(prflxCount)", priority: priority, address: source, type: .prflx)
            p = addPair(for: c, initialState: .waiting)
        }
        guard let p else { return }
        switch pairs[p].state {
        case .frozen, .waiting, .failed:
            pairs[p].state = .waiting
            if !triggered.contains(p) { triggered.append(p) }
        case .inProgress, .succeeded:
            break
        }
    }

    private func respondError(to m: STUNMessage, from source: STUNTransportAddress, code: Int, reason: String,
                              authenticated: Bool, unknown: [UInt16] = []) {
        var r = STUNMessage(messageClass: .errorResponse, transactionID: m.transactionID)
        r.append(.errorCode(code, reason: reason))
        if !unknown.isEmpty { r.append(.unknownAttributes(unknown)) }
        let key = authenticated ? Array(localCredentials.pwd.utf8) : nil
        if let bytes = try? r.serialized(integrityKey: key, fingerprint: true) {
            outbox.append(Transmission(bytes: bytes, to: source))
            counters.responsesSent += 1
        }
    }

    private func handleResponse(_ m: STUNMessage, raw: [UInt8], from source: STUNTransportAddress, now: Double) {
        guard let t = transactions[m.transactionID] else {
            drop(.stunUnknownTransaction, "response from \(source) to transaction \(m.transactionID) we are not waiting for")
            return
        }
        guard let remote = remoteCredentials else { return }
        switch STUNMessage.checkIntegrity(raw, key: Array(remote.pwd.utf8)) {
        case .valid: break
        case .absent:
            drop(.stunMissingIntegrity, "response from \(source) without MESSAGE-INTEGRITY")
            return
        case .invalid:
            drop(.stunBadIntegrity, "response from \(source): MESSAGE-INTEGRITY does not verify")
            return
        }
        let unknown = m.unknownComprehensionRequired
        guard unknown.isEmpty else {
            drop(.stunUnknownAttribute, "response from \(source) with attributes \(unknown)")
            return
        }
        transactions[m.transactionID] = nil
        let pair = pairs[t.pair]
        guard source == pair.remote.address else {
            drop(.stunNonSymmetricResponse, "response for \(pair.remote.address) came from \(source)")
            if t.kind != .consent { pairs[t.pair].state = .failed }
            return
        }
        if m.messageClass == .errorResponse {
            let code = (try? m.errorCode())?.code ?? 0
            if code == 487 { drop(.stunRoleConflict, "peer \(source) answered 487 Role Conflict") }
            logger.debug("ICE check to \(source) got error \(code)")
            if t.kind != .consent { pairs[t.pair].state = .failed }
            return
        }
        authenticated.insert(source)
        switch t.kind {
        case .check:
            pairs[t.pair].state = .succeeded
            if firstSuccessTime == nil { firstSuccessTime = now }
        case .nomination:
            pairs[t.pair].state = .succeeded
            guard selected == nil else { return }
            selected = t.pair
            // Checking is over: pending checks on other pairs are abandoned.
            transactions = transactions.filter { $0.value.kind == .consent }
            triggered.removeAll()
            lastConsentResponse = now
            nextConsentTime = now + configuration.consentInterval * Double.random(in: 0.8...1.2, using: &generator)
            logger.info("ICE selected \(pairs[t.pair].view)")
            setState(.connected(pairs[t.pair].view))
        case .consent:
            lastConsentResponse = now
        }
    }

    // MARK: - Pairs and state

    @discardableResult
    private func addPair(for remote: ICECandidate, initialState: PairState) -> Int? {
        guard !pairs.contains(where: { $0.remote.address == remote.address }) else { return nil }
        guard let local = localSelector(remote.address.ip, localCandidates) else {
            logger.debug("ICE: no local candidate of the family of \(remote.address)")
            return nil
        }
        pairs.append(Pair(local: local, remote: remote,
                          priority: ICECandidatePair.pairPriority(controlling: local.priority, controlled: remote.priority),
                          foundation: local.foundation + "|" + remote.foundation, state: initialState))
        return pairs.count - 1
    }

    private func setState(_ s: ICEState) {
        guard s != state else { return }
        state = s
        stateChanges.append(s)
    }
}
