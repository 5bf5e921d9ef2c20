import DynamoDB
import Foundation
import ShowControl
#if canImport(Glibc)
import Glibc
#endif

/// What the worker's own process costs: resident memory and CPU share between two samples.
public struct ProcessUsage: Sendable {
    private var lastCPU: Double
    private var lastWall: UInt64

    public init() {
        lastCPU = Self.cpuSeconds()
        lastWall = Self.monotonicNs()
    }

    /// VmRSS of /proc/self/status in MiB (0 where /proc is missing).
    public static func rssMb() -> Double {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
        for line in text.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            let digits = line.dropFirst(6).split(whereSeparator: { $0 == " " || $0 == "\t" }).first.flatMap { Double($0) }
            return (digits ?? 0) / 1024
        }
        return 0
    }

    /// User + system CPU seconds of the whole process so far.
    public static func cpuSeconds() -> Double {
        var u = rusage()
        guard getrusage(RUSAGE_SELF.rawValue, &u) == 0 else { return 0 }
        return Double(u.ru_utime.tv_sec) + Double(u.ru_utime.tv_usec) / 1e6
            + Double(u.ru_stime.tv_sec) + Double(u.ru_stime.tv_usec) / 1e6
    }

    static func monotonicNs() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }

    /// CPU time used since the previous call as a percentage of one core (may exceed 100).
    public mutating func cpuPercent() -> Double {
        let cpu = Self.cpuSeconds(), wall = Self.monotonicNs()
        defer { lastCPU = cpu; lastWall = wall }
        let dt = Double(wall &- lastWall) / 1e9
        guard dt > 0.001 else { return 0 }
        return max(0, (cpu - lastCPU) / dt * 100)
    }
}

/// The heartbeat's `metrics` map (DATA-MODEL.md).
public enum HeartbeatMetrics {
    /// Levels are clamped to this floor: DynamoDB has no -infinity.
    public static let levelFloor = -120.0

    public static func item(status: ShowStatus?, uptimeSeconds: Double, rssMb: Double, cpuPercent: Double,
                            routingPollErrors: Int, heartbeatErrors: Int) -> AttributeValue {
        func num(_ v: Double, places: Double = 10) -> AttributeValue {
            .number(v.isFinite ? (v * places).rounded() / places : 0)
        }
        func level(_ v: Double) -> AttributeValue { num(v.isFinite ? max(levelFloor, v) : levelFloor) }
        var levels: [String: AttributeValue] = [:]
        for v in status?.voices ?? [] { levels[v.participantId] = level(v.levelDbfs) }
        var track: [String: AttributeValue] = [:]
        if let t = status?.currentTrack {
            track = ["index": .number(t.index), "title": .s(t.title), "positionMs": .number(t.positionMs)]
        }
        let m: [String: AttributeValue] = [
            "participants": .number(status?.voices.count ?? 0),
            "onAir": .number(status?.onAirCount ?? 0),
            "outputState": .s((status?.outputState ?? .connecting).rawValue),
            "outputDownSeconds": num(status?.outputDownSeconds ?? 0),
            "outputKbps": num(status?.outputKbps ?? 0),
            "masterLevelDbfs": level(status?.masterLevelDbfs ?? levelFloor),
            "clipping": .bool(status?.clipping ?? false),
            "levels": .m(levels),
            // An empty map rather than NULL when nothing plays: readers can look up fields safely.
            "currentTrack": .m(track),
            "uptimeSeconds": num(uptimeSeconds),
            "rssMb": num(rssMb),
            "cpuPercent": num(cpuPercent),
            // Not in DATA-MODEL.md's list; extra fields are harmless to readers and tell an
            // operator how the worker's own DynamoDB traffic fares.
            "routingPollErrors": .number(routingPollErrors),
            "heartbeatErrors": .number(heartbeatErrors),
        ]
        return .m(m)
    }
}
