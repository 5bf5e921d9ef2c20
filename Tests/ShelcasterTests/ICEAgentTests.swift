import Foundation
import Testing
import ICE
import RTP
import STUN

/// Lock-guarded value shared between the socket threads and the test.
final class ICETestBox<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: T
    init(_ v: T) { value = v }
    func with<R>(_ body: (inout T) -> R) -> R {
        lock.lock(); defer { lock.unlock() }
        return body(&value)
    }
    var get: T { with { $0 } }
}

/// A minimal controlled ICE peer written for these tests on its own `UDPMux`: it answers checks
/// that carry its credentials (as an ice-lite server does), optionally sends its own checks (as a
/// full agent does), echoes DTLS-range datagrams and counts RTP-range ones. `silent` makes it
/// ignore everything, like a peer that died.
final class ICEStubPeer: @unchecked Sendable {
    struct State {
        var silent = false
        var requests = 0
        var useCandidates = 0
        var badRequests = 0
        var dtls: [[UInt8]] = []
        var media = 0
        var ownCheckMapped: STUNTransportAddress?
        var agentCandidate: STUNTransportAddress?
        var nextOwnCheck = 0.0
    }

    let credentials = ICECredentials(ufrag: "peer", pwd: "peer-password-0123456789")
    let mux: UDPMux
    let agentCredentials: ICECredentials
    let full: Bool
    let state = ICETestBox(State())

    init(ip: String, agentCredentials: ICECredentials, full: Bool) throws {
        mux = try UDPMux(interfaces: .addresses([STUNIPAddress(ip)!]))
        self.agentCredentials = agentCredentials
        self.full = full
    }

    var address: STUNTransportAddress { mux.localAddresses[0] }
    var candidate: ICECandidate { ICECandidate(foundation: "p1", priority: 2_130_706_431, address: address) }

    func start(agentCandidate: STUNTransportAddress) {
        state.with { $0.agentCandidate = agentCandidate }
        mux.start(onDatagram: { [self] kind, bytes, from, _ in received(kind, bytes, from) },
                  onTimer: { [self] now in timer(now) })
    }

    func stop() { mux.close() }

    private func received(_ kind: PacketKind, _ bytes: [UInt8], _ from: STUNTransportAddress) {
        guard !state.with({ $0.silent }) else { return }
        switch kind {
        case .stun:
            guard let m = try? STUNMessage.parse(bytes), STUNMessage.checkFingerprint(bytes) == .valid else { return }
            if m.messageClass == .request {
                guard (try? m.username()) == "\(credentials.ufrag):\(agentCredentials.ufrag)",
                      STUNMessage.checkIntegrity(bytes, key: Array(credentials.pwd.utf8)) == .valid,
                      m.has(STUNAttributeType.iceControlling), (try? m.priority()) != nil else {
                    state.with { $0.badRequests += 1 }
                    return
                }
                state.with { $0.requests += 1; if m.useCandidate { $0.useCandidates += 1 } }
                var r = STUNMessage(messageClass: .successResponse, transactionID: m.transactionID)
                r.append(.xorMappedAddress(from, transactionID: m.transactionID))
                mux.send(try! r.serialized(integrityKey: Array(credentials.pwd.utf8), fingerprint: true), to: from)
            } else if m.messageClass == .successResponse,
                      STUNMessage.checkIntegrity(bytes, key: Array(agentCredentials.pwd.utf8)) == .valid {
                let mapped = try? m.xorMappedAddress()
                state.with { $0.ownCheckMapped = mapped }
            }
        case .dtls:
            state.with { $0.dtls.append(bytes) }
            mux.send(bytes, to: from)
        case .rtpOrRtcp:
            state.with { $0.media += 1 }
        default:
            break
        }
    }

    /// A full peer checks the agent every 100 ms until one check succeeds.
    private func timer(_ now: Double) -> Double? {
        guard full else { return nil }
        let (due, target, done, silent) = state.with { s in (s.nextOwnCheck <= now, s.agentCandidate, s.ownCheckMapped != nil, s.silent) }
        guard due, !done, !silent, let target else { return now + 0.1 }
        var m = STUNMessage(messageClass: .request)
        m.append(.username("\(agentCredentials.ufrag):\(credentials.ufrag)"))
        m.append(.priority(1_853_824_767))
        m.append(.iceControlled(99))
        mux.send(try! m.serialized(integrityKey: Array(agentCredentials.pwd.utf8), fingerprint: true), to: target)
        state.with { $0.nextOwnCheck = now + 0.1 }
        return now + 0.1
    }
}

enum ICELoopback {
    static let hasIPv6 = UDPMux.interfaceAddresses().contains(STUNIPAddress("::1")!)

    /// Polls until `condition` holds or `seconds` pass.
    static func wait(_ seconds: Double, _ condition: () -> Bool) async -> Bool {
        let end = ICEClock.now() + seconds
        while ICEClock.now() < end {
            if condition() { return true }
            try? await Task.sleep(nanoseconds: 10_000_000)
        }
        return condition()
    }
}

@Suite(.serialized) struct ICEAgentTests {
    /// Records state changes with the time they arrived, and what the agent delivered.
    final class Recorder: @unchecked Sendable {
        let states = ICETestBox<[(Double, ICEState)]>([])
        let dtls = ICETestBox<[[UInt8]]>([])
        let media = ICETestBox<Int>(0)
        var handlers: ICEHandlers {
            ICEHandlers(onState: { s in self.states.with { $0.append((ICEClock.now(), s)) } },
                        onDTLS: { b in self.dtls.with { $0.append(b) } },
                        onMedia: { _, _ in self.media.with { $0 += 1 } })
        }
        var connected: Bool { states.get.contains { if case .connected = $0.1 { return true } else { return false } } }
        func time(of match: (ICEState) -> Bool) -> Double? { states.get.first { match($0.1) }?.0 }
    }

    static func shortConfig(ipv6: Bool) -> ICEConfiguration {
        ICEConfiguration(interfaces: .loopbackOnly, ipv4: !ipv6, ipv6: ipv6, nominationWait: 0.05, connectTimeout: 5,
                         consentInterval: 0.2, consentTimeout: 1.0)
    }

    @Test func liteStylePeerOnIPv4ConnectsCarriesDataAndIsDeclaredDeadWhenSilent() async throws {
        let agent = try ICEAgent(configuration: Self.shortConfig(ipv6: false))
        defer { agent.close() }
        #expect(agent.localCandidates.count == 1)
        #expect(agent.localCandidates[0].address.ip == STUNIPAddress("127.0.0.1"))
        #expect(agent.localCandidates[0].address.port != 0)
        let peer = try ICEStubPeer(ip: "127.0.0.1", agentCredentials: agent.credentials, full: false)
        defer { peer.stop() }
        peer.start(agentCandidate: agent.localCandidates[0].address)
        let rec = Recorder()
        let started = ICEClock.now()
        agent.start(remoteCredentials: peer.credentials, remoteCandidates: [peer.candidate], remoteIsLite: true, handlers: rec.handlers)

        #expect(await ICELoopback.wait(3) { rec.connected })
        #expect(rec.time { if case .connected = $0 { return true } else { return false } }! - started < 1.0)
        #expect(agent.selectedPair?.remote.address == peer.address)
        #expect(agent.selectedPair?.local == agent.localCandidates[0])
        #expect(peer.state.get.useCandidates >= 1)
        #expect(peer.state.get.badRequests == 0)

        // DTLS-range bytes go out on the selected pair, come back through the mux's demux.
        let record: [UInt8] = [22, 0xFE, 0xFD, 0, 0, 0, 0, 0, 0, 0, 1, 0, 3, 1, 2, 3]
        #expect(agent.send(record))
        let rtp: [UInt8] = [0x80, 111, 0, 1, 0, 0, 0, 160, 0, 0, 0, 7, 0xAA]
        #expect(agent.send(rtp))
        #expect(await ICELoopback.wait(2) { rec.dtls.get.count == 1 && peer.state.get.media == 1 })
        #expect(rec.dtls.get.first == record)
        #expect(peer.state.get.dtls == [record])
        peer.mux.send(rtp, to: agent.localCandidates[0].address)
        #expect(await ICELoopback.wait(2) { rec.media.get == 1 })

        // A stranger's DTLS, a malformed STUN message and an unclassifiable datagram are dropped and counted.
        let stranger = try UDPMux(interfaces: .addresses([STUNIPAddress("127.0.0.1")!]))
        defer { stranger.close() }
        stranger.send(record, to: agent.localCandidates[0].address)
        stranger.send([0, 1, 0, 4, 0x21, 0x12, 0xA4, 0x42], to: agent.localCandidates[0].address)
        stranger.send([0xFF, 0xFF], to: agent.localCandidates[0].address)
        #expect(await ICELoopback.wait(2) {
            let c = agent.counters
            return c.dropped(.unauthenticatedSource) == 1 && c.dropped(.stunMalformed) == 1 && c.dropped(.unclassified) == 1
        })
        #expect(rec.dtls.get.count == 1)

        // Consent requests keep flowing while the peer answers (interval 0.2 s).
        let before = peer.state.get.requests
        try await Task.sleep(nanoseconds: 700_000_000)
        #expect(peer.state.get.requests >= before + 2)
        #expect(agent.counters.consentRequestsSent >= 2)
        if case .connected = agent.state {} else { Issue.record("lost the connection while the peer answered: \(agent.state)") }

        // The peer dies: consent expires 1 s after its last answer.
        let silentAt = ICEClock.now()
        peer.state.with { $0.silent = true }
        #expect(await ICELoopback.wait(3) { rec.states.get.contains { if case .disconnected = $0.1 { return true } else { return false } } })
        let lostAt = try #require(rec.time { if case .disconnected = $0 { return true } else { return false } })
        #expect(lostAt - silentAt <= 1.0 + 0.3)
        #expect(lostAt - silentAt >= 1.0 - 0.2 * 1.2 - 0.05)
        #expect(agent.state == .disconnected(.consentExpired(seconds: 1.0)))
        #expect(!agent.send(record))
        let seen = rec.states.get.map(\.1)
        #expect(seen.first == .checking)
        #expect(seen.count == 3)
    }

    @Test(.enabled(if: ICELoopback.hasIPv6))
    func fullPeerOnIPv6ChecksUsToo() async throws {
        let agent = try ICEAgent(configuration: Self.shortConfig(ipv6: true))
        defer { agent.close() }
        #expect(agent.localCandidates.map(\.address.ip) == [STUNIPAddress("::1")!])
        let peer = try ICEStubPeer(ip: "::1", agentCredentials: agent.credentials, full: true)
        defer { peer.stop() }
        peer.start(agentCandidate: agent.localCandidates[0].address)
        let rec = Recorder()
        agent.start(remoteCredentials: peer.credentials, remoteCandidates: [peer.candidate], handlers: rec.handlers)
        #expect(await ICELoopback.wait(3) { rec.connected && peer.state.get.ownCheckMapped != nil })
        // Our answer to the peer's check reflects its address, authenticated with our password.
        #expect(peer.state.get.ownCheckMapped == peer.address)
        #expect(agent.counters.responsesSent >= 1)
        #expect(agent.selectedPair?.remote.address == peer.address)
        #expect(agent.send([23, 0xFE, 0xFD, 1]))
        #expect(await ICELoopback.wait(2) { rec.dtls.get == [[23, 0xFE, 0xFD, 1]] })
        #expect(agent.counters.totalDropped == 0)
    }

    @Test func eventStreamReportsTheSameStatesAndFinishes() async throws {
        var config = Self.shortConfig(ipv6: false)
        config.connectTimeout = 0.5
        let agent = try ICEAgent(configuration: config)
        // A peer that never answers: checking times out.
        let peer = try ICEStubPeer(ip: "127.0.0.1", agentCredentials: agent.credentials, full: false)
        defer { peer.stop() }
        peer.state.with { $0.silent = true }
        peer.start(agentCandidate: agent.localCandidates[0].address)
        let rec = Recorder()
        let started = ICEClock.now()
        agent.start(remoteCredentials: peer.credentials, remoteCandidates: [peer.candidate], handlers: rec.handlers)
        var streamed: [ICEState] = []
        for await s in agent.events { streamed.append(s) }  // finishes on the terminal state
        #expect(streamed == [.checking, .failed(.timeout(seconds: 0.5))])
        #expect(ICEClock.now() - started < 1.5)
        #expect(rec.states.get.map(\.1) == streamed)
        agent.close()
        #expect(agent.state == .failed(.timeout(seconds: 0.5)))
    }
}
