import Foundation
import Routing

/// One participant as a STAGE_STATE snapshot lists it.
public struct StageParticipant: Sendable, Equatable {
    public var id: String
    public var userId: String?
    public var attributes: [String: String]
    public var isPublishing: Bool
    public init(id: String, userId: String? = nil, attributes: [String: String] = [:], isPublishing: Bool) {
        self.id = id; self.userId = userId; self.attributes = attributes; self.isPublishing = isPublishing
    }

    /// DATA-MODEL.md without the participants table: attribute `role`, else HOST when the userId
    /// is the show's host, else CALLER.
    public func role(hostUserId: String?) -> ParticipantRole {
        if let r = attributes["role"].flatMap({ ParticipantRole(rawValue: $0.uppercased()) }) { return r }
        if let h = hostUserId, let u = userId, u == h { return .host }
        return .caller
    }
}

/// A full STAGE_STATE: who is in the stage now. Joins, leaves and publish changes come from
/// diffing successive snapshots.
public struct StageSnapshot: Sendable, Equatable {
    public var stageId: String?
    public var participants: [StageParticipant]
    public init(stageId: String?, participants: [StageParticipant]) { self.stageId = stageId; self.participants = participants }
}

public enum StageEventMessage: Sendable, Equatable {
    case stageState(StageSnapshot)
    case pong
    /// Any other type: ignored, as the protocol may grow.
    case unknown(type: String)
}

public struct StageEventParseError: Error, Sendable, Equatable, CustomStringConvertible {
    public let problem: String
    public var description: String { "bad events message: \(problem)" }
}

public enum StageChange: Sendable, Equatable {
    case joined(StageParticipant)
    case left(StageParticipant)
    case publishingChanged(StageParticipant)
    /// userId or attributes changed (may change the role).
    case updated(StageParticipant)
}

public enum StageEvents {
    /// Largest message we parse; a snapshot of a full stage is a few KiB.
    public static let maxMessageBytes = 1 << 20

    public static func parse(_ text: String) throws(StageEventParseError) -> StageEventMessage {
        guard text.utf8.count <= maxMessageBytes else { throw StageEventParseError(problem: "message of \(text.utf8.count) bytes") }
        guard let any = try? JSONSerialization.jsonObject(with: Data(text.utf8)) else {
            throw StageEventParseError(problem: "not JSON")
        }
        guard let obj = any as? [String: Any] else { throw StageEventParseError(problem: "not a JSON object") }
        guard let type = obj["type"] as? String else { throw StageEventParseError(problem: "no \"type\" string") }
        switch type {
        case "PONG": return .pong
        case "STAGE_STATE":
            guard let payload = obj["payload"] as? [String: Any] else { throw StageEventParseError(problem: "STAGE_STATE without a payload object") }
            guard let list = payload["participants"] as? [Any] else {
                throw StageEventParseError(problem: "STAGE_STATE payload.participants is not a list")
            }
            var out: [StageParticipant] = []
            var seen = Set<String>()
            for (i, item) in list.enumerated() {
                guard let p = item as? [String: Any] else { throw StageEventParseError(problem: "participants[\(i)] is not an object") }
                guard let id = p["id"] as? String, !id.isEmpty else { throw StageEventParseError(problem: "participants[\(i)].id is missing") }
                // A repeated id is a server bug; the first entry wins rather than flapping.
                guard seen.insert(id).inserted else { continue }
                var attrs: [String: String] = [:]
                if let a = p["attributes"] as? [String: Any] {
                    for (k, v) in a { if let s = v as? String { attrs[k] = s } }
                }
                let publishing: Bool
                switch p["isPublishing"] {
                case let b as Bool: publishing = b
                case nil, is NSNull: publishing = false
                default: throw StageEventParseError(problem: "participants[\(i)].isPublishing is not a boolean")
                }
                let user = (p["userId"] as? String).flatMap { $0.isEmpty ? nil : $0 }
                out.append(StageParticipant(id: id, userId: user, attributes: attrs, isPublishing: publishing))
            }
            return .stageState(StageSnapshot(stageId: payload["stageId"] as? String, participants: out))
        default:
            return .unknown(type: String(type.prefix(64)))
        }
    }

    /// What changed from `old` (nil: nobody) to `new`, in `new`'s order, leaves last.
    public static func diff(from old: StageSnapshot?, to new: StageSnapshot) -> [StageChange] {
        var before: [String: StageParticipant] = [:]
        for p in old?.participants ?? [] { before[p.id] = p }
        var changes: [StageChange] = []
        var present = Set<String>()
        for p in new.participants {
            present.insert(p.id)
            guard let was = before[p.id] else { changes.append(.joined(p)); continue }
            if was.isPublishing != p.isPublishing { changes.append(.publishingChanged(p)) }
            if was.userId != p.userId || was.attributes != p.attributes { changes.append(.updated(p)) }
        }
        for p in old?.participants ?? [] where !present.contains(p.id) { changes.append(.left(p)) }
        return changes
    }
}
