/// How a routing patch treats a bad field.
public enum Strictness: Sendable {
    /// Manifest and `--routing` files: a wrongly typed or out-of-range field is an error.
    case strict
    /// The live routing table: clamp or ignore with a warning; the last good value stays.
    case lenient
}

public struct RoutingError: Error, CustomStringConvertible, Sendable, Equatable {
    public let field: String
    public let problem: String
    public var description: String { "\(field): \(problem)" }
}

extension Routing {
    /// Merges `patch` (an object of the routing item's shape) over `self`.
    /// Unknown fields are ignored, as a newer control plane may add some.
    /// - Returns: the merged routing and, in lenient mode, one warning per clamped or ignored field.
    public func merging(_ patch: [String: ControlValue], strictness: Strictness,
                        fieldPrefix: String = "") throws(RoutingError) -> (Routing, warnings: [String]) {
        var v = Validator(strictness: strictness, prefix: fieldPrefix)
        var r = self
        r.tracklistVolume = try v.volume(patch, "tracklistVolume", current: tracklistVolume)
        r.hostVolume = try v.volume(patch, "hostVolume", current: hostVolume)
        r.callersVolume = try v.volume(patch, "callersVolume", current: callersVolume)
        r.masterVolume = try v.volume(patch, "masterVolume", current: masterVolume)
        r.onAirCallerIds = try v.idSet(patch, "onAirCallerIds", current: onAirCallerIds)
        r.participantVolumes = try v.volumeMap(patch, "participantVolumes", current: participantVolumes)
        if let c = try v.object(patch, "compression") {
            r.compression.enabled = try v.bool(c, "compression.enabled", current: compression.enabled)
            r.compression.threshold = try v.number(c, "compression.threshold", current: compression.threshold, range: -60...0)
            r.compression.ratio = try v.number(c, "compression.ratio", current: compression.ratio, range: 1...20)
        }
        if let l = try v.object(patch, "limiter") {
            r.limiter.enabled = try v.bool(l, "limiter.enabled", current: limiter.enabled)
            r.limiter.ceiling = try v.number(l, "limiter.ceiling", current: limiter.ceiling, range: -24...0)
        }
        if let d = try v.object(patch, "ducking") {
            r.ducking.enabled = try v.bool(d, "ducking.enabled", current: ducking.enabled)
            r.ducking.depthDb = try v.number(d, "ducking.depthDb", current: ducking.depthDb, range: 0...40)
        }
        if let t = try v.object(patch, "tracklist") {
            r.tracklist.state = try v.tracklistState(t, "tracklist.state", current: tracklist.state)
            r.tracklist.skipSeq = Int(try v.number(t, "tracklist.skipSeq", current: Double(tracklist.skipSeq),
                                                   range: 0...Double(Int32.max), integral: true))
        }
        r.updatedAt = try v.number(patch, "updatedAt", current: updatedAt, range: 0...Double(Int64.max))
        return (r, v.warnings)
    }
}

/// Field-by-field checks shared by both strictness modes.
struct Validator {
    let strictness: Strictness
    let prefix: String
    var warnings: [String] = []

    /// Strict: throw. Lenient: warn and keep `fallback`.
    private mutating func reject<T>(_ field: String, _ problem: String, keeping fallback: T) throws(RoutingError) -> T {
        let name = prefix + field
        if strictness == .strict { throw RoutingError(field: name, problem: problem) }
        warnings.append("\(name): \(problem); keeping the last good value")
        return fallback
    }

    /// `field` is the dotted name used in messages; `key` the entry in `obj` (its last part by default).
    mutating func number(_ obj: [String: ControlValue], _ field: String, key explicitKey: String? = nil, current: Double,
                         range: ClosedRange<Double>, integral: Bool = false) throws(RoutingError) -> Double {
        let key = explicitKey ?? field.split(separator: ".").last.map(String.init) ?? field
        guard let raw = obj[key], raw != .null else { return current }
        guard case .number(let n) = raw, n.isFinite else {
            return try reject(field, "expected a number, got \(raw)", keeping: current)
        }
        if integral && n.rounded() != n {
            return try reject(field, "expected a whole number, got \(n)", keeping: current)
        }
        if !range.contains(n) {
            let clamped = min(max(n, range.lowerBound), range.upperBound)
            if strictness == .strict {
                throw RoutingError(field: prefix + field, problem: "\(n) is out of range \(fmt(range.lowerBound))...\(fmt(range.upperBound))")
            }
            warnings.append("\(prefix + field): \(n) is out of range \(fmt(range.lowerBound))...\(fmt(range.upperBound)); clamped to \(fmt(clamped))")
            return clamped
        }
        return n
    }

    mutating func volume(_ obj: [String: ControlValue], _ field: String, current: Double) throws(RoutingError) -> Double {
        try number(obj, field, current: current, range: 0...100)
    }

    mutating func bool(_ obj: [String: ControlValue], _ field: String, current: Bool) throws(RoutingError) -> Bool {
        let key = field.split(separator: ".").last.map(String.init) ?? field
        guard let raw = obj[key], raw != .null else { return current }
        guard case .bool(let b) = raw else {
            return try reject(field, "expected true or false, got \(raw)", keeping: current)
        }
        return b
    }

    mutating func object(_ obj: [String: ControlValue], _ field: String) throws(RoutingError) -> [String: ControlValue]? {
        guard let raw = obj[field], raw != .null else { return nil }
        guard case .object(let o) = raw else {
            return try reject(field, "expected an object, got \(raw.typeName)", keeping: nil)
        }
        return o
    }

    mutating func idSet(_ obj: [String: ControlValue], _ field: String, current: Set<String>) throws(RoutingError) -> Set<String> {
        guard let raw = obj[field], raw != .null else { return current }
        guard case .array(let items) = raw else {
            return try reject(field, "expected a list of participant ids, got \(raw.typeName)", keeping: current)
        }
        var ids = Set<String>()
        for (i, item) in items.enumerated() {
            guard case .string(let s) = item, !s.isEmpty else {
                // One bad entry must not take every caller off air: drop just that entry.
                _ = try reject("\(field)[\(i)]", "expected a non-empty string, got \(item.typeName)", keeping: ())
                continue
            }
            ids.insert(s)
        }
        return ids
    }

    mutating func volumeMap(_ obj: [String: ControlValue], _ field: String, current: [String: Double]) throws(RoutingError) -> [String: Double] {
        guard let raw = obj[field], raw != .null else { return current }
        guard case .object(let entries) = raw else {
            return try reject(field, "expected an object of participantId → volume, got \(raw.typeName)", keeping: current)
        }
        var out: [String: Double] = [:]
        for (id, _) in entries {
            let keep = current[id] ?? 100
            let v = try number(entries, "\(field).\(id)", key: id, current: keep, range: 0...100)
            out[id] = v
        }
        return out
    }

    mutating func tracklistState(_ obj: [String: ControlValue], _ field: String,
                                 current: Routing.TracklistControl.State) throws(RoutingError) -> Routing.TracklistControl.State {
        guard let raw = obj["state"], raw != .null else { return current }
        guard case .string(let s) = raw, let st = Routing.TracklistControl.State(rawValue: s) else {
            return try reject(field, "expected \"PLAYING\" or \"PAUSED\"", keeping: current)
        }
        return st
    }

    private func fmt(_ d: Double) -> String {
        d.rounded() == d && abs(d) < 1e15 ? String(Int64(d)) : String(d)
    }
}
