import AudioCore
import CFFmpeg
import FFmpegSupport

/// The program mix as 48 kHz stereo 16-bit PCM in a WAV file (libavformat's wav muxer, which fixes
/// the RIFF sizes in the trailer and switches to RF64 past 4 GiB, about six hours).
final class WAVSink: ProgramSink {
    private let muxer: Muxer
    private var packet: UnsafeMutablePointer<AVPacket>?
    /// Conversion scratch, `chunkFrames` stereo frames, allocated once.
    private let pcm: UnsafeMutablePointer<Int16>
    private static let chunkFrames = 4800
    private var frames: Int64 = 0
    private var finished = false
    private var failure: ProgramOutputError?

    init(path: String) throws {
        muxer = try Muxer(format: "wav", destination: .file(path))
        pcm = .allocate(capacity: WAVSink.chunkFrames * AudioFormat.channels)
        packet = av_packet_alloc()
        guard packet != nil else { throw FFmpegError(cff_averror(ENOMEM), "av_packet_alloc") }
        let stream = try muxer.addStream()
        guard let par = stream.pointee.codecpar else { throw FFmpegError(cff_averror(ENOMEM), "codecpar") }
        par.pointee.codec_type = AVMEDIA_TYPE_AUDIO
        par.pointee.codec_id = AV_CODEC_ID_PCM_S16LE
        par.pointee.sample_rate = Int32(AudioFormat.sampleRate)
        var stereo = cff_layout_stereo()
        try ffCheck(av_channel_layout_copy(&par.pointee.ch_layout, &stereo), "av_channel_layout_copy")
        par.pointee.bits_per_coded_sample = 16
        par.pointee.block_align = Int32(2 * AudioFormat.channels)
        par.pointee.bit_rate = Int64(AudioFormat.sampleRate * AudioFormat.channels * 16)
        stream.pointee.time_base = AVRational(num: 1, den: Int32(AudioFormat.sampleRate))
        try muxer.open(caFile: nil, ioTimeoutSeconds: 10, muxerOptions: ["rf64": "auto"])
    }

    deinit {
        if !finished { try? finish() }
        av_packet_free(&packet)
        pcm.deallocate()
    }

    var stats: OutputStats { OutputStats(bytesWritten: muxer.bytesWritten, audioFrames: frames, videoPackets: 0) }

    func write(_ samples: UnsafePointer<Float>, frames count: Int) throws {
        if finished { throw ProgramOutputError.alreadyFinished(muxer.label) }
        if let failure { throw failure }
        guard count > 0, let packet else { return }
        var done = 0
        while done < count {
            let n = min(count - done, WAVSink.chunkFrames)
            let src = samples + done * 2
            for i in 0..<(n * 2) {
                // Clip, never wrap: an over stays at full scale.
                let v = src[i]
                let clipped = v.isNaN ? 0 : min(max(v, -1), 1)
                pcm[i] = Int16((clipped * 32767).rounded())
            }
            // Not reference-counted: av_write_frame writes it through without keeping it.
            packet.pointee.data = UnsafeMutableRawPointer(pcm).assumingMemoryBound(to: UInt8.self)
            packet.pointee.size = Int32(n * 2 * AudioFormat.channels)
            packet.pointee.pts = frames
            packet.pointee.dts = frames
            packet.pointee.duration = Int64(n)
            packet.pointee.stream_index = 0
            do {
                try muxer.writeDirect(packet)
            } catch let error as ProgramOutputError {
                failure = error
                throw error
            }
            frames += Int64(n)
            done += n
        }
    }

    func finish() throws {
        guard !finished else { return }
        finished = true
        try muxer.close(writeTrailer: true)
        if let failure { throw failure }
    }
}
