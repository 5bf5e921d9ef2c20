/// Per-source reception statistics (RFC 3550 appendix A.1, A.3 and A.8).
///
/// Feed every RTP packet of one SSRC with its arrival time expressed in the stream's timestamp
/// units (arrival seconds × clock rate). Unlike A.1 there is no probation: the first packet starts
/// the source, since callers have already selected the stream by SSRC.
public struct RTPReceptionStats: Sendable {
    /// A jump this far ahead is a gap in order (A.1's MAX_DROPOUT).
    public static let maxDropout: UInt16 = 3000
    /// A packet this far behind is late or a duplicate (A.1's MAX_MISORDER).
    public static let maxMisorder: UInt16 = 100

    /// SSRC of the first packet fed through `record(_:arrival:)`.
    public private(set) var ssrc: UInt32?
    /// Packets counted (duplicates and late packets included, as in A.1).
    public private(set) var received: Int64 = 0
    /// Interarrival jitter estimate in timestamp units (A.8).
    public private(set) var jitter: Double = 0
    /// Packets ignored as an unexplained large sequence jump (A.1's bad_seq); two in a row restart.
    public private(set) var discarded: Int64 = 0

    private var started = false
    private var baseSequence: UInt16 = 0
    private var maxSequence: UInt16 = 0
    private var cycles: Int64 = 0
    private var badSequence: Int32 = 65_537  // RTP_SEQ_MOD + 1: matches no sequence number
    private var expectedPrior: Int64 = 0
    private var receivedPrior: Int64 = 0
    private var lastTransit: UInt32 = 0
    private var haveTransit = false

    public init() {}

    /// Extended highest sequence number received (cycles × 65536 + highest), A.1.
    public var extendedHighestSequence: Int64 { cycles + Int64(maxSequence) }

    /// Packets expected: extended highest - base + 1 (A.3); 0 before the first packet.
    public var expected: Int64 { started ? extendedHighestSequence - Int64(baseSequence) + 1 : 0 }

    /// Cumulative packets lost: expected - received. Negative when duplicates arrived.
    public var lost: Int64 { expected - received }

    @discardableResult
    public mutating func record(_ packet: RTPPacket, arrival: Int64) -> Bool {
        if ssrc == nil { ssrc = packet.ssrc }
        return record(sequenceNumber: packet.sequenceNumber, timestamp: packet.timestamp, arrival: arrival)
    }

    /// Counts one packet. Returns false when it was set aside as an unexplained jump (A.1).
    @discardableResult
    public mutating func record(sequenceNumber seq: UInt16, timestamp: UInt32, arrival: Int64) -> Bool {
        if !started {
            restart(at: seq)
            started = true
        } else {
            let udelta = seq &- maxSequence
            if udelta < Self.maxDropout {
                // In order, possibly with a gap; a smaller number means the 16-bit counter wrapped.
                if seq < maxSequence { cycles += 65_536 }
                maxSequence = seq
            } else if udelta <= UInt16.max - Self.maxMisorder + 1 {
                // A big jump: accept it only if the next packet continues from it (sender restart).
                if Int32(seq) == badSequence {
                    restart(at: seq)
                } else {
                    badSequence = Int32((UInt32(seq) + 1) & 0xFFFF)
                    discarded += 1
                    return false
                }
            }
            // else: duplicate or reordered packet within MAX_MISORDER; counted, max unchanged.
        }
        received += 1
        updateJitter(timestamp: timestamp, arrival: arrival)
        return true
    }

    /// A.8: J += (|D| - J) / 16, D being the change in relative transit time between packets.
    private mutating func updateJitter(timestamp: UInt32, arrival: Int64) {
        // 32-bit modular arithmetic, as in the RFC, keeps timestamp wraps harmless.
        let transit = UInt32(truncatingIfNeeded: arrival) &- timestamp
        if haveTransit {
            let d = Int64(Int32(bitPattern: transit &- lastTransit)).magnitude
            jitter += (Double(d) - jitter) / 16
        }
        lastTransit = transit
        haveTransit = true
    }

    private mutating func restart(at seq: UInt16) {
        baseSequence = seq
        maxSequence = seq
        badSequence = 65_537
        cycles = 0
        received = 0
        receivedPrior = 0
        expectedPrior = 0
    }

    /// Fraction lost since the previous call, in 1/256 (A.3), and starts a new interval.
    public mutating func takeFractionLost() -> UInt8 {
        let expectedNow = expected
        let expectedInterval = expectedNow - expectedPrior
        expectedPrior = expectedNow
        let receivedInterval = received - receivedPrior
        receivedPrior = received
        let lostInterval = expectedInterval - receivedInterval
        guard expectedInterval > 0, lostInterval > 0 else { return 0 }
        return UInt8(min(255, (lostInterval << 8) / expectedInterval))
    }

    /// A report block for this source; consumes the fraction-lost interval.
    public mutating func makeReportBlock(ssrc: UInt32? = nil, lastSenderReport: UInt32 = 0,
                                         delaySinceLastSenderReport: UInt32 = 0) -> RTCPReportBlock {
        let fraction = takeFractionLost()
        let cumulative = Int32(clamping: min(max(lost, -0x80_0000), 0x7F_FFFF))
        return RTCPReportBlock(ssrc: ssrc ?? self.ssrc ?? 0, fractionLost: fraction, cumulativeLost: cumulative,
                               highestSequence: UInt32(truncatingIfNeeded: extendedHighestSequence),
                               jitter: UInt32(jitter), lastSenderReport: lastSenderReport,
                               delaySinceLastSenderReport: delaySinceLastSenderReport)
    }
}
