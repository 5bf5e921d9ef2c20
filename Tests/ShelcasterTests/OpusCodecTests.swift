import Testing
import Foundation
import AudioCore
import OpusCodec

@Suite("OpusCodec")
struct OpusCodecTests {
    /// Level in dB of the steady part (skipping encoder start-up) of channel `c`.
    private func steadyDb(_ stereo: [Float], channel c: Int, frequency: Double, from: Double = 0.2) -> Double {
        let x = OpusTestKit.channel(stereo, c)
        let start = Int(from * 48_000)
        return dbfs(OpusTestKit.toneAmplitude(x[start..<x.count], frequency: frequency))
    }

    @Test("mono 440 Hz decodes into both channels at the input level (no pan law)")
    func monoUpmixFullLevel() throws {
        let enc = try OpusEncoder(channels: 1, application: .audio, frameSize: 960, bitrate: 96_000)
        let pcm = OpusTestKit.monoTone(seconds: 1.5)
        let packets = try enc.encodeAll(pcm)
        #expect(packets.count == 75)
        #expect(try OpusDecoder.channels(of: packets[10]) == 1)
        let out = try OpusTestKit.decodeAll(packets)
        #expect(out.count == 75 * 960 * 2)
        let input = dbfs(0.25)
        let left = steadyDb(out, channel: 0, frequency: 440)
        let right = steadyDb(out, channel: 1, frequency: 440)
        #expect(abs(left - input) <= 0.5, "left \(left) dB vs input \(input) dB")
        #expect(abs(right - input) <= 0.5, "right \(right) dB vs input \(input) dB")
        // Plain RMS agrees too (0.25 / sqrt 2 = -15.05 dBFS), and the channels are the same signal.
        let l = OpusTestKit.channel(out, 0), r = OpusTestKit.channel(out, 1)
        let rmsDb = dbfs(OpusTestKit.rms(l[9_600..<l.count]))
        #expect(abs(rmsDb - (input - 3.01)) <= 0.5, "RMS \(rmsDb)")
        var maxDiff: Float = 0
        for i in 9_600..<l.count { maxDiff = max(maxDiff, abs(l[i] - r[i])) }
        #expect(maxDiff < 1e-4)
    }

    @Test("stereo keeps each channel's own signal and level")
    func stereo() throws {
        let enc = try OpusEncoder(channels: 2, application: .audio, frameSize: 960, bitrate: 128_000)
        let pcm = OpusTestKit.tone(seconds: 1.5, frequencies: [440, 660], amplitudes: [0.25, 0.1])
        let packets = try enc.encodeAll(pcm)
        #expect(try OpusDecoder.channels(of: packets[10]) == 2)
        let out = try OpusTestKit.decodeAll(packets)
        let l440 = steadyDb(out, channel: 0, frequency: 440), r660 = steadyDb(out, channel: 1, frequency: 660)
        let l660 = steadyDb(out, channel: 0, frequency: 660), r440 = steadyDb(out, channel: 1, frequency: 440)
        #expect(abs(l440 - dbfs(0.25)) <= 0.5, "L 440: \(l440)")
        #expect(abs(r660 - dbfs(0.1)) <= 0.5, "R 660: \(r660)")
        #expect(l660 < dbfs(0.1) - 20, "660 Hz leaking into L: \(l660)")
        #expect(r440 < dbfs(0.25) - 20, "440 Hz leaking into R: \(r440)")
    }

    @Test("every frame size decodes with its own duration and the right level",
          arguments: [120, 240, 480, 960, 1920, 2880])
    func frameSizes(frames: Int) throws {
        let enc = try OpusEncoder(channels: 1, application: .audio, frameSize: frames, bitrate: 96_000)
        let packets = try enc.encodeAll(OpusTestKit.monoTone(seconds: 1.2))
        #expect(packets.count == 57_600 / frames)
        for p in packets.prefix(5) {
            #expect(try OpusDecoder.frameCount(of: p) == frames)
            #expect(try OpusPacket.inspect(p).frames == frames)
        }
        let dec = try OpusDecoder()
        var buf = [Float](repeating: 0, count: OpusDecoder.maxPacketFrames * 2)
        var out: [Float] = []
        for p in packets {
            let n = try buf.withUnsafeMutableBufferPointer { try dec.decode(p, into: $0.baseAddress!, maxFrames: OpusDecoder.maxPacketFrames) }
            #expect(n == frames)
            out.append(contentsOf: buf[0..<(n * 2)])
        }
        let db = steadyDb(out, channel: 0, frequency: 440)
        #expect(abs(db - dbfs(0.25)) <= 0.5, "\(frames) frames: \(db) dB")
    }

    @Test("malformed packets give a typed error with libopus's text, never a trap")
    func garbage() throws {
        let dec = try OpusDecoder()
        var buf = [Float](repeating: 0, count: OpusDecoder.maxPacketFrames * 2)
        let bad: [[UInt8]] = [
            [],                                   // empty
            [0xFB],                               // code 3 without its frame-count byte
            [0x03, 0xFF, 0xFF],                   // code 3, count 63 frames (> 120 ms)
            [0x01, 0x01, 0x02, 0x03],             // code 1 (two equal frames) with odd payload length
            [0x02, 0xFC, 0x01, 0x02],             // code 2, first frame length 252 beyond the data
            [0xFB, 0x30],                         // code 3, 48 x 60 ms frames
        ]
        for p in bad {
            let e = #expect(throws: OpusError.self) {
                _ = try buf.withUnsafeMutableBufferPointer { try dec.decode(p, into: $0.baseAddress!, maxFrames: OpusDecoder.maxPacketFrames) }
            }
            #expect(e?.isInvalidPacket == true, "\(p): \(String(describing: e))")
            #expect(e?.description.contains("corrupted") == true, "\(String(describing: e))")
            #expect(throws: OpusError.self) { _ = try OpusDecoder.frameCount(of: p) }
            #expect(OpusDecoder.hasFEC(p) == false)
        }
        // A random-bytes sweep: whatever libopus makes of them, nothing traps and errors are typed.
        var rng = SimRandom(seed: 7)
        var rejected = 0
        for _ in 0..<500 {
            let len = Int(rng.next() * 40)
            let p = (0..<len).map { _ in UInt8(rng.next() * 256) }
            do {
                _ = try buf.withUnsafeMutableBufferPointer { try dec.decode(p, into: $0.baseAddress!, maxFrames: OpusDecoder.maxPacketFrames) }
            } catch let e as OpusError {
                #expect(e.code < 0)
                rejected += 1
            }
        }
        #expect(rejected > 0)
        // Caller mistakes are typed errors too.
        #expect(throws: OpusError.self) { _ = try buf.withUnsafeMutableBufferPointer { try dec.conceal(frames: 100, into: $0.baseAddress!) } }
        #expect(throws: OpusError.self) { _ = try buf.withUnsafeMutableBufferPointer { try dec.decodeFEC(from: [0x08, 0x00], frames: 0, into: $0.baseAddress!) } }
        #expect(throws: OpusError.self) { _ = try OpusEncoder(channels: 3) }
        #expect(throws: OpusError.self) { _ = try OpusEncoder(frameSize: 1000) }
        // Too small an output buffer for the packet.
        let enc = try OpusEncoder(channels: 1, application: .audio, frameSize: 960)
        let good = try enc.encode(OpusTestKit.monoTone(seconds: 0.02)[...])
        let small = #expect(throws: OpusError.self) {
            _ = try buf.withUnsafeMutableBufferPointer { try dec.decode(good, into: $0.baseAddress!, maxFrames: 480) }
        }
        #expect(small?.code == OpusError.bufferTooSmall)
    }

    @Test("in-band FEC: SILK packets carry LBRR, decodeFEC rebuilds the lost frame; CELT has none")
    func fec() throws {
        let enc = try OpusEncoder(channels: 1, application: .voip, frameSize: 960, bitrate: 24_000,
                                  fec: true, packetLossPercent: 10, signal: .voice)
        // SILK only adds LBRR after frames its VAD calls active, and it learns a steady tone as
        // noise: a tone with short dips (like syllables) stays "speech".
        let pcm = OpusTestKit.syllabicTone(seconds: 1.0)
        let packets = try enc.encodeAll(pcm)
        let infos = try packets.map { try OpusPacket.inspect($0) }
        #expect(infos.allSatisfy { $0.mode != .celt })
        let withFEC = infos.dropFirst(1).filter(\.hasFEC).count
        #expect(withFEC >= 35, "only \(withFEC) of \(packets.count - 1) packets carry FEC")
        #expect(infos[0].hasFEC == false)   // nothing before the first packet to protect

        // Decode with packet 30 lost: FEC from packet 31 vs PLC, both against the clean decode.
        let clean = try OpusTestKit.decodeAll(packets)
        func decodeLosing(_ k: Int, useFEC: Bool) throws -> [Float] {
            let dec = try OpusDecoder()
            var buf = [Float](repeating: 0, count: OpusDecoder.maxPacketFrames * 2)
            var out: [Float] = []
            for (i, p) in packets.enumerated() {
                let n: Int
                if i == k {
                    n = try buf.withUnsafeMutableBufferPointer { b in
                        useFEC ? try dec.decodeFEC(from: packets[k + 1], frames: 960, into: b.baseAddress!)
                               : try dec.conceal(frames: 960, into: b.baseAddress!)
                    }
                } else {
                    n = try buf.withUnsafeMutableBufferPointer { try dec.decode(p, into: $0.baseAddress!, maxFrames: OpusDecoder.maxPacketFrames) }
                }
                #expect(n == 960)
                out.append(contentsOf: buf[0..<(n * 2)])
            }
            return out
        }
        // Packet 31 carries FEC for 30; 30 is in the loud part of a "syllable" (15 packets of 300 ms).
        #expect(infos[31].hasFEC)
        let viaFEC = try decodeLosing(30, useFEC: true)
        let viaPLC = try decodeLosing(30, useFEC: false)
        func errorDb(_ x: [Float]) -> Double {
            var e = 0.0, s = 0.0
            for i in stride(from: 30 * 960 * 2, to: 31 * 960 * 2, by: 2) {
                let d = Double(x[i] - clean[i]); e += d * d; s += Double(clean[i]) * Double(clean[i])
            }
            return 10 * log10(max(e, 1e-12) / s)
        }
        let l = OpusTestKit.channel(viaFEC, 0)
        let fecLevel = dbfs(OpusTestKit.rms(l[(30 * 960)..<(31 * 960)]))
        #expect(abs(fecLevel - (dbfs(0.25) - 3.01)) < 3, "FEC frame level \(fecLevel)")
        #expect(errorDb(viaFEC) < errorDb(viaPLC), "FEC error \(errorDb(viaFEC)) dB vs PLC \(errorDb(viaPLC)) dB")

        // CELT-only (restricted low delay) cannot carry LBRR even with FEC requested.
        let celt = try OpusEncoder(channels: 1, application: .restrictedLowDelay, frameSize: 960, bitrate: 64_000,
                                   fec: true, packetLossPercent: 10)
        let cp = try celt.encodeAll(OpusTestKit.syllabicTone(seconds: 0.3))
        #expect(try cp.allSatisfy { try OpusPacket.inspect($0).mode == .celt && !OpusDecoder.hasFEC($0) })
    }

    @Test("concealment continues a tone at about its level, in 2.5 ms granules")
    func concealment() throws {
        let enc = try OpusEncoder(channels: 1, application: .audio, frameSize: 960, bitrate: 96_000)
        let packets = try enc.encodeAll(OpusTestKit.monoTone(seconds: 0.5))
        let dec = try OpusDecoder()
        var buf = [Float](repeating: 0, count: OpusDecoder.maxPacketFrames * 2)
        for p in packets { _ = try buf.withUnsafeMutableBufferPointer { try dec.decode(p, into: $0.baseAddress!, maxFrames: 5_760) } }
        #expect(dec.lastPacketFrames == 960)
        let n = try buf.withUnsafeMutableBufferPointer { try dec.conceal(frames: 240, into: $0.baseAddress!) }
        #expect(n == 240)
        let level = dbfs(OpusTestKit.rms(OpusTestKit.channel(Array(buf[0..<480]), 0)[...]))
        #expect(level > dbfs(0.25) - 3.01 - 6, "PLC level \(level)")
        dec.reset()
        #expect(try buf.withUnsafeMutableBufferPointer { try dec.decode(packets[5], into: $0.baseAddress!, maxFrames: 5_760) } == 960)
    }

    @Test("DTX: the encoder emits 1-2 byte packets during silence")
    func dtxPackets() throws {
        let enc = try OpusEncoder(channels: 1, application: .voip, frameSize: 960, bitrate: 24_000, dtx: true, signal: .voice)
        var pcm = OpusTestKit.monoTone(seconds: 1, frequency: 300)
        pcm += [Float](repeating: 0, count: 96_000)
        let packets = try enc.encodeAll(pcm)
        let tiny = packets.filter { $0.count <= 2 }.count
        #expect(tiny > 50, "\(tiny) DTX packets")
        #expect(packets.prefix(50).allSatisfy { $0.count > 2 })
    }
}
