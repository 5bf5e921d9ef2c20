import AudioCore
import CFFmpeg
import FFmpegSupport
import Foundation

/// Why a file could not be opened as audio. Every case names the file.
public enum AudioFileError: Error, CustomStringConvertible, Sendable, Equatable {
    case missingFile(path: String)
    case unreadable(path: String, reason: String)
    /// libavformat does not recognise it as a media file (or it is empty).
    case notAudio(path: String, reason: String)
    /// A media file, but without any audio stream.
    case noAudioStream(path: String)
    /// An audio stream whose codec this FFmpeg build cannot decode.
    case unsupportedCodec(path: String, codec: String)
    /// Recognised as audio, but not a single frame could be decoded.
    case decodeFailed(path: String, reason: String)

    public var path: String {
        switch self {
        case .missingFile(let p), .unreadable(let p, _), .notAudio(let p, _), .noAudioStream(let p),
             .unsupportedCodec(let p, _), .decodeFailed(let p, _):
            return p
        }
    }

    public var description: String {
        switch self {
        case .missingFile(let p): return "\(p): file does not exist"
        case .unreadable(let p, let r): return "\(p): cannot read file: \(r)"
        case .notAudio(let p, let r): return "\(p): not an audio file: \(r)"
        case .noAudioStream(let p): return "\(p): no audio stream in file"
        case .unsupportedCodec(let p, let c): return "\(p): no decoder for audio codec \(c)"
        case .decodeFailed(let p, let r): return "\(p): audio could not be decoded: \(r)"
        }
    }
}

/// Decodes one audio file to the worker's format: 48 kHz interleaved stereo Float32.
///
/// Opening probes the file and decodes its first frame, so a file that cannot play fails here
/// (with an `AudioFileError`) rather than later in the mix. After that, `read` never fails: a packet
/// that does not decode is skipped and counted, and a file that goes bad for good simply ends early.
///
/// Not thread-safe: use one decoder from one thread at a time (it may be handed between threads).
public final class AudioFileDecoder: @unchecked Sendable {
    public let path: String
    /// Name of the libavcodec decoder in use, e.g. "mp3float", "aac", "flac".
    public let codecName: String
    public let sourceSampleRate: Int
    public let sourceChannels: Int
    /// Container's duration, when it states one.
    public let durationSeconds: Double?

    /// Packets that failed to decode (or demux) and were skipped.
    public private(set) var skippedPackets = 0
    /// Output frames handed out by `read` so far.
    public private(set) var framesRead: Int64 = 0
    /// Set when decoding stopped before the end of the file because the data went bad.
    public private(set) var endedEarly: String?
    /// True once every decoded frame has been handed out.
    public var isFinished: Bool { finished && pendingCount == 0 }

    /// A run of this many consecutive bad packets means the rest of the file is garbage.
    static let maxConsecutiveErrors = 100

    private let res: Resources
    private let streamIndex: Int32
    private var demuxDone = false
    private var decoderDrained = false
    private var finished = false
    private var packetHeld = false
    private var consecutiveErrors = 0
    private var lastError: Int32 = 0

    // Converted audio waiting to be read: frames [pendingStart, pendingStart + pendingCount).
    private var pending: UnsafeMutablePointer<Float>
    private var pendingCapacity: Int
    private var pendingStart = 0
    private var pendingCount = 0

    // Input format the resampler is configured for.
    private var swrFormat: Int32 = -1
    private var swrRate: Int32 = 0
    private var swrLayout = AVChannelLayout()

    /// Owns the FFmpeg objects so they are freed however initialisation ends.
    private final class Resources {
        var format: UnsafeMutablePointer<AVFormatContext>?
        var codec: UnsafeMutablePointer<AVCodecContext>?
        var packet: UnsafeMutablePointer<AVPacket>?
        var frame: UnsafeMutablePointer<AVFrame>?
        var swr: OpaquePointer?
        deinit {
            swr_free(&swr)
            av_frame_free(&frame)
            av_packet_free(&packet)
            avcodec_free_context(&codec)
            avformat_close_input(&format)
        }
    }

    public init(path: String) throws(AudioFileError) {
        self.path = path
        let res = Resources()
        self.res = res

        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw .missingFile(path: path)
        }
        if isDirectory.boolValue { throw .notAudio(path: path, reason: "it is a directory") }
        guard FileManager.default.isReadableFile(atPath: path) else {
            throw .unreadable(path: path, reason: "permission denied")
        }
        if let size = (try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber,
           size.int64Value == 0 {
            throw .notAudio(path: path, reason: "file is empty")
        }

        var rc = avformat_open_input(&res.format, path, nil, nil)
        guard rc >= 0, let fmt = res.format else {
            if rc == cff_averror(ENOENT) { throw .missingFile(path: path) }
            if rc == cff_averror(EACCES) || rc == cff_averror(EIO) {
                throw .unreadable(path: path, reason: FFmpegError.text(rc))
            }
            throw .notAudio(path: path, reason: "libavformat cannot open it: \(FFmpegError.text(rc))")
        }
        // Not fatal on its own (a damaged tail can make it fail); the checks below decide.
        _ = avformat_find_stream_info(fmt, nil)

        var found: UnsafePointer<AVCodec>?
        let index = av_find_best_stream(fmt, AVMEDIA_TYPE_AUDIO, -1, -1, &found, 0)
        guard index >= 0, Int(index) < Int(fmt.pointee.nb_streams),
              let stream = fmt.pointee.streams[Int(index)], let params = stream.pointee.codecpar else {
            if index == AVERROR_DECODER_NOT_FOUND_value {
                throw .unsupportedCodec(path: path, codec: Self.firstAudioCodecName(fmt))
            }
            if Self.hasAudioStream(fmt) {
                // An audio stream without a rate or channel count: typically a misdetected file.
                throw .notAudio(path: path, reason: "\(Self.guessText(fmt)) but found no usable audio parameters")
            }
            throw .noAudioStream(path: path)
        }
        streamIndex = index
        // Everything else in the file (cover art, video) is skipped by the demuxer.
        for i in 0..<Int(fmt.pointee.nb_streams) where i != Int(index) {
            fmt.pointee.streams[i]?.pointee.discard = AVDISCARD_ALL
        }

        guard params.pointee.sample_rate > 0, params.pointee.ch_layout.nb_channels > 0 else {
            throw .notAudio(path: path, reason: "\(Self.guessText(fmt)) but found no sample rate or channel count")
        }

        // FFmpeg's native Opus decoder mis-decodes SILK; prefer libopus when this build has it.
        var decoder = found
        if params.pointee.codec_id == AV_CODEC_ID_OPUS, let libopus = avcodec_find_decoder_by_name("libopus") {
            decoder = libopus
        }
        guard let decoder else {
            throw .unsupportedCodec(path: path, codec: String(cString: avcodec_get_name(params.pointee.codec_id)))
        }
        guard let ctx = avcodec_alloc_context3(decoder) else {
            throw .decodeFailed(path: path, reason: "out of memory allocating the decoder")
        }
        res.codec = ctx
        rc = avcodec_parameters_to_context(ctx, params)
        if rc < 0 { throw .decodeFailed(path: path, reason: "bad codec parameters: \(FFmpegError.text(rc))") }
        ctx.pointee.pkt_timebase = stream.pointee.time_base
        rc = avcodec_open2(ctx, decoder, nil)
        if rc < 0 { throw .decodeFailed(path: path, reason: "cannot open decoder \(String(cString: decoder.pointee.name)): \(FFmpegError.text(rc))") }

        res.packet = av_packet_alloc()
        res.frame = av_frame_alloc()
        if res.packet == nil || res.frame == nil {
            throw .decodeFailed(path: path, reason: "out of memory allocating packet/frame")
        }

        codecName = String(cString: decoder.pointee.name)
        sourceSampleRate = Int(params.pointee.sample_rate)
        sourceChannels = Int(params.pointee.ch_layout.nb_channels)
        let duration = fmt.pointee.duration
        durationSeconds = duration > 0 && duration != cff_nopts() ? Double(duration) / Double(AV_TIME_BASE) : nil

        // Room for one large frame (FLAC may use 16k+ samples); grows if a bigger one appears.
        pendingCapacity = 16_384
        pending = .allocate(capacity: pendingCapacity * AudioFormat.channels)

        // Decode up to the first audio so a file that cannot play fails now, not in the mix.
        while pendingCount == 0 && !finished { refill() }
        if pendingCount == 0 {
            if skippedPackets > 0 {
                throw .decodeFailed(path: path, reason: "\(skippedPackets) packets failed, last error: \(FFmpegError.text(lastError))")
            }
            throw .decodeFailed(path: path, reason: "the audio stream holds no samples")
        }
    }

    deinit {
        pending.deallocate()
        av_channel_layout_uninit(&swrLayout)
    }

    /// Fills `out` with up to `frames` interleaved stereo frames; returns how many were written.
    /// Fewer than `frames` only at the end of the file; 0 once it is over.
    public func read(into out: UnsafeMutablePointer<Float>, frames: Int) -> Int {
        var written = 0
        while written < frames {
            if pendingCount == 0 {
                if finished { break }
                refill()
                continue
            }
            let n = min(frames - written, pendingCount)
            (out + written * 2).update(from: pending + pendingStart * 2, count: n * 2)
            pendingStart += n
            pendingCount -= n
            written += n
        }
        if pendingCount == 0 { pendingStart = 0 }
        framesRead += Int64(written)
        return written
    }

    // MARK: - Decoding

    /// Advances the decoder until some converted audio is pending or the file is over.
    private func refill() {
        guard let ctx = res.codec, let frame = res.frame, let packet = res.packet, let fmt = res.format else {
            finished = true
            return
        }
        while !finished {
            let rc = avcodec_receive_frame(ctx, frame)
            if rc == 0 {
                consecutiveErrors = 0
                convert(frame)
                av_frame_unref(frame)
                if pendingCount > 0 { return }
                continue
            }
            if rc == cff_eof() {
                decoderDrained = true
                drainResampler()
                finished = true
                return
            }
            if rc != cff_eagain() {
                // A frame the decoder rejected after accepting its packet.
                noteError(rc)
                continue
            }
            // The decoder wants input.
            if demuxDone {
                // Flush already sent yet no EOF: force the end instead of spinning.
                drainResampler()
                finished = true
                return
            }
            if !packetHeld {
                let r = av_read_frame(fmt, packet)
                if r < 0 {
                    if r != cff_eof() {
                        // A damaged container block; demuxers usually resync on the next call.
                        noteError(r)
                        if finished { return }
                        if consecutiveErrors < 8 { continue }
                        endedEarly = "demuxing stopped: \(FFmpegError.text(r))"
                    }
                    demuxDone = true
                    _ = avcodec_send_packet(ctx, nil)
                    continue
                }
                if packet.pointee.stream_index != streamIndex {
                    av_packet_unref(packet)
                    continue
                }
                packetHeld = true
            }
            let s = avcodec_send_packet(ctx, packet)
            if s == cff_eagain() { continue } // keep the packet; receive first
            packetHeld = false
            av_packet_unref(packet)
            if s < 0 { noteError(s) }
        }
    }

    private func noteError(_ code: Int32) {
        skippedPackets += 1
        consecutiveErrors += 1
        lastError = code
        if consecutiveErrors >= Self.maxConsecutiveErrors {
            endedEarly = "\(consecutiveErrors) consecutive packets failed, last error: \(FFmpegError.text(code))"
            drainResampler()
            finished = true
        }
    }

    private func ensureCapacity(extra frames: Int) {
        if pendingStart > 0 && pendingCount > 0 {
            pending.update(from: pending + pendingStart * 2, count: pendingCount * 2)
        }
        pendingStart = 0
        let needed = pendingCount + frames
        if needed <= pendingCapacity { return }
        let capacity = max(needed, pendingCapacity * 2)
        let bigger = UnsafeMutablePointer<Float>.allocate(capacity: capacity * 2)
        bigger.update(from: pending, count: pendingCount * 2)
        pending.deallocate()
        pending = bigger
        pendingCapacity = capacity
    }

    private func convert(_ frame: UnsafeMutablePointer<AVFrame>) {
        var samples = frame.pointee.nb_samples
        guard samples > 0, frame.pointee.sample_rate > 0, frame.pointee.ch_layout.nb_channels > 0 else { return }
        // The last packet of an MP4/M4A states how much of its frame is real audio (the rest is
        // encoder padding); libavcodec 5.1 still returns the whole frame. Keeping the padding would
        // put a gap between gapless tracks.
        let stated = frame.pointee.pkt_duration
        if stated > 0, let ctx = res.codec, ctx.pointee.pkt_timebase.num > 0, ctx.pointee.pkt_timebase.den > 0 {
            let real = av_rescale_q(stated, ctx.pointee.pkt_timebase, AVRational(num: 1, den: frame.pointee.sample_rate))
            if real > 0 && real < Int64(samples) { samples = Int32(real) }
        }
        if !configureResampler(for: frame) {
            noteError(cff_averror(EINVAL))
            return
        }
        guard let swr = res.swr, let data = frame.pointee.extended_data else { return }
        let room = swr_get_out_samples(swr, samples)
        guard room > 0 else { return }
        ensureCapacity(extra: Int(room))
        var outPlane: UnsafeMutablePointer<UInt8>? = UnsafeMutableRawPointer(pending + pendingCount * 2)
            .assumingMemoryBound(to: UInt8.self)
        let input = UnsafeMutableRawPointer(data).assumingMemoryBound(to: UnsafePointer<UInt8>?.self)
        let got = swr_convert(swr, &outPlane, room, input, samples)
        if got > 0 { pendingCount += Int(got) } else if got < 0 { noteError(got) }
    }

    /// Pulls what the resampler still holds (its filter delay) into the pending buffer.
    private func drainResampler() {
        guard let swr = res.swr else { return }
        while true {
            let room = max(swr_get_out_samples(swr, 0), 0)
            if room == 0 { return }
            ensureCapacity(extra: Int(room))
            var outPlane: UnsafeMutablePointer<UInt8>? = UnsafeMutableRawPointer(pending + pendingCount * 2)
                .assumingMemoryBound(to: UInt8.self)
            let got = swr_convert(swr, &outPlane, room, nil, 0)
            if got <= 0 { return }
            pendingCount += Int(got)
        }
    }

    /// (Re)builds the resampler when the decoded format differs from what it was built for,
    /// which happens on the first frame and when a stream changes rate or layout mid-file.
    private func configureResampler(for frame: UnsafeMutablePointer<AVFrame>) -> Bool {
        var layout = AVChannelLayout()
        defer { av_channel_layout_uninit(&layout) }
        if frame.pointee.ch_layout.order == AV_CHANNEL_ORDER_UNSPEC {
            av_channel_layout_default(&layout, frame.pointee.ch_layout.nb_channels)
        } else if av_channel_layout_copy(&layout, &frame.pointee.ch_layout) < 0 {
            return false
        }
        if res.swr != nil, frame.pointee.format == swrFormat, frame.pointee.sample_rate == swrRate,
           av_channel_layout_compare(&layout, &swrLayout) == 0 {
            return true
        }
        // Keep the tail of the previous format before switching.
        drainResampler()
        swr_free(&res.swr)
        av_channel_layout_uninit(&swrLayout)
        swrFormat = -1

        var outLayout = cff_layout_stereo()
        let inFormat = AVSampleFormat(rawValue: frame.pointee.format)
        guard swr_alloc_set_opts2(&res.swr, &outLayout, AV_SAMPLE_FMT_FLT, Int32(AudioFormat.sampleRate),
                                  &layout, inFormat, frame.pointee.sample_rate, 0, nil) >= 0,
              let swr = res.swr else { return false }
        if layout.nb_channels == 1 {
            // Mono to both channels at full level; swr's default upmix would lower each by 3 dB.
            var matrix: [Double] = [1, 1]
            if swr_set_matrix(swr, &matrix, 1) < 0 { return false }
        }
        if swr_init(swr) < 0 {
            swr_free(&res.swr)
            return false
        }
        _ = av_channel_layout_copy(&swrLayout, &layout)
        swrFormat = frame.pointee.format
        swrRate = frame.pointee.sample_rate
        return true
    }

    private static func hasAudioStream(_ fmt: UnsafeMutablePointer<AVFormatContext>) -> Bool {
        (0..<Int(fmt.pointee.nb_streams)).contains { fmt.pointee.streams[$0]?.pointee.codecpar?.pointee.codec_type == AVMEDIA_TYPE_AUDIO }
    }

    /// "looks like mp3 only by a weak guess (probe score 1 of 100)" and similar, for error texts.
    private static func guessText(_ fmt: UnsafeMutablePointer<AVFormatContext>) -> String {
        let name = fmt.pointee.iformat.map { String(cString: $0.pointee.name) } ?? "unknown"
        let score = fmt.pointee.probe_score
        let strength = score < AVPROBE_SCORE_EXTENSION / 2 ? "only by a weak guess" : "by its content"
        return "recognised as \(name) \(strength) (probe score \(score) of \(AVPROBE_SCORE_MAX))"
    }

    private static func firstAudioCodecName(_ fmt: UnsafeMutablePointer<AVFormatContext>) -> String {
        for i in 0..<Int(fmt.pointee.nb_streams) {
            if let params = fmt.pointee.streams[i]?.pointee.codecpar, params.pointee.codec_type == AVMEDIA_TYPE_AUDIO {
                return String(cString: avcodec_get_name(params.pointee.codec_id))
            }
        }
        return "unknown"
    }
}

// FFERRTAG macros are not importable; these are their values (negated MKTAG of the tag bytes).
private func ffErrTag(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) -> Int32 {
    -Int32(bitPattern: UInt32(a) | UInt32(b) << 8 | UInt32(c) << 16 | UInt32(d) << 24)
}
private let AVERROR_STREAM_NOT_FOUND_value = ffErrTag(0xF8, 0x53, 0x54, 0x52) // 0xF8 'S' 'T' 'R'
private let AVERROR_DECODER_NOT_FOUND_value = ffErrTag(0xF8, 0x44, 0x45, 0x43) // 0xF8 'D' 'E' 'C'
