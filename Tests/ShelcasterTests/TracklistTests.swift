import AudioCore
import Foundation
import Testing
import Tracklist

private typealias F = TracklistFixture

// MARK: - AudioFileDecoder

struct TracklistDecoderFormat: Sendable, CustomTestStringConvertible {
    let ext: String
    let codec: [String]
    let stereo: Bool
    var rate = 44_100
    var testDescription: String { "\(ext) \(stereo ? "stereo" : "mono") \(rate) Hz" }
}

private let decoderFormats: [TracklistDecoderFormat] = {
    let codecs: [(String, [String])] = [
        ("mp3", ["-c:a", "libmp3lame", "-b:a", "192k"]),
        ("m4a", ["-c:a", "aac", "-b:a", "192k"]),
        ("wav", ["-c:a", "pcm_s16le"]),
        ("flac", ["-c:a", "flac"]),
        ("ogg", ["-c:a", "libvorbis", "-q:a", "6"]),
        ("opus", ["-c:a", "libopus", "-b:a", "160k"]),
    ]
    var all = codecs.flatMap { ext, codec in
        [TracklistDecoderFormat(ext: ext, codec: codec, stereo: false),
         TracklistDecoderFormat(ext: ext, codec: codec, stereo: true)]
    }
    // Other rates and sample formats: up- and downsampling, 24-bit and 8-bit input.
    all.append(TracklistDecoderFormat(ext: "flac", codec: ["-c:a", "flac", "-sample_fmt", "s32"], stereo: true, rate: 96_000))
    all.append(TracklistDecoderFormat(ext: "wav", codec: ["-c:a", "pcm_u8"], stereo: false, rate: 8_000))
    all.append(TracklistDecoderFormat(ext: "mp3", codec: ["-c:a", "libmp3lame", "-b:a", "96k"], stereo: false, rate: 22_050))
    return all
}()

@Suite("Tracklist: AudioFileDecoder")
struct TracklistDecoderTests {
    /// 2 s of tones in each format: 48 kHz stereo out, 2 s long, each channel at its level and pitch.
    /// Mono must come out at full level in both channels (no -3 dB pan law).
    @Test(.enabled(if: F.hasFFmpeg, F.skipReason), arguments: decoderFormats)
    func decodesFormat(_ format: TracklistDecoderFormat) throws {
        let dir = try F.makeDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let exprs = format.stereo ? [F.sine(1000, amplitude: 0.25), F.sine(1500, amplitude: 0.125)]
                                  : [F.sine(1000, amplitude: 0.25)]
        let path = try F.signal(exprs, rate: format.rate, seconds: 2, codec: format.codec,
                                name: "tone-\(format.stereo ? "st" : "mono")-\(format.rate).\(format.ext)", in: dir)

        let decoder = try AudioFileDecoder(path: path)
        #expect(decoder.sourceChannels == (format.stereo ? 2 : 1))
        let audio = F.decodeAll(decoder)
        let frames = audio.count / 2
        #expect(abs(frames - 96_000) <= AudioFormat.blockFrames, "decoded \(frames) frames, expected 96000 ± 480")
        #expect(decoder.framesRead == Int64(frames))
        #expect(decoder.skippedPackets == 0)
        #expect(decoder.isFinished)
        #expect(decoder.endedEarly == nil)

        // Measure away from the edges (codec priming and resampler ramps).
        let from = 4_800, to = frames - 4_800
        let left = F.rms(audio, channel: 0, from: from, to: to)
        let right = F.rms(audio, channel: 1, from: from, to: to)
        #expect(abs(F.levelError(left, sineAmplitude: 0.25)) < 0.5, "left \(dbfs(left)) dBFS")
        #expect(abs(F.frequency(audio, channel: 0, from: from, to: to) - 1000) < 10)
        if format.stereo {
            #expect(abs(F.levelError(right, sineAmplitude: 0.125)) < 0.5, "right \(dbfs(right)) dBFS")
            #expect(abs(F.frequency(audio, channel: 1, from: from, to: to) - 1500) < 15)
        } else {
            #expect(abs(F.levelError(right, sineAmplitude: 0.25)) < 0.5, "right \(dbfs(right)) dBFS")
            var maxDiff: Float = 0
            for f in 0..<frames { maxDiff = max(maxDiff, abs(audio[2 * f] - audio[2 * f + 1])) }
            #expect(maxDiff == 0, "mono must be identical in both channels")
        }
    }

    /// `read` honours the requested count whatever it is and hands out every frame exactly once.
    @Test(.enabled(if: F.hasFFmpeg, F.skipReason))
    func readsInAnyChunkSize() throws {
        let dir = try F.makeDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = try F.signal(["0.3+0.1*sin(2*PI*440*t)"], rate: 48_000, seconds: 0.5, codec: ["-c:a", "pcm_f32le"],
                                name: "chunks.wav", in: dir)
        let whole = F.decodeAll(try AudioFileDecoder(path: path))
        #expect(whole.count == 24_000 * 2)

        let decoder = try AudioFileDecoder(path: path)
        var pieces: [Float] = []
        var buffer = [Float](repeating: 0, count: 20_000 * 2)
        let sizes = [1, 7, 480, 3, 20_000, 333]
        var i = 0
        while i < 1_000 {
            let want = sizes[i % sizes.count]
            let n = buffer.withUnsafeMutableBufferPointer { decoder.read(into: $0.baseAddress!, frames: want) }
            #expect(n <= want)
            if n == 0 { break }
            if n < want { #expect(decoder.isFinished) }
            pieces.append(contentsOf: buffer[0..<(n * 2)])
            i += 1
        }
        #expect(difference(pieces, whole) == nil)
        #expect(buffer.withUnsafeMutableBufferPointer { decoder.read(into: $0.baseAddress!, frames: 480) } == 0)
    }

    /// A stream that changes sample rate and channel count mid-file (two MP3s back to back):
    /// both halves play, each at its own level, with nothing lost at the change.
    @Test(.enabled(if: F.hasFFmpeg, F.skipReason))
    func followsFormatChangeMidStream() throws {
        let dir = try F.makeDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let plain = ["-c:a", "libmp3lame", "-b:a", "128k", "-write_xing", "0", "-id3v2_version", "0"]
        let first = try F.signal([F.sine(1000, amplitude: 0.25)], rate: 44_100, seconds: 1, codec: plain,
                                 name: "a.mp3", in: dir)
        let second = try F.signal([F.sine(1000, amplitude: 0.125), F.sine(1500, amplitude: 0.25)], rate: 32_000,
                                  seconds: 1, codec: plain, name: "b.mp3", in: dir)
        let joined = dir.appendingPathComponent("joined.mp3").path
        var data = try Data(contentsOf: URL(fileURLWithPath: first))
        data.append(try Data(contentsOf: URL(fileURLWithPath: second)))
        try data.write(to: URL(fileURLWithPath: joined))

        let decoder = try AudioFileDecoder(path: joined)
        let audio = F.decodeAll(decoder)
        let frames = audio.count / 2
        // Without LAME headers the codec delay and padding stay in: allow 3 frames' worth (~80 ms).
        #expect(frames >= 96_000 && frames <= 96_000 + 4_000, "decoded \(frames) frames")
        #expect(decoder.skippedPackets == 0)
        let a = (9_600, 38_400), b = (frames - 38_400, frames - 9_600)
        #expect(abs(F.levelError(F.rms(audio, channel: 0, from: a.0, to: a.1), sineAmplitude: 0.25)) < 0.5)
        #expect(abs(F.levelError(F.rms(audio, channel: 1, from: a.0, to: a.1), sineAmplitude: 0.25)) < 0.5)
        #expect(abs(F.levelError(F.rms(audio, channel: 0, from: b.0, to: b.1), sineAmplitude: 0.125)) < 0.5)
        #expect(abs(F.levelError(F.rms(audio, channel: 1, from: b.0, to: b.1), sineAmplitude: 0.25)) < 0.5)
        #expect(abs(F.frequency(audio, channel: 1, from: b.0, to: b.1) - 1500) < 15)
    }

    /// Raw ADTS AAC has no container timing at all (frames carry no pts of their own).
    @Test(.enabled(if: F.hasFFmpeg, F.skipReason))
    func decodesTimestamplessADTS() throws {
        let dir = try F.makeDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = try F.signal([F.sine(1000, amplitude: 0.25)], seconds: 2, codec: ["-c:a", "aac", "-f", "adts"],
                                name: "raw.aac", in: dir)
        let audio = F.decodeAll(try AudioFileDecoder(path: path))
        let frames = audio.count / 2
        #expect(frames >= 96_000 && frames <= 96_000 + 3_000, "decoded \(frames) frames")
        #expect(abs(F.levelError(F.rms(audio, channel: 0, from: 9_600, to: 86_400), sineAmplitude: 0.25)) < 0.5)
    }

    @Test func missingFileIsTypedAndNamed() {
        let path = "/nonexistent/dir/no-such-track.mp3"
        #expect(throws: AudioFileError.missingFile(path: path)) { try AudioFileDecoder(path: path) }
        #expect(AudioFileError.missingFile(path: path).description.contains(path))
    }

    @Test(.enabled(if: F.hasFFmpeg, F.skipReason))
    func unplayableFilesAreTypedAndNamed() throws {
        let dir = try F.makeDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let empty = dir.appendingPathComponent("empty.mp3").path
        FileManager.default.createFile(atPath: empty, contents: Data())
        let random = dir.appendingPathComponent("random.mp3").path
        FileManager.default.createFile(atPath: random, contents: TracklistBytes.random(count: 64_000, seed: 7))
        let text = dir.appendingPathComponent("text.wav").path
        FileManager.default.createFile(atPath: text, contents: Data("not a wave file\n".utf8))
        let image = try F.ffmpeg(["-f", "lavfi", "-i", "testsrc=s=32x32", "-frames:v", "1"],
                                 output: dir.appendingPathComponent("picture.png").path)

        func failure(_ path: String) -> AudioFileError? {
            do { _ = try AudioFileDecoder(path: path); return nil } catch { return error }
        }
        let cases: [(String, String)] = [(empty, "notAudio"), (random, "notAudio"), (text, "notAudio"),
                                         (image, "noAudioStream"), (dir.path, "notAudio")]
        for (path, kind) in cases {
            let error = try #require(failure(path), "\(path) should not open")
            #expect(error.path == path)
            #expect(error.description.hasPrefix(path), "\(error)")
            switch (error, kind) {
            case (.notAudio, "notAudio"), (.noAudioStream, "noAudioStream"): break
            default: Issue.record("\(path): expected \(kind), got \(error)")
            }
        }
    }

    /// A file cut off mid-way plays what it has and ends early, without an error.
    @Test(.enabled(if: F.hasFFmpeg, F.skipReason))
    func truncatedFileEndsEarly() throws {
        let dir = try F.makeDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let full = try F.signal([F.sine(1000, amplitude: 0.25)], seconds: 2, codec: ["-c:a", "libmp3lame", "-b:a", "128k"],
                                name: "full.mp3", in: dir)
        let data = try Data(contentsOf: URL(fileURLWithPath: full))
        let cut = dir.appendingPathComponent("cut.mp3").path
        try data.prefix(data.count * 4 / 10).write(to: URL(fileURLWithPath: cut))

        let audio = F.decodeAll(try AudioFileDecoder(path: cut))
        let frames = audio.count / 2
        // 40 % of the bytes: ~0.8 s (the Xing header frame makes it a little less).
        #expect(frames > 28_800 && frames < 43_200, "decoded \(frames) frames")
        #expect(abs(F.levelError(F.rms(audio, channel: 0, from: 4_800, to: frames - 4_800), sineAmplitude: 0.25)) < 0.5)
    }

    /// Garbage in the middle of a file: the bad packets are skipped and counted, the rest plays.
    @Test(.enabled(if: F.hasFFmpeg, F.skipReason), arguments: ["flac", "m4a"])
    func corruptPacketsAreSkipped(_ ext: String) throws {
        let dir = try F.makeDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let good = try F.signal([F.sine(1000, amplitude: 0.25)], seconds: 2, codec: [], name: "good.\(ext)", in: dir)
        var data = try Data(contentsOf: URL(fileURLWithPath: good))
        let noise = TracklistBytes.random(count: data.count / 10, seed: 3)
        let start = data.count / 2
        data.replaceSubrange(start..<(start + noise.count), with: noise)
        let bad = dir.appendingPathComponent("bad.\(ext)").path
        try data.write(to: URL(fileURLWithPath: bad))

        let decoder = try AudioFileDecoder(path: bad)
        let audio = F.decodeAll(decoder)
        let frames = audio.count / 2
        #expect(decoder.skippedPackets >= 1)
        #expect(decoder.isFinished)
        #expect(frames > 48_000 && frames <= 96_000 + 480, "decoded \(frames) frames")
        // The undamaged first part is intact.
        #expect(abs(F.levelError(F.rms(audio, channel: 0, from: 4_800, to: 38_400), sineAmplitude: 0.25)) < 0.5)
    }
}

/// Deterministic pseudo-random bytes (xorshift) for corrupt-file inputs.
enum TracklistBytes {
    static func random(count: Int, seed: UInt64) -> Data {
        var state = seed | 1
        var bytes = [UInt8](repeating: 0, count: count)
        for i in 0..<count {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            bytes[i] = UInt8(truncatingIfNeeded: state >> 24)
        }
        return Data(bytes)
    }
}

// MARK: - TracklistPlayer

/// Lossless 48 kHz float WAVs make exact comparisons possible: what the player renders must be
/// exactly what each file decodes to, sample for sample.
private func floatWav(_ expr: String, seconds: Double, name: String, in dir: URL) throws -> String {
    try F.signal([expr], rate: 48_000, seconds: seconds, codec: ["-c:a", "pcm_f32le"], name: name, in: dir)
}

private func decoded(_ path: String) throws -> [Float] { F.decodeAll(try AudioFileDecoder(path: path)) }

/// nil when every sample in `samples[range]` is `value` (within `tolerance`), else the first one off.
/// Returns text rather than Bool so a failure prints one sample, not the whole buffer.
private func offValue(_ samples: [Float], _ range: Range<Int>, _ value: Float, tolerance: Float = 1e-6) -> String? {
    for i in range where !(abs(samples[i] - value) <= tolerance) {
        return "sample \(i) (frame \(i / 2)) is \(samples[i]), expected \(value)"
    }
    return nil
}

private func offValue(_ samples: [Float], from start: Int, _ value: Float, tolerance: Float = 1e-6) -> String? {
    offValue(samples, start..<samples.count, value, tolerance: tolerance)
}

/// nil when both buffers are identical, else where they first differ.
private func difference(_ x: [Float], _ y: [Float]) -> String? {
    if x.count != y.count { return "lengths differ: \(x.count) vs \(y.count) samples" }
    for i in x.indices where x[i] != y[i] { return "sample \(i) (frame \(i / 2)): \(x[i]) vs \(y[i])" }
    return nil
}

@Suite("Tracklist: TracklistPlayer")
struct TracklistPlayerTests {
    /// Two tracks back to back: the second one's first sample directly follows the first one's
    /// last sample, inside one block (the seam is 60 frames into a block).
    @Test(.enabled(if: F.hasFFmpeg, F.skipReason))
    func gaplessExact() throws {
        let dir = try F.makeDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let one = try floatWav("0.3+0.1*sin(2*PI*440*t)", seconds: 0.70125, name: "one.wav", in: dir)
        let two = try floatWav("-0.3+0.1*sin(2*PI*660*t)", seconds: 0.5, name: "two.wav", in: dir)
        let a = try decoded(one), b = try decoded(two)
        #expect(a.count / 2 == 33_660 && b.count / 2 == 24_000)

        let player = TracklistPlayer(tracks: [Track(title: "One", path: one), Track(title: "Two", path: two)], loop: false)
        let out = F.render(player, blocks: 150)
        let total = (a.count + b.count) / 2
        #expect(difference(Array(out[0..<(a.count + b.count)]), a + b) == nil, "rendered audio must be the two files joined exactly")
        #expect(F.firstSilentFrame(out) == total)
        #expect(offValue(out, from: total * 2, 0, tolerance: 0) == nil)
        #expect(player.state == .stopped)
        #expect(player.currentTrack == nil)
        #expect(player.stats.tracksStarted == 2)
        #expect(player.stats.tracksFailed == 0)
    }

    /// MP3s at 44.1 kHz: the output length is the sum of the tracks and no block at the seam is silent.
    @Test(.enabled(if: F.hasFFmpeg, F.skipReason))
    func gaplessMP3() throws {
        let dir = try F.makeDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let codec = ["-c:a", "libmp3lame", "-b:a", "192k"]
        let one = try F.signal([F.sine(1000, amplitude: 0.25)], seconds: 1.3125, codec: codec, name: "one.mp3", in: dir)
        let two = try F.signal([F.sine(700, amplitude: 0.25)], seconds: 1.1, codec: codec, name: "two.mp3", in: dir)
        let lengths = try [one, two].map { try decoded($0).count / 2 }

        let player = TracklistPlayer(tracks: [Track(title: "One", path: one), Track(title: "Two", path: two)], loop: false)
        let out = F.render(player, blocks: 300)
        let total = lengths[0] + lengths[1]
        #expect(F.firstSilentFrame(out, from: total - 100) == total)
        let blocks = total / AudioFormat.blockFrames
        for block in 0..<blocks {
            let r = F.rms(out, channel: 0, from: block * 480, to: block * 480 + 480)
            #expect(r > 0.1, "block \(block) of \(blocks) is too quiet: rms \(r)")
            if r <= 0.1 { break }
        }
        #expect(offValue(out, from: total * 2, 0, tolerance: 0) == nil)
    }

    /// With loop on, the list starts over right after its last track, gaplessly.
    @Test(.enabled(if: F.hasFFmpeg, F.skipReason))
    func loopWraps() throws {
        let dir = try F.makeDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let one = try floatWav("0.25", seconds: 0.2, name: "one.wav", in: dir)
        let two = try floatWav("-0.125", seconds: 0.15, name: "two.wav", in: dir)
        let a = try decoded(one), b = try decoded(two)
        let lap = (a.count + b.count) / 2
        #expect(lap == 16_800)

        let player = TracklistPlayer(tracks: [Track(title: "One", path: one), Track(title: "Two", path: two)], loop: true)
        let laps = 2
        let out = F.render(player, blocks: lap * laps / 480 + 10)
        #expect(difference(Array(out[0..<(lap * laps * 2)]), a + b + a + b) == nil)
        // 10 blocks into the third lap: track one again, 100 ms in.
        #expect(player.currentTrack == TrackStatus(index: 0, title: "One", positionMs: 100))
        #expect(player.state == .playing)
        #expect(player.stats.tracksStarted == 5)
    }

    /// `skip` moves on at the very next block, with only a 10 ms crossfade over the change.
    @Test(.enabled(if: F.hasFFmpeg, F.skipReason))
    func skipMovesOnAtNextBlock() throws {
        let dir = try F.makeDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let one = try floatWav("0.25", seconds: 2, name: "one.wav", in: dir)
        let two = try floatWav("-0.125", seconds: 2, name: "two.wav", in: dir)
        let player = TracklistPlayer(tracks: [Track(title: "One", path: one), Track(title: "Two", path: two)], loop: false)

        let before = F.render(player, blocks: 5)
        #expect(offValue(before, from: 0, 0.25) == nil)
        #expect(player.currentTrack == TrackStatus(index: 0, title: "One", positionMs: 50))

        player.skip()
        let change = F.render(player, blocks: 1, from: 2_400)
        #expect(player.currentTrack?.index == 1)
        #expect(abs(change[0] - 0.25) < 0.001, "the change block starts from the old track")
        #expect(abs(change[959] - -0.125) < 0.001, "and ends on the new one")

        let after = F.render(player, blocks: 4, from: 2_880)
        #expect(offValue(after, from: 0, -0.125) == nil)
        #expect(player.currentTrack == TrackStatus(index: 1, title: "Two", positionMs: 50))
        #expect(player.stats.tracksStarted == 2)
    }

    /// Pause: silence (after a 10 ms fade) with the position held; play resumes where it stopped.
    @Test(.enabled(if: F.hasFFmpeg, F.skipReason))
    func pauseHoldsPosition() throws {
        let dir = try F.makeDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        // Each sample's value is its own position: frame n holds n / 480000.
        let ramp = try floatWav("t/10", seconds: 3, name: "ramp.wav", in: dir)
        let player = TracklistPlayer(tracks: [Track(title: "Ramp", path: ramp)], loop: false)
        func position(_ value: Float) -> Int { Int((value * 480_000).rounded()) }

        let start = F.render(player, blocks: 10)
        #expect(position(start[2 * 4_799]) == 4_799)

        player.pause()
        #expect(player.state == .paused)
        let fading = F.render(player, blocks: 1)
        #expect(position(fading[0] / (479.0 / 480.0)) == 4_800, "the pause block fades out from where play was")
        #expect(fading[958] == 0 && fading[959] == 0)
        let paused = F.render(player, blocks: 20)
        #expect(offValue(paused, from: 0, 0, tolerance: 0) == nil)
        #expect(player.currentTrack?.positionMs == 110)
        #expect(player.state == .paused)

        player.play()
        let fadeIn = F.render(player, blocks: 1)
        #expect(fadeIn[0] == 0)
        #expect(position(fadeIn[958] / (479.0 / 480.0)) == 5_759, "resumes at the held position")
        let resumed = F.render(player, blocks: 2)
        #expect(position(resumed[0]) == 5_760)
        #expect(position(resumed[1_918]) == 6_719)
        #expect(player.state == .playing)
        #expect(player.currentTrack?.positionMs == 140)
    }

    /// Paused from the start (routing says PAUSED at show start): pure silence, then play begins the
    /// first track at its start.
    @Test(.enabled(if: F.hasFFmpeg, F.skipReason))
    func startsPaused() throws {
        let dir = try F.makeDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let ramp = try floatWav("t/10", seconds: 1, name: "ramp.wav", in: dir)
        let player = TracklistPlayer(tracks: [Track(title: "Ramp", path: ramp)], loop: false)
        player.pause()
        let silent = F.render(player, blocks: 5)
        #expect(offValue(silent, from: 0, 0, tolerance: 0) == nil)
        #expect(player.state == .paused)
        player.play()
        let first = F.render(player, blocks: 2)
        #expect(first[0] == 0)
        #expect(abs(first[960] - 480.0 / 480_000) < 1e-7, "second block starts at frame 480 of the track")
        #expect(player.currentTrack == TrackStatus(index: 0, title: "Ramp", positionMs: 20))
    }

    /// A missing file, random bytes named .mp3 and an empty file between two good tracks: all three
    /// skipped and counted, and the good tracks play back to back.
    @Test(.enabled(if: F.hasFFmpeg, F.skipReason))
    func badTracksAreSkippedAndCounted() throws {
        let dir = try F.makeDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let one = try floatWav("0.25", seconds: 0.3, name: "one.wav", in: dir)
        let two = try floatWav("-0.125", seconds: 0.3, name: "two.wav", in: dir)
        let random = dir.appendingPathComponent("random.mp3").path
        FileManager.default.createFile(atPath: random, contents: TracklistBytes.random(count: 50_000, seed: 11))
        let empty = dir.appendingPathComponent("empty.mp3").path
        FileManager.default.createFile(atPath: empty, contents: Data())
        let missing = dir.appendingPathComponent("missing.mp3").path

        let player = TracklistPlayer(tracks: [
            Track(title: "One", path: one), Track(title: "Missing", path: missing),
            Track(title: "Random", path: random), Track(title: "Empty", path: empty), Track(title: "Two", path: two),
        ], loop: false)
        let out = F.render(player, blocks: 80)
        #expect(offValue(out, 0..<28_800, 0.25) == nil)
        #expect(offValue(out, 28_800..<57_600, -0.125) == nil, "track 5 follows track 1 without a gap")
        #expect(offValue(out, from: 57_600, 0, tolerance: 0) == nil)
        let stats = player.stats
        #expect(stats.tracksFailed == 3)
        #expect(stats.tracksStarted == 2)
        #expect(stats.lastFailure?.contains(empty) == true, "\(stats.lastFailure ?? "nil")")
        #expect(player.state == .stopped)
    }

    /// When no track can play: silence, state FAILED, and no retrying every block.
    @Test(.enabled(if: F.hasFFmpeg, F.skipReason))
    func everyTrackFailingPlaysSilenceOnce() throws {
        let dir = try F.makeDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let random = dir.appendingPathComponent("random.mp3").path
        FileManager.default.createFile(atPath: random, contents: TracklistBytes.random(count: 20_000, seed: 5))
        let player = TracklistPlayer(tracks: [
            Track(title: "Missing", path: dir.appendingPathComponent("missing.flac").path),
            Track(title: "Random", path: random),
        ], loop: true)
        let out = F.render(player, blocks: 50)
        #expect(offValue(out, from: 0, 0, tolerance: 0) == nil)
        #expect(player.state == .failed)
        #expect(player.stats.tracksFailed == 2)
        _ = F.render(player, blocks: 200)
        #expect(player.stats.tracksFailed == 2, "no more attempts after a failed lap")
        #expect(player.currentTrack == nil)
    }

    @Test func emptyListIsStoppedSilence() {
        let player = TracklistPlayer(tracks: [], loop: true)
        var out = [Float](repeating: 1, count: 960)
        out.withUnsafeMutableBufferPointer { player.render(into: $0.baseAddress!, frames: 480, at: 0) }
        #expect(offValue(out, from: 0, 0, tolerance: 0) == nil)
        #expect(player.state == .stopped)
    }

    /// An S3 location without a fetcher is a failed track that names the object.
    @Test func unresolvableLocationIsCounted() {
        let player = TracklistPlayer(tracks: [Track(title: "Remote", location: .s3(bucket: "music", key: "a/b.mp3"))],
                                     loop: false)
        let out = F.render(player, blocks: 3)
        #expect(offValue(out, from: 0, 0, tolerance: 0) == nil)
        #expect(player.stats.tracksFailed == 1)
        #expect(player.stats.lastFailure?.contains("s3://music/a/b.mp3") == true)
        #expect(player.state == .stopped)
    }

    /// The next track is opened ahead of time: with no waiting allowed at all, the change is still
    /// gapless once the prefetch has had a moment.
    @Test(.enabled(if: F.hasFFmpeg, F.skipReason))
    func prefetchMakesSwitchFree() throws {
        let dir = try F.makeDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let one = try floatWav("0.25", seconds: 0.1, name: "one.wav", in: dir)
        let two = try floatWav("-0.125", seconds: 0.1, name: "two.wav", in: dir)
        let player = TracklistPlayer(tracks: [Track(title: "One", path: one), Track(title: "Two", path: two)],
                                     loop: false, handoverTimeout: 0)
        #expect(player.prepare(timeout: 10))
        _ = F.render(player, blocks: 1)
        let deadline = Date(timeIntervalSinceNow: 10)
        while !player.isNextTrackReady && Date() < deadline { usleep(1_000) }
        #expect(player.isNextTrackReady)
        let rest = F.render(player, blocks: 20)
        #expect(offValue(rest, 0..<(9 * 960), 0.25) == nil)
        #expect(offValue(rest, (9 * 960)..<(19 * 960), -0.125) == nil)
    }

    /// A live run never waits in render: while a track is still being fetched the player renders
    /// silence in state LOADING, then plays once the file is handed over.
    @Test(.enabled(if: F.hasFFmpeg, F.skipReason))
    func slowFetchDoesNotBlockRender() throws {
        let dir = try F.makeDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let one = try floatWav("0.25", seconds: 0.5, name: "one.wav", in: dir)
        let gate = TracklistGatedResolver(path: one)
        let player = TracklistPlayer(tracks: [Track(title: "Remote", location: .s3(bucket: "b", key: "one.wav"))],
                                     loop: false, resolver: gate, handoverTimeout: 0)
        let started = Date()
        let waiting = F.render(player, blocks: 10)
        #expect(Date().timeIntervalSince(started) < 2)
        #expect(offValue(waiting, from: 0, 0, tolerance: 0) == nil)
        #expect(player.state == .loading)

        gate.open()
        #expect(player.prepare(timeout: 10))
        let playing = F.render(player, blocks: 5)
        #expect(offValue(playing, from: 0, 0.25) == nil)
        #expect(player.currentTrack == TrackStatus(index: 0, title: "Remote", positionMs: 50))
    }

    /// The shared music fixtures (44.1 kHz sines at 0.25, 12 s each), when present.
    @Test(.enabled(if: FileManager.default.fileExists(atPath: TracklistPlayerTests.musicFixtures),
                   "no music fixtures at /work/main/fixtures/tones/music"),
          arguments: [("t1-1500.mp3", 1500), ("t2-1800.m4a", 1800), ("t3-2100.wav", 2100), ("t4-2400.flac", 2400)])
    func musicFixtureDecodes(_ name: String, _ tone: Int) throws {
        let path = "\(Self.musicFixtures)/\(name)"
        let audio = try decoded(path)
        let frames = audio.count / 2
        #expect(abs(frames - 12 * 48_000) <= 480, "\(name): \(frames) frames")
        for channel in 0..<2 {
            let level = F.rms(audio, channel: channel, from: 48_000, to: frames - 48_000)
            #expect(abs(F.levelError(level, sineAmplitude: 0.25)) < 0.5, "\(name) channel \(channel): \(dbfs(level)) dBFS")
            let pitch = F.frequency(audio, channel: channel, from: 48_000, to: frames - 48_000)
            #expect(abs(pitch - Double(tone)) < Double(tone) / 100, "\(name): \(pitch) Hz")
        }
    }

    static let musicFixtures = "/work/main/fixtures/tones/music"
}

/// Stands in for an S3 fetcher: hands over the path only once the test opens the gate.
final class TracklistGatedResolver: TrackFileResolver {
    let path: String
    private let gate = DispatchSemaphore(value: 0)
    init(path: String) { self.path = path }
    func open() { gate.signal() }
    func localPath(for location: TrackLocation) throws -> String {
        // Bounded so a broken test cannot hang the prefetch queue forever.
        if gate.wait(timeout: .now() + 20) == .timedOut {
            throw TrackResolveError(location: location, reason: "test gate never opened")
        }
        return path
    }
}
