import Foundation
import Testing
import AudioCore
@testable import LocalRun

@Suite(.serialized) struct LocalRunLossyTests {
    @Test func lossyCaptureKeepsTheTimelineWhole() throws {
        let dir = Paths.tempDir("lossy")
        let report = try runLocal(Paths.fixture("lossy/manifest.json"), output: dir + "/out.wav")
        let wav = try WAVFile.read(dir + "/out.wav")
        let frames = wav.samples.count / 2
        // The output is exactly as long as the program (first packet to the end of the last one's audio).
        #expect(abs(Int64(frames) - report.programFrames) <= 960, "output \(frames) frames vs program \(report.programFrames)")
        if let expected = try? JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: Paths.fixture("lossy/expected.json")))) as? [String: Any],
           let ms = (expected["programDurationMs"] ?? expected["durationMs"]) as? Double {
            #expect(abs(report.programSeconds * 1000 - ms) <= 20, "program \(report.programSeconds * 1000) ms vs \(ms) ms in expected.json")
        }
        // Concealment, not holes: after the jitter buffer's start-up, no 10 ms block is silent.
        let left = Analysis.left(wav.samples)
        var silentBlocks: [Double] = []
        var b = 48000 / 2
        while b + 480 <= left.count - 4800 {
            if dbfs(Analysis.rms(left[b..<b + 480])) < -40 { silentBlocks.append(Double(b) / 48000) }
            b += 480
        }
        #expect(silentBlocks.count <= 3, "silent 10 ms blocks at \(silentBlocks.prefix(10)) s")
        let stats = try #require(report.participants.first).stats
        #expect(stats.lost > 0 && stats.duplicates > 0, "the fixture's loss and duplicates are seen: \(stats)")
        #expect(stats.resyncs >= 1, "the SSRC change / timestamp jump resynchronise the stream")
        // The tone keeps its level through the damage. CELT-coded tones carry no FEC, and PLC of a lost
        // frame is quieter (fixtures/lossy/expected.json: ~2 dB under on average), hence ±3 dB.
        let kept = Analysis.windowedToneDbfs(left[48000..<(left.count - 24000)], frequency: 550)
        #expect(abs(kept - dbfs(0.25)) < 3, "tone at \(kept) dBFS through the losses")
    }
}

@Suite(.serialized) struct LocalRunOutputTests {
    @Test func flvHasOneAACAndOneH264Stream() throws {
        let dir = Paths.tempDir("flv")
        let m = try ToneShow.manifest(routing: ToneShow.plain, voices: 2, dir: dir)
        _ = try runLocal(m, output: dir + "/out.flv", duration: 5)
        let probe = try Probe.run(dir + "/out.flv")
        #expect(probe.streams.filter { $0.type == "audio" }.map(\.codec) == ["aac"])
        #expect(probe.streams.filter { $0.type == "video" }.map(\.codec) == ["h264"])
        #expect(probe.streams.count == 2)
        #expect(abs(probe.duration - 5) < 0.2, "duration \(probe.duration)")
        let audio = try decodeToWAV(dir + "/out.flv")
        #expect(abs(level(Analysis.left(audio.samples), hz: 350, from: 1, to: 4) - dbfs(0.25)) < 1)
    }

    @Test(.enabled(if: RTMPIngest.unavailableReason == nil, "nginx-rtmp is not installed"))
    func pushToNginxRTMPIsRecordedAndDecodes() throws {
        let ingest = try RTMPIngest(tls: false)
        defer { ingest.stop() }
        let dir = Paths.tempDir("rtmp")
        let m = try ToneShow.manifest(routing: ToneShow.plain, voices: 2, dir: dir)
        _ = try runLocal(m, output: "rtmp://127.0.0.1:\(ingest.rtmpPort)/app/plainkey", duration: 4)
        Thread.sleep(forTimeInterval: 0.5)
        let rec = ingest.recording("plainkey")
        let probe = try Probe.run(rec)
        #expect(Set(probe.streams.map(\.codec)) == ["aac", "h264"], "recorded \(probe.streams)")
        let audio = try decodeToWAV(rec)
        #expect(Double(audio.samples.count / 2) / 48000 > 3.5)
        #expect(abs(level(Analysis.left(audio.samples), hz: 350, from: 1, to: 3) - dbfs(0.25)) < 1)
    }

    @Test(.enabled(if: RTMPIngest.unavailableReason == nil, "nginx-rtmp is not installed"))
    func pushOverRTMPSVerifiesTheCertificate() throws {
        let ingest = try RTMPIngest(tls: true)
        defer { ingest.stop() }
        let dir = Paths.tempDir("rtmps")
        let m = try ToneShow.manifest(routing: ToneShow.plain, voices: 1, music: false, dir: dir)
        let port = try #require(ingest.rtmpsPort)
        // Self-signed: refused without the CA file...
        let refused = try runProcess(Paths.composer, ["local", m, "--output", "rtmps://localhost:\(port)/app/tlskey", "--duration", "2"], timeout: 60)
        #expect(refused.status != 0, "an unverifiable certificate must be refused")
        #expect(!refused.stderr.contains("tlskey"), "the stream key never reaches a message")
        // ...and accepted with it.
        let ok = try runProcess(Paths.composer, ["local", m, "--output", "rtmps://localhost:\(port)/app/tlskey", "--duration", "3", "--ca-file", ingest.certificatePath], timeout: 60)
        #expect(ok.status == 0, "rtmps push failed: \(ok.stderr)")
        Thread.sleep(forTimeInterval: 0.5)
        let audio = try decodeToWAV(ingest.recording("tlskey"))
        #expect(abs(level(Analysis.left(audio.samples), hz: 350, from: 0.5, to: 2.5) - dbfs(0.25)) < 1)
    }
}

@Suite struct CommandLineTests {
    func composer(_ args: [String]) throws -> RunResult { try runProcess(Paths.composer, args, timeout: 60) }

    @Test(arguments: [
        ("bad/bad-json.json", "bad-json.json"),
        ("bad/bad-type.json", "hostVolume"),
        ("bad/bad-range.json", "callersVolume"),
        ("bad/missing-capture.json", "missing.pcap"),
        ("bad/bad-ssrc.json", "ssrc"),
        ("bad/unknown-role.json", "role"),
        ("does/not/exist.json", "no such file"),
    ])
    func badManifestsExitTwoNamingTheProblem(file: String, mentions: String) throws {
        let dir = Paths.tempDir("bad")
        let r = try composer(["local", Paths.fixture(file), "--output", dir + "/x.wav"])
        #expect(r.status == 2, "\(file): exit \(r.status), stderr: \(r.stderr)")
        #expect(r.stderr.contains(mentions), "\(file): message should name \(mentions): \(r.stderr)")
        #expect(!r.timedOut)
    }

    @Test(arguments: ["truncated.pcap", "garbage.pcap", "not-rtp.pcap", "empty.pcap"])
    func badCapturesExitTwoNamingTheFile(name: String) throws {
        let dir = Paths.tempDir("badcap")
        let manifest = dir + "/m.json"
        try #"{"captures": [{"file": "\#(Paths.fixture("bad/" + name))", "participantId": "p"}]}"#.write(toFile: manifest, atomically: true, encoding: .utf8)
        let r = try composer(["local", manifest, "--output", dir + "/x.wav"])
        #expect(r.status == 2, "\(name): exit \(r.status), stderr: \(r.stderr)")
        #expect(r.stderr.contains(name), "\(name): message should name the file: \(r.stderr)")
    }

    @Test func badFlagValuesAreUsageErrors() throws {
        let dir = Paths.tempDir("flags")
        let m = try ToneShow.manifest(routing: ToneShow.plain, voices: 1, music: false, dir: dir)
        for args in [["local", m, "--output", dir + "/x.wav", "--duration", "abc"],
                     ["local", m, "--output", dir + "/x.wav", "--duration", "-3"],
                     ["local", m, "--output", "ftp://example.invalid/x"],
                     ["local", m, "--output", dir + "/x.mp4"],
                     ["local", m, "--bogus"]] {
            let r = try composer(args)
            #expect(r.status == 2, "\(args): exit \(r.status) \(r.stderr)")
        }
    }

    @Test func aGoodRunSummarisesWhatItWrote() throws {
        let dir = Paths.tempDir("cli")
        let m = try ToneShow.manifest(routing: ToneShow.plain, voices: 2, dir: dir)
        let r = try composer(["local", m, "--output", dir + "/out.wav", "--duration", "2"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("out.wav") && r.stdout.contains("2.00 s of program"))
        #expect(r.stdout.contains("host (HOST)"))
    }
}
