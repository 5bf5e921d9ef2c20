import FFmpegSupport
import Foundation

/// Where the program goes: a local file (`.flv` with AAC + H.264, `.wav` with the PCM mix) or an
/// RTMP(S) ingest URL. A URL carries the stream key, so every textual form of a target is redacted.
public enum OutputTarget: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible,
    CustomReflectable
{
    case flvFile(path: String)
    case wavFile(path: String)
    case stream(url: String)

    /// Parses the `--output` value: `rtmp://` / `rtmps://` URLs, or a path ending in `.flv` / `.wav`.
    public static func parse(_ out: String) throws -> OutputTarget {
        if out.isEmpty {
            throw ProgramOutputError.unsupportedTarget("", reason: "the output is empty")
        }
        if let separator = out.range(of: "://") {
            let scheme = out[..<separator.lowerBound].lowercased()
            guard scheme == "rtmp" || scheme == "rtmps" else {
                throw ProgramOutputError.unsupportedTarget(
                    redact(out),
                    reason: "scheme \"\(redactScheme(scheme))\" is not supported (use rtmp://, rtmps://, or a .flv or .wav path)")
            }
            _ = try StreamURL(out)
            return .stream(url: out)
        }
        // "rtmps:/host/app/key" (a slash short) must not fall through to the file-path message with the key in it.
        if let colon = out.firstIndex(of: ":"), knownSchemes.contains(out[..<colon].lowercased()) {
            throw ProgramOutputError.unsupportedTarget(
                "\(out[..<colon]):***", reason: "not a valid URL (expected scheme://host/...)")
        }
        switch (out as NSString).pathExtension.lowercased() {
        case "flv": return .flvFile(path: out)
        case "wav": return .wavFile(path: out)
        default:
            throw ProgramOutputError.unsupportedTarget(
                out, reason: "unknown output type (use a .flv or .wav path, or an rtmp:// or rtmps:// URL)")
        }
    }

    /// The target as it may appear in logs and errors: a URL's stream key and credentials are `***`.
    public var redactedDescription: String {
        switch self {
        case .flvFile(let path), .wavFile(let path): return path
        case .stream(let url): return OutputTarget.redact(url)
        }
    }

    public var description: String { redactedDescription }
    public var debugDescription: String { redactedDescription }
    /// `dump()` and reflection-based printing must not reach the raw URL either.
    public var customMirror: Mirror { Mirror(self, children: ["target": redactedDescription]) }

    /// Redacts a URL-like string: keeps scheme, host, port and the first path segment (the RTMP
    /// application) when more follows it; user info, the rest of the path and any query become `***`.
    /// A string without `://` is returned unchanged (a file path is not a secret).
    static func redact(_ s: String) -> String {
        guard let separator = s.range(of: "://") else { return s }
        let scheme = redactScheme(String(s[..<separator.lowerBound]))
        let rest = s[separator.upperBound...]
        let authorityEnd = rest.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) ?? rest.endIndex
        var authority = String(rest[..<authorityEnd])
        var userInfo = ""
        if let at = authority.lastIndex(of: "@") {
            userInfo = "***@"
            authority = String(authority[authority.index(after: at)...])
        }
        // A port that is not a number is something pasted in the wrong place: hide it too.
        let portColon = authority.hasPrefix("[")
            ? authority.range(of: "]:").map { authority.index(before: $0.upperBound) }
            : authority.lastIndex(of: ":")
        if let colon = portColon {
            let port = authority[authority.index(after: colon)...]
            if port.isEmpty || !port.allSatisfy({ $0.isASCII && $0.isNumber }) {
                authority = authority[..<colon] + ":***"
            }
        }
        authority = userInfo + authority
        let tail = rest[authorityEnd...]
        if tail.isEmpty { return "\(scheme)://\(authority)" }
        let pathEnd = tail.firstIndex(where: { $0 == "?" || $0 == "#" }) ?? tail.endIndex
        let segments = tail[..<pathEnd].split(separator: "/", omittingEmptySubsequences: true)
        if segments.count >= 2 { return "\(scheme)://\(authority)/\(segments[0])/***" }
        return "\(scheme)://\(authority)/***"
    }

    /// A "scheme" is whatever precedes `://`, which could be anything pasted there: only well-known
    /// scheme names are echoed.
    private static func redactScheme(_ scheme: String) -> String {
        knownSchemes.contains(scheme.lowercased()) ? scheme : "***"
    }

    private static let knownSchemes: Set<String> = [
        "rtmp", "rtmps", "rtmpt", "rtmpts", "rtmpe", "rtmpte", "http", "https", "ftp", "sftp", "file",
        "srt", "rist", "udp", "tcp", "tls", "rtp", "rtsp", "s3", "ws", "wss",
    ]
}

/// The parts of an `rtmp[s]://host[:port]/app/streamKey` URL that we check before connecting.
struct StreamURL: Equatable {
    let secure: Bool
    let host: String
    let port: Int?
    let app: String
    /// Everything after the app: the stream key (secret), with any `?priority=N`.
    let key: String

    init(_ url: String) throws {
        let label = OutputTarget.redact(url)
        func bad(_ reason: String) -> ProgramOutputError { .invalidStreamURL(label, reason: reason) }
        guard let separator = url.range(of: "://") else { throw bad("expected rtmp:// or rtmps://") }
        switch url[..<separator.lowerBound].lowercased() {
        case "rtmp": secure = false
        case "rtmps": secure = true
        default: throw bad("expected rtmp:// or rtmps://")
        }
        // FFmpeg's URL splitter stops at whitespace and the RTMP handler cuts at a space: refuse them.
        if url.unicodeScalars.contains(where: { $0.properties.isWhitespace || $0.value < 0x20 || $0.value == 0x7F }) {
            throw bad("the URL contains whitespace or control characters")
        }
        let rest = url[separator.upperBound...]
        let authorityEnd = rest.firstIndex(where: { $0 == "/" || $0 == "?" || $0 == "#" }) ?? rest.endIndex
        var hostPort = rest[..<authorityEnd]
        if let at = hostPort.lastIndex(of: "@") { hostPort = hostPort[hostPort.index(after: at)...] }
        var parsedPort: Int?
        if hostPort.hasPrefix("[") {
            guard let close = hostPort.firstIndex(of: "]") else { throw bad("unterminated IPv6 address") }
            host = String(hostPort[hostPort.index(after: hostPort.startIndex)..<close])
            let after = hostPort[hostPort.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw bad("unexpected text after the IPv6 address") }
                parsedPort = try StreamURL.port(after.dropFirst(), bad)
            }
        } else if let colon = hostPort.lastIndex(of: ":") {
            host = String(hostPort[..<colon])
            parsedPort = try StreamURL.port(hostPort[hostPort.index(after: colon)...], bad)
        } else {
            host = String(hostPort)
        }
        port = parsedPort
        guard !host.isEmpty else { throw bad("the host is missing") }
        let tail = rest[authorityEnd...]
        let pathEnd = tail.firstIndex(where: { $0 == "?" || $0 == "#" }) ?? tail.endIndex
        let segments = tail[..<pathEnd].split(separator: "/", omittingEmptySubsequences: true)
        guard segments.count >= 2 else {
            throw bad("expected \(secure ? "rtmps" : "rtmp")://host[:port]/app/streamKey")
        }
        app = String(segments[0])
        key = segments.dropFirst().joined(separator: "/")
        // Libraries below us log on their own (an RTMP server error may quote the stream name).
        FFmpegLog.redact(key)
    }

    private static func port(_ text: Substring, _ bad: (String) -> ProgramOutputError) throws -> Int {
        guard !text.isEmpty, text.count <= 5, text.allSatisfy({ $0.isASCII && $0.isNumber }),
              let value = Int(text), (1...65535).contains(value)
        else { throw bad("the port is not a number from 1 to 65535") }
        return value
    }
}

/// Everything the program output can fail with. Every string inside is already redacted, so an error
/// may be logged or printed as it is.
public enum ProgramOutputError: Error, Sendable, Equatable, CustomStringConvertible, LocalizedError {
    /// Not a `.flv`/`.wav` path nor an `rtmp://`/`rtmps://` URL.
    case unsupportedTarget(String, reason: String)
    /// An RTMP(S) URL we cannot use.
    case invalidStreamURL(String, reason: String)
    /// A file output whose directory is missing or cannot be written.
    case outputNotWritable(String, reason: String)
    case artworkNotFound(String)
    /// The artwork exists but is not a picture we can decode.
    case artworkUnreadable(String, reason: String)
    case caFileNotFound(String)
    /// An `OutputOptions` value out of range.
    case invalidOptions(String)
    /// This FFmpeg build lacks an encoder or muxer we need (`aac`, `libx264`, `flv`, `wav`).
    case unavailable(String)
    /// An encoder or the muxer could not be set up.
    case setupFailed(String, reason: String)
    /// Could not open the stream (connect, TLS or RTMP handshake).
    case connectFailed(String, reason: String)
    /// Encoding or writing failed while running (the connection dropped, the disk filled up, ...).
    case writeFailed(String, reason: String)
    /// `write` after `finish`.
    case alreadyFinished(String)

    /// True when the cause is the command line or the manifest (the CLI maps these to exit code 2).
    public var isBadInput: Bool {
        switch self {
        case .unsupportedTarget, .invalidStreamURL, .outputNotWritable, .artworkNotFound,
             .artworkUnreadable, .caFileNotFound, .invalidOptions:
            return true
        case .unavailable, .setupFailed, .connectFailed, .writeFailed, .alreadyFinished:
            return false
        }
    }

    public var description: String {
        switch self {
        case .unsupportedTarget(let target, let reason): return "output \"\(target)\": \(reason)"
        case .invalidStreamURL(let target, let reason): return "output URL \"\(target)\": \(reason)"
        case .outputNotWritable(let target, let reason): return "output \"\(target)\" cannot be written: \(reason)"
        case .artworkNotFound(let path): return "artwork \"\(path)\": file not found"
        case .artworkUnreadable(let path, let reason): return "artwork \"\(path)\": \(reason)"
        case .caFileNotFound(let path): return "CA file \"\(path)\": file not found"
        case .invalidOptions(let reason): return "output options: \(reason)"
        case .unavailable(let what): return "FFmpeg lacks \(what)"
        case .setupFailed(let target, let reason): return "preparing output \"\(target)\" failed: \(reason)"
        case .connectFailed(let target, let reason): return "cannot connect to \"\(target)\": \(reason)"
        case .writeFailed(let target, let reason): return "writing \"\(target)\" failed: \(reason)"
        case .alreadyFinished(let target): return "output \"\(target)\" was already finished"
        }
    }

    public var errorDescription: String? { description }
}

