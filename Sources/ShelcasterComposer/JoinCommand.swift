import ArgumentParser
import Dispatch
import Foundation
import FFmpegSupport
import StageClient

struct JoinCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "join",
        abstract: "Join a stage with a participant token and mix what its participants publish.",
        discussion: """
        Endpoints come from --events-url/--whip-url, else from the token's events_url/whip_url claims. \
        Without --duration the show runs until SIGINT or SIGTERM. The token never appears in any output.
        """
    )

    @Option(help: "Participant token (JWT) with the subscribe capability (default: the STAGE_TOKEN environment variable, which keeps it out of the process list).")
    var token: String?

    @Option(name: .customLong("events-url"), help: "Events WebSocket base URL (ws:// or wss://); the stage id is appended.")
    var eventsURL: String?

    @Option(name: .customLong("whip-url"), help: "WHIP base URL (http:// or https://).")
    var whipURL: String?

    @Option(help: "Routing JSON file (the audio-routing item's shape); defaults otherwise.")
    var routing: String?

    @Option(name: .shortAndLong, help: "A .flv or .wav file, or an rtmp:// or rtmps:// URL.")
    var output: String

    @Option(help: "Stop after this many seconds of program.")
    var duration: Double?

    @Option(name: .customLong("record-rtp"), help: "Write each participant's decrypted RTP (pcap) and a manifest `local` replays into this directory.")
    var recordRTP: String?

    @Option(name: .customLong("ca-file"), help: "Extra CA bundle for wss://, https:// and rtmps:// certificate checks.")
    var caFile: String?

    @Option(name: .customLong("host-user-id"), help: "The show host's userId (role HOST when the stage attributes name no role).")
    var hostUserId: String?

    func validate() throws {
        if let d = duration, !(d > 0 && d <= 7 * 86_400) {
            throw ValidationError("--duration must be a number of seconds above 0 (and at most a week), got \(d)")
        }
        if (resolvedToken ?? "").trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
            throw ValidationError("--token (or the STAGE_TOKEN environment variable) is required and must not be empty")
        }
    }

    private var resolvedToken: String? { token ?? ProcessInfo.processInfo.environment["STAGE_TOKEN"] }

    func run() throws {
        let logger = Logs.bootstrap()
        FFmpegLog.quiet()
        var options = StageJoinOptions(token: resolvedToken ?? "", output: output)
        options.eventsURL = eventsURL
        options.whipURL = whipURL
        options.routingPath = routing
        options.duration = duration
        options.recordDirectory = recordRTP
        options.caFile = caFile
        options.hostUserId = hostUserId
        let stop = StopSignal()
        options.stop = stop
        let signals = JoinSignals.install(stop)
        defer { withExtendedLifetime(signals) {} }
        let report: StageJoinReport
        do { report = try StageJoin.run(options, logger: logger) } catch {
            throw CommandFailure(message: error.description, code: error.exitCode)
        }
        print(JoinSummary.text(report))
    }
}

/// SIGINT/SIGTERM end the show cleanly (output finished, subscriptions deleted).
enum JoinSignals {
    static func install(_ stop: StopSignal) -> [DispatchSourceSignal] {
        [SIGINT, SIGTERM].map { sig in
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { stop.stop(sig == SIGINT ? "SIGINT" : "SIGTERM") }
            source.resume()
            return source
        }
    }
}

enum JoinSummary {
    static func text(_ r: StageJoinReport) -> String {
        let speed = r.wallSeconds > 0 ? r.programSeconds / r.wallSeconds : 0
        var lines = [String(format: "wrote %@: %.2f s of program in %.2f s (%.1fx real time), %lld frames out",
                            r.output, r.programSeconds, r.wallSeconds, speed, r.outputFrames)]
        if let why = r.stoppedBecause { lines.append("  stopped early: \(why)") }
        let subscribed = r.participants.filter { $0.subscriptions.connected > 0 }.count
        lines.append("  stage \(r.stageId): \(subscribed) of \(r.participants.count) publishing participant(s) subscribed, "
                     + "events: \(r.events.snapshots) snapshot(s), \(r.events.reconnects) reconnect(s), \(r.events.malformed) malformed message(s)")
        for p in r.participants {
            let s = p.stats, sub = p.subscriptions
            lines.append(String(format: "  %@ (%@): %d packets, %d lost, %d late, %d duplicate, %d FEC-recovered, %.0f ms concealed, delay target %.0f ms; %d subscription(s), %d failed",
                                p.participantId, p.role, s.received, s.lost, s.late, s.duplicates, s.fecRecovered,
                                Double(s.concealedFrames) / 48.0, s.targetDelayMs, sub.connected, sub.failures))
            // Arrival → render latency per packet (JitterLatencyStats keeps mean, p95 and max, no median).
            if s.latency.packets > 0 {
                lines.append(String(format: "    latency mean %.1f ms p95 %.0f ms max %.0f ms over %d packets",
                                    s.latency.meanMs, s.latency.p95Ms, s.latency.maxMs, s.latency.packets))
            }
        }
        if !r.problems.isEmpty {
            lines.append("  problems: " + r.problems.map { "\($0.cause) ×\($0.count)" }.joined(separator: ", "))
        }
        if let m = r.recordedManifest { lines.append("  recorded RTP: \(m)") }
        if r.clippedSamples > 0 { lines.append("  warning: \(r.clippedSamples) samples at full scale") }
        return lines.joined(separator: "\n")
    }
}
