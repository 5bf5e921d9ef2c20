import Foundation
import HTTPClient
#if canImport(Glibc)
import Glibc
#endif

/// A request as the stub server saw it.
struct HTTPStubRequest: Sendable {
    var method: String
    /// Path plus query, exactly as sent.
    var target: String
    var headers: HTTPHeaders
    var body: [UInt8]

    var path: String { String(target.split(separator: "?", maxSplits: 1).first ?? "") }
    var query: String? {
        let parts = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        return parts.count > 1 ? String(parts[1]) : nil
    }
    var bodyText: String { String(decoding: body, as: UTF8.self) }
}

struct HTTPStubResponse: Sendable {
    var status: Int
    var headers: [(String, String)] = []
    var body: [UInt8] = []
    /// Seconds to wait before answering (timeout tests); bounded by the server.
    var delay: Double = 0

    static func json(_ status: Int, _ text: String, headers: [(String, String)] = []) -> HTTPStubResponse {
        HTTPStubResponse(status: status, headers: [("Content-Type", "application/json")] + headers, body: Array(text.utf8))
    }
    static func text(_ status: Int, _ text: String, headers: [(String, String)] = []) -> HTTPStubResponse {
        HTTPStubResponse(status: status, headers: headers, body: Array(text.utf8))
    }
}

/// Minimal HTTP/1.1 server on 127.0.0.1 (ephemeral port) for tests: one connection at a time,
/// "Connection: close" on every answer, requests recorded. A TLS ClientHello gets a plain-text
/// answer, which a TLS client reports as a handshake failure.
final class HTTPStubServer: @unchecked Sendable {
    let port: Int
    private let listenFD: Int32
    private let handler: @Sendable (HTTPStubRequest, Int) -> HTTPStubResponse
    private let lock = NSLock()
    private var recorded: [HTTPStubRequest] = []
    private var stopping = false
    private let finished = DispatchSemaphore(value: 0)

    var baseURL: String { "http://127.0.0.1:\(port)" }

    init(handler: @escaping @Sendable (HTTPStubRequest, Int) -> HTTPStubResponse) throws {
        self.handler = handler
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw HTTPStubError("socket() failed") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = 0
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 16) == 0 else { close(fd); throw HTTPStubError("bind/listen failed") }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        port = Int(UInt16(bigEndian: addr.sin_port))
        listenFD = fd
        let t = Thread { [self] in self.run() }
        t.start()
    }

    deinit {
        stop()
    }

    var requests: [HTTPStubRequest] {
        lock.lock()
        defer { lock.unlock() }
        return recorded
    }
    var hits: Int { requests.count }

    func stop() {
        lock.lock()
        let already = stopping
        stopping = true
        lock.unlock()
        if already { return }
        _ = finished.wait(timeout: .now() + 10)
        close(listenFD)
    }

    private var isStopping: Bool {
        lock.lock()
        defer { lock.unlock() }
        return stopping
    }

    private func run() {
        while !isStopping {
            var p = pollfd(fd: listenFD, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 50) > 0 else { continue }
            let conn = accept(listenFD, nil, nil)
            if conn < 0 { continue }
            serve(conn)
            close(conn)
        }
        finished.signal()
    }

    private func serve(_ conn: Int32) {
        var tv = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var buffer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        var headerEnd: Int?
        while headerEnd == nil, buffer.count < 1 << 20 {
            let n = recv(conn, &chunk, chunk.count, 0)
            if n <= 0 { return }
            buffer += chunk[0..<n]
            if buffer.first == 0x16 {
                // TLS ClientHello on a plain port.
                sendAll(conn, Array("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n".utf8))
                return
            }
            headerEnd = find(buffer, Array("\r\n\r\n".utf8))
        }
        guard let headerEnd else { return }
        let head = String(decoding: buffer[0..<headerEnd], as: UTF8.self)
        var lines = head.components(separatedBy: "\r\n")
        let requestLine = lines.removeFirst().split(separator: " ")
        guard requestLine.count >= 2 else { return }
        var headers = HTTPHeaders()
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers.add(String(line[..<colon]), line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces))
        }
        var body = Array(buffer[(headerEnd + 4)...])
        let length = Int(headers["Content-Length"] ?? "0") ?? 0
        while body.count < length {
            let n = recv(conn, &chunk, min(chunk.count, length - body.count), 0)
            if n <= 0 { break }
            body += chunk[0..<n]
        }
        let request = HTTPStubRequest(method: String(requestLine[0]), target: String(requestLine[1]), headers: headers, body: body)
        lock.lock()
        let index = recorded.count
        recorded.append(request)
        lock.unlock()
        let response = handler(request, index)
        if response.delay > 0 { Thread.sleep(forTimeInterval: min(response.delay, 10)) }
        var out = "HTTP/1.1 \(response.status) Stub\r\nContent-Length: \(response.body.count)\r\nConnection: close\r\n"
        for (k, v) in response.headers { out += "\(k): \(v)\r\n" }
        out += "\r\n"
        sendAll(conn, Array(out.utf8) + response.body)
    }

    private func sendAll(_ conn: Int32, _ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes[offset...].withUnsafeBytes { send(conn, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            offset += n
        }
    }

    private func find(_ haystack: [UInt8], _ needle: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        for i in 0...(haystack.count - needle.count) where haystack[i] == needle[0] {
            if Array(haystack[i..<(i + needle.count)]) == needle { return i }
        }
        return nil
    }
}

struct HTTPStubError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

enum HTTPTestKit {
    /// A loopback port with nothing listening (bound, read, closed).
    static func closedPort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        _ = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    static func temporaryDirectory() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("awstest-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }
}
