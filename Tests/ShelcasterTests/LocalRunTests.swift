import Foundation
import Testing
import AudioCore
@testable import LocalRun
import Logging

/// The tone show (fixtures/tones): each voice and each music track is a sine of its own frequency
/// at amplitude 0.25, so every source's level in the mix can be measured on its own.
enum ToneShow {
    static let amplitude = 0.25
    static let voices: [(id: String, ssrc: UInt32, hz: Double, role: String)] = [
        ("host", 0x1111_1111, 350, "HOST"), ("caller-1", 0x2222_2222, 550, "CALLER"), ("caller-2", 0x3333_3333, 750, "CALLER"),
        ("caller-3", 0x4444_4444, 950, "CALLER"), ("caller-4", 0x5555_5555, 1150, "CALLER"),
    ]
    static let firstTrackHz = 1500.0

    /// A manifest over the tone fixtures, written to a temp folder, with the given routing JSON.
    static func manifest(routing: String, changes: String = "[]", voices count: Int = 5, music: Bool = true, dir: String) throws -> String {
        let caps = voices.prefix(count).map { v in
            #"{"file": "\#(Paths.fixture("tones/captures/tones.pcap"))", "ssrc": \#(v.ssrc), "participantId": "\#(v.id)", "role": "\#(v.role)"}"#
        }.joined(separator: ",\n")
        let tracks = ["t1-1500.mp3", "t2-1800.m4a", "t3-2100.wav", "t4-2400.flac"].map {
            #"{"file": "\#(Paths.fixture("tones/music/" + $0))", "title": "\#($0)"}"#
        }.joined(separator: ", ")
        let json = """
        { "show": {"showId": "tones", "hostUserId": "host-1"},
          "captures": [\(caps)],
          \(music ? #""tracklist": {"tracks": [\#(tracks)], "loop": true},"# : "")
          "routing": \(routing),
          "routingChanges": \(changes) }
        """
        let path = dir + "/manifest.json"
        try json.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    static let plain = #"{"hostVolume": 100, "callersVolume": 100, "tracklistVolume": 100, "masterVolume": 100, "onAirCallerIds": ["caller-1","caller-2","caller-3","caller-4"], "compression": {"enabled": false}, "limiter": {"enabled": false}, "ducking": {"enabled": false}}"#
}

func runLocal(_ manifest: String, output: String, duration: Double? = nil, realtime: Bool = false) throws -> LocalRunReport {
    var o = LocalRunOptions(manifestPath: manifest, output: output)
    o.duration = duration
    o.realtime = realtime
    var logger = Logger(label: "test")
    logger.logLevel = .error
    return try LocalShow.run(o, logger: logger)
}

/// Level of a tone in a program-time window (seconds) of a decoded program.
func level(_ left: [Float], hz: Double, from: Double, to: Double) -> Double {
    Analysis.toneDbfs(left[Int(from * 48000)..<min(left.count, Int(to * 48000))], frequency: hz)
}

@Suite(.serialized) struct LocalRunToneTests {
    @Test func everySourceAtItsRoutedLevelAndOffAirCallerSilent() throws {
        let dir = Paths.tempDir("levels")
        let routing = #"{"hostVolume": 80, "callersVolume": 60, "tracklistVolume": 40, "masterVolume": 90, "onAirCallerIds": ["caller-1","caller-2","caller-4"], "participantVolumes": {"caller-2": 50}, "compression": {"enabled": false}, "limiter": {"enabled": false}, "ducking": {"enabled": false}}"#
        let m = try ToneShow.manifest(routing: routing, dir: dir)
        let report = try runLocal(m, output: dir + "/out.wav", duration: 8)
        #expect(report.outputFrames == 8 * 48000)
        let wav = try WAVFile.read(dir + "/out.wav")
        #expect(wav.sampleRate == 48000 && wav.channels == 2)
        let left = Analysis.left(wav.samples)
        let expectedGain: [String: Double] = ["host": 0.8 * 0.9, "caller-1": 0.6 * 0.9, "caller-2": 0.6 * 0.5 * 0.9, "caller-4": 0.6 * 0.9]
        for v in ToneShow.voices {
            let got = level(left, hz: v.hz, from: 1, to: 7)
            if let g = expectedGain[v.id] {
                let want = dbfs(ToneShow.amplitude * g)
                #expect(abs(got - want) <= 1, "\(v.id): \(got) dBFS, routing implies \(want)")
            } else {
                #expect(got < -60, "off-air \(v.id) is heard at \(got) dBFS")
            }
        }
        let music = level(left, hz: ToneShow.firstTrackHz, from: 1, to: 7)
        #expect(abs(music - dbfs(ToneShow.amplitude * 0.4 * 0.9)) <= 1, "music at \(music) dBFS")
    }

    @Test func aRoutingChangeArrivesWithin100msWithoutAJump() throws {
        let dir = Paths.tempDir("change")
        let changes = #"[{"atMs": 3000, "routing": {"hostVolume": 20}}, {"atMs": 5000, "routing": {"hostVolume": 100}}]"#
        let m = try ToneShow.manifest(routing: ToneShow.plain, changes: changes, voices: 1, music: false, dir: dir)
        _ = try runLocal(m, output: dir + "/out.wav", duration: 7)
        let left = Analysis.left(try WAVFile.read(dir + "/out.wav").samples)
        let full = dbfs(ToneShow.amplitude), low = dbfs(ToneShow.amplitude * 0.2)
        #expect(abs(level(left, hz: 350, from: 2.5, to: 2.99) - full) < 1)
        // 100 ms after atMs the new level holds, measured over the next 200 ms.
        #expect(abs(level(left, hz: 350, from: 3.1, to: 3.3) - low) < 1)
        #expect(abs(level(left, hz: 350, from: 5.1, to: 5.3) - full) < 1)
        // No sample-to-sample jump beyond what the steady tone itself has.
        func maxStep(_ a: Double, _ b: Double) -> Float {
            var m: Float = 0
            for i in Int(a * 48000)..<Int(b * 48000) { m = max(m, abs(left[i] - left[i - 1])) }
            return m
        }
        let steady = maxStep(1, 2.9)
        #expect(maxStep(2.95, 3.2) <= steady * 1.05, "jump around the down change")
        #expect(maxStep(4.95, 5.2) <= steady * 1.05, "jump around the up change")
    }

    @Test func limiterHoldsTruePeakOnAHotInput() throws {
        let dir = Paths.tempDir("limiter")
        // Five voices and music at +12 dB over unity (volume 100 is unity; master cannot boost, so the
        // voices sum hot by themselves: 6 sines of 0.25 peak at up to 1.5).
        let routing = #"{"hostVolume": 100, "callersVolume": 100, "tracklistVolume": 100, "masterVolume": 100, "onAirCallerIds": ["caller-1","caller-2","caller-3","caller-4"], "compression": {"enabled": false}, "limiter": {"enabled": true, "ceiling": -3}, "ducking": {"enabled": false}}"#
        let m = try ToneShow.manifest(routing: routing, dir: dir)
        _ = try runLocal(m, output: dir + "/out.wav", duration: 6)
        // True peak: 4x oversampled with ffmpeg's resampler, as a meter would.
        let wav = try WAVFile.read(dir + "/out.wav")
        let samplePeak = Analysis.peak(wav.samples[(48000 * 2)...])
        #expect(dbfs(samplePeak) > -6, "the input must actually be hot for this test to mean anything")
        let truePeak = try TruePeak.measure(dir + "/out.wav")
        #expect(truePeak <= -3 + 0.5, "true peak \(truePeak) dBTP over a -3 dBFS ceiling")
    }

    @Test func duckingLowersMusicByItsDepthWhileAVoiceIsOnAir() throws {
        let dir = Paths.tempDir("duck")
        // Only caller-1 (550 Hz) speaks, and only once it is put on air at 2 s, until 4 s.
        let routing = #"{"hostVolume": 0, "callersVolume": 100, "tracklistVolume": 100, "masterVolume": 100, "onAirCallerIds": [], "compression": {"enabled": false}, "limiter": {"enabled": false}, "ducking": {"enabled": true, "depthDb": 12}}"#
        let changes = #"[{"atMs": 2000, "routing": {"onAirCallerIds": ["caller-1"]}}, {"atMs": 4000, "routing": {"onAirCallerIds": []}}]"#
        let m = try ToneShow.manifest(routing: routing, changes: changes, voices: 2, dir: dir)
        _ = try runLocal(m, output: dir + "/out.wav", duration: 7)
        let left = Analysis.left(try WAVFile.read(dir + "/out.wav").samples)
        let before = level(left, hz: 1500, from: 0.5, to: 1.9)
        let during = level(left, hz: 1500, from: 2.3, to: 3.9)
        let after = level(left, hz: 1500, from: 5, to: 6.9)
        #expect(abs(before - dbfs(ToneShow.amplitude)) < 1)
        #expect(abs((before - during) - 12) <= 2, "ducked by \(before - during) dB")
        #expect(abs(after - before) < 1, "restored: \(after) vs \(before)")
    }

    @Test func offlineAndRealtimeGiveTheSameAudio() throws {
        let dir = Paths.tempDir("modes")
        let m = try ToneShow.manifest(routing: ToneShow.plain, voices: 2, dir: dir)
        _ = try runLocal(m, output: dir + "/fast.wav", duration: 1.5)
        let r = try runLocal(m, output: dir + "/paced.wav", duration: 1.5, realtime: true)
        #expect(r.wallSeconds >= 1.4, "a real-time run is paced by the clock (took \(r.wallSeconds) s)")
        let a = try WAVFile.read(dir + "/fast.wav").samples, b = try WAVFile.read(dir + "/paced.wav").samples
        #expect(a.count == b.count && a == b)
    }
}

/// True peak per ITU-R BS.1770 in spirit: the highest sample after 4x oversampling.
enum TruePeak {
    static func measure(_ wav: String) throws -> Double {
        guard let ffmpeg = Paths.which("ffmpeg") else { throw PeerError("ffmpeg missing") }
        let up = wav + ".x4.wav"
        let r = try runProcess(ffmpeg, ["-v", "error", "-y", "-i", wav, "-af", "aresample=192000:filter_size=64", "-c:a", "pcm_f32le", up])
        guard r.status == 0 else { throw PeerError(r.stderr) }
        let s = try WAVFile.read(up).samples
        return dbfs(Analysis.peak(s[(192000 * 2)...]))
    }
}
