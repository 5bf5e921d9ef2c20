import CFFmpeg
import FFmpegSupport

/// One GOP of a still picture, encoded once with libx264: an IDR, then P-frames that repeat it.
///
/// Re-encoding an unchanging picture every frame costs far more than the whole audio job, and the
/// result would be the same bytes every GOP anyway. So the GOP is encoded once at start-up and its
/// packets are sent again, with new timestamps, for every GOP of the program.
///
/// Rate control is constant QP with a large I/P ratio: the IDR gets QP 20 (clean artwork), the
/// P-frames QP 38, so their residual quantises to nothing and every macroblock is skipped (about a
/// dozen bytes a frame). The stream repeats the same bytes every GOP, a constant rate over each GOP.
final class StillGOP {
    /// Packets in decode order (= presentation order: no B-frames), timestamps 0..<count in `timeBase`.
    let packets: [UnsafeMutablePointer<AVPacket>]
    /// Stream parameters, extradata (SPS/PPS) included, for the muxer.
    let parameters: UnsafeMutablePointer<AVCodecParameters>
    let timeBase: AVRational
    let frameRate: Int

    static let pQP = 38
    /// x264's ipratio: I-frame QP = P QP - 6 * log2(8) = 20.
    static let ipRatio = 8

    /// Encodes one GOP of `gopLength` copies of `picture` (yuv420p) at `frameRate`. `frameCount`
    /// (a multiple of `gopLength`) encodes more than one GOP: only to measure what re-encoding costs.
    init(picture: UnsafeMutablePointer<AVFrame>, frameRate: Int, gopLength: Int, globalHeader: Bool,
         frameCount: Int? = nil) throws {
        let frameCount = frameCount ?? gopLength
        guard let codec = avcodec_find_encoder_by_name("libx264") else {
            throw ProgramOutputError.unavailable("the libx264 encoder")
        }
        var ctx = avcodec_alloc_context3(codec)
        defer { avcodec_free_context(&ctx) }
        guard let ctx else { throw FFmpegError(cff_averror(ENOMEM), "avcodec_alloc_context3") }
        self.frameRate = frameRate
        timeBase = AVRational(num: 1, den: Int32(frameRate))
        ctx.pointee.width = picture.pointee.width
        ctx.pointee.height = picture.pointee.height
        ctx.pointee.pix_fmt = AV_PIX_FMT_YUV420P
        ctx.pointee.time_base = timeBase
        ctx.pointee.framerate = AVRational(num: Int32(frameRate), den: 1)
        ctx.pointee.sample_aspect_ratio = AVRational(num: 1, den: 1)
        ctx.pointee.gop_size = Int32(gopLength)
        ctx.pointee.keyint_min = Int32(gopLength)
        ctx.pointee.max_b_frames = 0
        ctx.pointee.refs = 1
        // Encoded once: one thread keeps it simple and leaves no x264 threads behind.
        ctx.pointee.thread_count = 1
        ctx.pointee.colorspace = AVCOL_SPC_BT709
        ctx.pointee.color_primaries = AVCOL_PRI_BT709
        ctx.pointee.color_trc = AVCOL_TRC_BT709
        ctx.pointee.color_range = AVCOL_RANGE_MPEG
        if globalHeader { ctx.pointee.flags |= Int32(AV_CODEC_FLAG_GLOBAL_HEADER) }

        var options = Muxer.dictionary([
            // Encoded once and repeated: ultrafast and no look-ahead keep start-up CPU and x264's
            // memory peak small; the P-frames are all skip whatever the preset.
            "preset": "ultrafast",
            "tune": "stillimage",
            // Constrained Baseline: what IVS's RTMP ingest to stages asks for, and plays anywhere.
            "profile": "baseline",
            "qp": String(StillGOP.pQP),
            "x264-params": "ipratio=\(StillGOP.ipRatio):scenecut=0:open-gop=0:rc-lookahead=0:sync-lookahead=0:mbtree=0",
        ])
        defer { av_dict_free(&options) }
        try ffCheck(avcodec_open2(ctx, codec, &options), "opening libx264")
        if let left = av_dict_get(options, "", nil, AV_DICT_IGNORE_SUFFIX) {
            throw ProgramOutputError.unavailable("libx264 option \(String(cString: left.pointee.key))")
        }

        var collected: [UnsafeMutablePointer<AVPacket>] = []
        var parametersOut: UnsafeMutablePointer<AVCodecParameters>?
        var ok = false
        defer {
            if !ok {
                for p in collected { var q: UnsafeMutablePointer<AVPacket>? = p; av_packet_free(&q) }
                avcodec_parameters_free(&parametersOut)
            }
        }
        var packet = av_packet_alloc()
        defer { av_packet_free(&packet) }
        guard let packet else { throw FFmpegError(cff_averror(ENOMEM), "av_packet_alloc") }

        func drain() throws {
            while true {
                let r = avcodec_receive_packet(ctx, packet)
                if r == cff_eagain() || r == cff_eof() { return }
                try ffCheck(r, "libx264 receive_packet")
                // Side data (quality stats) would be copied on every resend; the muxer does not need it.
                av_packet_free_side_data(packet)
                guard let kept = av_packet_alloc() else { throw FFmpegError(cff_averror(ENOMEM), "av_packet_alloc") }
                av_packet_move_ref(kept, packet)
                collected.append(kept)
            }
        }
        for i in 0..<frameCount {
            picture.pointee.pts = Int64(i)
            try ffCheck(avcodec_send_frame(ctx, picture), "libx264 send_frame")
            try drain()
        }
        try ffCheck(avcodec_send_frame(ctx, nil), "libx264 flush")
        try drain()

        // The cached GOP is only valid if it is exactly one closed GOP: IDR first, no other keyframe,
        // timestamps 0..<n in order (one IDR per GOP when measuring several).
        guard collected.count == frameCount else {
            throw FFmpegError(cff_averror(EINVAL), "libx264 gave \(collected.count) packets for \(frameCount) frames")
        }
        for (i, p) in collected.enumerated() {
            let key = (p.pointee.flags & AV_PKT_FLAG_KEY) != 0
            guard key == (i % gopLength == 0), p.pointee.pts == Int64(i), p.pointee.dts == Int64(i) else {
                throw FFmpegError(cff_averror(EINVAL), "libx264 GOP packet \(i) is not as configured")
            }
        }
        parametersOut = avcodec_parameters_alloc()
        guard let parametersOut else { throw FFmpegError(cff_averror(ENOMEM), "avcodec_parameters_alloc") }
        try ffCheck(avcodec_parameters_from_context(parametersOut, ctx), "avcodec_parameters_from_context")
        packets = collected
        parameters = parametersOut
        ok = true
    }

    deinit {
        for p in packets { var q: UnsafeMutablePointer<AVPacket>? = p; av_packet_free(&q) }
        var par: UnsafeMutablePointer<AVCodecParameters>? = parameters
        avcodec_parameters_free(&par)
    }

    var byteCount: Int { packets.reduce(0) { $0 + Int($1.pointee.size) } }
}
