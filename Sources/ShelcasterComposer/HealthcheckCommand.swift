import ArgumentParser
import Foundation

/// The container health check: the image needs no curl. Exit 0 when /healthz answers 200.
struct HealthcheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "healthcheck",
        abstract: "Exit 0 when the local worker's /healthz answers OK (the container health check)."
    )

    @Option(help: "The health port (default: HEALTH_PORT, else 8080).")
    var port: UInt16?

    @Option(help: "Seconds to wait for an answer.")
    var timeout: Int = 3

    func run() throws {
        let p = port ?? ProcessInfo.processInfo.environment["HEALTH_PORT"].flatMap(UInt16.init) ?? 8080
        let status = HealthProbe.get(port: p, path: "/healthz", timeoutSeconds: max(1, timeout))
        guard status == 200 else {
            throw CommandFailure(message: status.map { "/healthz answered \($0)" } ?? "nothing answers on 127.0.0.1:\(p)", code: 1)
        }
    }
}

enum HealthProbe {
    /// The HTTP status of GET `path` on 127.0.0.1:`port`, or nil when nothing answers in time.
    static func get(port: UInt16, path: String, timeoutSeconds: Int) -> Int? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = port.bigEndian
        let connected = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard connected == 0 else { return nil }
        let request = Array("GET \(path) HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".utf8)
        guard request.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == request.count else { return nil }
        var buffer = [UInt8](repeating: 0, count: 256)
        let n = recv(fd, &buffer, buffer.count, 0)
        guard n > 12 else { return nil }
        // "HTTP/1.1 200 OK"
        let line = String(decoding: buffer[0..<n], as: UTF8.self)
        return line.split(separator: " ").dropFirst().first.flatMap { Int($0) }
    }
}
