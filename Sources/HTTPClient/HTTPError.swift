import Foundation

/// Failure of an HTTP exchange (no response, or a response this client refused).
/// `target` is always scheme://host[:port]/path: never a query or credentials.
public struct HTTPError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// The peer refused the TCP connection (nothing listening).
        case connectionRefused
        /// TCP connection failed otherwise (unreachable, reset during connect, ...).
        case connectFailed
        /// Connect or total timeout elapsed.
        case timeout
        /// Host name could not be resolved.
        case dns
        /// TLS handshake failed (protocol error, reset) - may be transient.
        case tlsHandshake
        /// Certificate not trusted / name mismatch / CA file unusable - not transient.
        case tlsVerification
        /// Connection broke while sending or receiving, or the server sent nothing/garbage.
        case connectionLost
        /// Body exceeded the allowed size.
        case responseTooLarge
        /// The URL or request could not be used (malformed URL, unsupported scheme).
        case invalidRequest
        /// Writing the downloaded file failed.
        case file
        /// Anything else libcurl reported.
        case other
    }

    public var kind: Kind
    public var target: String
    /// Short explanation (curl's text, errno text); redacted of known secrets.
    public var detail: String
    /// libcurl's CURLcode when it came from libcurl.
    public var curlCode: Int?

    public init(kind: Kind, target: String, detail: String, curlCode: Int? = nil) {
        self.kind = kind
        self.target = target
        self.detail = detail
        self.curlCode = curlCode
    }

    /// Worth another attempt: the network may recover; a bad certificate or request will not.
    public var isTransient: Bool {
        switch kind {
        case .connectionRefused, .connectFailed, .timeout, .dns, .tlsHandshake, .connectionLost: true
        case .tlsVerification, .responseTooLarge, .invalidRequest, .file, .other: false
        }
    }

    public var description: String {
        let what: String
        switch kind {
        case .connectionRefused: what = "connection refused"
        case .connectFailed: what = "could not connect"
        case .timeout: what = "timed out"
        case .dns: what = "could not resolve host"
        case .tlsHandshake: what = "TLS handshake failed"
        case .tlsVerification: what = "TLS certificate verification failed"
        case .connectionLost: what = "connection lost"
        case .responseTooLarge: what = "response too large"
        case .invalidRequest: what = "invalid request"
        case .file: what = "could not write download"
        case .other: what = "transfer failed"
        }
        let d = detail.isEmpty ? "" : ": \(detail)"
        return Secrets.redact("HTTP \(what) (\(target))\(d)")
    }

    /// The error kind libcurl's result code stands for (exposed for tests and callers that
    /// drive libcurl themselves).
    public static func kind(forCurlCode code: Int, osErrno: Int = 0) -> Kind {
        switch code {
        case 1, 3: return .invalidRequest                 // unsupported protocol, malformed URL
        case 5, 6: return .dns                            // could not resolve proxy / host
        case 7: return osErrno == Int(ECONNREFUSED) ? .connectionRefused : .connectFailed
        case 28: return .timeout
        case 35: return .tlsHandshake                     // SSL connect error
        case 51, 58, 59, 60, 64, 66, 77, 80, 82, 83, 90, 91, 98: return .tlsVerification
        case 8, 18, 52, 55, 56, 16, 92, 95: return .connectionLost   // weird reply, partial, empty, send/recv, h2/h3 layer
        case 63: return .responseTooLarge
        case 23: return .file
        default: return .other
        }
    }
}
