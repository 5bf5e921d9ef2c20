import AudioCore
import CFFmpeg
import FFmpegSupport

/// FLV with one H.264 still-picture stream and one AAC-LC stream, to a file or an RTMP(S) server.
///
/// Audio: the program is buffered in an AVAudioFifo and encoded in the encoder's 1024-frame frames.
/// Video: the cached `StillGOP` packets are re-sent, frame `k` going out as soon as the program has
/// passed `k / frameRate` seconds, so video always covers the audio written so far. Both streams
/// start at timestamp 0 and go through the muxer's interleaving queue.
final class FLVSink: ProgramSink {
    private enum State {
        case open
        case failed(ProgramOutputError)
        case finished
    }

    private let muxer: Muxer
    private let gop: StillGOP
    private let frameRate: Int64
    // C resources: nil until made, released by deinit whatever step of the set-up threw.
    private var encoder: UnsafeMutablePointer<AVCodecContext>?
    private var fifo: OpaquePointer?
    private var frame: UnsafeMutablePointer<AVFrame>?
    private var audioPacket: UnsafeMutablePointer<AVPacket>?
    private var videoPacket: UnsafeMutablePointer<AVPacket>?
    /// Deinterleaving scratch: two planes of `chunkFrames`, allocated once.
    private let planes: UnsafeMutablePointer<Float>
    private let planePointers: UnsafeMutablePointer<UnsafeMutableRawPointer?>
    private static let chunkFrames = 4800

    private var videoIndex: Int32 = 0
    private var audioIndex: Int32 = 1
    /// The muxer's stream time bases (FLV sets 1/1000 when the header is written).
    private var videoTimeBase = AVRational(num: 1, den: 1000)
    private var audioOutTimeBase = AVRational(num: 1, den: 1000)
    private var encoderFrameSize: Int32 = 1024
    /// The AAC encoder's priming delay; added back so the first audio packet is at 0, like the video.
    private var audioShift: Int64 = 0
    private let audioTimeBase = AVRational(num: 1, den: Int32(AudioFormat.sampleRate))
    private var inputFrames: Int64 = 0
    private var audioPTS: Int64 = 0
    private var videoFrames: Int64 = 0
    private var state = State.open

    init(destination: Destination, options: OutputOptions) throws {
        muxer = try Muxer(format: "flv", destination: destination)
        let artwork = try options.artworkPath.map { try DecodedImage(path: $0) }
        let size = StillPicture.videoSize(for: artwork, requested: options.videoSize)
        frameRate = Int64(options.frameRate)
        var picture: UnsafeMutablePointer<AVFrame>? = try StillPicture.render(size: size, artwork: artwork)
        defer { av_frame_free(&picture) }
        guard let picture else { throw FFmpegError(cff_averror(ENOMEM), "still picture") }
        gop = try StillGOP(picture: picture, frameRate: options.frameRate,
                           gopLength: options.frameRate * options.gopSeconds,
                           globalHeader: muxer.needsGlobalHeader)
        planes = .allocate(capacity: FLVSink.chunkFrames * 2)
        planePointers = .allocate(capacity: 2)
        planePointers[0] = UnsafeMutableRawPointer(planes)
        planePointers[1] = UnsafeMutableRawPointer(planes + FLVSink.chunkFrames)
        // Every stored property is set: from here a throw runs deinit, which frees what was made.
        do {
            try setUp(destination: destination, options: options)
        } catch {
            state = .finished
            throw error
        }
    }

    private func setUp(destination: Destination, options: OutputOptions) throws {
        fifo = av_audio_fifo_alloc(AV_SAMPLE_FMT_FLTP, Int32(AudioFormat.channels), 4096)
        frame = av_frame_alloc()
        audioPacket = av_packet_alloc()
        videoPacket = av_packet_alloc()
        guard fifo != nil, let frame, audioPacket != nil, videoPacket != nil else {
            throw FFmpegError(cff_averror(ENOMEM), "allocating the audio buffers")
        }
        let enc = try FLVSink.openAudioEncoder(options, globalHeader: muxer.needsGlobalHeader)
        encoder = enc
        audioShift = Int64(enc.pointee.initial_padding)
        encoderFrameSize = enc.pointee.frame_size

        frame.pointee.format = AV_SAMPLE_FMT_FLTP.rawValue
        frame.pointee.sample_rate = Int32(AudioFormat.sampleRate)
        frame.pointee.nb_samples = encoderFrameSize
        var stereo = cff_layout_stereo()
        try ffCheck(av_channel_layout_copy(&frame.pointee.ch_layout, &stereo), "av_channel_layout_copy")
        try ffCheck(av_frame_get_buffer(frame, 0), "av_frame_get_buffer")

        let video = try muxer.addStream()
        try ffCheck(avcodec_parameters_copy(video.pointee.codecpar, gop.parameters), "video parameters")
        video.pointee.time_base = gop.timeBase
        video.pointee.avg_frame_rate = AVRational(num: Int32(options.frameRate), den: 1)
        let audio = try muxer.addStream()
        try ffCheck(avcodec_parameters_from_context(audio.pointee.codecpar, enc), "audio parameters")
        audio.pointee.time_base = audioTimeBase

        var muxerOptions: [String: String] = [:]
        if case .stream = destination {
            // Nothing to seek back to on a connection.
            muxerOptions["flvflags"] = "no_duration_filesize"
        }
        try muxer.open(caFile: options.caFile, ioTimeoutSeconds: options.ioTimeoutSeconds, muxerOptions: muxerOptions)
        videoIndex = video.pointee.index
        audioIndex = audio.pointee.index
        videoTimeBase = video.pointee.time_base
        audioOutTimeBase = audio.pointee.time_base
    }

    deinit {
        if case .open = state { try? finish() }
        try? muxer.close(writeTrailer: false)
        avcodec_free_context(&encoder)
        if let fifo { av_audio_fifo_free(fifo) }
        av_frame_free(&frame)
        av_packet_free(&audioPacket)
        av_packet_free(&videoPacket)
        planes.deallocate()
        planePointers.deallocate()
    }

    static func openAudioEncoder(_ options: OutputOptions, globalHeader: Bool) throws
        -> UnsafeMutablePointer<AVCodecContext>
    {
        guard let codec = avcodec_find_encoder_by_name("aac") else { throw ProgramOutputError.unavailable("the aac encoder") }
        guard let ctx = avcodec_alloc_context3(codec) else { throw FFmpegError(cff_averror(ENOMEM), "avcodec_alloc_context3") }
        var ok = false
        defer {
            if !ok {
                var c: UnsafeMutablePointer<AVCodecContext>? = ctx
                avcodec_free_context(&c)
            }
        }
        ctx.pointee.sample_fmt = AV_SAMPLE_FMT_FLTP
        ctx.pointee.sample_rate = Int32(AudioFormat.sampleRate)
        var stereo = cff_layout_stereo()
        try ffCheck(av_channel_layout_copy(&ctx.pointee.ch_layout, &stereo), "av_channel_layout_copy")
        ctx.pointee.bit_rate = Int64(options.audioBitrate)
        ctx.pointee.profile = FF_PROFILE_AAC_LOW
        ctx.pointee.cutoff = Int32(options.audioCutoffHz)
        ctx.pointee.time_base = AVRational(num: 1, den: Int32(AudioFormat.sampleRate))
        if globalHeader { ctx.pointee.flags |= Int32(AV_CODEC_FLAG_GLOBAL_HEADER) }
        var dict = Muxer.dictionary(["aac_coder": options.aacCoder, "aac_ms": options.aacMidSide ? "1" : "0"])
        defer { av_dict_free(&dict) }
        try ffCheck(avcodec_open2(ctx, codec, &dict), "opening the aac encoder")
        guard ctx.pointee.frame_size > 0 else { throw FFmpegError(cff_averror(EINVAL), "aac encoder frame size") }
        ok = true
        return ctx
    }

    var stats: OutputStats {
        OutputStats(bytesWritten: muxer.bytesWritten, audioFrames: inputFrames, videoPackets: videoFrames)
    }

    func write(_ samples: UnsafePointer<Float>, frames: Int) throws {
        switch state {
        case .finished: throw ProgramOutputError.alreadyFinished(muxer.label)
        case .failed(let error): throw error
        case .open: break
        }
        guard frames > 0 else { return }
        try guarded {
            var done = 0
            while done < frames {
                let n = min(frames - done, FLVSink.chunkFrames)
                deinterleave(samples + done * 2, frames: n)
                let written = av_audio_fifo_write(fifo, planePointers, Int32(n))
                if written != Int32(n) { try ffCheck(min(written, cff_averror(ENOMEM)), "av_audio_fifo_write") }
                inputFrames += Int64(n)
                done += n
                try sendVideo()
                while av_audio_fifo_size(fifo) >= encoderFrameSize { try encodeAudio(encoderFrameSize) }
            }
        }
    }

    func finish() throws {
        switch state {
        case .finished: return
        case .failed(let error):
            state = .finished
            try? muxer.close(writeTrailer: true)
            throw error
        case .open: break
        }
        try guarded {
            let rest = av_audio_fifo_size(fifo)
            if rest > 0 { try encodeAudio(rest) }
            try ffCheck(avcodec_send_frame(encoder, nil), "flushing the aac encoder")
            try drainAudio()
            try sendVideo()
            try muxer.close(writeTrailer: true)
        }
        state = .finished
    }

    /// Runs `body`; any failure is remembered (the sink is unusable after it) and rethrown, named after
    /// the redacted target.
    private func guarded(_ body: () throws -> Void) throws {
        do {
            try body()
        } catch let error as ProgramOutputError {
            state = .failed(error)
            throw error
        } catch {
            let wrapped = ProgramOutputError.writeFailed(muxer.label, reason: "\(error)")
            state = .failed(wrapped)
            throw wrapped
        }
    }

    /// Splits interleaved L R into the two planes, clipping to [-1, 1]; a NaN becomes silence, since the
    /// AAC encoder rejects non-finite input and that would stop the stream.
    private func deinterleave(_ src: UnsafePointer<Float>, frames n: Int) {
        let left = planes, right = planes + FLVSink.chunkFrames
        for i in 0..<n {
            let l = src[2 * i], r = src[2 * i + 1]
            left[i] = l.isNaN ? 0 : min(max(l, -1), 1)
            right[i] = r.isNaN ? 0 : min(max(r, -1), 1)
        }
    }

    private func encodeAudio(_ count: Int32) throws {
        guard let frame else { return }
        try ffCheck(av_frame_make_writable(frame), "av_frame_make_writable")
        frame.pointee.nb_samples = count
        let data = UnsafeMutableRawPointer(frame.pointee.extended_data).assumingMemoryBound(to: UnsafeMutableRawPointer?.self)
        let read = av_audio_fifo_read(fifo, data, count)
        if read != count { try ffCheck(min(read, cff_averror(EINVAL)), "av_audio_fifo_read") }
        frame.pointee.pts = audioPTS
        audioPTS += Int64(count)
        try ffCheck(avcodec_send_frame(encoder, frame), "aac encoder send_frame")
        try drainAudio()
    }

    private func drainAudio() throws {
        guard let packet = audioPacket, let encoder else { return }
        try muxer.writeEncoded(from: encoder, using: packet, shift: audioShift, from: audioTimeBase, to: audioOutTimeBase,
                               streamIndex: audioIndex, what: "aac encoder")
    }

    /// Sends every video frame whose start time is before the program time written so far.
    private func sendVideo() throws {
        guard let packet = videoPacket else { return }
        let rate = Int64(AudioFormat.sampleRate)
        let count = Int64(gop.packets.count)
        while videoFrames * rate < inputFrames * frameRate {
            let frame = videoFrames
            videoFrames += 1
            try muxer.writeStillFrame(gop, index: Int(frame % count), asFrame: frame, using: packet, to: videoTimeBase,
                                      streamIndex: videoIndex)
        }
    }
}
