import Foundation
import ShowControl

/// /status: what the studio UI shows, as JSON.
enum StatusJSON {
    static func render(_ s: ShowStatus?) -> String {
        guard let s else { return #"{"state":"starting"}"# + "\n" }
        var obj: [String: Any] = [
            "programSeconds": round3(s.programSeconds), "uptimeSeconds": round3(s.uptimeSeconds),
            "participants": s.voices.count, "onAir": s.onAirCount,
            "masterLevelDbfs": round1(s.masterLevelDbfs), "clipping": s.clipping,
            "output": ["state": s.outputState.rawValue, "downSeconds": round1(s.outputDownSeconds), "kbps": round1(s.outputKbps)],
            "voices": s.voices.map { v -> [String: Any] in
                var d: [String: Any] = ["participantId": v.participantId, "role": v.role.rawValue, "onAir": v.onAir,
                                        "levelDbfs": round1(v.levelDbfs), "packets": v.packets, "lost": v.lost,
                                        "concealedMs": round1(v.concealedMs), "jitterTargetMs": round1(v.jitterTargetMs)]
                if let u = v.userId { d["userId"] = u }
                return d
            },
        ]
        if let t = s.currentTrack { obj["currentTrack"] = ["index": t.index, "title": t.title, "positionMs": t.positionMs] }
        guard let data = try? JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys]) else { return "{}\n" }
        return String(decoding: data, as: UTF8.self) + "\n"
    }
    static func round1(_ v: Double) -> Double { (v * 10).rounded() / 10 }
    static func round3(_ v: Double) -> Double { (v * 1000).rounded() / 1000 }
}

/// /metrics in the Prometheus text format.
enum PrometheusText {
    static func render(_ s: ShowStatus?, extra: [String: Double]) -> String {
        var out = ""
        func gauge(_ name: String, _ help: String, _ value: Double, labels: String = "") {
            out += "# HELP shelcaster_\(name) \(help)\n# TYPE shelcaster_\(name) gauge\n"
            out += "shelcaster_\(name)\(labels) \(format(value))\n"
        }
        if let s {
            gauge("program_seconds", "Program time mixed so far.", s.programSeconds)
            gauge("uptime_seconds", "Seconds since the worker started.", s.uptimeSeconds)
            gauge("participants", "Voices in the mix.", Double(s.voices.count))
            gauge("on_air", "Voices on air.", Double(s.onAirCount))
            gauge("master_level_dbfs", "Short-term program level.", s.masterLevelDbfs)
            gauge("output_connected", "1 when the ingest connection is up.", s.outputState == .connected ? 1 : 0)
            gauge("output_down_seconds", "Length of the current output outage.", s.outputDownSeconds)
            gauge("output_kbps", "Output bit rate.", s.outputKbps)
            if !s.voices.isEmpty {
                out += "# HELP shelcaster_voice_level_dbfs Short-term level per participant.\n# TYPE shelcaster_voice_level_dbfs gauge\n"
                for v in s.voices { out += "shelcaster_voice_level_dbfs{participant=\"\(escape(v.participantId))\"} \(format(v.levelDbfs))\n" }
                out += "# HELP shelcaster_voice_packets_lost Packets lost per participant.\n# TYPE shelcaster_voice_packets_lost counter\n"
                for v in s.voices { out += "shelcaster_voice_packets_lost{participant=\"\(escape(v.participantId))\"} \(v.lost)\n" }
            }
        }
        for (name, value) in extra.sorted(by: { $0.key < $1.key }) {
            out += "# TYPE shelcaster_\(name) gauge\nshelcaster_\(name) \(format(value))\n"
        }
        return out
    }
    static func format(_ v: Double) -> String { v.isFinite ? String(v) : (v > 0 ? "+Inf" : v < 0 ? "-Inf" : "NaN") }
    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"").replacingOccurrences(of: "\n", with: "\\n")
    }
}
