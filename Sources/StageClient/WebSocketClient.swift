import COpenSSL
import Foundation
import HTTPClient

/// RFC 6455 client over a blocking TCP socket (TLS through OpenSSL for wss://, the server
/// certificate and host name verified). Text messages are delivered on the client's own reader
/// thread; `send` may be called from any thread.
///
/// The subprotocol (the stage token) goes only into the upgrade request; it is never logged and
/// never appears in an error.
public final class WebSocketClient: @unchecked Sendable {
    public struct Options: Sendable {
        public var connectTimeout: Double = 5
        /// TLS handshake plus the HTTP upgrade.
        public var handshakeTimeout: Double = 5
        /// Nothing received for this long ends the connection with `.timeout`; 0 = never.
        public var readTimeout: Double = 20
        public var maxMessageBytes: Int = 1 << 20
        /// PEM bundle to trust instead of the system store (wss:// only).
        public var caFile: String?
        public var subprotocol: SecretString?
        public var userAgent = "shelcaster-composer/1.0"
        public init() {}
    }

    public let url: WebSocketURL
    public let options: Options

    private let lock = NSLock()
    private var stream: ByteStream?
    private var closeSent = false
    private var stopRequested = false
    private var finished = false
    private let done = DispatchSemaphore(value: 0)

    public init(url: String, options: Options = Options()) throws(WebSocketError) {
        self.url = try WebSocketURL(parsing: url)
        self.options = options
    }

    /// Connects, upgrades, then starts the reader thread. `onClose` is called exactly once, on the
    /// reader thread, when the connection ends: nil after our own `close()`, else the cause.
    public func connect(onMessage: @escaping @Sendable (String) -> Void,
                        onClose: @escaping @Sendable (WebSocketError?) -> Void) throws(WebSocketError) {
        IgnoreSIGPIPE.once()
        let fd = try TCPConnector.connect(host: url.host, port: url.port, timeout: options.connectTimeout)
        let s: ByteStream
        do {
            s = url.secure ? try TLSStream(fd: fd, url: url, caFile: options.caFile, timeout: options.handshakeTimeout)
                           : PlainStream(fd: fd)
        } catch {
            Glibc.close(fd)
            throw error
        }
        var reader = WebSocketFrameReader(maxFramePayload: options.maxMessageBytes)
        do {
            try upgrade(s, into: &reader)
        } catch {
            s.shutdown(); s.release()
            throw error
        }
        lock.lock()
        stream = s
        lock.unlock()
        let initial = reader
        let t = Thread { [self] in self.readLoop(s, reader: initial, onMessage: onMessage, onClose: onClose) }
        t.name = "websocket-reader"
        t.start()
    }

    public func send(text: String) throws(WebSocketError) {
        try sendFrame(.text, Array(text.utf8))
    }

    /// Sends a close frame, waits (bounded) for the server's, then drops the connection.
    public func close(code: UInt16 = 1000, reason: String = "", wait: Double = 2) {
        lock.lock()
        let s = stream
        let over = finished
        let already = closeSent
        closeSent = true
        lock.unlock()
        // Already ended (possibly from inside onClose on the reader thread): nothing to wait for.
        guard let s, !over else { return }
        if !already { try? sendFrame(.close, Self.closePayload(code, reason)) }
        if done.wait(timeout: .now() + wait) == .timedOut {
            lock.lock(); stopRequested = true; lock.unlock()
            s.shutdown()
            _ = done.wait(timeout: .now() + 2)
        } else {
            done.signal()  // keep it signalled for other waiters
        }
    }

    public var isOpen: Bool {
        lock.lock(); defer { lock.unlock() }
        return stream != nil && !finished && !closeSent
    }

    // MARK: - internals

    private func sendFrame(_ op: WebSocketOpcode, _ payload: [UInt8]) throws(WebSocketError) {
        lock.lock()
        let s = stream
        let over = finished
        lock.unlock()
        guard let s, !over else { throw .notConnected }
        var g = SystemRandomNumberGenerator()
        try s.write(WebSocketFrame.encode(op, payload, maskKey: UInt32.random(in: 0...UInt32.max, using: &g)))
    }

    private static func closePayload(_ code: UInt16, _ reason: String) -> [UInt8] {
        [UInt8(code >> 8), UInt8(code & 0xFF)] + Array(reason.utf8.prefix(120))
    }

    /// Sends the upgrade and reads the answer head; bytes after it are the first frames.
    private func upgrade(_ s: ByteStream, into reader: inout WebSocketFrameReader) throws(WebSocketError) {
        let key = WebSocketHandshake.makeKey()
        let proto = options.subprotocol?.revealed
        try s.write(Array(WebSocketHandshake.request(url, key: key, subprotocol: proto, userAgent: options.userAgent).utf8))
        let deadline = Date().addingTimeInterval(options.handshakeTimeout)
        var got: [UInt8] = []
        let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 1)
        defer { chunk.deallocate() }
        var headEnd: Int?
        while headEnd == nil {
            let left = deadline.timeIntervalSinceNow
            guard left > 0 else { throw .timeout("upgrade answer") }
            let n = try s.read(into: chunk, timeoutMs: Int32(min(250, max(1, left * 1000))))
            if n == 0 { continue }
            got.append(contentsOf: chunk[0..<n])
            headEnd = Self.find(got, [13, 10, 13, 10])
            if headEnd == nil && got.count > 16_384 { throw .handshakeInvalid("response head larger than 16 KiB") }
        }
        guard let end = headEnd else { throw .handshakeInvalid("no response head") }
        let head = try WebSocketHandshake.parseHead(got[..<end])
        if head.status != 101 {
            // Keep a bounded piece of the body for the message (e.g. the stage's reason for a 401).
            var body = Array(got[(end + 4)...])
            let want = min(1024, Int(head.headers["content-length"] ?? "") ?? 1024)
            let bodyDeadline = Date().addingTimeInterval(0.5)
            while body.count < want && bodyDeadline.timeIntervalSinceNow > 0 {
                guard let n = try? s.read(into: chunk, timeoutMs: 100) else { break }
                body.append(contentsOf: chunk[0..<n])
            }
            let text = String(decoding: body.prefix(want), as: UTF8.self)
                .trimmingCharacters(in: .whitespacesAndNewlines)
                .replacingOccurrences(of: "\n", with: " ")
            throw .handshakeRejected(status: head.status, detail: Secrets.redact(String(text.prefix(200))))
        }
        try WebSocketHandshake.validate(head, key: key, subprotocol: proto)
        if got.count > end + 4 { reader.append(Array(got[(end + 4)...])) }
    }

    private static func find(_ hay: [UInt8], _ needle: [UInt8]) -> Int? {
        guard hay.count >= needle.count else { return nil }
        for i in 0...(hay.count - needle.count) where hay[i] == needle[0] {
            if Array(hay[i..<(i + needle.count)]) == needle { return i }
        }
        return nil
    }

    private func readLoop(_ s: ByteStream, reader initial: WebSocketFrameReader,
                          onMessage: @Sendable (String) -> Void, onClose: @Sendable (WebSocketError?) -> Void) {
        var reader = initial
        var assembler = WebSocketMessageAssembler(maxMessageBytes: options.maxMessageBytes)
        let buf = UnsafeMutableRawBufferPointer.allocate(byteCount: 16_384, alignment: 1)
        defer { buf.deallocate() }
        var lastRx = Date()
        var outcome: WebSocketError?
        loop: while true {
            lock.lock()
            let stop = stopRequested
            lock.unlock()
            if stop { break }
            do throws(WebSocketError) {
                // Frames already buffered (e.g. right after the upgrade) first.
                while let frame = try reader.next() {
                    guard let event = try assembler.feed(frame) else { continue }
                    switch event {
                    case .text(let t): onMessage(t)
                    case .binary: break  // the events protocol is JSON text only
                    case .ping(let p): try? sendFrame(.pong, p)
                    case .pong: break
                    case .close(let code, let reason):
                        lock.lock()
                        let ours = closeSent
                        closeSent = true
                        lock.unlock()
                        if !ours { try? sendFrame(.close, code.map { Self.closePayload($0, "") } ?? []) }
                        outcome = ours ? nil : .closed(code: code, reason: Secrets.redact(String(reason.prefix(120))))
                        break loop
                    }
                }
                let n = try s.read(into: buf, timeoutMs: 250)
                if n == 0 {
                    if options.readTimeout > 0 && -lastRx.timeIntervalSinceNow > options.readTimeout {
                        throw WebSocketError.timeout("read (nothing received for \(Int(options.readTimeout)) s)")
                    }
                    continue
                }
                lastRx = Date()
                reader.append(UnsafeBufferPointer(start: buf.baseAddress?.assumingMemoryBound(to: UInt8.self), count: n))
            } catch {
                lock.lock()
                let ours = closeSent
                lock.unlock()
                switch error {
                case .protocolViolation: try? sendFrame(.close, Self.closePayload(1002, ""))
                case .messageTooLarge: try? sendFrame(.close, Self.closePayload(1009, ""))
                default: break
                }
                // EOF after our own close frame is the normal end.
                if case .closed = error, ours { outcome = nil } else { outcome = error }
                break loop
            }
        }
        lock.lock()
        finished = true
        lock.unlock()
        s.shutdown()
        s.release()
        onClose(outcome)
        done.signal()
    }
}

// MARK: - byte streams

/// A connected byte stream: plain TCP, or TLS over it.
protocol ByteStream: AnyObject, Sendable {
    /// Waits up to `timeoutMs` for bytes; 0 when none came. Throws on EOF (`.closed(nil)`) or error.
    func read(into buf: UnsafeMutableRawBufferPointer, timeoutMs: Int32) throws(WebSocketError) -> Int
    /// Writes everything (bounded by the socket's send timeout).
    func write(_ bytes: [UInt8]) throws(WebSocketError)
    /// Makes a blocked read return; safe from any thread, idempotent.
    func shutdown()
    /// Frees the socket (and TLS state). Only once no read can be running.
    func release()
}

enum IgnoreSIGPIPE {
    /// A peer that vanishes mid-write must give EPIPE, not kill the process (OpenSSL writes with write(2)).
    private static let done: Bool = { signal(SIGPIPE, SIG_IGN); return true }()
    static func once() { _ = done }
}

private func errnoText(_ e: Int32 = errno) -> String { String(cString: strerror(e)) }

private func setTimeout(_ fd: Int32, _ option: Int32, seconds: Double) {
    var tv = timeval(tv_sec: Int(seconds), tv_usec: Int((seconds - Double(Int(seconds))) * 1_000_000))
    _ = setsockopt(fd, SOL_SOCKET, option, &tv, socklen_t(MemoryLayout<timeval>.size))
}

/// Waits for the fd to be readable; false on timeout.
private func pollReadable(_ fd: Int32, _ timeoutMs: Int32) -> Bool {
    var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
    return poll(&p, 1, timeoutMs) > 0
}

enum TCPConnector {
    static func connect(host: String, port: UInt16, timeout: Double) throws(WebSocketError) -> Int32 {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var res: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, String(port), &hints, &res)
        guard rc == 0, let first = res else { throw .dns(host: host, detail: String(cString: gai_strerror(rc))) }
        defer { freeaddrinfo(first) }
        let deadline = Date().addingTimeInterval(timeout)
        var last: WebSocketError = .connectFailed("no address for \(host)")
        var p: UnsafeMutablePointer<addrinfo>? = first
        while let ai = p {
            p = ai.pointee.ai_next
            let fd = socket(ai.pointee.ai_family, ai.pointee.ai_socktype, ai.pointee.ai_protocol)
            guard fd >= 0 else { last = .connectFailed(errnoText()); continue }
            let flags = fcntl(fd, F_GETFL, 0)
            _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
            var ok = Glibc.connect(fd, ai.pointee.ai_addr, ai.pointee.ai_addrlen) == 0
            if !ok && errno == EINPROGRESS {
                let ms = Int32(max(1, min(Double(Int32.max), deadline.timeIntervalSinceNow * 1000)))
                var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                let r = poll(&pfd, 1, ms)
                if r == 0 {
                    last = .timeout("connect to \(host):\(port)")
                } else {
                    var err: Int32 = 0
                    var len = socklen_t(MemoryLayout<Int32>.size)
                    _ = getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len)
                    if err == 0 { ok = true } else {
                        last = .connectFailed("\(host):\(port): \(errnoText(err))")
                    }
                }
            } else if !ok {
                last = .connectFailed("\(host):\(port): \(errnoText())")
            }
            if ok {
                _ = fcntl(fd, F_SETFL, flags)
                var one: Int32 = 1
                _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
                setTimeout(fd, SO_SNDTIMEO, seconds: 5)
                return fd
            }
            Glibc.close(fd)
            if deadline.timeIntervalSinceNow <= 0 { break }
        }
        throw last
    }
}

final class PlainStream: ByteStream, @unchecked Sendable {
    private let fd: Int32
    private let lock = NSLock()
    private var released = false

    init(fd: Int32) { self.fd = fd }

    func read(into buf: UnsafeMutableRawBufferPointer, timeoutMs: Int32) throws(WebSocketError) -> Int {
        guard pollReadable(fd, timeoutMs) else { return 0 }
        let n = recv(fd, buf.baseAddress, buf.count, 0)
        if n > 0 { return n }
        if n == 0 { throw .closed(code: nil, reason: "") }
        if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { return 0 }
        throw .connectionLost(errnoText())
    }

    func write(_ bytes: [UInt8]) throws(WebSocketError) {
        lock.lock()
        defer { lock.unlock() }
        guard !released else { throw .notConnected }
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + off, bytes.count - off, Int32(MSG_NOSIGNAL)) }
            if n > 0 { off += n; continue }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { throw .timeout("write") }
            throw .connectionLost(errnoText())
        }
    }

    func shutdown() { _ = Glibc.shutdown(fd, Int32(SHUT_RDWR)) }

    func release() {
        lock.lock()
        defer { lock.unlock() }
        guard !released else { return }
        released = true
        Glibc.close(fd)
    }
}

/// TLS 1.2+ client over an fd. OpenSSL's SSL object is not safe for concurrent use, so reads and
/// writes take one lock; a read holds it for at most the socket's 1 s receive timeout.
final class TLSStream: ByteStream, @unchecked Sendable {
    private let fd: Int32
    private var ctx: OpaquePointer?
    private var ssl: OpaquePointer?
    private let lock = NSLock()
    private var released = false

    init(fd: Int32, url: WebSocketURL, caFile: String?, timeout: Double) throws(WebSocketError) {
        self.fd = fd
        guard let method = TLS_client_method(), let c = SSL_CTX_new(method) else { throw .tls("cannot create a TLS context") }
        ctx = c
        _ = SSL_CTX_ctrl(c, SSL_CTRL_SET_MIN_PROTO_VERSION, Int(TLS1_2_VERSION), nil)
        SSL_CTX_set_verify(c, SSL_VERIFY_PEER, nil)
        if let caFile {
            guard SSL_CTX_load_verify_locations(c, caFile, nil) == 1 else {
                let why = TLSStream.openSSLError()
                SSL_CTX_free(c); ctx = nil
                throw .tlsVerification("CA file \(caFile) is unusable: \(why)")
            }
        } else {
            _ = SSL_CTX_set_default_verify_paths(c)
        }
        guard let s = SSL_new(c) else { SSL_CTX_free(c); ctx = nil; throw .tls("cannot create a TLS session") }
        ssl = s
        if url.isIPLiteral {
            _ = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s), url.host)
        } else {
            _ = SSL_set1_host(s, url.host)
            // SNI (SSL_set_tlsext_host_name is a macro over SSL_ctrl).
            _ = url.host.withCString { SSL_ctrl(s, SSL_CTRL_SET_TLSEXT_HOSTNAME, Int(TLSEXT_NAMETYPE_host_name), UnsafeMutableRawPointer(mutating: $0)) }
        }
        _ = SSL_set_fd(s, fd)
        setTimeout(fd, SO_RCVTIMEO, seconds: timeout)
        setTimeout(fd, SO_SNDTIMEO, seconds: timeout)
        ERR_clear_error()
        let r = SSL_connect(s)
        if r != 1 {
            let verify = SSL_get_verify_result(s)
            let err = SSL_get_error(s, r)
            let savedErrno = errno
            let why = TLSStream.openSSLError()
            SSL_free(s); ssl = nil
            SSL_CTX_free(c); ctx = nil
            if verify != Int(X509_V_OK) {
                throw .tlsVerification(String(cString: X509_verify_cert_error_string(verify)))
            }
            if err == SSL_ERROR_SYSCALL && (savedErrno == EAGAIN || savedErrno == EWOULDBLOCK) { throw .timeout("TLS handshake") }
            if err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE { throw .timeout("TLS handshake") }
            throw .tls(why.isEmpty ? "handshake error \(err)" : why)
        }
        // After the handshake: short receive timeout so a read never holds the lock for long.
        setTimeout(fd, SO_RCVTIMEO, seconds: 1)
        setTimeout(fd, SO_SNDTIMEO, seconds: 5)
    }

    deinit { release() }

    static func openSSLError() -> String {
        let code = ERR_get_error()
        guard code != 0 else { return "" }
        var buffer = [CChar](repeating: 0, count: 256)
        buffer.withUnsafeMutableBufferPointer { ERR_error_string_n(code, $0.baseAddress, $0.count) }
        ERR_clear_error()
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    func read(into buf: UnsafeMutableRawBufferPointer, timeoutMs: Int32) throws(WebSocketError) -> Int {
        lock.lock()
        let pending = ssl.map { SSL_pending($0) } ?? 0
        lock.unlock()
        if pending <= 0 && !pollReadable(fd, timeoutMs) { return 0 }
        lock.lock()
        defer { lock.unlock() }
        guard let s = ssl, !released else { throw .notConnected }
        ERR_clear_error()
        let n = SSL_read(s, buf.baseAddress, Int32(min(buf.count, Int(Int32.max))))
        if n > 0 { return Int(n) }
        let err = SSL_get_error(s, n)
        switch err {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE: return 0
        case SSL_ERROR_ZERO_RETURN: throw .closed(code: nil, reason: "")
        case SSL_ERROR_SYSCALL:
            if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { return 0 }
            if n == 0 { throw .closed(code: nil, reason: "") }
            throw .connectionLost(errnoText())
        default:
            throw .connectionLost(TLSStream.openSSLError())
        }
    }

    func write(_ bytes: [UInt8]) throws(WebSocketError) {
        lock.lock()
        defer { lock.unlock() }
        guard let s = ssl, !released else { throw .notConnected }
        var off = 0
        while off < bytes.count {
            ERR_clear_error()
            let n = bytes.withUnsafeBytes { SSL_write(s, $0.baseAddress! + off, Int32(bytes.count - off)) }
            if n > 0 { off += Int(n); continue }
            let err = SSL_get_error(s, n)
            if err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ { throw .timeout("write") }
            throw .connectionLost(err == SSL_ERROR_SYSCALL ? errnoText() : TLSStream.openSSLError())
        }
    }

    func shutdown() { _ = Glibc.shutdown(fd, Int32(SHUT_RDWR)) }

    func release() {
        lock.lock()
        defer { lock.unlock() }
        guard !released else { return }
        released = true
        if let s = ssl { SSL_free(s) }
        if let c = ctx { SSL_CTX_free(c) }
        ssl = nil; ctx = nil
        Glibc.close(fd)
    }
}
