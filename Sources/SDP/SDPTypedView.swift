/// Typed reading of attributes. Malformed typed attributes are skipped here; `SubscribeAnswer`
/// reports the ones it depends on.
extension SDPMediaSection {
    /// Values of every `a=<name>` (nil value for flag attributes).
    public func values(_ name: String) -> [String?] {
        attributes.compactMap { $0.name == name ? .some($0.value) : nil }
    }

    public func value(_ name: String) -> String? {
        attributes.first { $0.name == name }?.value
    }

    public func has(_ name: String) -> Bool {
        attributes.contains { $0.name == name }
    }

    public var mid: String? { value("mid") }

    /// The direction attribute; sendrecv when none is given (RFC 8866 section 6.7).
    public var direction: SDPDirection {
        for a in attributes { if let d = SDPDirection(rawValue: a.name) { return d } }
        return .sendrecv
    }

    public var rtpMaps: [SDPRTPMap] {
        attributes.compactMap { a in a.name == "rtpmap" ? a.value.flatMap { try? SDPRTPMap.parse($0) } : nil }
    }

    /// Raw `a=fmtp` parameter strings by payload type.
    public var fmtp: [UInt8: String] {
        var out: [UInt8: String] = [:]
        for a in attributes where a.name == "fmtp" {
            guard let v = a.value else { continue }
            let parts = v.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
            guard let pt = UInt8(parts.first ?? ""), pt < 128 else { continue }
            out[pt] = parts.count > 1 ? String(parts[1]) : ""
        }
        return out
    }

    /// `a=fmtp` parameters of one payload type as key/value pairs (keys lowercased).
    public func formatParameters(_ payloadType: UInt8) -> [String: String] {
        guard let s = fmtp[payloadType] else { return [:] }
        var out: [String: String] = [:]
        for item in s.split(separator: ";") {
            let kv = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let key = kv[0].trimmingSpaces().lowercased()
            guard !key.isEmpty else { continue }
            out[key] = kv.count > 1 ? kv[1].trimmingSpaces() : ""
        }
        return out
    }

    public var extMaps: [SDPExtMap] {
        attributes.compactMap { a in a.name == "extmap" ? a.value.flatMap { try? SDPExtMap.parse($0) } : nil }
    }

    public var rtcpMux: Bool { has("rtcp-mux") }

    /// nil when absent or not one of the four RFC 4145 values (see `value("setup")`).
    public var setup: SDPSetupRole? { value("setup").flatMap { SDPSetupRole(rawValue: $0.lowercased()) } }

    public var fingerprints: [SDPFingerprint] {
        attributes.compactMap { a in a.name == "fingerprint" ? a.value.flatMap { try? SDPFingerprint.parse($0) } : nil }
    }

    public var iceUfrag: String? { value("ice-ufrag") }
    public var icePwd: String? { value("ice-pwd") }

    /// Well-formed `a=candidate` lines.
    public var candidates: [SDPCandidate] {
        attributes.compactMap { a in a.name == "candidate" ? a.value.flatMap { try? SDPCandidate.parse($0) } : nil }
    }

    public var endOfCandidates: Bool { has("end-of-candidates") }
}

extension SessionDescription {
    public func value(_ name: String) -> String? {
        attributes.first { $0.name == name }?.value
    }

    public func has(_ name: String) -> Bool {
        attributes.contains { $0.name == name }
    }

    public var iceLite: Bool { has("ice-lite") }
    public var iceUfrag: String? { value("ice-ufrag") }
    public var icePwd: String? { value("ice-pwd") }
    public var setup: SDPSetupRole? { value("setup").flatMap { SDPSetupRole(rawValue: $0.lowercased()) } }

    public var fingerprints: [SDPFingerprint] {
        attributes.compactMap { a in a.name == "fingerprint" ? a.value.flatMap { try? SDPFingerprint.parse($0) } : nil }
    }

    public var groups: [SDPGroup] {
        attributes.compactMap { a in
            guard a.name == "group", let v = a.value else { return nil }
            let parts = v.split(separator: " ", omittingEmptySubsequences: true)
            guard let sem = parts.first else { return nil }
            return SDPGroup(semantics: String(sem), mids: parts.dropFirst().map(String.init))
        }
    }

    /// Mids of the first BUNDLE group; empty when there is none.
    public var bundleMids: [String] {
        groups.first { $0.semantics.uppercased() == "BUNDLE" }?.mids ?? []
    }
}

extension Substring {
    func trimmingSpaces() -> String {
        var s = self[...]
        while s.first == " " || s.first == "\t" { s = s.dropFirst() }
        while s.last == " " || s.last == "\t" { s = s.dropLast() }
        return String(s)
    }
}
