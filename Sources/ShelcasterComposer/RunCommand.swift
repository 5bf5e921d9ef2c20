import ArgumentParser
import FFmpegSupport
import Foundation
import Logging
import Worker
import WorkerLogging

/// The ECS task: everything from the environment (DATA-MODEL.md).
struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the worker for one show (the ECS task); configured from the environment.",
        discussion: "Required: SHOW_ID, STAGE_TOKEN, and INGEST_URL + STREAM_KEY or CHANNEL_ARN. See DATA-MODEL.md."
    )

    func run() throws {
        let env = ProcessInfo.processInfo.environment
        WorkerLogging.bootstrap(defaultFormat: .json, metadata: ["service": "composer"])
        FFmpegLog.quiet()
        let logger = Logger(label: "shelcaster-composer")
        // ArgumentParser's run is synchronous; the daemon is async (ServiceLifecycle). The main thread
        // only waits: the daemon runs on the cooperative pool and its own threads.
        let code = Mutex32()
        let done = DispatchSemaphore(value: 0)
        Task {
            code.set(await WorkerDaemon.run(environment: env, logger: logger))
            done.signal()
        }
        done.wait()
        if code.value != 0 { throw ExitCode(code.value) }
    }
}

/// An exit code handed from the daemon's task to the waiting main thread.
final class Mutex32: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Int32 = 1
    func set(_ v: Int32) { lock.lock(); stored = v; lock.unlock() }
    var value: Int32 { lock.lock(); defer { lock.unlock() }; return stored }
}
