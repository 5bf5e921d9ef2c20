import DTLS
import ICE
import SDP
import SRTP

/// Tunables of one subscription's media path.
public struct PeerConfiguration: Sendable {
    /// Gather 127.0.0.1 / ::1 only (tests, the local stage). Otherwise every non-loopback interface.
    public var loopbackOnly: Bool
    /// Exactly these local addresses; overrides `loopbackOnly` when set.
    public var interfaces: ICEInterfaces?
    public var ipv4: Bool
    public var ipv6: Bool
    /// Local UDP port; 0 picks an ephemeral port.
    public var port: UInt16
    /// The peer is declared dead after this long without a consent response (ICE, RFC 7675).
    public var consentTimeout: Duration
    /// Mean interval between consent requests; nil: a quarter of `consentTimeout`, at most 5 s,
    /// so several requests can be lost before consent expires.
    public var consentInterval: Duration?
    /// ICE and DTLS must both be done within this time of `applyAnswer`.
    public var connectTimeout: Duration
    /// First DTLS retransmission delay (doubles per retry).
    public var dtlsRetransmitTimeout: Duration
    /// Offer a recvonly video section (its media is dropped); the samples offer audio and video.
    public var offerVideo: Bool
    /// Offer stereo Opus.
    public var stereo: Bool
    public var opusPayloadType: UInt8
    public var srtpProfiles: [DTLSSRTPProfile]
    /// Receiver Reports for the audio source go out this often once SRTP is up.
    public var receiverReportInterval: Duration
    /// Add an RFC 3611 XR receiver reference time block to our reports, so a sender that answers
    /// with DLRR gives us a round-trip time.
    public var requestRoundTripTime: Bool

    public init(loopbackOnly: Bool = false, interfaces: ICEInterfaces? = nil, ipv4: Bool = true, ipv6: Bool = true,
                port: UInt16 = 0, consentTimeout: Duration = .seconds(10), consentInterval: Duration? = nil,
                connectTimeout: Duration = .seconds(15), dtlsRetransmitTimeout: Duration = .milliseconds(500),
                offerVideo: Bool = true, stereo: Bool = true, opusPayloadType: UInt8 = 111,
                srtpProfiles: [DTLSSRTPProfile] = DTLSSRTPProfile.defaultPreference,
                receiverReportInterval: Duration = .seconds(1), requestRoundTripTime: Bool = true) {
        self.loopbackOnly = loopbackOnly; self.interfaces = interfaces; self.ipv4 = ipv4; self.ipv6 = ipv6
        self.port = port; self.consentTimeout = consentTimeout; self.consentInterval = consentInterval
        self.connectTimeout = connectTimeout; self.dtlsRetransmitTimeout = dtlsRetransmitTimeout
        self.offerVideo = offerVideo; self.stereo = stereo; self.opusPayloadType = opusPayloadType
        self.srtpProfiles = srtpProfiles; self.receiverReportInterval = receiverReportInterval
        self.requestRoundTripTime = requestRoundTripTime
    }
}

/// Why a peer connection stopped working. Reported once, through `.failed`.
public enum PeerFailure: Sendable, Equatable, CustomStringConvertible {
    /// ICE found no working pair (no usable candidates, all checks failed, ICE's own timeout).
    case ice(ICEFailureReason)
    /// The selected pair stopped answering consent requests: the peer is gone.
    case consentLost(seconds: Double)
    /// The peer's DTLS certificate is not the one the answer's `a=fingerprint` announced.
    case fingerprintMismatch(expected: String, actual: String)
    /// Any other DTLS failure (handshake, alert, retransmissions exhausted, no SRTP profile).
    case dtls(DTLSFailure)
    /// The peer closed DTLS (close_notify), e.g. the server ended the subscription.
    case remoteClosed
    /// ICE + DTLS did not finish within `PeerConfiguration.connectTimeout`.
    case connectTimeout(seconds: Double)
    /// SRTP contexts could not be made from the exported keys.
    case srtp(String)

    public var description: String {
        switch self {
        case .ice(let r): return "ICE failed: \(r)"
        case .consentLost(let s): return "consent lost: no ICE consent response for \(s) s"
        case let .fingerprintMismatch(expected, actual):
            return "DTLS fingerprint mismatch: answer announced \(expected), peer certificate is \(actual)"
        case .dtls(let f): return "DTLS failed: \(f)"
        case .remoteClosed: return "peer closed the DTLS session"
        case .connectTimeout(let s): return "not connected within \(s) s"
        case .srtp(let why): return "SRTP setup failed: \(why)"
        }
    }
}

public enum PeerState: Sendable, Equatable, CustomStringConvertible {
    /// Created; no answer applied yet.
    case new
    /// Answer applied: ICE checks and the DTLS handshake are running.
    case connecting
    /// DTLS done, SRTP keys in place: audio flows to `onAudioRTP`.
    case connected
    /// Terminal (until `close`, which still reports `.closed`).
    case failed(PeerFailure)
    /// `close()` was called. Terminal.
    case closed

    public var description: String {
        switch self {
        case .new: return "new"
        case .connecting: return "connecting"
        case .connected: return "connected"
        case .failed(let f): return "failed (\(f))"
        case .closed: return "closed"
        }
    }
}

/// Why a `PeerConnection` could not be created.
public enum PeerSetupError: Error, Sendable, Equatable, CustomStringConvertible {
    case ice(ICEError)
    case certificate(DTLSError)

    public var description: String {
        switch self {
        case .ice(let e): return "cannot gather ICE host candidates: \(e)"
        case .certificate(let e): return "cannot create the DTLS certificate: \(e)"
        }
    }
}

/// Why `applyAnswer` refused an answer. The connection is left unchanged: another answer may follow.
public enum PeerAnswerError: Error, Sendable, Equatable, CustomStringConvertible {
    /// SDP-level problems (unparsable, no audio/Opus, no fingerprint, no ICE credentials, bad setup, no candidates).
    case invalid(SubscribeAnswerError)
    /// The answer lacks `a=rtcp-mux`; RTP and RTCP must share the one transport.
    case rtcpMuxMissing
    /// More than one m-section is active but they are not in one BUNDLE group with the audio section.
    case notBundled(String)
    /// No fingerprint uses a hash we can verify (sha-1/224/256/384/512).
    case unsupportedFingerprint([String])
    /// Candidates were listed but none is usable by our agent (IPv4-mapped, for example).
    case noUsableCandidates
    /// The DTLS endpoint could not be set up with what the answer says.
    case dtlsSetup(DTLSError)
    case alreadyApplied
    case closed

    public var description: String {
        switch self {
        case .invalid(let e): return e.description
        case .rtcpMuxMissing: return "subscribe answer lacks a=rtcp-mux"
        case .notBundled(let why): return "subscribe answer is not bundled: \(why)"
        case .unsupportedFingerprint(let algs):
            return "subscribe answer fingerprint hash \(algs.joined(separator: ", ")) is not supported"
        case .noUsableCandidates: return "subscribe answer has no candidate our ICE agent can use"
        case .dtlsSetup(let e): return "cannot set up DTLS for the answer: \(e)"
        case .alreadyApplied: return "an answer was already applied to this peer connection"
        case .closed: return "the peer connection is closed"
        }
    }
}

/// Media-path input that was dropped; each cause is counted and logged the first time only.
public enum PeerDropCause: String, Sendable, Hashable, CaseIterable {
    /// SRTP/SRTCP before the DTLS handshake produced keys.
    case mediaBeforeKeys = "media-before-keys"
    case srtpAuthentication = "srtp-authentication"
    /// Replayed or older than the replay window (duplicates included).
    case srtpReplay = "srtp-replay"
    /// Too short or malformed for libsrtp.
    case srtpMalformed = "srtp-malformed"
    case rtpMalformed = "rtp-malformed"
    case rtcpMalformed = "rtcp-malformed"
    /// An RTP packet whose payload type is not the answer's Opus (video, RTX, ...); dropped
    /// before decryption, so it is not authenticated either.
    case otherPayloadType = "other-payload-type"
    /// Our own RTCP or DTLS could not be sent (no selected pair, sendto failed).
    case sendFailed = "send-failed"
}

/// The last RTCP sender report of the audio source: NTP ↔ RTP time mapping for drift and sync.
public struct PeerSenderReport: Sendable, Equatable {
    public var ssrc: UInt32
    public var ntpTimestamp: UInt64
    public var rtpTimestamp: UInt32
    public var packetCount: UInt32
    public var octetCount: UInt32
    /// Monotonic arrival time (same clock as `onAudioRTP`'s `arrivalNs`).
    public var arrivalNs: UInt64

    public init(ssrc: UInt32, ntpTimestamp: UInt64, rtpTimestamp: UInt32, packetCount: UInt32, octetCount: UInt32, arrivalNs: UInt64) {
        self.ssrc = ssrc; self.ntpTimestamp = ntpTimestamp; self.rtpTimestamp = rtpTimestamp
        self.packetCount = packetCount; self.octetCount = octetCount; self.arrivalNs = arrivalNs
    }
}

/// A snapshot of one peer connection's counters.
public struct PeerStats: Sendable, Equatable {
    public var state: PeerState = .new
    public var ice = ICECounters()
    public var selectedPair: ICECandidatePair?
    public var dtls = DTLSCounters()
    /// Our DTLS role, from the answer's `a=setup` (`active` → we are the server).
    public var dtlsRole: DTLSEndpoint.Role?
    public var srtpProfile: SRTPProfile?
    public var srtpInbound = SRTPCounters()
    public var srtpOutbound = SRTPCounters()
    /// From `applyAnswer` to `.connected`.
    public var timeToConnect: Duration?
    /// SRTP/SRTCP datagrams handed to us by ICE, and their bytes.
    public var mediaDatagrams = 0
    public var mediaBytes = 0
    /// Audio packets delivered to `onAudioRTP`, and their payload bytes.
    public var audioPackets = 0
    public var audioPayloadBytes = 0
    /// The audio SSRC in use, and how often it changed after the first.
    public var audioSSRC: UInt32?
    public var audioSSRCChanges = 0
    /// RFC 3550 figures for the audio source (as in our receiver reports).
    public var audioPacketsLost: Int64 = 0
    public var audioJitterSeconds: Double = 0
    public var rtcpPacketsReceived = 0
    public var senderReportsReceived = 0
    public var lastSenderReport: PeerSenderReport?
    public var receiverReportsSent = 0
    /// From RFC 3611 DLRR answers to our XR reference time, when the sender gives them.
    public var roundTripTime: Duration?
    public var dropped: [PeerDropCause: Int] = [:]

    public init() {}

    public func dropped(_ cause: PeerDropCause) -> Int { dropped[cause] ?? 0 }
    public var totalDropped: Int { dropped.values.reduce(0, &+) }
}
