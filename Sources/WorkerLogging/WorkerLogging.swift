import Foundation
import Logging
import Redaction

/// Log output of the worker: JSON lines for the container (CloudWatch parses them), text for a
/// terminal. Every line passes through the secret registry, whatever a caller put in it.
public enum WorkerLogging {
    public enum Format: String, Sendable { case json, text }

    /// LOG_FORMAT (json|text) over `defaultFormat`, and LOG_LEVEL. Logs go to stdout in json (the
    /// container's stream), to stderr in text (stdout keeps a command's summary).
    public static func bootstrap(environment: [String: String] = ProcessInfo.processInfo.environment,
                                 defaultFormat: Format, metadata: Logger.Metadata = [:]) {
        let level = environment["LOG_LEVEL"].flatMap { Logger.Level(rawValue: $0.lowercased()) } ?? .info
        let format = environment["LOG_FORMAT"].flatMap { Format(rawValue: $0.lowercased()) } ?? defaultFormat
        LoggingSystem.bootstrap { label in
            var h = LineLogHandler(label: label, format: format)
            h.logLevel = level
            h.metadata = metadata
            return h
        }
    }
}

public struct LineLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    let label: String
    let format: WorkerLogging.Format

    public init(label: String, format: WorkerLogging.Format) { self.label = label; self.format = format }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var all = metadata
        if let explicit = event.metadata { all.merge(explicit) { $1 } }
        if let error = event.error { all["error"] = .string("\(error)") }
        let text = LineLogHandler.render(level: event.level, message: "\(event.message)", metadata: all, label: label,
                                         format: format, time: Date())
        let out = Secrets.redact(text) + "\n"
        let handle = format == .json ? FileHandle.standardOutput : FileHandle.standardError
        handle.write(Data(out.utf8))
    }

    static func render(level: Logger.Level, message: String, metadata: Logger.Metadata, label: String,
                       format: WorkerLogging.Format, time: Date) -> String {
        let stamp = time.formatted(.iso8601.year().month().day().time(includingFractionalSeconds: true).timeZone(separator: .omitted))
        switch format {
        case .text:
            let meta = metadata.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            return "\(stamp) \(level.rawValue.uppercased()) \(message)\(meta.isEmpty ? "" : " " + meta)"
        case .json:
            var obj: [String: Any] = ["time": stamp, "level": level.rawValue, "message": message,
                                      "service": metadata["service"].map { "\($0)" } ?? label]
            for (k, v) in metadata where k != "service" { obj[k] = plain(v) }
            guard let data = try? JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys, .withoutEscapingSlashes]) else {
                return #"{"level":"error","message":"unencodable log line"}"#
            }
            return String(decoding: data, as: UTF8.self)
        }
    }

    private static func plain(_ v: Logger.Metadata.Value) -> Any {
        switch v {
        case .string(let s): return s
        case .stringConvertible(let c): return "\(c)"
        case .array(let a): return a.map(plain)
        case .dictionary(let d): return d.mapValues(plain)
        }
    }
}
