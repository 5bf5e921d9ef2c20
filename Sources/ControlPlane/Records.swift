import DynamoDB
import Routing
import Tracklist

/// The show item (SHOWS_TABLE) as the worker reads it. Fields of the wrong type read as absent.
public struct ShowRecord: Sendable, Equatable {
    public var showId: String
    public var stageArn: String?
    public var channelArn: String?
    public var hostUserId: String?
    public var tracklistId: String?
    public var artworkS3Key: String?
    /// The show lifecycle (`CREATING` … `STOPPED`).
    public var status: String?
    public var compositionServiceStatus: String?
    public var compositionServiceTaskArn: String?

    public init(showId: String) { self.showId = showId }

    public init(item: DynamoItem, showId: String) {
        self.showId = showId
        func s(_ k: String) -> String? { item[k]?.stringValue.flatMap { $0.isEmpty ? nil : $0 } }
        stageArn = s("stageArn")
        channelArn = s("channelArn")
        hostUserId = s("hostUserId")
        tracklistId = s("tracklistId")
        artworkS3Key = s("artworkS3Key")
        status = s("status")
        compositionServiceStatus = s("compositionServiceStatus")
        compositionServiceTaskArn = s("compositionServiceTaskArn")
    }
}

/// Participant roles per DATA-MODEL.md.
public enum ParticipantRoles {
    /// The participants table's role, else the stage attribute `role`, else HOST when the user is
    /// the show's host, else CALLER.
    public static func resolve(tableRole: ParticipantRole?, stageAttribute: String?, userId: String?,
                               hostUserId: String?) -> ParticipantRole {
        if let tableRole { return tableRole }
        if let a = stageAttribute, let r = ParticipantRole(rawValue: a.uppercased()) { return r }
        if let userId, let hostUserId, userId == hostUserId { return .host }
        return .caller
    }

    /// participantId → role from the participants table's items; items without a usable role
    /// are left out (with a warning naming the item).
    public static func fromItems(_ items: [DynamoItem]) -> (roles: [String: ParticipantRole], warnings: [String]) {
        var roles: [String: ParticipantRole] = [:]
        var warnings: [String] = []
        for item in items {
            guard let id = item["participantId"]?.stringValue, !id.isEmpty else { continue }
            guard let raw = item["role"] else { continue }
            guard let text = raw.stringValue, let role = ParticipantRole(rawValue: text.uppercased()) else {
                warnings.append("participants[\(id)].role: expected HOST, CALLER or VIRTUAL_PARTICIPANT, got \(ControlValue(plain: raw.plain))")
                continue
            }
            roles[id] = role
        }
        return (roles, warnings)
    }
}

/// A tracklist item (TRACKLISTS_TABLE): its tracks as S3 locations, and whether it loops.
public struct TracklistRecord: Sendable, Equatable {
    public var tracklistId: String
    public var tracks: [Track]
    public var loop: Bool
    /// Entries left out, and fields read as their default, each naming the field.
    public var warnings: [String]

    public init(tracklistId: String, tracks: [Track], loop: Bool, warnings: [String] = []) {
        self.tracklistId = tracklistId; self.tracks = tracks; self.loop = loop; self.warnings = warnings
    }

    /// Leniently, like the routing item: a bad entry is skipped with a warning, the rest plays.
    public init(item: DynamoItem, tracklistId: String, defaultBucket: String?) {
        self.tracklistId = tracklistId
        var warnings: [String] = []
        switch item["loop"] {
        case nil, .null?: loop = true
        case .bool(let b)?: loop = b
        case let other?:
            warnings.append("loop: expected true or false, got \(ControlValue(plain: other.plain)); looping")
            loop = true
        }
        var tracks: [Track] = []
        let entries = item["tracks"]?.listValue
        if entries == nil, item["tracks"] != nil {
            warnings.append("tracks: expected a list of {s3Key, bucket, title}")
        }
        for (i, entry) in (entries ?? []).enumerated() {
            guard let m = entry.mapValue else { warnings.append("tracks[\(i)]: expected a map; skipped"); continue }
            guard let key = m["s3Key"]?.stringValue, !key.isEmpty, key.utf8.count <= 1024 else {
                warnings.append("tracks[\(i)].s3Key: missing or not a string of 1-1024 bytes; skipped")
                continue
            }
            var bucket = defaultBucket
            if let b = m["bucket"] {
                if let s = b.stringValue, !s.isEmpty { bucket = s } else if !b.isNull {
                    warnings.append("tracks[\(i)].bucket: expected a string; using TRACKLIST_BUCKET")
                }
            }
            guard let bucket else {
                warnings.append("tracks[\(i)].bucket: missing and TRACKLIST_BUCKET is not set; skipped")
                continue
            }
            let fallbackTitle = String(key.split(separator: "/").last ?? Substring(key))
            let title = m["title"]?.stringValue.flatMap { $0.isEmpty ? nil : $0 } ?? fallbackTitle
            tracks.append(Track(title: title, location: .s3(bucket: bucket, key: key)))
        }
        self.tracks = tracks
        self.warnings = warnings
    }
}
