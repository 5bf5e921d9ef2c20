import CFFmpeg
import Foundation
import Redaction

/// FFmpeg's own log lines, kept to real problems and scrubbed of secrets.
///
/// Libraries below us (rtmp, tls, x264) log by themselves; an RTMP server's error text can quote the
/// stream name, which is the stream key. Every line therefore passes through one callback that
/// replaces each registered secret before anything reaches stderr.
public enum FFmpegLog {
    /// Errors only, through the redacting callback. Call once at start-up.
    public static func quiet() {
        cff_set_log_level(AV_LOG_ERROR)
        av_log_set_callback(ffmpegLogCallback)
    }

    /// Registers a value that must never be printed (stream keys, tokens), process-wide.
    public static func redact(_ secret: String) { Secrets.register(secret) }
}

private func ffmpegLogCallback(_ context: UnsafeMutableRawPointer?, _ level: Int32,
                               _ format: UnsafePointer<CChar>?, _ args: CVaListPointer?) {
    guard level <= av_log_get_level(), let format, let args else { return }
    var buffer = [CChar](repeating: 0, count: 1024)
    _ = vsnprintf(&buffer, buffer.count, format, args)
    let text = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        .trimmingCharacters(in: .newlines)
    guard !text.isEmpty else { return }
    FileHandle.standardError.write(Data("ffmpeg: \(Secrets.redact(text))\n".utf8))
}
