/// What our recvonly subscribe offer carries. Host candidates are gathered before offering, so they
/// go in the offer and no trickle is announced.
public struct SubscribeOfferOptions: Sendable {
    public var iceUfrag: String
    public var icePwd: String
    /// Our DTLS certificate's fingerprint (sha-256).
    public var fingerprint: SDPFingerprint
    public var candidates: [SDPCandidate]
    public var sessionID: UInt64
    /// Offer a recvonly video section (H264 and VP8) too; its media is discarded.
    public var includeVideo: Bool
    /// Allow stereo Opus (`stereo=1;sprop-stereo=1`).
    public var stereo: Bool
    public var opusPayloadType: UInt8
    public var audioLevel: Bool
    public var absSendTime: Bool
    public var transportCC: Bool

    public init(iceUfrag: String, icePwd: String, fingerprint: SDPFingerprint, candidates: [SDPCandidate],
                sessionID: UInt64 = UInt64.random(in: 1...(UInt64(1) << 62)), includeVideo: Bool = true,
                stereo: Bool = true, opusPayloadType: UInt8 = 111, audioLevel: Bool = true,
                absSendTime: Bool = false, transportCC: Bool = false) {
        self.iceUfrag = iceUfrag; self.icePwd = icePwd; self.fingerprint = fingerprint
        self.candidates = candidates; self.sessionID = sessionID; self.includeVideo = includeVideo
        self.stereo = stereo; self.opusPayloadType = opusPayloadType; self.audioLevel = audioLevel
        self.absSendTime = absSendTime; self.transportCC = transportCC
    }
}

/// Mids used by the offer.
public enum SubscribeOfferMid {
    public static let audio = "0"
    public static let video = "1"
}

/// Builds the subscribe offer: BUNDLE of a recvonly Opus audio section and (optionally) a recvonly
/// H264/VP8 video section, rtcp-mux, `a=setup:actpass`, our fingerprint, ICE credentials and host
/// candidates in every section (identical, as the sections share one transport).
public func makeSubscribeOffer(_ o: SubscribeOfferOptions) -> SessionDescription {
    // JSEP: the m= port and c= address name the default candidate once candidates exist.
    let first = o.candidates.first
    let port = first.map { Int($0.port) } ?? 9
    let conn = first.map { "IN \($0.isIPv6 ? "IP6" : "IP4") \($0.address)" } ?? "IN IP4 0.0.0.0"
    let mids = o.includeVideo ? [SubscribeOfferMid.audio, SubscribeOfferMid.video] : [SubscribeOfferMid.audio]

    func transport(_ mid: String) -> [SDPAttribute] {
        [SDPAttribute("mid", mid),
         SDPAttribute("ice-ufrag", o.iceUfrag),
         SDPAttribute("ice-pwd", o.icePwd),
         SDPAttribute("fingerprint", o.fingerprint.description),
         SDPAttribute("setup", SDPSetupRole.actpass.rawValue),
         SDPAttribute("rtcp-mux"),
         SDPAttribute(SDPDirection.recvonly.rawValue)]
    }
    func candidateLines() -> [SDPAttribute] {
        o.candidates.map { SDPAttribute("candidate", String($0.attributeValue.dropFirst("candidate:".count))) }
            + [SDPAttribute("end-of-candidates")]
    }

    var extID = 0
    func ext(_ uri: String) -> SDPAttribute {
        extID += 1
        return SDPAttribute("extmap", SDPExtMap(id: extID, uri: uri).attributeValue)
    }

    let pt = o.opusPayloadType
    var audio = SDPMediaSection(kind: "audio", port: port, proto: "UDP/TLS/RTP/SAVPF", formats: ["\(pt)"],
                                lines: [SDPLine(type: "c", value: conn)])
    audio.attributes = transport(SubscribeOfferMid.audio)
    if o.audioLevel { audio.attributes.append(ext(SDPExtMap.audioLevelURI)) }
    if o.absSendTime { audio.attributes.append(ext(SDPExtMap.absSendTimeURI)) }
    if o.transportCC { audio.attributes.append(ext(SDPExtMap.transportCCURI)) }
    audio.attributes.append(SDPAttribute("rtpmap", SDPRTPMap(payloadType: pt, encoding: "opus", clockRate: 48000, channels: 2).attributeValue))
    if o.transportCC { audio.attributes.append(SDPAttribute("rtcp-fb", "\(pt) transport-cc")) }
    audio.attributes.append(SDPAttribute("fmtp", "\(pt) minptime=10;useinbandfec=1" + (o.stereo ? ";stereo=1;sprop-stereo=1" : "")))
    audio.attributes += candidateLines()

    var sd = SessionDescription(origin: "- \(o.sessionID) 2 IN IP4 127.0.0.1", sessionName: "-",
                                lines: [SDPLine(type: "t", value: "0 0")],
                                attributes: [SDPAttribute("group", "BUNDLE " + mids.joined(separator: " "))],
                                media: [audio])
    if o.includeVideo {
        let vp8: UInt8 = pt == 96 ? 98 : 96, h264: UInt8 = pt == 97 ? 99 : 97
        var video = SDPMediaSection(kind: "video", port: port, proto: "UDP/TLS/RTP/SAVPF", formats: ["\(vp8)", "\(h264)"],
                                    lines: [SDPLine(type: "c", value: conn)])
        video.attributes = transport(SubscribeOfferMid.video)
        if o.absSendTime { video.attributes.append(SDPAttribute("extmap", SDPExtMap(id: 2, uri: SDPExtMap.absSendTimeURI).attributeValue)) }
        video.attributes += [
            SDPAttribute("rtpmap", SDPRTPMap(payloadType: vp8, encoding: "VP8", clockRate: 90000).attributeValue),
            SDPAttribute("rtpmap", SDPRTPMap(payloadType: h264, encoding: "H264", clockRate: 90000).attributeValue),
            SDPAttribute("fmtp", "\(h264) level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"),
        ]
        video.attributes += candidateLines()
        sd.media.append(video)
    }
    return sd
}
