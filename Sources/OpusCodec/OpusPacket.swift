import COpus

/// What the TOC and framing of one Opus packet (RFC 6716 §3) say, validated by libopus's parser.
public struct OpusPacketInfo: Sendable, Equatable {
    /// Samples per channel at 48 kHz for the whole packet.
    public var frames: Int
    /// Opus frames (codec frames) in the packet, 1...48.
    public var opusFrames: Int
    /// Coded channels (1 or 2) from the TOC stereo flag. The decoder output is stereo regardless.
    public var channels: Int
    /// The first frame carries SILK LBRR data (in-band FEC for the previous packet).
    public var hasFEC: Bool
    /// SILK-only, hybrid or CELT-only, from the TOC configuration.
    public var mode: OpusPacket.Mode
}

public enum OpusPacket {
    public enum Mode: Sendable, Equatable { case silk, hybrid, celt }

    /// Parses and validates a packet. Throws `OpusError` (invalid packet) for anything libopus
    /// would reject: empty, bad framing, frame lengths beyond the data, more than 120 ms.
    public static func inspect(_ packet: UnsafeRawBufferPointer) throws -> OpusPacketInfo {
        guard let base = packet.baseAddress?.assumingMemoryBound(to: UInt8.self), packet.count > 0 else {
            throw OpusError(code: OPUS_INVALID_PACKET, operation: "packet parse", detail: "empty packet")
        }
        guard packet.count <= Int(Int32.max) else {
            throw OpusError(code: OPUS_INVALID_PACKET, operation: "packet parse", detail: "packet too large")
        }
        let len = Int32(packet.count)
        // opus_packet_parse wants room for 48 frame pointers and sizes; the temporary allocation
        // is small enough to live on the stack, so inspecting allocates nothing.
        let parsed: (count: Int32, firstFrame: UnsafePointer<UInt8>?, firstSize: Int16) =
            withUnsafeTemporaryAllocation(of: UnsafePointer<UInt8>?.self, capacity: 48) { frames in
                withUnsafeTemporaryAllocation(of: Int16.self, capacity: 48) { sizes in
                    guard let sizePtr = sizes.baseAddress else { return (OPUS_ALLOC_FAIL, nil, 0) }
                    var toc: UInt8 = 0
                    var payloadOffset: Int32 = 0
                    let n = opus_packet_parse(base, len, &toc, frames.baseAddress, sizePtr, &payloadOffset)
                    return n > 0 ? (n, frames[0], sizes[0]) : (n, nil, 0)
                }
            }
        if parsed.count < 0 {
            throw OpusError(code: parsed.count, operation: "packet parse", detail: "\(packet.count) bytes, TOC 0x\(String(base[0], radix: 16))")
        }
        let samples = opus_packet_get_nb_samples(base, len, 48_000)
        if samples <= 0 {
            throw OpusError(code: samples < 0 ? samples : OPUS_INVALID_PACKET, operation: "packet parse", detail: "no samples")
        }
        let toc = base[0]
        let config = Int(toc >> 3)
        let mode: Mode = config < 12 ? .silk : (config < 16 ? .hybrid : .celt)
        let channels = (toc & 0x4) != 0 ? 2 : 1
        var fec = false
        if mode != .celt, let first = parsed.firstFrame, parsed.firstSize > 0 {
            // SILK codes, per channel, one VAD bit per 20 ms SILK frame and then the LBRR flag,
            // each at probability 1/2, so they are the leading bits of the frame's first byte.
            let perFrame = Int(opus_packet_get_samples_per_frame(base, 48_000))
            let silkFrames = max(1, perFrame / 960)
            let byte = first[0]
            fec = (byte >> UInt8(7 - silkFrames)) & 1 == 1
            if channels == 2 && 6 - 2 * silkFrames >= 0 {
                fec = fec || (byte >> UInt8(6 - 2 * silkFrames)) & 1 == 1
            }
        }
        return OpusPacketInfo(frames: Int(samples), opusFrames: Int(parsed.count), channels: channels, hasFEC: fec, mode: mode)
    }

    public static func inspect(_ packet: [UInt8]) throws -> OpusPacketInfo {
        try packet.withUnsafeBytes { try inspect($0) }
    }
}
