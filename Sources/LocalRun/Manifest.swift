import Foundation
import Routing

/// The local-run manifest of LOCAL-RUN.md, validated. Paths are resolved against the manifest's folder.
public struct Manifest: Sendable {
    public struct Show: Sendable { public var showId: String; public var hostUserId: String? }
    public struct Capture: Sendable {
        public var file: String
        public var ssrc: UInt32?
        public var participantId: String
        public var userId: String?
        public var role: ParticipantRole
        public var payloadType: UInt8?
        public var offsetMs: Int64
    }
    public struct Track: Sendable { public var file: String; public var title: String }
    public struct RoutingChange: Sendable { public var atMs: Int64; public var patch: [String: ControlValue] }

    public var path: String
    public var show: Show
    public var captures: [Capture]
    public var tracks: [Track]
    public var loop: Bool
    public var artwork: String?
    /// The routing at program start (defaults merged with `routing`).
    public var routing: Routing
    /// Sorted by time; each is merged over the routing in force when it comes due.
    public var routingChanges: [RoutingChange]
}

/// A manifest problem: always names the file and the field.
public struct ManifestError: Error, CustomStringConvertible, Sendable {
    public let file: String
    public let field: String?
    public let problem: String
    public var description: String { field.map { "\(file): \($0): \(problem)" } ?? "\(file): \(problem)" }
}

extension Manifest {
    public static func load(path: String) throws(ManifestError) -> Manifest {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            let exists = FileManager.default.fileExists(atPath: path)
            throw ManifestError(file: path, field: nil, problem: exists ? "cannot be read" : "no such file")
        }
        return try parse(data, path: path)
    }

    public static func parse(_ data: Data, path: String) throws(ManifestError) -> Manifest {
        let any: Any
        do { any = try JSONSerialization.jsonObject(with: data) } catch {
            throw ManifestError(file: path, field: nil, problem: "not valid JSON (\(jsonProblem(error)))")
        }
        guard case .object(let root) = ControlValue.fromJSONObject(any) else {
            throw ManifestError(file: path, field: nil, problem: "expected a JSON object at the top level")
        }
        let r = Reader(file: path)
        let base = URL(fileURLWithPath: path).deletingLastPathComponent()

        let showObj = try r.object(root, "show", required: false) ?? [:]
        let show = Show(showId: try r.string(showObj, "show.showId") ?? "local",
                        hostUserId: try r.string(showObj, "show.hostUserId"))

        var captures: [Capture] = []
        for (i, item) in try r.array(root, "captures").enumerated() {
            let f = "captures[\(i)]"
            guard case .object(let c) = item else { throw r.fail(f, "expected an object") }
            guard let file = try r.string(c, "\(f).file") else { throw r.fail("\(f).file", "is required") }
            guard let pid = try r.string(c, "\(f).participantId") else { throw r.fail("\(f).participantId", "is required") }
            let userId = try r.string(c, "\(f).userId")
            let ssrc = try r.integer(c, "\(f).ssrc", range: 0...Int64(UInt32.max)).map { UInt32($0) }
            let pt = try r.integer(c, "\(f).payloadType", range: 0...127).map { UInt8($0) }
            let offset = try r.integer(c, "\(f).offsetMs", range: -86_400_000...86_400_000) ?? 0
            let role: ParticipantRole
            if let s = try r.string(c, "\(f).role") {
                guard let known = ParticipantRole(rawValue: s) else {
                    throw r.fail("\(f).role", "\"\(s)\" is not one of \(ParticipantRole.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                role = known
            } else {
                // DATA-MODEL.md: HOST when the userId is the show's host, else CALLER.
                role = (userId != nil && userId == show.hostUserId) ? .host : .caller
            }
            if captures.contains(where: { $0.participantId == pid }) {
                throw r.fail("\(f).participantId", "\"\(pid)\" is used by another capture")
            }
            captures.append(Capture(file: resolve(file, base), ssrc: ssrc, participantId: pid, userId: userId,
                                    role: role, payloadType: pt, offsetMs: offset))
        }

        var tracks: [Track] = []
        var loop = true
        if let tl = try r.object(root, "tracklist", required: false) {
            for (i, item) in try r.array(tl, "tracklist.tracks", key: "tracks").enumerated() {
                let f = "tracklist.tracks[\(i)]"
                guard case .object(let t) = item else { throw r.fail(f, "expected an object") }
                guard let file = try r.string(t, "\(f).file") else { throw r.fail("\(f).file", "is required") }
                tracks.append(Track(file: resolve(file, base), title: try r.string(t, "\(f).title") ?? (file as NSString).lastPathComponent))
            }
            loop = try r.bool(tl, "tracklist.loop") ?? true
        }
        let artwork = try r.string(root, "artwork").map { resolve($0, base) }

        var routing = Routing()
        if let patch = try r.object(root, "routing", required: false) {
            do { routing = try routing.merging(patch, strictness: .strict, fieldPrefix: "routing.").0 } catch {
                throw ManifestError(file: path, field: error.field, problem: error.problem)
            }
        }
        var changes: [RoutingChange] = []
        if root["routingChanges"] != nil {
            var check = routing
            for (i, item) in try r.array(root, "routingChanges").enumerated() {
                let f = "routingChanges[\(i)]"
                guard case .object(let c) = item else { throw r.fail(f, "expected an object") }
                guard let at = try r.integer(c, "\(f).atMs", range: 0...Int64(Int32.max)) else { throw r.fail("\(f).atMs", "is required") }
                guard let patch = try r.object(c, "\(f).routing", key: "routing", required: true) else { throw r.fail("\(f).routing", "is required") }
                // Validate now, so a bad change fails at start rather than minutes into the run.
                do { check = try check.merging(patch, strictness: .strict, fieldPrefix: "\(f).routing.").0 } catch {
                    throw ManifestError(file: path, field: error.field, problem: error.problem)
                }
                changes.append(RoutingChange(atMs: at, patch: patch))
            }
            changes.sort { $0.atMs < $1.atMs }
        }
        return Manifest(path: path, show: show, captures: captures, tracks: tracks, loop: loop, artwork: artwork,
                        routing: routing, routingChanges: changes)
    }

    private static func resolve(_ p: String, _ base: URL) -> String {
        p.hasPrefix("/") ? p : base.appendingPathComponent(p).standardizedFileURL.path
    }

    private static func jsonProblem(_ error: Error) -> String {
        let ns = error as NSError
        return (ns.userInfo["NSDebugDescription"] as? String) ?? ns.localizedDescription
    }
}

/// Typed field access that reports the dotted field name on any mismatch.
private struct Reader {
    let file: String
    func fail(_ field: String, _ problem: String) -> ManifestError { ManifestError(file: file, field: field, problem: problem) }
    private func key(_ field: String, _ key: String?) -> String { key ?? String(field.split(separator: ".").last ?? Substring(field)) }

    func string(_ o: [String: ControlValue], _ field: String, key k: String? = nil) throws(ManifestError) -> String? {
        switch o[key(field, k)] {
        case nil, .null?: return nil
        case .string(let s)?: return s
        case let v?: throw fail(field, "expected a string, got \(v)")
        }
    }
    func bool(_ o: [String: ControlValue], _ field: String) throws(ManifestError) -> Bool? {
        switch o[key(field, nil)] {
        case nil, .null?: return nil
        case .bool(let b)?: return b
        case let v?: throw fail(field, "expected true or false, got \(v)")
        }
    }
    func integer(_ o: [String: ControlValue], _ field: String, range: ClosedRange<Int64>) throws(ManifestError) -> Int64? {
        switch o[key(field, nil)] {
        case nil, .null?: return nil
        case .number(let n)?:
            guard n.isFinite, n.rounded() == n, n >= Double(range.lowerBound), n <= Double(range.upperBound) else {
                throw fail(field, "\(n) is not a whole number in \(range.lowerBound)...\(range.upperBound)")
            }
            return Int64(n)
        case let v?: throw fail(field, "expected a number, got \(v)")
        }
    }
    func object(_ o: [String: ControlValue], _ field: String, key k: String? = nil, required: Bool) throws(ManifestError) -> [String: ControlValue]? {
        switch o[key(field, k)] {
        case nil, .null?: if required { throw fail(field, "is required") } else { return nil }
        case .object(let d)?: return d
        case let v?: throw fail(field, "expected an object, got \(v)")
        }
    }
    func array(_ o: [String: ControlValue], _ field: String, key k: String? = nil) throws(ManifestError) -> [ControlValue] {
        switch o[key(field, k)] {
        case nil, .null?: return []
        case .array(let a)?: return a
        case let v?: throw fail(field, "expected a list, got \(v)")
        }
    }
}
