import COpenSSL

/// Drains OpenSSL's thread-local ERR queue into one readable line.
func openSSLErrorText() -> String {
    var parts: [String] = []
    var buffer = [CChar](repeating: 0, count: 256)
    // Bounded: the queue holds at most 16 entries, but never trust that blindly.
    for _ in 0..<32 {
        let code = ERR_get_error()
        if code == 0 { break }
        buffer.withUnsafeMutableBufferPointer { ERR_error_string_n(code, $0.baseAddress, $0.count) }
        parts.append(cStringPrefix(buffer))
    }
    return parts.isEmpty ? "no OpenSSL error queued" : parts.joined(separator: "; ")
}

/// Text up to the first NUL of a C char buffer.
func cStringPrefix(_ buffer: [CChar]) -> String {
    let bytes = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
    return String(decoding: bytes, as: UTF8.self)
}

/// The EVP digest for an SDP fingerprint algorithm.
func evpDigest(_ algorithm: DTLSHashAlgorithm) -> OpaquePointer? {
    switch algorithm {
    case .sha1: return EVP_sha1()
    case .sha224: return EVP_sha224()
    case .sha256: return EVP_sha256()
    case .sha384: return EVP_sha384()
    case .sha512: return EVP_sha512()
    }
}

/// Digest of a certificate's DER encoding (what SDP fingerprints are computed over).
func certificateFingerprint(_ x509: OpaquePointer, _ algorithm: DTLSHashAlgorithm) -> DTLSFingerprint? {
    guard let md = evpDigest(algorithm) else { return nil }
    var digest = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
    var length: UInt32 = 0
    let ok = digest.withUnsafeMutableBufferPointer { X509_digest(x509, md, $0.baseAddress, &length) }
    guard ok == 1, Int(length) == algorithm.digestLength else { return nil }
    return try? DTLSFingerprint(algorithm: algorithm, bytes: Array(digest.prefix(Int(length))))
}
