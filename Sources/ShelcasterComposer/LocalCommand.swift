import ArgumentParser
import Foundation
import FFmpegSupport
import LocalRun

struct LocalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "local",
        abstract: "Mix recorded RTP captures and a tracklist per a manifest, with no network.",
        discussion: "Without MANIFEST, runs the bundled demo show (fixtures/demo/manifest.json) into out/demo.flv."
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
        do { report = try LocalShow.run(options, logger: logger) } catch {
            throw CommandFailure(message: error.description, code: error.exitCode)
        }
        print(Summary.text(report))
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
