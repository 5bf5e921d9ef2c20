import Foundation
import Logging
import RTP
import StageMedia

/// What a subscription needs from its media path. `PeerConnection` (StageMedia) is the real one;
/// tests may substitute their own.
public protocol StagePeer: AnyObject, Sendable {
    func makeOffer() -> String
    func applyAnswer(_ sdp: String) throws
    /// Datagrams received on the media path so far (SRTP and SRTCP): a peer that still sends
    /// RTCP is alive even while its RTP pauses.
    var inboundDatagrams: Int { get }
    /// Set before `makeOffer`; called on the peer's own thread.
    func setHandlers(onState: @escaping @Sendable (StagePeerState) -> Void,
                     onAudioRTP: @escaping @Sendable (RTPPacket, UInt64) -> Void)
    func close()
}

public enum StagePeerState: Sendable, Equatable {
    case connecting
    case connected
    /// `cause`: a short stable kind (the log-once key); `detail`: the full reason.
    case failed(cause: String, detail: String)
    case closed
}

/// Makes one peer per subscription attempt; `label` names it in logs.
public typealias StagePeerFactory = @Sendable (_ label: String) throws -> any StagePeer

/// `StageMedia.PeerConnection` as a `StagePeer`.
public final class MediaPeer: StagePeer, @unchecked Sendable {
    public let connection: PeerConnection

    public init(label: String, configuration: PeerConfiguration, logger: Logger) throws {
        connection = try PeerConnection(label: label, configuration: configuration, logger: logger)
    }

    public func makeOffer() -> String { connection.makeOffer() }
    public func applyAnswer(_ sdp: String) throws { try connection.applyAnswer(sdp) }
    public var inboundDatagrams: Int { connection.stats.mediaDatagrams }

    public func setHandlers(onState: @escaping @Sendable (StagePeerState) -> Void,
                            onAudioRTP: @escaping @Sendable (RTPPacket, UInt64) -> Void) {
        connection.onState = { state in
            switch state {
            case .new, .connecting: onState(.connecting)
            case .connected: onState(.connected)
            case .failed(let reason): onState(.failed(cause: MediaPeer.cause(reason), detail: reason.description))
            case .closed: onState(.closed)
            }
        }
        connection.onAudioRTP = onAudioRTP
    }

    public func close() { connection.close() }

    static func cause(_ f: PeerFailure) -> String {
        switch f {
        case .ice: "ICE failed"
        case .consentLost: "consent lost"
        case .fingerprintMismatch: "DTLS fingerprint mismatch"
        case .dtls: "DTLS failed"
        case .remoteClosed: "remote closed"
        case .connectTimeout: "connect timeout"
        case .srtp: "SRTP setup failed"
        }
    }

    /// The configuration `join` uses: a stage on loopback (the local stand-in) gets loopback
    /// candidates only, a real one every interface but loopback.
    public static func configuration(stageHost: String, connectTimeout: Double) -> PeerConfiguration {
        let h = stageHost.lowercased().trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        let loopback = h == "localhost" || h.hasPrefix("127.") || h == "::1"
        return PeerConfiguration(loopbackOnly: loopback, connectTimeout: .milliseconds(Int64(max(1, connectTimeout) * 1000)))
    }

    /// The factory `join` uses.
    public static func factory(configuration: PeerConfiguration = PeerConfiguration(), logger: Logger) -> StagePeerFactory {
        { label in try MediaPeer(label: label, configuration: configuration, logger: logger) }
    }
}
