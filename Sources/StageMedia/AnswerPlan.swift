import DTLS
import ICE
import SDP

/// What a validated subscribe answer tells the media path to do.
struct AnswerPlan: Sendable {
    var answer: SubscribeAnswer
    /// Ours: the answer's `active` makes us the DTLS server, `passive` the client.
    var role: DTLSEndpoint.Role
    /// The answer's fingerprint with the strongest hash we support.
    var fingerprint: DTLSFingerprint
    var remoteCredentials: ICECredentials
    var candidates: [ICECandidate]
    var opusPayloadType: UInt8
    var clockRate: Int

    /// Strongest first (RFC 8122 section 5: check against the strongest hash both support).
    static let hashPreference: [DTLSHashAlgorithm] = [.sha512, .sha384, .sha256, .sha224, .sha1]

    static func make(_ text: String) throws(PeerAnswerError) -> AnswerPlan {
        let answer: SubscribeAnswer
        do { answer = try SubscribeAnswer(parsing: text) } catch { throw .invalid(error) }
        guard answer.rtcpMux else { throw .rtcpMuxMissing }
        try checkBundle(answer)

        var chosen: DTLSFingerprint?
        for alg in hashPreference where chosen == nil {
            if let f = answer.fingerprints.first(where: { DTLSHashAlgorithm(name: $0.algorithm) == alg }) {
                chosen = try? DTLSFingerprint(algorithm: alg, bytes: f.bytes)
            }
        }
        guard let fingerprint = chosen else { throw .unsupportedFingerprint(answer.fingerprints.map(\.algorithm)) }

        let candidates = answer.candidates.compactMap { c in
            ICECandidate(foundation: c.foundation, component: c.component, transport: c.transport, priority: c.priority,
                         address: c.address, port: c.port, type: c.type)
        }
        guard !candidates.isEmpty else { throw .noUsableCandidates }

        return AnswerPlan(answer: answer, role: answer.setup == .active ? .server : .client, fingerprint: fingerprint,
                          remoteCredentials: ICECredentials(ufrag: answer.iceUfrag, pwd: answer.icePwd),
                          candidates: candidates, opusPayloadType: answer.opus.payloadType,
                          clockRate: answer.opus.clockRate)
    }

    /// Every section that will carry media besides audio must share the audio section's transport.
    private static func checkBundle(_ answer: SubscribeAnswer) throws(PeerAnswerError) {
        let media = answer.session.media
        let others = media.indices.filter { i in
            i != answer.audioIndex && (media[i].port != 0 || media[i].has("bundle-only")) && media[i].direction != .inactive
        }
        guard !others.isEmpty else { return }
        guard let audioMid = answer.audioMid else { throw .notBundled("the audio section has no a=mid") }
        guard let group = answer.session.groups.first(where: { $0.semantics.uppercased() == "BUNDLE" && $0.mids.contains(audioMid) }) else {
            throw .notBundled("no a=group:BUNDLE holds the audio mid \(audioMid)")
        }
        for i in others {
            let mid = media[i].mid ?? "(none)"
            guard group.mids.contains(mid) else {
                throw .notBundled("\(media[i].kind) section mid \(mid) is not in the audio section's BUNDLE group")
            }
        }
    }
}
