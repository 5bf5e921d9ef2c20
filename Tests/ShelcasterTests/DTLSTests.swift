import Foundation
import Testing
import DTLS

@Suite("DTLS certificate and fingerprints")
struct DTLSCertificateTests {
    @Test func generatedCertificateHasSDPFingerprint() throws {
        let a = try DTLSCertificate.generate()
        let b = try DTLSCertificate.generate()
        #expect(a.fingerprint.algorithm == .sha256)
        #expect(a.fingerprint.bytes.count == 32)
        let hex = a.fingerprint.hexValue
        #expect(hex.count == 32 * 3 - 1)
        #expect(hex.split(separator: ":").allSatisfy { $0.count == 2 && UInt8($0, radix: 16) != nil && $0.uppercased() == $0 })
        #expect(a.sdpFingerprint == "sha-256 " + hex)
        #expect(a.fingerprint != b.fingerprint, "each certificate has a fresh key")
        #expect(try a.fingerprint(.sha384).bytes.count == 48)
        #expect(try a.fingerprint(.sha1).bytes.count == 20)
        #expect(try a.fingerprint(.sha512).bytes.count == 64)
    }

    /// Cross-checks the certificate with the openssl command-line tool: key type, subject,
    /// validity, and that its SHA-256 fingerprint is the one we announce.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/openssl")))
    func certificateContentsMatchOpenSSLCLI() throws {
        let certificate = try DTLSCertificate.generate()
        let der = certificate.derEncoded
        #expect(der.count > 200)
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("dtls-cert-\(UUID().uuidString).der").path
        try Data(der).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let text = try dtlsRunTool("/usr/bin/openssl", ["x509", "-inform", "DER", "-in", path, "-noout",
                                                         "-subject", "-issuer", "-fingerprint", "-sha256", "-text"])
        #expect(text.contains("subject=CN = shelcaster"))
        #expect(text.contains("issuer=CN = shelcaster"))
        #expect(text.contains("sha256 Fingerprint=\(certificate.fingerprint.hexValue)"))
        #expect(text.contains("ASN1 OID: prime256v1"))
        #expect(text.contains("ecdsa-with-SHA256"))
        // Validity: about 30 days (plus the hour of back-dating).
        let dates = try dtlsRunTool("/usr/bin/openssl", ["x509", "-inform", "DER", "-in", path, "-noout", "-startdate", "-enddate"])
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "MMM d HH:mm:ss yyyy zzz"
        var parsed: [String: Date] = [:]
        for line in dates.split(separator: "\n") {
            let parts = line.split(separator: "=", maxSplits: 1)
            guard parts.count == 2 else { continue }
            let value = parts[1].split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
            parsed[String(parts[0])] = formatter.date(from: value)
        }
        let start = try #require(parsed["notBefore"])
        let end = try #require(parsed["notAfter"])
        #expect(abs(start.timeIntervalSinceNow + 3600) < 120)
        #expect(abs(end.timeIntervalSince(start) - (30 * 86_400 + 3600)) < 5)
    }

    @Test func fingerprintParsing() throws {
        let certificate = try DTLSCertificate.generate()
        let parsed = try DTLSFingerprint(sdpAttributeValue: certificate.sdpFingerprint)
        #expect(parsed == certificate.fingerprint)
        let lower = try DTLSFingerprint(algorithm: "SHA-256", hex: certificate.fingerprint.hexValue.lowercased())
        #expect(lower == certificate.fingerprint)
        #expect(DTLSHashAlgorithm(name: "sha384") == .sha384)

        #expect(throws: DTLSError.self) { try DTLSFingerprint(sdpAttributeValue: "md5 AB:CD") }
        #expect(throws: DTLSError.self) { try DTLSFingerprint(algorithm: "sha-256", hex: "AB:CD") }
        #expect(throws: DTLSError.self) { try DTLSFingerprint(algorithm: "sha-1", hex: "ZZ" + String(repeating: ":00", count: 19)) }
        #expect(throws: DTLSError.self) { try DTLSFingerprint(sdpAttributeValue: "sha-256") }
        #expect(throws: DTLSError.self) { try DTLSFingerprint(algorithm: "sha-1", hex: "A:" + String(repeating: "00:", count: 18) + "00") }
    }
}

@Suite("DTLS handshake")
struct DTLSHandshakeTests {
    @Test func clientAndServerConnectWithMatchingKeys() throws {
        var pair = try DTLSTestPair.make()
        pair.handshake()
        #expect(pair.client.state == .connected)
        #expect(pair.server.state == .connected)
        let clientKeys = try #require(pair.clientEvents.dtlsKeys)
        let serverKeys = try #require(pair.serverEvents.dtlsKeys)
        // The server picks by its own preference among what the client offers: AES-128-GCM first.
        #expect(clientKeys.profile == .aeadAes128Gcm)
        #expect(serverKeys.profile == .aeadAes128Gcm)
        #expect(clientKeys.localKey == serverKeys.remoteKey)
        #expect(clientKeys.localSalt == serverKeys.remoteSalt)
        #expect(clientKeys.remoteKey == serverKeys.localKey)
        #expect(clientKeys.remoteSalt == serverKeys.localSalt)
        #expect(clientKeys.localKey != clientKeys.remoteKey)
        #expect(clientKeys.localKey.count == 16 && clientKeys.localSalt.count == 12)
        #expect(pair.client.peerFingerprint == pair.serverCertificate.fingerprint)
        #expect(pair.server.peerFingerprint == pair.clientCertificate.fingerprint)
        #expect(pair.client.keyingMaterial == clientKeys)
        #expect(pair.client.counters.malformedRecords == 0)
        #expect(pair.client.counters.alertsReceived == 0)
        #expect(pair.clientEvents.count == 1 && pair.serverEvents.count == 1, "exactly one .connected each")
        // Every datagram respects the 1200-byte MTU; nothing is left to send or time out.
        #expect(pair.client.nextTimeoutInterval == nil)
        #expect(pair.client.pendingOutput().isEmpty && pair.server.pendingOutput().isEmpty)
        #expect(pair.client.counters.datagramsSent >= 2)
        #expect(pair.server.counters.datagramsReceived == pair.client.counters.datagramsSent)
    }

    @Test(arguments: DTLSSRTPProfile.allCases)
    func eachProfileNegotiatesAlone(profile: DTLSSRTPProfile) throws {
        var pair = try DTLSTestPair.make(clientProfiles: [profile], serverProfiles: [profile])
        pair.handshake()
        let clientKeys = try #require(pair.clientEvents.dtlsKeys)
        let serverKeys = try #require(pair.serverEvents.dtlsKeys)
        #expect(clientKeys.profile == profile && serverKeys.profile == profile)
        #expect(clientKeys.localKey.count == profile.keyLength)
        #expect(clientKeys.localSalt.count == profile.saltLength)
        #expect(clientKeys.remoteKey.count == profile.keyLength)
        #expect(clientKeys.remoteSalt.count == profile.saltLength)
        #expect(clientKeys.localKey == serverKeys.remoteKey && clientKeys.localSalt == serverKeys.remoteSalt)
        #expect(clientKeys.remoteKey == serverKeys.localKey && clientKeys.remoteSalt == serverKeys.localSalt)
    }

    @Test func serverPreferenceDecidesAmongOfferedProfiles() throws {
        var pair = try DTLSTestPair.make(clientProfiles: [.aeadAes256Gcm, .aes128CmSha1_80],
                                         serverProfiles: [.aes128CmSha1_80, .aeadAes256Gcm])
        pair.handshake()
        #expect(pair.clientEvents.dtlsKeys?.profile == .aes128CmSha1_80)
        #expect(pair.serverEvents.dtlsKeys?.profile == .aes128CmSha1_80)
    }

    @Test func noCommonProfileFails() throws {
        var pair = try DTLSTestPair.make(clientProfiles: [.aeadAes256Gcm], serverProfiles: [.aes128CmSha1_80])
        pair.handshake()
        #expect(pair.client.state == .failed)
        #expect(pair.clientEvents.dtlsFailure == .noSRTPProfile)
        #expect(pair.clientEvents.dtlsKeys == nil && pair.serverEvents.dtlsKeys == nil)
    }

    @Test func clientRefusesServerWithWrongFingerprint() throws {
        let stranger = try DTLSCertificate.generate()
        var pair = try DTLSTestPair.make(clientExpects: stranger.fingerprint)
        pair.handshake()
        #expect(pair.client.state == .failed)
        let failure = try #require(pair.clientEvents.dtlsFailure)
        #expect(failure == .fingerprintMismatch(expected: stranger.fingerprint.hexValue,
                                                actual: pair.serverCertificate.fingerprint.hexValue))
        #expect(pair.clientEvents.dtlsKeys == nil, "no keys from a refused peer")
        // The refusal reached the server as a fatal alert; it never connected either.
        #expect(pair.server.state == .failed)
        #expect(pair.serverEvents.dtlsFailure == .peerAlert("bad certificate"))
        #expect(pair.serverEvents.dtlsKeys == nil)
        #expect(pair.client.counters.alertsSent >= 1)
        #expect(pair.server.counters.alertsReceived == 1)
    }

    @Test func serverRefusesClientWithWrongFingerprint() throws {
        let stranger = try DTLSCertificate.generate()
        var pair = try DTLSTestPair.make(serverExpects: stranger.fingerprint)
        pair.handshake()
        #expect(pair.server.state == .failed)
        #expect(pair.serverEvents.dtlsFailure == .fingerprintMismatch(expected: stranger.fingerprint.hexValue,
                                                                     actual: pair.clientCertificate.fingerprint.hexValue))
        #expect(pair.serverEvents.dtlsKeys == nil)
        #expect(pair.client.state == .failed)
        #expect(pair.clientEvents.dtlsFailure == .peerAlert("bad certificate"))
        #expect(pair.clientEvents.dtlsKeys == nil)
        // Input after failure is dropped and counted.
        let before = pair.server.counters.droppedAfterClose
        let events = pair.server.feed([22, 0xFE, 0xFD] + [UInt8](repeating: 0, count: 10))
        #expect(pair.server.counters.droppedAfterClose == before + 1)
        #expect(events.dtlsFailure == nil)
    }

    @Test func sha384FingerprintIsAccepted() throws {
        let clientCertificate = try DTLSCertificate.generate()
        let serverCertificate = try DTLSCertificate.generate()
        let client = try DTLSEndpoint(role: .client, certificate: clientCertificate,
                                      expectedPeerFingerprint: try serverCertificate.fingerprint(.sha384))
        let server = try DTLSEndpoint(role: .server, certificate: serverCertificate,
                                      expectedPeerFingerprint: try clientCertificate.fingerprint(.sha512))
        var pair = DTLSTestPair(client: client, server: server,
                                clientCertificate: clientCertificate, serverCertificate: serverCertificate)
        pair.handshake()
        #expect(client.state == .connected && server.state == .connected)
        #expect(client.peerFingerprint == (try serverCertificate.fingerprint(.sha384)))
    }

    @Test func lostFirstFlightIsRecoveredByRetransmission() async throws {
        var pair = try DTLSTestPair.make(retransmit: .milliseconds(150))
        pair.clientEvents += pair.client.start()
        let clientHello = pair.client.pendingOutput()
        #expect(clientHello.count == 1)
        // Lost on the way: the server hears nothing.
        let interval = try #require(pair.client.nextTimeoutInterval)
        #expect(interval > .zero && interval <= .milliseconds(150))
        #expect(pair.client.handleTimeout().isEmpty)
        #expect(pair.client.counters.retransmissions == 0, "not yet expired")
        #expect(pair.client.pendingOutput().isEmpty)

        try await Task.sleep(for: .milliseconds(200))
        pair.client.handleTimeout()
        #expect(pair.client.counters.retransmissions == 1)
        let resent = pair.client.pendingOutput()
        #expect(resent.count == 1)
        #expect(resent.first?.count == clientHello.first?.count, "same ClientHello again")
        // Backoff: the next timer is doubled.
        let backoff = try #require(pair.client.nextTimeoutInterval)
        #expect(backoff > .milliseconds(200) && backoff <= .milliseconds(300))

        for datagram in resent { pair.serverEvents += pair.server.feed(datagram) }
        pair.pump()
        #expect(pair.client.state == .connected && pair.server.state == .connected)
        #expect(pair.clientEvents.dtlsKeys?.localKey == pair.serverEvents.dtlsKeys?.remoteKey)
    }

    @Test func lostFinalServerFlightIsRecovered() async throws {
        var pair = try DTLSTestPair.make(retransmit: .milliseconds(40))
        pair.clientEvents += pair.client.start()
        // Drop everything the server sends once it has connected (its CCS + Finished).
        let server = pair.server
        pair.pump(dropToClient: { _, _ in server.state == .connected })
        #expect(pair.server.state == .connected)
        #expect(pair.client.state == .connecting)
        #expect(pair.droppedToClient >= 1)

        // The client's timer resends its flight; the server answers with its final flight again.
        for _ in 0..<20 where pair.client.state != .connected {
            try await Task.sleep(for: .milliseconds(50))
            pair.clientEvents += pair.client.handleTimeout()
            pair.pump()
        }
        #expect(pair.client.state == .connected)
        #expect(pair.client.counters.retransmissions >= 1)
        #expect(pair.clientEvents.dtlsKeys?.localKey == pair.serverEvents.dtlsKeys?.remoteKey)
        #expect(pair.serverEvents.filter { if case .connected = $0 { return true } else { return false } }.count == 1)
    }

    @Test func garbageIsCountedNotFatal() throws {
        var pair = try DTLSTestPair.make()
        var random = DTLSTestRandom(state: 7)
        var expectedMalformed = 0, expectedNotDTLS = 0

        // Before the handshake: not DTLS at all, truncated header, bad version, overrunning length.
        var garbage: [[UInt8]] = [
            [],
            [0x00, 0x01, 0x02],
            [0x80] + random.bytes(40),
            [22, 0xFE, 0xFD, 0, 0],
            [22, 0x03, 0x03] + [UInt8](repeating: 0, count: 10) + random.bytes(20),
            [22, 0xFE, 0xFD] + [UInt8](repeating: 0, count: 8) + [0x10, 0x00] + random.bytes(30),
            [30, 0xFE, 0xFD] + [UInt8](repeating: 0, count: 8) + [0x00, 0x04] + random.bytes(4),
        ]
        for _ in 0..<200 { garbage.append([UInt8(20 + random.below(44))] + random.bytes(random.below(60))) }
        var serverEvents: [DTLSEvent] = []
        for datagram in garbage {
            if datagram.isEmpty || !(20...63).contains(datagram[0]) {
                expectedNotDTLS += 1
            } else {
                expectedMalformed += 1
            }
            serverEvents += pair.server.feed(datagram)
        }
        #expect(pair.server.counters.notDTLSDatagrams == expectedNotDTLS)
        // Random bytes almost never form a valid header; the few that do are handed to OpenSSL.
        #expect(pair.server.counters.malformedRecords >= expectedMalformed - 5)
        #expect(pair.server.counters.malformedRecords <= expectedMalformed)
        #expect(serverEvents.dtlsFirstDrops(.malformedRecord) == 1, "each cause reported once")
        #expect(serverEvents.dtlsFirstDrops(.notDTLS) == 1)
        #expect(serverEvents.dtlsFailure == nil)

        pair.serverEvents += serverEvents
        pair.handshake()
        #expect(pair.client.state == .connected && pair.server.state == .connected)

        // After the handshake: well-formed headers with forged epoch-1 contents fail OpenSSL's
        // record MAC and are silently discarded; malformed headers are counted.
        let before = pair.server.counters.malformedRecords
        var after: [DTLSEvent] = []
        for sequence in 0..<50 {
            let body = random.bytes(48)
            let forged: [UInt8] = [23, 0xFE, 0xFD, 0x00, 0x01, 0, 0, 0, 0, 0, UInt8(sequence + 10), 0x00, UInt8(body.count)] + body
            after += pair.server.feed(forged)
            after += pair.server.feed(Array(forged.prefix(20)))
        }
        #expect(pair.server.counters.malformedRecords == before + 50)
        #expect(pair.server.state == .connected)
        #expect(after.dtlsFailure == nil)
        #expect(!after.contains { if case .applicationData = $0 { return true } else { return false } })
    }

    /// Well-formed record headers around random bodies reach OpenSSL itself: a connected session
    /// discards them all (wrong epoch or bad MAC) and stays up; a handshaking one may fail, but
    /// only through `.failed`, never a trap.
    @Test func randomRecordsReachingOpenSSLNeverTrap() throws {
        var pair = try DTLSTestPair.make()
        pair.handshake()
        var random = DTLSTestRandom(state: 99)
        func forgedDatagram() -> [UInt8] {
            var datagram: [UInt8] = []
            for _ in 0..<(1 + random.below(3)) {
                let body = random.bytes(random.below(120))
                datagram += [UInt8(20 + random.below(4)), 0xFE, random.below(2) == 0 ? 0xFD : 0xFF]
                datagram += random.bytes(8)
                datagram += [UInt8(body.count >> 8), UInt8(body.count & 0xFF)] + body
            }
            return datagram
        }
        var events: [DTLSEvent] = []
        for _ in 0..<3_000 { events += pair.server.feed(forgedDatagram()) }
        #expect(pair.server.state == .connected)
        #expect(events.dtlsFailure == nil)
        #expect(pair.server.counters.malformedRecords == 0, "headers were valid; OpenSSL did the dropping")
        #expect(pair.server.counters.datagramsReceived >= 3_000)

        // The keys still work: a close_notify from the real peer is understood.
        pair.client.close()
        var closing: [DTLSEvent] = []
        for datagram in pair.client.pendingOutput() { closing += pair.server.feed(datagram) }
        #expect(closing.contains(.closed))

        // Mid-handshake: every outcome must be a defined state.
        for seed in UInt64(0)..<20 {
            random = DTLSTestRandom(state: seed)
            var fresh = try DTLSTestPair.make()
            fresh.clientEvents += fresh.client.start()
            for datagram in fresh.client.pendingOutput() { fresh.serverEvents += fresh.server.feed(datagram) }
            for _ in 0..<50 { fresh.serverEvents += fresh.server.feed(forgedDatagram()) }
            fresh.pump()
            #expect([.connecting, .connected, .failed].contains(fresh.server.state))
            if fresh.server.state == .failed { #expect(fresh.serverEvents.dtlsFailure != nil) }
        }
    }

    @Test func closeNotifyEndsTheSession() throws {
        var pair = try DTLSTestPair.make()
        pair.handshake()
        pair.client.close()
        #expect(pair.client.state == .closed)
        let out = pair.client.pendingOutput()
        #expect(out.count == 1)
        var events: [DTLSEvent] = []
        for datagram in out { events += pair.server.feed(datagram) }
        #expect(events.contains(.closed))
        #expect(pair.server.state == .closed)
        #expect(pair.server.counters.alertsReceived == 1)
        let late = pair.server.feed(out[0])
        #expect(pair.server.counters.droppedAfterClose == 1)
        #expect(late.dtlsFirstDrops(.afterClose) == 1)
    }

    @Test func configurationIsValidated() throws {
        let certificate = try DTLSCertificate.generate()
        #expect(throws: DTLSError.self) {
            try DTLSEndpoint(role: .client, certificate: certificate, expectedPeerFingerprint: certificate.fingerprint, srtpProfiles: [])
        }
        #expect(throws: DTLSError.self) {
            try DTLSEndpoint(role: .client, certificate: certificate, expectedPeerFingerprint: certificate.fingerprint, mtu: 100)
        }
        #expect(throws: DTLSError.self) {
            try DTLSEndpoint(role: .client, certificate: certificate, expectedPeerFingerprint: certificate.fingerprint,
                             srtpProfiles: [.aes128CmSha1_80, .aes128CmSha1_80])
        }
    }
}

/// Runs a tool to completion and returns its standard output (bounded wait).
func dtlsRunTool(_ path: String, _ arguments: [String]) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    let output = Pipe()
    process.standardOutput = output
    process.standardError = FileHandle.nullDevice
    try process.run()
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return String(decoding: data, as: UTF8.self)
}
