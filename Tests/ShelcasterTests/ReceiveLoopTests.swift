import Foundation
import Testing
@testable import ICE
import RTP
import STUN

/// The shared receive loop: kernel arrival stamps, driven and undriven reading, closing from a handler.
@Suite struct ReceiveLoopTests {
    struct Arrival: Sendable { let bytes: [UInt8]; let arrivalNs: UInt64; let thread: UInt }

    /// A mux on its own loop, recording what it receives and on which thread.
    final class Probe: @unchecked Sendable {
        let loop: ReceiveLoop
        let mux: UDPMux
        let got = ICETestBox<[Arrival]>([])
        let timerCalls = ICETestBox(0)
        init(drivenGrace: Double = 0.5) throws {
            loop = ReceiveLoop(drivenGrace: drivenGrace)
            mux = try UDPMux(interfaces: .addresses([STUNIPAddress("127.0.0.1")!]), ipv6: false, loop: loop)
        }
        func start(onDatagram extra: (@Sendable (Probe) -> Void)? = nil) {
            mux.start(onDatagram: { [self] _, bytes, _, arrival in
                got.with { $0.append(Arrival(bytes: bytes, arrivalNs: arrival, thread: UInt(pthread_self()))) }
                extra?(self)
            }, onTimer: { [self] now in timerCalls.with { $0 += 1 }; return now + 3600 })
        }
        var address: STUNTransportAddress { mux.localAddresses[0] }
        /// Another loopback mux on the same loop, to send from.
        func makeSender() throws -> UDPMux {
            try UDPMux(interfaces: .addresses([STUNIPAddress("127.0.0.1")!]), ipv6: false, loop: loop)
        }
    }

    static func monoNs() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    static func waitFor(_ seconds: Double, _ done: () -> Bool) -> Bool {
        let end = ICEClock.now() + seconds
        while ICEClock.now() < end { if done() { return true }; usleep(2_000) }
        return done()
    }

    @Test func undrivenLoopReadsEachDatagramAsItArrives() throws {
        let probe = try Probe()
        defer { probe.mux.close() }
        probe.start()
        let sender = try probe.makeSender()
        defer { sender.close() }
        let before = Self.monoNs()
        #expect(sender.send([0x80, 1, 2, 3], to: probe.address))
        #expect(Self.waitFor(2) { probe.got.get.count == 1 })
        let a = try #require(probe.got.get.first)
        #expect(a.bytes == [0x80, 1, 2, 3])
        #expect(a.arrivalNs >= before && a.arrivalNs <= Self.monoNs())
    }

    @Test func drivenLoopLeavesBatchedSocketsToTheCallerAndKeepsKernelArrivalTimes() throws {
        let probe = try Probe(drivenGrace: 5)
        defer { probe.mux.close() }
        probe.start()
        probe.mux.deliverInBatches()
        let sender = try probe.makeSender()
        defer { sender.close() }
        probe.loop.readNow()  // driven from here on, for 5 s
        let first = Self.monoNs()
        #expect(sender.send([0x80, 1], to: probe.address))
        usleep(150_000)
        let second = Self.monoNs()
        #expect(sender.send([0x80, 2], to: probe.address))
        usleep(100_000)
        // The loop's thread did not read them: it only runs timers while driven.
        #expect(probe.got.get.isEmpty)
        let readAt = Self.monoNs()
        probe.loop.readNow()
        let got = probe.got.get
        try #require(got.count == 2)
        // Stamped when they arrived, not when read: 150 ms apart, both well before the read.
        let gapMs = Double(got[1].arrivalNs &- got[0].arrivalNs) / 1e6
        #expect(abs(gapMs - 150) < 30, "arrival gap \(gapMs) ms")
        #expect(got[0].arrivalNs >= first && got[0].arrivalNs < second)
        #expect(readAt > got[1].arrivalNs && Double(readAt - got[1].arrivalNs) / 1e6 > 50)
        // Read on this (the caller's) thread.
        #expect(got.allSatisfy { $0.thread == UInt(pthread_self()) })
    }

    @Test func drivenLoopStillReadsConnectionsBeingSetUpAtOnce() throws {
        let probe = try Probe(drivenGrace: 5)
        defer { probe.mux.close() }
        probe.start()  // not batched: a handshake in progress
        let sender = try probe.makeSender()
        defer { sender.close() }
        probe.loop.readNow()
        let sent = ICEClock.now()
        #expect(sender.send([0x16, 1], to: probe.address))
        #expect(Self.waitFor(2) { probe.got.get.count == 1 })
        #expect(ICEClock.now() - sent < 0.1)
        #expect(probe.got.get.first?.thread != UInt(pthread_self()))
    }

    @Test func loopTakesTheSocketsBackWhenTheCallsStop() throws {
        let probe = try Probe(drivenGrace: 0.3)
        defer { probe.mux.close() }
        probe.start()
        probe.mux.deliverInBatches()
        let sender = try probe.makeSender()
        defer { sender.close() }
        probe.loop.readNow()
        let sent = ICEClock.now()
        #expect(sender.send([0x80, 9], to: probe.address))
        #expect(Self.waitFor(3) { probe.got.get.count == 1 })
        let waited = ICEClock.now() - sent
        // Not before the grace ran out (no readNow came), and soon after it.
        #expect(waited > 0.2 && waited < 1.5, "read \(waited) s after sending")
    }

    @Test func handlerMayCloseItsOwnMuxAndNothingRunsAfterClose() throws {
        let probe = try Probe()
        let sender = try probe.makeSender()
        defer { sender.close() }
        // The first datagram's handler closes the mux: the second is never delivered.
        probe.start(onDatagram: { $0.mux.close() })
        #expect(sender.send([0x80, 1], to: probe.address))
        #expect(sender.send([0x80, 2], to: probe.address))
        #expect(Self.waitFor(2) { probe.got.get.count >= 1 })
        usleep(100_000)
        #expect(probe.got.get.count == 1)

        // Closed from another thread: after close returns, no handler runs.
        let other = try Probe()
        other.start()
        other.mux.close()
        let n = other.got.get.count
        _ = sender.send([0x80, 3], to: other.address)
        usleep(100_000)
        #expect(other.got.get.count == n)
    }

    @Test func timersRunOnTimeWhileDriven() throws {
        let loop = ReceiveLoop(drivenGrace: 10)
        let mux = try UDPMux(interfaces: .addresses([STUNIPAddress("127.0.0.1")!]), ipv6: false, loop: loop)
        defer { mux.close() }
        let calls = ICETestBox<[Double]>([])
        let start = ICEClock.now()
        mux.start(onDatagram: { _, _, _, _ in }, onTimer: { now in
            calls.with { $0.append(now - start) }
            return now + 0.1
        })
        loop.readNow()  // driven: no reads by the thread, but timers still fire every 100 ms
        usleep(550_000)
        let c = calls.get
        #expect(c.count >= 4 && c.count <= 8, "timer calls at \(c)")
    }

    @Test func kernelTimestampIsFoundInAControlBuffer() {
        let control = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 8)
        defer { control.deallocate() }
        control.initializeMemory(as: UInt8.self, repeating: 0)
        #expect(ReceiveLoop.receiveTimestamp(control) == nil)  // len 0: no message
        // cmsghdr: len = 16 + 16, SOL_SOCKET, SCM_TIMESTAMPNS, then a timespec.
        control.storeBytes(of: 32, toByteOffset: 0, as: Int.self)
        control.storeBytes(of: SOL_SOCKET, toByteOffset: 8, as: Int32.self)
        control.storeBytes(of: ReceiveLoop.soTimestampNS, toByteOffset: 12, as: Int32.self)
        control.storeBytes(of: 1_700_000_000, toByteOffset: 16, as: Int.self)
        control.storeBytes(of: 123_456_789, toByteOffset: 24, as: Int.self)
        let ts = ReceiveLoop.receiveTimestamp(control)
        #expect(ts?.tv_sec == 1_700_000_000 && ts?.tv_nsec == 123_456_789)
        // A length running past the buffer is refused, not read.
        control.storeBytes(of: 1000, toByteOffset: 0, as: Int.self)
        #expect(ReceiveLoop.receiveTimestamp(control) == nil)
    }
}
