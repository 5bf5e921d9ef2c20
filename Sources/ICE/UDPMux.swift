#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import RTP
import STUN

/// Monotonic seconds, for timers that must not jump with the wall clock.
public enum ICEClock {
    public static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}

/// Owns one UDP socket per address family, bound for our host candidates, and one receive thread
/// that demultiplexes every datagram by its first byte (RFC 7983) before handing it on. The same
/// sockets carry STUN, DTLS and SRTP/SRTCP, so the peer sees one transport address per family.
///
/// With several local addresses of a family the socket is bound to the wildcard address and each
/// address becomes a host candidate with the socket's port; the kernel's route decides the source
/// address, so a pair's local candidate is taken to be the route's source (`routeSource`).
public final class UDPMux: @unchecked Sendable {
    public typealias DatagramHandler = @Sendable (_ kind: PacketKind, _ bytes: [UInt8], _ from: STUNTransportAddress) -> Void
    /// Called on the receive thread after each wake-up; returns the next time (ICEClock) it wants a call.
    public typealias TimerHandler = @Sendable (_ now: Double) -> Double?

    /// Host addresses with the port of their family's socket.
    public let localAddresses: [STUNTransportAddress]
    private let fd4: Int32
    private let fd6: Int32
    private let lock = NSLock()
    private var running = false
    private var stopRequested = false
    private var loopThread: pthread_t?
    private let finished = DispatchSemaphore(value: 0)
    /// Longest sleep between timer calls, so a new deadline set from another thread is noticed soon.
    private let maxSleep = 0.05

    public init(interfaces: ICEInterfaces, ipv4: Bool = true, ipv6: Bool = true, port: UInt16 = 0) throws(ICEError) {
        let all = UDPMux.interfaceAddresses()
        var chosen: [STUNIPAddress]
        switch interfaces {
        case .loopbackOnly:
            chosen = all.filter { $0.isLoopback }
        case .allExceptLoopback:
            chosen = all.filter { !$0.isLoopback && !$0.isLinkLocal }
        case .addresses(let list):
            chosen = list.filter { all.contains($0) }
        }
        chosen = chosen.filter { ($0.isIPv4 && ipv4) || (!$0.isIPv4 && ipv6) }
        var v4 = chosen.filter { $0.isIPv4 }
        var v6 = chosen.filter { !$0.isIPv4 }

        var s4: Int32 = -1, s6: Int32 = -1
        var addresses: [STUNTransportAddress] = []
        if !v4.isEmpty {
            do {
                let (fd, p) = try UDPMux.openSocket(bind: v4.count == 1 ? v4[0] : nil, family: .v4, port: port)
                s4 = fd
                addresses += v4.map { STUNTransportAddress(ip: $0, port: p) }
            } catch { v4 = [] }
        }
        if !v6.isEmpty {
            do {
                let (fd, p) = try UDPMux.openSocket(bind: v6.count == 1 ? v6[0] : nil, family: .v6, port: port)
                s6 = fd
                addresses += v6.map { STUNTransportAddress(ip: $0, port: p) }
            } catch { v6 = [] }
        }
        guard !addresses.isEmpty else {
            if s4 >= 0 { _ = Glibc.close(s4) }
            if s6 >= 0 { _ = Glibc.close(s6) }
            throw .noLocalAddresses
        }
        fd4 = s4; fd6 = s6
        localAddresses = addresses
    }

    deinit {
        close()
    }

    /// Starts the receive thread. Handlers run on it, one datagram at a time.
    public func start(onDatagram: @escaping DatagramHandler, onTimer: @escaping TimerHandler) {
        lock.lock()
        guard !running, !stopRequested else { lock.unlock(); return }
        running = true
        lock.unlock()
        let box = LoopContext(mux: self, onDatagram: onDatagram, onTimer: onTimer)
        let unmanaged = Unmanaged.passRetained(box)
        var tid = pthread_t()
        let rc = pthread_create(&tid, nil, { arg in
            guard let arg else { return nil }
            let ctx = Unmanaged<LoopContext>.fromOpaque(arg).takeRetainedValue()
            ctx.mux.runLoop(ctx)
            return nil
        }, unmanaged.toOpaque())
        if rc != 0 {
            unmanaged.release()
            lock.lock(); running = false; lock.unlock()
        } else {
            lock.lock(); loopThread = tid; lock.unlock()
        }
    }

    /// Sends from the socket of `to`'s family. False if that family has no socket or sendto fails.
    @discardableResult
    public func send(_ bytes: [UInt8], to: STUNTransportAddress) -> Bool {
        let fd = to.ip.isIPv4 ? fd4 : fd6
        guard fd >= 0 else { return false }
        var (ss, len) = UDPMux.socketAddress(for: to)
        let n = bytes.withUnsafeBytes { b in
            withUnsafePointer(to: &ss) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, b.baseAddress, b.count, 0, $0, len) }
            }
        }
        return n == bytes.count
    }

    /// Stops the thread (waiting for it unless called from it) and closes the sockets. Idempotent.
    public func close() {
        lock.lock()
        if stopRequested { lock.unlock(); return }
        stopRequested = true
        let wasRunning = running
        let thread = loopThread
        lock.unlock()
        if wasRunning {
            if let thread, pthread_equal(thread, pthread_self()) != 0 {
                pthread_detach(thread)
                return  // the loop closes the sockets as it exits
            }
            finished.wait()
            if let thread { pthread_join(thread, nil) }
        } else {
            closeSockets()
        }
    }

    private func closeSockets() {
        if fd4 >= 0 { _ = Glibc.close(fd4) }
        if fd6 >= 0 { _ = Glibc.close(fd6) }
    }

    private final class LoopContext {
        let mux: UDPMux
        let onDatagram: DatagramHandler
        let onTimer: TimerHandler
        init(mux: UDPMux, onDatagram: @escaping DatagramHandler, onTimer: @escaping TimerHandler) {
            self.mux = mux; self.onDatagram = onDatagram; self.onTimer = onTimer
        }
    }

    private var shouldStop: Bool {
        lock.lock(); defer { lock.unlock() }
        return stopRequested
    }

    private func runLoop(_ ctx: LoopContext) {
        var fds: [pollfd] = []
        if fd4 >= 0 { fds.append(pollfd(fd: fd4, events: Int16(POLLIN), revents: 0)) }
        if fd6 >= 0 { fds.append(pollfd(fd: fd6, events: Int16(POLLIN), revents: 0)) }
        // One reusable buffer: a UDP payload is at most 65507 bytes.
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 65536, alignment: 8)
        defer {
            buffer.deallocate()
            closeSockets()
            finished.signal()
        }
        var deadline = ctx.onTimer(ICEClock.now())
        while !shouldStop {
            let now = ICEClock.now()
            var wait = maxSleep
            // At least 1 ms: a deadline that stays in the past must not make this loop spin.
            if let d = deadline { wait = min(max(d - now, 0.001), maxSleep) }
            let ms = Int32((wait * 1000).rounded(.up))
            let r = fds.withUnsafeMutableBufferPointer { poll($0.baseAddress, nfds_t($0.count), ms) }
            if r < 0 && errno != EINTR { break }
            if r > 0 {
                for i in fds.indices where fds[i].revents & Int16(POLLIN) != 0 {
                    drain(fds[i].fd, buffer, ctx)
                }
            }
            deadline = ctx.onTimer(ICEClock.now())
        }
    }

    /// Reads what is queued on one socket (bounded, so one busy socket cannot starve the timers).
    private func drain(_ fd: Int32, _ buffer: UnsafeMutableRawBufferPointer, _ ctx: LoopContext) {
        for _ in 0..<256 {
            var ss = sockaddr_storage()
            var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let n = withUnsafeMutablePointer(to: &ss) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    recvfrom(fd, buffer.baseAddress, buffer.count, Int32(MSG_DONTWAIT), $0, &len)
                }
            }
            if n < 0 { return }  // EAGAIN or an ICMP error surfaced on the socket: nothing more now
            guard let from = UDPMux.transportAddress(ss) else { continue }
            let bytes = [UInt8](UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            let kind = bytes.isEmpty ? PacketKind.other : PacketKind.classify(bytes[0])
            ctx.onDatagram(kind, bytes, from)
        }
    }

    // MARK: - Socket helpers

    private static func openSocket(bind ip: STUNIPAddress?, family: STUNIPAddress.Family, port: UInt16) throws(ICEError) -> (Int32, UInt16) {
        let af = family == .v4 ? AF_INET : AF_INET6
        #if canImport(Glibc)
        let fd = socket(af, Int32(SOCK_DGRAM.rawValue), 0)
        #else
        let fd = socket(af, SOCK_DGRAM, 0)
        #endif
        guard fd >= 0 else { throw .socket(operation: "socket", errno: errno) }
        var one: Int32 = 1
        if family == .v6 {
            // Keep IPv4 on its own socket: no mapped addresses on this one.
            setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &one, socklen_t(MemoryLayout<Int32>.size))
        }
        var bufSize: Int32 = 1 << 20
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bufSize, socklen_t(MemoryLayout<Int32>.size))
        let any = family == .v4 ? STUNIPAddress(ipv4: 0) : (STUNIPAddress(bytes: [UInt8](repeating: 0, count: 16)) ?? STUNIPAddress(ipv4: 0))
        var (ss, len) = socketAddress(for: STUNTransportAddress(ip: ip ?? any, port: port))
        let rc = withUnsafePointer(to: &ss) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, len) }
        }
        guard rc == 0 else {
            let e = errno
            _ = Glibc.close(fd)
            throw .socket(operation: "bind", errno: e)
        }
        var bound = sockaddr_storage()
        var blen = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &bound) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &blen) }
        }
        return (fd, transportAddress(bound)?.port ?? port)
    }

    static func socketAddress(for a: STUNTransportAddress) -> (sockaddr_storage, socklen_t) {
        var ss = sockaddr_storage()
        if a.ip.isIPv4 {
            var sin = sockaddr_in()
            sin.sin_family = sa_family_t(AF_INET)
            sin.sin_port = a.port.bigEndian
            sin.sin_addr = in_addr(s_addr: a.ip.ipv4Value.bigEndian)
            withUnsafeMutableBytes(of: &ss) { dst in withUnsafeBytes(of: &sin) { dst.copyMemory(from: $0) } }
            return (ss, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
        var sin6 = sockaddr_in6()
        sin6.sin6_family = sa_family_t(AF_INET6)
        sin6.sin6_port = a.port.bigEndian
        let b = a.ip.bytes
        withUnsafeMutableBytes(of: &sin6.sin6_addr) { dst in for i in 0..<16 { dst[i] = b[i] } }
        withUnsafeMutableBytes(of: &ss) { dst in withUnsafeBytes(of: &sin6) { dst.copyMemory(from: $0) } }
        return (ss, socklen_t(MemoryLayout<sockaddr_in6>.size))
    }

    static func transportAddress(_ ss: sockaddr_storage) -> STUNTransportAddress? {
        var ss = ss
        switch Int32(ss.ss_family) {
        case AF_INET:
            return withUnsafeBytes(of: &ss) { raw -> STUNTransportAddress? in
                let sin = raw.load(as: sockaddr_in.self)
                return STUNTransportAddress(ip: STUNIPAddress(ipv4: UInt32(bigEndian: sin.sin_addr.s_addr)), port: UInt16(bigEndian: sin.sin_port))
            }
        case AF_INET6:
            return withUnsafeBytes(of: &ss) { raw -> STUNTransportAddress? in
                var sin6 = raw.load(as: sockaddr_in6.self)
                let b = withUnsafeBytes(of: &sin6.sin6_addr) { Array($0) }
                guard let ip = STUNIPAddress(bytes: b) else { return nil }
                return STUNTransportAddress(ip: ip, port: UInt16(bigEndian: sin6.sin6_port))
            }
        default:
            return nil
        }
    }

    /// Addresses of interfaces that are up (getifaddrs).
    public static func interfaceAddresses() -> [STUNIPAddress] {
        var head: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&head) == 0 else { return [] }
        defer { freeifaddrs(head) }
        var out: [STUNIPAddress] = []
        var p = head
        while let ifa = p {
            defer { p = ifa.pointee.ifa_next }
            guard ifa.pointee.ifa_flags & UInt32(IFF_UP) != 0, let sa = ifa.pointee.ifa_addr else { continue }
            let family = Int32(sa.pointee.sa_family)
            if family == AF_INET {
                let sin = UnsafeRawPointer(sa).load(as: sockaddr_in.self)
                out.append(STUNIPAddress(ipv4: UInt32(bigEndian: sin.sin_addr.s_addr)))
            } else if family == AF_INET6 {
                var sin6 = UnsafeRawPointer(sa).load(as: sockaddr_in6.self)
                let b = withUnsafeBytes(of: &sin6.sin6_addr) { Array($0) }
                if let ip = STUNIPAddress(bytes: b), !ip.isIPv4Mapped { out.append(ip) }
            }
        }
        var seen: Set<STUNIPAddress> = []
        return out.filter { seen.insert($0).inserted }
    }

    /// The source address the kernel would use to reach `remote` (a connected UDP socket sends
    /// nothing, but getsockname then reports the route's source).
    public static func routeSource(to remote: STUNIPAddress) -> STUNIPAddress? {
        let af = remote.isIPv4 ? AF_INET : AF_INET6
        #if canImport(Glibc)
        let fd = socket(af, Int32(SOCK_DGRAM.rawValue), 0)
        #else
        let fd = socket(af, SOCK_DGRAM, 0)
        #endif
        guard fd >= 0 else { return nil }
        defer { _ = Glibc.close(fd) }
        var (ss, len) = socketAddress(for: STUNTransportAddress(ip: remote, port: 9))
        let rc = withUnsafePointer(to: &ss) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, len) }
        }
        guard rc == 0 else { return nil }
        var local = sockaddr_storage()
        var llen = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let g = withUnsafeMutablePointer(to: &local) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &llen) }
        }
        guard g == 0 else { return nil }
        return transportAddress(local)?.ip
    }
}
