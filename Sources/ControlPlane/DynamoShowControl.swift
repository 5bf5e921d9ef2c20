import AWSCore
import DynamoDB
import Foundation
import Logging
import Routing
import ShowControl

/// `compositionServiceStatus` values (DATA-MODEL.md).
public enum ServiceStatus: String, Sendable, Equatable {
    case starting = "STARTING", running = "RUNNING", degraded = "DEGRADED", stopping = "STOPPING"
    case stopped = "STOPPED", error = "ERROR"
}

/// The worker's side of DATA-MODEL.md for one show, as the mix loop's `ShowControl`:
/// - a routing poller (every ROUTING_POLL_MS, consistent read, lenient validation, the last good
///   routing kept while DynamoDB is unreachable),
/// - a heartbeat writer (every HEARTBEAT_INTERVAL_S: status and the metrics map),
/// - participant roles from the participants table (read at start, refreshed periodically),
/// - status transitions, every write fenced on `compositionServiceTaskArn`.
///
/// Each loop has its own thread; the `ShowControl` calls only take a lock for a moment, so the
/// mix thread never waits on the network.
public final class DynamoShowControl: ShowControl, @unchecked Sendable {
    /// Counters for logs, metrics and tests.
    public struct Counters: Sendable, Equatable {
        public var routingPolls = 0
        public var routingPollErrors = 0
        /// Routings handed to the mix loop.
        public var routingUpdates = 0
        public var heartbeats = 0
        public var heartbeatErrors = 0
        public var participantReads = 0
        public var participantReadErrors = 0
    }

    public let config: ControlPlaneConfig
    public let show: ShowRecord?
    /// How long the output may be down before the task reports DEGRADED.
    public static let degradedAfterSeconds = 30.0
    private let quick: DynamoDBClient
    private let retrying: DynamoDBClient
    private let logger: Logger

    private let lock = NSLock()
    // Guarded by `lock`.
    private var counters = Counters()
    private var lastGood = Routing()
    private var delivered: Routing?
    private var pending: Routing?
    private var activeWarnings: Set<String> = []
    private var participantWarnings: Set<String> = []
    private var roles: [String: ParticipantRole] = [:]
    private var latestStatus: ShowStatus?
    private var fenceReason: String?
    private var statusesWritten: [ServiceStatus] = []
    private var lastWrittenStatus: ServiceStatus?
    private var liveRequested = false
    private var liveWritten = false
    private var stopping = false
    private var started = false
    private var finished = false
    private var pollFailures = FailureRun()
    private var heartbeatFailures = FailureRun()
    private var routingItemMissing: Bool?

    private var usage = ProcessUsage()
    private var startedAt = ProcessUsage.monotonicNs()
    private var poller: PeriodicWorker?
    private var heartbeat: PeriodicWorker?
    private var participants: PeriodicWorker?

    /// Failures keep being reported this often while they last.
    static let failureReminder = 30.0

    /// - Parameters:
    ///   - quick: one attempt, short timeout (polls, heartbeats, participant reads).
    ///   - retrying: a few attempts (the claim, the final status, re-reads after a failed condition).
    public init(config: ControlPlaneConfig, quick: DynamoDBClient, retrying: DynamoDBClient, show: ShowRecord?, logger: Logger) {
        self.config = config
        self.quick = quick
        self.retrying = retrying
        self.show = show
        var l = logger
        l[metadataKey: "showId"] = .string(config.showId)
        self.logger = l
    }

    // MARK: - ShowControl (mix thread)

    public func takeRoutingUpdate() -> Routing? {
        lock.lock()
        defer { lock.unlock() }
        guard let p = pending else { return nil }
        pending = nil
        delivered = p
        counters.routingUpdates += 1
        return p
    }

    public func role(participantId: String) -> ParticipantRole? {
        lock.withLock { roles[participantId] }
    }

    public func publish(_ status: ShowStatus) {
        let wake = lock.withLock { () -> PeriodicWorker? in
            let first = latestStatus == nil
            latestStatus = status
            return first ? heartbeat : nil
        }
        // The first status means the mix runs: tell the table (RUNNING) now, not a tick later.
        wake?.wake()
    }

    public var stopReason: String? { lock.withLock { fenceReason } }

    /// DATA-MODEL.md's whole rule for a stage participant: the participants table, else the stage
    /// attribute `role`, else HOST for the show's `hostUserId`, else CALLER.
    public func role(participantId: String, userId: String?, stageAttribute: String?) -> ParticipantRole {
        ParticipantRoles.resolve(tableRole: role(participantId: participantId), stageAttribute: stageAttribute,
                                 userId: userId, hostUserId: show?.hostUserId)
    }

    // MARK: - Observation

    public var stats: Counters { lock.withLock { counters } }
    /// The statuses this worker wrote, in order (each change once).
    public var writtenStatuses: [ServiceStatus] { lock.withLock { statusesWritten } }
    /// The routing the poller last validated (what the mix gets, or already has).
    public var currentRouting: Routing { lock.withLock { lastGood } }
    public var participantRoles: [String: ParticipantRole] { lock.withLock { roles } }

    // MARK: - Lifecycle

    /// Claims the show for this task (STARTING, fenced), reads participant roles and the routing
    /// once, then starts the poll, heartbeat and participants loops.
    /// Throws `.fenced` when another task holds the show, `.notFound` without a show item,
    /// `.unavailable` when DynamoDB cannot be reached.
    public func start() throws(ControlPlaneError) {
        let already = lock.withLock { () -> Bool in
            defer { started = true }
            return started
        }
        guard !already else { return }
        lock.withLock {
            startedAt = ProcessUsage.monotonicNs()
            usage = ProcessUsage()
        }
        do throws(ControlPlaneError) {
            try claim()
        } catch {
            // Unless fenced (which is final), a later start() may try again.
            if error.kind != .fenced { lock.withLock { started = false } }
            throw error
        }
        recordWritten(.starting)
        logger.info("control plane started", metadata: [
            "taskArn": .string(config.taskArn), "taskArnFrom": .string(config.taskArnSource),
            "routingPollMs": .stringConvertible(config.routingPollMs), "heartbeatS": .stringConvertible(config.heartbeatIntervalS),
        ])
        for w in config.warnings { logger.warning("\(w)") }

        // Roles and routing before the first mix block, so the mix starts with them.
        _ = refreshParticipants()
        _ = pollRouting()

        let poller = PeriodicWorker(name: "routing-poll", interval: Double(config.routingPollMs) / 1000) { [weak self] in
            self?.pollRouting() ?? false
        }
        let heartbeat = PeriodicWorker(name: "heartbeat", interval: config.heartbeatIntervalS) { [weak self] in
            self?.writeHeartbeat() ?? false
        }
        let participants = PeriodicWorker(name: "participants", interval: config.participantsRefreshS) { [weak self] in
            self?.refreshParticipants() ?? false
        }
        lock.withLock {
            self.poller = poller
            self.heartbeat = heartbeat
            self.participants = participants
        }
        poller.start()
        heartbeat.start()
        participants.start()
    }

    /// The first write: STARTING and this task's ARN, when the show exists and names no other task.
    private func claim() throws(ControlPlaneError) {
        let now = Self.epochMs()
        do throws(DynamoDBError) {
            try retrying.updateItem(
                table: config.showsTable, key: key,
                updateExpression: "SET #css = :st, #arn = :me, #ua = :now, #hb = :now REMOVE #em",
                conditionExpression: "attribute_exists(#id) AND (attribute_not_exists(#arn) OR #arn = :me)",
                names: ["#css": "compositionServiceStatus", "#arn": "compositionServiceTaskArn", "#ua": "updatedAt",
                        "#hb": "lastHeartbeat", "#em": "errorMessage", "#id": "showId"],
                values: [":st": .s(ServiceStatus.starting.rawValue), ":me": .s(config.taskArn), ":now": .number(now)])
        } catch {
            if error.isConditionalCheckFailed {
                switch owner() {
                case .absentItem:
                    throw ControlPlaneError(.notFound, "SHOW_ID: no show \"\(config.showId)\" in table \(config.showsTable)")
                case .other(let arn):
                    let reason = "fenced out by task \(arn)"
                    lock.withLock { fenceReason = reason }
                    logger.error("show \(config.showId) is already served by task \(arn); this task (\(config.taskArn)) stops")
                    throw ControlPlaneError(.fenced, "show \(config.showId) is already served by task \(arn) (this task: \(config.taskArn))")
                case .me:
                    break  // a retried write of ours landed first: the show is ours
                case .absentOwner, .unknown:
                    throw ControlPlaneError(.unavailable, "cannot claim show \(config.showId): the conditional write failed and the item does not name this task")
                }
            } else {
                throw ControlPlaneError(.unavailable, "cannot claim show \(config.showId) in \(config.showsTable): \(error)")
            }
        }
    }

    /// The ingest accepted the stream: the show's `status` becomes LIVE with the next heartbeat
    /// (written at once). Safe to call from any thread; never blocks.
    public func markLive() {
        let w = lock.withLock { () -> PeriodicWorker? in
            guard !liveWritten else { return nil }
            liveRequested = true
            return heartbeat
        }
        w?.wake()
    }

    /// A graceful stop began (SIGTERM, end of program): heartbeats carry STOPPING from now on.
    public func beginStopping() {
        let w = lock.withLock { () -> PeriodicWorker? in
            stopping = true
            return heartbeat
        }
        w?.wake()
    }

    /// Ends the loops and writes the final status: STOPPING then STOPPED (the show's `status`
    /// STOPPED too) when `clean`, else ERROR with `errorMessage`. Nothing is written after the
    /// worker was fenced out. Returns whether the final status was written.
    @discardableResult
    public func finish(clean: Bool, error: String? = nil) -> Bool {
        let (workers, wasStarted, wasFinished) = lock.withLock { () -> ([PeriodicWorker], Bool, Bool) in
            defer { finished = true; stopping = true }
            return ([poller, heartbeat, participants].compactMap { $0 }, started, finished)
        }
        guard wasStarted, !wasFinished else { return false }
        // A heartbeat in flight finishes first, so its write cannot land after the final one.
        // Worst case: a heartbeat (≤ 5 s) and the re-read after a failed condition (3 × 5 s).
        let deadline = Date().addingTimeInterval(22)
        for w in workers { w.requestStop() }
        for w in workers where !w.stop(timeout: deadline.timeIntervalSinceNow) {
            logger.warning("control plane: the \(w.name) loop did not end in time")
        }
        if let reason = stopReason {
            logger.error("control plane: not writing a final status: \(reason)")
            return false
        }
        if clean {
            if lock.withLock({ lastWrittenStatus }) != .stopping {
                guard writeStatus(.stopping, extra: [:]) else { return false }
            }
            let ok = writeStatus(.stopped, extra: ["#status": ("status", .s("STOPPED")),
                                                   "#m": ("metrics", currentMetrics())])
            if ok { logger.info("control plane: show stopped cleanly") }
            return ok
        }
        let message = Secrets.redact(String((error ?? "unknown error").prefix(1000)))
        let ok = writeStatus(.error, extra: ["#status": ("status", .s("ERROR")), "#em": ("errorMessage", .s(message))])
        if ok { logger.error("control plane: show marked ERROR: \(message)") }
        return ok
    }

    // MARK: - Routing poll

    /// One poll. Returns false when the loop should end (fenced or finished).
    func pollRouting() -> Bool {
        if lock.withLock({ fenceReason != nil }) { return false }
        let item: DynamoItem?
        do throws(DynamoDBError) {
            item = try quick.getItem(table: config.routingTable, key: key, consistentRead: true)
        } catch {
            let (count, report) = lock.withLock { () -> (Int, Bool) in
                counters.routingPollErrors += 1
                return (counters.routingPollErrors, pollFailures.failed(every: Self.failureReminder))
            }
            if report {
                logger.warning("routing poll failed; mixing continues with the last good routing: \(error)",
                               metadata: ["routingPollErrors": .stringConvertible(count)])
            }
            return true
        }
        let base = lock.withLock { lastGood }
        let (routing, warnings) = RoutingItem.resolve(item, lastGood: base)
        let missing = item == nil
        let (newWarnings, recoveredAfter, missingChanged, changed) = lock.withLock { () -> ([String], Double?, Bool, Bool) in
            counters.routingPolls += 1
            let routingChanged = routing != lastGood
            lastGood = routing
            if routing != delivered { pending = routing } else { pending = nil }
            // Each warning once while it lasts; it is logged again if it goes away and comes back.
            let current = Set(warnings)
            let fresh = warnings.filter { !activeWarnings.contains($0) }
            activeWarnings = current
            let recovered = pollFailures.succeeded()
            let missingChanged = routingItemMissing != missing
            routingItemMissing = missing
            return (fresh, recovered, missingChanged, routingChanged)
        }
        for w in newWarnings { logger.warning("routing item: \(w)", metadata: ["table": .string(config.routingTable)]) }
        if let s = recoveredAfter {
            logger.info("routing poll recovered after \(String(format: "%.1f", s)) s of failures")
        }
        if missingChanged && missing {
            logger.info("no routing item for the show in \(config.routingTable): using the default routing")
        }
        if changed {
            logger.info("routing changed", metadata: ["updatedAt": .stringConvertible(Int64(routing.updatedAt))])
        }
        return true
    }

    // MARK: - Heartbeat

    func writeHeartbeat() -> Bool {
        let (status, live, isStopping) = lock.withLock { (latestStatus, liveRequested && !liveWritten, stopping) }
        if lock.withLock({ fenceReason != nil || finished }) { return false }
        let state: ServiceStatus
        if isStopping {
            state = .stopping
        } else if let status {
            // A short ingest outage is normal on the internet; DEGRADED means the audience has lost
            // the show for a while (issue: after 30 s down), and clears when the output returns.
            state = status.outputState != .connected && status.outputDownSeconds >= DynamoShowControl.degradedAfterSeconds
                ? .degraded : .running
        } else {
            state = .starting
        }
        var extra: [String: (String, AttributeValue)] = ["#m": ("metrics", currentMetrics())]
        if live { extra["#status"] = ("status", .s("LIVE")) }
        let ok = writeStatus(state, extra: extra, isHeartbeat: true)
        if ok && live {
            lock.withLock { liveWritten = true }
            logger.info("show status LIVE")
        }
        return lock.withLock { fenceReason == nil }
    }

    private func currentMetrics() -> AttributeValue {
        let (status, uptime, cpu, pollErrors, hbErrors) = lock.withLock { () -> (ShowStatus?, Double, Double, Int, Int) in
            let up = Double(ProcessUsage.monotonicNs() &- startedAt) / 1e9
            return (latestStatus, up, usage.cpuPercent(), counters.routingPollErrors, counters.heartbeatErrors)
        }
        return HeartbeatMetrics.item(status: status, uptimeSeconds: uptime, rssMb: ProcessUsage.rssMb(), cpuPercent: cpu,
                                     routingPollErrors: pollErrors, heartbeatErrors: hbErrors)
    }

    /// One fenced write of `compositionServiceStatus`, `lastHeartbeat`, `updatedAt` and `extra`
    /// (placeholder → (attribute, value)). A failed condition fences the worker out unless the
    /// re-read shows the item is still ours.
    private func writeStatus(_ state: ServiceStatus, extra: [String: (String, AttributeValue)], isHeartbeat: Bool = false) -> Bool {
        let now = Self.epochMs()
        var names = ["#css": "compositionServiceStatus", "#arn": "compositionServiceTaskArn", "#ua": "updatedAt", "#hb": "lastHeartbeat"]
        var values: DynamoItem = [":st": .s(state.rawValue), ":me": .s(config.taskArn), ":now": .number(now)]
        var sets = ["#css = :st", "#ua = :now", "#hb = :now"]
        for (placeholder, (attribute, value)) in extra.sorted(by: { $0.key < $1.key }) {
            let v = ":" + placeholder.dropFirst()
            names[placeholder] = attribute
            values[v] = value
            sets.append("\(placeholder) = \(v)")
        }
        do throws(DynamoDBError) {
            // A heartbeat gets one quick attempt (the next one is due soon); status changes retry.
            let client = isHeartbeat ? quick : retrying
            try client.updateItem(table: config.showsTable, key: key, updateExpression: "SET " + sets.joined(separator: ", "),
                                  conditionExpression: "#arn = :me", names: names, values: values)
        } catch {
            if error.isConditionalCheckFailed {
                switch owner() {
                case .me:
                    // The item names this task again (it changed and changed back between the
                    // two calls): nothing to fence; the next write tries again.
                    lock.withLock { counters.heartbeatErrors += 1 }
                    logger.warning("control plane: a conditional write failed although the show still names this task; retrying next time")
                    return false
                case .unknown:
                    lock.withLock { counters.heartbeatErrors += 1 }
                    logger.warning("control plane: a conditional write failed and the show item could not be re-read; retrying next time")
                    return false
                case .other(let arn):
                    fence("fenced out by task \(arn)", detail: "show \(config.showId) is now served by task \(arn)")
                    return false
                case .absentItem:
                    fence("fenced out: the show item is gone", detail: "show \(config.showId) no longer exists in \(config.showsTable)")
                    return false
                case .absentOwner:
                    fence("fenced out: the show no longer names a task", detail: "compositionServiceTaskArn was removed from show \(config.showId)")
                    return false
                }
            }
            let (count, report) = lock.withLock { () -> (Int, Bool) in
                counters.heartbeatErrors += 1
                return (counters.heartbeatErrors, isHeartbeat ? heartbeatFailures.failed(every: Self.failureReminder) : true)
            }
            if report {
                logger.warning("control plane: writing \(state.rawValue) failed: \(error)",
                               metadata: ["heartbeatErrors": .stringConvertible(count)])
            }
            return false
        }
        let (changed, recovered) = lock.withLock { () -> (Bool, Double?) in
            if isHeartbeat { counters.heartbeats += 1 }
            let changed = lastWrittenStatus != state
            if changed { statusesWritten.append(state); lastWrittenStatus = state }
            return (changed, heartbeatFailures.succeeded())
        }
        if let r = recovered { logger.info("heartbeats resumed after \(String(format: "%.1f", r)) s of failures") }
        if changed && state != .starting { logger.info("composition service status \(state.rawValue)") }
        return true
    }

    private func recordWritten(_ state: ServiceStatus) {
        lock.withLock {
            if lastWrittenStatus != state { statusesWritten.append(state); lastWrittenStatus = state }
        }
    }

    private func fence(_ reason: String, detail: String) {
        let first = lock.withLock { () -> Bool in
            guard fenceReason == nil else { return false }
            fenceReason = reason
            return true
        }
        guard first else { return }
        logger.error("control plane: \(detail); this task (\(config.taskArn)) stops now: \(reason)")
    }

    private enum Owner { case me, other(String), absentOwner, absentItem, unknown }

    /// Who the show item names now (consistent read), to tell a fence from a duplicate write.
    private func owner() -> Owner {
        do throws(DynamoDBError) {
            guard let item = try retrying.getItem(table: config.showsTable, key: key, consistentRead: true) else { return .absentItem }
            guard let arn = item["compositionServiceTaskArn"]?.stringValue else { return .absentOwner }
            return arn == config.taskArn ? .me : .other(arn)
        } catch {
            return .unknown
        }
    }

    // MARK: - Participants

    func refreshParticipants() -> Bool {
        if lock.withLock({ fenceReason != nil }) { return false }
        do throws(DynamoDBError) {
            let items = try quick.queryAll(table: config.participantsTable, keyCondition: "#id = :id",
                                           names: ["#id": "showId"], values: [":id": .s(config.showId)], maxPages: 20)
            let (found, warnings) = ParticipantRoles.fromItems(items)
            let fresh = lock.withLock { () -> [String] in
                counters.participantReads += 1
                roles = found
                let fresh = warnings.filter { !participantWarnings.contains($0) }
                participantWarnings = Set(warnings)
                return fresh
            }
            for w in fresh { logger.warning("participants table: \(w)") }
        } catch {
            lock.withLock { counters.participantReadErrors += 1 }
            logger.warning("reading participant roles failed (keeping the last known): \(error)")
        }
        return true
    }

    // MARK: - helpers

    private var key: DynamoItem { ["showId": .s(config.showId)] }

    static func epochMs() -> Int64 { Int64((Date().timeIntervalSince1970 * 1000).rounded()) }
}

/// A run of consecutive failures of one loop, for logging without flooding.
struct FailureRun {
    var since: Date?
    var reminders = 0

    /// A failure: true for the first of a run, then once per `every` seconds while it lasts.
    mutating func failed(every: Double) -> Bool {
        let now = Date()
        guard let s = since else {
            since = now
            reminders = 0
            return true
        }
        let n = Int(now.timeIntervalSince(s) / every)
        guard n > reminders else { return false }
        reminders = n
        return true
    }

    /// A success: how long the run of failures lasted, if one was going on.
    mutating func succeeded() -> Double? {
        defer { since = nil }
        return since.map { Date().timeIntervalSince($0) }
    }
}
