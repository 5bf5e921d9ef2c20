// Adaptive jitter buffer for one Opus/RTP participant stream (NetEQ's ideas, much smaller).
//
// Time: everything is program time in frames at 48 kHz (arrivals and pulls alike), and the Opus RTP
// clock is 48 kHz too, so timestamps, durations and delays share one unit.
//
// Store: packets sit in a fixed ring of slots indexed by extended sequence number (payload bytes
// copied into preallocated storage; nothing is allocated per packet or per block). A slot also
// remembers which sequence number it last held, which is how duplicates are recognised after play.
//
// Playout: `pts` is the extended RTP timestamp of the next sample to be produced; decoded audio goes
// into a FIFO whose head plays at the current pull time. So the playout offset
// (program time at which timestamp T plays, minus T) is `head + fifoCount - pts`. Producing audio:
//   * next packet present             -> decode it (a timestamp jump before it, with no sequence gap,
//                                         is DTX: fill the gap by concealment that fades to silence);
//   * next missing, a later one here  -> lost: conceal, or FEC-decode from the successor when it
//                                         carries LBRR for exactly the missing duration;
//   * nothing buffered                -> underrun: conceal.
// Concealment (libopus PLC) runs at most `concealmentMs`, then fades over `fadeMs` to silence and
// the decoder is reset. Concealment for loss/underrun advances `pts`, so the delay does not grow:
// a packet whose timestamp is already behind `pts` is late and dropped.
//
// Delay estimate: transit = arrival - timestamp; the reference is the minimum transit over the last
// `historySeconds` (a 20-bucket sliding minimum). Each packet's relative delay (transit - reference)
// goes into a histogram (2 ms buckets) with exponential forgetting (time constant `historySeconds`);
// target = quantile(`percentile`) + `safetyMarginMs`, clamped to [min, max]. The histogram starts
// with a uniform prior whose quantile gives `initialDelayMs`, so the target starts there and moves
// smoothly as evidence replaces the prior. Current delay = playout offset - reference transit:
// how long the fastest packets wait.
//
// Steering: below target by > 5 ms -> stretch: insert up to 10 ms of PLC before a packet without
// advancing `pts` (30 ms in quiet passages). Above target by > 10 ms (until within 2.5 ms) -> shrink:
// cut d frames at the FIFO head with a 5 ms raised-cosine crossfade; in quiet passages d is up to
// 30 ms, in signal d (2.5-10 ms) is chosen by maximum normalised cross-correlation so the splice is
// pitch-aligned (no click). Loud operations are spaced 50 ms apart unless far (> 100 ms) off target.
//
// Timeline changes: an SSRC change, a timestamp inconsistent with the sequence numbers by more than
// `resyncThresholdMs`, or a sequence jump beyond the ring resynchronises: the new stream's numbers
// are mapped to continue right after the old stream's last packet (or at arrival + target if that
// is later), so buffered old audio plays out and the new stream follows: no long gap, no burst.
// The decoder is reset at the splice for a new SSRC (a new encoder) but not for a jump within one
// SSRC, where the encoder most likely goes on and a reset would garble the next frames. When playback has faded to silence and the newest packet arrives late
// (sender paused without a timestamp jump, or a long stall), the timeline is re-anchored the same way.

import Foundation
import AudioCore
import OpusCodec

public final class JitterBuffer: AudioSource {
    public let configuration: JitterBufferConfiguration
    /// For logs and reports (e.g. the participant id).
    public let label: String

    /// nil only if libopus could not allocate a decoder: then every packet counts as a decode error
    /// and the buffer plays silence, rather than failing the whole show.
    private let decoder: OpusDecoder?

    // MARK: Packet store

    private struct Slot {
        var ext: Int64 = .min        // extended sequence number last stored here
        var present = false          // waiting to be played
        var ts: Int64 = 0            // extended timestamp
        var arrival: Int64 = 0
        var length = 0
        var frames = 0
        var fec = false
        var resetBefore = false      // first packet of a new stream: reset the decoder first
    }

    private var slots: [Slot]
    private let slotCount: Int
    private let maxPayload: Int
    private let payloads: UnsafeMutablePointer<UInt8>
    private var pending = 0

    // MARK: Stream identity; unwrapping is relative to the newest packet

    private var haveStream = false
    private var currentSSRC: UInt32 = 0
    private var previousSSRC: UInt32?
    private var highestExt: Int64 = 0
    private var highestRaw: UInt16 = 0
    private var highestTsExt: Int64 = 0
    private var highestTsRaw: UInt32 = 0
    private var newestFrames = 960
    private var streamStartExt: Int64 = 0
    private let resyncThreshold: Int64

    // MARK: Playout

    private var anchored = false
    private var nextSeq: Int64 = 0
    private var pts: Int64 = 0
    /// Before anchoring: timestamp T plays at T + anchorOffset.
    private var anchorOffset: Int64 = 0
    /// Program time of the FIFO's first frame.
    private var headTime: Int64 = 0

    private let fifoCapacity: Int
    private let fifo: UnsafeMutablePointer<Float>
    private var fifoStart = 0
    private var fifoCount = 0

    private var concealRun: Int64 = 0
    private var faded = false
    private var inUnderrun = false
    private var lastQuiet = true
    private let concealLimit: Int64
    private let fadeLength: Int64

    // MARK: Delay estimation and steering

    private static let bucketFrames: Int64 = 96          // 2 ms
    private static let bucketCount = 512
    private let hist: UnsafeMutablePointer<Double>
    private var histTotal = 0.0
    private var histWeight = 1.0
    private var forgetFrames = -1
    private var forgetGrowth = 1.0
    private var targetFrames: Int64
    private let minTarget: Int64
    private let maxTarget: Int64
    private let margin: Int64
    private let historyFrames: Double

    private static let windowBuckets = 20
    private let windowSpan: Int64
    private var windowId: [Int64]
    private var windowMin: [Int64]
    private var windowLatest: Int64 = .min
    private var referenceTransit: Int64 = 0

    private var stretchCooldown: Int64 = 0
    private var shrinkCooldown: Int64 = 0
    private var shrinking = false
    private static let stretchThreshold: Int64 = 240     // 5 ms
    private static let shrinkStart: Int64 = 480          // 10 ms
    private static let shrinkStop: Int64 = 120           // 2.5 ms
    private static let loudCooldown: Int64 = 2_400       // 50 ms
    private static let emergency: Int64 = 4_800          // 100 ms
    private static let loudStep: Int64 = 480             // 10 ms
    private static let quietStep: Int64 = 1_440          // 30 ms
    private static let quietLevel: Float = 0.01          // -40 dBFS RMS
    private static let crossfade = 240                   // 5 ms
    private let crossfadeWindow: UnsafeMutablePointer<Float>
    private let monoScratch: UnsafeMutablePointer<Float>

    // MARK: Latency and counters

    private static let latencyBuckets = 1_001            // 1 ms each, last one is "1 s or more"
    private let latencyHist: UnsafeMutablePointer<Int>
    private var latencySum = 0.0
    private var latencyMax = 0.0
    private var latencyLast = 0.0
    private var latencyCount = 0

    private var counters = JitterBufferStats()

    public init(label: String = "", configuration: JitterBufferConfiguration = JitterBufferConfiguration()) {
        self.label = label
        self.configuration = configuration
        decoder = try? OpusDecoder()
        let rate = Double(AudioFormat.sampleRate)
        func frames(_ ms: Double) -> Int64 { Int64((ms * rate / 1000).rounded()) }

        slotCount = max(16, configuration.slots)
        maxPayload = max(1, configuration.maxPayloadBytes)
        slots = [Slot](repeating: Slot(), count: slotCount)
        payloads = .allocate(capacity: slotCount * maxPayload)
        resyncThreshold = max(frames(configuration.resyncThresholdMs), 4_800)

        fifoCapacity = 16_384
        fifo = .allocate(capacity: fifoCapacity * 2)
        fifo.initialize(repeating: 0, count: fifoCapacity * 2)
        concealLimit = max(0, frames(configuration.concealmentMs))
        fadeLength = max(120, frames(configuration.fadeMs))

        minTarget = max(frames(10), frames(configuration.minDelayMs))
        maxTarget = max(minTarget, frames(configuration.maxDelayMs))
        margin = max(0, frames(configuration.safetyMarginMs))
        historyFrames = max(0.1, configuration.historySeconds) * rate
        targetFrames = min(max(frames(configuration.initialDelayMs), minTarget), maxTarget)

        hist = .allocate(capacity: Self.bucketCount)
        hist.initialize(repeating: 0, count: Self.bucketCount)
        // Uniform prior whose quantile is the initial target minus the margin.
        let p = min(max(configuration.percentile, 0.5), 0.999)
        let priorFrames = max(0, Double(targetFrames - margin)) / p
        let priorBuckets = min(Self.bucketCount, max(1, Int((priorFrames / Double(Self.bucketFrames)).rounded())))
        for b in 0..<priorBuckets { hist[b] = 1 / Double(priorBuckets) }
        histTotal = 1

        windowSpan = max(48, Int64(historyFrames) / Int64(Self.windowBuckets))
        windowId = [Int64](repeating: .min, count: Self.windowBuckets)
        windowMin = [Int64](repeating: 0, count: Self.windowBuckets)

        crossfadeWindow = .allocate(capacity: Self.crossfade)
        for i in 0..<Self.crossfade {
            crossfadeWindow[i] = Float(0.5 - 0.5 * cos(Double.pi * (Double(i) + 0.5) / Double(Self.crossfade)))
        }
        monoScratch = .allocate(capacity: Int(Self.quietStep) + Self.crossfade + 16)
        latencyHist = .allocate(capacity: Self.latencyBuckets)
        latencyHist.initialize(repeating: 0, count: Self.latencyBuckets)
    }

    deinit {
        payloads.deallocate()
        fifo.deallocate()
        hist.deallocate()
        crossfadeWindow.deallocate()
        monoScratch.deallocate()
        latencyHist.deallocate()
    }

    // MARK: Public surface

    public var stats: JitterBufferStats {
        var s = counters
        s.currentDelayMs = Self.ms(currentDelay())
        s.targetDelayMs = Self.ms(targetFrames)
        s.latency.packets = latencyCount
        if latencyCount > 0 {
            s.latency.meanMs = latencySum / Double(latencyCount)
            s.latency.maxMs = latencyMax
            s.latency.lastMs = latencyLast
            let goal = Int((Double(latencyCount) * 0.95).rounded(.up))
            var cum = 0
            for b in 0..<Self.latencyBuckets {
                cum += latencyHist[b]
                if cum >= goal { s.latency.p95Ms = Double(b); break }
            }
        }
        return s
    }

    /// The SSRC currently played, nil before the first packet.
    public var currentSSRCValue: UInt32? { haveStream ? currentSSRC : nil }

    public func insert(sequenceNumber: UInt16, timestamp: UInt32, ssrc: UInt32, payload: [UInt8], arrival: Int64) {
        payload.withUnsafeBytes {
            insert(sequenceNumber: sequenceNumber, timestamp: timestamp, ssrc: ssrc, payload: $0, arrival: arrival)
        }
    }

    /// Hands one RTP packet to the buffer. `arrival` is program time in frames (48 kHz).
    public func insert(sequenceNumber seq: UInt16, timestamp ts: UInt32, ssrc: UInt32,
                       payload: UnsafeRawBufferPointer, arrival: Int64) {
        counters.received += 1
        guard payload.count <= maxPayload, let info = try? OpusPacket.inspect(payload) else {
            counters.malformed += 1
            return
        }
        guard haveStream else {
            beginStream(seq: seq, ts: ts, ssrc: ssrc, arrival: arrival)
            store(ext: highestExt, tsExt: highestTsExt, arrival: arrival, payload: payload, info: info, resetBefore: false)
            newestFrames = info.frames
            return
        }
        if ssrc != currentSSRC {
            if ssrc == previousSSRC { counters.late += 1; return }     // straggler of the stream we left
            resync(seq: seq, ts: ts, ssrc: ssrc, arrival: arrival, payload: payload, info: info)
            return
        }
        let seqDelta = Int64(Int16(bitPattern: seq &- highestRaw))
        let ext = highestExt &+ seqDelta
        let tsDelta = Int64(Int32(bitPattern: ts &- highestTsRaw))
        var tsExt = highestTsExt &+ tsDelta
        let consistent = abs(tsDelta - seqDelta * Int64(newestFrames)) <= resyncThreshold
        if seqDelta > 0 {
            if !consistent || ext - nextSeq >= Int64(slotCount) {
                resync(seq: seq, ts: ts, ssrc: ssrc, arrival: arrival, payload: payload, info: info)
                return
            }
        } else if !consistent || ext < streamStartExt {
            counters.late += 1       // belongs to a timeline already left behind
            return
        }
        let idx = slotIndex(ext)
        if slots[idx].ext == ext { counters.duplicates += 1; return }

        if anchored && (ext < nextSeq || tsExt < pts) {
            observe(transit: arrival - tsExt, arrival: arrival, frames: info.frames)   // lateness teaches the estimator
            guard seqDelta > 0 && pending == 0 && faded else {
                if !slots[idx].present { slots[idx].ext = ext }                       // received, for dup/loss accounting
                counters.late += 1
                return
            }
            // Playback already faded to silence and nothing is buffered: start again from this packet.
            tsExt = max(pts, arrival + targetFrames - playOffset)
            counters.reanchors += 1
            resetWindow()
            addToWindow(transit: arrival - tsExt, arrival: arrival)
        } else {
            if !anchored && ext < nextSeq {
                // Reordered ahead of the packet playback was going to start with.
                nextSeq = ext
                pts = tsExt
            }
            observe(transit: arrival - tsExt, arrival: arrival, frames: info.frames)
        }
        if seqDelta > 0 {
            highestExt = ext; highestRaw = seq
            highestTsExt = tsExt; highestTsRaw = ts
            newestFrames = info.frames
        }
        store(ext: ext, tsExt: tsExt, arrival: arrival, payload: payload, info: info, resetBefore: false)
    }

    public func render(into out: UnsafeMutablePointer<Float>, frames: Int, at: Int64) {
        // Long pulls are served in pieces so the FIFO never has to hold more than a few packets.
        var done = 0
        while done < frames {
            let n = min(frames - done, 960)
            renderChunk(into: out + done * 2, frames: n, at: at &+ Int64(done))
            done += n
        }
    }

    // MARK: Insert helpers

    private func slotIndex(_ ext: Int64) -> Int {
        let n = Int64(slotCount)
        return Int(((ext % n) + n) % n)
    }

    private func beginStream(seq: UInt16, ts: UInt32, ssrc: UInt32, arrival: Int64) {
        clearRing()
        haveStream = true
        currentSSRC = ssrc
        highestExt = 1 << 32
        highestRaw = seq
        highestTsExt = Int64(ts)
        highestTsRaw = ts
        streamStartExt = highestExt - 16
        nextSeq = highestExt
        pts = highestTsExt
        anchored = false
        anchorOffset = arrival + targetFrames - pts
        resetWindow()
        observe(transit: arrival - pts, arrival: arrival, frames: newestFrames)
    }

    private func resync(seq: UInt16, ts: UInt32, ssrc: UInt32, arrival: Int64,
                        payload: UnsafeRawBufferPointer, info: OpusPacketInfo) {
        counters.resyncs += 1
        let newSource = ssrc != currentSSRC
        if newSource { previousSSRC = currentSSRC }
        guard anchored else {
            // Nothing played yet: simply start over with the new stream.
            beginStream(seq: seq, ts: ts, ssrc: ssrc, arrival: arrival)
            store(ext: highestExt, tsExt: highestTsExt, arrival: arrival, payload: payload, info: info, resetBefore: false)
            newestFrames = info.frames
            return
        }
        currentSSRC = ssrc
        // Continue the extended numbering right after the old stream so its buffered packets still play.
        let firstExt = highestExt + 1
        if firstExt - nextSeq >= Int64(slotCount) {
            clearRing()
            nextSeq = firstExt
        }
        let oldEnd = highestTsExt + Int64(newestFrames)
        let tsExt = max(oldEnd, pts, arrival + targetFrames - playOffset)
        highestExt = firstExt; highestRaw = seq
        highestTsExt = tsExt; highestTsRaw = ts
        newestFrames = info.frames
        streamStartExt = firstExt
        resetWindow()
        addToWindow(transit: arrival - tsExt, arrival: arrival)
        // A new SSRC is a new encoder: start its decoding from a clean state. The same SSRC on a new
        // timeline may well be the same encoder going on (a reset would garble a few frames), and
        // libopus copes with a restarted encoder without one.
        store(ext: firstExt, tsExt: tsExt, arrival: arrival, payload: payload, info: info,
              resetBefore: newSource)
    }

    private func store(ext: Int64, tsExt: Int64, arrival: Int64, payload: UnsafeRawBufferPointer,
                       info: OpusPacketInfo, resetBefore: Bool) {
        let idx = slotIndex(ext)
        if slots[idx].present { pending -= 1 }
        slots[idx] = Slot(ext: ext, present: true, ts: tsExt, arrival: arrival, length: payload.count,
                          frames: info.frames, fec: info.hasFEC, resetBefore: resetBefore)
        if let src = payload.baseAddress, payload.count > 0 {
            (payloads + idx * maxPayload).update(from: src.assumingMemoryBound(to: UInt8.self), count: payload.count)
        }
        pending += 1
    }

    private func clearRing() {
        for i in 0..<slotCount where slots[i].present { slots[i].present = false }
        pending = 0
    }

    // MARK: Delay statistics

    private static func ms(_ frames: Int64) -> Double { Double(frames) * 1000 / Double(AudioFormat.sampleRate) }

    /// Program time minus timestamp for the sample at `pts` (how late timestamps play).
    private var playOffset: Int64 { anchored ? headTime + Int64(fifoCount) - pts : anchorOffset }

    private func currentDelay() -> Int64 { haveStream ? playOffset - referenceTransit : 0 }

    private func observe(transit: Int64, arrival: Int64, frames: Int) {
        addToWindow(transit: transit, arrival: arrival)
        addToHistogram(relative: transit - referenceTransit, frames: frames)
    }

    private func resetWindow() {
        for i in 0..<Self.windowBuckets { windowId[i] = .min }
        windowLatest = .min
    }

    private func addToWindow(transit: Int64, arrival: Int64) {
        let id = arrival >= 0 ? arrival / windowSpan : (arrival - windowSpan + 1) / windowSpan
        let n = Int64(Self.windowBuckets)
        let i = Int(((id % n) + n) % n)
        if windowId[i] != id {
            windowId[i] = id
            windowMin[i] = transit
        } else if transit < windowMin[i] {
            windowMin[i] = transit
        }
        if id > windowLatest { windowLatest = id }
        var m = Int64.max
        let oldest = windowLatest &- n
        for k in 0..<Self.windowBuckets where windowId[k] != .min && windowId[k] > oldest {
            m = min(m, windowMin[k])
        }
        if m != .max { referenceTransit = m }
    }

    private func addToHistogram(relative: Int64, frames: Int) {
        if frames != forgetFrames {
            forgetFrames = frames
            forgetGrowth = exp(Double(max(frames, 1)) / historyFrames)
        }
        // Exponential forgetting (old mass * f, new sample (1 - f)), done by growing the weight of
        // new samples by 1/f instead of decaying every bucket.
        histWeight *= forgetGrowth
        let add = histWeight * (1 - 1 / forgetGrowth)
        let b = Int(min(max(relative, 0) / Self.bucketFrames, Int64(Self.bucketCount - 1)))
        hist[b] += add
        histTotal += add
        if histWeight > 1e12 {
            let s = 1 / histWeight
            for k in 0..<Self.bucketCount { hist[k] *= s }
            histTotal *= s
            histWeight = 1
        }
        let goal = histTotal * min(max(configuration.percentile, 0.5), 0.999)
        var cum = 0.0
        var quantile = Double(Self.bucketCount) * Double(Self.bucketFrames)
        for k in 0..<Self.bucketCount {
            let v = hist[k]
            if cum + v >= goal {
                let frac = v > 0 ? (goal - cum) / v : 0
                quantile = (Double(k) + frac) * Double(Self.bucketFrames)
                break
            }
            cum += v
        }
        targetFrames = min(max(Int64(quantile.rounded()) + margin, minTarget), maxTarget)
    }

    private func recordLatency(_ frames: Int64) {
        let ms = Self.ms(frames)
        latencyCount += 1
        latencySum += ms
        latencyMax = max(latencyMax, ms)
        latencyLast = ms
        let b = min(max(Int(ms), 0), Self.latencyBuckets - 1)
        latencyHist[b] += 1
    }

    // MARK: Playout

    private func renderChunk(into out: UnsafeMutablePointer<Float>, frames: Int, at: Int64) {
        headTime = at
        fill(to: frames, allowConceal: true)
        if anchored { shrinkIfAhead(blockFrames: frames) }
        let n = min(frames, fifoCount)
        out.update(from: fifo + fifoStart * 2, count: n * 2)
        if n < frames { (out + n * 2).update(repeating: 0, count: (frames - n) * 2) }
        fifoStart += n
        fifoCount -= n
        if fifoCount == 0 { fifoStart = 0 }
        headTime = at &+ Int64(frames)
        stretchCooldown -= Int64(frames)
        shrinkCooldown -= Int64(frames)
    }

    private func fill(to need: Int, allowConceal: Bool) {
        var steps = 0
        while fifoCount < need && steps < 512 {
            steps += 1
            if !produce(want: need - fifoCount, allowConceal: allowConceal) { break }
        }
        if allowConceal && fifoCount < need { pushSilence(need - fifoCount) }
    }

    /// Makes room for `frames` more at the FIFO tail (compacting if needed).
    private func ensureRoom(_ frames: Int) -> Bool {
        if fifoStart + fifoCount + frames > fifoCapacity && fifoStart > 0 {
            memmove(fifo, fifo + fifoStart * 2, fifoCount * 2 * MemoryLayout<Float>.stride)
            fifoStart = 0
        }
        return fifoStart + fifoCount + frames <= fifoCapacity
    }

    private var tail: UnsafeMutablePointer<Float> { fifo + (fifoStart + fifoCount) * 2 }

    private func pushSilence(_ frames: Int) {
        guard frames > 0, ensureRoom(frames) else { return }
        tail.update(repeating: 0, count: frames * 2)
        fifoCount += frames
    }

    /// One step of production. Returns false when nothing could be done (only without concealment).
    private func produce(want: Int, allowConceal: Bool) -> Bool {
        guard haveStream else {
            guard allowConceal else { return false }
            pushSilence(want)
            return true
        }
        if !anchored {
            let t = headTime + Int64(fifoCount)
            let start = pts + anchorOffset
            if t < start {
                guard allowConceal else { return false }
                pushSilence(Int(min(Int64(want), start - t)))
                return true
            }
            anchored = true
        }
        let idx = slotIndex(nextSeq)
        if slots[idx].present && slots[idx].ext == nextSeq {
            let ts = slots[idx].ts
            if ts > pts {
                // Timestamps jump with no sequence gap: DTX (or a re-mapped timeline). Not loss.
                guard allowConceal else { return false }
                conceal(Int(min(ts - pts, Int64(max(want, 120)))), advance: true)
                return true
            }
            if allowConceal && stretchCooldown <= 0, let amount = stretchAmount() {
                conceal(amount, advance: false, stretch: true)
                counters.stretchedFrames += Int64(amount)
                stretchCooldown = lastQuiet ? 0 : Self.loudCooldown
                return true
            }
            return decode(slot: idx)
        }
        if pending > 0, let nIdx = firstPresent(after: nextSeq) {
            let next = slots[nIdx]
            let gap = next.ts - pts
            if gap <= 0 {
                skip(to: next.ext)
                return true
            }
            guard allowConceal else { return false }
            let canFEC = next.fec && !next.resetBefore
            let fecSpan = Int64(next.frames)
            if canFEC && gap == fecSpan && gap % 120 == 0 {
                if decodeFEC(slot: nIdx, frames: Int(gap)) {
                    skip(to: next.ext)
                    return true
                }
            }
            // Conceal up to where FEC can take over (or all of the gap), 20 ms at a time.
            let span = canFEC && gap > fecSpan ? gap - fecSpan : gap
            conceal(Int(min(span, 960)), advance: true)
            return true
        }
        guard allowConceal else { return false }
        if !inUnderrun { inUnderrun = true; counters.underruns += 1 }
        conceal(min(max(want, 120), 960), advance: true)
        return true
    }

    private func firstPresent(after seq: Int64) -> Int? {
        var e = seq + 1
        while e <= highestExt && e < seq + Int64(slotCount) {
            let i = slotIndex(e)
            if slots[i].present && slots[i].ext == e { return i }
            e += 1
        }
        return nil
    }

    /// Moves playout past sequence numbers that never arrived, counting them lost.
    private func skip(to ext: Int64) {
        var e = nextSeq
        while e < ext {
            if slots[slotIndex(e)].ext != e { counters.lost += 1 }
            e += 1
        }
        nextSeq = ext
    }

    private func stretchAmount() -> Int? {
        let deficit = targetFrames - currentDelay()
        guard deficit > Self.stretchThreshold else { return nil }
        let cap = lastQuiet ? Self.quietStep : Self.loudStep
        let amount = min(deficit, cap) / 120 * 120
        return amount >= 120 ? Int(amount) : nil
    }

    private func decode(slot idx: Int) -> Bool {
        let s = slots[idx]
        guard ensureRoom(max(s.frames, OpusDecoder.concealmentGranule)) else { return false }
        slots[idx].present = false
        pending -= 1
        nextSeq = s.ext + 1
        if s.resetBefore {
            fadeOutTail()
            decoder?.reset()
            concealRun = 0
            faded = false
        }
        let before = fifoCount
        let dst = tail
        var n = 0
        do {
            guard let decoder else { throw OpusError(code: OpusError.badArgument, operation: "decode", detail: "no decoder") }
            n = try decoder.decode(UnsafeRawBufferPointer(start: payloads + idx * maxPayload, count: s.length),
                                   into: dst, maxFrames: fifoCapacity - fifoStart - fifoCount)
        } catch {
            counters.decodeErrors += 1
        }
        guard n > 0 else {
            conceal(s.frames, advance: false)
            pts = max(pts, s.ts + Int64(s.frames))
            return true
        }
        fifoCount += n
        recordLatency(headTime + Int64(before) - s.arrival)
        let m = min(n, 480)
        lastQuiet = BlockLevel.measure(dst + (n - m) * 2, count: m * 2).rms < Double(Self.quietLevel)
        concealRun = 0
        faded = false
        inUnderrun = false
        pts = max(pts, s.ts + Int64(n))
        return true
    }

    private func decodeFEC(slot idx: Int, frames: Int) -> Bool {
        guard ensureRoom(frames) else { return false }
        let s = slots[idx]
        let n: Int
        do {
            guard let decoder else { throw OpusError(code: OpusError.badArgument, operation: "decode FEC", detail: "no decoder") }
            n = try decoder.decodeFEC(from: UnsafeRawBufferPointer(start: payloads + idx * maxPayload, count: s.length),
                                      frames: frames, into: tail)
        } catch {
            counters.decodeErrors += 1
            return false
        }
        guard n > 0 else { return false }
        fifoCount += n
        pts += Int64(n)
        counters.fecRecovered += 1
        concealRun = 0
        faded = false
        return true
    }

    /// PLC (fading after `concealLimit`) or, once faded, silence. `advance` moves `pts` (loss, DTX,
    /// underrun); without it the audio is extra (stretch, counted apart from loss concealment).
    private func conceal(_ frames: Int, advance: Bool, stretch: Bool = false) {
        let n = min((max(frames, 1) + 119) / 120 * 120, OpusDecoder.maxPacketFrames)
        guard ensureRoom(n) else { return }
        let dst = tail
        if faded {
            dst.update(repeating: 0, count: n * 2)
        } else {
            var produced = 0
            if let decoder {
                do { produced = try decoder.conceal(frames: n, into: dst) } catch { counters.decodeErrors += 1 }
            }
            if produced < n { (dst + produced * 2).update(repeating: 0, count: (n - produced) * 2) }
            var audible = 0
            for j in 0..<n {
                let r = concealRun + Int64(j)
                if r < concealLimit { audible += 1; continue }
                let g = r < concealLimit + fadeLength ? 1 - Float(r - concealLimit) / Float(fadeLength) : 0
                if g > 0 { audible += 1 }
                dst[2 * j] *= g
                dst[2 * j + 1] *= g
            }
            if !stretch { counters.concealedFrames += Int64(audible) }
            concealRun += Int64(n)
            if concealRun >= concealLimit + fadeLength {
                faded = true
                decoder?.reset()     // the next packet starts cleanly from silence
            }
        }
        fifoCount += n
        if advance { pts += Int64(n) }
    }

    /// Short fade at the end of what is buffered, before a decoder reset splices in a new stream.
    private func fadeOutTail() {
        let n = min(120, fifoCount)
        guard n > 0 else { return }
        let p = fifo + (fifoStart + fifoCount - n) * 2
        for j in 0..<n {
            let g = Float(n - 1 - j) / Float(n)
            p[2 * j] *= g
            p[2 * j + 1] *= g
        }
    }

    // MARK: Shrinking

    private func shrinkIfAhead(blockFrames: Int) {
        guard shrinkCooldown <= 0 else { return }
        let excess = currentDelay() - targetFrames
        if excess > Self.shrinkStart { shrinking = true } else if excess < Self.shrinkStop { shrinking = false }
        guard shrinking else { return }
        let x = Self.crossfade
        // Decode ahead (real packets only) so the cut has material beyond this block.
        fill(to: blockFrames + x + Int(Self.quietStep), allowConceal: false)
        let room = Int64(max(0, min(fifoCount - x, fifoCount - blockFrames)))
        let limit = min(excess, Self.quietStep, room)
        guard limit >= 120 else { return }
        let head = fifo + fifoStart * 2
        let span = Int(limit) + x
        let quiet = BlockLevel.measure(head, count: span * 2).rms < Double(Self.quietLevel)
        let d: Int
        if quiet {
            d = Int(limit)
        } else {
            // Up to 2.5 ms past the target is allowed so a whole pitch period fits (never enough to
            // trigger a stretch back).
            let maxLag = Int(min(excess + 120, Self.loudStep, room))
            guard maxLag >= 120 else { return }
            d = bestLag(head, minLag: 120, maxLag: maxLag)
        }
        for i in 0..<x {
            let w = crossfadeWindow[i]
            head[2 * i] = head[2 * i] * (1 - w) + head[2 * (d + i)] * w
            head[2 * i + 1] = head[2 * i + 1] * (1 - w) + head[2 * (d + i) + 1] * w
        }
        let moved = fifoCount - x - d
        if moved > 0 { memmove(head + 2 * x, head + 2 * (x + d), moved * 2 * MemoryLayout<Float>.stride) }
        fifoCount -= d
        counters.shrunkFrames += Int64(d)
        shrinkCooldown = quiet || excess > Self.emergency ? 0 : Self.loudCooldown
    }

    /// The cut length in [minLag, maxLag] whose following audio best matches the audio at the head
    /// (normalised cross-correlation of the L+R mix), so the crossfade joins in-phase material.
    private func bestLag(_ head: UnsafeMutablePointer<Float>, minLag: Int, maxLag: Int) -> Int {
        let x = Self.crossfade
        let n = maxLag + x
        for i in 0..<n { monoScratch[i] = head[2 * i] + head[2 * i + 1] }
        var ea: Float = 0
        for i in 0..<x { ea += monoScratch[i] * monoScratch[i] }
        var best = minLag
        var bestScore = -Float.infinity
        for lag in minLag...maxLag {
            var c: Float = 0
            var eb: Float = 0
            let b = monoScratch + lag
            for i in 0..<x {
                c += monoScratch[i] * b[i]
                eb += b[i] * b[i]
            }
            let score = c / max(sqrt(ea * eb), 1e-9)
            if score > bestScore { bestScore = score; best = lag }
        }
        return best
    }
}
