/// Writes UDP datagrams as a classic pcap stream (little-endian, nanosecond timestamps, raw IP link
/// type 101), e.g. to record decrypted RTP so that `CaptureFile` can replay it.
///
/// Bytes accumulate in `bytes`; a streaming writer calls `drain()` after each append (or batch) and
/// writes the result to its file. The file header is the first thing drained.
public struct PcapWriter: Sendable {
    public private(set) var bytes: [UInt8] = []

    /// Largest UDP payload that fits one IPv4 datagram (65535 - 20 - 8); IPv6 allows 65535 - 8.
    public static let maxIPv4Payload = 65_507

    public init(snaplen: UInt32 = 262_144) {
        put32(0xA1B2_3C4D)  // nanosecond magic
        put16(2); put16(4)
        put32(0)  // thiszone
        put32(0)  // sigfigs
        put32(snaplen)
        put32(LinkType.raw)
    }

    /// Returns the buffered bytes and empties the buffer.
    public mutating func drain() -> [UInt8] {
        defer { bytes.removeAll(keepingCapacity: true) }
        return bytes
    }

    /// Appends one record. When one endpoint is IPv6 and the other IPv4, the IPv4 address is
    /// written IPv4-mapped (::ffff:a.b.c.d) so the pair still forms one packet.
    public mutating func append(_ datagram: UDPDatagram) throws(CaptureError) {
        let useV6 = !(datagram.source.address.isIPv4 && datagram.destination.address.isIPv4)
        let limit = useV6 ? 65_535 - 8 : Self.maxIPv4Payload
        guard datagram.payload.count <= limit else {
            throw CaptureError(.unwritable, file: "pcap writer",
                               "UDP payload of \(datagram.payload.count) bytes exceeds \(limit)")
        }
        let udpLength = 8 + datagram.payload.count
        let frameLength = (useV6 ? 40 : 20) + udpLength
        let ts = datagram.timestampNs < 0 ? 0 : datagram.timestampNs
        put32(UInt32(truncatingIfNeeded: ts / 1_000_000_000))
        put32(UInt32(truncatingIfNeeded: ts % 1_000_000_000))
        put32(UInt32(frameLength))
        put32(UInt32(frameLength))

        let src = Self.addressBytes(datagram.source.address, v6: useV6)
        let dst = Self.addressBytes(datagram.destination.address, v6: useV6)
        if useV6 {
            bytes.append(contentsOf: [0x60, 0, 0, 0])
            bytes.append(UInt8(udpLength >> 8)); bytes.append(UInt8(udpLength & 0xFF))
            bytes.append(17); bytes.append(64)
            bytes.append(contentsOf: src); bytes.append(contentsOf: dst)
        } else {
            let start = bytes.count
            bytes.append(contentsOf: [0x45, 0])
            bytes.append(UInt8((20 + udpLength) >> 8)); bytes.append(UInt8((20 + udpLength) & 0xFF))
            bytes.append(contentsOf: [0, 0, 0x40, 0, 64, 17, 0, 0])  // id 0, don't fragment, TTL 64, UDP
            bytes.append(contentsOf: src); bytes.append(contentsOf: dst)
            let sum = Self.checksum(bytes[start..<(start + 20)], initial: 0)
            bytes[start + 10] = UInt8(sum >> 8); bytes[start + 11] = UInt8(sum & 0xFF)
        }
        let udpStart = bytes.count
        put16be(datagram.source.port); put16be(datagram.destination.port)
        put16be(UInt16(udpLength)); put16be(0)
        bytes.append(contentsOf: datagram.payload)
        // The UDP checksum covers a pseudo-header; mandatory for IPv6, written for IPv4 too.
        var pseudo: UInt32 = 17 &+ UInt32(udpLength)
        pseudo = Self.sum(src[...], pseudo)
        pseudo = Self.sum(dst[...], pseudo)
        var c = Self.checksum(bytes[udpStart...], initial: pseudo)
        if c == 0 { c = 0xFFFF }
        bytes[udpStart + 6] = UInt8(c >> 8); bytes[udpStart + 7] = UInt8(c & 0xFF)
    }

    private static func addressBytes(_ a: IPAddress, v6: Bool) -> [UInt8] {
        if v6, case .v4 = a { return [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF] + a.bytes }
        return a.bytes
    }

    private static func sum(_ data: ArraySlice<UInt8>, _ initial: UInt32) -> UInt32 {
        var s = initial
        var i = data.startIndex
        while i + 1 < data.endIndex {
            s &+= UInt32(data[i]) << 8 | UInt32(data[i + 1])
            i += 2
        }
        if i < data.endIndex { s &+= UInt32(data[i]) << 8 }
        // Fold often enough that a 64 KiB datagram cannot overflow 32 bits.
        while s > 0xFFFF { s = (s & 0xFFFF) &+ (s >> 16) }
        return s
    }

    private static func checksum(_ data: ArraySlice<UInt8>, initial: UInt32) -> UInt16 {
        ~UInt16(truncatingIfNeeded: sum(data, initial))
    }

    private mutating func put16(_ v: UInt16) {
        bytes.append(UInt8(v & 0xFF)); bytes.append(UInt8(v >> 8))
    }

    private mutating func put32(_ v: UInt32) {
        for shift in stride(from: 0, to: 32, by: 8) { bytes.append(UInt8(truncatingIfNeeded: v >> UInt32(shift))) }
    }

    private mutating func put16be(_ v: UInt16) {
        bytes.append(UInt8(v >> 8)); bytes.append(UInt8(v & 0xFF))
    }
}
