import AWSCore
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A configuration variable that is missing or unusable. The message names the variable.
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    public let variable: String
    public let problem: String
    public init(variable: String, problem: String) { self.variable = variable; self.problem = problem }
    public var description: String { Secrets.redact("\(variable): \(problem)") }
    /// LOCAL-RUN.md: bad input is exit 2.
    public var exitCode: Int32 { 2 }
}

/// The control plane's part of the task environment (DATA-MODEL.md), validated.
public struct ControlPlaneConfig: Sendable, Equatable {
    public var showId: String
    public var showsTable = "shelcaster-active-shows"
    public var participantsTable = "shelcaster-participants"
    public var routingTable = "shelcaster-audio-routing"
    public var tracklistsTable = "shelcaster-tracklists"
    public var routingPollMs = 500
    public var heartbeatIntervalS = 5.0
    /// How often the participants table is read again for roles.
    public var participantsRefreshS = 30.0
    public var tracklistId: String?
    public var tracklistBucket: String?
    /// This task's identity for fencing.
    public var taskArn: String
    /// Where `taskArn` came from: "ECS task metadata", "TASK_ARN" or "hostname".
    public var taskArnSource: String
    /// Things worth a warning that did not stop start-up (e.g. the ECS metadata endpoint failed).
    public var warnings: [String] = []

    public static let routingPollRange = 50...60_000
    public static let heartbeatRange: ClosedRange<Double> = 0.5...300

    public init(showId: String, taskArn: String, taskArnSource: String = "given") {
        self.showId = showId
        self.taskArn = taskArn
        self.taskArnSource = taskArnSource
    }

    /// Reads SHOW_ID (or `showIdOverride`), the table names, ROUTING_POLL_MS, HEARTBEAT_INTERVAL_S,
    /// TRACKLIST_ID, TRACKLIST_BUCKET and the task ARN: ECS task metadata v4
    /// (`$ECS_CONTAINER_METADATA_URI_V4/task` → `TaskARN`), else TASK_ARN, else the host name.
    public static func fromEnvironment(_ env: [String: String], showIdOverride: String? = nil,
                                       http: HTTPClient = .shared) throws(ConfigError) -> ControlPlaneConfig {
        func value(_ name: String) -> String? {
            guard let v = env[name]?.trimmingCharacters(in: .whitespaces), !v.isEmpty else { return nil }
            return v
        }
        let showId: String
        if let o = showIdOverride {
            showId = try checkedKey(o, variable: "--show-id")
        } else if let v = value("SHOW_ID") {
            showId = try checkedKey(v, variable: "SHOW_ID")
        } else {
            throw ConfigError(variable: "SHOW_ID", problem: "not set (the show this worker serves)")
        }

        let (arn, source, warnings) = try taskIdentity(env, http: http)
        var c = ControlPlaneConfig(showId: showId, taskArn: arn, taskArnSource: source)
        c.warnings = warnings
        for (name, path) in [("SHOWS_TABLE", \ControlPlaneConfig.showsTable), ("PARTICIPANTS_TABLE", \.participantsTable),
                             ("ROUTING_TABLE", \.routingTable), ("TRACKLISTS_TABLE", \.tracklistsTable)] {
            guard let v = value(name) else { continue }
            guard isTableName(v) else {
                throw ConfigError(variable: name, problem: "\"\(v.prefix(80))\" is not a DynamoDB table name (3-255 of A-Z a-z 0-9 _ - .)")
            }
            c[keyPath: path] = v
        }
        if let v = value("ROUTING_POLL_MS") {
            guard let ms = Int(v), routingPollRange.contains(ms) else {
                throw ConfigError(variable: "ROUTING_POLL_MS",
                                  problem: "expected whole milliseconds from \(routingPollRange.lowerBound) to \(routingPollRange.upperBound), got \"\(v.prefix(40))\"")
            }
            c.routingPollMs = ms
        }
        if let v = value("HEARTBEAT_INTERVAL_S") {
            guard let s = Double(v), s.isFinite, heartbeatRange.contains(s) else {
                throw ConfigError(variable: "HEARTBEAT_INTERVAL_S",
                                  problem: "expected seconds from \(heartbeatRange.lowerBound) to \(Int(heartbeatRange.upperBound)), got \"\(v.prefix(40))\"")
            }
            c.heartbeatIntervalS = s
        }
        if let v = value("TRACKLIST_ID") { c.tracklistId = try checkedKey(v, variable: "TRACKLIST_ID") }
        if let v = value("TRACKLIST_BUCKET") {
            guard isBucketName(v) else {
                throw ConfigError(variable: "TRACKLIST_BUCKET", problem: "\"\(v.prefix(80))\" is not an S3 bucket name")
            }
            c.tracklistBucket = v
        }
        return c
    }

    /// A DynamoDB string key: non-empty, at most 1024 bytes, no control characters.
    static func checkedKey(_ v: String, variable: String) throws(ConfigError) -> String {
        guard !v.isEmpty, v.utf8.count <= 1024 else {
            throw ConfigError(variable: variable, problem: "must be 1 to 1024 bytes long")
        }
        guard !v.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
            throw ConfigError(variable: variable, problem: "contains control characters")
        }
        return v
    }

    static func isTableName(_ v: String) -> Bool {
        (3...255).contains(v.utf8.count) && v.utf8.allSatisfy {
            ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x5F || $0 == 0x2D || $0 == 0x2E
        }
    }

    static func isBucketName(_ v: String) -> Bool {
        guard (3...63).contains(v.utf8.count), let f = v.utf8.first, let l = v.utf8.last else { return false }
        let ok = v.utf8.allSatisfy {
            ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x41 && $0 <= 0x5A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2E || $0 == 0x2D || $0 == 0x5F
        }
        return ok && f != 0x2E && f != 0x2D && l != 0x2E && l != 0x2D
    }

    /// The ARN fencing compares. The metadata endpoint failing is not fatal (TASK_ARN or the host
    /// name, unique per Fargate task, still tell tasks apart) but is reported as a warning.
    static func taskIdentity(_ env: [String: String], http: HTTPClient) throws(ConfigError) -> (String, String, [String]) {
        var warnings: [String] = []
        if let uri = env["ECS_CONTAINER_METADATA_URI_V4"], !uri.isEmpty {
            switch ecsTaskArn(metadataURI: uri, http: http) {
            case .success(let arn): return (arn, "ECS task metadata", [])
            case .failure(let why): warnings.append("ECS_CONTAINER_METADATA_URI_V4: \(why); using \(env["TASK_ARN"]?.isEmpty == false ? "TASK_ARN" : "the host name") as the task identity")
            }
        }
        if let v = env["TASK_ARN"], !v.isEmpty {
            return (try checkedKey(v, variable: "TASK_ARN"), "TASK_ARN", warnings)
        }
        var buf = [CChar](repeating: 0, count: 256)
        guard gethostname(&buf, buf.count - 1) == 0 else {
            throw ConfigError(variable: "TASK_ARN", problem: "not set and the host name cannot be read")
        }
        let host = String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        guard !host.isEmpty else { throw ConfigError(variable: "TASK_ARN", problem: "not set and the host name is empty") }
        return ("host/" + host, "hostname", warnings)
    }

    /// GET <uri>/task → "TaskARN" (a few quick attempts: the agent answers locally).
    static func ecsTaskArn(metadataURI: String, http: HTTPClient) -> Result<String, ConfigErrorText> {
        var base = metadataURI
        while base.hasSuffix("/") { base.removeLast() }
        var last = "no answer"
        for attempt in 0..<3 {
            if attempt > 0 { Thread.sleep(forTimeInterval: 0.2 * Double(attempt)) }
            do throws(HTTPError) {
                let r = try http.send(HTTPRequest(url: base + "/task", timeout: 2, connectTimeout: 1))
                guard r.isSuccess else { last = "GET /task answered HTTP \(r.status)"; continue }
                guard let json = try? JSONValue.parse(r.body), let arn = json["TaskARN"]?.stringValue, !arn.isEmpty, arn.utf8.count <= 1024 else {
                    return .failure(ConfigErrorText("GET /task gave no TaskARN"))
                }
                return .success(arn)
            } catch {
                last = error.description
                if !error.isTransient { break }
            }
        }
        return .failure(ConfigErrorText(last))
    }
}

struct ConfigErrorText: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}
