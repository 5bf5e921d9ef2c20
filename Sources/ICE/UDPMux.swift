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

/// Owns one UDP socket per address family, bound for our host candidates, read by a `ReceiveLoop`
/// that demultiplexes every datagram by its first byte (RFC 7983) before handing it on. The same
/// sockets carry STUN, DTLS and SRTP/SRTCP, so the peer sees one transport address per family.
///
/// With several local addresses of a family the socket is bound to the wildcard address and each
/// address becomes a host candidate with the socket's port; the kernel's route decides the source
/// address, so a pair's local candidate is taken to be the route's source (`routeSource`).
public final class UDPMux: @unchecked Sendable {
    /// `arrivalNs`: when the kernel received the datagram, CLOCK_MONOTONIC nanoseconds.
    public typealias DatagramHandler = @Sendable (_ kind: PacketKind, _ bytes: [UInt8], _ from: STUNTransportAddress,
                                                  _ arrivalNs: UInt64) -> Void
    /// Called on the loop's thread after each round that read this mux's sockets and whenever the
    /// last returned time (ICEClock) is reached; returns the next time it wants a call.
    public typealias TimerHandler = @Sendable (_ now: Double) -> Double?

    /// Host addresses with the port of their family's socket.
    public let localAddresses: [STUNTransportAddress]
    private let fd4: Int32
    private let fd6: Int32
    private let loop: ReceiveLoop
    private let lock = NSLock()
    private var registration: ReceiveLoop.Registration?
    private var closed = false

    public init(interfaces: ICEInterfaces, ipv4: Bool = true, ipv6: Bool = true, port: UInt16 = 0,
                loop: ReceiveLoop = .shared) throws(ICEError) {
        self.loop = loop
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

    /// Hands the sockets to the loop. Handlers run on its thread, one datagram at a time.
    public func start(onDatagram: @escaping DatagramHandler, onTimer: @escaping TimerHandler) {
        lock.lock()
        guard registration == nil, !closed else { lock.unlock(); return }
        let (s4, s6) = (fd4, fd6)
        let r = ReceiveLoop.Registration(fds: [fd4, fd6].filter { $0 >= 0 }, onDatagram: onDatagram, onTimer: onTimer,
                                         closeSockets: { UDPMux.closeSockets(s4, s6) })
        registration = r
        lock.unlock()
        loop.register(r)
    }

    /// From now on, while the loop is driven, these sockets are read by its `readNow` caller: for a
    /// connection that carries media, once its handshakes are done.
    public func deliverInBatches() {
        lock.lock()
        let r = registration
        lock.unlock()
        if let r { loop.setBatched(r) }
    }

    /// Calls the timer handler soon: for a deadline moved by another thread than the loop's.
    public func timerChanged() {
        lock.lock()
        let r = registration
        lock.unlock()
        if let r { loop.poke(r) }
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

    /// Stops the handlers (waiting for a running one unless called from it) and closes the
    /// sockets. Idempotent.
    public func close() {
        lock.lock()
        if closed { lock.unlock(); return }
        closed = true
        let r = registration
        lock.unlock()
        if let r { loop.unregister(r) } else { UDPMux.closeSockets(fd4, fd6) }
    }

    private static func closeSockets(_ a: Int32, _ b: Int32) {
        if a >= 0 { _ = Glibc.close(a) }
        if b >= 0 { _ = Glibc.close(b) }
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
        ReceiveLoop.enableTimestamps(fd)
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
