#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import RTP
import STUN

/// Reads the sockets of every `UDPMux` and runs their timers: one thread for all peers, which a
/// regular caller (the mix loop) can relieve of the reading.
///
/// On this kind of machine a thread wake-up and each system call cost tens of microseconds, more
/// than decrypting a packet: a thread per peer, woken per datagram, spent about 0.2 % of a core per
/// participant on wake-ups alone. So the loop works in two modes:
/// - undriven, its thread polls every socket and reads each datagram as it arrives;
/// - driven, a caller that runs on its own schedule anyway (the mix loop, once per burst of blocks)
///   calls `readNow()` just before it needs the packets, and reads the sockets of connections that carry
///   media (`UDPMux.deliverInBatches`); the thread still reads connections being set up (ICE, DTLS:
///   their handshakes never hold up the mix) and runs every timer (ICE checks and consent). No
///   packet waits longer than it would have: the mix could not have used it before that call. If
///   the calls stop for `drivenGrace`, the thread reads everything again.
/// Each datagram carries the kernel's receive time (SO_TIMESTAMPNS), so jitter and arrival figures
/// do not depend on when it was read.
///
/// Handlers run on whichever thread reads, one datagram at a time, never two at once: they must
/// not block (nor call `readNow`). A loop's thread starts with its first registration and lives as
/// long as the process, idle in `poll` when it has nothing to read.
public final class ReceiveLoop: @unchecked Sendable {
    /// The loop every `UDPMux` uses unless given another.
    public static let shared = ReceiveLoop()

    /// How long after the last `readNow()` the thread takes the sockets back.
    public let drivenGrace: Double

    final class Registration {
        let fds: [Int32]
        let onDatagram: UDPMux.DatagramHandler
        let onTimer: UDPMux.TimerHandler
        let closeSockets: () -> Void
        let dropped = DispatchSemaphore(value: 0)
        /// Read by a `readNow` caller while the loop is driven (under the loop's `lock`).
        var batched = false
        // Under `roundLock`:
        var deadline: Double?
        var removing = false
        var touched = false
        init(fds: [Int32], onDatagram: @escaping UDPMux.DatagramHandler, onTimer: @escaping UDPMux.TimerHandler,
             closeSockets: @escaping () -> Void) {
            self.fds = fds; self.onDatagram = onDatagram; self.onTimer = onTimer; self.closeSockets = closeSockets
        }
    }

    /// Guards the changes requested from other threads.
    private let lock = NSLock()
    private var adds: [Registration] = []
    private var removals: [ObjectIdentifier] = []
    private var pokes: [ObjectIdentifier] = []
    private var thread: pthread_t?
    /// Held for a whole round (reads, handlers, timers), by the loop's thread or a `readNow` caller.
    private let roundLock = NSLock()
    /// The thread running the current round, if any (under `lock`).
    private var roundOwner: pthread_t?
    /// ICEClock time of the last `readNow` (under `lock`).
    private var lastDriven = -Double.infinity
    /// Self-pipe: a registration change ends the thread's current wait at once.
    private let pipeRead: Int32
    private let pipeWrite: Int32

    // Under `roundLock`: the registrations, and the pollfds of a round with their owners.
    private var active: [Registration] = []
    private var fds: [pollfd] = []
    private var owners: [Registration] = []
    /// The loop thread's own wait set (the pipe last); only that thread touches it.
    private var waitSet: [pollfd] = []
    // One reusable buffer (a UDP payload is at most 65507 bytes) and room for the timestamp.
    private let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 65536, alignment: 8)
    private let control = UnsafeMutableRawBufferPointer.allocate(byteCount: 128, alignment: 8)

    public init(drivenGrace: Double = 0.5) {
        self.drivenGrace = drivenGrace
        var p: [Int32] = [-1, -1]
        guard pipe(&p) == 0 else { fatalError("ReceiveLoop: pipe() failed, errno \(errno)") }
        for fd in p { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
        pipeRead = p[0]; pipeWrite = p[1]
    }

    /// Adds sockets; their first timer call comes on the next round.
    func register(_ r: Registration) {
        lock.lock()
        adds.append(r)
        if thread == nil { startLocked() }
        lock.unlock()
        wake()
    }

    /// Removes sockets and closes them. From another thread this waits until no round touches
    /// them (no handler of theirs runs after it returns); from a handler it returns at once and
    /// the round closes them when the handler is done.
    func unregister(_ r: Registration) {
        lock.lock()
        if let i = adds.firstIndex(where: { $0 === r }) {
            adds.remove(at: i)
            lock.unlock()
            r.closeSockets()
            return
        }
        removals.append(ObjectIdentifier(r))
        let inRound = roundOwner.map { pthread_equal($0, pthread_self()) != 0 } ?? false
        lock.unlock()
        if inRound { return }
        wake()
        r.dropped.wait()
    }

    /// Hands `r`'s sockets to the `readNow` caller while the loop is driven.
    func setBatched(_ r: Registration) {
        lock.lock()
        r.batched = true
        lock.unlock()
        wake()
    }

    /// Makes `r`'s timer due now: its owner moved a deadline from another thread.
    func poke(_ r: Registration) {
        lock.lock()
        pokes.append(ObjectIdentifier(r))
        lock.unlock()
        wake()
    }

    /// Reads every socket and runs the timers that are due, on the caller's thread. Call it
    /// regularly (at least every `drivenGrace`) and the loop's thread stops reading.
    public func readNow() {
        lock.lock()
        lastDriven = ICEClock.now()
        lock.unlock()
        roundLock.lock()
        round(.batched)
        roundLock.unlock()
    }

    private func wake() {
        var b: UInt8 = 1
        _ = Glibc.write(pipeWrite, &b, 1)  // a full pipe already means "wake up"
    }

    private func startLocked() {
        let unmanaged = Unmanaged.passRetained(self)
        var tid = pthread_t()
        let rc = pthread_create(&tid, nil, { arg in
            guard let arg else { return nil }
            Unmanaged<ReceiveLoop>.fromOpaque(arg).takeRetainedValue().run()
            return nil
        }, unmanaged.toOpaque())
        guard rc == 0 else { fatalError("ReceiveLoop: pthread_create failed (\(rc))") }
        pthread_detach(tid)
        thread = tid
    }

    // MARK: - Rounds

    /// Which sockets a round reads.
    private enum Reading { case all, batched, unbatched }

    /// The loop's thread: waits for datagrams on the sockets it reads, a timer or a change, then
    /// runs a round.
    private func run() {
        while true {
            roundLock.lock()
            applyChanges()
            let now = ICEClock.now()
            let driven = isDriven(now)
            let earliest = active.lazy.compactMap(\.deadline).min()
            let wakeAt = driven.map { min(earliest ?? $0, $0) } ?? earliest
            collect(driven == nil ? .all : .unbatched, into: &waitSet)
            roundLock.unlock()
            waitSet.append(pollfd(fd: pipeRead, events: Int16(POLLIN), revents: 0))

            // At least 1 ms: a deadline that stays in the past must not make this loop spin.
            let timeout = wakeAt.map { Int32((max($0 - now, 0.001) * 1000).rounded(.up)) } ?? -1
            let r = waitSet.withUnsafeMutableBufferPointer { poll($0.baseAddress, nfds_t($0.count), timeout) }
            if r < 0 && errno != EINTR { fatalError("ReceiveLoop: poll failed, errno \(errno)") }
            if r > 0, waitSet[waitSet.count - 1].revents != 0 { drainPipe() }
            roundLock.lock()
            round(isDriven(ICEClock.now()) == nil ? .all : .unbatched)
            roundLock.unlock()
        }
    }

    /// Until when the loop counts as driven, or nil when it is not.
    private func isDriven(_ now: Double) -> Double? {
        lock.lock()
        let until = lastDriven + drivenGrace
        lock.unlock()
        return now < until ? until : nil
    }

    /// The pollfds of the registrations a round of this kind reads (owners in `owners`).
    private func collect(_ reading: Reading, into set: inout [pollfd]) {
        set.removeAll(keepingCapacity: true)
        owners.removeAll(keepingCapacity: true)
        lock.lock()
        for r in active {
            switch reading {
            case .all: break
            case .batched: if !r.batched { continue }
            case .unbatched: if r.batched { continue }
            }
            for fd in r.fds {
                set.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0))
                owners.append(r)
            }
        }
        lock.unlock()
    }

    /// One round under `roundLock`: apply changes, read the ready sockets of this kind, run the
    /// timers of what was read and of what is due.
    private func round(_ reading: Reading) {
        setRoundOwner(true)
        defer { setRoundOwner(false) }
        applyChanges()
        collect(reading, into: &fds)
        if !fds.isEmpty, fds.withUnsafeMutableBufferPointer({ poll($0.baseAddress, nfds_t($0.count), 0) }) > 0 {
            let clocks = ArrivalClock()
            for i in 0..<owners.count where fds[i].revents != 0 {
                let owner = owners[i]
                guard !isRemoving(owner) else { continue }
                drain(fds[i].fd, owner, clocks)
                owner.touched = true
            }
        }
        runTimers()
        applyChanges()  // close what a handler closed
    }

    private func runTimers() {
        let now = ICEClock.now()
        for reg in active where reg.touched || (reg.deadline.map { $0 <= now } ?? false) {
            reg.touched = false
            guard !isRemoving(reg) else { continue }
            reg.deadline = reg.onTimer(now)
        }
    }

    private func setRoundOwner(_ mine: Bool) {
        lock.lock()
        roundOwner = mine ? pthread_self() : nil
        lock.unlock()
    }

    /// True once `unregister` was called for `r` (from any thread); such a registration gets no more calls.
    private func isRemoving(_ r: Registration) -> Bool {
        if r.removing { return true }
        lock.lock()
        let gone = removals.contains(ObjectIdentifier(r))
        lock.unlock()
        if gone { r.removing = true }
        return gone
    }

    private func applyChanges() {
        lock.lock()
        let newOnes = adds
        let gone = Set(removals)
        let poked = Set(pokes)
        adds.removeAll()
        removals.removeAll()
        pokes.removeAll()
        lock.unlock()
        if !poked.isEmpty {
            let now = ICEClock.now()
            for r in active where poked.contains(ObjectIdentifier(r)) { r.deadline = now }
        }
        guard !newOnes.isEmpty || !gone.isEmpty else { return }
        var dropped: [Registration] = []
        active.removeAll { r in
            if gone.contains(ObjectIdentifier(r)) { dropped.append(r); return true }
            return false
        }
        for r in newOnes {
            // Removed before any round saw it: it was never polled.
            if gone.contains(ObjectIdentifier(r)) { dropped.append(r); continue }
            r.deadline = ICEClock.now()  // its first timer call is due now
            active.append(r)
        }
        for r in dropped {
            r.closeSockets()
            r.dropped.signal()
        }
    }

    private func drainPipe() {
        var scratch = [UInt8](repeating: 0, count: 64)
        while scratch.withUnsafeMutableBytes({ Glibc.read(pipeRead, $0.baseAddress, $0.count) }) > 0 {}
    }

    /// Reads what is queued on one socket (bounded, so one busy socket cannot starve the others).
    private func drain(_ fd: Int32, _ reg: Registration, _ clocks: ArrivalClock) {
        for _ in 0..<256 {
            var ss = sockaddr_storage()
            var iov = iovec(iov_base: buffer.baseAddress, iov_len: buffer.count)
            let n: Int = withUnsafeMutablePointer(to: &ss) { sp in
                withUnsafeMutablePointer(to: &iov) { ip in
                    var msg = msghdr()
                    msg.msg_name = UnsafeMutableRawPointer(sp)
                    msg.msg_namelen = socklen_t(MemoryLayout<sockaddr_storage>.size)
                    msg.msg_iov = ip
                    msg.msg_iovlen = 1
                    msg.msg_control = control.baseAddress
                    msg.msg_controllen = control.count
                    return recvmsg(fd, &msg, Int32(MSG_DONTWAIT))
                }
            }
            if n < 0 { return }  // EAGAIN or an ICMP error surfaced on the socket: nothing more now
            guard let from = UDPMux.transportAddress(ss) else { continue }
            let arrival = clocks.monotonicNs(kernelRealtime: ReceiveLoop.receiveTimestamp(control))
            let bytes = [UInt8](UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            let kind = bytes.isEmpty ? PacketKind.other : PacketKind.classify(bytes[0])
            reg.onDatagram(kind, bytes, from, arrival)
            if isRemoving(reg) { return }
        }
    }

    /// SCM_TIMESTAMPNS from a recvmsg control buffer (CLOCK_REALTIME), if the kernel gave one.
    static func receiveTimestamp(_ control: UnsafeMutableRawBufferPointer) -> timespec? {
        // struct cmsghdr { size_t len; int level; int type; } then the data, 8-aligned on LP64.
        let header = MemoryLayout<Int>.size + 2 * MemoryLayout<Int32>.size
        let dataOffset = (header + 7) & ~7
        guard control.count >= dataOffset + MemoryLayout<timespec>.size, let base = control.baseAddress else { return nil }
        var offset = 0
        while offset + dataOffset <= control.count {
            let len = base.loadUnaligned(fromByteOffset: offset, as: Int.self)
            guard len >= header, offset + len <= control.count else { return nil }
            let level = base.loadUnaligned(fromByteOffset: offset + MemoryLayout<Int>.size, as: Int32.self)
            let type = base.loadUnaligned(fromByteOffset: offset + MemoryLayout<Int>.size + 4, as: Int32.self)
            if level == SOL_SOCKET, type == soTimestampNS, len >= dataOffset + MemoryLayout<timespec>.size {
                return base.loadUnaligned(fromByteOffset: offset + dataOffset, as: timespec.self)
            }
            offset += (len + 7) & ~7
        }
        return nil
    }

    /// SO_TIMESTAMPNS (= SCM_TIMESTAMPNS) with a 64-bit time_t; the C macro does not reach Swift.
    static let soTimestampNS: Int32 = 35

    /// Asks the kernel to stamp each datagram's arrival. Without it datagrams are stamped when read.
    static func enableTimestamps(_ fd: Int32) {
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, soTimestampNS, &one, socklen_t(MemoryLayout<Int32>.size))
    }

    /// Converts kernel receive stamps (CLOCK_REALTIME) to CLOCK_MONOTONIC nanoseconds, the clock of
    /// everything downstream, with one pair of clock readings per round.
    struct ArrivalClock {
        let monoNow: UInt64
        let offsetNs: Int64
        init() {
            var m = timespec(), r = timespec()
            clock_gettime(CLOCK_MONOTONIC, &m)
            clock_gettime(CLOCK_REALTIME, &r)
            monoNow = UInt64(m.tv_sec) &* 1_000_000_000 &+ UInt64(m.tv_nsec)
            offsetNs = Int64(monoNow) &- (Int64(r.tv_sec) &* 1_000_000_000 &+ Int64(r.tv_nsec))
        }
        /// Never later than now and never more than a second earlier (a stepped wall clock).
        func monotonicNs(kernelRealtime ts: timespec?) -> UInt64 {
            guard let ts else { return monoNow }
            let mono = Int64(ts.tv_sec) &* 1_000_000_000 &+ Int64(ts.tv_nsec) &+ offsetNs
            guard mono <= Int64(monoNow), Int64(monoNow) - mono < 1_000_000_000 else { return monoNow }
            return UInt64(mono)
        }
    }
}
