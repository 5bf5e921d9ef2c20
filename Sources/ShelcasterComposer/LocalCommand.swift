import ArgumentParser
import ControlPlane
import Foundation
import FFmpegSupport
import LocalRun
import ShowControl
import Logging
import Redaction

struct LocalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "local",
        abstract: "Mix recorded RTP captures and a tracklist per a manifest, with no network (unless --show-id).",
        discussion: """
            Without MANIFEST, runs the bundled demo show (fixtures/demo/manifest.json) into out/demo.flv.
            With --show-id, the run is steered through AWS as the worker would be: the routing item is polled, \
            the show's tracklist (TRACKLIST_ID or the show's tracklistId) is played from S3 instead of the \
            manifest's, and status and heartbeats are written to the show item (see DATA-MODEL.md for the \
            environment: AWS_REGION, credentials, AWS_ENDPOINT_URL, table names, ROUTING_POLL_MS, HEARTBEAT_INTERVAL_S, TASK_ARN).
            """
    )

    @Argument(help: "The local-run manifest (JSON). Default: the bundled demo show.")
    var manifest: String?

    @Option(name: .shortAndLong, help: "A .flv or .wav file, or an rtmp:// or rtmps:// URL.")
    var output: String?

    @Flag(help: "Pace the mix by the wall clock instead of running as fast as possible.")
    var realtime = false

    @Option(help: "Stop after this many seconds of program.")
    var duration: Double?

    @Option(name: .customLong("ca-file"), help: "Extra CA bundle for the rtmps:// certificate check.")
    var caFile: String?

    @Option(name: .customLong("show-id"), help: "Steer the run from the AWS control plane of this show (environment as in DATA-MODEL.md).")
    var showId: String?

    func validate() throws {
        if let d = duration, !(d > 0 && d <= 7 * 86_400) {
            throw ValidationError("--duration must be a number of seconds above 0 (and at most a week), got \(d)")
        }
    }

    func run() throws {
        let logger = Logs.bootstrap()
        FFmpegLog.quiet()
        let manifestPath = manifest ?? Defaults.demoManifest()
        var options = LocalRunOptions(manifestPath: manifestPath, output: output ?? Defaults.demoOutput(manifestGiven: manifest != nil))
        options.realtime = realtime
        options.duration = duration
        options.caFile = caFile
        if let dir = Defaults.directoryToCreate(for: options.output) {
            try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        }
        let report: LocalRunReport
        if let showId {
            report = try ControlledRun.run(showId: showId, options: options, logger: logger)
        } else {
            do { report = try LocalShow.run(options, logger: logger) } catch {
                throw CommandFailure(message: error.description, code: error.exitCode)
            }
        }
        print(Summary.text(report))
    }
}

/// `local --show-id`: the control path on its own, without a stage. Routing, tracklist and
/// heartbeats go through AWS exactly as in the worker; the voices still come from the manifest.
enum ControlledRun {
    static func run(showId: String, options: LocalRunOptions, logger: Logger) throws -> LocalRunReport {
        let env = ProcessInfo.processInfo.environment
        // AWS keys are registered by AWSCore; these may sit in the same environment.
        for name in ["STAGE_TOKEN", "STREAM_KEY"] { if let v = env[name], !v.isEmpty { Secrets.register(v) } }
        let plane: ControlPlane
        do {
            let config = try ControlPlaneConfig.fromEnvironment(env, showIdOverride: showId)
            plane = try ControlPlane(config: config, environment: env, logger: logger)
        } catch let e as ConfigError {
            throw CommandFailure(message: e.description, code: e.exitCode)
        } catch let e as ControlPlaneError {
            throw CommandFailure(message: e.description, code: e.exitCode)
        }
        func attempt<T>(_ work: () throws(ControlPlaneError) -> T) throws -> T {
            do { return try work() } catch { throw CommandFailure(message: error.description, code: error.exitCode) }
        }

        var options = options
        let show = try attempt { () throws(ControlPlaneError) in try plane.readShow() }
        var fetcher: S3TrackFetcher?
        defer { fetcher?.removeAll() }
        if let id = plane.config.tracklistId ?? show.tracklistId {
            let variable = plane.config.tracklistId != nil ? "TRACKLIST_ID" : "tracklistId of show \(showId)"
            let record = try attempt { () throws(ControlPlaneError) in try plane.loadTracklist(id: id, variable: variable) }
            if record.tracks.isEmpty { logger.warning("tracklist \(id) has no playable entries: no music") }
            let f = try attempt { () throws(ControlPlaneError) in try plane.makeTrackFetcher() }
            fetcher = f
            // The player waits for nothing once the mix runs: have the first track on disk first.
            f.prefetchFirstPlayable(of: record.tracks)
            options.tracklist = TracklistSource(tracks: record.tracks, loop: record.loop, resolver: f)
        }
        let control = plane.makeShowControl(show: show)
        try attempt { () throws(ControlPlaneError) in try control.start() }
        options.control = control

        let report: LocalRunReport
        do {
            report = try LocalShow.run(options, logger: logger)
        } catch {
            control.finish(clean: false, error: error.description)
            throw CommandFailure(message: error.description, code: error.exitCode)
        }
        if let reason = report.stoppedBecause {
            control.finish(clean: false, error: reason)  // writes nothing once fenced out
            print(Summary.text(report))
            throw CommandFailure(message: "the run stopped at \(String(format: "%.2f", report.programSeconds)) s: \(reason)", code: 1)
        }
        guard control.finish(clean: true) else {
            print(Summary.text(report))
            throw CommandFailure(message: "the mix finished but the show's final status could not be written to \(plane.config.showsTable)", code: 1)
        }
        return report
    }
}

enum Defaults {
    /// The bundled demo: next to the executable's package checkout, or the current directory.
    static func demoManifest() -> String {
        let candidates = [
            FileManager.default.currentDirectoryPath + "/fixtures/demo/manifest.json",
            URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent().appendingPathComponent("fixtures/demo/manifest.json").path,
        ]
        return candidates.first { FileManager.default.fileExists(atPath: $0) } ?? candidates[0]
    }

    static func demoOutput(manifestGiven: Bool) -> String {
        manifestGiven ? "out/program.flv" : "out/demo.flv"
    }

    /// Only for our own default `out/` folder: a user's explicit path is theirs to create.
    static func directoryToCreate(for output: String) -> String? {
        output.hasPrefix("out/") ? "out" : nil
    }
}

enum Summary {
    static func text(_ r: LocalRunReport) -> String {
        let speed = r.wallSeconds > 0 ? r.programSeconds / r.wallSeconds : 0
        var lines = [String(format: "wrote %@: %.2f s of program in %.2f s (%.1fx real time), %lld frames out",
                            r.output, r.programSeconds, r.wallSeconds, speed, r.outputFrames)]
        for p in r.participants {
            let s = p.stats
            lines.append(String(format: "  %@ (%@): %d packets, %d lost, %d late, %d duplicate, %d FEC-recovered, %.0f ms concealed, delay target %.0f ms",
                                p.participantId, p.role, p.packets, s.lost, s.late, s.duplicates, s.fecRecovered,
                                Double(s.concealedFrames) / 48.0, s.targetDelayMs))
        }
        if r.tracksStarted > 0 || r.tracksFailed > 0 {
            lines.append("  tracklist: \(r.tracksStarted) track(s) started" + (r.tracksFailed > 0 ? ", \(r.tracksFailed) skipped (missing or unreadable)" : ""))
        }
        if r.clippedSamples > 0 { lines.append("  warning: \(r.clippedSamples) samples at full scale") }
        return lines.joined(separator: "\n")
    }
}
