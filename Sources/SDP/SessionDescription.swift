/// Why SDP text could not be parsed, or one typed attribute value is malformed.
public enum SDPParseError: Error, Sendable, Equatable, CustomStringConvertible {
    case empty
    /// More than `SessionDescription.maximumBytes` of text (a defence against hostile peers).
    case tooLarge(bytes: Int)
    /// The first line is not `v=`.
    case missingVersion
    case unsupportedVersion(String)
    /// A line is not `<letter>=<value>`.
    case malformedLine(line: Int, text: String)
    /// An `m=` line lacks its media, port or protocol, or has a bad port.
    case malformedMedia(line: Int, text: String)
    /// A typed attribute (candidate, fingerprint, rtpmap, extmap, ...) does not follow its grammar.
    case malformedAttribute(name: String, value: String, reason: String)

    public var description: String {
        switch self {
        case .empty: return "SDP is empty"
        case .tooLarge(let n): return "SDP of \(n) bytes exceeds the \(SessionDescription.maximumBytes)-byte limit"
        case .missingVersion: return "SDP does not start with a v= line"
        case .unsupportedVersion(let v): return "SDP version \"\(v)\" is not 0"
        case .malformedLine(let n, let t): return "SDP line \(n) is not <type>=<value>: \"\(t)\""
        case .malformedMedia(let n, let t): return "SDP media line \(n) is malformed: \"\(t)\""
        case .malformedAttribute(let name, let value, let reason): return "SDP a=\(name):\(value) is malformed: \(reason)"
        }
    }

    /// Keeps quoted input in messages short.
    static func clip(_ s: String) -> String { s.count > 80 ? String(s.prefix(80)) + "…" : s }
}

/// A non-attribute line (`c=`, `b=`, `t=`, ...), kept verbatim.
public struct SDPLine: Sendable, Equatable {
    public var type: Character
    public var value: String
    public init(type: Character, value: String) { self.type = type; self.value = value }
}

/// `a=name` or `a=name:value`. Unknown attributes are kept so nothing is lost in a round trip.
public struct SDPAttribute: Sendable, Equatable {
    public var name: String
    public var value: String?
    public init(_ name: String, _ value: String? = nil) { self.name = name; self.value = value }

    var line: String { value.map { "a=\(name):\($0)" } ?? "a=\(name)" }
}

/// One `m=` section with its lines and attributes in order.
public struct SDPMediaSection: Sendable, Equatable {
    /// `audio`, `video`, `application`, ...
    public var kind: String
    /// 0 means the section is rejected or bundled-only.
    public var port: Int
    public var portCount: Int?
    public var proto: String
    public var formats: [String]
    public var lines: [SDPLine]
    public var attributes: [SDPAttribute]

    public init(kind: String, port: Int, portCount: Int? = nil, proto: String, formats: [String],
                lines: [SDPLine] = [], attributes: [SDPAttribute] = []) {
        self.kind = kind; self.port = port; self.portCount = portCount; self.proto = proto
        self.formats = formats; self.lines = lines; self.attributes = attributes
    }
}

/// An SDP document (RFC 8866): session part and media sections. Parsing is structural and
/// tolerant (LF or CRLF, blank lines skipped, unknown lines and attributes kept); the typed view
/// (see `SDPTyped.swift`) interprets attributes on demand.
public struct SessionDescription: Sendable, Equatable {
    /// Answers are a few kilobytes; refusing very large input bounds the work a peer can cause.
    public static let maximumBytes = 256 * 1024

    public var version: Int
    /// The `o=` value, verbatim.
    public var origin: String
    /// The `s=` value.
    public var sessionName: String
    /// Other session-level lines (`t=`, `c=`, `b=`, ...) in order.
    public var lines: [SDPLine]
    public var attributes: [SDPAttribute]
    public var media: [SDPMediaSection]

    public init(version: Int = 0, origin: String, sessionName: String = "-", lines: [SDPLine] = [],
                attributes: [SDPAttribute] = [], media: [SDPMediaSection] = []) {
        self.version = version; self.origin = origin; self.sessionName = sessionName
        self.lines = lines; self.attributes = attributes; self.media = media
    }

    public static func parse(_ text: String) throws(SDPParseError) -> SessionDescription {
        try parse(bytes: Array(text.utf8))
    }

    public static func parse(bytes: [UInt8]) throws(SDPParseError) -> SessionDescription {
        guard bytes.count <= maximumBytes else { throw .tooLarge(bytes: bytes.count) }
        var sd = SessionDescription(origin: "")
        var sawVersion = false
        var sawLine = false
        var lineNumber = 0
        var current: SDPMediaSection?
        var start = 0
        let n = bytes.count
        while start < n {
            var end = start
            while end < n && bytes[end] != 0x0A { end += 1 }
            let next = end + 1
            var stop = end
            if stop > start && bytes[stop - 1] == 0x0D { stop -= 1 }
            lineNumber += 1
            defer { start = next }
            if stop == start { continue }  // blank line
            sawLine = true
            let typeByte = bytes[start]
            // Anything before v= (an HTTP error page, JSON) is "not SDP", whatever its shape.
            if !sawVersion && (stop - start < 2 || typeByte != 0x76 || bytes[start + 1] != 0x3D) { throw .missingVersion }
            let isLetter = (typeByte >= 0x61 && typeByte <= 0x7A) || (typeByte >= 0x41 && typeByte <= 0x5A)
            guard stop - start >= 2, isLetter, bytes[start + 1] == 0x3D else {
                throw .malformedLine(line: lineNumber, text: SDPParseError.clip(String(decoding: bytes[start..<stop], as: UTF8.self)))
            }
            let value = String(decoding: bytes[(start + 2)..<stop], as: UTF8.self)
            let type = Character(Unicode.Scalar(typeByte))
            if !sawVersion {
                guard type == "v" else { throw .missingVersion }
                guard value == "0" else { throw .unsupportedVersion(SDPParseError.clip(value)) }
                sawVersion = true
                continue
            }
            switch type {
            case "m":
                if let m = current { sd.media.append(m) }
                current = try parseMediaLine(value, line: lineNumber)
            case "a":
                let attr = parseAttribute(bytes, from: start + 2, to: stop)
                if current != nil { current?.attributes.append(attr) } else { sd.attributes.append(attr) }
            case "o" where current == nil && sd.origin.isEmpty:
                sd.origin = value
            case "s" where current == nil:
                sd.sessionName = value
            case "v":
                throw .malformedLine(line: lineNumber, text: "second v= line")
            default:
                let l = SDPLine(type: type, value: value)
                if current != nil { current?.lines.append(l) } else { sd.lines.append(l) }
            }
        }
        guard sawVersion else { throw sawLine ? .missingVersion : .empty }
        if let m = current { sd.media.append(m) }
        return sd
    }

    /// Splits at the first colon; the name is everything before it.
    private static func parseAttribute(_ b: [UInt8], from: Int, to: Int) -> SDPAttribute {
        var i = from
        while i < to && b[i] != 0x3A { i += 1 }
        let name = String(decoding: b[from..<i], as: UTF8.self)
        if i == to { return SDPAttribute(name) }
        return SDPAttribute(name, String(decoding: b[(i + 1)..<to], as: UTF8.self))
    }

    private static func parseMediaLine(_ value: String, line: Int) throws(SDPParseError) -> SDPMediaSection {
        let parts = value.split(separator: " ", omittingEmptySubsequences: true)
        guard parts.count >= 3 else { throw .malformedMedia(line: line, text: SDPParseError.clip(value)) }
        let portField = parts[1].split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let port = Int(portField[0]), (0...65535).contains(port) else {
            throw .malformedMedia(line: line, text: SDPParseError.clip(value))
        }
        var count: Int?
        if portField.count == 2 {
            guard let c = Int(portField[1]), c > 0, c <= 65535 else { throw .malformedMedia(line: line, text: SDPParseError.clip(value)) }
            count = c
        }
        return SDPMediaSection(kind: String(parts[0]), port: port, portCount: count, proto: String(parts[2]),
                               formats: parts.dropFirst(3).map(String.init))
    }

    /// CRLF-terminated text in RFC 8866 order for the fields held here.
    public func serialized() -> String {
        var out = "v=\(version)\r\no=\(origin)\r\ns=\(sessionName)\r\n"
        for l in lines { out += "\(l.type)=\(l.value)\r\n" }
        for a in attributes { out += a.line + "\r\n" }
        for m in media {
            let port = m.portCount.map { "\(m.port)/\($0)" } ?? "\(m.port)"
            out += "m=\(m.kind) \(port) \(m.proto)" + m.formats.map { " " + $0 }.joined() + "\r\n"
            for l in m.lines { out += "\(l.type)=\(l.value)\r\n" }
            for a in m.attributes { out += a.line + "\r\n" }
        }
        return out
    }
}
