import Testing
import ICE
import SDP
import STUN

/// Drives `ICEEngine` with a virtual clock and a scripted peer: timing rules can be checked
/// exactly, including the default 10 s consent timeout, without waiting for real time.
struct ICESim {
    static let localCreds = ICECredentials(ufrag: "LOCL", pwd: "local-password-0123456789")
    static let remoteCreds = ICECredentials(ufrag: "RMTE", pwd: "remote-password-0123456789")
    static let localAddr = STUNTransportAddress(ip: STUNIPAddress("192.0.2.1")!, port: 5000)
    static let local = ICECandidate(foundation: "1", priority: ICECandidate.priority(type: .host, localPreference: 40000), address: localAddr)

    static func remote(_ ip: String, _ port: UInt16, priority: UInt32) -> ICECandidate {
        ICECandidate(foundation: "r\(port)", priority: priority, address: STUNTransportAddress(ip: STUNIPAddress(ip)!, port: port))
    }

    let engine: ICEEngine
    var now = 0.0
    /// Everything the engine sent, with the virtual time.
    var sent: [(time: Double, tx: ICEEngine.Transmission, message: STUNMessage)] = []
    var states: [(time: Double, state: ICEState)] = []
    /// How many of `sent` the scripted peer has looked at.
    var seen = 0

    init(_ config: ICEConfiguration = ICEConfiguration()) {
        engine = ICEEngine(configuration: config, credentials: Self.localCreds, localCandidates: [Self.local], tieBreaker: 42)
    }

    mutating func collect() {
        for t in engine.drainOutbox() {
            sent.append((now, t, try! STUNMessage.parse(t.bytes)))
        }
        for s in engine.drainStateChanges() { states.append((now, s)) }
    }

    mutating func start(_ remotes: [ICECandidate]) {
        engine.start(remoteCredentials: Self.remoteCreds, remoteCandidates: remotes, now: now)
        collect()
    }

    /// Advances in 10 ms steps; `respond` decides which new requests the peer answers.
    mutating func run(until end: Double, respond: (Double, ICEEngine.Transmission, STUNMessage) -> Bool) {
        while now < end {
            now += 0.01
            engine.tick(now: now)
            collect()
            while seen < sent.count {
                let (t, tx, m) = sent[seen]
                seen += 1
                guard m.messageClass == .request, respond(t, tx, m) else { continue }
                engine.handleSTUN(Self.successResponse(to: m), from: tx.to, now: now)
                collect()
            }
        }
    }

    /// What a peer holding the remote password answers.
    static func successResponse(to m: STUNMessage, key: String = remoteCreds.pwd) -> [UInt8] {
        var r = STUNMessage(messageClass: .successResponse, transactionID: m.transactionID)
        r.append(.xorMappedAddress(localAddr, transactionID: m.transactionID))
        return try! r.serialized(integrityKey: Array(key.utf8), fingerprint: true)
    }

    /// A check the remote agent sends us.
    static func request(username: String = "LOCL:RMTE", key: String = localCreds.pwd, controlling: Bool = false,
                        fingerprint: Bool = true, extra: [STUNAttribute] = []) -> [UInt8] {
        var m = STUNMessage(messageClass: .request)
        m.append(.username(username))
        m.append(.priority(1_845_501_695))
        m.append(controlling ? .iceControlling(7) : .iceControlled(7))
        for a in extra { m.append(a) }
        return try! m.serialized(integrityKey: Array(key.utf8), fingerprint: fingerprint)
    }

    var connectedPair: ICECandidatePair? {
        for (_, s) in states { if case .connected(let p) = s { return p } }
        return nil
    }
}

@Suite struct ICEEngineTests {
    @Test func retransmissionsDoubleFromHalfASecondUpToTheCapThenThePairFails() {
        var sim = ICESim()
        sim.start([ICESim.remote("192.0.2.9", 3478, priority: 2_130_706_431)])
        sim.run(until: 14) { _, _, _ in false }
        let times = sim.sent.map(\.time)
        let expected = [0, 0.5, 1.5, 3.5, 5.5, 7.5, 9.5]
        #expect(times.count == expected.count)
        for (t, e) in zip(times, expected) { #expect(abs(t - e) < 0.015, "sent at \(t), expected \(e)") }
        // Retransmissions repeat the same transaction.
        #expect(Set(sim.sent.map(\.message.transactionID)).count == 1)
        #expect(sim.engine.counters.checksSent == 1 && sim.engine.counters.retransmissions == 6)
        #expect(sim.states.map(\.state) == [.checking, .failed(.allPairsFailed)])
        #expect(abs(sim.states[1].time - 11.5) < 0.015)
    }

    @Test func checksArePacedAndTheBestPairIsNominatedWithUseCandidate() throws {
        var sim = ICESim()
        let low = ICESim.remote("192.0.2.20", 4000, priority: 1_000)
        let high = ICESim.remote("192.0.2.21", 4001, priority: 2_130_706_431)
        let mid = ICESim.remote("192.0.2.22", 4002, priority: 1_694_498_815)
        sim.start([low, high, mid])
        sim.run(until: 1) { _, _, _ in true }
        let pair = try #require(sim.connectedPair)
        #expect(pair.remote == high)
        #expect(pair.local == ICESim.local)
        let checks = sim.sent.filter { $0.message.messageClass == .request }
        // Highest priority first, 50 ms apart.
        #expect(checks.first?.tx.to == high.address)
        let firstThree = checks.prefix(3).map(\.time)
        #expect(zip(firstThree, firstThree.dropFirst()).allSatisfy { $1 - $0 >= 0.049 })
        let nominations = checks.filter { $0.message.useCandidate }
        #expect(nominations.count == 1)
        #expect(nominations.first?.tx.to == high.address)
        for c in checks {
            #expect(try c.message.username() == "RMTE:LOCL")
            #expect(try c.message.iceControlling() == 42)
            #expect(try c.message.priority() == 110 << 24 | (ICESim.local.priority & 0xFFFFFF))
            #expect(STUNMessage.checkIntegrity(c.tx.bytes, key: Array(ICESim.remoteCreds.pwd.utf8)) == .valid)
            #expect(STUNMessage.checkFingerprint(c.tx.bytes) == .valid)
        }
        #expect(sim.engine.sendTarget == high.address)
    }

    @Test(arguments: [(0.6, true), (0.1, false)])
    func nominationWaitsForABetterPairStillBeingChecked(wait: Double, highWins: Bool) throws {
        var sim = ICESim(ICEConfiguration(nominationWait: wait))
        let high = ICESim.remote("192.0.2.21", 4001, priority: 2_130_706_431)
        let low = ICESim.remote("192.0.2.20", 4000, priority: 1_000)
        sim.start([high, low])
        // The low pair succeeds at once; the high pair's first check is lost and its retransmission
        // at 0.5 s succeeds: a 0.6 s wait nominates it, a 0.1 s wait settles for the low pair.
        sim.run(until: 2) { t, tx, _ in tx.to == low.address || t >= 0.2 }
        let pair = try #require(sim.connectedPair)
        #expect(pair.remote == (highWins ? high : low))
    }

    /// The bound with the default configuration: a peer that goes silent is declared
    /// disconnected no later than 10 s after its last consent response.
    @Test func defaultConsentTimeoutDetectsASilentPeerWithinTenSeconds() throws {
        let config = ICEConfiguration()
        #expect(config.consentTimeout == 10)
        var sim = ICESim(config)
        let remote = ICESim.remote("192.0.2.9", 3478, priority: 2_130_706_431)
        sim.start([remote])
        let silentFrom = 30.0
        var lastAnswer = 0.0
        sim.run(until: 60) { t, _, _ in
            guard t < silentFrom else { return false }
            lastAnswer = t
            return true
        }
        #expect(sim.connectedPair != nil)
        let disconnected = try #require(sim.states.first { if case .disconnected = $0.state { return true } else { return false } })
        #expect(disconnected.state == .disconnected(.consentExpired(seconds: 10)))
        #expect(disconnected.time - lastAnswer <= 10.0 + 0.011)
        #expect(disconnected.time - lastAnswer >= 10.0 - 0.011)
        #expect(disconnected.time - silentFrom < 10.0 + 0.011)
        // Consent requests while healthy came every 4-6 s (RFC 7675's randomised interval).
        let connectedAt = sim.states.first { if case .connected = $0.state { return true } else { return false } }!.time
        let consent = sim.sent.filter { $0.time > connectedAt && $0.time < silentFrom && $0.message.messageClass == .request }
            .map(\.time)
        #expect(consent.count >= 5)
        for (a, b) in zip(consent, consent.dropFirst()) { #expect(b - a >= 3.99 && b - a <= 6.01, "consent gap \(b - a)") }
        // Nothing is sent after the peer is declared gone.
        #expect(sim.sent.allSatisfy { $0.time <= disconnected.time })
        #expect(sim.engine.sendTarget == nil)
        #expect(!sim.engine.acceptsMedia(from: remote.address))
    }

    @Test func consentRetransmissionsKeepAPeerWithLossAlive() {
        var sim = ICESim(ICEConfiguration(consentInterval: 5, consentTimeout: 10))
        sim.start([ICESim.remote("192.0.2.9", 3478, priority: 2_130_706_431)])
        // Every other transmission is lost; answers to retransmissions still refresh consent.
        var n = 0
        sim.run(until: 40) { _, _, _ in n += 1; return n % 2 == 0 }
        #expect(sim.connectedPair != nil)
        #expect(!sim.states.contains { if case .disconnected = $0.state { return true } else { return false } })
    }

    @Test func incomingChecksAreAnsweredAndTriggerChecks() throws {
        var sim = ICESim()
        let remote = ICESim.remote("192.0.2.9", 3478, priority: 2_130_706_431)
        sim.start([remote])
        sim.sent.removeAll()
        // From an address not in the answer: answered, learned as peer-reflexive, checked back.
        let prflx = STUNTransportAddress(ip: STUNIPAddress("192.0.2.77")!, port: 6000)
        let req = ICESim.request()
        sim.engine.handleSTUN(req, from: prflx, now: 0.001)
        sim.collect()
        let response = try #require(sim.sent.first)
        #expect(response.tx.to == prflx)
        #expect(response.message.messageClass == .successResponse)
        #expect(response.message.transactionID == (try STUNMessage.parse(req)).transactionID)
        #expect(try response.message.xorMappedAddress() == prflx)
        #expect(STUNMessage.checkIntegrity(response.tx.bytes, key: Array(ICESim.localCreds.pwd.utf8)) == .valid)
        #expect(STUNMessage.checkFingerprint(response.tx.bytes) == .valid)
        #expect(sim.engine.acceptsMedia(from: prflx))
        sim.run(until: 0.2) { _, _, _ in false }
        #expect(sim.sent.contains { $0.tx.to == prflx && $0.message.messageClass == .request })
        #expect(sim.engine.counters.totalDropped == 0)
    }

    @Test func badInputIsDroppedCountedAndAnsweredWhereTheRFCsSaySo() throws {
        var sim = ICESim()
        let remote = ICESim.remote("192.0.2.9", 3478, priority: 2_130_706_431)
        sim.start([remote])
        let check = try #require(sim.sent.first)
        sim.sent.removeAll()
        let from = remote.address
        func feed(_ b: [UInt8]) -> STUNMessage? {
            let before = sim.sent.count
            sim.engine.handleSTUN(b, from: from, now: 0.001)
            sim.collect()
            return sim.sent.count > before ? sim.sent.last!.message : nil
        }
        #expect(feed([0, 1, 0]) == nil)
        #expect(sim.engine.counters.dropped(.stunMalformed) == 1)
        #expect(feed(ICESim.request(fingerprint: false)) == nil)
        #expect(sim.engine.counters.dropped(.stunMissingFingerprint) == 1)
        var corrupt = ICESim.request(); corrupt[corrupt.count - 1] ^= 0xFF
        #expect(feed(corrupt) == nil)
        #expect(sim.engine.counters.dropped(.stunBadFingerprint) == 1)
        #expect(try feed(ICESim.request(key: "not-the-password-at-all"))?.errorCode()?.code == 401)
        #expect(sim.engine.counters.dropped(.stunBadIntegrity) == 1)
        #expect(try feed(ICESim.request(username: "SOMEONE:RMTE"))?.errorCode()?.code == 401)
        #expect(sim.engine.counters.dropped(.stunBadUsername) == 1)
        #expect(try feed(ICESim.request(controlling: true))?.errorCode()?.code == 487)
        #expect(sim.engine.counters.dropped(.stunRoleConflict) == 1)
        let r420 = try #require(feed(ICESim.request(extra: [STUNAttribute(type: 0x0031, value: [1, 2, 3, 4])])))
        #expect(try r420.errorCode()?.code == 420)
        #expect(try r420.unknownAttributes() == [0x0031])
        #expect(!sim.engine.acceptsMedia(from: from))
        // Responses: unknown transaction, wrong password, then the real one from the wrong port.
        var stray = STUNMessage(messageClass: .successResponse)
        stray.append(.xorMappedAddress(ICESim.localAddr, transactionID: stray.transactionID))
        #expect(feed(try stray.serialized(integrityKey: Array(ICESim.remoteCreds.pwd.utf8), fingerprint: true)) == nil)
        #expect(sim.engine.counters.dropped(.stunUnknownTransaction) == 1)
        #expect(feed(ICESim.successResponse(to: check.message, key: "forged-password-xxxxxxxx")) == nil)
        #expect(sim.engine.counters.dropped(.stunBadIntegrity) == 2)
        #expect(!sim.engine.acceptsMedia(from: from))
        sim.engine.handleSTUN(ICESim.successResponse(to: check.message),
                              from: STUNTransportAddress(ip: from.ip, port: from.port + 1), now: 0.002)
        #expect(sim.engine.counters.dropped(.stunNonSymmetricResponse) == 1)
        #expect(sim.engine.counters.totalDropped == 10)
        #expect(sim.engine.drainStateChanges().isEmpty)
        // The only pair failed: checking ends.
        sim.run(until: 0.1) { _, _, _ in false }
        #expect(sim.states.last?.state == .failed(.allPairsFailed))
    }

    @Test func noUsableCandidateFailsAtOnceAndNothingIsChecked() {
        var sim = ICESim()
        sim.start([ICESim.remote("2001:db8::1", 3478, priority: 1)])  // we only have IPv4
        #expect(sim.states.map(\.state) == [.failed(.noUsablePairs)])
        #expect(sim.sent.isEmpty)
    }

    @Test func connectTimeoutBoundsChecking() {
        var sim = ICESim(ICEConfiguration(connectTimeout: 2))
        sim.start([ICESim.remote("192.0.2.9", 3478, priority: 1)])
        sim.run(until: 3) { _, _, _ in false }
        #expect(sim.states.last?.state == .failed(.timeout(seconds: 2)))
        #expect(abs((sim.states.last?.time ?? 0) - 2) < 0.015)
    }

    @Test func candidateConversionFromSDPFields() throws {
        let c = try #require(ICECandidate(foundation: "1", component: 1, transport: "UDP", priority: 5, address: "2001:db8::20", port: 443, type: "host"))
        #expect(c.address.description == "[2001:db8::20]:443")
        #expect(ICECandidate(foundation: "1", component: 1, transport: "tcp", priority: 5, address: "10.0.0.1", port: 443, type: "host") == nil)
        #expect(ICECandidate(foundation: "1", component: 2, transport: "udp", priority: 5, address: "10.0.0.1", port: 443, type: "host") == nil)
        #expect(ICECandidate(foundation: "1", component: 1, transport: "udp", priority: 5, address: "x.local", port: 443, type: "host") == nil)
        #expect(ICECandidate.priority(type: .host, localPreference: 65535) == 2_130_706_431)
        #expect(ICECandidatePair.pairPriority(controlling: 10, controlled: 20) == 10 << 32 + 40)
        #expect(ICECandidatePair.pairPriority(controlling: 20, controlled: 10) == 10 << 32 + 41)
        let creds = ICECredentials.random()
        #expect(creds.ufrag.count == 8 && creds.pwd.count == 24)
    }

    /// The glue between the modules: answer candidates become ICE candidates, ours go in the offer.
    @Test func sdpAnswerCandidatesMapToICECandidatesAndBack() throws {
        let answer = try SubscribeAnswer(parsing: SDPSamples.fullActive)
        let remotes = answer.candidates.compactMap {
            ICECandidate(foundation: $0.foundation, component: $0.component, transport: $0.transport, priority: $0.priority,
                         address: $0.address, port: $0.port, type: $0.type)
        }
        #expect(remotes.map(\.address.description) == ["198.51.100.20:3478", "[2001:db8::20]:443", "203.0.113.9:51000"])
        #expect(remotes.map(\.type) == [.host, .host, .srflx])
        let local = ICESim.local
        let line = SDPCandidate(foundation: local.foundation, priority: local.priority, address: local.addressString,
                                port: local.port, type: local.type.rawValue)
        #expect(line.attributeValue == "candidate:1 1 udp \(local.priority) 192.0.2.1 5000 typ host")
        #expect(try SDPCandidate.parse(line.attributeValue) == line)
    }
}
