#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads UDP datagrams out of classic pcap and pcapng files.
public enum CaptureFile {
    /// Reads the whole file into memory once and parses it.
    public static func read(path: String) throws(CaptureError) -> CaptureContents {
        try parse(readBytes(path: path), name: path)
    }

    /// Parses capture bytes; `name` only labels errors.
    public static func parse(_ bytes: [UInt8], name: String) throws(CaptureError) -> CaptureContents {
        guard bytes.count >= 4 else {
            throw CaptureError(bytes.isEmpty ? .notACapture : .truncated, file: name,
                               bytes.isEmpty ? "file is empty, not a pcap or pcapng capture"
                                             : "only \(bytes.count) bytes, too short for a capture file header")
        }
        let magicBE = bytes.u32be(0)
        switch magicBE {
        case 0x0A0D_0D0A:
            var reader = PcapngReader(bytes: bytes, name: name)
            return try reader.run()
        case 0xA1B2_C3D4, 0xA1B2_3C4D, 0xA1B2_CD34, 0xD4C3_B2A1, 0x4D3C_B2A1, 0x34CD_B2A1:
            return try parsePcap(bytes, name: name)
        default:
            throw CaptureError(.notACapture, file: name, offset: 0,
                               "not a pcap or pcapng file: bad magic number \(hex(magicBE)) "
                               + "(expected a1b2c3d4 or a1b23c4d for pcap, 0a0d0d0a for pcapng)")
        }
    }

    // MARK: classic pcap

    private static func parsePcap(_ b: [UInt8], name: String) throws(CaptureError) -> CaptureContents {
        let order: ByteOrder
        let magic: UInt32
        switch b.u32be(0) {
        case 0xA1B2_C3D4, 0xA1B2_3C4D, 0xA1B2_CD34: order = .big; magic = b.u32be(0)
        default: order = .little; magic = b.u32(0, .little)
        }
        let nanosecond = magic == 0xA1B2_3C4D
        // Kuznetzov's patched libpcap adds ifindex, protocol and packet type to each record header.
        let recordHeaderSize = magic == 0xA1B2_CD34 ? 24 : 16
        guard b.count >= 24 else {
            throw CaptureError(.truncated, file: name, offset: 0,
                               "pcap file header cut off: \(b.count) of 24 bytes")
        }
        let major = b.u16(4, order), minor = b.u16(6, order)
        guard major == 2 else {
            throw CaptureError(.corrupt, file: name, offset: 4, "unsupported pcap version \(major).\(minor) (expected 2.x)")
        }
        let snaplen = Int(b.u32(16, order))
        // The upper bits of the link type field carry FCS information, not the type.
        let linkType = b.u32(20, order) & 0x03FF_FFFF
        // libpcap's own ceiling for a record; larger values mean a corrupt length, not a big packet.
        let maxRecord = max(snaplen, 262_144)

        var sink = DatagramSink(name: name)
        sink.noteLinkType(linkType)
        var pos = 24
        var record = 0
        let fractionScale: Int64 = nanosecond ? 1 : 1000
        while pos < b.count {
            record += 1
            let remaining = b.count - pos
            guard remaining >= recordHeaderSize else {
                throw CaptureError(.truncated, file: name, record: record, offset: pos,
                                   "record header cut off: \(remaining) of \(recordHeaderSize) bytes (truncated file)")
            }
            let seconds = Int64(b.u32(pos, order))
            let fraction = Int64(b.u32(pos + 4, order))
            let included = Int(b.u32(pos + 8, order))
            let original = Int(b.u32(pos + 12, order))
            guard included <= maxRecord else {
                throw CaptureError(.corrupt, file: name, record: record, offset: pos,
                                   "record length \(included) exceeds the snapshot length \(snaplen) (corrupt record header)")
            }
            let body = pos + recordHeaderSize
            guard included <= b.count - body else {
                throw CaptureError(.truncated, file: name, record: record, offset: pos,
                                   "record data cut off: needs \(included) bytes, only \(b.count - body) remain (truncated file)")
            }
            // Honour the file's snapshot length: bytes beyond it are not part of the packet.
            let kept = snaplen > 0 ? min(included, snaplen) : included
            let ts = seconds &* 1_000_000_000 &+ fraction &* fractionScale
            sink.frame(b, start: body, end: body + kept, cut: kept < original, linkType: linkType, timestampNs: ts)
            pos = body + included
        }
        return try sink.finish(format: .pcap(nanosecond: nanosecond, bigEndian: order == .big))
    }

    // MARK: file reading

    private static func readBytes(path: String) throws(CaptureError) -> [UInt8] {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            throw CaptureError(.unreadable, file: path, "cannot open: \(errnoText())")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw CaptureError(.unreadable, file: path, "cannot stat: \(errnoText())")
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw CaptureError(.unreadable, file: path, "not a regular file")
        }
        let size = Int(st.st_size)
        var failure: Int32 = 0
        // One allocation of the file's size; the kernel reads straight into it.
        let out = [UInt8](unsafeUninitializedCapacity: size) { buffer, initialized in
            initialized = 0
            guard let base = buffer.baseAddress else { return }
            while initialized < size {
                let n = systemRead(fd, base + initialized, size - initialized)
                if n < 0 {
                    if errno == EINTR { continue }
                    failure = errno
                    return
                }
                if n == 0 { return }  // the file shrank since fstat: keep what is there
                initialized += n
            }
        }
        if failure != 0 {
            throw CaptureError(.unreadable, file: path, "read failed: \(String(cString: strerror(failure)))")
        }
        return out
    }

    private static func errnoText() -> String {
        String(cString: strerror(errno))
    }
}

/// `read(2)`, named apart from `CaptureFile.read(path:)`.
private func systemRead(_ fd: Int32, _ buf: UnsafeMutablePointer<UInt8>, _ count: Int) -> Int {
    read(fd, buf, count)
}

func hex(_ v: UInt32) -> String {
    let s = String(v, radix: 16)
    return String(repeating: "0", count: max(0, 8 - s.count)) + s
}

/// Collects decoded datagrams and counts everything else.
struct DatagramSink {
    let name: String
    var datagrams: [UDPDatagram] = []
    var stats = CaptureStats()
    var linkTypes: [UInt32] = []

    init(name: String) { self.name = name }

    mutating func noteLinkType(_ type: UInt32) {
        if !linkTypes.contains(type) { linkTypes.append(type) }
    }

    mutating func frame(_ b: [UInt8], start: Int, end: Int, cut: Bool, linkType: UInt32, timestampNs: Int64) {
        stats.packets += 1
        switch PacketDecoder.decode(b, start: start, end: end, cut: cut, linkType: linkType) {
        case .udp(let source, let destination, let payload):
            stats.udp += 1
            datagrams.append(UDPDatagram(timestampNs: timestampNs, source: source, destination: destination,
                                         payload: Array(b[payload])))
        case .nonUDP: stats.nonUDP += 1
        case .fragment: stats.fragmentsSkipped += 1
        case .malformed: stats.malformed += 1
        case .snapTruncated: stats.snapTruncated += 1
        case .unsupportedLinkType: stats.unsupportedLinkType += 1
        }
    }

    func finish(format: CaptureFormat) throws(CaptureError) -> CaptureContents {
        let allUnsupported = !linkTypes.isEmpty && linkTypes.allSatisfy { !LinkType.supported.contains($0) }
        if datagrams.isEmpty && (stats.unsupportedLinkType > 0 || allUnsupported) {
            let unsupported = linkTypes.filter { !LinkType.supported.contains($0) }
            let names = unsupported.map(LinkType.name).joined(separator: ", ")
            throw CaptureError(.unsupportedLinkType, file: name,
                               "no usable packets: link type \(names) is not supported "
                               + "(supported: Ethernet, Linux cooked v1/v2, BSD loopback NULL/LOOP, raw IP)")
        }
        return CaptureContents(datagrams: datagrams, stats: stats, format: format, linkTypes: linkTypes)
    }
}
