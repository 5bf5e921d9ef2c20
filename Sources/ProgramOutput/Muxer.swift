import CFFmpeg
import FFmpegSupport
import Foundation

enum Destination {
    case file(String)
    case stream(String)

    /// How the destination appears in every message: a stream's key is never shown.
    var label: String {
        switch self {
        case .file(let path): return path
        case .stream(let url): return OutputTarget.redact(url)
        }
    }
}

/// An output format context and the file or connection under it. The format context's `url` is left
/// empty on purpose, so FFmpeg's own log lines cannot print a stream key from it.
final class Muxer {
    let context: UnsafeMutablePointer<AVFormatContext>
    let label: String
    private let destination: Destination
    private var headerWritten = false
    private var closed = false
    private var finalBytes: Int64 = 0
    /// The AVERROR of a failed `open` (connect, TLS or RTMP handshake), for telling transient failures apart.
    private(set) var openError: Int32 = 0

    init(format: String, destination: Destination) throws {
        self.destination = destination
        label = destination.label
        if case .file(let path) = destination { try Muxer.checkWritable(path) }
        var ctx: UnsafeMutablePointer<AVFormatContext>?
        guard avformat_alloc_output_context2(&ctx, nil, format, nil) >= 0, let ctx else {
            throw ProgramOutputError.unavailable("the \(format) muxer")
        }
        context = ctx
    }

    deinit {
        if !closed, context.pointee.pb != nil { avio_closep(&context.pointee.pb) }
        avformat_free_context(context)
    }

    /// Fails early, with the path in the message, for the usual mistakes (missing directory, a
    /// directory given as the file, no permission).
    static func checkWritable(_ path: String) throws {
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        if fm.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
            throw ProgramOutputError.outputNotWritable(path, reason: "it is a directory")
        }
        var directory = (path as NSString).deletingLastPathComponent
        if directory.isEmpty { directory = "." }
        guard fm.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw ProgramOutputError.outputNotWritable(path, reason: "directory \"\(directory)\" does not exist")
        }
        guard fm.isWritableFile(atPath: directory) else {
            throw ProgramOutputError.outputNotWritable(path, reason: "directory \"\(directory)\" is not writable")
        }
    }

    func addStream() throws -> UnsafeMutablePointer<AVStream> {
        guard let stream = avformat_new_stream(context, nil) else {
            throw FFmpegError(cff_averror(ENOMEM), "avformat_new_stream")
        }
        return stream
    }

    var needsGlobalHeader: Bool { (context.pointee.oformat.pointee.flags & AVFMT_GLOBALHEADER) != 0 }

    /// Opens the file or connection and writes the header.
    ///
    /// For `rtmps://` the TLS layer gets `tls_verify=1` (and `ca_file`): FFmpeg 5.1's rtmp protocol
    /// hands its options dictionary to the `tls` URL it opens, whose private options consume them.
    /// An option still in the dictionary after a successful open was not applied, which we refuse.
    /// `interrupt`, when given, can abort a blocking connect or write (FFmpeg then returns AVERROR_EXIT).
    /// `flushEachPacket` (streams only): push every packet out at once; otherwise the caller
    /// calls `flush` (each flush is a few system calls in the RTMP layer, so batch them).
    func open(caFile: String?, ioTimeoutSeconds: Double, muxerOptions: [String: String],
              interrupt: AVIOInterruptCB? = nil, flushEachPacket: Bool = true) throws {
        let url: String
        var ioOptions: [String: String] = [:]
        var secure = false
        switch destination {
        case .file(let path):
            // "file:" keeps a colon in a relative path from being read as a protocol name.
            url = "file:" + path
            ioOptions["protocol_whitelist"] = "file"
        case .stream(let streamURL):
            url = streamURL
            secure = streamURL.lowercased().hasPrefix("rtmps://")
            ioOptions["protocol_whitelist"] = "rtmp,rtmps,tls,tcp"
            // A URLContext option: children (tls, tcp) inherit it, bounding connect and each write.
            // (Not "timeout": on rtmp that means listen mode.)
            ioOptions["rw_timeout"] = String(Int64(ioTimeoutSeconds * 1_000_000))
            if secure {
                ioOptions["tls_verify"] = "1"
                if let caFile { ioOptions["ca_file"] = caFile }
            }
        }
        var dict = Muxer.dictionary(ioOptions)
        defer { av_dict_free(&dict) }
        // avio_open2 copies the callback into every URLContext it opens.
        var callback = interrupt ?? AVIOInterruptCB(callback: nil, opaque: nil)
        if let interrupt { context.pointee.interrupt_callback = interrupt }
        let r = withUnsafePointer(to: &callback) {
            avio_open2(&context.pointee.pb, url, AVIO_FLAG_WRITE, interrupt == nil ? nil : $0, &dict)
        }
        if r < 0 {
            openError = r
            let reason = FFmpegError.text(r)
            switch destination {
            case .file: throw ProgramOutputError.outputNotWritable(label, reason: reason)
            case .stream: throw ProgramOutputError.connectFailed(label, reason: reason)
            }
        }
        if secure, av_dict_get(dict, "tls_verify", nil, 0) != nil {
            throw ProgramOutputError.connectFailed(label, reason: "the TLS layer did not take tls_verify; refusing an unverified connection")
        }
        if case .stream = destination {
            // Live output: never wait for a full I/O buffer (32 KB is seconds of audio).
            context.pointee.flush_packets = flushEachPacket ? 1 : 0
        }
        var muxDict = Muxer.dictionary(muxerOptions)
        defer { av_dict_free(&muxDict) }
        let w = avformat_write_header(context, &muxDict)
        if w < 0 { throw ProgramOutputError.writeFailed(label, reason: "writing the header: \(FFmpegError.text(w))") }
        headerWritten = true
    }

    /// Hands a packet to the muxer's interleaving queue (which takes the packet's reference).
    /// Writes every packet `encoder` has ready. `shift` adds the encoder's priming delay back, so the
    /// first packet carries the first frame's time.
    func writeEncoded(from encoder: UnsafeMutablePointer<AVCodecContext>, using packet: UnsafeMutablePointer<AVPacket>,
                      shift: Int64, from timeBase: AVRational, to outTimeBase: AVRational, streamIndex: Int32,
                      what: String) throws {
        while true {
            let r = avcodec_receive_packet(encoder, packet)
            if r == cff_eagain() || r == cff_eof() { return }
            try ffCheck(r, "\(what) receive_packet")
            packet.pointee.pts += shift
            packet.pointee.dts += shift
            av_packet_rescale_ts(packet, timeBase, outTimeBase)
            packet.pointee.stream_index = streamIndex
            try writeInterleaved(packet)
        }
    }

    /// Writes packet `index` of the still picture's cached GOP as video frame `frame` (counted in
    /// the GOP's time base, one per frame), through `packet`.
    func writeStillFrame(_ gop: StillGOP, index: Int, asFrame frame: Int64, using packet: UnsafeMutablePointer<AVPacket>,
                         to outTimeBase: AVRational, streamIndex: Int32) throws {
        try ffCheck(av_packet_ref(packet, gop.packets[index]), "av_packet_ref")
        packet.pointee.pts = frame
        packet.pointee.dts = frame
        packet.pointee.duration = 1
        av_packet_rescale_ts(packet, gop.timeBase, outTimeBase)
        packet.pointee.stream_index = streamIndex
        try writeInterleaved(packet)
    }

    func writeInterleaved(_ packet: UnsafeMutablePointer<AVPacket>) throws {
        let r = av_interleaved_write_frame(context, packet)
        if r < 0 { throw ProgramOutputError.writeFailed(label, reason: FFmpegError.text(r)) }
    }

    /// Sends what the muxer has buffered.
    func flush() throws {
        guard let pb = context.pointee.pb else { return }
        avio_flush(pb)
        if pb.pointee.error < 0 { throw ProgramOutputError.writeFailed(label, reason: FFmpegError.text(pb.pointee.error)) }
    }

    /// Writes a packet straight through (single-stream outputs); the packet stays the caller's.
    func writeDirect(_ packet: UnsafeMutablePointer<AVPacket>) throws {
        let r = av_write_frame(context, packet)
        if r < 0 { throw ProgramOutputError.writeFailed(label, reason: FFmpegError.text(r)) }
    }

    var bytesWritten: Int64 {
        if closed { return finalBytes }
        guard let pb = context.pointee.pb else { return 0 }
        return max(0, avio_tell(pb))
    }

    /// Writes the trailer (when the header went out) and closes. Safe to call more than once.
    func close(writeTrailer: Bool) throws {
        guard !closed else { return }
        var failure: ProgramOutputError?
        if writeTrailer && headerWritten {
            let r = av_write_trailer(context)
            if r < 0 { failure = .writeFailed(label, reason: "writing the trailer: \(FFmpegError.text(r))") }
        }
        if let pb = context.pointee.pb {
            let size = avio_size(pb)
            finalBytes = max(size > 0 ? size : 0, avio_tell(pb))
            let r = avio_closep(&context.pointee.pb)
            if r < 0 && failure == nil { failure = .writeFailed(label, reason: "closing: \(FFmpegError.text(r))") }
        }
        closed = true
        if let failure { throw failure }
    }

    static func dictionary(_ options: [String: String]) -> OpaquePointer? {
        var dict: OpaquePointer?
        for (key, value) in options.sorted(by: { $0.key < $1.key }) { av_dict_set(&dict, key, value, 0) }
        return dict
    }
}
