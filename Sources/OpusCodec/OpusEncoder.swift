import COpus

public enum OpusApplication: Sendable {
    case voip, audio, restrictedLowDelay
    var code: Int32 {
        switch self {
        case .voip: return OPUS_APPLICATION_VOIP
        case .audio: return OPUS_APPLICATION_AUDIO
        case .restrictedLowDelay: return OPUS_APPLICATION_RESTRICTED_LOWDELAY
        }
    }
}

public enum OpusSignal: Sendable {
    case auto, voice, music
    var code: Int32 {
        switch self {
        case .auto: return OPUS_AUTO
        case .voice: return OPUS_SIGNAL_VOICE
        case .music: return OPUS_SIGNAL_MUSIC
        }
    }
}

/// libopus encoder at 48 kHz (tests, fixtures, and later a return feed). Input is interleaved Float32
/// with `channels` channels. Each `encode` call may use any Opus frame size, so a stream can switch.
public final class OpusEncoder {
    public static let sampleRate = 48_000
    /// Frame sizes libopus accepts at 48 kHz: 2.5, 5, 10, 20, 40, 60 (and 80, 100, 120) ms.
    public static let validFrameSizes: Set<Int> = [120, 240, 480, 960, 1920, 2880, 3840, 4800, 5760]
    /// Enough for any packet: 1275 bytes per frame, up to 6 frames, plus framing.
    public static let maxPacketBytes = 1275 * 6 + 12

    public let channels: Int
    public let frameSize: Int
    private let state: OpaquePointer

    /// - Parameters:
    ///   - frameSize: default frames per packet for the array `encode` (2.5-60 ms: 120...2880).
    ///   - bitrate: bits/s, nil for libopus's default for the channel count.
    ///   - fec: in-band FEC (SILK LBRR); libopus only adds it when `packetLossPercent` > 0 and the
    ///     packet is SILK or hybrid coded.
    public init(channels: Int = 1, application: OpusApplication = .voip, frameSize: Int = 960,
                bitrate: Int? = nil, fec: Bool = false, packetLossPercent: Int = 0, dtx: Bool = false,
                signal: OpusSignal = .auto, complexity: Int? = nil) throws {
        guard channels == 1 || channels == 2 else {
            throw OpusError(code: OPUS_BAD_ARG, operation: "encoder create", detail: "\(channels) channels; 1 or 2 expected")
        }
        guard Self.validFrameSizes.contains(frameSize) else {
            throw OpusError(code: OPUS_BAD_ARG, operation: "encoder create", detail: "frame size \(frameSize) is not an Opus frame size at 48 kHz")
        }
        var err: Int32 = OPUS_OK
        guard let st = opus_encoder_create(Int32(Self.sampleRate), Int32(channels), application.code, &err), err == OPUS_OK else {
            throw OpusError(code: err == OPUS_OK ? OPUS_ALLOC_FAIL : err, operation: "encoder create")
        }
        state = st
        self.channels = channels
        self.frameSize = frameSize
        if let bitrate { try setBitrate(bitrate) }
        _ = try opusCheck(copus_enc_set_inband_fec(state, fec ? 1 : 0), "set inband FEC")
        try setPacketLossPercent(packetLossPercent)
        _ = try opusCheck(copus_enc_set_dtx(state, dtx ? 1 : 0), "set DTX")
        _ = try opusCheck(copus_enc_set_signal(state, signal.code), "set signal")
        if let complexity { _ = try opusCheck(copus_enc_set_complexity(state, Int32(clamping: complexity)), "set complexity") }
    }

    deinit { opus_encoder_destroy(state) }

    public func setBitrate(_ bitsPerSecond: Int) throws {
        _ = try opusCheck(copus_enc_set_bitrate(state, Int32(clamping: bitsPerSecond)), "set bitrate \(bitsPerSecond)")
    }

    public func setPacketLossPercent(_ percent: Int) throws {
        _ = try opusCheck(copus_enc_set_packet_loss_perc(state, Int32(clamping: percent)), "set packet loss \(percent)%")
    }

    /// Encoder delay in frames (what the decoded stream lags the input by).
    public var lookahead: Int {
        var v: Int32 = 0
        return copus_enc_get_lookahead(state, &v) == OPUS_OK ? Int(v) : 0
    }

    /// Encodes `frames` frames (a valid Opus frame size) from `pcm` into `out`. Returns the packet
    /// length; 1-2 bytes means a DTX frame that a sender would not transmit.
    public func encode(_ pcm: UnsafePointer<Float>, frames: Int, into out: UnsafeMutablePointer<UInt8>, capacity: Int) throws -> Int {
        guard Self.validFrameSizes.contains(frames) else {
            throw OpusError(code: OPUS_BAD_ARG, operation: "encode", detail: "frame size \(frames) is not an Opus frame size at 48 kHz")
        }
        guard capacity > 0 else { throw OpusError(code: OPUS_BUFFER_TOO_SMALL, operation: "encode") }
        let n = opus_encode_float(state, pcm, Int32(frames), out, Int32(clamping: capacity))
        return try opusCheck(n, "encode")
    }

    /// Encodes one packet from `pcm` (`frames` frames, default `frameSize`). Allocates: for tests and fixtures.
    public func encode(_ pcm: ArraySlice<Float>, frames: Int? = nil) throws -> [UInt8] {
        let n = frames ?? frameSize
        guard pcm.count >= n * channels else {
            throw OpusError(code: OPUS_BAD_ARG, operation: "encode", detail: "\(pcm.count) samples for \(n) frames of \(channels) channels")
        }
        var out = [UInt8](repeating: 0, count: Self.maxPacketBytes)
        let len = try pcm.withUnsafeBufferPointer { p in
            try out.withUnsafeMutableBufferPointer { o in
                guard let src = p.baseAddress, let dst = o.baseAddress else {
                    throw OpusError(code: OPUS_BAD_ARG, operation: "encode", detail: "empty buffer")
                }
                return try encode(src, frames: n, into: dst, capacity: o.count)
            }
        }
        out.removeSubrange(len...)
        return out
    }

    /// Cuts `pcm` into `frameSize` packets (a short tail is dropped). Allocates: for tests and fixtures.
    public func encodeAll(_ pcm: [Float]) throws -> [[UInt8]] {
        var packets: [[UInt8]] = []
        var i = 0
        let step = frameSize * channels
        while i + step <= pcm.count {
            packets.append(try encode(pcm[i..<(i + step)]))
            i += step
        }
        return packets
    }
}
