import AudioCore
import Foundation
import Testing
import Tracklist

/// Makes test audio with the ffmpeg CLI and measures decoded audio.
enum TracklistFixture {
    static let ffmpegPath: String? = {
        let dirs = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":")
        for dir in dirs + ["/usr/bin", "/usr/local/bin"] {
            let candidate = "\(dir)/ffmpeg"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }()

    static var hasFFmpeg: Bool { ffmpegPath != nil }
    static let skipReason: Comment = "ffmpeg CLI not found on PATH: cannot make test audio files"

    struct ToolFailed: Error, CustomStringConvertible {
        let description: String
    }

    /// A fresh directory for one test's files.
    static func makeDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory
            .appendingPathComponent("tracklist-tests-\(UUID().uuidString)", isDirectory: true)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// Runs `ffmpeg -y -loglevel error ARGS OUTPUT` and returns the output path. Bounded to 60 s.
    @discardableResult
    static func ffmpeg(_ args: [String], output: String) throws -> String {
        guard let tool = ffmpegPath else { throw ToolFailed(description: "ffmpeg missing") }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = ["-y", "-hide_banner", "-nostdin", "-loglevel", "error"] + args + [output]
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let deadline = Date(timeIntervalSinceNow: 60)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning {
            process.terminate()
            throw ToolFailed(description: "ffmpeg timed out making \(output)")
        }
        let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        guard process.terminationStatus == 0 else {
            throw ToolFailed(description: "ffmpeg failed making \(output): \(text)")
        }
        return output
    }

    /// A generated signal (aevalsrc expressions, one per channel) encoded to `name` in `dir`.
    @discardableResult
    static func signal(_ exprs: [String], rate: Int = 44_100, seconds: Double, codec: [String],
                       name: String, in dir: URL) throws -> String {
        let layout = exprs.count == 1 ? "mono" : "stereo"
        let source = "aevalsrc=\(exprs.joined(separator: "|")):s=\(rate):c=\(layout):d=\(seconds)"
        return try ffmpeg(["-f", "lavfi", "-i", source] + codec, output: dir.appendingPathComponent(name).path)
    }

    static func sine(_ frequency: Int, amplitude: Double) -> String {
        "\(amplitude)*sin(2*PI*\(frequency)*t)"
    }

    /// Everything a decoder yields, interleaved stereo; bounded to 10 minutes of audio.
    static func decodeAll(_ decoder: AudioFileDecoder) -> [Float] {
        var all: [Float] = []
        var block = [Float](repeating: 0, count: AudioFormat.blockFrames * 2)
        let limit = AudioFormat.sampleRate * 600
        while all.count / 2 < limit {
            let n = block.withUnsafeMutableBufferPointer { decoder.read(into: $0.baseAddress!, frames: AudioFormat.blockFrames) }
            if n == 0 { break }
            all.append(contentsOf: block[0..<(n * 2)])
        }
        return all
    }

    /// Renders `blocks` 10 ms blocks from a source.
    static func render(_ source: AudioSource, blocks: Int, from start: Int64 = 0) -> [Float] {
        let frames = AudioFormat.blockFrames
        var out = [Float](repeating: 0, count: frames * 2 * blocks)
        out.withUnsafeMutableBufferPointer { buffer in
            for b in 0..<blocks {
                source.render(into: buffer.baseAddress! + b * frames * 2, frames: frames,
                              at: start + Int64(b * frames))
            }
        }
        return out
    }

    /// RMS of one channel over frames [from, to).
    static func rms(_ samples: [Float], channel: Int, from: Int, to: Int) -> Double {
        let end = min(to, samples.count / 2)
        guard end > from else { return 0 }
        var sum = 0.0
        for f in from..<end {
            let v = Double(samples[2 * f + channel])
            sum += v * v
        }
        return (sum / Double(end - from)).squareRoot()
    }

    /// Tone frequency of one channel from its rising zero crossings over frames [from, to).
    static func frequency(_ samples: [Float], channel: Int, from: Int, to: Int) -> Double {
        let end = min(to, samples.count / 2)
        guard end > from + 1 else { return 0 }
        var first = -1, last = -1, count = 0
        for f in (from + 1)..<end where samples[2 * (f - 1) + channel] < 0 && samples[2 * f + channel] >= 0 {
            if first < 0 { first = f } else { count += 1 }
            last = f
        }
        guard count > 0 else { return 0 }
        return Double(count) * Double(AudioFormat.sampleRate) / Double(last - first)
    }

    /// dB difference between a measured RMS and a sine of `amplitude`.
    static func levelError(_ rms: Double, sineAmplitude amplitude: Double) -> Double {
        dbfs(rms) - dbfs(amplitude / 2.0.squareRoot())
    }

    /// The first frame at or after `from` that is exactly zero in both channels.
    static func firstSilentFrame(_ samples: [Float], from: Int = 0) -> Int? {
        for f in from..<(samples.count / 2) where samples[2 * f] == 0 && samples[2 * f + 1] == 0 {
            return f
        }
        return nil
    }
}
