import Foundation
import Testing
import Logging
@testable import HealthServer
import ShowControl
import Routing
@testable import WorkerLogging
import Redaction

private func get(_ port: UInt16, _ path: String) throws -> (Int, String) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = port.bigEndian
    let r = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    guard r == 0 else { throw PeerError("connect failed") }
    var tv = timeval(tv_sec: 3, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    let req = Array("GET \(path) HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
    _ = req.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
    var data = [UInt8](), buf = [UInt8](repeating: 0, count: 4096)
    while true { let n = recv(fd, &buf, buf.count, 0); if n <= 0 { break }; data += buf[0..<n] }
    let text = String(decoding: data, as: UTF8.self)
    let status = Int(text.split(separator: " ").dropFirst().first ?? "") ?? 0
    let body = text.components(separatedBy: "\r\n\r\n").dropFirst().joined(separator: "\r\n\r\n")
    return (status, body)
}

@Suite(.serialized) struct HealthServerTests {
    @Test func endpointsReflectTheWorkerState() throws {
        let state = HealthState()
        let server = try HealthServer(host: "127.0.0.1", port: 0, state: state, logger: Logger(label: "t"))
        server.start()
        defer { server.stop() }
        #expect(try get(server.port, "/healthz").0 == 503, "no mix block yet")
        #expect(try get(server.port, "/readyz").0 == 503)
        state.mixAdvanced()
        #expect(try get(server.port, "/healthz").0 == 200)
        state.setStageJoined(true); state.setOutputConnected(true)
        #expect(try get(server.port, "/readyz").0 == 200)
        // Stalled for more than 2 s: not live.
        #expect(!state.isLive(now: HealthState.nowNs() + 2_500_000_000))
        state.publish(ShowStatus(programSeconds: 12, uptimeSeconds: 13,
                                 voices: [VoiceStatus(participantId: "host", userId: "u\"1", role: .host, onAir: true, levelDbfs: -18.04,
                                                      packets: 600, lost: 2, concealedMs: 40, jitterTargetMs: 60)],
                                 masterLevelDbfs: -20, clipping: false, currentTrack: nil, outputState: .connected,
                                 outputDownSeconds: 0, outputKbps: 180))
        let (code, body) = try get(server.port, "/status")
        #expect(code == 200)
        let obj = try #require(try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any])
        #expect(obj["onAir"] as? Int == 1 && obj["participants"] as? Int == 1)
        #expect(((obj["voices"] as? [[String: Any]])?.first?["levelDbfs"] as? Double) == -18)
        let metrics = try get(server.port, "/metrics").1
        #expect(metrics.contains("shelcaster_on_air 1.0"))
        #expect(metrics.contains(#"shelcaster_voice_level_dbfs{participant="host"} -18.04"#))
        #expect(try get(server.port, "/nope").0 == 404)
    }

    @Test func aBusyPortIsAClearError() throws {
        let first = try HealthServer(host: "127.0.0.1", port: 0, state: HealthState(), logger: Logger(label: "t"))
        defer { first.stop() }
        #expect(throws: HealthServerError.self) { try HealthServer(host: "127.0.0.1", port: first.port, state: HealthState(), logger: Logger(label: "t")) }
    }
}

@Suite struct WorkerLoggingTests {
    @Test func jsonLinesCarryLevelServiceAndMetadata() throws {
        let line = LineLogHandler.render(level: .warning, message: "poll failed", metadata: ["service": "routing", "showId": "s1", "errors": .stringConvertible(3)],
                                         label: "x", format: .json, time: Date(timeIntervalSince1970: 0))
        let obj = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(obj["level"] as? String == "warning" && obj["service"] as? String == "routing" && obj["showId"] as? String == "s1")
        #expect(obj["message"] as? String == "poll failed" && obj["errors"] as? String == "3")
        #expect(!line.contains("\n"))
    }

    @Test func registeredSecretsNeverReachALine() {
        Secrets.register("sk_us-west-2_SECRETSTREAMKEY")
        let text = LineLogHandler.render(level: .error, message: "publish to rtmps://x/app/sk_us-west-2_SECRETSTREAMKEY failed", metadata: [:],
                                         label: "x", format: .text, time: Date())
        #expect(Secrets.redact(text).contains("SECRETSTREAMKEY") == false)
    }
}
