import CFFmpeg
import FFmpegSupport
import Foundation

/// An 8-bit RGBA picture, rows packed (stride = width * 4).
struct RGBAImage {
    let width: Int
    let height: Int
    var pixels: [UInt8]

    init(width: Int, height: Int) {
        self.width = width
        self.height = height
        pixels = [UInt8](repeating: 255, count: width * height * 4)
    }
}

/// Builds the one picture the video shows: the built-in card, with the artwork (if any) fitted on it.
/// Everything here runs once per sink, so clarity wins over speed.
enum StillPicture {
    /// Artwork files larger than this are refused rather than read into memory.
    static let maxArtworkBytes = 64 << 20
    static let maxSide = 4096

    /// The video size for `options`: explicit, else the artwork's size (even, at most 4096 a side),
    /// else 1280x720.
    static func videoSize(for artwork: DecodedImage?, requested: VideoSize?) -> VideoSize {
        if let requested { return requested }
        guard let artwork else { return .hd720 }
        var w = Double(artwork.width), h = Double(artwork.height)
        let scale = min(1, Double(maxSide) / max(w, h))
        w *= scale
        h *= scale
        func even(_ v: Double) -> Int { max(16, Int(v) & ~1) }
        return VideoSize(width: even(w), height: even(h))
    }

    /// The picture as a yuv420p frame (BT.709, limited range) ready for the encoder.
    static func render(size: VideoSize, artwork: DecodedImage?) throws -> UnsafeMutablePointer<AVFrame> {
        var canvas = card(width: size.width, height: size.height, drawMark: artwork == nil)
        if let artwork { try artwork.draw(fittedOnto: &canvas) }
        return try yuvFrame(canvas)
    }

    // MARK: The built-in card

    /// A dark blue-violet diagonal gradient with a soft vignette, and (without artwork) a broadcast
    /// mark in the middle: an amber dot with three arcs on each side.
    static func card(width: Int, height: Int, drawMark: Bool) -> RGBAImage {
        var image = RGBAImage(width: width, height: height)
        let w = Double(width), h = Double(height)
        let s = min(w, h)
        let cx = w / 2, cy = h / 2
        let halfDiagonal = (cx * cx + cy * cy).squareRoot()
        let top: (Double, Double, Double) = (12, 16, 34)
        let bottom: (Double, Double, Double) = (38, 24, 66)
        let accent: (Double, Double, Double) = (255, 177, 61)
        let ink: (Double, Double, Double) = (232, 236, 244)

        // The mark's geometry, in pixels.
        let dotRadius = 0.045 * s
        let arcRadii = [0.105 * s, 0.165 * s, 0.225 * s]
        let arcAlpha = [0.95, 0.72, 0.5]
        let arcHalfWidth = 0.011 * s
        let arcAngle = 40.0 * Double.pi / 180
        let (sinA, cosA) = (sin(arcAngle), cos(arcAngle))
        let markExtent = 0.26 * s
        let glowRadius = 0.3 * s
        // Drawn once per show, but 1280x720 of it is start-up time: no pow/exp/sqrt where they add nothing.
        let invHalfDiagonal2 = 1 / (halfDiagonal * halfDiagonal)
        let invGlow2 = 1 / (glowRadius * glowRadius)
        let glowReach2 = 9 * glowRadius * glowRadius  // beyond 3 radii the glow is under 0.002 of a level
        let markExtent2 = markExtent * markExtent

        image.pixels.withUnsafeMutableBufferPointer { px in
            for y in 0..<height {
                let fy = Double(y) + 0.5
                for x in 0..<width {
                    let fx = Double(x) + 0.5
                    let dx = fx - cx, dy = fy - cy
                    let r2 = dx * dx + dy * dy
                    // Gradient along the diagonal, darkened towards the corners.
                    let t = min(1, max(0, 0.35 * fx / w + 0.65 * fy / h))
                    let vignette = 1 - 0.45 * r2 * invHalfDiagonal2
                    var c = (
                        (top.0 + (bottom.0 - top.0) * t) * vignette,
                        (top.1 + (bottom.1 - top.1) * t) * vignette,
                        (top.2 + (bottom.2 - top.2) * t) * vignette)
                    if drawMark && r2 < glowReach2 {
                        // A faint warm glow behind the mark.
                        let glow = 0.16 * exp(-r2 * invGlow2)
                        c = (c.0 + (accent.0 - c.0) * glow, c.1 + (accent.1 - c.1) * glow, c.2 + (accent.2 - c.2) * glow)
                        if r2 < markExtent2 {
                            let r = r2.squareRoot()
                            // Arcs: distance to an arc with round caps, on the folded (|dx|, |dy|) plane.
                            let ax = abs(dx), ay = abs(dy)
                            for (i, radius) in arcRadii.enumerated() {
                                let d: Double
                                if ay * cosA <= ax * sinA {
                                    d = abs(r - radius)
                                } else {
                                    let ex = ax - radius * cosA, ey = ay - radius * sinA
                                    d = (ex * ex + ey * ey).squareRoot()
                                }
                                let cover = min(1, max(0, arcHalfWidth - d + 0.5)) * arcAlpha[i]
                                if cover > 0 { c = blend(c, ink, cover) }
                            }
                            let dot = min(1, max(0, dotRadius - r + 0.5))
                            if dot > 0 { c = blend(c, accent, dot) }
                        }
                    }
                    let o = (y * width + x) * 4
                    px[o] = clampByte(c.0)
                    px[o + 1] = clampByte(c.1)
                    px[o + 2] = clampByte(c.2)
                    px[o + 3] = 255
                }
            }
        }
        return image
    }

    private static func blend(_ a: (Double, Double, Double), _ b: (Double, Double, Double), _ k: Double)
        -> (Double, Double, Double)
    {
        (a.0 + (b.0 - a.0) * k, a.1 + (b.1 - a.1) * k, a.2 + (b.2 - a.2) * k)
    }

    private static func clampByte(_ v: Double) -> UInt8 { UInt8(min(255, max(0, v + 0.5))) }

    // MARK: Conversion to the encoder's format

    static func yuvFrame(_ image: RGBAImage) throws -> UnsafeMutablePointer<AVFrame> {
        guard let frame = av_frame_alloc() else { throw FFmpegError(cff_averror(ENOMEM), "av_frame_alloc") }
        var owned: UnsafeMutablePointer<AVFrame>? = frame
        var ok = false
        defer { if !ok { av_frame_free(&owned) } }
        frame.pointee.width = Int32(image.width)
        frame.pointee.height = Int32(image.height)
        frame.pointee.format = AV_PIX_FMT_YUV420P.rawValue
        frame.pointee.colorspace = AVCOL_SPC_BT709
        frame.pointee.color_primaries = AVCOL_PRI_BT709
        frame.pointee.color_trc = AVCOL_TRC_BT709
        frame.pointee.color_range = AVCOL_RANGE_MPEG
        try ffCheck(av_frame_get_buffer(frame, 0), "av_frame_get_buffer")

        guard let sws = sws_getContext(Int32(image.width), Int32(image.height), AV_PIX_FMT_RGBA,
                                       Int32(image.width), Int32(image.height), AV_PIX_FMT_YUV420P,
                                       Int32(SWS_BICUBIC | SWS_ACCURATE_RND), nil, nil, nil)
        else { throw FFmpegError(cff_averror(EINVAL), "sws_getContext RGBA to yuv420p") }
        defer { sws_freeContext(sws) }
        // RGB in, BT.709 limited-range YUV out, matching the colour tags the encoder writes.
        _ = sws_setColorspaceDetails(sws, sws_getCoefficients(SWS_CS_DEFAULT), 1,
                                     sws_getCoefficients(SWS_CS_ITU709), 0, 0, 1 << 16, 1 << 16)
        try image.pixels.withUnsafeBufferPointer { src in
            var srcPlanes: [UnsafePointer<UInt8>?] = [src.baseAddress, nil, nil, nil]
            var srcStrides: [Int32] = [Int32(image.width * 4), 0, 0, 0]
            try withFramePlanes(frame) { dst, dstStrides in
                let rows = sws_scale(sws, &srcPlanes, &srcStrides, 0, Int32(image.height), dst, dstStrides)
                if rows != Int32(image.height) { throw FFmpegError(cff_averror(EINVAL), "sws_scale to yuv420p") }
            }
        }
        ok = true
        return frame
    }

    /// The frame's plane pointers and line sizes as C arrays (Swift imports them as tuples).
    static func withFramePlanes<R>(_ frame: UnsafeMutablePointer<AVFrame>,
                                   _ body: (UnsafePointer<UnsafeMutablePointer<UInt8>?>, UnsafePointer<Int32>) throws -> R)
        rethrows -> R
    {
        try withUnsafeMutablePointer(to: &frame.pointee.data) { data in
            try withUnsafeMutablePointer(to: &frame.pointee.linesize) { lines in
                try data.withMemoryRebound(to: UnsafeMutablePointer<UInt8>?.self, capacity: Int(AV_NUM_DATA_POINTERS)) { d in
                    try lines.withMemoryRebound(to: Int32.self, capacity: Int(AV_NUM_DATA_POINTERS)) { l in
                        try body(d, l)
                    }
                }
            }
        }
    }
}

/// A decoded artwork picture (PNG, JPEG, WebP, BMP or GIF), in whatever pixel format its decoder gave.
final class DecodedImage {
    let frame: UnsafeMutablePointer<AVFrame>
    let path: String
    var width: Int { Int(frame.pointee.width) }
    var height: Int { Int(frame.pointee.height) }

    /// Reads and decodes `path`; every failure names the file.
    init(path: String) throws {
        self.path = path
        func unreadable(_ reason: String) -> ProgramOutputError { .artworkUnreadable(path, reason: reason) }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw ProgramOutputError.artworkNotFound(path)
        }
        if isDirectory.boolValue { throw unreadable("is a directory") }
        let attributes = try? FileManager.default.attributesOfItem(atPath: path)
        if let size = (attributes?[.size] as? NSNumber)?.intValue, size > StillPicture.maxArtworkBytes {
            throw unreadable("larger than \(StillPicture.maxArtworkBytes >> 20) MiB")
        }
        guard let data = FileManager.default.contents(atPath: path) else { throw unreadable("cannot be read") }
        guard !data.isEmpty else { throw unreadable("the file is empty") }
        guard let codecID = DecodedImage.codec(forMagic: data) else {
            throw unreadable("not a PNG, JPEG, WebP, BMP or GIF picture")
        }
        do {
            frame = try DecodedImage.decode(data, codecID)
        } catch let error as FFmpegError {
            throw unreadable("cannot be decoded (\(FFmpegError.text(error.code)))")
        }
        let w = Int(frame.pointee.width), h = Int(frame.pointee.height)
        if w <= 0 || h <= 0 || w > 16384 || h > 16384 {
            var f: UnsafeMutablePointer<AVFrame>? = frame
            av_frame_free(&f)
            throw unreadable("unsupported picture size \(w)x\(h)")
        }
        if sws_isSupportedInput(AVPixelFormat(frame.pointee.format)) == 0 {
            var f: UnsafeMutablePointer<AVFrame>? = frame
            av_frame_free(&f)
            throw unreadable("unsupported pixel format")
        }
    }

    deinit {
        var f: UnsafeMutablePointer<AVFrame>? = frame
        av_frame_free(&f)
    }

    /// Picks the decoder from the file's first bytes rather than its name, so a mislabelled file still works.
    static func codec(forMagic data: Data) -> AVCodecID? {
        let b = [UInt8](data.prefix(12))
        func starts(_ p: [UInt8]) -> Bool { b.count >= p.count && Array(b[0..<p.count]) == p }
        if starts([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) { return AV_CODEC_ID_PNG }
        if starts([0xFF, 0xD8, 0xFF]) { return AV_CODEC_ID_MJPEG }
        if b.count >= 12, starts(Array("RIFF".utf8)), Array(b[8..<12]) == Array("WEBP".utf8) { return AV_CODEC_ID_WEBP }
        if starts(Array("GIF8".utf8)) { return AV_CODEC_ID_GIF }
        if starts(Array("BM".utf8)) { return AV_CODEC_ID_BMP }
        return nil
    }

    private static func decode(_ data: Data, _ id: AVCodecID) throws -> UnsafeMutablePointer<AVFrame> {
        guard let codec = avcodec_find_decoder(id) else { throw FFmpegError(cff_averror(ENOSYS), "no decoder") }
        var ctx = avcodec_alloc_context3(codec)
        defer { avcodec_free_context(&ctx) }
        guard let ctx else { throw FFmpegError(cff_averror(ENOMEM), "avcodec_alloc_context3") }
        try ffCheck(avcodec_open2(ctx, codec, nil), "avcodec_open2")
        var packet = av_packet_alloc()
        defer { av_packet_free(&packet) }
        guard let packet else { throw FFmpegError(cff_averror(ENOMEM), "av_packet_alloc") }
        try ffCheck(av_new_packet(packet, Int32(data.count)), "av_new_packet")
        data.withUnsafeBytes { raw in
            if let base = raw.baseAddress { memcpy(packet.pointee.data, base, data.count) }
        }
        try ffCheck(avcodec_send_packet(ctx, packet), "avcodec_send_packet")
        _ = avcodec_send_packet(ctx, nil)
        guard let frame = av_frame_alloc() else { throw FFmpegError(cff_averror(ENOMEM), "av_frame_alloc") }
        let r = avcodec_receive_frame(ctx, frame)
        if r < 0 {
            var f: UnsafeMutablePointer<AVFrame>? = frame
            av_frame_free(&f)
            throw FFmpegError(r == cff_eof() ? cff_averror(EINVAL) : r, "avcodec_receive_frame")
        }
        return frame
    }

    /// Scales the picture to fit inside `canvas` keeping its aspect ratio, centres it, and blends it
    /// over the canvas by its alpha (a transparent logo lands on the card's gradient).
    func draw(fittedOnto canvas: inout RGBAImage) throws {
        let scale = min(Double(canvas.width) / Double(width), Double(canvas.height) / Double(height))
        let fw = min(canvas.width, max(1, Int((Double(width) * scale).rounded())))
        let fh = min(canvas.height, max(1, Int((Double(height) * scale).rounded())))
        let ox = (canvas.width - fw) / 2, oy = (canvas.height - fh) / 2

        guard let sws = sws_getContext(Int32(width), Int32(height), AVPixelFormat(frame.pointee.format),
                                       Int32(fw), Int32(fh), AV_PIX_FMT_RGBA,
                                       Int32(SWS_BICUBIC | SWS_ACCURATE_RND), nil, nil, nil)
        else { throw ProgramOutputError.artworkUnreadable(path, reason: "cannot convert its pixel format") }
        defer { sws_freeContext(sws) }
        let stride = (fw * 4 + 63) & ~63
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: stride * fh, alignment: 64)
        defer { buffer.deallocate() }
        var dstPlanes: [UnsafeMutablePointer<UInt8>?] = [buffer.assumingMemoryBound(to: UInt8.self), nil, nil, nil]
        var dstStrides: [Int32] = [Int32(stride), 0, 0, 0]
        let rows = withUnsafeMutablePointer(to: &frame.pointee.data) { data in
            withUnsafeMutablePointer(to: &frame.pointee.linesize) { lines in
                data.withMemoryRebound(to: UnsafePointer<UInt8>?.self, capacity: Int(AV_NUM_DATA_POINTERS)) { d in
                    lines.withMemoryRebound(to: Int32.self, capacity: Int(AV_NUM_DATA_POINTERS)) { l in
                        sws_scale(sws, d, l, 0, Int32(height), &dstPlanes, &dstStrides)
                    }
                }
            }
        }
        guard rows == Int32(fh) else { throw ProgramOutputError.artworkUnreadable(path, reason: "cannot be scaled") }

        let src = buffer.assumingMemoryBound(to: UInt8.self)
        let canvasWidth = canvas.width
        canvas.pixels.withUnsafeMutableBufferPointer { dst in
            for y in 0..<fh {
                for x in 0..<fw {
                    let s = y * stride + x * 4
                    let d = ((oy + y) * canvasWidth + ox + x) * 4
                    let a = Int(src[s + 3])
                    for c in 0..<3 {
                        let v = (Int(src[s + c]) * a + Int(dst[d + c]) * (255 - a) + 127) / 255
                        dst[d + c] = UInt8(v)
                    }
                }
            }
        }
    }
}
