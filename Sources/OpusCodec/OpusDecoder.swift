import COpus

/// libopus decoder at 48 kHz with stereo output, always.
///
/// A mono stream comes out in both channels at full level (libopus's own upmix, no pan law), which
/// is how the worker wants a mono caller to sound. Output is interleaved Float32 L R.
/// Not thread-safe: one owner (a jitter buffer) drives it.
public final class OpusDecoder {
    public static let sampleRate = 48_000
    public static let channels = 2
    /// The longest packet Opus allows: 120 ms.
    public static let maxPacketFrames = 5_760
    /// PLC and FEC durations must be whole multiples of 2.5 ms.
    public static let concealmentGranule = 120

    private let state: OpaquePointer

    public init() throws {
        var err: Int32 = OPUS_OK
        guard let st = opus_decoder_create(Int32(Self.sampleRate), Int32(Self.channels), &err), err == OPUS_OK else {
            throw OpusError(code: err == OPUS_OK ? OPUS_ALLOC_FAIL : err, operation: "decoder create")
        }
        state = st
    }

    deinit { opus_decoder_destroy(state) }

    /// Decodes one packet into `out` (room for `maxFrames` stereo frames). Returns frames written.
    public func decode(_ packet: UnsafeRawBufferPointer, into out: UnsafeMutablePointer<Float>, maxFrames: Int) throws -> Int {
        guard let base = packet.baseAddress?.assumingMemoryBound(to: UInt8.self), packet.count > 0 else {
            throw OpusError(code: OPUS_INVALID_PACKET, operation: "decode", detail: "empty packet")
        }
        guard packet.count <= Int(Int32.max), maxFrames > 0 else {
            throw OpusError(code: OPUS_BAD_ARG, operation: "decode", detail: "packet \(packet.count) bytes, room \(maxFrames) frames")
        }
        let n = opus_decode_float(state, base, Int32(packet.count), out, Int32(min(maxFrames, Int(Int32.max))), 0)
        return try opusCheck(n, "decode")
    }

    public func decode(_ packet: [UInt8], into out: UnsafeMutablePointer<Float>, maxFrames: Int) throws -> Int {
        try packet.withUnsafeBytes { try decode($0, into: out, maxFrames: maxFrames) }
    }

    /// Recovers a lost packet from the in-band FEC (LBRR) carried by the packet after it.
    /// `frames` is the lost packet's duration (multiple of 120). Where the next packet has no FEC,
    /// or `frames` is longer than what FEC covers, libopus conceals (PLC) that part instead.
    /// Decode `nextPacket` normally afterwards.
    public func decodeFEC(from nextPacket: UnsafeRawBufferPointer, frames: Int, into out: UnsafeMutablePointer<Float>) throws -> Int {
        guard let base = nextPacket.baseAddress?.assumingMemoryBound(to: UInt8.self), nextPacket.count > 0 else {
            throw OpusError(code: OPUS_INVALID_PACKET, operation: "decode FEC", detail: "empty packet")
        }
        guard frames > 0, frames % Self.concealmentGranule == 0, frames <= Self.maxPacketFrames, nextPacket.count <= Int(Int32.max) else {
            throw OpusError(code: OPUS_BAD_ARG, operation: "decode FEC", detail: "\(frames) frames is not a positive multiple of 120 up to 5760")
        }
        let n = opus_decode_float(state, base, Int32(nextPacket.count), out, Int32(frames), 1)
        return try opusCheck(n, "decode FEC")
    }

    public func decodeFEC(from nextPacket: [UInt8], frames: Int, into out: UnsafeMutablePointer<Float>) throws -> Int {
        try nextPacket.withUnsafeBytes { try decodeFEC(from: $0, frames: frames, into: out) }
    }

    /// Packet loss concealment: `frames` (positive multiple of 120) of audio continuing the signal.
    public func conceal(frames: Int, into out: UnsafeMutablePointer<Float>) throws -> Int {
        guard frames > 0, frames % Self.concealmentGranule == 0, frames <= Int(Int32.max) else {
            throw OpusError(code: OPUS_BAD_ARG, operation: "conceal", detail: "\(frames) frames is not a positive multiple of 120")
        }
        let n = opus_decode_float(state, nil, 0, out, Int32(frames), 0)
        return try opusCheck(n, "conceal")
    }

    /// Forgets all history, as for a new stream.
    public func reset() { _ = copus_reset(state) }

    /// Duration of the last packet decoded (or concealed), in frames at 48 kHz.
    public var lastPacketFrames: Int {
        var v: Int32 = 0
        return copus_get_last_packet_duration(state, &v) == OPUS_OK ? Int(v) : 0
    }

    // MARK: Packet inspection (no decoder state needed)

    /// Samples per channel at 48 kHz in `packet`; throws for a malformed packet.
    public static func frameCount(of packet: UnsafeRawBufferPointer) throws -> Int { try OpusPacket.inspect(packet).frames }
    public static func frameCount(of packet: [UInt8]) throws -> Int { try OpusPacket.inspect(packet).frames }

    /// Whether the packet carries in-band FEC for its predecessor (libopus 1.3.1 has no
    /// `opus_packet_has_lbrr`, so this reads the SILK header flags). False for malformed packets.
    public static func hasFEC(_ packet: UnsafeRawBufferPointer) -> Bool { (try? OpusPacket.inspect(packet).hasFEC) ?? false }
    public static func hasFEC(_ packet: [UInt8]) -> Bool { (try? OpusPacket.inspect(packet).hasFEC) ?? false }

    /// Coded channel count (1 or 2) of the packet.
    public static func channels(of packet: UnsafeRawBufferPointer) throws -> Int { try OpusPacket.inspect(packet).channels }
    public static func channels(of packet: [UInt8]) throws -> Int { try OpusPacket.inspect(packet).channels }
}
