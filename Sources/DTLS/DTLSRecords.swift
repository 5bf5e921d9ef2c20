/// DTLS record framing (RFC 6347 §4.1): type(1) version(2) epoch(2) sequence(6) length(2).
enum DTLSRecords {
    static let headerLength = 13
    /// 2^14 plaintext plus the allowed 2048 bytes of expansion.
    static let maxRecordBody = 16_384 + 2_048

    /// Length of the leading run of well-formed records in `datagram`, and why the scan stopped
    /// early (nil when every byte belongs to a well-formed record).
    static func validPrefix(_ datagram: UnsafeBufferPointer<UInt8>) -> (length: Int, problem: String?) {
        var offset = 0
        let count = datagram.count
        while offset < count {
            let remaining = count - offset
            guard remaining >= headerLength else {
                return (offset, "record header truncated: \(remaining) of \(headerLength) bytes")
            }
            let type = datagram[offset]
            // change_cipher_spec, alert, handshake, application_data; nothing else in DTLS 1.2.
            guard (20...23).contains(type) else {
                return (offset, "record content type \(type) is not DTLS 1.2")
            }
            let major = datagram[offset + 1], minor = datagram[offset + 2]
            // 0xFEFF is DTLS 1.0 (allowed in a ClientHello record), 0xFEFD is DTLS 1.2.
            guard major == 0xFE, minor == 0xFF || minor == 0xFD else {
                return (offset, "record version \(major).\(minor) is not DTLS")
            }
            let bodyLength = Int(datagram[offset + 11]) << 8 | Int(datagram[offset + 12])
            guard bodyLength <= maxRecordBody else {
                return (offset, "record length \(bodyLength) exceeds \(maxRecordBody)")
            }
            guard bodyLength <= remaining - headerLength else {
                return (offset, "record length \(bodyLength) overruns the datagram (\(remaining - headerLength) bytes left)")
            }
            offset += headerLength + bodyLength
        }
        return (offset, nil)
    }

    /// Packs the records OpenSSL wrote into datagrams of at most `mtu` bytes, record boundaries
    /// kept (a DTLS record never spans datagrams). OpenSSL already sizes each record to the MTU.
    static func packIntoDatagrams(_ stream: [UInt8], mtu: Int, into out: inout [[UInt8]]) {
        var offset = 0
        var current: [UInt8] = []
        while offset < stream.count {
            var end = stream.count
            if stream.count - offset >= headerLength {
                let bodyLength = Int(stream[offset + 11]) << 8 | Int(stream[offset + 12])
                end = min(stream.count, offset + headerLength + bodyLength)
            }
            let recordLength = end - offset
            if !current.isEmpty && current.count + recordLength > mtu {
                out.append(current)
                current = []
            }
            current.append(contentsOf: stream[offset..<end])
            offset = end
        }
        if !current.isEmpty { out.append(current) }
    }
}
