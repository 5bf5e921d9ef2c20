import Foundation
import HTTPClient

/// Failure of a subscribe or unsubscribe exchange. Bodies are clipped and redacted.
public enum WHIPError: Error, Sendable, Equatable, CustomStringConvertible {
    case transport(HTTPError)
    /// Any status we do not accept (4xx, 5xx, unexpected 1xx-3xx).
    case status(Int, detail: String)
    case redirectWithoutLocation(Int)
    case tooManyRedirects(Int)
    /// A redirect to plain http from https (the token would travel in the clear) or to another scheme.
    case unsafeRedirect(String)
    /// 201 without an SDP body.
    case emptyAnswer
    case invalidURL(String)

    public var description: String {
        let text: String
        switch self {
        case .transport(let e): text = "\(e)"
        case .status(let s, let d): text = "HTTP \(s)" + (d.isEmpty ? "" : ": \(d)")
        case .redirectWithoutLocation(let s): text = "HTTP \(s) redirect without a Location"
        case .tooManyRedirects(let n): text = "more than \(n) redirects"
        case .unsafeRedirect(let why): text = "refused redirect: \(why)"
        case .emptyAnswer: text = "201 without an SDP answer"
        case .invalidURL(let u): text = "invalid URL \(u)"
        }
        return Secrets.redact(text)
    }

    /// Short stable name for log-once keys and counters.
    public var cause: String {
        switch self {
        case .transport(let e): "transport (\(e.kind))"
        case .status(let s, _): "HTTP \(s)"
        case .redirectWithoutLocation: "redirect without Location"
        case .tooManyRedirects: "redirect loop"
        case .unsafeRedirect: "unsafe redirect"
        case .emptyAnswer: "empty answer"
        case .invalidURL: "invalid URL"
        }
    }
}

/// A subscription the stage accepted.
public struct WHIPSubscription: Sendable, Equatable {
    public var participantId: String
    /// The SDP answer.
    public var answer: String
    /// Absolute URL to DELETE when done (nil when the server gave none).
    public var location: String?
    /// Redirects followed to get here.
    public var redirects: Int
}

/// `POST {whip}/subscribe/{participantId}` with the SDP offer and the Bearer token; 307/308 are
/// followed by hand so the Authorization header goes along again (bounded hops, never from
/// https down to http); `DELETE` of the returned Location ends it.
public final class WHIPSubscriber: Sendable {
    public let whipURL: String
    private let token: SecretString
    private let http: HTTPClient
    public let maxRedirects: Int
    public let timeout: Double

    public init(whipURL: String, token: SecretString, http: HTTPClient = .shared, maxRedirects: Int = 5, timeout: Double = 10) {
        var w = whipURL
        while w.hasSuffix("/") { w.removeLast() }
        self.whipURL = w
        self.token = token
        self.http = http
        self.maxRedirects = maxRedirects
        self.timeout = timeout
    }

    public func subscribeURL(_ participantId: String) -> String {
        let allowed = CharacterSet.alphanumerics.union(CharacterSet(charactersIn: "-._~:@!$&'()*+,;="))
        return "\(whipURL)/subscribe/\(participantId.addingPercentEncoding(withAllowedCharacters: allowed) ?? participantId)"
    }

    public func subscribe(participantId: String, offer: String) throws(WHIPError) -> WHIPSubscription {
        var url = subscribeURL(participantId)
        var hops = 0
        while true {
            guard HTTPURL(url) != nil else { throw .invalidURL(HTTPURL(url)?.redacted ?? "(unparsable)") }
            let request = HTTPRequest(method: "POST", url: url,
                                      headers: ["Authorization": "Bearer \(token.revealed)", "Content-Type": "application/sdp",
                                                "Accept": "application/sdp"],
                                      body: Array(offer.utf8), timeout: timeout, connectTimeout: min(5, timeout),
                                      followRedirects: false, maxResponseBytes: 256 << 10)
            let response: HTTPResponse
            do { response = try http.send(request) } catch { throw .transport(error) }
            switch response.status {
            case 200, 201:
                let answer = response.bodyText
                guard !answer.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else { throw .emptyAnswer }
                let location = try response.headers["Location"].map { (l) throws(WHIPError) -> String in try Self.resolve(l, against: url) }
                return WHIPSubscription(participantId: participantId, answer: answer, location: location, redirects: hops)
            case 307, 308:
                guard let l = response.headers["Location"], !l.isEmpty else { throw .redirectWithoutLocation(response.status) }
                hops += 1
                guard hops <= maxRedirects else { throw .tooManyRedirects(maxRedirects) }
                url = try Self.resolve(l, against: url)
            default:
                throw .status(response.status, detail: Self.snippet(response))
            }
        }
    }

    /// Ends a subscription. 2xx, and 404 (already gone), are success.
    public func unsubscribe(location: String) throws(WHIPError) {
        let request = HTTPRequest(method: "DELETE", url: location, headers: ["Authorization": "Bearer \(token.revealed)"],
                                  timeout: min(5, timeout), connectTimeout: min(3, timeout), followRedirects: false,
                                  maxResponseBytes: 64 << 10)
        let response: HTTPResponse
        do { response = try http.send(request) } catch { throw .transport(error) }
        guard response.isSuccess || response.status == 404 else { throw .status(response.status, detail: Self.snippet(response)) }
    }

    static func snippet(_ r: HTTPResponse) -> String {
        let t = r.bodyText.trimmingCharacters(in: .whitespacesAndNewlines).replacingOccurrences(of: "\n", with: " ")
        return Secrets.redact(String(t.prefix(200)))
    }

    /// Resolves a Location against the URL it came from (absolute, scheme-relative, absolute-path
    /// or relative path). Refuses https → http and any non-http(s) scheme.
    static func resolve(_ location: String, against base: String) throws(WHIPError) -> String {
        guard let b = HTTPURL(base) else { throw .invalidURL("(unparsable base)") }
        let l = location.trimmingCharacters(in: .whitespaces)
        let resolved: String
        if let sep = l.range(of: "://"), !l[..<sep.lowerBound].contains("/") {
            resolved = l
        } else if l.hasPrefix("//") {
            resolved = "\(b.scheme):\(l)"
        } else if l.hasPrefix("/") {
            resolved = "\(b.scheme)://\(b.hostHeader)\(l)"
        } else {
            var dir = b.path
            if let slash = dir.lastIndex(of: "/") { dir = String(dir[...slash]) } else { dir = "/" }
            resolved = "\(b.scheme)://\(b.hostHeader)\(dir)\(l)"
        }
        guard let r = HTTPURL(resolved) else { throw .unsafeRedirect("Location is not an http(s) URL") }
        if b.scheme == "https" && r.scheme != "https" { throw .unsafeRedirect("https to \(r.scheme) would expose the token") }
        return resolved
    }
}
