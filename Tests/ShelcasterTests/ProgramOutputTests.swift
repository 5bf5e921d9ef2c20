import AudioCore
import Foundation
import Testing
import CFFmpeg
@testable import ProgramOutput

/// Ten seconds of a 1 kHz program through the real encoders and muxers, checked with ffprobe/ffmpeg.
@Suite("ProgramOutput", .serialized)
struct ProgramOutputTests {
    static let tenSeconds = 10 * AudioFormat.sampleRate

    // MARK: FLV

    @Test("FLV: one AAC-LC 48 kHz stereo stream, one H.264 stream, IDR every 2 s, no B-frames, 10 s",
          .enabled(if: POTest.hasFFTools, "ffprobe/ffmpeg not installed"))
    func flvFile() throws {
        let dir = POTest.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("program.flv")
        let sink = try makeSink(try OutputTarget.parse(file.path))
        try POTest.writeSine(to: sink, frames: Self.tenSeconds)
        try sink.finish()

        let stats = sink.stats
        #expect(stats.audioFrames == Int64(Self.tenSeconds))
        #expect(stats.videoPackets == 300)
        let size = try FileManager.default.attributesOfItem(atPath: file.path)[.size] as? NSNumber
        #expect(stats.bytesWritten == size?.int64Value)
        // 128 kb/s of audio plus a still picture: well under 400 kb/s in all.
        #expect(stats.kbps > 100 && stats.kbps < 400, "kbps \(stats.kbps)")

        let probe = try POTest.ffprobeJSON(["-show_streams", "-show_format", file.path])
        let streams = probe["streams"] as? [[String: Any]] ?? []
        #expect(streams.count == 2)
        let audio = streams.filter { $0["codec_type"] as? String == "audio" }
        let video = streams.filter { $0["codec_type"] as? String == "video" }
        try #require(audio.count == 1 && video.count == 1)
        #expect(audio[0]["codec_name"] as? String == "aac")
        #expect(audio[0]["profile"] as? String == "LC")
        #expect(audio[0]["sample_rate"] as? String == "48000")
        #expect(audio[0]["channels"] as? Int == 2)
        #expect(video[0]["codec_name"] as? String == "h264")
        #expect(video[0]["width"] as? Int == 1280)
        #expect(video[0]["height"] as? Int == 720)
        #expect(video[0]["has_b_frames"] as? Int == 0)
        #expect((video[0]["profile"] as? String)?.contains("Baseline") == true)
        let format = probe["format"] as? [String: Any]
        let duration = Double(format?["duration"] as? String ?? "") ?? -1
        #expect(abs(duration - 10) <= 0.1, "duration \(duration)")

        // Video packets: 300 at 30 fps from 0, keyframes exactly at 0, 2, 4, 6, 8 s.
        let packets = try POTest.ffprobeJSON(["-select_streams", "v:0", "-show_entries",
                                              "packet=pts_time,dts_time,flags,size", file.path])["packets"] as? [[String: Any]] ?? []
        #expect(packets.count == 300)
        let times = packets.compactMap { Double($0["dts_time"] as? String ?? "") }
        #expect(times.first == 0)
        #expect(zip(times, times.dropFirst()).allSatisfy { $0 < $1 }, "video dts must increase")
        let keyTimes = packets.filter { ($0["flags"] as? String)?.hasPrefix("K") == true }
            .compactMap { Double($0["pts_time"] as? String ?? "") }
        #expect(keyTimes.count == 5)
        for (i, t) in keyTimes.enumerated() { #expect(abs(t - Double(2 * i)) < 0.02, "keyframe \(i) at \(t)") }
        // The repeated P-frames are skip frames: tiny next to the IDR.
        let sizes = packets.compactMap { Int($0["size"] as? String ?? "") }
        let keySize = sizes.first ?? 0
        let largestP = sizes.enumerated().filter { $0.offset % 60 != 0 }.map(\.element).max() ?? .max
        #expect(keySize > 1000)
        #expect(largestP < 64, "largest P-frame \(largestP) bytes")

        // Decoded picture types: I then P only.
        let frames = try POTest.ffprobeJSON(["-select_streams", "v:0", "-show_entries", "frame=pict_type", file.path])["frames"] as? [[String: Any]] ?? []
        let types = frames.compactMap { $0["pict_type"] as? String }
        #expect(types.count == 300)
        #expect(!types.contains("B"))
        #expect(types.enumerated().allSatisfy { $0.element == ($0.offset % 60 == 0 ? "I" : "P") })

        // Audio packets start at 0 and increase.
        let audioPackets = try POTest.ffprobeJSON(["-select_streams", "a:0", "-show_entries", "packet=dts_time", file.path])["packets"] as? [[String: Any]] ?? []
        let audioTimes = audioPackets.compactMap { Double($0["dts_time"] as? String ?? "") }
        #expect(audioTimes.first == 0)
        #expect(zip(audioTimes, audioTimes.dropFirst()).allSatisfy { $0 < $1 })

        // The tone survives AAC: 1 kHz at -6.02 dBFS left and -12.04 dBFS right, within 0.5 dB.
        let raw = dir.appendingPathComponent("decoded.f32")
        try POTest.run(POTest.ffmpeg!, ["-v", "error", "-y", "-i", file.path, "-map", "0:a:0",
                                        "-f", "f32le", "-acodec", "pcm_f32le", "-ac", "2", "-ar", "48000", raw.path])
        let decoded = try POTest.readFloats(raw)
        #expect(decoded.count / 2 >= Self.tenSeconds)
        let window = 8 * AudioFormat.sampleRate
        let left = POTest.toneAmplitude(decoded, channel: 0, from: AudioFormat.sampleRate, count: window)
        let right = POTest.toneAmplitude(decoded, channel: 1, from: AudioFormat.sampleRate, count: window)
        #expect(abs(POTest.db(left, over: 0.5)) <= 0.5, "left tone \(left)")
        #expect(abs(POTest.db(right, over: 0.25)) <= 0.5, "right tone \(right)")
    }

    @Test("FLV: the AAC bandwidth is audioCutoffHz (15 kHz by default); 0 leaves FFmpeg's wider choice",
          .enabled(if: POTest.hasFFTools, "ffprobe/ffmpeg not installed"))
    func aacCutoff() throws {
        let dir = POTest.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        /// Level in dBFS of `hz` in the left channel of what the FLV decodes to, seconds 1 to 2.
        func levels(cutoff: Int?) throws -> (low: Double, high: Double) {
            let file = dir.appendingPathComponent("cutoff-\(cutoff ?? -1).flv")
            var options = OutputOptions()
            if let cutoff { options.audioCutoffHz = cutoff }
            let sink = try makeSink(try OutputTarget.parse(file.path), options: options)
            // 1 kHz at 0.25 and 16.5 kHz at 0.125, both channels.
            let n = 3 * AudioFormat.sampleRate
            var samples = [Float](repeating: 0, count: n * 2)
            for i in 0..<n {
                let t = Double(i) / Double(AudioFormat.sampleRate)
                let v = Float(0.25 * sin(2 * .pi * 1000 * t) + 0.125 * sin(2 * .pi * 16_500 * t))
                samples[2 * i] = v; samples[2 * i + 1] = v
            }
            try samples.withUnsafeBufferPointer { try sink.write($0.baseAddress!, frames: n) }
            try sink.finish()
            let raw = dir.appendingPathComponent("cutoff-\(cutoff ?? -1).f32")
            try POTest.run(POTest.ffmpeg!, ["-v", "error", "-y", "-i", file.path, "-map", "0:a:0",
                                            "-f", "f32le", "-acodec", "pcm_f32le", "-ac", "2", "-ar", "48000", raw.path])
            let left = try POTest.readFloats(raw).enumerated().filter { $0.offset % 2 == 0 }.map(\.element)
            let window = left[AudioFormat.sampleRate..<(2 * AudioFormat.sampleRate)]
            return (Analysis.toneDbfs(window, frequency: 1000), Analysis.toneDbfs(window, frequency: 16_500))
        }
        let byDefault = try levels(cutoff: nil)
        #expect(abs(byDefault.low - dbfs(0.25)) < 0.5, "1 kHz \(byDefault.low) dBFS")
        #expect(byDefault.high < -60, "16.5 kHz above a 15 kHz cutoff: \(byDefault.high) dBFS")
        let automatic = try levels(cutoff: 0)
        #expect(abs(automatic.high - dbfs(0.125)) < 1, "16.5 kHz with FFmpeg's own bandwidth: \(automatic.high) dBFS")
        #expect(throws: ProgramOutputError.self) { try OutputOptions(audioCutoffHz: 100).validate() }
    }

    @Test("AAC encoder: the options reach it (coder, mid/side off by default, bandwidth)")
    func aacEncoderOptions() throws {
        for midSide in [false, true] {
            var options = OutputOptions()
            options.aacMidSide = midSide
            var ctx: UnsafeMutablePointer<AVCodecContext>? = try FLVSink.openAudioEncoder(options, globalHeader: true)
            defer { avcodec_free_context(&ctx) }
            var value: Int64 = -9
            #expect(av_opt_get_int(ctx!.pointee.priv_data, "aac_ms", 0, &value) == 0)
            #expect(value == (midSide ? 1 : 0))
            var coder: Int64 = -9
            #expect(av_opt_get_int(ctx!.pointee.priv_data, "aac_coder", 0, &coder) == 0)
            #expect(coder == 2, "aac_coder fast is 2 in FFmpeg 5.1's enum")
            #expect(ctx!.pointee.cutoff == 15_000)
        }
    }

    @Test("FLV: video follows program time while writing",
          .enabled(if: POTest.hasFFTools, "ffprobe/ffmpeg not installed"))
    func videoFollowsProgramTime() throws {
        let dir = POTest.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let sink = try makeSink(.flvFile(path: dir.appendingPathComponent("t.flv").path))
        // Odd block sizes: the sink must not depend on 480-frame blocks.
        try POTest.writeSine(to: sink, frames: 48_000, blocks: [1, 333, 1024, 4799, 7])
        // 1 s written: frames 0...29 (starting before 1 s) are out.
        #expect(sink.stats.videoPackets == 30)
        try POTest.writeSine(to: sink, frames: 1)
        #expect(sink.stats.videoPackets == 31)
        try POTest.writeSine(to: sink, frames: 3 * 48_000 - 1)
        #expect(sink.stats.videoPackets == 120)
        try sink.finish()
        #expect(sink.stats.audioFrames == 4 * 48_000)
        #expect(throws: ProgramOutputError.self) { try POTest.writeSine(to: sink, frames: 480) }
        try sink.finish()  // a second finish does nothing
    }

    @Test("FLV: the built-in card is a dark picture with an amber mark in the middle",
          .enabled(if: POTest.hasFFTools, "ffprobe/ffmpeg not installed"))
    func builtInCard() throws {
        let dir = POTest.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("card.flv")
        let sink = try makeSink(.flvFile(path: file.path))
        try POTest.writeSine(to: sink, frames: 48_000)
        try sink.finish()
        let (w, h, rgb) = try POTest.firstFrameRGB(file, in: dir)
        #expect(w == 1280 && h == 720)
        func pixel(_ x: Int, _ y: Int) -> (Int, Int, Int) {
            let o = (y * w + x) * 3
            return (Int(rgb[o]), Int(rgb[o + 1]), Int(rgb[o + 2]))
        }
        let centre = pixel(w / 2, h / 2)
        #expect(centre.0 > 200 && centre.1 > 130 && centre.2 < 120, "centre \(centre)")
        for corner in [pixel(4, 4), pixel(w - 5, 4), pixel(4, h - 5), pixel(w - 5, h - 5)] {
            #expect(max(corner.0, corner.1, corner.2) < 70, "corner \(corner)")
        }
        // An arc of the mark: light, on the horizontal axis at 0.105 * 720 px right of centre.
        let arc = pixel(w / 2 + Int(0.105 * 720), h / 2)
        #expect(arc.0 > 180 && arc.1 > 180 && arc.2 > 180, "arc \(arc)")
    }

    @Test("FLV: artwork sets the video size (rounded down to even) and its colours survive",
          .enabled(if: POTest.hasFFTools, "ffprobe/ffmpeg not installed"))
    func artwork() throws {
        let dir = POTest.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let ffmpeg = try #require(POTest.ffmpeg)

        let odd = dir.appendingPathComponent("odd.png")
        try POTest.run(ffmpeg, ["-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=641x361", "-frames:v", "1", odd.path])
        let flv1 = dir.appendingPathComponent("odd.flv")
        let sink1 = try makeSink(.flvFile(path: flv1.path), options: OutputOptions(artworkPath: odd.path))
        try POTest.writeSine(to: sink1, frames: 48_000)
        try sink1.finish()
        let (w1, h1, _) = try POTest.firstFrameRGB(flv1, in: dir)
        #expect(w1 == 640 && h1 == 360)

        // A flat colour as JPEG: the decoded picture keeps it (BT.709 tagged and converted).
        let jpeg = dir.appendingPathComponent("blue.jpg")
        try POTest.run(ffmpeg, ["-v", "error", "-y", "-f", "lavfi", "-i", "color=c=0x3366CC:size=320x240",
                                "-frames:v", "1", "-q:v", "2", jpeg.path])
        let flv2 = dir.appendingPathComponent("blue.flv")
        let sink2 = try makeSink(.flvFile(path: flv2.path), options: OutputOptions(artworkPath: jpeg.path))
        try POTest.writeSine(to: sink2, frames: 48_000)
        try sink2.finish()
        let (w2, h2, rgb) = try POTest.firstFrameRGB(flv2, in: dir)
        #expect(w2 == 320 && h2 == 240)
        let o = (h2 / 2 * w2 + w2 / 2) * 3
        let centre = (Int(rgb[o]), Int(rgb[o + 1]), Int(rgb[o + 2]))
        #expect(abs(centre.0 - 0x33) <= 8 && abs(centre.1 - 0x66) <= 8 && abs(centre.2 - 0xCC) <= 8, "centre \(centre)")

        // An explicit size letterboxes the picture onto the card instead of stretching it.
        let flv3 = dir.appendingPathComponent("boxed.flv")
        let sink3 = try makeSink(.flvFile(path: flv3.path),
                                 options: OutputOptions(artworkPath: jpeg.path, videoSize: VideoSize(width: 640, height: 240)))
        try POTest.writeSine(to: sink3, frames: 4_800)
        try sink3.finish()
        let (w3, h3, rgb3) = try POTest.firstFrameRGB(flv3, in: dir)
        #expect(w3 == 640 && h3 == 240)
        let side = (Int(rgb3[(120 * w3 + 20) * 3]), Int(rgb3[(120 * w3 + 20) * 3 + 2]))
        let middle = (Int(rgb3[(120 * w3 + 320) * 3]), Int(rgb3[(120 * w3 + 320) * 3 + 2]))
        #expect(side.1 < 100 && middle.1 > 180, "side \(side) middle \(middle)")
    }

    // MARK: WAV

    @Test("WAV: exactly the frames written, 48 kHz stereo 16-bit, readable by Python's wave and ffprobe",
          .enabled(if: POTest.hasFFTools, "ffprobe/ffmpeg not installed"))
    func wavFile() throws {
        let dir = POTest.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("program.wav")
        let sink = try makeSink(try OutputTarget.parse(file.path))
        let total = Self.tenSeconds + 7
        try POTest.writeSine(to: sink, frames: total, blocks: [480, 480, 1, 1023, 9600, 13])
        try sink.finish()
        #expect(sink.stats.audioFrames == Int64(total))
        #expect(sink.stats.videoPackets == 0)

        let wav = try POTest.readWAV(file)
        #expect(wav.channels == 2 && wav.sampleRate == 48_000 && wav.bits == 16)
        #expect(wav.samples.count == total * 2)
        let floats = wav.samples.map { Float($0) / 32767 }
        let left = POTest.toneAmplitude(floats, channel: 0, from: 0, count: 9 * AudioFormat.sampleRate)
        let right = POTest.toneAmplitude(floats, channel: 1, from: 0, count: 9 * AudioFormat.sampleRate)
        #expect(abs(POTest.db(left, over: 0.5)) <= 0.05, "left \(left)")
        #expect(abs(POTest.db(right, over: 0.25)) <= 0.05, "right \(right)")
        // Sample-exact: frame 12 is sin(2π·1000·12/48000) = 1 (a peak).
        #expect(wav.samples[24] == Int16((0.5 * 32767).rounded()))
        #expect(wav.samples[25] == Int16((0.25 * 32767).rounded()))

        let probe = try POTest.ffprobeJSON(["-show_streams", file.path])
        let stream = (probe["streams"] as? [[String: Any]])?.first
        #expect(stream?["codec_name"] as? String == "pcm_s16le")
        #expect(stream?["sample_rate"] as? String == "48000")
        #expect(stream?["channels"] as? Int == 2)
        #expect(stream?["duration_ts"] as? Int == total)

        if let python = POTest.python {
            let r = try POTest.run(python, ["-c", """
                import sys, wave
                w = wave.open(sys.argv[1], 'rb')
                print(w.getnchannels(), w.getframerate(), w.getsampwidth(), w.getnframes())
                """, file.path])
            #expect(r.text.trimmingCharacters(in: .whitespacesAndNewlines) == "2 48000 2 \(total)")
        }
    }

    @Test("WAV: overs clip to full scale, never wrap; NaN is silence")
    func wavClips() throws {
        let dir = POTest.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let file = dir.appendingPathComponent("clip.wav")
        let sink = try makeSink(.wavFile(path: file.path))
        let input: [Float] = [1.5, -2.0, 0.999, -1.0, .nan, .infinity, -.infinity, 0.25]
        try input.withUnsafeBufferPointer { try sink.write($0.baseAddress!, frames: input.count / 2) }
        try sink.finish()
        let wav = try POTest.readWAV(file)
        #expect(wav.samples == [32767, -32767, 32734, -32767, 0, 32767, -32767, 8192])
    }

    // MARK: Targets and errors

    @Test("parse: file extensions and RTMP URLs")
    func parseTargets() throws {
        #expect(try OutputTarget.parse("out/show.flv") == .flvFile(path: "out/show.flv"))
        #expect(try OutputTarget.parse("/tmp/SHOW.WAV") == .wavFile(path: "/tmp/SHOW.WAV"))
        #expect(try OutputTarget.parse("show:1.flv") == .flvFile(path: "show:1.flv"))
        #expect(try OutputTarget.parse("rtmp://127.0.0.1/live/test") == .stream(url: "rtmp://127.0.0.1/live/test"))
        let ivs = "rtmps://abc.global-contribute.live-video.net:443/app/sk_us-west-2_x?priority=2"
        #expect(try OutputTarget.parse(ivs) == .stream(url: ivs))
        let parsed = try StreamURL(ivs)
        #expect(parsed.secure && parsed.host == "abc.global-contribute.live-video.net" && parsed.port == 443 && parsed.app == "app")
        #expect(try StreamURL("rtmp://[::1]:1935/live/k").host == "::1")
    }

    @Test("bad targets give typed, bad-input errors that name what was wrong")
    func badTargets() throws {
        func error(_ body: () throws -> Any) -> ProgramOutputError? {
            do { _ = try body(); return nil } catch { return error as? ProgramOutputError }
        }
        let ftp = error { try OutputTarget.parse("ftp://x") }
        guard case .unsupportedTarget = ftp else { Issue.record("ftp: \(String(describing: ftp))"); return }
        #expect(ftp?.isBadInput == true)
        #expect(ftp?.description.contains("ftp") == true)

        for bad in ["out.mp3", "", "noextension"] {
            let e = error { try OutputTarget.parse(bad) }
            guard case .unsupportedTarget = e else { Issue.record("\(bad): \(String(describing: e))"); continue }
        }
        for bad in ["rtmp://host", "rtmp://host/app", "rtmp:///app/key", "rtmp://host:99999/app/key",
                    "rtmp://host:x/app/key", "rtmps://host/app/key with space"] {
            let e = error { try OutputTarget.parse(bad) }
            guard case .invalidStreamURL = e else { Issue.record("\(bad): \(String(describing: e))"); continue }
            #expect(e?.isBadInput == true)
        }

        let nowhere = "/nonexistent/dir/a.flv"
        let flv = error { try makeSink(.flvFile(path: nowhere)) }
        guard case .outputNotWritable = flv else { Issue.record("flv: \(String(describing: flv))"); return }
        #expect(flv?.description.contains(nowhere) == true)
        #expect(flv?.isBadInput == true)
        let wav = error { try makeSink(.wavFile(path: "/nonexistent/dir/a.wav")) }
        guard case .outputNotWritable = wav else { Issue.record("wav: \(String(describing: wav))"); return }

        let dir = POTest.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let out = dir.appendingPathComponent("a.flv").path
        let missing = dir.appendingPathComponent("missing.png").path
        let art = error { try makeSink(.flvFile(path: out), options: OutputOptions(artworkPath: missing)) }
        #expect(art == .artworkNotFound(missing))
        #expect(art?.description.contains(missing) == true)
        #expect(!FileManager.default.fileExists(atPath: out), "nothing is created for a bad input")

        let text = dir.appendingPathComponent("notes.png")
        try Data("not a picture".utf8).write(to: text)
        let unreadable = error { try makeSink(.flvFile(path: out), options: OutputOptions(artworkPath: text.path)) }
        guard case .artworkUnreadable(let path, _) = unreadable else {
            Issue.record("text artwork: \(String(describing: unreadable))"); return
        }
        #expect(path == text.path)
        #expect(unreadable?.isBadInput == true)

        let truncated = dir.appendingPathComponent("truncated.png")
        try Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13]).write(to: truncated)
        let broken = error { try makeSink(.flvFile(path: out), options: OutputOptions(artworkPath: truncated.path)) }
        guard case .artworkUnreadable = broken else { Issue.record("truncated: \(String(describing: broken))"); return }

        let ca = error { try makeSink(.flvFile(path: out), options: OutputOptions(caFile: missing)) }
        #expect(ca == .caFileNotFound(missing))
        let options = error { try makeSink(.flvFile(path: out), options: OutputOptions(frameRate: 0)) }
        guard case .invalidOptions = options else { Issue.record("options: \(String(describing: options))"); return }
        let oddSize = error { try makeSink(.flvFile(path: out), options: OutputOptions(videoSize: VideoSize(width: 641, height: 360))) }
        guard case .invalidOptions = oddSize else { Issue.record("size: \(String(describing: oddSize))"); return }
    }

    @Test("the stream key never appears in descriptions or errors")
    func redaction() throws {
        let url = "rtmps://host/app/SECRETKEY"
        let target = try OutputTarget.parse(url)
        #expect(target.redactedDescription == "rtmps://host/app/***")
        var dumped = ""
        dump(target, to: &dumped)
        for text in [target.description, target.debugDescription, "\(target)", String(reflecting: target), dumped,
                     "\(OutputTarget.stream(url: url + "?priority=1"))"] {
            #expect(!text.contains("SECRETKEY"), "\(text)")
        }
        #expect(OutputTarget.redact("rtmp://user:SECRETPASS@h:1935/live/SECRETKEY?x=SECRETQ") == "rtmp://***@h:1935/live/***")
        #expect(OutputTarget.redact("rtmps://h/SECRETKEY") == "rtmps://h/***")
        #expect(OutputTarget.redact("rtmps://h?SECRETKEY") == "rtmps://h/***")
        #expect(OutputTarget.redact("rtmp://h/app") == "rtmp://h/***")
        #expect(OutputTarget.redact("rtmps://h:SECRETKEY/app/x") == "rtmps://h:***/app/***")
        #expect(OutputTarget.redact("rtmp://[::1]:1935/live/SECRETKEY") == "rtmp://[::1]:1935/live/***")
        #expect(OutputTarget.redact("SECRETKEY://h/app/x") == "***://h/app/***")
        #expect(OutputTarget.redact("/plain/path.flv") == "/plain/path.flv")

        var messages: [String] = []
        func collect(_ body: () throws -> Any) {
            do { _ = try body(); Issue.record("expected an error") } catch {
                messages.append("\(error)")
                messages.append(String(reflecting: error))
                messages.append(error.localizedDescription)
            }
        }
        collect { try OutputTarget.parse("ftp://user:SECRETKEY@x/SECRETKEY") }
        collect { try OutputTarget.parse("rtmps://host/SECRETKEY") }
        collect { try OutputTarget.parse("rtmps://host:SECRETKEY/app/SECRETKEY") }
        collect { try OutputTarget.parse("rtmps://host/app/SECRETKEY with space") }
        collect { try OutputTarget.parse("SECRETKEY://host/app/x") }
        collect { try OutputTarget.parse("rtmps:/host/app/SECRETKEY") }
        // Nothing listens on loopback port 1: the connection is refused at once.
        collect { try makeSink(.stream(url: "rtmp://127.0.0.1:1/app/SECRETKEY"), options: OutputOptions(ioTimeoutSeconds: 5)) }
        collect { try makeSink(.stream(url: "rtmps://127.0.0.1:1/app/SECRETKEY"), options: OutputOptions(ioTimeoutSeconds: 5)) }
        #expect(messages.count == 24)
        for m in messages { #expect(!m.contains("SECRETKEY"), "\(m)") }
        #expect(messages[18].contains("rtmp://127.0.0.1:1/app/***"), "\(messages[18])")
    }

    @Test("rtmp://: 5 s pushed to a loopback ffmpeg RTMP listener arrive as one AAC and one H.264 stream",
          .enabled(if: POTest.hasFFTools && POTest.python != nil, "ffmpeg/ffprobe/python3 not installed"))
    func rtmpPush() throws {
        let dir = POTest.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let ffmpeg = try #require(POTest.ffmpeg)
        let portText = try POTest.run(POTest.python!, ["-c", """
            import socket
            s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()
            """]).text.trimmingCharacters(in: .whitespacesAndNewlines)
        let port = try #require(Int(portText))
        let received = dir.appendingPathComponent("received.flv")
        let url = "rtmp://127.0.0.1:\(port)/live/streamkey"

        // FFmpeg's own RTMP server mode: accepts one publisher and copies what it gets into a file.
        let listener = Process()
        listener.executableURL = URL(fileURLWithPath: ffmpeg)
        listener.arguments = ["-v", "error", "-y", "-rtmp_listen", "1", "-timeout", "20", "-i", url,
                              "-c", "copy", "-f", "flv", received.path]
        listener.standardInput = FileHandle.nullDevice
        listener.standardOutput = FileHandle.nullDevice
        listener.standardError = FileHandle.nullDevice
        try listener.run()
        defer {
            if listener.isRunning { listener.terminate() }
            listener.waitUntilExit()
        }

        // The listener needs a moment to bind: retry the connection a bounded number of times.
        var sink: ProgramSink?
        for _ in 0..<50 where sink == nil {
            do {
                sink = try makeSink(.stream(url: url), options: OutputOptions(ioTimeoutSeconds: 5))
            } catch ProgramOutputError.connectFailed {
                Thread.sleep(forTimeInterval: 0.1)
            }
        }
        let pusher = try #require(sink, "could not connect to the RTMP listener")
        try POTest.writeSine(to: pusher, frames: 5 * AudioFormat.sampleRate)
        #expect(pusher.stats.videoPackets == 150)
        #expect(pusher.stats.bytesWritten > 5 * 128_000 / 8)
        try pusher.finish()

        let deadline = Date().addingTimeInterval(20)
        while listener.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        let probe = try POTest.ffprobeJSON(["-show_streams", "-show_format", received.path])
        let codecs = (probe["streams"] as? [[String: Any]] ?? []).compactMap { $0["codec_name"] as? String }.sorted()
        #expect(codecs == ["aac", "h264"])
        let duration = Double((probe["format"] as? [String: Any])?["duration"] as? String ?? "") ?? -1
        #expect(abs(duration - 5) <= 0.1, "duration \(duration)")
        let keys = try POTest.ffprobeJSON(["-select_streams", "v:0", "-show_entries", "packet=flags", received.path])["packets"] as? [[String: Any]] ?? []
        #expect(keys.count == 150)
        #expect(keys.filter { ($0["flags"] as? String)?.hasPrefix("K") == true }.count == 3)
    }

    @Test("a refused connection is a runtime error, not bad input")
    func refusedConnection() throws {
        do {
            _ = try makeSink(.stream(url: "rtmp://127.0.0.1:1/live/key"), options: OutputOptions(ioTimeoutSeconds: 5))
            Issue.record("expected connectFailed")
        } catch let error as ProgramOutputError {
            guard case .connectFailed = error else { Issue.record("\(error)"); return }
            #expect(!error.isBadInput)
        }
    }
}
