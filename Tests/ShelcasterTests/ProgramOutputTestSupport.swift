import AudioCore
import Foundation
@testable import ProgramOutput

/// Helpers for the ProgramOutput tests: external tools, a sine program, WAV reading, tone measurement.
enum POTest {
    static func tool(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for dir in path.split(separator: ":") {
            let candidate = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    static let ffprobe = tool("ffprobe")
    static let ffmpeg = tool("ffmpeg")
    static let python = tool("python3")
    static let openssl = tool("openssl")
    static var hasFFTools: Bool { ffprobe != nil && ffmpeg != nil }

    struct Result {
        var status: Int32
        var stdout: Data
        var stderr: String
        var text: String { String(decoding: stdout, as: UTF8.self) }
    }

    enum Failure: Error, CustomStringConvertible {
        case timedOut(String)
        case failed(String, Int32, String)
        case parse(String)
        var description: String {
            switch self {
            case .timedOut(let c): return "\(c) timed out"
            case .failed(let c, let s, let e): return "\(c) exited \(s): \(e)"
            case .parse(let what): return "could not parse \(what)"
            }
        }
    }

    /// Runs a tool with output in temporary files (no pipe can fill up) and a hard time limit.
    @discardableResult
    static func run(_ executable: String, _ arguments: [String], timeout: TimeInterval = 60,
                    check: Bool = true) throws -> Result
    {
        let dir = tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("out"), err = dir.appendingPathComponent("err")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        _ = FileManager.default.createFile(atPath: err.path, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = try FileHandle(forWritingTo: out)
        process.standardError = try FileHandle(forWritingTo: err)
        try process.run()
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
        let name = (executable as NSString).lastPathComponent
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
            throw Failure.timedOut(name)
        }
        process.waitUntilExit()
        let result = Result(status: process.terminationStatus,
                            stdout: (try? Data(contentsOf: out)) ?? Data(),
                            stderr: String(decoding: (try? Data(contentsOf: err)) ?? Data(), as: UTF8.self))
        if check && result.status != 0 { throw Failure.failed(name, result.status, result.stderr) }
        return result
    }

    static func ffprobeJSON(_ arguments: [String]) throws -> [String: Any] {
        guard let ffprobe else { throw Failure.failed("ffprobe", -1, "not installed") }
        let r = try run(ffprobe, ["-v", "error", "-of", "json"] + arguments)
        guard let object = try JSONSerialization.jsonObject(with: r.stdout) as? [String: Any] else {
            throw Failure.parse("ffprobe output")
        }
        return object
    }

    static func tempDir() -> URL {
        let url = FileManager.default.temporaryDirectory
            .appendingPathComponent("programoutput-\(UUID().uuidString)", isDirectory: true)
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// Writes `frames` of a 1 kHz sine (left `left`, right `right` peak amplitude) in blocks whose
    /// sizes cycle through `blocks`.
    static func writeSine(to sink: ProgramSink, frames: Int, left: Float = 0.5, right: Float = 0.25,
                          blocks: [Int] = [AudioFormat.blockFrames]) throws
    {
        let maxBlock = blocks.max() ?? AudioFormat.blockFrames
        var buffer = [Float](repeating: 0, count: maxBlock * 2)
        var position = 0
        var which = 0
        let step = 2 * Double.pi * 1000 / Double(AudioFormat.sampleRate)
        while position < frames {
            let n = min(blocks[which % blocks.count], frames - position)
            which += 1
            for i in 0..<n {
                let s = Float(sin(step * Double(position + i)))
                buffer[2 * i] = s * left
                buffer[2 * i + 1] = s * right
            }
            try buffer.withUnsafeBufferPointer { try sink.write($0.baseAddress!, frames: n) }
            position += n
        }
    }

    /// Amplitude of the 1 kHz component of one channel of interleaved stereo (Goertzel over a whole
    /// number of cycles, so a pure tone of peak A reads A).
    static func toneAmplitude(_ samples: [Float], channel: Int, from start: Int, count: Int) -> Double {
        let w = 2 * Double.pi * 1000 / Double(AudioFormat.sampleRate)
        let coefficient = 2 * cos(w)
        var s1 = 0.0, s2 = 0.0
        for i in start..<(start + count) {
            let s0 = Double(samples[2 * i + channel]) + coefficient * s1 - s2
            s2 = s1
            s1 = s0
        }
        let power = s1 * s1 + s2 * s2 - coefficient * s1 * s2
        return 2 * power.squareRoot() / Double(count)
    }

    static func db(_ measured: Double, over expected: Double) -> Double { 20 * log10(measured / expected) }

    /// 16-bit PCM samples and format fields of a RIFF/WAVE file, walking its chunks.
    struct WAV {
        var channels = 0
        var sampleRate = 0
        var bits = 0
        var samples: [Int16] = []
    }

    static func readWAV(_ url: URL) throws -> WAV {
        let data = try Data(contentsOf: url)
        let bytes = [UInt8](data)
        func u32(_ o: Int) -> Int { Int(bytes[o]) | Int(bytes[o + 1]) << 8 | Int(bytes[o + 2]) << 16 | Int(bytes[o + 3]) << 24 }
        func u16(_ o: Int) -> Int { Int(bytes[o]) | Int(bytes[o + 1]) << 8 }
        guard bytes.count >= 12, Array(bytes[0..<4]) == Array("RIFF".utf8), Array(bytes[8..<12]) == Array("WAVE".utf8)
        else { throw Failure.parse("WAV header") }
        var wav = WAV()
        var offset = 12
        while offset + 8 <= bytes.count {
            let id = String(decoding: bytes[offset..<offset + 4], as: UTF8.self)
            let size = u32(offset + 4)
            let body = offset + 8
            guard body + size <= bytes.count else { throw Failure.parse("WAV chunk \(id)") }
            if id == "fmt " {
                wav.channels = u16(body + 2)
                wav.sampleRate = u32(body + 4)
                wav.bits = u16(body + 14)
            } else if id == "data" {
                wav.samples = stride(from: body, to: body + size - 1, by: 2).map { Int16(bitPattern: UInt16(u16($0))) }
            }
            offset = body + size + (size & 1)
        }
        return wav
    }

    static func readFloats(_ url: URL) throws -> [Float] {
        let data = try Data(contentsOf: url)
        return data.withUnsafeBytes { raw in Array(raw.bindMemory(to: Float.self)) }
    }

    /// The first video frame of `file` as RGB24, via the ffmpeg CLI.
    static func firstFrameRGB(_ file: URL, in dir: URL) throws -> (width: Int, height: Int, rgb: [UInt8]) {
        guard let ffmpeg else { throw Failure.failed("ffmpeg", -1, "not installed") }
        let probe = try ffprobeJSON(["-select_streams", "v:0", "-show_entries", "stream=width,height", file.path])
        guard let stream = (probe["streams"] as? [[String: Any]])?.first,
              let w = stream["width"] as? Int, let h = stream["height"] as? Int
        else { throw Failure.parse("video size") }
        let raw = dir.appendingPathComponent("frame-\(UUID().uuidString).rgb")
        try run(ffmpeg, ["-v", "error", "-y", "-i", file.path, "-map", "0:v:0", "-frames:v", "1",
                         "-f", "rawvideo", "-pix_fmt", "rgb24", raw.path])
        let rgb = [UInt8](try Data(contentsOf: raw))
        guard rgb.count == w * h * 3 else { throw Failure.parse("raw frame size \(rgb.count)") }
        return (w, h, rgb)
    }
}
