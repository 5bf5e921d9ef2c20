#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import RTP

/// Clocks used by the media path.
public enum MediaClock {
    /// CLOCK_MONOTONIC in nanoseconds: the clock of `onAudioRTP`'s `arrivalNs`.
    public static func monotonicNanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }

    /// The wall clock as a 64-bit NTP timestamp (seconds since 1900 . 32-bit fraction).
    public static func ntpNow() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        let seconds = UInt64(ts.tv_sec) &+ 2_208_988_800
        let fraction = (UInt64(ts.tv_nsec) << 32) / 1_000_000_000
        return seconds << 32 | fraction
    }

    /// The middle 32 bits of an NTP timestamp (units of 1/65536 s), as LSR/LRR carry it.
    static func compact(_ ntp: UInt64) -> UInt32 { UInt32(truncatingIfNeeded: ntp >> 16) }

    /// Nanoseconds as 1/65536 s, saturating.
    static func units65536(nanoseconds ns: UInt64) -> UInt32 {
        let v = Double(ns) / 1e9 * 65_536
        return v >= Double(UInt32.max) ? UInt32.max : UInt32(v)
    }
}

/// The receiver's side of RTCP for one subscription: remembers the sender's reports, builds our
/// receiver reports (RR + SDES CNAME [+ XR RRTR]) and takes round-trip times from DLRR answers.
/// Pure: the caller passes the clocks in. Not thread-safe (the peer connection's lock guards it).
struct ReceiverRTCP {
    let localSSRC: UInt32
    let cname: [UInt8]
    let clockRate: Int

    private(set) var audioSSRC: UInt32?
    private(set) var reception = RTPReceptionStats()
    private(set) var ssrcChanges = 0
    /// The audio source's last sender report and when it arrived.
    private(set) var lastSenderReport: PeerSenderReport?
    private(set) var roundTripTime: Duration?

    init(localSSRC: UInt32, cname: String, clockRate: Int) {
        self.localSSRC = localSSRC
        self.cname = Array(cname.utf8.prefix(255))
        self.clockRate = max(clockRate, 1)
    }

    /// Counts one audio packet. Returns true when the SSRC changed (the statistics restarted).
    @discardableResult
    mutating func recordAudio(_ packet: RTPPacket, arrivalNs: UInt64) -> Bool {
        var changed = false
        if audioSSRC != packet.ssrc {
            if audioSSRC != nil {
                ssrcChanges += 1
                changed = true
            }
            audioSSRC = packet.ssrc
            reception = RTPReceptionStats()
            if lastSenderReport?.ssrc != packet.ssrc { lastSenderReport = nil }
        }
        // Arrival in RTP timestamp units, for the jitter estimate (RFC 3550 A.8).
        let units = Int64(Double(arrivalNs) * Double(clockRate) / 1e9)
        reception.record(packet, arrival: units)
        return changed
    }

    /// Remembers an SR. Returns true when it is the audio source's (or arrives before any audio).
    @discardableResult
    mutating func senderReport(_ sr: RTCPSenderReport, arrivalNs: UInt64) -> Bool {
        guard audioSSRC == nil || audioSSRC == sr.ssrc else { return false }
        lastSenderReport = PeerSenderReport(ssrc: sr.ssrc, ntpTimestamp: sr.ntpTimestamp, rtpTimestamp: sr.rtpTimestamp,
                                            packetCount: sr.packetCount, octetCount: sr.octetCount, arrivalNs: arrivalNs)
        return true
    }

    /// An XR packet (raw, after its 4-byte header): takes the RTT from a DLRR sub-block about us
    /// (RFC 3611 4.5): RTT = now − LRR − DLRR, all in 1/65536 s. Returns the new RTT if any.
    @discardableResult
    mutating func extendedReport(body: [UInt8], ntpNow: UInt64) -> Duration? {
        guard body.count >= 4 else { return nil }
        var o = 4  // sender SSRC
        var found: Duration?
        while body.count - o >= 4 {
            let blockType = body[o]
            let words = Int(body[o + 2]) << 8 | Int(body[o + 3])
            let end = o + 4 + words * 4
            guard end <= body.count else { break }
            if blockType == 5 {
                var s = o + 4
                while end - s >= 12 {
                    let ssrc = be32(body, s), lrr = be32(body, s + 4), dlrr = be32(body, s + 8)
                    if ssrc == localSSRC, lrr != 0 {
                        let rtt = MediaClock.compact(ntpNow) &- lrr &- dlrr
                        // A wrapped (negative) result means clocks or echo are off: ignore it.
                        if rtt < 0x8000_0000 {
                            found = .nanoseconds(Int64(rtt) * 1_000_000_000 / 65_536)
                        }
                    }
                    s += 12
                }
            }
            o = end
        }
        if let found { roundTripTime = found }
        return found
    }

    /// Builds the plain compound report: RR (with a block for the audio source once it has sent),
    /// SDES CNAME, optionally XR RRTR, optionally BYE, into `out` (replaced; its capacity is reused).
    mutating func makeReport(into out: inout [UInt8], nowNs: UInt64, ntpNow: UInt64, includeRRTR: Bool, bye: Bool = false) {
        out.removeAll(keepingCapacity: true)
        var blocks: [RTCPReportBlock] = []
        if let ssrc = audioSSRC, reception.received > 0 {
            var lsr: UInt32 = 0, dlsr: UInt32 = 0
            if let sr = lastSenderReport, sr.ssrc == ssrc {
                lsr = MediaClock.compact(sr.ntpTimestamp)
                dlsr = MediaClock.units65536(nanoseconds: nowNs >= sr.arrivalNs ? nowNs - sr.arrivalNs : 0)
            }
            blocks.append(reception.makeReportBlock(ssrc: ssrc, lastSenderReport: lsr, delaySinceLastSenderReport: dlsr))
        }
        var packets: [RTCPPacket] = [
            .receiverReport(RTCPReceiverReport(ssrc: localSSRC, reports: blocks)),
            .sourceDescription(RTCPSourceDescription(chunks: [.init(ssrc: localSSRC, items: [.init(type: RTCPSourceDescription.Item.cname, value: cname)])])),
        ]
        if includeRRTR {
            // XR header SSRC, then block type 4, reserved, length 2 words, NTP timestamp.
            var body: [UInt8] = []
            body.reserveCapacity(16)
            appendBE32(&body, localSSRC)
            body += [4, 0, 0, 2]
            appendBE32(&body, UInt32(truncatingIfNeeded: ntpNow >> 32))
            appendBE32(&body, UInt32(truncatingIfNeeded: ntpNow))
            packets.append(.other(RTCPRawPacket(packetType: RTCPPacketType.extendedReport, count: 0, body: body)))
        }
        if bye { packets.append(.goodbye(RTCPGoodbye(ssrcs: [localSSRC]))) }
        for p in packets {
            // Our own packets are always within limits; a failure would leave `out` as it was.
            try? p.serialize(into: &out)
        }
    }

    /// Packets lost so far and jitter in seconds, for stats.
    var lost: Int64 { reception.lost }
    var jitterSeconds: Double { reception.jitter / Double(clockRate) }
}

@inline(__always) private func be32(_ b: [UInt8], _ i: Int) -> UInt32 {
    UInt32(b[i]) << 24 | UInt32(b[i + 1]) << 16 | UInt32(b[i + 2]) << 8 | UInt32(b[i + 3])
}

@inline(__always) private func appendBE32(_ b: inout [UInt8], _ v: UInt32) {
    b.append(UInt8(v >> 24)); b.append(UInt8(truncatingIfNeeded: v >> 16))
    b.append(UInt8(truncatingIfNeeded: v >> 8)); b.append(UInt8(truncatingIfNeeded: v))
}
