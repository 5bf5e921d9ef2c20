import AWSCore
import ControlPlane
import Foundation
import HealthServer
import Logging
import ProgramOutput
import Redaction
import ServiceLifecycle
import ShowControl
import StageClient
import Synchronization

/// `shelcaster-composer run`: the ECS task. Configuration from the environment, then the health
/// server and the live show as Services of one ServiceGroup that turns SIGTERM/SIGINT into a
/// graceful stop (unsubscribe, flush, close the stream, write STOPPED).
public enum WorkerDaemon {
    /// Runs the worker to its end and returns the process exit code (LOCAL-RUN.md: 0 done,
    /// 1 runtime failure, 2 bad configuration).
    public static func run(environment env: [String: String], logger base: Logger) async -> Int32 {
        // SIGTERM's default action kills the process: listen from the first moment, not only once
        // the ServiceGroup runs, so a task stopped while starting still writes STOPPED instead of
        // leaving the show claimed (STARTING + this ARN fences out the next task).
        let stops = StopSignals()
        stops.install()
        defer { stops.cancel() }
        let config: WorkerConfig
        do { config = try WorkerConfig.fromEnvironment(env) } catch {
            base.error("invalid configuration", metadata: ["variable": .string(error.variable), "error": .string(error.description)])
            return error.exitCode
        }
        var logger = base
        logger[metadataKey: "showId"] = .string(config.control.showId)

        // Health first: the container health check and /status answer while we start.
        let health = HealthState()
        let server: HealthServer
        do { server = try HealthServer(port: config.healthPort, state: health, logger: logger) } catch {
            logger.error("cannot serve health checks", metadata: ["error": .string("\(error)")])
            return 1
        }
        server.start()
        defer { server.stop() }
        if let why = stops.requested {
            logger.info("stopped before taking the show", metadata: ["reason": .string(why)])
            return 0
        }

        // Claim the show (fenced from here on).
        let plane: ControlPlane
        let show: ShowRecord
        let dynamo: DynamoShowControl
        do {
            plane = try ControlPlane(config: config.control, environment: env, logger: logger)
            show = try plane.readShow()
            dynamo = plane.makeShowControl(show: show)
            try dynamo.start()
        } catch {
            logger.error("cannot take the show", metadata: ["error": .string(error.description)])
            return error.exitCode
        }
        // From here, every way out writes a final status.
        func giveUp(_ message: String, code: Int32) -> Int32 {
            logger.error("giving up", metadata: ["error": .string(Secrets.redact(message))])
            _ = dynamo.finish(clean: false, error: message)
            return code
        }
        // Asked to stop before the show started: a clean stop all the same (STOPPING, STOPPED).
        func stopBeforeShow(_ why: String) -> Int32 {
            logger.info("stopped before joining the stage", metadata: ["reason": .string(why)])
            dynamo.beginStopping()
            return dynamo.finish(clean: true) ? 0 : 1
        }
        if let why = stops.requested { return stopBeforeShow(why) }

        let setup: ShowSetup
        do { setup = try ShowSetup.resolve(config: config, show: show, plane: plane, environment: env, logger: logger) } catch {
            return giveUp(error.description, code: error.exitCode)
        }
        if let why = stops.requested { return stopBeforeShow(why) }
        let control = WorkerControl(dynamo: dynamo, health: health)
        // From here a signal ends the mix loop at its next block (also before the group listens).
        stops.onStop { control.requestStop($0) }
        var options = StageJoinOptions(token: config.stageToken.revealed, output: setup.output.revealed)
        options.eventsURL = setup.eventsURL
        options.whipURL = setup.whipURL
        options.hostUserId = show.hostUserId
        options.caFile = config.ingestCAFile
        options.control = control
        options.tracklist = setup.tracklist
        options.reconnectingOutput = true

        let showService = ShowService(options: options, control: control, logger: logger)
        let group = ServiceGroup(configuration: .init(
            services: [
                // Listed first, stopped last: health answers until the stream is closed.
                .init(service: HealthService(health: health)),
                .init(service: showService, successTerminationBehavior: .gracefullyShutdownGroup,
                      failureTerminationBehavior: .gracefullyShutdownGroup),
            ],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        do { try await group.run() } catch {
            // The show's own failure is reported below; anything else is the group's.
            if showService.outcome == nil { return giveUp("service group: \(error)", code: 1) }
        }
        switch showService.outcome {
        case .success(let report)?:
            if let why = report.stoppedBecause, dynamo.stopReason != nil {
                // Fenced out: another task owns the show now; it writes the statuses.
                logger.error("stopped: \(why)")
                return 1
            }
            let written = dynamo.finish(clean: true)
            logger.info("stopped", metadata: ["programSeconds": .stringConvertible(Int(report.programSeconds)),
                                              "reason": .string(report.stoppedBecause ?? "end of program")])
            return written ? 0 : 1
        case .failure(let error)?:
            return giveUp(error.description, code: error.exitCode)
        case nil:
            return giveUp("the show did not run", code: 1)
        }
    }
}

/// The health state during shutdown: the server itself runs on its own thread; this Service only
/// marks the worker as not ready once the group begins to stop, so load balancers drain it first.
struct HealthService: Service {
    let health: HealthState
    func run() async throws {
        try? await gracefulShutdown()
        health.setStageJoined(false)
    }
}

/// The live show: StageJoin's mix loop on a thread of its own (it paces itself with the wall clock).
final class ShowService: Service, @unchecked Sendable {
    private let options: StageJoinOptions
    private let control: WorkerControl
    private let logger: Logger
    private let result = Mutex<Result<StageJoinReport, StageJoinError>?>(nil)
    var outcome: Result<StageJoinReport, StageJoinError>? { result.withLock { $0 } }

    init(options: StageJoinOptions, control: WorkerControl, logger: Logger) {
        self.options = options
        self.control = control
        self.logger = logger
    }

    func run() async throws {
        let (options, logger) = (self.options, self.logger)
        try await withGracefulShutdownHandler {
            let r: Result<StageJoinReport, StageJoinError> = await withCheckedContinuation { done in
                let thread = Thread {
                    do throws(StageJoinError) { done.resume(returning: .success(try StageJoin.run(options, logger: logger))) } catch {
                        done.resume(returning: .failure(error))
                    }
                }
                thread.name = "show"
                thread.start()
            }
            result.withLock { $0 = r }
            if case .failure(let e) = r { throw e }
        } onGracefulShutdown: { [control] in
            control.requestStop("asked to stop (SIGTERM)")
        }
    }
}

/// SIGTERM/SIGINT for the whole life of `run`. ServiceLifecycle listens only while the group runs;
/// these listeners are registered before anything else happens, so no signal falls back to the
/// default action (terminate) during start-up. A request is remembered and handed to the handler
/// set later by `onStop` (at once if it already came).
final class StopSignals: @unchecked Sendable {
    private let lock = NSLock()
    private var reason: String?
    private var handler: (@Sendable (String) -> Void)?
    private var sources: [any DispatchSourceSignal] = []
    private let queue = DispatchQueue(label: "shelcaster.stop-signals")

    /// Returns once the listeners are registered (bounded), so an early signal is not missed.
    func install() {
        let registered = DispatchSemaphore(value: 0)
        var installed: [any DispatchSourceSignal] = []
        for (number, name) in [(SIGTERM, "SIGTERM"), (SIGINT, "SIGINT")] {
            #if canImport(Darwin)
            // kqueue delivers the signal only when its action is not the default.
            signal(number, SIG_IGN)
            #endif
            let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
            source.setEventHandler { [weak self] in self?.request("asked to stop (\(name))") }
            source.setRegistrationHandler { registered.signal() }
            source.resume()
            installed.append(source)
        }
        for _ in installed { _ = registered.wait(timeout: .now() + 2) }
        lock.withLock { sources = installed }
    }

    func request(_ why: String) {
        let h = lock.withLock { () -> (@Sendable (String) -> Void)? in
            if reason == nil { reason = why }
            return handler
        }
        h?(why)
    }

    var requested: String? { lock.withLock { reason } }

    func onStop(_ h: @escaping @Sendable (String) -> Void) {
        let already = lock.withLock { () -> String? in
            handler = h
            return reason
        }
        if let already { h(already) }
    }

    func cancel() {
        for s in lock.withLock({ sources }) { s.cancel() }
    }
}
