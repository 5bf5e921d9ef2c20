/// `a=setup` (RFC 4145/8842): who opens the DTLS connection.
public enum SDPSetupRole: String, Sendable, Equatable {
    case active, passive, actpass, holdconn
}

/// Media direction attributes.
public enum SDPDirection: String, Sendable, Equatable {
    case sendrecv, sendonly, recvonly, inactive
}

/// `a=fingerprint:<hash-func> <hex:hex:...>` (RFC 8122).
public struct SDPFingerprint: Sendable, Equatable, CustomStringConvertible {
    /// Lowercased hash name: `sha-256`, `sha-1`, ...
    public var algorithm: String
    public var bytes: [UInt8]

    public init(algorithm: String, bytes: [UInt8]) {
        self.algorithm = algorithm.lowercased(); self.bytes = bytes
    }

    /// Digest sizes of the hash names RFC 8122 registers; others are accepted at any size.
    static let digestSizes: [String: Int] = ["sha-1": 20, "sha-224": 28, "sha-256": 32, "sha-384": 48, "sha-512": 64, "md5": 16, "md2": 16]

    public static func parse(_ value: String) throws(SDPParseError) -> SDPFingerprint {
        let parts = value.split(separator: " ", omittingEmptySubsequences: true)
        func fail(_ why: String) -> SDPParseError { .malformedAttribute(name: "fingerprint", value: SDPParseError.clip(value), reason: why) }
        guard parts.count == 2 else { throw fail("expected \"<hash> <hex pairs>\"") }
        let alg = parts[0].lowercased()
        // Byte-level hex: "AB:CD:..." is 3n-1 characters.
        let hex = Array(parts[1].utf8)
        guard hex.count % 3 == 2 else { throw fail("expected colon-separated hex byte pairs") }
        var bytes: [UInt8] = []
        bytes.reserveCapacity((hex.count + 1) / 3)
        var i = 0
        while i < hex.count {
            guard let hi = hexValue(hex[i]), let lo = hexValue(hex[i + 1]), i + 2 == hex.count || hex[i + 2] == 0x3A else {
                throw fail("\"\(SDPParseError.clip(String(parts[1])))\" is not colon-separated hex byte pairs")
            }
            bytes.append(hi << 4 | lo)
            i += 3
        }
        if let size = digestSizes[alg], size != bytes.count {
            throw fail("\(alg) digest must be \(size) bytes, got \(bytes.count)")
        }
        return SDPFingerprint(algorithm: alg, bytes: bytes)
    }

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case 0x30...0x39: return c - 0x30
        case 0x41...0x46: return c - 0x37
        case 0x61...0x66: return c - 0x57
        default: return nil
        }
    }

    /// `sha-256 AB:CD:...` with upper-case hex, as browsers write it.
    public var description: String {
        let hex = bytes.map { b -> String in
            let s = String(b, radix: 16, uppercase: true)
            return b < 16 ? "0" + s : s
        }
        return "\(algorithm) \(hex.joined(separator: ":"))"
    }
}

/// `a=rtpmap:<pt> <encoding>/<clock rate>[/<channels>]`.
public struct SDPRTPMap: Sendable, Equatable {
    public var payloadType: UInt8
    public var encoding: String
    public var clockRate: Int
    public var channels: Int?

    public init(payloadType: UInt8, encoding: String, clockRate: Int, channels: Int? = nil) {
        self.payloadType = payloadType; self.encoding = encoding; self.clockRate = clockRate; self.channels = channels
    }

    public static func parse(_ value: String) throws(SDPParseError) -> SDPRTPMap {
        func fail(_ why: String) -> SDPParseError { .malformedAttribute(name: "rtpmap", value: SDPParseError.clip(value), reason: why) }
        let parts = value.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, let pt = UInt8(parts[0]), pt < 128 else { throw fail("payload type must be 0...127") }
        let enc = parts[1].split(separator: "/", omittingEmptySubsequences: false)
        guard enc.count >= 2, enc.count <= 3, !enc[0].isEmpty else { throw fail("expected <encoding>/<clock rate>[/<channels>]") }
        guard let rate = Int(enc[1]), rate > 0, rate <= 10_000_000 else { throw fail("bad clock rate") }
        var channels: Int?
        if enc.count == 3 {
            guard let c = Int(enc[2]), (1...255).contains(c) else { throw fail("bad channel count") }
            channels = c
        }
        return SDPRTPMap(payloadType: pt, encoding: String(enc[0]), clockRate: rate, channels: channels)
    }

    public var attributeValue: String {
        "\(payloadType) \(encoding)/\(clockRate)" + (channels.map { "/\($0)" } ?? "")
    }
}

/// `a=extmap:<id>[/<direction>] <uri> [<attributes>]` (RFC 8285).
public struct SDPExtMap: Sendable, Equatable {
    public var id: Int
    public var direction: SDPDirection?
    public var uri: String
    public var attributes: String?

    public init(id: Int, direction: SDPDirection? = nil, uri: String, attributes: String? = nil) {
        self.id = id; self.direction = direction; self.uri = uri; self.attributes = attributes
    }

    public static func parse(_ value: String) throws(SDPParseError) -> SDPExtMap {
        func fail(_ why: String) -> SDPParseError { .malformedAttribute(name: "extmap", value: SDPParseError.clip(value), reason: why) }
        let parts = value.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: true)
        guard parts.count >= 2 else { throw fail("expected <id> <uri>") }
        let idDir = parts[0].split(separator: "/", omittingEmptySubsequences: false)
        guard idDir.count <= 2, let id = Int(idDir[0]), (1...255).contains(id) else { throw fail("id must be 1...255") }
        var dir: SDPDirection?
        if idDir.count == 2 {
            guard let d = SDPDirection(rawValue: String(idDir[1])) else { throw fail("unknown direction") }
            dir = d
        }
        return SDPExtMap(id: id, direction: dir, uri: String(parts[1]), attributes: parts.count == 3 ? String(parts[2]) : nil)
    }

    public var attributeValue: String {
        "\(id)" + (direction.map { "/\($0.rawValue)" } ?? "") + " \(uri)" + (attributes.map { " \($0)" } ?? "")
    }

    public static let audioLevelURI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
    public static let absSendTimeURI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
    public static let transportCCURI = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
    public static let midURI = "urn:ietf:params:rtp-hdrext:sdes:mid"
}

/// `a=group:<semantics> <mid> ...` (RFC 5888); BUNDLE is the one used here (RFC 9143).
public struct SDPGroup: Sendable, Equatable {
    public var semantics: String
    public var mids: [String]
    public init(semantics: String, mids: [String]) { self.semantics = semantics; self.mids = mids }
}

/// `a=candidate:` (RFC 8839 section 5.1).
public struct SDPCandidate: Sendable, Equatable {
    public var foundation: String
    public var component: Int
    /// Lowercased: `udp` or `tcp`.
    public var transport: String
    public var priority: UInt32
    /// An IPv4/IPv6 literal, or a host name (mDNS `.local`) that this stack cannot use.
    public var address: String
    public var port: UInt16
    /// `host`, `srflx`, `prflx`, `relay`.
    public var type: String
    public var relatedAddress: String?
    public var relatedPort: UInt16?
    /// `active`, `passive`, `so` for TCP candidates.
    public var tcpType: String?
    /// Other name/value pairs (`generation 0`, `ufrag x`, `network-id 1`, ...) in order.
    public var extensions: [Extension]

    public struct Extension: Sendable, Equatable {
        public var name: String
        public var value: String
        public init(name: String, value: String) { self.name = name; self.value = value }
    }

    public init(foundation: String, component: Int = 1, transport: String = "udp", priority: UInt32,
                address: String, port: UInt16, type: String = "host", relatedAddress: String? = nil,
                relatedPort: UInt16? = nil, tcpType: String? = nil, extensions: [Extension] = []) {
        self.foundation = foundation; self.component = component; self.transport = transport.lowercased()
        self.priority = priority; self.address = address; self.port = port; self.type = type
        self.relatedAddress = relatedAddress; self.relatedPort = relatedPort; self.tcpType = tcpType
        self.extensions = extensions
    }

    /// True when `address` is written as an IP literal (not a host name).
    public var hasIPAddress: Bool {
        guard !address.isEmpty else { return false }
        if address.contains(":") { return address.utf8.allSatisfy { isHex($0) || $0 == 0x3A || $0 == 0x2E } }
        let parts = address.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts.allSatisfy { p in UInt8(p) != nil }
    }

    public var isIPv6: Bool { address.contains(":") }

    private func isHex(_ c: UInt8) -> Bool {
        (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66)
    }

    /// Parses the attribute value, with or without the leading `candidate:`.
    public static func parse(_ value: String) throws(SDPParseError) -> SDPCandidate {
        func fail(_ why: String) -> SDPParseError { .malformedAttribute(name: "candidate", value: SDPParseError.clip(value), reason: why) }
        var body = Substring(value)
        if body.hasPrefix("candidate:") { body = body.dropFirst("candidate:".count) }
        let t = body.split(separator: " ", omittingEmptySubsequences: true)
        guard t.count >= 8 else { throw fail("needs at least 8 fields") }
        let foundation = t[0]
        guard (1...32).contains(foundation.utf8.count), foundation.utf8.allSatisfy(isICEChar) else { throw fail("bad foundation") }
        guard t[1].utf8.count <= 3, let component = Int(t[1]), (1...256).contains(component) else { throw fail("component must be 1...256") }
        guard let priority = UInt32(t[3]) else { throw fail("priority must be a 32-bit number") }
        guard !t[4].isEmpty else { throw fail("empty address") }
        guard let port = UInt16(t[5]) else { throw fail("port must be 0...65535") }
        guard t[6] == "typ" else { throw fail("expected \"typ\" as the 7th field") }
        var c = SDPCandidate(foundation: String(foundation), component: component, transport: String(t[2]),
                             priority: priority, address: String(t[4]), port: port, type: String(t[7]))
        var i = 8
        while i < t.count {
            guard i + 1 < t.count else { throw fail("\"\(SDPParseError.clip(String(t[i])))\" has no value") }
            let name = t[i], v = t[i + 1]
            switch name {
            case "raddr": c.relatedAddress = String(v)
            case "rport":
                guard let p = UInt16(v) else { throw fail("rport must be 0...65535") }
                c.relatedPort = p
            case "tcptype": c.tcpType = String(v)
            default: c.extensions.append(Extension(name: String(name), value: String(v)))
            }
            i += 2
        }
        return c
    }

    /// ALPHA / DIGIT / "+" / "/" (RFC 8839 ice-char).
    private static func isICEChar(_ c: UInt8) -> Bool {
        (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x2B || c == 0x2F
    }

    /// The attribute value, `candidate:...` (without `a=`).
    public var attributeValue: String {
        var s = "candidate:\(foundation) \(component) \(transport) \(priority) \(address) \(port) typ \(type)"
        if let relatedAddress { s += " raddr \(relatedAddress)" }
        if let relatedPort { s += " rport \(relatedPort)" }
        if let tcpType { s += " tcptype \(tcpType)" }
        for e in extensions { s += " \(e.name) \(e.value)" }
        return s
    }
}
