import RTP
import Testing

private func rtpError(_ bytes: [UInt8]) -> RTPError? {
    do {
        _ = try RTPPacket.parse(bytes)
        return nil
    } catch {
        return error
    }
}

private func rtcpError(_ bytes: [UInt8]) -> RTCPError? {
    do {
        _ = try RTCPPacket.parseCompound(bytes)
        return nil
    } catch {
        return error
    }
}

// V=2 P X CC=2, PT 96, seq 0xFFFF, ts 0xDEADBEEF, ssrc 0x01020304, two CSRCs, a one-byte extension
// (id 1: [0x30], id 3: [0x01, 0x02], then zero padding), payload F8 FF FE, 4 bytes of padding.
private let fullPacketBytes: [UInt8] = [
    0xB2, 0x60, 0xFF, 0xFF, 0xDE, 0xAD, 0xBE, 0xEF, 0x01, 0x02, 0x03, 0x04,
    0xAA, 0xAA, 0xAA, 0xAA, 0xBB, 0xBB, 0xBB, 0xBB,
    0xBE, 0xDE, 0x00, 0x02, 0x10, 0x30, 0x31, 0x01, 0x02, 0x00, 0x00, 0x00,
    0xF8, 0xFF, 0xFE,
    0x00, 0x00, 0x00, 0x04,
]

// SR (one report block) + SDES (CNAME "abc"), as a sender would put them in one datagram.
private let srSdesBytes: [UInt8] = [
    0x81, 200, 0x00, 0x0C,
    0x11, 0x11, 0x11, 0x11,
    0xE1, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF,
    0x00, 0x00, 0x3C, 0x00,
    0x00, 0x00, 0x00, 0x64,
    0x00, 0x00, 0x3E, 0x80,
    0x22, 0x22, 0x22, 0x22, 0x40, 0xFF, 0xFF, 0xFE, 0x00, 0x01, 0x00, 0x05,
    0x00, 0x00, 0x00, 0x20, 0x45, 0x67, 0x89, 0xAB, 0x00, 0x01, 0x00, 0x00,
    0x81, 202, 0x00, 0x03,
    0x11, 0x11, 0x11, 0x11, 0x01, 0x03, 0x61, 0x62, 0x63, 0x00, 0x00, 0x00,
]

private let srSdes: [RTCPPacket] = [
    .senderReport(RTCPSenderReport(
        ssrc: 0x1111_1111, ntpTimestamp: 0xE123_4567_89AB_CDEF, rtpTimestamp: 0x3C00, packetCount: 100,
        octetCount: 16000,
        reports: [RTCPReportBlock(ssrc: 0x2222_2222, fractionLost: 0x40, cumulativeLost: -2, highestSequence: 0x1_0005,
                                  jitter: 0x20, lastSenderReport: 0x4567_89AB, delaySinceLastSenderReport: 0x1_0000)])),
    .sourceDescription(RTCPSourceDescription(chunks: [
        .init(ssrc: 0x1111_1111, items: [.init(type: 1, value: Array("abc".utf8))]),
    ])),
]

@Suite struct RTPTests {
    // MARK: RTP packets

    @Test func parsesAPlainPacket() throws {
        let bytes: [UInt8] = [0x80, 0xEF, 0x12, 0x34, 0x00, 0x00, 0x09, 0x60, 0x11, 0x11, 0x11, 0x11, 0xFC, 0x01]
        let p = try RTPPacket.parse(bytes)
        #expect(p.marker)
        #expect(p.payloadType == 111)
        #expect(p.sequenceNumber == 0x1234)
        #expect(p.timestamp == 2400)
        #expect(p.ssrc == 0x1111_1111)
        #expect(p.csrcs.isEmpty)
        #expect(p.headerExtension == nil)
        #expect(p.paddingLength == 0)
        #expect(p.payload == [0xFC, 0x01])
        #expect(try p.serialized() == bytes)
    }

    @Test func fullPacketParsesAndSerializesExactly() throws {
        let ext = try RTPHeaderExtension(oneByte: [.init(id: 1, data: [0x30]), .init(id: 3, data: [0x01, 0x02])])
        let built = RTPPacket(payloadType: 96, sequenceNumber: 0xFFFF, timestamp: 0xDEAD_BEEF, ssrc: 0x0102_0304,
                              csrcs: [0xAAAA_AAAA, 0xBBBB_BBBB], headerExtension: ext, payload: [0xF8, 0xFF, 0xFE],
                              paddingLength: 4)
        #expect(try built.serialized() == fullPacketBytes)
        #expect(built.headerLength == 32)
        let parsed = try RTPPacket.parse(fullPacketBytes)
        #expect(parsed == built)
        #expect(try parsed.headerExtension?.elements() == [.init(id: 1, data: [0x30]), .init(id: 3, data: [1, 2])])
        #expect(parsed.headerExtension?.element(id: 3) == [1, 2])
        #expect(parsed.headerExtension?.element(id: 2) == nil)

        // serialize(into:) appends, so one buffer can be reused.
        var buffer: [UInt8] = [9]
        try built.serialize(into: &buffer)
        #expect(buffer == [9] + fullPacketBytes)
    }

    @Test func extensionForms() throws {
        // One-byte: padding between elements is skipped; id 15 ends processing.
        let one = RTPHeaderExtension(profile: 0xBEDE, data: [0x10, 0x30, 0x00, 0x00, 0x21, 0xAA, 0xBB, 0xF0, 0x41, 0x99, 0, 0])
        #expect(one.form == .oneByte)
        #expect(try one.elements() == [.init(id: 1, data: [0x30]), .init(id: 2, data: [0xAA, 0xBB])])
        // Two-byte (appbits 3): zero-length element allowed, padding skipped.
        let two = RTPHeaderExtension(profile: 0x1003, data: [0x05, 0x00, 0x00, 0x07, 0x02, 0x11, 0x22, 0x00])
        #expect(two.form == .twoByte)
        #expect(try two.elements() == [.init(id: 5, data: []), .init(id: 7, data: [0x11, 0x22])])
        let built = try RTPHeaderExtension(twoByte: [.init(id: 200, data: [UInt8](repeating: 7, count: 20))], appBits: 3)
        #expect(built.profile == 0x1003)
        #expect(built.data.count == 24)
        #expect(try built.elements() == [.init(id: 200, data: [UInt8](repeating: 7, count: 20))])

        #expect(throws: RTPError.malformedExtension("element 1 declares 4 bytes, 1 remain")) {
            try RTPHeaderExtension(profile: 0xBEDE, data: [0x13, 0x00]).elements()
        }
        #expect(throws: RTPError.malformedExtension("element 5 has no length byte")) {
            try RTPHeaderExtension(profile: 0x1000, data: [0x05]).elements()
        }
        #expect(throws: RTPError.self) { try RTPHeaderExtension(profile: 0x1000, data: [0x05, 0x09, 0, 0]).elements() }
        #expect(throws: RTPError.notRFC8285Extension(profile: 1)) {
            try RTPHeaderExtension(profile: 1, data: [1, 2, 3, 4]).elements()
        }
        #expect(RTPHeaderExtension(profile: 1, data: []).element(id: 1) == nil)
        #expect(throws: RTPError.self) { try RTPHeaderExtension(oneByte: [.init(id: 15, data: [1])]) }
        #expect(throws: RTPError.self) { try RTPHeaderExtension(oneByte: [.init(id: 1, data: [])]) }
        #expect(throws: RTPError.self) { try RTPHeaderExtension(oneByte: [.init(id: 1, data: [UInt8](repeating: 0, count: 17))]) }
        #expect(throws: RTPError.self) { try RTPHeaderExtension(twoByte: [.init(id: 0, data: [1])]) }
        #expect(throws: RTPError.self) { try RTPHeaderExtension(twoByte: [.init(id: 1, data: [UInt8](repeating: 0, count: 256))]) }

        // Extension data not a multiple of 4 is zero-padded on the wire.
        let odd = RTPPacket(payloadType: 1, sequenceNumber: 1, timestamp: 1, ssrc: 1,
                            headerExtension: RTPHeaderExtension(profile: 0xBEDE, data: [0x10, 0x55]))
        let reparsed = try RTPPacket.parse(try odd.serialized())
        #expect(reparsed.headerExtension?.data == [0x10, 0x55, 0, 0])
        #expect(reparsed.headerExtension?.element(id: 1) == [0x55])
    }

    @Test func padding() throws {
        var bytes: [UInt8] = [0xA0, 111, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0xAB, 0xCD, 0, 0, 3]
        let p = try RTPPacket.parse(bytes)
        #expect(p.payload == [0xAB, 0xCD])
        #expect(p.paddingLength == 3)
        #expect(try p.serialized() == bytes)
        // Padding may eat the whole payload.
        bytes[16] = 5
        #expect(try RTPPacket.parse(bytes).payload == [])
        bytes[16] = 6
        #expect(rtpError(bytes) == .badPadding(count: 6, available: 5))
        bytes[16] = 0
        #expect(rtpError(bytes) == .badPadding(count: 0, available: 5))
        #expect(rtpError([0xA0, 111, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1]) == .badPadding(count: 0, available: 0))
    }

    @Test func parseErrors() {
        #expect(rtpError([]) == .tooShort(length: 0))
        #expect(rtpError([0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]) == .tooShort(length: 11))
        #expect(rtpError([0x40, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]) == .badVersion(1))
        #expect(rtpError([0x83, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4]) == .truncatedCSRCList(count: 3, length: 16))
        #expect(rtpError([0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xBE, 0xDE]) == .truncatedExtension(declared: 4, available: 2))
        #expect(rtpError([0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xBE, 0xDE, 0, 2, 1, 2, 3, 4])
                == .truncatedExtension(declared: 8, available: 4))
        #expect(RTPError.badVersion(3).description == "RTP version is 3, expected 2")
    }

    @Test func serializationErrors() {
        #expect(throws: RTPError.unserializable("payload type 128 exceeds 127")) {
            try RTPPacket(payloadType: 128, sequenceNumber: 0, timestamp: 0, ssrc: 0).serialized()
        }
        #expect(throws: RTPError.self) {
            try RTPPacket(payloadType: 0, sequenceNumber: 0, timestamp: 0, ssrc: 0,
                          csrcs: [UInt32](repeating: 1, count: 16)).serialized()
        }
    }

    // MARK: demultiplexing

    @Test func rfc7983Classification() {
        let cases: [(UInt8, PacketKind)] = [
            (0, .stun), (3, .stun), (4, .other), (15, .other), (16, .zrtp), (19, .zrtp), (20, .dtls), (63, .dtls),
            (64, .turnChannel), (79, .turnChannel), (80, .other), (127, .other), (128, .rtpOrRtcp),
            (191, .rtpOrRtcp), (192, .other), (255, .other),
        ]
        for (byte, kind) in cases { #expect(PacketKind.classify(byte) == kind, "first byte \(byte)") }
        #expect(PacketKind.classify([UInt8]()) == .other)
        #expect(PacketKind.classify(fullPacketBytes) == .rtpOrRtcp)

        #expect(isLikelyRTP(fullPacketBytes))
        #expect(!isLikelyRTCP(fullPacketBytes))
        #expect(isLikelyRTCP(srSdesBytes))
        #expect(!isLikelyRTP(srSdesBytes))
        // Marker + PT 72 is 200 on the wire: RFC 5761 says that is RTCP (SR).
        var rtp72 = [UInt8](repeating: 0, count: 12)
        rtp72[0] = 0x80; rtp72[1] = 0x80 | 72
        #expect(!isLikelyRTP(rtp72))
        rtp72[1] = 72  // no marker: 72 is below the RTCP range
        #expect(isLikelyRTP(rtp72))
        #expect(!isLikelyRTP([0x8F] + [UInt8](repeating: 0, count: 20)))  // 15 CSRCs do not fit
        #expect(!isLikelyRTCP([0x81, 201, 0, 7, 0, 0, 0, 0]))  // length says 32 bytes
        #expect(isRTCPPacketType(200) && isRTCPPacketType(223) && !isRTCPPacketType(224) && !isRTCPPacketType(191))
    }

    // MARK: RTCP

    @Test func parsesSenderReportAndSDES() throws {
        let packets = try RTCPPacket.parseCompound(srSdesBytes)
        #expect(packets == srSdes)
        #expect(packets.map(\.packetType) == [200, 202])
        guard case .sourceDescription(let sdes) = packets[1], case .senderReport(let sr) = packets[0] else {
            Issue.record("wrong packet kinds")
            return
        }
        #expect(sdes.cname(ssrc: 0x1111_1111) == "abc")
        #expect(sdes.cname(ssrc: 0x2222_2222) == nil)
        #expect(sr.compactNTP == 0x4567_89AB)
        #expect(try RTCPPacket.serializeCompound(srSdes) == srSdesBytes)
    }

    @Test func receiverReportSerializesExactly() throws {
        let rr = RTCPPacket.receiverReport(RTCPReceiverReport(ssrc: 0x0A0B_0C0D, reports: [
            RTCPReportBlock(ssrc: 0x1111_1111, fractionLost: 51, cumulativeLost: 2, highestSequence: 65540, jitter: 2,
                            lastSenderReport: 0x1234_5678, delaySinceLastSenderReport: 0x8000),
        ]))
        let expected: [UInt8] = [
            0x81, 201, 0x00, 0x07, 0x0A, 0x0B, 0x0C, 0x0D,
            0x11, 0x11, 0x11, 0x11, 51, 0x00, 0x00, 0x02, 0x00, 0x01, 0x00, 0x04,
            0x00, 0x00, 0x00, 0x02, 0x12, 0x34, 0x56, 0x78, 0x00, 0x00, 0x80, 0x00,
        ]
        #expect(try rr.serialized() == expected)
        #expect(try RTCPPacket.parseCompound(expected) == [rr])

        // Cumulative loss saturates at the 24-bit limits and negative values survive the round trip.
        let clamp = RTCPPacket.receiverReport(RTCPReceiverReport(ssrc: 1, reports: [
            RTCPReportBlock(ssrc: 2, cumulativeLost: 9_000_000), RTCPReportBlock(ssrc: 3, cumulativeLost: -9_000_000),
            RTCPReportBlock(ssrc: 4, cumulativeLost: -1),
        ]))
        guard case .receiverReport(let back) = try RTCPPacket.parseCompound(try clamp.serialized())[0] else {
            Issue.record("not an RR")
            return
        }
        #expect(back.reports.map(\.cumulativeLost) == [0x7F_FFFF, -0x80_0000, -1])
        // An empty RR (no report blocks) is 8 bytes.
        #expect(try RTCPPacket.receiverReport(RTCPReceiverReport(ssrc: 7)).serialized() == [0x80, 201, 0, 1, 0, 0, 0, 7])
    }

    @Test func byeAppFeedbackAndPadding() throws {
        let bye: [UInt8] = [0x82, 203, 0, 3, 0, 0, 0, 1, 0, 0, 0, 2, 3, 0x62, 0x79, 0x65]
        let app: [UInt8] = [0x85, 204, 0, 2, 0, 0, 0, 9, 0x6E, 0x61, 0x6D, 0x65]
        let pli: [UInt8] = [0x81, 206, 0, 2, 0, 0, 0, 9, 0x11, 0x11, 0x11, 0x11]
        let paddedRR: [UInt8] = [0xA0, 201, 0, 2, 0, 0, 0, 5, 0, 0, 0, 4]
        let packets = try RTCPPacket.parseCompound(bye + app + pli + paddedRR)
        #expect(packets == [
            .goodbye(RTCPGoodbye(ssrcs: [1, 2], reason: Array("bye".utf8))),
            .other(RTCPRawPacket(packetType: 204, count: 5, body: [0, 0, 0, 9, 0x6E, 0x61, 0x6D, 0x65])),
            .other(RTCPRawPacket(packetType: 206, count: 1, body: [0, 0, 0, 9, 0x11, 0x11, 0x11, 0x11])),
            .receiverReport(RTCPReceiverReport(ssrc: 5)),
        ])
        #expect(try RTCPPacket.serializeCompound(Array(packets.prefix(3))) == bye + app + pli)
        #expect(try RTCPPacket.goodbye(RTCPGoodbye(ssrcs: [1])).serialized() == [0x81, 203, 0, 1, 0, 0, 0, 1])
    }

    @Test func rtcpParseErrors() {
        #expect(rtcpError([])?.kind == .truncated)
        #expect(rtcpError([0x81, 200, 0])?.kind == .truncated)
        let overrun = rtcpError([0x80, 201, 0, 5, 0, 0, 0, 1])
        #expect(overrun?.kind == .truncated)
        #expect(overrun?.description == "RTCP packet 0 at byte offset 0: packet type 201 declares 24 bytes, only 8 remain")
        #expect(rtcpError([0x40, 201, 0, 1, 0, 0, 0, 0])?.kind == .badVersion)
        #expect(rtcpError([0x82, 201, 0, 1, 0, 0, 0, 0])?.kind == .malformed)   // 2 report blocks in 8 bytes
        #expect(rtcpError([0x81, 200, 0, 1, 0, 0, 0, 0])?.kind == .malformed)   // SR without sender info
        #expect(rtcpError([0x81, 202, 0, 2, 0, 0, 0, 1, 1, 10, 0x61, 0x62])?.kind == .malformed)
        #expect(rtcpError([0x82, 202, 0, 2, 0, 0, 0, 1, 1, 1, 0x61, 0])?.kind == .malformed)  // 2nd chunk missing
        #expect(rtcpError([0x83, 203, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2])?.kind == .malformed)
        #expect(rtcpError([0x81, 203, 0, 2, 0, 0, 0, 1, 9, 0x61, 0x62, 0x63])?.kind == .malformed)  // reason overrun
        #expect(rtcpError([0xA0, 201, 0, 1, 0, 0, 0, 0])?.kind == .badPadding)   // pad count 0
        #expect(rtcpError([0xA0, 201, 0, 1, 0, 0, 0, 9])?.kind == .badPadding)   // pad count > packet
        // The error points at the packet that is wrong.
        let second = rtcpError([0x80, 201, 0, 1, 0, 0, 0, 1, 0x80, 201, 0, 9])
        #expect(second?.packetIndex == 1)
        #expect(second?.offset == 8)
    }

    @Test func rtcpSerializationErrorsLeaveTheBufferAlone() {
        let many = RTCPPacket.receiverReport(RTCPReceiverReport(ssrc: 1, reports: (0..<32).map { RTCPReportBlock(ssrc: $0) }))
        var out: [UInt8] = [1, 2, 3]
        #expect(throws: RTCPError.self) { try many.serialize(into: &out) }
        #expect(out == [1, 2, 3])
        let longItem = RTCPPacket.sourceDescription(RTCPSourceDescription(chunks: [
            .init(ssrc: 1, items: [.init(type: 1, value: [UInt8](repeating: 0x61, count: 256))]),
        ]))
        #expect(throws: RTCPError.self) { try longItem.serialize(into: &out) }
        #expect(out == [1, 2, 3])
        #expect(throws: RTCPError.self) { try RTCPPacket.other(RTCPRawPacket(packetType: 204, count: 0, body: [1])).serialized() }
        #expect(throws: RTCPError.self) { try RTCPPacket.other(RTCPRawPacket(packetType: 204, count: 32, body: [])).serialized() }
    }

    // MARK: unwrapping

    @Test func sequenceUnwrapAcrossTheWrap() {
        var u = SequenceUnwrapper()
        #expect([65534, 65535, 0, 1].map { u.unwrap($0) } == [65534, 65535, 65536, 65537])
        var r = SequenceUnwrapper()
        // Reordered around the wrap: late 65535 after 0, late 1 after 2.
        #expect([65534, 0, 65535, 2, 1, 3].map { r.unwrap($0) } == [65534, 65536, 65535, 65538, 65537, 65539])
        #expect(r.highest == 65539)
        // Older than the first packet, across the wrap backwards.
        var b = SequenceUnwrapper()
        #expect([2, 65535, 3].map { b.unwrap($0) } == [2, -1, 3])
        // Long run: three full wraps in steps of 1000.
        var long = SequenceUnwrapper()
        var last: Int64 = 0
        for i in 0..<200 { last = long.unwrap(UInt16(truncatingIfNeeded: 60_000 + i * 1000)) }
        #expect(last == 60_000 + 199 * 1000)
        #expect(long.peek(0) == 262_144)
    }

    @Test func timestampUnwrapAcrossTheWrap() {
        var u = TimestampUnwrapper()
        let start: UInt32 = 0xFFFF_FC40  // 960 before the wrap
        let ts = [start, start &+ 960, start &+ 1920, start &+ 960 * 3]
        #expect(ts.map { u.unwrap($0) } == [4_294_966_336, 4_294_967_296, 4_294_968_256, 4_294_969_216])
        #expect(u.unwrap(start &+ 960) == 4_294_967_296)  // late packet lands before the highest
        #expect(u.highest == 4_294_969_216)
    }

    // MARK: reception statistics

    @Test func lossAndFractionLostAcrossTheWrap() {
        var s = RTPReceptionStats()
        for seq: UInt16 in [65530, 65531, 65532, 65534, 65535, 0, 2, 3] {
            s.record(sequenceNumber: seq, timestamp: 0, arrival: 0)
        }
        #expect(s.received == 8)
        #expect(s.extendedHighestSequence == 65539)
        #expect(s.expected == 10)
        #expect(s.lost == 2)
        let block = s.makeReportBlock(ssrc: 0xABCD)
        #expect(block.fractionLost == 51)  // 2 * 256 / 10
        #expect(block.cumulativeLost == 2)
        #expect(block.highestSequence == 65539)
        #expect(block.ssrc == 0xABCD)
        // The late packets arrive: nothing new expected, more received, so no loss this interval.
        s.record(sequenceNumber: 1, timestamp: 0, arrival: 0)
        s.record(sequenceNumber: 65533, timestamp: 0, arrival: 0)
        #expect(s.lost == 0)
        #expect(s.takeFractionLost() == 0)
        // A duplicate makes the cumulative count negative, as A.3 allows.
        s.record(sequenceNumber: 3, timestamp: 0, arrival: 0)
        #expect(s.lost == -1)
        // Next interval: 4...13 with 4 of 10 missing, but the duplicate above also counts as received
        // in this interval, so A.3 sees 10 expected, 7 received: 3 * 256 / 10.
        for seq: UInt16 in [4, 6, 8, 10, 12, 13] { s.record(sequenceNumber: seq, timestamp: 0, arrival: 0) }
        #expect(s.takeFractionLost() == 76)
        #expect(s.lost == 3)
    }

    @Test func largeJumpNeedsTwoSequentialPacketsToRestart() {
        var s = RTPReceptionStats()
        for seq: UInt16 in 100...104 { s.record(sequenceNumber: seq, timestamp: 0, arrival: 0) }
        let stray = s.record(sequenceNumber: 30000, timestamp: 0, arrival: 0)
        #expect(!stray)
        #expect(s.discarded == 1)
        #expect(s.received == 5 && s.expected == 5)
        // A lone stray does not restart; 30001 following 30000 does.
        let next = s.record(sequenceNumber: 30001, timestamp: 0, arrival: 0)
        #expect(next)
        #expect(s.received == 1)
        #expect(s.expected == 1)
        #expect(s.extendedHighestSequence == 30001)
    }

    @Test func jitterMatchesAHandComputedExample() {
        // 8 kHz clock, 20 ms packets (160 units). Transit times: 0, 10, 0, 20 → |D| = 10, 10, 20.
        // J1 = 10/16 = 0.625; J2 = 0.625 + (10 - 0.625)/16 = 1.2109375; J3 = J2 + (20 - J2)/16 = 2.38525390625.
        var s = RTPReceptionStats()
        let arrivals: [Int64] = [1000, 1170, 1320, 1500]
        var history: [Double] = []
        for (i, arrival) in arrivals.enumerated() {
            let p = RTPPacket(payloadType: 0, sequenceNumber: UInt16(i), timestamp: UInt32(1000 + 160 * i), ssrc: 0x77)
            s.record(p, arrival: arrival)
            history.append(s.jitter)
        }
        #expect(history == [0, 0.625, 1.2109375, 2.38525390625])
        #expect(s.ssrc == 0x77)
        let block = s.makeReportBlock()
        #expect(block.jitter == 2)
        #expect(block.ssrc == 0x77)
        #expect(block.fractionLost == 0)

        // The same transit changes across an RTP timestamp wrap give the same jitter.
        var w = RTPReceptionStats()
        for (i, arrival) in arrivals.enumerated() {
            w.record(sequenceNumber: UInt16(i), timestamp: UInt32.max - 200 &+ UInt32(160 * i), arrival: arrival)
        }
        #expect(w.jitter == 2.38525390625)
    }

    // MARK: fuzz

    @Test func fuzzedRTPAndRTCPNeverTrap() throws {
        var rng = PCTRandom(seed: 0xF00D_2026)
        let twoByte = try RTPPacket(payloadType: 111, sequenceNumber: 7, timestamp: 9, ssrc: 3, marker: true,
                                    headerExtension: RTPHeaderExtension(twoByte: [.init(id: 9, data: [1, 2, 3])]),
                                    payload: [UInt8](repeating: 0xAA, count: 40)).serialized()
        let rtpSeeds = [fullPacketBytes, twoByte, [0x80, 0x6F, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0xFC]]
        let rtcpSeeds = [
            srSdesBytes,
            [0x82, 203, 0, 3, 0, 0, 0, 1, 0, 0, 0, 2, 3, 0x62, 0x79, 0x65],
            [0x81, 206, 0, 2, 0, 0, 0, 9, 0x11, 0x11, 0x11, 0x11, 0xA0, 201, 0, 2, 0, 0, 0, 5, 0, 0, 0, 4],
            try RTCPPacket.serializeCompound([.sourceDescription(RTCPSourceDescription(chunks: [
                .init(ssrc: 1, items: [.init(type: 1, value: [0x61]), .init(type: 2, value: [0x62, 0x63])]),
                .init(ssrc: 2, items: []),
            ]))]),
        ]

        func mutate(_ seed: [UInt8], _ i: Int) -> [UInt8] {
            if i % 8 == 0 {
                return rng.bytes(Int.random(in: 0...64, using: &rng))
            }
            var b = seed
            switch Int.random(in: 0..<4, using: &rng) {
            case 0:
                for _ in 0..<Int.random(in: 1...4, using: &rng) {
                    b[Int.random(in: 0..<b.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                }
            case 1:
                b = Array(b.prefix(Int.random(in: 0...b.count, using: &rng)))
            case 2:
                b[0] = 0x80 | UInt8.random(in: 0...0x3F, using: &rng)  // keep version 2, vary P/X/CC or P/count
                b[b.count - 1] = UInt8.random(in: 0...255, using: &rng)
            default:
                b += rng.bytes(Int.random(in: 1...8, using: &rng))
            }
            return b
        }

        var rtpOK = 0, rtcpOK = 0, rtcpRoundTrips = 0
        for i in 0..<30_000 {
            let input = mutate(rtpSeeds[i % rtpSeeds.count], i)
            if let p = try? RTPPacket.parse(input) {
                rtpOK += 1
                // Whatever parses serializes, and reparses to the same packet.
                let again = try RTPPacket.parse(try p.serialized())
                #expect(again == p)
                _ = try? p.headerExtension?.elements()
            }
        }
        for i in 0..<30_000 {
            let input = mutate(rtcpSeeds[i % rtcpSeeds.count], i)
            do {
                let packets = try RTCPPacket.parseCompound(input)
                rtcpOK += 1
                if let bytes = try? RTCPPacket.serializeCompound(packets) {
                    rtcpRoundTrips += 1
                    #expect(try RTCPPacket.parseCompound(bytes) == packets)
                }
            } catch {
                #expect(!error.description.isEmpty)
            }
        }
        #expect(rtpOK > 5000)
        #expect(rtcpOK > 3000)
        #expect(rtcpRoundTrips > 3000)
    }
}
