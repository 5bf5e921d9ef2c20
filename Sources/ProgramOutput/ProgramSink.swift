import AudioCore
import Foundation

/// Receives the mixed program and writes it out.
///
/// Audio is `AudioFormat` (48 kHz interleaved stereo Float32) in blocks of any size, in program
/// order. One sink is used from one thread at a time.
public protocol ProgramSink: AnyObject {
    /// Program audio, `frames * 2` floats, continuing where the previous block ended.
    func write(_ samples: UnsafePointer<Float>, frames: Int) throws
    /// Flushes the encoders, writes the trailer and closes the output. Calling it again does nothing.
    func finish() throws
    var stats: OutputStats { get }
    /// The connection as the control plane reports it (`outputState`, `outputDownSeconds`, ...).
    /// Files and non-reconnecting streams are always `.connected` while they work.
    var health: OutputHealth { get }
}

extension ProgramSink {
    public var health: OutputHealth {
        let s = stats
        return OutputHealth(state: .connected, bytesWritten: s.bytesWritten, kbps: s.kbps)
    }
}

public struct OutputStats: Sendable, Equatable {
    /// Bytes handed to the file or connection so far.
    public var bytesWritten: Int64
    /// Program frames (48 kHz, per channel) accepted by `write`.
    public var audioFrames: Int64
    /// H.264 packets handed to the muxer (0 for WAV).
    public var videoPackets: Int64

    public init(bytesWritten: Int64 = 0, audioFrames: Int64 = 0, videoPackets: Int64 = 0) {
        self.bytesWritten = bytesWritten
        self.audioFrames = audioFrames
        self.videoPackets = videoPackets
    }

    public var programSeconds: Double { Double(audioFrames) / Double(AudioFormat.sampleRate) }
    /// Average output rate over the program so far.
    public var kbps: Double { programSeconds > 0 ? Double(bytesWritten) * 8 / programSeconds / 1000 : 0 }
}

public struct VideoSize: Sendable, Equatable, CustomStringConvertible {
    public var width: Int
    public var height: Int
    public init(width: Int, height: Int) { self.width = width; self.height = height }
    public static let hd720 = VideoSize(width: 1280, height: 720)
    public var description: String { "\(width)x\(height)" }
}

public struct OutputOptions: Sendable, Equatable {
    /// PNG or JPEG shown as the still picture; nil draws the built-in card.
    public var artworkPath: String?
    /// PEM bundle to verify an `rtmps://` server against instead of the system trust store.
    public var caFile: String?
    public var audioBitrate: Int
    /// nil: the artwork's size rounded down to even (at most 4096 on a side), or 1280x720 for the card.
    public var videoSize: VideoSize?
    public var frameRate: Int
    /// One IDR every `gopSeconds` (IVS wants 2 s or 1 s).
    public var gopSeconds: Int
    /// FFmpeg's native AAC coder: "fast" costs about half of the default "twoloop".
    public var aacCoder: String
    /// Mid/side stereo coding. Off by default: FFmpeg's fast coder tries both codings per band,
    /// about a fifth of its time on a mostly-mono program (voices), and at 128 kb/s left/right
    /// coding still gives each channel 64 kb/s.
    public var aacMidSide: Bool
    /// Audio bandwidth of the AAC encoder in Hz; 0 lets FFmpeg choose (about 20 kHz at 128 kb/s).
    /// 15 kHz is FM broadcast's bandwidth: voices lose nothing, and on full-band material the encoder
    /// does about a third less work (pure tones gain nothing).
    public var audioCutoffHz: Int
    /// A stream that cannot connect or accept data for this long fails instead of hanging.
    public var ioTimeoutSeconds: Double
    /// Streams only: survive ingest drops (`ReconnectingSink`) instead of failing on the first error.
    public var reconnect: Bool
    /// Backoff, queue and thresholds of a reconnecting stream.
    public var reconnectPolicy: ReconnectPolicy

    public init(artworkPath: String? = nil, caFile: String? = nil, audioBitrate: Int = 128_000,
                videoSize: VideoSize? = nil, frameRate: Int = 30, gopSeconds: Int = 2,
                aacCoder: String = "fast", aacMidSide: Bool = false, audioCutoffHz: Int = 15_000, ioTimeoutSeconds: Double = 10,
                reconnect: Bool = false, reconnectPolicy: ReconnectPolicy = ReconnectPolicy()) {
        self.reconnect = reconnect
        self.reconnectPolicy = reconnectPolicy
        self.artworkPath = artworkPath
        self.caFile = caFile
        self.audioBitrate = audioBitrate
        self.videoSize = videoSize
        self.frameRate = frameRate
        self.gopSeconds = gopSeconds
        self.aacCoder = aacCoder
        self.audioCutoffHz = audioCutoffHz
        self.aacMidSide = aacMidSide
        self.ioTimeoutSeconds = ioTimeoutSeconds
    }

    func validate() throws {
        func bad(_ s: String) -> ProgramOutputError { .invalidOptions(s) }
        guard (16_000...512_000).contains(audioBitrate) else { throw bad("audioBitrate \(audioBitrate) is outside 16000...512000") }
        guard (1...60).contains(frameRate) else { throw bad("frameRate \(frameRate) is outside 1...60") }
        guard (1...10).contains(gopSeconds) else { throw bad("gopSeconds \(gopSeconds) is outside 1...10") }
        guard ["fast", "twoloop", "anmr"].contains(aacCoder) else { throw bad("aacCoder \"\(aacCoder)\" is not fast, twoloop or anmr") }
        guard audioCutoffHz == 0 || (4_000...24_000).contains(audioCutoffHz) else {
            throw bad("audioCutoffHz \(audioCutoffHz) is neither 0 (automatic) nor within 4000...24000")
        }
        guard ioTimeoutSeconds > 0, ioTimeoutSeconds <= 600 else { throw bad("ioTimeoutSeconds \(ioTimeoutSeconds) is outside (0, 600]") }
        try reconnectPolicy.validate()
        if let size = videoSize {
            guard (16...4096).contains(size.width), (16...4096).contains(size.height),
                  size.width % 2 == 0, size.height % 2 == 0
            else { throw bad("videoSize \(size) must be even and within 16...4096 on each side") }
        }
        if let path = artworkPath, !FileManager.default.fileExists(atPath: path) {
            throw ProgramOutputError.artworkNotFound(path)
        }
        if let path = caFile, !FileManager.default.fileExists(atPath: path) {
            throw ProgramOutputError.caFileNotFound(path)
        }
    }
}

/// Opens `target`. Every input problem (bad URL, unwritable path, missing artwork) is reported here,
/// before any audio is written, as a `ProgramOutputError` with `isBadInput == true`.
public func makeSink(_ target: OutputTarget, options: OutputOptions = OutputOptions()) throws -> ProgramSink {
    try options.validate()
    do {
        switch target {
        case .wavFile(let path):
            return try WAVSink(path: path)
        case .flvFile(let path):
            return try FLVSink(destination: .file(path), options: options)
        case .stream(let url):
            _ = try StreamURL(url)
            if options.reconnect { return try ReconnectingSink(url: url, options: options) }
            return try FLVSink(destination: .stream(url), options: options)
        }
    } catch let error as ProgramOutputError {
        throw error
    } catch {
        // An FFmpeg call failing while setting up (an encoder refusing its settings, out of memory).
        throw ProgramOutputError.setupFailed(target.redactedDescription, reason: "\(error)")
    }
}
