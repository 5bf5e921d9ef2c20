import Foundation
import CCurl

/// libcurl's global state, set up once per process before the first handle (thread-safe lazy global).
private let curlGlobalInit: CURLcode = curl_global_init(ccurl_global_default())

/// Synchronous HTTP/1.1 client over libcurl easy handles. Thread-safe: each call runs on its
/// own handle, taken from a small pool so connections (and TLS sessions) are reused between calls.
///
/// Always sets connect and total timeouts; never follows redirects unless the request asks;
/// only http and https. Error messages carry scheme://host[:port]/path only.
public final class HTTPClient: @unchecked Sendable {
    public static let shared = HTTPClient()

    /// Extra CA bundle (PEM) used instead of the system's for https.
    public let caFile: String?
    public let userAgent: String

    private let lock = NSLock()
    private var idle: [UnsafeMutableRawPointer] = []
    private let maxIdle = 8

    public init(caFile: String? = nil, userAgent: String = "shelcaster-composer/1.0") {
        self.caFile = caFile
        self.userAgent = userAgent
    }

    deinit {
        for h in idle { curl_easy_cleanup(h) }
    }

    /// Sends the request and returns whatever response arrived (any status).
    public func send(_ request: HTTPRequest) throws(HTTPError) -> HTTPResponse {
        try perform(request, download: nil)
    }

    /// Like `send`, but a 2xx body is streamed into `path` (written to `path.part`, renamed when
    /// complete, so `path` never holds a partial file). More than `maxBytes` fails with
    /// `.responseTooLarge` and leaves no file. A non-2xx body stays in memory for error decoding.
    public func download(_ request: HTTPRequest, toFile path: String, maxBytes: Int) throws(HTTPError) -> HTTPResponse {
        try perform(request, download: (path, max(0, maxBytes)))
    }

    // MARK: - handle pool

    private func takeHandle() -> UnsafeMutableRawPointer? {
        lock.lock()
        let h = idle.popLast()
        lock.unlock()
        return h ?? curl_easy_init()
    }

    private func returnHandle(_ h: UnsafeMutableRawPointer) {
        // Drop this call's callbacks, buffers and header list; live connections stay cached.
        curl_easy_reset(h)
        lock.lock()
        if idle.count < maxIdle {
            idle.append(h)
            lock.unlock()
        } else {
            lock.unlock()
            curl_easy_cleanup(h)
        }
    }

    // MARK: - transfer

    private func perform(_ request: HTTPRequest, download: (path: String, maxBytes: Int)?) throws(HTTPError) -> HTTPResponse {
        _ = curlGlobalInit
        guard let url = HTTPURL(request.url) else {
            throw HTTPError(kind: .invalidRequest, target: "(unparsable URL)", detail: "not an absolute http(s) URL")
        }
        let target = url.redacted
        func fail(_ kind: HTTPError.Kind, _ detail: String, code: Int? = nil) -> HTTPError {
            HTTPError(kind: kind, target: target, detail: detail, curlCode: code)
        }
        let method = request.method.uppercased()
        guard !method.isEmpty, method.utf8.allSatisfy({ (0x41...0x5A).contains($0) }) else {
            throw fail(.invalidRequest, "bad method")
        }
        for h in request.headers {
            guard !h.name.isEmpty, !h.name.contains(where: { $0 == ":" || $0.isNewline || $0 == " " }),
                  !h.value.contains(where: \.isNewline) else {
                throw fail(.invalidRequest, "header \(h.name.prefix(40)) has an invalid name or value")
            }
        }
        guard let handle = takeHandle() else { throw fail(.other, "curl_easy_init failed") }
        defer { returnHandle(handle) }
        curl_easy_reset(handle)

        var list: UnsafeMutablePointer<curl_slist>?
        defer { curl_slist_free_all(list) }
        for h in request.headers {
            // "Name;" is curl's way to send a header with an empty value.
            let line = h.value.isEmpty ? "\(h.name);" : "\(h.name): \(h.value)"
            list = curl_slist_append(list, line)
        }
        // Without this curl waits up to a second for "100 Continue" on larger bodies.
        if !request.headers.contains("Expect") { list = curl_slist_append(list, "Expect:") }

        let transfer = Transfer(memoryLimit: download == nil ? request.maxResponseBytes : 1 << 20,
                                filePath: download.map { $0.path + ".part" }, fileLimit: download?.maxBytes ?? 0)
        var errbuf = [CChar](repeating: 0, count: Int(ccurl_error_size()) + 1)
        // POSTFIELDS must never be NULL for a POST (curl would read stdin instead).
        let bodyBytes = request.body.isEmpty ? [UInt8(0)] : request.body

        let timeoutMs = max(1, Int(request.timeout * 1000))
        let connectMs = max(1, min(timeoutMs, Int(request.connectTimeout * 1000)))

        var rc = CURLE_OK
        var setupError: CURLcode = CURLE_OK
        func set(_ r: CURLcode) { if r != CURLE_OK && setupError == CURLE_OK { setupError = r } }

        let ctx = Unmanaged.passUnretained(transfer).toOpaque()
        withExtendedLifetime(transfer) {
            bodyBytes.withUnsafeBufferPointer { bodyPtr in
                errbuf.withUnsafeMutableBufferPointer { errPtr in
                    set(ccurl_setopt_str(handle, CURLOPT_URL, request.url))
                    set(ccurl_setopt_long(handle, CURLOPT_NOSIGNAL, 1))
                    set(ccurl_setopt_str(handle, CURLOPT_PROTOCOLS_STR, "http,https"))
                    set(ccurl_setopt_str(handle, CURLOPT_REDIR_PROTOCOLS_STR, "http,https"))
                    set(ccurl_setopt_long(handle, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_1_1))
                    set(ccurl_setopt_long(handle, CURLOPT_CONNECTTIMEOUT_MS, connectMs))
                    set(ccurl_setopt_long(handle, CURLOPT_TIMEOUT_MS, timeoutMs))
                    set(ccurl_setopt_long(handle, CURLOPT_FOLLOWLOCATION, request.followRedirects ? 1 : 0))
                    set(ccurl_setopt_long(handle, CURLOPT_MAXREDIRS, 5))
                    set(ccurl_setopt_long(handle, CURLOPT_TCP_KEEPALIVE, 1))
                    set(ccurl_setopt_long(handle, CURLOPT_SSL_VERIFYPEER, 1))
                    set(ccurl_setopt_long(handle, CURLOPT_SSL_VERIFYHOST, 2))
                    if let caFile { set(ccurl_setopt_str(handle, CURLOPT_CAINFO, caFile)) }
                    if !request.headers.contains("User-Agent") {
                        set(ccurl_setopt_str(handle, CURLOPT_USERAGENT, userAgent))
                    }
                    set(ccurl_setopt_slist(handle, CURLOPT_HTTPHEADER, list))
                    set(ccurl_setopt_ptr(handle, CURLOPT_ERRORBUFFER, errPtr.baseAddress))
                    set(ccurl_setopt_data_callback(handle, CURLOPT_HEADERFUNCTION, transferHeaderCallback))
                    set(ccurl_setopt_ptr(handle, CURLOPT_HEADERDATA, ctx))
                    set(ccurl_setopt_data_callback(handle, CURLOPT_WRITEFUNCTION, transferWriteCallback))
                    set(ccurl_setopt_ptr(handle, CURLOPT_WRITEDATA, ctx))
                    if let download, download.maxBytes > 0 {
                        set(ccurl_setopt_off(handle, CURLOPT_MAXFILESIZE_LARGE, curl_off_t(download.maxBytes)))
                    }
                    switch method {
                    case "GET" where request.body.isEmpty:
                        set(ccurl_setopt_long(handle, CURLOPT_HTTPGET, 1))
                    case "HEAD":
                        set(ccurl_setopt_long(handle, CURLOPT_NOBODY, 1))
                    case "DELETE" where request.body.isEmpty, "OPTIONS" where request.body.isEmpty:
                        set(ccurl_setopt_str(handle, CURLOPT_CUSTOMREQUEST, method))
                    default:
                        set(ccurl_setopt_long(handle, CURLOPT_POST, 1))
                        set(ccurl_setopt_off(handle, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(request.body.count)))
                        set(ccurl_setopt_ptr(handle, CURLOPT_POSTFIELDS,
                                             UnsafeMutableRawPointer(mutating: bodyPtr.baseAddress)))
                        if method != "POST" { set(ccurl_setopt_str(handle, CURLOPT_CUSTOMREQUEST, method)) }
                    }
                    if setupError == CURLE_OK { rc = curl_easy_perform(handle) }
                }
            }
        }
        transfer.closeFile()

        if setupError != CURLE_OK {
            transfer.removePartial()
            throw fail(.invalidRequest, "libcurl rejected an option (\(String(cString: curl_easy_strerror(setupError))))",
                       code: Int(setupError.rawValue))
        }
        if rc != CURLE_OK {
            transfer.removePartial()
            if transfer.overflow {
                throw fail(.responseTooLarge, "body over \(download?.maxBytes ?? request.maxResponseBytes) bytes",
                           code: Int(rc.rawValue))
            }
            if transfer.fileErrno != 0 {
                throw fail(.file, "\(download?.path ?? ""): \(String(cString: strerror(transfer.fileErrno)))",
                           code: Int(rc.rawValue))
            }
            var osErrno = 0
            _ = ccurl_getinfo_long(handle, CURLINFO_OS_ERRNO, &osErrno)
            let kind = HTTPError.kind(forCurlCode: Int(rc.rawValue), osErrno: osErrno)
            let text = String(decoding: errbuf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            let detail = Self.sanitize(text.isEmpty ? String(cString: curl_easy_strerror(rc)) : text, url: request.url)
            throw fail(kind, detail, code: Int(rc.rawValue))
        }

        var status = 0
        _ = ccurl_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status)
        if status == 0 { status = transfer.status }
        var response = HTTPResponse(status: status, headers: transfer.headers, body: transfer.body)
        if let download, (200..<300).contains(status) {
            do {
                try transfer.finishFile(to: download.path)
            } catch {
                transfer.removePartial()
                throw fail(.file, "\(download.path): \(String(cString: strerror(error.code)))")
            }
            response.body = []
            response.downloadedBytes = transfer.fileBytes
        }
        return response
    }

    /// curl's messages can quote the URL; keep only what is safe to show.
    static func sanitize(_ text: String, url: String) -> String {
        var t = text.trimmingCharacters(in: .whitespacesAndNewlines)
        if let q = url.firstIndex(of: "?") {
            let query = String(url[url.index(after: q)...])
            if !query.isEmpty { t = t.replacingOccurrences(of: query, with: "…") }
        }
        if t.count > 300 { t = String(t.prefix(300)) + "…" }
        return t
    }
}

struct FileErrno: Error { let code: Int32 }

/// Per-call state reached from curl's callbacks.
final class Transfer {
    var status = 0
    var headers = HTTPHeaders()
    var body: [UInt8] = []
    let memoryLimit: Int
    var overflow = false
    var headerBytes = 0

    let filePath: String?
    let fileLimit: Int
    var fd: Int32 = -1
    var fileBytes = 0
    var fileErrno: Int32 = 0

    init(memoryLimit: Int, filePath: String?, fileLimit: Int) {
        self.memoryLimit = memoryLimit
        self.filePath = filePath
        self.fileLimit = fileLimit
    }

    var toFile: Bool { filePath != nil && (200..<300).contains(status) }

    func header(_ line: UnsafeBufferPointer<UInt8>) -> Bool {
        headerBytes &+= line.count
        if headerBytes > 256 << 10 { overflow = true; return false }
        // Bytes, not Characters: "\r\n" is one grapheme in Swift.
        var end = line.count
        while end > 0, line[end - 1] == 0x0A || line[end - 1] == 0x0D { end -= 1 }
        let text = String(decoding: UnsafeBufferPointer(rebasing: line[0..<end]), as: UTF8.self)
        if text.hasPrefix("HTTP/") {
            // A new status line: interim (1xx) or redirect responses before it are discarded.
            let parts = text.split(separator: " ", maxSplits: 2)
            status = parts.count > 1 ? Int(parts[1]) ?? 0 : 0
            headers = HTTPHeaders()
            body.removeAll(keepingCapacity: true)
            return true
        }
        if text.isEmpty { return true }
        if let first = text.first, first == " " || first == "\t" {
            // obs-fold continuation of the previous header.
            if var last = headers.entries.last {
                last.value += " " + text.trimmingCharacters(in: .whitespaces)
                var all = headers.entries
                all[all.count - 1] = last
                headers = HTTPHeaders(all.map { ($0.name, $0.value) })
            }
            return true
        }
        guard let colon = text.firstIndex(of: ":") else { return true }
        let name = String(text[..<colon]).trimmingCharacters(in: .whitespaces)
        let value = String(text[text.index(after: colon)...]).trimmingCharacters(in: .whitespaces)
        headers.add(name, value)
        return true
    }

    func write(_ data: UnsafeBufferPointer<UInt8>) -> Bool {
        if toFile, let filePath {
            if fileLimit > 0, fileBytes &+ data.count > fileLimit { overflow = true; return false }
            if fd < 0 {
                fd = open(filePath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
                if fd < 0 { fileErrno = errno; return false }
            }
            var offset = 0
            while offset < data.count {
                guard let base = data.baseAddress else { break }
                let n = Foundation.write(fd, base + offset, data.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    fileErrno = errno
                    return false
                }
                offset += n
            }
            fileBytes += data.count
            return true
        }
        if body.count &+ data.count > memoryLimit { overflow = true; return false }
        body.append(contentsOf: data)
        return true
    }

    func closeFile() {
        if fd >= 0 { close(fd); fd = -1 }
    }

    func finishFile(to path: String) throws(FileErrno) {
        guard let filePath else { return }
        if fileBytes == 0 {
            // Empty object: no write callback ran, so create the file now.
            let f = open(filePath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            if f < 0 { throw FileErrno(code: errno) }
            close(f)
        }
        if rename(filePath, path) != 0 { throw FileErrno(code: errno) }
    }

    func removePartial() {
        closeFile()
        if let filePath { unlink(filePath) }
    }
}

private let transferHeaderCallback: ccurl_data_callback = { data, size, count, ctx in
    guard let ctx, let data else { return 0 }
    let (n, o) = size.multipliedReportingOverflow(by: count)
    if o { return 0 }
    let t = Unmanaged<Transfer>.fromOpaque(ctx).takeUnretainedValue()
    let ok = data.withMemoryRebound(to: UInt8.self, capacity: n) { t.header(UnsafeBufferPointer(start: $0, count: n)) }
    return ok ? n : 0
}

private let transferWriteCallback: ccurl_data_callback = { data, size, count, ctx in
    guard let ctx, let data else { return 0 }
    let (n, o) = size.multipliedReportingOverflow(by: count)
    if o { return 0 }
    let t = Unmanaged<Transfer>.fromOpaque(ctx).takeUnretainedValue()
    let ok = data.withMemoryRebound(to: UInt8.self, capacity: n) { t.write(UnsafeBufferPointer(start: $0, count: n)) }
    return ok ? n : 0
}
