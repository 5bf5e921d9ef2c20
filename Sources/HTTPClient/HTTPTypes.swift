/// One header line. Names keep the caller's spelling; lookups ignore case.
public struct HTTPHeader: Sendable, Equatable {
    public var name: String
    public var value: String
    public init(_ name: String, _ value: String) {
        self.name = name
        self.value = value
    }
}

/// Ordered header list with case-insensitive lookup (repeated names are kept, in order).
public struct HTTPHeaders: Sendable, Equatable, Sequence, ExpressibleByDictionaryLiteral {
    public private(set) var entries: [HTTPHeader] = []

    public init() {}
    public init(_ pairs: [(String, String)]) {
        entries = pairs.map { HTTPHeader($0.0, $0.1) }
    }
    public init(dictionaryLiteral elements: (String, String)...) {
        entries = elements.map { HTTPHeader($0.0, $0.1) }
    }

    /// First value for `name` (case-insensitive). Setting replaces every line of that name; nil removes.
    public subscript(name: String) -> String? {
        get { entries.first { Self.same($0.name, name) }?.value }
        set {
            if let newValue {
                if let i = entries.firstIndex(where: { Self.same($0.name, name) }) {
                    entries[i].value = newValue
                    var j = entries.count - 1
                    while j > i {
                        if Self.same(entries[j].name, name) { entries.remove(at: j) }
                        j -= 1
                    }
                } else {
                    entries.append(HTTPHeader(name, newValue))
                }
            } else {
                remove(name)
            }
        }
    }

    public func values(for name: String) -> [String] {
        entries.filter { Self.same($0.name, name) }.map(\.value)
    }

    public func contains(_ name: String) -> Bool {
        entries.contains { Self.same($0.name, name) }
    }

    /// Appends a line even if the name is already present.
    public mutating func add(_ name: String, _ value: String) {
        entries.append(HTTPHeader(name, value))
    }

    public mutating func remove(_ name: String) {
        entries.removeAll { Self.same($0.name, name) }
    }

    public var count: Int { entries.count }
    public var isEmpty: Bool { entries.isEmpty }

    public func makeIterator() -> IndexingIterator<[HTTPHeader]> { entries.makeIterator() }

    static func same(_ a: String, _ b: String) -> Bool {
        a.utf8.count == b.utf8.count && a.lowercased() == b.lowercased()
    }
}

public struct HTTPRequest: Sendable {
    public var method: String
    /// Absolute http(s) URL, already percent-encoded as it goes on the wire.
    public var url: String
    public var headers: HTTPHeaders
    public var body: [UInt8]
    /// Total time for the whole exchange, seconds.
    public var timeout: Double
    /// Time allowed to establish the connection (TCP + TLS), seconds; capped by `timeout`.
    public var connectTimeout: Double
    /// Redirects are returned to the caller unless this is set (then at most 5 are followed).
    public var followRedirects: Bool
    /// Largest response body kept in memory; a bigger one fails with `.responseTooLarge`.
    public var maxResponseBytes: Int

    public init(method: String = "GET", url: String, headers: HTTPHeaders = [:], body: [UInt8] = [],
                timeout: Double = 30, connectTimeout: Double = 5, followRedirects: Bool = false,
                maxResponseBytes: Int = 32 << 20) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.timeout = timeout
        self.connectTimeout = connectTimeout
        self.followRedirects = followRedirects
        self.maxResponseBytes = maxResponseBytes
    }
}

public struct HTTPResponse: Sendable {
    public var status: Int
    /// Headers of the final response (those of interim 1xx or followed 3xx responses are dropped).
    public var headers: HTTPHeaders
    /// The body; for a download with a 2xx status it is empty and the bytes are in the file.
    public var body: [UInt8]
    /// Bytes written to the file of a download (nil for an in-memory request or a non-2xx download).
    public var downloadedBytes: Int?

    public init(status: Int, headers: HTTPHeaders = [:], body: [UInt8] = [], downloadedBytes: Int? = nil) {
        self.status = status
        self.headers = headers
        self.body = body
        self.downloadedBytes = downloadedBytes
    }

    public var isSuccess: Bool { (200..<300).contains(status) }
    /// Body as UTF-8 text (invalid sequences replaced).
    public var bodyText: String { String(decoding: body, as: UTF8.self) }
}

/// The parts of an absolute URL this package needs, split without any normalisation
/// (Foundation's URL would re-encode the path, which breaks request signing).
public struct HTTPURL: Sendable, Equatable {
    public var scheme: String
    public var host: String
    public var port: Int?
    /// Path as written, "/" when empty.
    public var path: String
    /// Text after '?', without the '#fragment'; nil when there is no '?'.
    public var query: String?

    public init?(_ text: String) {
        guard let sep = text.range(of: "://") else { return nil }
        let scheme = text[..<sep.lowerBound].lowercased()
        guard scheme == "http" || scheme == "https" else { return nil }
        var rest = text[sep.upperBound...]
        if let hash = rest.firstIndex(of: "#") { rest = rest[..<hash] }
        let authorityEnd = rest.firstIndex { $0 == "/" || $0 == "?" } ?? rest.endIndex
        var authority = rest[..<authorityEnd]
        let tail = rest[authorityEnd...]
        if let at = authority.lastIndex(of: "@") { authority = authority[authority.index(after: at)...] }
        var host = Substring(authority)
        var port: Int?
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { return nil }
            host = authority[...close]
            let after = authority[authority.index(after: close)...]
            if after.hasPrefix(":") {
                guard let p = Int(after.dropFirst()), (1...65535).contains(p) else { return nil }
                port = p
            } else if !after.isEmpty {
                return nil
            }
        } else if let colon = authority.lastIndex(of: ":") {
            host = authority[..<colon]
            guard let p = Int(authority[authority.index(after: colon)...]), (1...65535).contains(p) else { return nil }
            port = p
        }
        guard !host.isEmpty else { return nil }
        self.scheme = scheme
        self.host = host.lowercased()
        self.port = port
        if let q = tail.firstIndex(of: "?") {
            let p = tail[..<q]
            path = p.isEmpty ? "/" : String(p)
            query = String(tail[tail.index(after: q)...])
        } else {
            path = tail.isEmpty ? "/" : String(tail)
            query = nil
        }
    }

    /// Port when it differs from the scheme's default.
    public var nonDefaultPort: Int? {
        guard let port else { return nil }
        if (scheme == "http" && port == 80) || (scheme == "https" && port == 443) { return nil }
        return port
    }

    /// The Host header value: host plus the port when it is not the default.
    public var hostHeader: String {
        if let p = nonDefaultPort { return "\(host):\(p)" }
        return host
    }

    /// scheme://host[:port]/path with no query and no credentials: safe for messages.
    public var redacted: String {
        let p = port.map { ":\($0)" } ?? ""
        return "\(scheme)://\(host)\(p)\(path)"
    }
}
