import DynamoDB
import Routing

extension ControlValue {
    /// A DynamoDB value as the routing validator sees it: N → number, S → string, BOOL, L and sets
    /// → array, M → object, NULL → null (absent). Binary has no place in the routing item: it
    /// becomes a string naming it, so a field holding one is rejected with a warning.
    public init(plain: PlainValue) {
        switch plain {
        case .null: self = .null
        case .bool(let b): self = .bool(b)
        case .number(let n): self = .number(n)
        case .string(let s): self = .string(s)
        case .binary(let b): self = .string("<binary, \(b.count) bytes>")
        case .array(let a): self = .array(a.map(ControlValue.init(plain:)))
        case .object(let o): self = .object(o.mapValues(ControlValue.init(plain:)))
        }
    }
}

/// The routing item of the audio-routing table, read leniently (DATA-MODEL.md).
public enum RoutingItem {
    /// The item's fields (the key `showId` dropped) as loosely typed values.
    public static func controlObject(_ item: DynamoItem) -> [String: ControlValue] {
        var out: [String: ControlValue] = [:]
        for (k, v) in item where k != "showId" { out[k] = ControlValue(plain: v.plain) }
        return out
    }

    /// Every field of a routing, in the item's shape.
    public static func object(_ r: Routing) -> [String: ControlValue] {
        [
            "tracklistVolume": .number(r.tracklistVolume), "hostVolume": .number(r.hostVolume),
            "callersVolume": .number(r.callersVolume), "masterVolume": .number(r.masterVolume),
            "onAirCallerIds": .array(r.onAirCallerIds.sorted().map { .string($0) }),
            "participantVolumes": .object(r.participantVolumes.mapValues { .number($0) }),
            "compression": .object(["enabled": .bool(r.compression.enabled), "threshold": .number(r.compression.threshold),
                                    "ratio": .number(r.compression.ratio)]),
            "limiter": .object(["enabled": .bool(r.limiter.enabled), "ceiling": .number(r.limiter.ceiling)]),
            "ducking": .object(["enabled": .bool(r.ducking.enabled), "depthDb": .number(r.ducking.depthDb)]),
            "tracklist": .object(["state": .string(r.tracklist.state.rawValue), "skipSeq": .number(Double(r.tracklist.skipSeq))]),
            "updatedAt": .number(r.updatedAt),
        ]
    }

    /// Groups whose fields are filled in one by one (the others are replaced whole).
    static let nestedGroups: Set<String> = ["compression", "limiter", "ducking", "tracklist"]

    /// The routing an item stands for, per field: a valid value is taken; a missing one is the
    /// default (the item is the whole truth, and a missing item means the defaults); a wrongly
    /// typed or out-of-range one is clamped or ignored with a warning naming it, and an ignored
    /// field keeps `lastGood`'s value.
    public static func resolve(_ item: DynamoItem?, lastGood: Routing) -> (routing: Routing, warnings: [String]) {
        guard let item else { return (Routing(), []) }
        // Defaults under the item, so absent fields become defaults; merged over the last good
        // routing, so rejected fields keep what was playing.
        var patch = object(Routing())
        for (k, v) in controlObject(item) {
            if nestedGroups.contains(k), case .object(let over) = v, case .object(var base)? = patch[k] {
                for (ik, iv) in over { base[ik] = iv }
                patch[k] = .object(base)
            } else {
                patch[k] = v
            }
        }
        // Lenient merging reports instead of throwing.
        guard let merged = try? lastGood.merging(patch, strictness: .lenient) else { return (lastGood, []) }
        return (merged.0, merged.warnings)
    }
}
