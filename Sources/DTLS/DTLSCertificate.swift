import COpenSSL

/// A fresh ECDSA P-256 key with a self-signed X.509 certificate, as WebRTC uses: the peer trusts
/// it only through the fingerprint we put in our SDP.
///
/// Immutable after creation; OpenSSL's key and certificate objects are safe to read from several
/// threads, hence `@unchecked Sendable`.
public final class DTLSCertificate: @unchecked Sendable {
    /// EVP_PKEY*
    let privateKey: OpaquePointer
    /// X509*
    let x509: OpaquePointer
    /// SHA-256 fingerprint, the one we announce in SDP.
    public let fingerprint: DTLSFingerprint

    private init(privateKey: OpaquePointer, x509: OpaquePointer, fingerprint: DTLSFingerprint) {
        self.privateKey = privateKey
        self.x509 = x509
        self.fingerprint = fingerprint
    }

    deinit {
        X509_free(x509)
        EVP_PKEY_free(privateKey)
    }

    /// "sha-256 AB:CD:..." for `a=fingerprint:`.
    public var sdpFingerprint: String { fingerprint.sdpAttributeValue }

    /// The fingerprint under another hash (an answer may use sha-384 etc. for its own).
    public func fingerprint(_ algorithm: DTLSHashAlgorithm) throws(DTLSError) -> DTLSFingerprint {
        guard let value = certificateFingerprint(x509, algorithm) else {
            throw .openSSL(operation: "X509_digest(\(algorithm.rawValue))", detail: openSSLErrorText())
        }
        return value
    }

    /// DER encoding of the certificate.
    public var derEncoded: [UInt8] {
        let length = i2d_X509(x509, nil)
        guard length > 0 else { return [] }
        var der = [UInt8](repeating: 0, count: Int(length))
        let written = der.withUnsafeMutableBufferPointer { buffer -> Int32 in
            var cursor = buffer.baseAddress
            return i2d_X509(x509, &cursor)
        }
        return written == length ? der : []
    }

    /// Generates a new key and certificate: random 63-bit serial, valid from an hour ago (peer
    /// clock skew) for `validityDays`, subject = issuer = CN=`commonName`, signed ECDSA-SHA256.
    public static func generate(commonName: String = "shelcaster", validityDays: Int = 30) throws(DTLSError) -> DTLSCertificate {
        guard validityDays > 0, validityDays <= 3650 else {
            throw .invalidConfiguration("validityDays must be 1...3650, got \(validityDays)")
        }
        ERR_clear_error()
        guard let key = cdtls_generate_p256_key() else {
            throw .openSSL(operation: "EVP_EC_gen(P-256)", detail: openSSLErrorText())
        }
        guard let cert = X509_new() else {
            EVP_PKEY_free(key)
            throw .openSSL(operation: "X509_new", detail: openSSLErrorText())
        }
        func fail(_ operation: String) -> DTLSError {
            let error = DTLSError.openSSL(operation: operation, detail: openSSLErrorText())
            X509_free(cert)
            EVP_PKEY_free(key)
            return error
        }

        // Version 3 is encoded as 2.
        guard X509_set_version(cert, 2) == 1 else { throw fail("X509_set_version") }

        guard let serial = BN_new() else { throw fail("BN_new") }
        let serialOK = BN_rand(serial, 63, -1, 0) == 1 && BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(cert)) != nil
        BN_free(serial)
        guard serialOK else { throw fail("serial number") }

        guard X509_gmtime_adj(X509_getm_notBefore(cert), -3600) != nil,
              X509_gmtime_adj(X509_getm_notAfter(cert), validityDays * 86_400) != nil
        else { throw fail("X509_gmtime_adj") }

        guard X509_set_pubkey(cert, key) == 1 else { throw fail("X509_set_pubkey") }

        guard let name = X509_get_subject_name(cert) else { throw fail("X509_get_subject_name") }
        let cn = Array(commonName.utf8)
        let added = cn.withUnsafeBufferPointer {
            X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, $0.baseAddress, Int32($0.count), -1, 0)
        }
        guard added == 1 else { throw fail("X509_NAME_add_entry_by_txt(CN)") }
        guard X509_set_issuer_name(cert, name) == 1 else { throw fail("X509_set_issuer_name") }

        guard X509_sign(cert, key, EVP_sha256()) > 0 else { throw fail("X509_sign") }

        guard let fingerprint = certificateFingerprint(cert, .sha256) else { throw fail("X509_digest(sha-256)") }
        return DTLSCertificate(privateKey: key, x509: cert, fingerprint: fingerprint)
    }
}
