import COpenSSL

/// A DTLS 1.2 endpoint for DTLS-SRTP, driven entirely by bytes: the transport (ICE) hands it each
/// received DTLS datagram with `feed`, sends what `pendingOutput` returns, and calls
/// `handleTimeout` when `nextTimeout` is reached. OpenSSL runs over memory BIOs; no sockets here.
///
/// Trust comes from SDP, not from a CA: any self-signed peer certificate passes OpenSSL's chain
/// verification, and the peer certificate's digest must equal the fingerprint the answer
/// announced, checked while the peer's Certificate message is processed (a mismatch aborts the
/// handshake with a bad_certificate alert) and again before `.connected` is reported.
///
/// Not thread-safe: one owner (the transport's task or thread) must make every call. OpenSSL
/// objects are only touched from inside these calls.
public final class DTLSEndpoint {
    public enum Role: Sendable, Equatable {
        /// Sends the ClientHello (answer says `a=setup:passive`, so we are active).
        case client
        /// Waits for the ClientHello (answer says `a=setup:active`).
        case server
    }

    public let role: Role
    public let certificate: DTLSCertificate
    public let expectedPeerFingerprint: DTLSFingerprint
    public let srtpProfiles: [DTLSSRTPProfile]
    public let mtu: Int

    public private(set) var state: DTLSState = .new
    public private(set) var counters = DTLSCounters()
    /// Set once `.connected` has been reported.
    public private(set) var keyingMaterial: DTLSSRTPKeyingMaterial?
    /// The peer certificate's fingerprint (expected algorithm), once verified.
    public private(set) var peerFingerprint: DTLSFingerprint?
    /// The failure reported with `.failed`, if any.
    public private(set) var failure: DTLSFailure?

    private let sslContext: OpaquePointer   // SSL_CTX*
    private let ssl: OpaquePointer          // SSL*, owns both BIOs
    private let readBIO: OpaquePointer      // network -> OpenSSL
    private let writeBIO: OpaquePointer     // OpenSSL -> network
    private let callbacks: DTLSCallbackContext
    private var outbox: [[UInt8]] = []
    private var readBuffer = [UInt8](repeating: 0, count: 16_384)
    private var reportedDrops: Set<DTLSDropCause> = []

    /// - Parameters:
    ///   - expectedPeerFingerprint: the answer's `a=fingerprint` (any of sha-1/224/256/384/512).
    ///   - srtpProfiles: offered (client) or accepted (server) profiles, most preferred first.
    ///   - initialRetransmitTimeout: first retransmission delay; doubled per retry up to 60 s.
    ///   - mtu: largest datagram we send.
    public init(role: Role,
                certificate: DTLSCertificate,
                expectedPeerFingerprint: DTLSFingerprint,
                srtpProfiles: [DTLSSRTPProfile] = DTLSSRTPProfile.defaultPreference,
                initialRetransmitTimeout: Duration = .seconds(1),
                mtu: Int = 1200) throws(DTLSError) {
        guard !srtpProfiles.isEmpty else { throw .invalidConfiguration("at least one SRTP profile is required") }
        guard Set(srtpProfiles).count == srtpProfiles.count else { throw .invalidConfiguration("duplicate SRTP profiles") }
        guard (256...16_384).contains(mtu) else { throw .invalidConfiguration("mtu \(mtu) outside 256...16384") }
        let timeoutMicroseconds = initialRetransmitTimeout.components.seconds * 1_000_000
            + initialRetransmitTimeout.components.attoseconds / 1_000_000_000_000
        guard (1_000...60_000_000).contains(timeoutMicroseconds) else {
            throw .invalidConfiguration("initialRetransmitTimeout must be 1 ms...60 s")
        }

        self.role = role
        self.certificate = certificate
        self.expectedPeerFingerprint = expectedPeerFingerprint
        self.srtpProfiles = srtpProfiles
        self.mtu = mtu
        self.callbacks = DTLSCallbackContext(expected: expectedPeerFingerprint,
                                             initialTimeoutMicroseconds: UInt32(timeoutMicroseconds))

        ERR_clear_error()
        guard let context = SSL_CTX_new(DTLS_method()) else {
            throw .openSSL(operation: "SSL_CTX_new(DTLS_method)", detail: openSSLErrorText())
        }
        func failContext(_ operation: String) -> DTLSError {
            let error = DTLSError.openSSL(operation: operation, detail: openSSLErrorText())
            SSL_CTX_free(context)
            return error
        }
        guard cdtls_ctx_pin_dtls12(context) == 1 else { throw failContext("pin DTLS 1.2") }
        guard SSL_CTX_use_certificate(context, certificate.x509) == 1 else { throw failContext("SSL_CTX_use_certificate") }
        guard SSL_CTX_use_PrivateKey(context, certificate.privateKey) == 1 else { throw failContext("SSL_CTX_use_PrivateKey") }
        guard SSL_CTX_check_private_key(context) == 1 else { throw failContext("SSL_CTX_check_private_key") }
        // Note: this call returns 0 on success.
        let profileList = srtpProfiles.map(\.openSSLName).joined(separator: ":")
        guard SSL_CTX_set_tlsext_use_srtp(context, profileList) == 0 else { throw failContext("SSL_CTX_set_tlsext_use_srtp(\(profileList))") }
        // Require and check a peer certificate on both sides; the callback does the trust decision.
        SSL_CTX_set_verify(context, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, dtlsVerifyCallback)
        SSL_CTX_set_info_callback(context, dtlsInfoCallback)

        guard let connection = SSL_new(context) else { throw failContext("SSL_new") }
        guard let rbio = BIO_new(BIO_s_mem()), let wbio = BIO_new(BIO_s_mem()) else {
            SSL_free(connection)
            throw failContext("BIO_new(BIO_s_mem)")
        }
        cdtls_bio_mem_eof_retry(rbio)
        cdtls_bio_mem_eof_retry(wbio)
        SSL_set_bio(connection, rbio, wbio)
        cdtls_set_no_query_mtu(connection)
        guard cssl_set_mtu(connection, mtu) > 0 else {
            SSL_free(connection)
            throw failContext("SSL_set_mtu(\(mtu))")
        }
        DTLS_set_timer_cb(connection, dtlsTimerCallback)
        // The context outlives the SSL (both are released together in deinit).
        SSL_set_ex_data(connection, 0, Unmanaged.passUnretained(callbacks).toOpaque())
        switch role {
        case .client: SSL_set_connect_state(connection)
        case .server: SSL_set_accept_state(connection)
        }

        self.sslContext = context
        self.ssl = connection
        self.readBIO = rbio
        self.writeBIO = wbio
    }

    deinit {
        SSL_free(ssl)
        SSL_CTX_free(sslContext)
    }

    // MARK: - Driving

    /// Starts the handshake: a client queues its ClientHello; a server just waits.
    @discardableResult
    public func start() -> [DTLSEvent] {
        guard state == .new else { return [] }
        state = .connecting
        var events: [DTLSEvent] = []
        if role == .client { advanceHandshake(&events) }
        drainOutput()
        return events
    }

    /// Processes one received datagram (first byte 20...63 per RFC 7983). Bad input is counted
    /// and dropped; it never throws or traps.
    public func feed(_ datagram: some Collection<UInt8>) -> [DTLSEvent] {
        if let result = datagram.withContiguousStorageIfAvailable({ feedBuffer($0) }) { return result }
        return Array(datagram).withUnsafeBufferPointer { feedBuffer($0) }
    }

    private func feedBuffer(_ datagram: UnsafeBufferPointer<UInt8>) -> [DTLSEvent] {
        counters.datagramsReceived &+= 1
        var events: [DTLSEvent] = []
        guard state == .new || state == .connecting || state == .connected else {
            counters.droppedAfterClose &+= 1
            noteDrop(.afterClose, "datagram after the session \(state == .closed ? "closed" : "failed")", &events)
            return events
        }
        guard let first = datagram.first, (20...63).contains(first) else {
            counters.notDTLSDatagrams &+= 1
            noteDrop(.notDTLS, datagram.isEmpty ? "empty datagram" : "first byte \(datagram[0]) is not DTLS", &events)
            return events
        }
        let (validLength, problem) = DTLSRecords.validPrefix(datagram)
        if let problem {
            counters.malformedRecords &+= 1
            noteDrop(.malformedRecord, problem, &events)
        }
        guard validLength > 0, let base = datagram.baseAddress else { return events }

        let written = BIO_write(readBIO, base, Int32(validLength))
        guard written == Int32(validLength) else {
            // A memory BIO only refuses on allocation failure; drop rather than half-feed.
            _ = cdtls_bio_reset(readBIO)
            return events
        }
        let alertsBefore = callbacks.alertsReceived
        if state == .new { state = .connecting }
        if state == .connecting {
            advanceHandshake(&events)
        }
        if state == .connected {
            readRecords(&events)
        }
        // OpenSSL treats one BIO read as one datagram; never let leftovers merge with the next.
        if cssl_bio_ctrl_pending(readBIO) > 0 { _ = cdtls_bio_reset(readBIO) }
        syncAlertCounters(since: alertsBefore, &events)
        drainOutput()
        return events
    }

    /// Datagrams to send, in order; the queue is emptied.
    public func pendingOutput() -> [[UInt8]] {
        drainOutput()
        let out = outbox
        outbox.removeAll(keepingCapacity: true)
        counters.datagramsSent &+= out.count
        return out
    }

    /// Time left until the retransmission timer fires, or nil when no timer runs
    /// (not started, done, failed or closed).
    public var nextTimeoutInterval: Duration? {
        guard state == .connecting || state == .connected else { return nil }
        var tv = timeval()
        guard cssl_dtls_get_timeout(ssl, &tv) == 1 else { return nil }
        return .seconds(Int64(tv.tv_sec)) + .microseconds(Int64(tv.tv_usec))
    }

    /// When `handleTimeout` should next be called, given the caller's clock reading.
    public func nextTimeout(now: ContinuousClock.Instant = .now) -> ContinuousClock.Instant? {
        nextTimeoutInterval.map { now + $0 }
    }

    /// Retransmits the last flight if OpenSSL's timer has expired (OpenSSL keeps its own clock,
    /// so calling early is harmless and does nothing). Exhausted retries fail the handshake.
    @discardableResult
    public func handleTimeout(now: ContinuousClock.Instant = .now) -> [DTLSEvent] {
        _ = now
        guard state == .connecting || state == .connected else { return [] }
        var events: [DTLSEvent] = []
        ERR_clear_error()
        let result = cssl_dtls_handle_timeout(ssl)
        if result > 0 {
            counters.retransmissions &+= 1
        } else if result < 0 && state == .connecting {
            let detail = openSSLErrorText()
            fail(detail.contains("timeout") || detail.contains("timed out") ? .timeout : .handshake(detail), &events)
        }
        drainOutput()
        return events
    }

    /// Sends close_notify and stops accepting input.
    public func close() {
        guard state == .connecting || state == .connected else { return }
        ERR_clear_error()
        _ = SSL_shutdown(ssl)
        ERR_clear_error()
        state = .closed
        drainOutput()
    }

    // MARK: - Internals

    private func advanceHandshake(_ events: inout [DTLSEvent]) {
        ERR_clear_error()
        let result = SSL_do_handshake(ssl)
        if result == 1 {
            completeHandshake(&events)
            return
        }
        let code = SSL_get_error(ssl, result)
        if code == SSL_ERROR_WANT_READ || code == SSL_ERROR_WANT_WRITE { return }
        fail(classifyFailure(openSSLErrorText()), &events)
    }

    /// Runs only after OpenSSL reports the handshake finished: verify, pick profile, export keys.
    private func completeHandshake(_ events: inout [DTLSEvent]) {
        guard let peer = SSL_get1_peer_certificate(ssl) else {
            failAfterHandshake(.noPeerCertificate, &events)
            return
        }
        let actual = certificateFingerprint(peer, expectedPeerFingerprint.algorithm)
        X509_free(peer)
        guard let actual, actual == expectedPeerFingerprint else {
            failAfterHandshake(.fingerprintMismatch(expected: expectedPeerFingerprint.hexValue,
                                                    actual: actual?.hexValue ?? "unreadable"), &events)
            return
        }
        peerFingerprint = actual

        guard let selected = SSL_get_selected_srtp_profile(ssl),
              let profile = DTLSSRTPProfile(rawValue: UInt16(truncatingIfNeeded: selected.pointee.id)),
              srtpProfiles.contains(profile)
        else {
            failAfterHandshake(.noSRTPProfile, &events)
            return
        }

        // RFC 5764 §4.2: client key | server key | client salt | server salt.
        let keyLength = profile.keyLength, saltLength = profile.saltLength
        var material = [UInt8](repeating: 0, count: 2 * (keyLength + saltLength))
        let label = "EXTRACTOR-dtls_srtp"
        ERR_clear_error()
        let exported = material.withUnsafeMutableBufferPointer { out in
            SSL_export_keying_material(ssl, out.baseAddress, out.count, label, label.utf8.count, nil, 0, 0)
        }
        guard exported == 1 else {
            failAfterHandshake(.keyExport(openSSLErrorText()), &events)
            return
        }
        let clientKey = Array(material[0..<keyLength])
        let serverKey = Array(material[keyLength..<(2 * keyLength)])
        let clientSalt = Array(material[(2 * keyLength)..<(2 * keyLength + saltLength)])
        let serverSalt = Array(material[(2 * keyLength + saltLength)..<(2 * keyLength + 2 * saltLength)])
        let keys: DTLSSRTPKeyingMaterial
        switch role {
        case .client:
            keys = DTLSSRTPKeyingMaterial(profile: profile, localKey: clientKey, localSalt: clientSalt,
                                          remoteKey: serverKey, remoteSalt: serverSalt)
        case .server:
            keys = DTLSSRTPKeyingMaterial(profile: profile, localKey: serverKey, localSalt: serverSalt,
                                          remoteKey: clientKey, remoteSalt: clientSalt)
        }
        keyingMaterial = keys
        state = .connected
        events.append(.connected(keys))
    }

    /// After OpenSSL's handshake succeeded but our checks refused it: tell the peer we are done.
    private func failAfterHandshake(_ failure: DTLSFailure, _ events: inout [DTLSEvent]) {
        ERR_clear_error()
        _ = SSL_shutdown(ssl)
        ERR_clear_error()
        fail(failure, &events)
    }

    /// Consumes every record of the fed datagram once connected: retransmitted handshake
    /// messages (OpenSSL answers them), application data, alerts.
    private func readRecords(_ events: inout [DTLSEvent]) {
        // Each iteration consumes input or ends the loop; the bound is a guard against surprises.
        for _ in 0..<64 {
            ERR_clear_error()
            let capacity = Int32(readBuffer.count)
            let count = readBuffer.withUnsafeMutableBytes { SSL_read(ssl, $0.baseAddress, capacity) }
            if count > 0 {
                counters.applicationBytesReceived &+= Int(count)
                events.append(.applicationData(Array(readBuffer[0..<Int(count)])))
                continue
            }
            let code = SSL_get_error(ssl, count)
            switch code {
            case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
                return
            case SSL_ERROR_ZERO_RETURN:
                // close_notify: answer with ours, then refuse further input.
                ERR_clear_error()
                _ = SSL_shutdown(ssl)
                ERR_clear_error()
                state = .closed
                events.append(.closed)
                return
            default:
                fail(classifyFailure(openSSLErrorText()), &events)
                return
            }
        }
    }

    private func classifyFailure(_ detail: String) -> DTLSFailure {
        if let mismatch = callbacks.mismatch {
            return .fingerprintMismatch(expected: mismatch.expected, actual: mismatch.actual)
        }
        if let alert = callbacks.fatalAlertReceived { return .peerAlert(alert) }
        return .handshake(detail)
    }

    private func fail(_ failure: DTLSFailure, _ events: inout [DTLSEvent]) {
        guard state != .failed else { return }
        state = .failed
        self.failure = failure
        events.append(.failed(failure))
    }

    private func syncAlertCounters(since before: Int, _ events: inout [DTLSEvent]) {
        counters.alertsReceived = callbacks.alertsReceived
        counters.alertsSent = callbacks.alertsSent
        if callbacks.alertsReceived > before, let alert = callbacks.lastAlertReceived {
            noteDrop(.alertReceived, alert, &events)
        }
    }

    private func noteDrop(_ cause: DTLSDropCause, _ detail: String, _ events: inout [DTLSEvent]) {
        if reportedDrops.insert(cause).inserted {
            events.append(.firstDrop(cause, detail: detail))
        }
    }

    /// Moves what OpenSSL wrote into the outbox as MTU-sized datagrams.
    private func drainOutput() {
        counters.alertsSent = callbacks.alertsSent
        let pending = cssl_bio_ctrl_pending(writeBIO)
        guard pending > 0, pending <= Int(Int32.max) else { return }
        var stream = [UInt8](repeating: 0, count: Int(pending))
        let read = stream.withUnsafeMutableBytes { BIO_read(writeBIO, $0.baseAddress, Int32(pending)) }
        guard read > 0 else { return }
        if Int(read) < stream.count { stream.removeLast(stream.count - Int(read)) }
        DTLSRecords.packIntoDatagrams(stream, mtu: mtu, into: &outbox)
    }
}

// MARK: - OpenSSL callbacks

/// State the C callbacks reach through SSL ex_data slot 0.
final class DTLSCallbackContext {
    let expected: DTLSFingerprint
    let initialTimeoutMicroseconds: UInt32
    var mismatch: (expected: String, actual: String)?
    var alertsReceived = 0
    var alertsSent = 0
    var lastAlertReceived: String?
    var fatalAlertReceived: String?

    init(expected: DTLSFingerprint, initialTimeoutMicroseconds: UInt32) {
        self.expected = expected
        self.initialTimeoutMicroseconds = initialTimeoutMicroseconds
    }

    static func from(_ ssl: OpaquePointer?) -> DTLSCallbackContext? {
        guard let ssl, let raw = SSL_get_ex_data(ssl, 0) else { return nil }
        return Unmanaged<DTLSCallbackContext>.fromOpaque(raw).takeUnretainedValue()
    }
}

/// Chain verification is ignored (peer certificates are self-signed); the leaf's digest must
/// equal the SDP fingerprint. Returning 0 aborts the handshake with a bad_certificate alert.
private let dtlsVerifyCallback: @convention(c) (Int32, OpaquePointer?) -> Int32 = { _, store in
    guard let store,
          let sslRaw = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()),
          let context = DTLSCallbackContext.from(OpaquePointer(sslRaw))
    else { return 0 }
    // Intermediate certificates of a chain carry no trust here; only the leaf is pinned.
    guard X509_STORE_CTX_get_error_depth(store) == 0 else { return 1 }
    guard let leaf = X509_STORE_CTX_get_current_cert(store) else { return 0 }
    let actual = certificateFingerprint(leaf, context.expected.algorithm)
    guard let actual, actual == context.expected else {
        context.mismatch = (context.expected.hexValue, actual?.hexValue ?? "unreadable")
        // Makes OpenSSL send bad_certificate rather than the chain error's unknown_ca.
        X509_STORE_CTX_set_error(store, X509_V_ERR_CERT_REJECTED)
        return 0
    }
    return 1
}

/// Counts alerts in both directions and remembers the peer's fatal alert for the failure reason.
private let dtlsInfoCallback: @convention(c) (OpaquePointer?, Int32, Int32) -> Void = { ssl, type, value in
    guard type & SSL_CB_ALERT != 0, let context = DTLSCallbackContext.from(ssl) else { return }
    if type & SSL_CB_READ != 0 {
        context.alertsReceived &+= 1
        let description = SSL_alert_desc_string_long(value).map { String(cString: $0) } ?? "alert \(value & 0xFF)"
        let fatal = (value >> 8) == 2
        context.lastAlertReceived = (fatal ? "fatal " : "warning ") + description
        if fatal { context.fatalAlertReceived = description }
    } else {
        context.alertsSent &+= 1
    }
}

/// Retransmission schedule: the configured first delay, then doubling up to 60 s (RFC 6347 §4.2.4.1).
private let dtlsTimerCallback: @convention(c) (OpaquePointer?, UInt32) -> UInt32 = { ssl, current in
    let initial = DTLSCallbackContext.from(ssl)?.initialTimeoutMicroseconds ?? 1_000_000
    if current == 0 { return initial }
    return min(current.multipliedReportingOverflow(by: 2).overflow ? 60_000_000 : current * 2, 60_000_000)
}
