import AudioCore
import CFFmpeg
import FFmpegSupport

/// One RTMP(S) connection of a `ReconnectingSink`: its own muxer and AAC encoder, the shared still GOP.
///
/// Unlike `FLVSink`, timestamps are program time, not time since this connection opened: a session
/// opened after an outage continues the program's clock (nginx-rtmp, FFmpeg and the FLV format
/// accept a stream whose first tag is not at 0), and a gap in the audio (frames dropped while the
/// queue was full) is a gap in the timestamps, so the stream stays aligned with the wall clock.
/// Video restarts at the GOP's IDR when the session starts and after every gap.
///
/// Used by one thread (the sink's connection thread).
final class LiveFLVSession {
    let muxer: Muxer
    private let gop: StillGOP
    private let frameRate: Int64
    private var encoder: UnsafeMutablePointer<AVCodecContext>?
    private var frame: UnsafeMutablePointer<AVFrame>?
    private var audioPacket: UnsafeMutablePointer<AVPacket>?
    private var videoPacket: UnsafeMutablePointer<AVPacket>?
    private var videoIndex: Int32 = 0
    private var audioIndex: Int32 = 1
    private var videoTimeBase = AVRational(num: 1, den: 1000)
    private var audioOutTimeBase = AVRational(num: 1, den: 1000)
    private let audioTimeBase = AVRational(num: 1, den: Int32(AudioFormat.sampleRate))
    private var audioShift: Int64 = 0
    private(set) var frameSize = 1024
    /// Program frame the next audio frame is expected at; nil until the first one.
    private(set) var nextAudioFrame: Int64?
    /// Next video frame, counted in 1/frameRate s of program time.
    private var nextVideoFrame: Int64 = 0
    /// Position in the cached GOP of the next video packet (0 = the IDR).
    private var gopPosition = 0
    private(set) var videoPackets: Int64 = 0
    private var closed = false

    /// Why a connection could not be opened, and whether trying again later may help.
    struct OpenFailure: Error {
        let error: ProgramOutputError
        /// A network failure (refused, reset, timed out, unreachable) or a connection that broke
        /// after the handshake, as opposed to a refusal (certificate, name resolution, RTMP app/key)
        /// or a local problem.
        let isNetworkFailure: Bool
    }

    static let networkErrors: Set<Int32> = Set([
        ECONNREFUSED, ETIMEDOUT, ECONNRESET, ECONNABORTED, EPIPE, ENETUNREACH, EHOSTUNREACH,
        ENETDOWN, EHOSTDOWN, EAGAIN, EINTR,
    ].map { cff_averror($0) })

    /// Connects, does the RTMP handshake and writes the FLV header. Throws `OpenFailure`.
    init(url: String, options: OutputOptions, gop: StillGOP, interrupt: AVIOInterruptCB?) throws {
        let label = OutputTarget.redact(url)
        do {
            muxer = try Muxer(format: "flv", destination: .stream(url))
        } catch let error as ProgramOutputError {
            throw OpenFailure(error: error, isNetworkFailure: false)
        } catch {
            throw OpenFailure(error: .setupFailed(label, reason: "\(error)"), isNetworkFailure: false)
        }
        self.gop = gop
        frameRate = Int64(options.frameRate)
        do {
            try setUp(options: options, interrupt: interrupt)
        } catch let error as ProgramOutputError {
            closed = true
            let network: Bool
            switch error {
            case .connectFailed: network = LiveFLVSession.networkErrors.contains(muxer.openError)
            case .writeFailed: network = true  // the handshake passed, then the connection broke
            default: network = false
            }
            throw OpenFailure(error: error, isNetworkFailure: network)
        } catch {
            closed = true
            throw OpenFailure(error: .setupFailed(label, reason: "\(error)"), isNetworkFailure: false)
        }
    }

    private func setUp(options: OutputOptions, interrupt: AVIOInterruptCB?) throws {
        let video: UnsafeMutablePointer<AVStream>
        let audio: UnsafeMutablePointer<AVStream>
        do {
            frame = av_frame_alloc()
            audioPacket = av_packet_alloc()
            videoPacket = av_packet_alloc()
            guard let frame, audioPacket != nil, videoPacket != nil else {
                throw FFmpegError(cff_averror(ENOMEM), "allocating the audio buffers")
            }
            let enc = try FLVSink.openAudioEncoder(options, globalHeader: muxer.needsGlobalHeader)
            encoder = enc
            audioShift = Int64(enc.pointee.initial_padding)
            frameSize = Int(enc.pointee.frame_size)
            frame.pointee.format = AV_SAMPLE_FMT_FLTP.rawValue
            frame.pointee.sample_rate = Int32(AudioFormat.sampleRate)
            frame.pointee.nb_samples = enc.pointee.frame_size
            var stereo = cff_layout_stereo()
            try ffCheck(av_channel_layout_copy(&frame.pointee.ch_layout, &stereo), "av_channel_layout_copy")
            try ffCheck(av_frame_get_buffer(frame, 0), "av_frame_get_buffer")

            video = try muxer.addStream()
            try ffCheck(avcodec_parameters_copy(video.pointee.codecpar, gop.parameters), "video parameters")
            video.pointee.time_base = gop.timeBase
            video.pointee.avg_frame_rate = AVRational(num: Int32(options.frameRate), den: 1)
            audio = try muxer.addStream()
            try ffCheck(avcodec_parameters_from_context(audio.pointee.codecpar, enc), "audio parameters")
            audio.pointee.time_base = audioTimeBase
        } catch let error as ProgramOutputError {
            throw error
        } catch {
            throw ProgramOutputError.setupFailed(muxer.label, reason: "\(error)")
        }
        try muxer.open(caFile: options.caFile, ioTimeoutSeconds: options.ioTimeoutSeconds,
                       muxerOptions: ["flvflags": "no_duration_filesize"], interrupt: interrupt, flushEachPacket: false)
        // FLV sets its 1/1000 time bases when the header is written.
        videoIndex = video.pointee.index
        audioIndex = audio.pointee.index
        videoTimeBase = video.pointee.time_base
        audioOutTimeBase = audio.pointee.time_base
    }

    deinit {
        if !closed { try? muxer.close(writeTrailer: false) }
        avcodec_free_context(&encoder)
        av_frame_free(&frame)
        av_packet_free(&audioPacket)
        av_packet_free(&videoPacket)
    }

    /// The encoder frame's two planes, writable, `frameSize` floats each: fill them, then `encode`.
    func writablePlanes() throws -> (left: UnsafeMutablePointer<Float>, right: UnsafeMutablePointer<Float>) {
        guard let frame else { throw ProgramOutputError.writeFailed(muxer.label, reason: "the session is closed") }
        try wrap { try ffCheck(av_frame_make_writable(frame), "av_frame_make_writable") }
        let data = UnsafeMutableRawPointer(frame.pointee.extended_data)
            .assumingMemoryBound(to: UnsafeMutableRawPointer?.self)
        guard let l = data[0], let r = data[1] else {
            throw ProgramOutputError.writeFailed(muxer.label, reason: "the audio frame has no planes")
        }
        return (l.assumingMemoryBound(to: Float.self), r.assumingMemoryBound(to: Float.self))
    }

    /// Encodes the `frames` (≤ `frameSize`; fewer only for the last one) filled into the planes, which
    /// start at program frame `start`, then sends the video the program time now covers.
    func encode(start: Int64, frames: Int) throws {
        guard frames > 0, let frame else { return }
        if let expected = nextAudioFrame, start != expected {
            // Frames were dropped before this one: restart the picture at an IDR after the gap.
            nextVideoFrame = max(nextVideoFrame, firstVideoFrame(atOrAfter: start))
            gopPosition = 0
        } else if nextAudioFrame == nil {
            nextVideoFrame = firstVideoFrame(atOrAfter: start)
            gopPosition = 0
        }
        frame.pointee.nb_samples = Int32(frames)
        frame.pointee.pts = start
        nextAudioFrame = start + Int64(frames)
        try wrap {
            try ffCheck(avcodec_send_frame(encoder, frame), "aac encoder send_frame")
            try drainAudio()
            try sendVideo(upTo: start + Int64(frames))
        }
    }

    /// Sends what is buffered: call when the queue holds no further frame to encode now (once per
    /// wake-up of the connection thread), so those tags leave together.
    func flush() throws {
        try wrap { try muxer.flush() }
    }

    /// Flushes the encoder, writes the trailer and closes the connection cleanly.
    func finish() throws {
        guard !closed else { return }
        try wrap {
            try ffCheck(avcodec_send_frame(encoder, nil), "flushing the aac encoder")
            try drainAudio()
            if let end = nextAudioFrame { try sendVideo(upTo: end) }
        }
        closed = true
        try muxer.close(writeTrailer: true)
    }

    /// Closes a connection that failed, without the trailer. Call with the sink's interrupt raised for
    /// the duration, so RTMP's goodbye messages cannot block on a dead socket.
    func abandon() {
        guard !closed else { return }
        closed = true
        try? muxer.close(writeTrailer: false)
    }

    var bytesWritten: Int64 { muxer.bytesWritten }

    private func firstVideoFrame(atOrAfter audioFrame: Int64) -> Int64 {
        // ceil(audioFrame * frameRate / sampleRate)
        let rate = Int64(AudioFormat.sampleRate)
        return (audioFrame * frameRate + rate - 1) / rate
    }

    private func drainAudio() throws {
        guard let packet = audioPacket, let encoder else { return }
        try muxer.writeEncoded(from: encoder, using: packet, shift: audioShift, from: audioTimeBase, to: audioOutTimeBase,
                               streamIndex: audioIndex, what: "aac encoder")
    }

    /// Sends every video frame that starts before program frame `end`.
    private func sendVideo(upTo end: Int64) throws {
        guard let packet = videoPacket else { return }
        let rate = Int64(AudioFormat.sampleRate)
        let count = gop.packets.count
        while nextVideoFrame * rate < end * frameRate {
            let (frame, index) = (nextVideoFrame, gopPosition % count)
            nextVideoFrame += 1
            gopPosition = (gopPosition + 1) % count
            videoPackets += 1
            try muxer.writeStillFrame(gop, index: index, asFrame: frame, using: packet, to: videoTimeBase, streamIndex: videoIndex)
        }
    }

    private func wrap(_ body: () throws -> Void) throws {
        do {
            try body()
        } catch let error as ProgramOutputError {
            throw error
        } catch {
            throw ProgramOutputError.writeFailed(muxer.label, reason: "\(error)")
        }
    }
}
