import COpenSSL
import Foundation
import HTTPClient

/// Failure of a WebSocket connection. Messages never carry the subprotocol (the stage token):
/// every description passes through `Secrets.redact` as well.
public enum WebSocketError: Error, Sendable, Equatable, CustomStringConvertible {
    case invalidURL(String)
    case dns(host: String, detail: String)
    case connectFailed(String)
    /// Connect, TLS, handshake or idle read timeout; says which.
    case timeout(String)
    case tls(String)
    case tlsVerification(String)
    /// The server answered the upgrade with something other than 101.
    case handshakeRejected(status: Int, detail: String)
    /// A 101 that breaks RFC 6455 (bad Sec-WebSocket-Accept, unknown subprotocol, ...).
    case handshakeInvalid(String)
    case protocolViolation(String)
    case messageTooLarge(limit: Int)
    /// The server closed the connection (close frame, or EOF without one: code nil).
    case closed(code: UInt16?, reason: String)
    case connectionLost(String)
    case notConnected

    public var description: String {
        let text: String
        switch self {
        case .invalidURL(let u): text = "invalid WebSocket URL: \(u)"
        case .dns(let h, let d): text = "cannot resolve \(h): \(d)"
        case .connectFailed(let d): text = "WebSocket connect failed: \(d)"
        case .timeout(let what): text = "WebSocket \(what) timed out"
        case .tls(let d): text = "WebSocket TLS handshake failed: \(d)"
        case .tlsVerification(let d): text = "WebSocket TLS certificate verification failed: \(d)"
        case .handshakeRejected(let s, let d): text = "WebSocket upgrade refused with HTTP \(s)" + (d.isEmpty ? "" : ": \(d)")
        case .handshakeInvalid(let d): text = "WebSocket upgrade answer is invalid: \(d)"
        case .protocolViolation(let d): text = "WebSocket protocol violation: \(d)"
        case .messageTooLarge(let l): text = "WebSocket message larger than \(l) bytes"
        case .closed(let c, let r): text = "WebSocket closed by the server" + (c.map { " (code \($0))" } ?? " without a close frame") + (r.isEmpty ? "" : ": \(r)")
        case .connectionLost(let d): text = "WebSocket connection lost: \(d)"
        case .notConnected: text = "WebSocket is not connected"
        }
        return Secrets.redact(text)
    }

    /// Worth reconnecting: everything but a refused token or a bad URL/certificate.
    public var isRetryable: Bool {
        switch self {
        case .invalidURL, .tlsVerification: return false
        case .handshakeRejected(let s, _): return !(s == 401 || s == 403)
        default: return true
        }
    }
}

/// A ws:// or wss:// URL, split without normalisation.
public struct WebSocketURL: Sendable, Equatable {
    public var secure: Bool
    /// Host as written (IPv6 without brackets).
    public var host: String
    public var port: UInt16
    /// Path plus "?query", "/" when empty: the request target.
    public var target: String

    public init(parsing text: String) throws(WebSocketError) {
        guard let sep = text.range(of: "://") else { throw .invalidURL("no scheme in \(Self.clip(text))") }
        let scheme = text[..<sep.lowerBound].lowercased()
        switch scheme {
        case "ws": secure = false
        case "wss": secure = true
        default: throw .invalidURL("scheme \(Self.clip(scheme)) is not ws or wss")
        }
        var rest = text[sep.upperBound...]
        if let hash = rest.firstIndex(of: "#") { rest = rest[..<hash] }
        let end = rest.firstIndex { $0 == "/" || $0 == "?" } ?? rest.endIndex
        var authority = rest[..<end]
        if let at = authority.lastIndex(of: "@") { authority = authority[authority.index(after: at)...] }
        var portText: Substring?
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { throw .invalidURL("unclosed [ in host") }
            host = String(authority[authority.index(after: authority.startIndex)..<close])
            let after = authority[authority.index(after: close)...]
            if after.hasPrefix(":") { portText = after.dropFirst() } else if !after.isEmpty { throw .invalidURL("junk after ]") }
        } else if let colon = authority.lastIndex(of: ":") {
            host = String(authority[..<colon])
            portText = authority[authority.index(after: colon)...]
        } else {
            host = String(authority)
        }
        guard !host.isEmpty, host.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else { throw .invalidURL("empty or invalid host") }
        if let p = portText {
            guard let v = UInt16(p), v > 0 else { throw .invalidURL("port \(Self.clip(String(p))) is not 1-65535") }
            port = v
        } else {
            port = secure ? 443 : 80
        }
        var t = String(rest[end...])
        if t.isEmpty || t.hasPrefix("?") { t = "/" + t }
        guard t.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else { throw .invalidURL("path has spaces or control characters") }
        target = t
    }

    public var isIPLiteral: Bool {
        var v4 = in_addr(), v6 = in6_addr()
        return inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1
    }

    /// The Host header: brackets around IPv6, port when not the default.
    public var hostHeader: String {
        let h = host.contains(":") ? "[\(host)]" : host
        return port == (secure ? 443 : 80) ? h : "\(h):\(port)"
    }

    /// scheme://host[:port]/path without the query: safe for logs.
    public var redacted: String {
        let path = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? "/"
        return "\(secure ? "wss" : "ws")://\(hostHeader)\(path)"
    }

    static func clip(_ s: String) -> String { s.count > 40 ? String(s.prefix(40)) + "…" : s }
}

/// WebSocket opcodes (RFC 6455 section 5.2).
public enum WebSocketOpcode: UInt8, Sendable {
    case continuation = 0, text = 1, binary = 2, close = 8, ping = 9, pong = 10
    var isControl: Bool { rawValue >= 8 }
}

/// One frame as read from the wire (already unmasked, if it was masked).
public struct WebSocketFrame: Sendable, Equatable {
    public var fin: Bool
    public var opcode: WebSocketOpcode
    public var payload: [UInt8]
    public init(fin: Bool, opcode: WebSocketOpcode, payload: [UInt8]) {
        self.fin = fin; self.opcode = opcode; self.payload = payload
    }

    /// Wire bytes of a client frame: always masked with `maskKey` (RFC 6455 5.3).
    public static func encode(_ opcode: WebSocketOpcode, _ payload: [UInt8], fin: Bool = true, maskKey: UInt32) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(payload.count + 14)
        out.append((fin ? 0x80 : 0) | opcode.rawValue)
        let n = payload.count
        if n < 126 {
            out.append(0x80 | UInt8(n))
        } else if n <= 0xFFFF {
            out.append(0x80 | 126)
            out.append(UInt8(n >> 8)); out.append(UInt8(n & 0xFF))
        } else {
            out.append(0x80 | 127)
            for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: UInt64(n) >> UInt64(shift))) }
        }
        let key = [UInt8(maskKey >> 24), UInt8(maskKey >> 16 & 0xFF), UInt8(maskKey >> 8 & 0xFF), UInt8(maskKey & 0xFF)]
        out.append(contentsOf: key)
        for (i, b) in payload.enumerated() { out.append(b ^ key[i & 3]) }
        return out
    }
}

/// Incremental frame reader for server-to-client frames: bytes in, frames out. Never traps on
/// hostile input; a violation is a typed error (after which the connection must be closed).
public struct WebSocketFrameReader: Sendable {
    public let maxFramePayload: Int
    private var buffer: [UInt8] = []
    private var start = 0

    public init(maxFramePayload: Int) { self.maxFramePayload = max(125, maxFramePayload) }

    public mutating func append(_ bytes: UnsafeBufferPointer<UInt8>) {
        compactIfWorthIt()
        buffer.append(contentsOf: bytes)
    }

    public mutating func append(_ bytes: [UInt8]) {
        compactIfWorthIt()
        buffer.append(contentsOf: bytes)
    }

    /// Bytes held but not yet consumed as frames.
    public var pendingBytes: Int { buffer.count - start }

    private mutating func compactIfWorthIt() {
        if start > 0 && (start == buffer.count || start > 65_536) {
            buffer.removeFirst(start)
            start = 0
        }
    }

    /// The next complete frame, nil if more bytes are needed.
    public mutating func next() throws(WebSocketError) -> WebSocketFrame? {
        let avail = buffer.count - start
        guard avail >= 2 else { return nil }
        let b0 = buffer[start], b1 = buffer[start + 1]
        guard b0 & 0x70 == 0 else { throw .protocolViolation("reserved bits set without a negotiated extension") }
        guard let opcode = WebSocketOpcode(rawValue: b0 & 0x0F) else { throw .protocolViolation("unknown opcode \(b0 & 0x0F)") }
        let fin = b0 & 0x80 != 0
        // RFC 6455 5.1: a client must close on a masked server frame.
        guard b1 & 0x80 == 0 else { throw .protocolViolation("server frame is masked") }
        var header = 2
        var length = UInt64(b1 & 0x7F)
        if length == 126 {
            guard avail >= 4 else { return nil }
            length = UInt64(buffer[start + 2]) << 8 | UInt64(buffer[start + 3])
            header = 4
        } else if length == 127 {
            guard avail >= 10 else { return nil }
            length = 0
            for i in 0..<8 { length = length << 8 | UInt64(buffer[start + 2 + i]) }
            guard length >> 63 == 0 else { throw .protocolViolation("64-bit length with the top bit set") }
            header = 10
        }
        if opcode.isControl {
            guard fin else { throw .protocolViolation("fragmented control frame") }
            guard length <= 125 else { throw .protocolViolation("control frame of \(length) bytes (limit 125)") }
        }
        guard length <= UInt64(maxFramePayload) else { throw .messageTooLarge(limit: maxFramePayload) }
        let n = Int(length)
        guard avail - header >= n else { return nil }
        let from = start + header
        let payload = Array(buffer[from..<(from + n)])
        start = from + n
        return WebSocketFrame(fin: fin, opcode: opcode, payload: payload)
    }
}

/// What a reassembled frame sequence means to the client.
public enum WebSocketEvent: Sendable, Equatable {
    case text(String)
    case binary([UInt8])
    case ping([UInt8])
    case pong([UInt8])
    case close(code: UInt16?, reason: String)
}

/// Reassembles fragmented data messages (RFC 6455 5.4) with a size limit; control frames may
/// arrive between fragments.
public struct WebSocketMessageAssembler: Sendable {
    public let maxMessageBytes: Int
    private var partial: [UInt8] = []
    private var partialOpcode: WebSocketOpcode?

    public init(maxMessageBytes: Int) { self.maxMessageBytes = maxMessageBytes }

    /// The event a frame completes, nil while a fragmented message is still open.
    public mutating func feed(_ f: WebSocketFrame) throws(WebSocketError) -> WebSocketEvent? {
        switch f.opcode {
        case .ping: return .ping(f.payload)
        case .pong: return .pong(f.payload)
        case .close:
            if f.payload.isEmpty { return .close(code: nil, reason: "") }
            guard f.payload.count >= 2 else { throw .protocolViolation("close frame with a 1-byte payload") }
            let code = UInt16(f.payload[0]) << 8 | UInt16(f.payload[1])
            guard let reason = String(validating: f.payload[2...], as: UTF8.self) else {
                throw .protocolViolation("close reason is not UTF-8")
            }
            return .close(code: code, reason: reason)
        case .text, .binary:
            guard partialOpcode == nil else { throw .protocolViolation("new data frame inside a fragmented message") }
            if f.fin { return try finish(f.opcode, f.payload) }
            guard f.payload.count <= maxMessageBytes else { throw .messageTooLarge(limit: maxMessageBytes) }
            partialOpcode = f.opcode
            partial = f.payload
            return nil
        case .continuation:
            guard let op = partialOpcode else { throw .protocolViolation("continuation frame without a message") }
            guard partial.count + f.payload.count <= maxMessageBytes else { throw .messageTooLarge(limit: maxMessageBytes) }
            partial.append(contentsOf: f.payload)
            guard f.fin else { return nil }
            let whole = partial
            partial = []
            partialOpcode = nil
            return try finish(op, whole)
        }
    }

    private func finish(_ op: WebSocketOpcode, _ payload: [UInt8]) throws(WebSocketError) -> WebSocketEvent {
        guard payload.count <= maxMessageBytes else { throw .messageTooLarge(limit: maxMessageBytes) }
        if op == .binary { return .binary(payload) }
        guard let s = String(validating: payload, as: UTF8.self) else { throw .protocolViolation("text message is not UTF-8") }
        return .text(s)
    }
}

/// The HTTP/1.1 upgrade (RFC 6455 section 4): request text and answer checks.
public enum WebSocketHandshake {
    static let guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    /// A fresh Sec-WebSocket-Key: 16 random bytes, base64.
    public static func makeKey() -> String {
        var g = SystemRandomNumberGenerator()
        return Data((0..<16).map { _ in UInt8.random(in: 0...255, using: &g) }).base64EncodedString()
    }

    /// The Sec-WebSocket-Accept a server must return for `key`.
    public static func accept(for key: String) -> String {
        let input = Array((key + guid).utf8)
        var md = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var len: UInt32 = 0
        _ = EVP_Digest(input, input.count, &md, &len, EVP_sha1(), nil)
        return Data(md.prefix(Int(len))).base64EncodedString()
    }

    public static func request(_ url: WebSocketURL, key: String, subprotocol: String?, userAgent: String) -> String {
        var lines = [
            "GET \(url.target) HTTP/1.1",
            "Host: \(url.hostHeader)",
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Key: \(key)",
            "Sec-WebSocket-Version: 13",
            "User-Agent: \(userAgent)",
        ]
        if let p = subprotocol { lines.append("Sec-WebSocket-Protocol: \(p)") }
        return lines.joined(separator: "\r\n") + "\r\n\r\n"
    }

    /// Parsed status line and headers (names lowercased) of an HTTP response head.
    public struct ResponseHead: Sendable, Equatable {
        public var status: Int
        public var headers: [String: String]
    }

    public static func parseHead(_ bytes: ArraySlice<UInt8>) throws(WebSocketError) -> ResponseHead {
        let text = String(decoding: bytes, as: UTF8.self)
        var lines = text.components(separatedBy: "\r\n")
        guard !lines.isEmpty else { throw .handshakeInvalid("empty response") }
        let status = lines.removeFirst().split(separator: " ", maxSplits: 2, omittingEmptySubsequences: true)
        guard status.count >= 2, status[0].hasPrefix("HTTP/1."), let code = Int(status[1]), (100...599).contains(code) else {
            throw .handshakeInvalid("not an HTTP/1.1 status line")
        }
        var headers: [String: String] = [:]
        for line in lines where !line.isEmpty {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = line[..<colon].trimmingCharacters(in: .whitespaces).lowercased()
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            headers[name] = headers[name].map { "\($0), \(value)" } ?? value
        }
        return ResponseHead(status: code, headers: headers)
    }

    /// Checks a 101 answer: Upgrade, Connection, Accept, and that any chosen subprotocol was ours.
    public static func validate(_ head: ResponseHead, key: String, subprotocol: String?) throws(WebSocketError) {
        guard head.status == 101 else { throw .handshakeRejected(status: head.status, detail: "") }
        guard head.headers["upgrade"]?.lowercased() == "websocket" else { throw .handshakeInvalid("Upgrade header is not websocket") }
        guard let conn = head.headers["connection"]?.lowercased(),
              conn.split(separator: ",").contains(where: { $0.trimmingCharacters(in: .whitespaces) == "upgrade" }) else {
            throw .handshakeInvalid("Connection header lacks Upgrade")
        }
        guard head.headers["sec-websocket-accept"] == accept(for: key) else { throw .handshakeInvalid("Sec-WebSocket-Accept does not match the key") }
        if let chosen = head.headers["sec-websocket-protocol"], chosen != subprotocol {
            // Never echo the value: it could be (a mangled) token.
            throw .handshakeInvalid("server chose a subprotocol we did not offer")
        }
        if let ext = head.headers["sec-websocket-extensions"], !ext.isEmpty {
            throw .handshakeInvalid("server enabled extensions we did not offer")
        }
    }
}
