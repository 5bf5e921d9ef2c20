/// The audio-routing item of DATA-MODEL.md, validated. Defaults are the seed's defaults.
public struct Routing: Sendable, Equatable {
    public var tracklistVolume: Double = 30
    public var hostVolume: Double = 100
    public var callersVolume: Double = 80
    public var masterVolume: Double = 100
    /// participantId or userId of each caller on air. The host is always on air.
    public var onAirCallerIds: Set<String> = []
    /// Optional 0-100 per participant, on top of the group volume.
    public var participantVolumes: [String: Double] = [:]
    public var compression = Compression()
    public var limiter = Limiter()
    public var ducking = Ducking()
    public var tracklist = TracklistControl()
    public var updatedAt: Double = 0

    public init() {}

    public struct Compression: Sendable, Equatable {
        public var enabled = true
        /// dBFS
        public var threshold: Double = -20
        public var ratio: Double = 4
        public init(enabled: Bool = true, threshold: Double = -20, ratio: Double = 4) {
            self.enabled = enabled; self.threshold = threshold; self.ratio = ratio
        }
    }
    public struct Limiter: Sendable, Equatable {
        public var enabled = true
        /// dBFS
        public var ceiling: Double = -1
        public init(enabled: Bool = true, ceiling: Double = -1) { self.enabled = enabled; self.ceiling = ceiling }
    }
    public struct Ducking: Sendable, Equatable {
        public var enabled = false
        public var depthDb: Double = 12
        public init(enabled: Bool = false, depthDb: Double = 12) { self.enabled = enabled; self.depthDb = depthDb }
    }
    public struct TracklistControl: Sendable, Equatable {
        public enum State: String, Sendable { case playing = "PLAYING", paused = "PAUSED" }
        public var state: State = .playing
        public var skipSeq: Int = 0
        public init(state: State = .playing, skipSeq: Int = 0) { self.state = state; self.skipSeq = skipSeq }
    }
}

public enum ParticipantRole: String, Sendable, CaseIterable {
    case host = "HOST"
    case caller = "CALLER"
    case virtualParticipant = "VIRTUAL_PARTICIPANT"
}

extension Routing {
    /// Whether a participant is heard, per DATA-MODEL.md: host always, callers when listed
    /// by participantId or userId, virtual participants never.
    public func isOnAir(role: ParticipantRole, participantId: String, userId: String?) -> Bool {
        switch role {
        case .host: return true
        case .virtualParticipant: return false
        case .caller:
            return onAirCallerIds.contains(participantId) || (userId.map { onAirCallerIds.contains($0) } ?? false)
        }
    }

    /// Linear gain of one voice before the master: on-air gate × group × participant volume.
    public func voiceGain(role: ParticipantRole, participantId: String, userId: String?) -> Double {
        guard isOnAir(role: role, participantId: participantId, userId: userId) else { return 0 }
        let group = role == .host ? hostVolume : callersVolume
        let own = participantVolumes[participantId] ?? userId.flatMap { participantVolumes[$0] } ?? 100
        return group / 100 * own / 100
    }

    public var masterGain: Double { masterVolume / 100 }
    public var musicGain: Double { tracklistVolume / 100 }
}
