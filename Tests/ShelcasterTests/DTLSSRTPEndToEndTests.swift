import Testing
import DTLS
import SRTP

/// DTLS-exported keys drive SRTP: one side's outbound session is the other side's inbound.
@Suite("DTLS-SRTP end to end")
struct DTLSSRTPEndToEndTests {
    @Test(arguments: DTLSSRTPProfile.allCases)
    func derivedKeysProtectAndUnprotect(profile: DTLSSRTPProfile) throws {
        var pair = try DTLSTestPair.make(clientProfiles: [profile], serverProfiles: [profile])
        pair.handshake()
        let clientKeys = try #require(pair.clientEvents.dtlsKeys)
        let serverKeys = try #require(pair.serverEvents.dtlsKeys)
        let srtpProfile = try #require(SRTPProfile(rawValue: clientKeys.profile.rawValue))

        // The remote peer (DTLS server here) sends media; we (client) receive it.
        let sender = try SRTPSession(profile: srtpProfile, key: serverKeys.localKey, salt: serverKeys.localSalt, direction: .outbound)
        let receiver = try SRTPSession(profile: srtpProfile, key: clientKeys.remoteKey, salt: clientKeys.remoteSalt, direction: .inbound)
        for sequence in UInt16(1)...5 {
            let rtp = dtlsTestRTP(sequence: sequence, timestamp: UInt32(sequence) * 960, payload: Array("opus frame \(sequence)".utf8))
            #expect(try receiver.unprotect(try sender.protect(rtp)) == rtp)
        }

        // And our RTCP receiver reports travel the other way with our write keys.
        let reporter = try SRTPSession(profile: srtpProfile, key: clientKeys.localKey, salt: clientKeys.localSalt, direction: .outbound)
        let reportReader = try SRTPSession(profile: srtpProfile, key: serverKeys.remoteKey, salt: serverKeys.remoteSalt, direction: .inbound)
        let report = dtlsTestRTCPReceiverReport()
        #expect(try reportReader.unprotectRTCP(try reporter.protectRTCP(report)) == report)

        // Keys of the wrong direction do not decrypt: the split is not symmetric by accident.
        let wrong = try SRTPSession(profile: srtpProfile, key: clientKeys.localKey, salt: clientKeys.localSalt, direction: .inbound)
        #expect(throws: SRTPError.authenticationFailed) {
            try wrong.unprotect(try sender.protect(dtlsTestRTP(sequence: 9, payload: [1])))
        }
    }
}
