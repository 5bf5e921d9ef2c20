import Testing
import Foundation
import SDP

/// Answers in the style of a WHIP server (the IVS stage answers a subscribe offer like this).
enum SDPSamples {
    static let fingerprintHex = "D2:FA:0E:C3:22:59:5E:14:95:69:92:3D:13:B4:84:24:2C:C2:A2:C0:3E:FD:34:8E:5E:EA:6F:AF:52:CE:E6:0F"

    /// Full ICE, `setup:active`, CRLF, candidates only in the first section, BUNDLE, unknown attributes.
    static let fullActive = [
        "v=0",
        "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0 1",
        "a=extmap-allow-mixed",
        "a=msid-semantic: WMS",
        "m=audio 3478 UDP/TLS/RTP/SAVPF 111",
        "c=IN IP4 198.51.100.20",
        "a=rtcp:9 IN IP4 0.0.0.0",
        "a=candidate:1 1 udp 2130706431 198.51.100.20 3478 typ host generation 0",
        "a=candidate:2 1 udp 2130706175 2001:db8::20 443 typ host generation 0",
        "a=candidate:3 1 tcp 1518280447 198.51.100.20 443 typ host tcptype passive generation 0",
        "a=candidate:4 1 udp 1694498815 203.0.113.9 51000 typ srflx raddr 10.0.0.9 rport 51000",
        "a=end-of-candidates",
        "a=ice-ufrag:Hk3v",
        "a=ice-pwd:b0TGBn3lJ3KqTnyGcOSwOyCi",
        "a=ice-options:trickle",
        "a=fingerprint:sha-256 \(fingerprintHex)",
        "a=setup:active",
        "a=mid:0",
        "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
        "a=extmap:3/sendonly http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01",
        "a=sendonly",
        "a=msid:stream-1 track-1",
        "a=rtcp-mux",
        "a=rtpmap:111 opus/48000/2",
        "a=rtcp-fb:111 transport-cc",
        "a=fmtp:111 minptime=10; useinbandfec=1",
        "a=ssrc:3735928559 cname:ivs",
        "a=x-vendor-thing:keep me",
        "m=video 9 UDP/TLS/RTP/SAVPF 96",
        "c=IN IP4 0.0.0.0",
        "a=ice-ufrag:Hk3v",
        "a=ice-pwd:b0TGBn3lJ3KqTnyGcOSwOyCi",
        "a=fingerprint:sha-256 \(fingerprintHex)",
        "a=setup:active",
        "a=mid:1",
        "a=sendonly",
        "a=rtcp-mux",
        "a=rtpmap:96 VP8/90000",
    ].joined(separator: "\r\n") + "\r\n"

    /// ice-lite, `setup:passive`, LF only, credentials and fingerprint at session level.
    static let litePassive = """
        v=0
        o=- 1 1 IN IP4 0.0.0.0
        s=WHIP
        t=0 0
        a=ice-lite
        a=ice-ufrag:srvU
        a=ice-pwd:0123456789abcdefghijklmnop
        a=fingerprint:SHA-256 \(fingerprintHex.lowercased())
        a=setup:passive
        a=group:BUNDLE a v
        m=audio 443 UDP/TLS/RTP/SAVPF 109
        c=IN IP4 192.0.2.33
        a=mid:a
        a=sendonly
        a=rtcp-mux
        a=rtpmap:109 OPUS/48000/2
        a=fmtp:109 useinbandfec=1;stereo=1
        a=candidate:0 1 UDP 2122252543 192.0.2.33 443 typ host
        a=candidate:1 1 udp 2122252543 ::1 443 typ host
        a=candidate:5 1 udp 2122252543 abcd-ef.local 443 typ host
        m=video 443 UDP/TLS/RTP/SAVPF 96
        c=IN IP4 192.0.2.33
        a=mid:v
        a=sendonly
        a=rtcp-mux
        a=rtpmap:96 H264/90000
        """
}

@Suite struct SDPParseTests {
    @Test func fullActiveAnswerGivesTheTypedView() throws {
        let a = try SubscribeAnswer(parsing: SDPSamples.fullActive)
        #expect(a.audioIndex == 0)
        #expect(a.audioMid == "0")
        #expect(a.opus == SDPRTPMap(payloadType: 111, encoding: "opus", clockRate: 48000, channels: 2))
        #expect(a.opusParameters == ["minptime": "10", "useinbandfec": "1"])
        #expect(a.iceUfrag == "Hk3v")
        #expect(a.icePwd == "b0TGBn3lJ3KqTnyGcOSwOyCi")
        #expect(!a.iceLite)
        #expect(a.setup == .active)
        #expect(a.fingerprints.count == 1)
        #expect(a.fingerprints[0].algorithm == "sha-256")
        #expect(a.fingerprints[0].bytes.count == 32)
        #expect(a.fingerprints[0].bytes.prefix(3) == [0xD2, 0xFA, 0x0E])
        #expect(a.fingerprints[0].bytes.last == 0x0F)
        #expect(a.fingerprints[0].description == "sha-256 " + SDPSamples.fingerprintHex)
        #expect(a.candidates.map(\.address) == ["198.51.100.20", "2001:db8::20", "203.0.113.9"])
        #expect(a.candidates.map(\.port) == [3478, 443, 51000])
        #expect(a.candidates[1].isIPv6)
        #expect(a.candidates[2].type == "srflx")
        #expect(a.candidates[2].relatedAddress == "10.0.0.9")
        #expect(a.candidates[2].relatedPort == 51000)
        #expect(a.candidates[0].priority == 2_130_706_431)
        #expect(a.candidates[0].extensions == [SDPCandidate.Extension(name: "generation", value: "0")])
        #expect(a.ignoredCandidates == 1)  // the TCP one
        #expect(a.audioExtensions.map(\.id) == [1, 3])
        #expect(a.audioExtensions[0].uri == SDPExtMap.audioLevelURI)
        #expect(a.audioExtensions[1].direction == .sendonly)
        #expect(a.bundleMids == ["0", "1"])
        #expect(a.rtcpMux)

        let sd = a.session
        #expect(sd.media.count == 2)
        #expect(sd.media[0].port == 3478 && sd.media[0].proto == "UDP/TLS/RTP/SAVPF" && sd.media[0].formats == ["111"])
        #expect(sd.media[0].direction == .sendonly)
        #expect(sd.media[0].value("x-vendor-thing") == "keep me")
        #expect(sd.media[0].lines.first == SDPLine(type: "c", value: "IN IP4 198.51.100.20"))
        #expect(sd.media[0].candidates.count == 4)
        #expect(sd.media[0].candidates[2].tcpType == "passive")
        #expect(sd.media[0].endOfCandidates)
        #expect(sd.media[1].candidates.isEmpty)
        #expect(sd.media[1].kind == "video" && sd.media[1].rtpMaps.first?.encoding == "VP8")
        #expect(sd.has("extmap-allow-mixed"))
        #expect(sd.value("msid-semantic") == " WMS")
    }

    @Test func litePassiveAnswerWithSessionLevelTransportAndLFLines() throws {
        #expect(!SDPSamples.litePassive.contains("\r"))
        let a = try SubscribeAnswer(parsing: SDPSamples.litePassive)
        #expect(a.iceLite)
        #expect(a.setup == .passive)
        #expect(a.iceUfrag == "srvU" && a.icePwd == "0123456789abcdefghijklmnop")
        #expect(a.fingerprints.first?.algorithm == "sha-256")
        #expect(a.fingerprints.first?.description == "sha-256 " + SDPSamples.fingerprintHex)
        #expect(a.opus.payloadType == 109)
        #expect(a.opusParameters["stereo"] == "1")
        #expect(a.audioMid == "a")
        #expect(a.bundleMids == ["a", "v"])
        // Transport "UDP" is accepted case-insensitively; the mDNS host name is skipped.
        #expect(a.candidates.map(\.address) == ["192.0.2.33", "::1"])
        #expect(a.candidates[0].transport == "udp")
        #expect(a.ignoredCandidates == 1)
        #expect(a.session.sessionName == "WHIP")
    }

    @Test func candidatesAreTakenFromAnyWhenTheFirstSectionHasNone() throws {
        // Move the candidates into the video section.
        var lines = SDPSamples.fullActive.components(separatedBy: "\r\n")
        let cands = lines.filter { $0.hasPrefix("a=candidate:") }
        lines.removeAll { $0.hasPrefix("a=candidate:") }
        lines.insert(contentsOf: cands, at: lines.firstIndex(of: "a=mid:1")!)
        let a = try SubscribeAnswer(parsing: lines.joined(separator: "\r\n"))
        #expect(a.candidates.count == 3)
    }

    @Test func serializeRoundTripKeepsEverything() throws {
        for text in [SDPSamples.fullActive, SDPSamples.litePassive] {
            let sd = try SessionDescription.parse(text)
            let out = sd.serialized()
            #expect(try SessionDescription.parse(out) == sd)
        }
        // CRLF input in canonical order comes back byte for byte.
        #expect(try SessionDescription.parse(SDPSamples.fullActive).serialized() == SDPSamples.fullActive)
    }

    @Test func candidateGrammar() throws {
        let c = try SDPCandidate.parse("candidate:842163049 1 udp 1677729535 2001:db8:1::5 63917 typ srflx raddr 2001:db8::9 rport 0 generation 0 ufrag x network-cost 999")
        #expect(c.foundation == "842163049" && c.component == 1 && c.priority == 1_677_729_535)
        #expect(c.address == "2001:db8:1::5" && c.port == 63917 && c.type == "srflx")
        #expect(c.relatedAddress == "2001:db8::9" && c.relatedPort == 0)
        #expect(c.extensions.map(\.name) == ["generation", "ufrag", "network-cost"])
        #expect(try SDPCandidate.parse(c.attributeValue) == c)
        let tcp = try SDPCandidate.parse("1 1 TCP 1 10.0.0.1 9 typ host tcptype active")
        #expect(tcp.transport == "tcp" && tcp.tcpType == "active" && tcp.port == 9)

        for bad in ["candidate:1 1 udp 1 10.0.0.1 5000 host",        // no "typ"
                    "candidate:1 0 udp 1 10.0.0.1 5000 typ host",    // component 0
                    "candidate:1 1 udp 4294967296 1.2.3.4 1 typ host", // priority > 32 bits
                    "candidate:1 1 udp 1 1.2.3.4 70000 typ host",    // port
                    "candidate:1 1 udp 1 1.2.3.4 1 typ host raddr",  // dangling name
                    "candidate:a b 1 udp 1 1.2.3.4 1 typ host",      // shifted fields
                    "candidate:f#o 1 udp 1 1.2.3.4 1 typ host"] {    // foundation char
            #expect(throws: SDPParseError.self) { try SDPCandidate.parse(bad) }
        }
    }

    @Test func typedAttributeGrammars() throws {
        #expect(try SDPRTPMap.parse("111 opus/48000/2") == SDPRTPMap(payloadType: 111, encoding: "opus", clockRate: 48000, channels: 2))
        #expect(try SDPRTPMap.parse("0 PCMU/8000").channels == nil)
        #expect(throws: SDPParseError.self) { try SDPRTPMap.parse("128 opus/48000") }
        #expect(throws: SDPParseError.self) { try SDPRTPMap.parse("111 opus") }
        #expect(try SDPExtMap.parse("2/recvonly urn:x attr").attributes == "attr")
        #expect(throws: SDPParseError.self) { try SDPExtMap.parse("0 urn:x") }
        #expect(throws: SDPParseError.self) { try SDPExtMap.parse("3/sideways urn:x") }
        #expect(try SDPFingerprint.parse("sha-1 " + Array(repeating: "ab", count: 20).joined(separator: ":")).bytes.count == 20)
        #expect(throws: SDPParseError.self) { try SDPFingerprint.parse("sha-256 AB:CD") }
        #expect(throws: SDPParseError.self) { try SDPFingerprint.parse("sha-256 " + SDPSamples.fingerprintHex.replacingOccurrences(of: "D2", with: "G2")) }
    }

    @Test func structuralErrorsAreTyped() {
        func err(_ s: String) -> SDPParseError? {
            do { _ = try SessionDescription.parse(s); return nil } catch { return error }
        }
        #expect(err("") == .empty)
        #expect(err("\r\n\r\n") == .empty)
        #expect(err("o=- 1 1 IN IP4 0.0.0.0\r\nv=0\r\n") == .missingVersion)
        #expect(err("v=1\r\n") == .unsupportedVersion("1"))
        #expect(err("v=0\r\nthis is not sdp\r\n") == .malformedLine(line: 2, text: "this is not sdp"))
        #expect(err("v=0\r\nm=audio\r\n") == .malformedMedia(line: 2, text: "audio"))
        #expect(err("v=0\r\nm=audio 99999 RTP/AVP 0\r\n") == .malformedMedia(line: 2, text: "audio 99999 RTP/AVP 0"))
        #expect(err(String(repeating: "a", count: SessionDescription.maximumBytes + 1)) == .tooLarge(bytes: SessionDescription.maximumBytes + 1))
        #expect(err("v=0\n") == nil)
    }
}

@Suite struct SDPOfferTests {
    static let fingerprint = try! SDPFingerprint.parse("sha-256 " + SDPSamples.fingerprintHex)
    static let candidates = [
        SDPCandidate(foundation: "1", priority: 2_130_706_431, address: "192.0.2.10", port: 50_000),
        SDPCandidate(foundation: "2", priority: 2_130_705_919, address: "2001:db8::10", port: 50_002),
    ]

    @Test func offerRoundTripsThroughTheParser() throws {
        let opts = SubscribeOfferOptions(iceUfrag: "uFr4", icePwd: "pwd-of-at-least-22-chars", fingerprint: Self.fingerprint,
                                         candidates: Self.candidates, sessionID: 42)
        let text = makeSubscribeOffer(opts).serialized()
        // Every line ends in CRLF.
        #expect(text.hasSuffix("\r\n"))
        #expect(text.components(separatedBy: "\r\n").allSatisfy { !$0.contains("\n") })
        #expect(text.hasPrefix("v=0\r\no=- 42 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"))

        let sd = try SessionDescription.parse(text)
        #expect(sd.bundleMids == ["0", "1"])
        #expect(sd.media.map(\.kind) == ["audio", "video"])
        for m in sd.media {
            #expect(m.proto == "UDP/TLS/RTP/SAVPF")
            #expect(m.port == 50_000)
            #expect(m.lines.contains(SDPLine(type: "c", value: "IN IP4 192.0.2.10")))
            #expect(m.direction == .recvonly)
            #expect(m.rtcpMux)
            #expect(m.setup == .actpass)
            #expect(m.fingerprints == [Self.fingerprint])
            #expect(m.iceUfrag == "uFr4" && m.icePwd == "pwd-of-at-least-22-chars")
            #expect(m.candidates == Self.candidates)
            #expect(m.endOfCandidates)
            #expect(!m.has("ice-options"))
        }
        let audio = sd.media[0]
        #expect(audio.mid == "0")
        #expect(audio.formats == ["111"])
        #expect(audio.rtpMaps == [SDPRTPMap(payloadType: 111, encoding: "opus", clockRate: 48000, channels: 2)])
        #expect(audio.formatParameters(111) == ["minptime": "10", "useinbandfec": "1", "stereo": "1", "sprop-stereo": "1"])
        #expect(audio.extMaps.map(\.uri) == [SDPExtMap.audioLevelURI])
        let video = sd.media[1]
        #expect(video.mid == "1")
        #expect(Set(video.rtpMaps.map(\.encoding)) == ["VP8", "H264"])
        #expect(video.rtpMaps.allSatisfy { $0.clockRate == 90000 && video.formats.contains("\($0.payloadType)") })
        let h264 = try #require(video.rtpMaps.first { $0.encoding == "H264" })
        #expect(video.formatParameters(h264.payloadType)["packetization-mode"] == "1")
        // Serialising the parsed offer gives the same text.
        #expect(sd.serialized() == text)
    }

    @Test func offerOptionsChangeTheOffer() throws {
        let opts = SubscribeOfferOptions(iceUfrag: "abcd", icePwd: "0123456789012345678901", fingerprint: Self.fingerprint,
                                         candidates: [Self.candidates[1]], includeVideo: false, stereo: false,
                                         absSendTime: true, transportCC: true)
        let sd = try SessionDescription.parse(makeSubscribeOffer(opts).serialized())
        #expect(sd.media.count == 1)
        #expect(sd.bundleMids == ["0"])
        #expect(sd.media[0].lines.contains(SDPLine(type: "c", value: "IN IP6 2001:db8::10")))
        #expect(sd.media[0].formatParameters(111)["stereo"] == nil)
        #expect(sd.media[0].extMaps.map(\.id) == [1, 2, 3])
        #expect(sd.media[0].values("rtcp-fb") == ["111 transport-cc"])
        // No candidates: discard port 9 and 0.0.0.0.
        let none = SubscribeOfferOptions(iceUfrag: "abcd", icePwd: "0123456789012345678901", fingerprint: Self.fingerprint, candidates: [])
        let sd2 = makeSubscribeOffer(none)
        #expect(sd2.media[0].port == 9)
        #expect(sd2.media[0].lines == [SDPLine(type: "c", value: "IN IP4 0.0.0.0")])
    }
}

@Suite struct SDPAnswerErrorTests {
    static func answer(removing prefixes: [String] = [], replacing: [(String, String)] = []) -> String {
        var lines = SDPSamples.fullActive.components(separatedBy: "\r\n")
        lines.removeAll { l in prefixes.contains { l.hasPrefix($0) } }
        var text = lines.joined(separator: "\r\n")
        for (a, b) in replacing { text = text.replacingOccurrences(of: a, with: b) }
        return text
    }

    static func error(_ text: String) -> SubscribeAnswerError? {
        do { _ = try SubscribeAnswer(parsing: text); return nil } catch { return error }
    }

    @Test func brokenAnswersGiveTypedErrors() {
        #expect(Self.error(Self.answer()) == nil)
        #expect(Self.error("HTTP/1.1 500 oops") == .unparsable(.missingVersion))
        #expect(Self.error(Self.answer(replacing: [("m=audio 3478 UDP/TLS/RTP/SAVPF 111", "m=audio")])) == .unparsable(.malformedMedia(line: 8, text: "audio")))
        #expect(Self.error(Self.answer(replacing: [("m=audio", "m=text")])) == .noAudioSection)
        #expect(Self.error(Self.answer(replacing: [("m=audio 3478", "m=audio 0")])) == .audioRejected)
        #expect(Self.error(Self.answer(replacing: [("a=sendonly\r\na=msid", "a=inactive\r\na=msid")])) == .audioNotSent(.inactive))
        #expect(Self.error(Self.answer(replacing: [("opus/48000/2", "PCMU/8000")])) == .noOpus)
        #expect(Self.error(Self.answer(removing: ["a=fingerprint"])) == .noFingerprint)
        if case .badFingerprint(let why)? = Self.error(Self.answer(replacing: [("sha-256 D2:FA", "sha-256 D2:FA:00")])) {
            #expect(why.hasSuffix("sha-256 digest must be 32 bytes, got 33"))
        } else {
            Issue.record("a 33-byte sha-256 fingerprint was not reported as badFingerprint")
        }
        #expect(Self.error(Self.answer(removing: ["a=ice-pwd"])) == .noICECredentials)
        #expect(Self.error(Self.answer(removing: ["a=ice-ufrag"])) == .noICECredentials)
        #expect(Self.error(Self.answer(removing: ["a=setup"])) == .setupMissing)
        #expect(Self.error(Self.answer(replacing: [("a=setup:active", "a=setup:actpass")])) == .setupInvalid("actpass"))
        #expect(Self.error(Self.answer(replacing: [("a=setup:active", "a=setup:sideways")])) == .setupInvalid("sideways"))
        #expect(Self.error(Self.answer(removing: ["a=candidate:1 ", "a=candidate:2 ", "a=candidate:4 "])) == .noCandidates)
        #expect(Self.error(Self.answer(removing: ["a=candidate"])) == .noCandidates)
        // Messages name the problem.
        #expect(SubscribeAnswerError.setupInvalid("actpass").description.contains("actpass"))
        #expect(SubscribeAnswerError.noCandidates.description.contains("candidate"))
    }
}

@Suite struct SDPFuzzTests {
    /// 100 000 mutated answers and random line soups through the parser and answer validation:
    /// nothing traps, and the outcomes are a mix of typed errors and accepted answers.
    @Test func parserSurvivesRandomAndMutatedInput() {
        var rng = STUNTestRandom(seed: 0x5344_5000)
        let seeds = [Array(SDPSamples.fullActive.utf8), Array(SDPSamples.litePassive.utf8)]
        let seedLines = (SDPSamples.fullActive + "\n" + SDPSamples.litePassive).split(whereSeparator: { $0 == "\r\n" || $0 == "\n" }).map { Array($0.utf8) }
        let alphabet = Array("v=0amoc:/ .\r\n-ABCxyz0123456789typhostudp".utf8)
        var parsed = 0, accepted = 0, rejected = 0
        for i in 0..<100_000 {
            var b: [UInt8]
            switch i % 4 {
            case 0:
                // Shuffled real lines behind v=0, some truncated.
                b = Array("v=0\r\n".utf8)
                for _ in 0..<(1 + Int(rng.next() % 30)) {
                    var l = seedLines[Int(rng.next() % UInt64(seedLines.count))]
                    if rng.next() % 4 == 0 { l = Array(l.prefix(Int(rng.next() % UInt64(l.count + 1)))) }
                    b += l + [0x0D, 0x0A]
                }
            case 1:
                b = (0..<Int(rng.next() % 300)).map { _ in alphabet[Int(rng.next() % UInt64(alphabet.count))] }
                if rng.next() % 2 == 0 { b = Array("v=0\n".utf8) + b }
            default:
                b = seeds[i % 2]
                for _ in 0..<(1 + Int(rng.next() % 6)) {
                    let at = Int(rng.next() % UInt64(b.count))
                    switch rng.next() % 5 {
                    case 0: b[at] = UInt8(truncatingIfNeeded: rng.next())
                    case 1: b[at] = alphabet[Int(rng.next() % UInt64(alphabet.count))]
                    case 2: b.remove(at: at)
                    case 3: b.insert(alphabet[Int(rng.next() % UInt64(alphabet.count))], at: at)
                    default: b.removeSubrange(at..<min(b.count, at + Int(rng.next() % 40) + 1))
                    }
                    if b.isEmpty { b = [0x76] }
                }
            }
            guard let sd = try? SessionDescription.parse(bytes: b) else { rejected += 1; continue }
            parsed += 1
            if (try? SubscribeAnswer(sd)) != nil { accepted += 1 }
            _ = sd.serialized()
        }
        #expect(parsed + rejected == 100_000)
        #expect(parsed > 20_000)
        #expect(rejected > 10_000)
        #expect(accepted > 1_000)
        #expect(accepted < parsed)
    }
}
