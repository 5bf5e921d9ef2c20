import AudioCore
import Foundation
@testable import ProgramOutput

/// Helpers for the reconnecting-output tests: a real-time paced program writer, clocks, RSS,
/// ffprobe packet lists.
enum ReconnectTest {
    static func nowNs() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }

    static func seconds(since ns: Int64) -> Double { Double(nowNs() - ns) / 1e9 }

    static func sleep(until ns: Int64) {
        let left = ns - nowNs()
        if left > 0 { Thread.sleep(forTimeInterval: Double(left) / 1e9) }
    }

    /// Resident set size of this process in kB (/proc/self/status VmRSS), and its anonymous part
    /// (RssAnon: heap and stacks, where a leak shows; the rest is mostly library code paged in).
    static func memoryKB() -> (rss: Int, anon: Int) {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return (-1, -1) }
        func field(_ name: String) -> Int {
            for line in text.split(separator: "\n") where line.hasPrefix(name + ":") {
                return Int(line.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().first ?? "") ?? -1
            }
            return -1
        }
        return (field("VmRSS"), field("RssAnon"))
    }

    static func openFileDescriptors() -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? -1
    }

    static func fileSize(_ path: String) -> Int64 {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.int64Value ?? -1
    }

    struct Packet {
        var audio: Bool
        var dts: Double
        var key: Bool
    }

    /// Every packet of `path` in file order (ffprobe), with its stream type, dts in seconds and key flag.
    static func packets(_ path: String) throws -> [Packet] {
        let json = try POTest.ffprobeJSON(["-show_entries", "packet=codec_type,dts_time,flags", path])
        return (json["packets"] as? [[String: Any]] ?? []).compactMap { p in
            guard let type = p["codec_type"] as? String, let dts = Double(p["dts_time"] as? String ?? "") else { return nil }
            return Packet(audio: type == "audio", dts: dts, key: (p["flags"] as? String ?? "").hasPrefix("K"))
        }
    }

    /// Largest step between consecutive dts of one stream, and whether every step is positive.
    static func steps(_ packets: [Packet], audio: Bool) -> (monotonic: Bool, largestGap: Double) {
        let dts = packets.filter { $0.audio == audio }.map(\.dts)
        var monotonic = true
        var largest = 0.0
        for (a, b) in zip(dts, dts.dropFirst()) {
            if b <= a { monotonic = false }
            largest = max(largest, b - a)
        }
        return (monotonic, largest)
    }
}

/// Writes a 1 kHz tone (left 0.5, right 0.25 peak, continuous phase) to a sink from its own thread,
/// 20 ms blocks paced to the wall clock like the mix loop, and times every `write` call.
final class PacedProgramWriter: @unchecked Sendable {
    private let sink: ProgramSink
    private let blocks: Int
    private let lock = NSCondition()
    private var maxWriteNs: Int64 = 0
    private var slowWrites = 0
    private var written = 0
    private var failure: Error?
    private var done = false
    private(set) var startNs: Int64 = 0

    init(sink: ProgramSink, seconds: Double) {
        self.sink = sink
        blocks = Int(seconds * 50)
    }

    func start() {
        startNs = ReconnectTest.nowNs()
        let thread = Thread { [self] in run() }
        thread.name = "test-mix"
        thread.start()
    }

    private func run() {
        let n = AudioFormat.mixBlockFrames
        var buffer = [Float](repeating: 0, count: n * 2)
        let step = 2 * Double.pi * 1000 / Double(AudioFormat.sampleRate)
        var position = 0
        for k in 0..<blocks {
            ReconnectTest.sleep(until: startNs + Int64(k) * 20_000_000)
            for i in 0..<n {
                let s = Float(sin(step * Double((position + i) % 48_000)))
                buffer[2 * i] = s * 0.5
                buffer[2 * i + 1] = s * 0.25
            }
            position += n
            let t0 = ReconnectTest.nowNs()
            do {
                try buffer.withUnsafeBufferPointer { try sink.write($0.baseAddress!, frames: n) }
            } catch {
                lock.lock(); failure = error; lock.unlock()
                break
            }
            let dt = ReconnectTest.nowNs() - t0
            lock.lock()
            maxWriteNs = max(maxWriteNs, dt)
            if dt > 2_000_000 { slowWrites += 1 }
            written += n
            lock.unlock()
        }
        lock.lock()
        done = true
        lock.broadcast()
        lock.unlock()
    }

    /// Waits for the last block (bounded); returns false on timeout.
    func wait(timeout: TimeInterval) -> Bool {
        let deadline = Date(timeIntervalSinceNow: timeout)
        lock.lock()
        defer { lock.unlock() }
        while !done && Date() < deadline { _ = lock.wait(until: deadline) }
        return done
    }

    var report: (maxWriteMs: Double, slowWrites: Int, framesWritten: Int, error: Error?) {
        lock.lock()
        defer { lock.unlock() }
        return (Double(maxWriteNs) / 1e6, slowWrites, written, failure)
    }
}
