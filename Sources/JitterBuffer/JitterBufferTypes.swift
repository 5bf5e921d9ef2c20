/// Tuning of a `JitterBuffer`. Defaults follow NetEQ's shape: start near 80 ms, follow the 95th
/// percentile of relative arrival delay, stay within 40-200 ms.
public struct JitterBufferConfiguration: Sendable, Equatable {
    public var initialDelayMs: Double = 80
    public var minDelayMs: Double = 40
    public var maxDelayMs: Double = 200
    /// Which quantile of relative arrival delay the target follows.
    public var percentile: Double = 0.95
    /// Added to the quantile: one 10 ms mix block plus headroom, so a packet arriving at the
    /// quantile is still decoded before its first sample is due.
    public var safetyMarginMs: Double = 20
    /// Memory of the delay statistics: time constant of the histogram's forgetting and length of
    /// the window the fastest (reference) transit is taken from.
    public var historySeconds: Double = 2
    /// Concealment runs at full level this long, then fades out over `fadeMs` to silence.
    public var concealmentMs: Double = 100
    public var fadeMs: Double = 20
    /// A timestamp this far from what the sequence numbers imply means a new timeline (resync).
    public var resyncThresholdMs: Double = 1000
    /// Packet slots (by sequence number); 256 covers 2.5 s even at 10 ms packets.
    public var slots: Int = 256
    /// Larger payloads are dropped as malformed (one MTU is the practical ceiling for RTP Opus).
    public var maxPayloadBytes: Int = 1500

    public init() {}
}

/// Added latency per packet: from its arrival to the program time its first sample is rendered
/// (measured when the packet is decoded; later cuts or stretches are not reflected). Cumulative
/// since the buffer was created; p95 has 1 ms resolution.
public struct JitterLatencyStats: Sendable, Equatable, Codable {
    public var packets: Int = 0
    public var meanMs: Double = 0
    public var p95Ms: Double = 0
    public var maxMs: Double = 0
    public var lastMs: Double = 0

    public init() {}
}

public struct JitterBufferStats: Sendable, Equatable, Codable {
    /// Every packet handed to `insert`, whatever became of it.
    public var received = 0
    /// The same sequence number again (still buffered or already played).
    public var duplicates = 0
    /// Arrived after its playout time (or from a stream/timeline already left behind); dropped.
    public var late = 0
    /// Payload that is not a valid Opus packet (or over `maxPayloadBytes`); dropped.
    public var malformed = 0
    /// Sequence numbers playout had to skip because they never arrived (including FEC-recovered ones).
    public var lost = 0
    /// Lost packets rebuilt from the next packet's in-band FEC.
    public var fecRecovered = 0
    /// Frames produced by packet-loss concealment (not counting the silence after the fade).
    public var concealedFrames: Int64 = 0
    /// Times the buffer ran dry while playing (includes DTX pauses: they look the same until the next packet).
    public var underruns = 0
    /// New timeline: SSRC change, timestamp jump inconsistent with sequence numbers, or sequence jump.
    public var resyncs = 0
    /// Same timeline re-anchored because packets resumed after concealment had faded out and they
    /// were all late (a sender pause without a timestamp jump, or a long network stall).
    public var reanchors = 0
    /// Frames inserted (concealment without consuming packets) to raise the delay.
    public var stretchedFrames: Int64 = 0
    /// Frames removed (crossfaded cuts) to lower the delay.
    public var shrunkFrames: Int64 = 0
    /// Packets libopus refused at decode time (concealed instead).
    public var decodeErrors = 0
    /// How long the fastest recent packets wait before playout (playout offset minus the minimum
    /// transit of the last `historySeconds`), the quantity steered toward the target.
    public var currentDelayMs: Double = 0
    public var targetDelayMs: Double = 0
    public var latency = JitterLatencyStats()

    public init() {}
}

/// Short name for the stats, as reports call them.
public typealias JitterStats = JitterBufferStats
