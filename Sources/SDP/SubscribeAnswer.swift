/// Why a subscribe answer cannot be used.
public enum SubscribeAnswerError: Error, Sendable, Equatable, CustomStringConvertible {
    case unparsable(SDPParseError)
    case noAudioSection
    /// The audio section has port 0 (rejected).
    case audioRejected
    /// The audio section says the server will not send (`recvonly` or `inactive`).
    case audioNotSent(SDPDirection)
    /// No `opus/48000` rtpmap in the audio section.
    case noOpus
    case noFingerprint
    case badFingerprint(String)
    case noICECredentials
    case setupMissing
    /// `a=setup` is not `active` or `passive` (actpass and holdconn are invalid in an answer).
    case setupInvalid(String)
    /// No UDP candidate with an IP address in any section.
    case noCandidates

    public var description: String {
        switch self {
        case .unparsable(let e): return "subscribe answer is not valid SDP: \(e)"
        case .noAudioSection: return "subscribe answer has no audio m-section"
        case .audioRejected: return "subscribe answer rejects the audio section (port 0)"
        case .audioNotSent(let d): return "subscribe answer audio direction is \(d.rawValue): the server will not send audio"
        case .noOpus: return "subscribe answer audio section has no opus/48000 payload"
        case .noFingerprint: return "subscribe answer has no a=fingerprint"
        case .badFingerprint(let why): return "subscribe answer fingerprint is malformed: \(why)"
        case .noICECredentials: return "subscribe answer lacks a=ice-ufrag or a=ice-pwd"
        case .setupMissing: return "subscribe answer has no a=setup"
        case .setupInvalid(let v): return "subscribe answer a=setup:\(v) is not active or passive"
        case .noCandidates: return "subscribe answer has no usable UDP candidate"
        }
    }
}

/// A validated answer to `makeSubscribeOffer`. Transport attributes are looked up in the audio
/// section, then the first section (the BUNDLE tag), then the session level. Candidates come from
/// the first section that carries any, IVS style, else from all sections.
public struct SubscribeAnswer: Sendable {
    public let session: SessionDescription
    public let audioIndex: Int
    public let audioMid: String?
    public let opus: SDPRTPMap
    /// The Opus fmtp parameters (lowercased keys), e.g. `useinbandfec`, `stereo`.
    public let opusParameters: [String: String]
    public let iceUfrag: String
    public let icePwd: String
    public let iceLite: Bool
    /// The answerer's DTLS role: `.active` means it connects to us (we are the DTLS server).
    public let setup: SDPSetupRole
    public let fingerprints: [SDPFingerprint]
    /// Usable candidates: UDP, component 1, IP literal, duplicates removed.
    public let candidates: [SDPCandidate]
    /// Candidate lines skipped: malformed, TCP, other components or host names.
    public let ignoredCandidates: Int
    public let audioExtensions: [SDPExtMap]
    public let bundleMids: [String]
    public let rtcpMux: Bool

    public init(parsing text: String) throws(SubscribeAnswerError) {
        let sd: SessionDescription
        do { sd = try SessionDescription.parse(text) } catch { throw .unparsable(error) }
        try self.init(sd)
    }

    public init(_ sd: SessionDescription) throws(SubscribeAnswerError) {
        guard let ai = sd.media.firstIndex(where: { $0.kind.lowercased() == "audio" }) else { throw .noAudioSection }
        let audio = sd.media[ai]
        guard audio.port != 0 || audio.has("bundle-only") else { throw .audioRejected }
        let dir = audio.direction
        guard dir == .sendonly || dir == .sendrecv else { throw .audioNotSent(dir) }
        guard let opus = audio.rtpMaps.first(where: { $0.encoding.lowercased() == "opus" && $0.clockRate == 48000 }) else { throw .noOpus }

        // Where transport attributes may live, most specific first.
        var scopes = [audio]
        if ai != 0, let first = sd.media.first { scopes.append(first) }
        func find(_ name: String) -> String? {
            for s in scopes { if let v = s.value(name) { return v } }
            return sd.value(name)
        }

        guard let ufrag = find("ice-ufrag"), let pwd = find("ice-pwd"), !ufrag.isEmpty, !pwd.isEmpty else { throw .noICECredentials }

        guard let setupText = find("setup") else { throw .setupMissing }
        switch SDPSetupRole(rawValue: setupText.lowercased()) {
        case .active?: setup = .active
        case .passive?: setup = .passive
        default: throw .setupInvalid(SDPParseError.clip(setupText))
        }

        var fpValues: [String] = []
        for s in scopes where fpValues.isEmpty { fpValues = s.values("fingerprint").compactMap { $0 } }
        if fpValues.isEmpty { fpValues = sd.attributes.filter { $0.name == "fingerprint" }.compactMap(\.value) }
        guard !fpValues.isEmpty else { throw .noFingerprint }
        var fps: [SDPFingerprint] = []
        for v in fpValues {
            do { fps.append(try SDPFingerprint.parse(v)) } catch { throw .badFingerprint(error.description) }
        }

        var raw: [String] = []
        for m in sd.media {
            let lines = m.values("candidate").compactMap { $0 }
            if !lines.isEmpty { raw = lines; break }
        }
        var usable: [SDPCandidate] = []
        var ignored = 0
        for line in raw {
            guard let c = try? SDPCandidate.parse(line), c.transport == "udp", c.component == 1, c.hasIPAddress, c.port != 0 else {
                ignored += 1; continue
            }
            if usable.contains(where: { $0.address == c.address && $0.port == c.port }) { ignored += 1; continue }
            usable.append(c)
        }
        guard !usable.isEmpty else { throw .noCandidates }

        session = sd
        audioIndex = ai
        audioMid = audio.mid
        self.opus = opus
        opusParameters = audio.formatParameters(opus.payloadType)
        iceUfrag = ufrag
        icePwd = pwd
        iceLite = sd.iceLite
        fingerprints = fps
        candidates = usable
        ignoredCandidates = ignored
        audioExtensions = audio.extMaps
        bundleMids = sd.bundleMids
        rtcpMux = scopes.contains { $0.rtcpMux }
    }
}
