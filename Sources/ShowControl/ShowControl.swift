import Routing
import Tracklist

/// What the mix loop reports about one voice.
public struct VoiceStatus: Sendable, Equatable {
    public var participantId: String
    public var userId: String?
    public var role: ParticipantRole
    public var onAir: Bool
    /// Short-term level of what the participant sends (before routing gains), dBFS.
    public var levelDbfs: Double
    public var packets: Int
    public var lost: Int
    public var concealedMs: Double
    public var jitterTargetMs: Double
    public init(participantId: String, userId: String?, role: ParticipantRole, onAir: Bool, levelDbfs: Double,
                packets: Int, lost: Int, concealedMs: Double, jitterTargetMs: Double) {
        self.participantId = participantId; self.userId = userId; self.role = role; self.onAir = onAir
        self.levelDbfs = levelDbfs; self.packets = packets; self.lost = lost
        self.concealedMs = concealedMs; self.jitterTargetMs = jitterTargetMs
    }
}

/// The state of the program output, in DATA-MODEL.md's words.
public enum OutputState: String, Sendable, Equatable {
    case connecting = "CONNECTING", connected = "CONNECTED", reconnecting = "RECONNECTING", down = "DOWN"
}

/// A snapshot of the show, published by the mix loop about once a second: what heartbeats,
/// the status endpoint and the studio UI show.
public struct ShowStatus: Sendable, Equatable {
    public var programSeconds: Double
    public var uptimeSeconds: Double
    public var voices: [VoiceStatus]
    public var masterLevelDbfs: Double
    public var clipping: Bool
    public var currentTrack: TrackStatus?
    public var outputState: OutputState
    public var outputDownSeconds: Double
    public var outputKbps: Double
    public var outputReconnects: Int
    /// The stage's events connection is up (always true for a recorded show).
    public var stageConnected: Bool
    public init(programSeconds: Double, uptimeSeconds: Double, voices: [VoiceStatus], masterLevelDbfs: Double,
                clipping: Bool, currentTrack: TrackStatus?, outputState: OutputState, outputDownSeconds: Double,
                outputKbps: Double, outputReconnects: Int = 0, stageConnected: Bool = true) {
        self.programSeconds = programSeconds; self.uptimeSeconds = uptimeSeconds; self.voices = voices
        self.masterLevelDbfs = masterLevelDbfs; self.clipping = clipping; self.currentTrack = currentTrack
        self.outputState = outputState; self.outputDownSeconds = outputDownSeconds; self.outputKbps = outputKbps
        self.outputReconnects = outputReconnects; self.stageConnected = stageConnected
    }
    public var onAirCount: Int { voices.filter(\.onAir).count }
}

/// The seam between the mix loop and whoever steers the show (the DynamoDB control plane, the
/// ECS daemon, tests). The mix loop calls it from its own thread; every call must be quick and
/// never block on the network: implementations poll and write on their own threads.
public protocol ShowControl: AnyObject, Sendable {
    /// The newest routing, if it changed since the last call. Called once per mix block.
    func takeRoutingUpdate() -> Routing?
    /// A participant's role from the control plane (the participants table), when it knows one.
    func role(participantId: String) -> ParticipantRole?
    /// Called about once a second with the show's state.
    func publish(_ status: ShowStatus)
    /// Set when the show must end (fenced out by another task, asked to stop); the loop ends cleanly.
    var stopReason: String? { get }
}

/// A tracklist from the control plane (or any source other than a manifest), with how to fetch its files.
public struct TracklistSource: Sendable {
    public var tracks: [Track]
    public var loop: Bool
    public var resolver: any TrackFileResolver
    public init(tracks: [Track], loop: Bool, resolver: any TrackFileResolver) {
        self.tracks = tracks; self.loop = loop; self.resolver = resolver
    }
}
