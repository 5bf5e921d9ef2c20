import DTLS

/// Two endpoints wired back to back in memory, with hooks to lose datagrams.
struct DTLSTestPair {
    let client: DTLSEndpoint
    let server: DTLSEndpoint
    let clientCertificate: DTLSCertificate
    let serverCertificate: DTLSCertificate
    var clientEvents: [DTLSEvent] = []
    var serverEvents: [DTLSEvent] = []
    /// Datagrams actually delivered in each direction.
    var deliveredToServer = 0
    var deliveredToClient = 0
    var droppedToServer = 0
    var droppedToClient = 0

    /// - Parameters: `clientExpects`/`serverExpects` override the fingerprint each side pins.
    static func make(clientProfiles: [DTLSSRTPProfile] = DTLSSRTPProfile.defaultPreference,
                     serverProfiles: [DTLSSRTPProfile] = DTLSSRTPProfile.defaultPreference,
                     clientExpects: DTLSFingerprint? = nil,
                     serverExpects: DTLSFingerprint? = nil,
                     retransmit: Duration = .seconds(1)) throws -> DTLSTestPair {
        let clientCertificate = try DTLSCertificate.generate()
        let serverCertificate = try DTLSCertificate.generate()
        let client = try DTLSEndpoint(role: .client, certificate: clientCertificate,
                                      expectedPeerFingerprint: clientExpects ?? serverCertificate.fingerprint,
                                      srtpProfiles: clientProfiles, initialRetransmitTimeout: retransmit)
        let server = try DTLSEndpoint(role: .server, certificate: serverCertificate,
                                      expectedPeerFingerprint: serverExpects ?? clientCertificate.fingerprint,
                                      srtpProfiles: serverProfiles, initialRetransmitTimeout: retransmit)
        return DTLSTestPair(client: client, server: server,
                            clientCertificate: clientCertificate, serverCertificate: serverCertificate)
    }

    /// Exchanges datagrams until both sides are quiet (bounded). `dropToServer`/`dropToClient`
    /// see each datagram with its running index in that direction and may discard it.
    mutating func pump(rounds: Int = 20,
                       dropToServer: (Int, [UInt8]) -> Bool = { _, _ in false },
                       dropToClient: (Int, [UInt8]) -> Bool = { _, _ in false }) {
        for _ in 0..<rounds {
            let toServer = client.pendingOutput()
            let toClient = server.pendingOutput()
            if toServer.isEmpty && toClient.isEmpty { return }
            for datagram in toServer {
                let index = deliveredToServer + droppedToServer
                if dropToServer(index, datagram) { droppedToServer += 1; continue }
                deliveredToServer += 1
                serverEvents += server.feed(datagram)
            }
            for datagram in toClient {
                let index = deliveredToClient + droppedToClient
                if dropToClient(index, datagram) { droppedToClient += 1; continue }
                deliveredToClient += 1
                clientEvents += client.feed(datagram)
            }
        }
    }

    /// Starts the client and pumps to completion.
    mutating func handshake() {
        clientEvents += client.start()
        serverEvents += server.start()
        pump()
    }
}

extension Array where Element == DTLSEvent {
    var dtlsKeys: DTLSSRTPKeyingMaterial? {
        for event in self { if case let .connected(keys) = event { return keys } }
        return nil
    }

    var dtlsFailure: DTLSFailure? {
        for event in self { if case let .failed(failure) = event { return failure } }
        return nil
    }

    func dtlsFirstDrops(_ cause: DTLSDropCause) -> Int {
        filter { if case .firstDrop(cause, _) = $0 { return true } else { return false } }.count
    }
}

/// Deterministic bytes for fuzz-style tests (SplitMix64).
struct DTLSTestRandom {
    var state: UInt64

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func bytes(_ count: Int) -> [UInt8] {
        (0..<count).map { _ in UInt8(truncatingIfNeeded: next()) }
    }

    mutating func below(_ bound: Int) -> Int { Int(next() % UInt64(bound)) }
}

/// Builds a plain RTP packet (version 2) for tests.
func dtlsTestRTP(sequence: UInt16, timestamp: UInt32 = 960, ssrc: UInt32 = 0x1122_3344,
                 payloadType: UInt8 = 111, payload: [UInt8], csrcs: [UInt32] = [],
                 extensionWords: [UInt32]? = nil) -> [UInt8] {
    var packet: [UInt8] = []
    packet.append(0x80 | (extensionWords == nil ? 0 : 0x10) | UInt8(csrcs.count & 0x0F))
    packet.append(payloadType & 0x7F)
    packet += [UInt8(sequence >> 8), UInt8(sequence & 0xFF)]
    packet += withUnsafeBytes(of: timestamp.bigEndian, Array.init)
    packet += withUnsafeBytes(of: ssrc.bigEndian, Array.init)
    for csrc in csrcs { packet += withUnsafeBytes(of: csrc.bigEndian, Array.init) }
    if let words = extensionWords {
        packet += [0xBE, 0xDE, UInt8(words.count >> 8), UInt8(words.count & 0xFF)]
        for word in words { packet += withUnsafeBytes(of: word.bigEndian, Array.init) }
    }
    return packet + payload
}

/// An RTCP receiver report with no report blocks (8 bytes).
func dtlsTestRTCPReceiverReport(ssrc: UInt32 = 0x5566_7788) -> [UInt8] {
    [0x80, 201, 0x00, 0x01] + withUnsafeBytes(of: ssrc.bigEndian, Array.init)
}
