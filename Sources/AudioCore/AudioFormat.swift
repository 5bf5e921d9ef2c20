/// The one internal audio format of the worker: every source renders to it and the mix runs in it.
/// 48 kHz interleaved stereo Float32 matches Opus's native rate and what the AAC encoder wants.
public enum AudioFormat {
    public static let sampleRate = 48_000
    public static let channels = 2
    /// 10 ms: the unit of short fades (pause, skip) and of level meters.
    public static let blockFrames = 480
    /// One mix block: 20 ms. Control changes take effect on mix-block boundaries. 20 ms rather than
    /// 10 halves the per-frame cost of every filter link in the graph; it is well inside the 100 ms a
    /// routing change may take, and matches the usual Opus frame.
    public static let mixBlockFrames = 960

    /// Program time is counted in frames (samples per channel) at `sampleRate` from the show's start.
    /// Offline and real-time runs share this clock, which is what makes them produce the same audio.
    @inlinable public static func frames(milliseconds ms: Int64) -> Int64 { ms * Int64(sampleRate) / 1000 }
    @inlinable public static func milliseconds(frames: Int64) -> Int64 { frames * 1000 / Int64(sampleRate) }
}

/// Something the mix clock pulls audio from, one block at a time.
///
/// `render` must write exactly `frames` interleaved stereo frames into `out` and never block:
/// a source with nothing to play writes silence (or concealment) instead.
public protocol AudioSource: AnyObject {
    /// - Parameters:
    ///   - out: `frames * 2` floats, interleaved L R.
    ///   - frames: frames to produce.
    ///   - at: program time of the first frame, in frames since the show started.
    func render(into out: UnsafeMutablePointer<Float>, frames: Int, at: Int64)
    /// True while the source has nothing to play and no time to keep (an empty voice slot): its
    /// render would be silence and may be skipped.
    var isIdle: Bool { get }
}

extension AudioSource {
    public var isIdle: Bool { false }
}
