import Foundation
import Testing
@testable import ProgramOutput

/// rtmps:// certificate checking, against a loopback TLS server (Python's ssl) with made-up certificates.
///
/// The server completes the TLS handshake, then reports whether the client went on to send RTMP
/// (its first byte is the RTMP version, 3) or hung up. FFmpeg's client verifies the certificate after
/// the handshake, so "sent RTMP" means the certificate was accepted. Without `tls_verify` FFmpeg would
/// accept any certificate; with it, only one that chains to `ca_file` (or the system store) and names
/// the host.
@Suite("ProgramOutput rtmps verification", .serialized,
       .enabled(if: POTest.python != nil && POTest.openssl != nil, "python3 or openssl not installed"))
struct ProgramOutputTLSTests {
    static let server = """
        import os, socket, ssl, sys
        cert, key, portfile, resultfile = sys.argv[1:5]
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        srv.settimeout(20)
        with open(portfile + ".tmp", "w") as f:
            f.write(str(srv.getsockname()[1]))
        os.rename(portfile + ".tmp", portfile)
        result = "no-connection"
        try:
            conn, _ = srv.accept()
            conn.settimeout(10)
            try:
                tls = ctx.wrap_socket(conn, server_side=True)
                try:
                    data = tls.recv(1)
                    result = ("rtmp %02x" % data[0]) if data else "closed"
                except (ssl.SSLError, OSError) as e:
                    result = "closed " + type(e).__name__
                tls.close()
            except (ssl.SSLError, OSError) as e:
                result = "handshake-failed " + type(e).__name__
        except socket.timeout:
            pass
        with open(resultfile, "w") as f:
            f.write(result)
        """

    /// A self-signed certificate (its own CA) for `san`.
    static func certificate(_ dir: URL, _ name: String, san: String) throws -> (cert: String, key: String) {
        let cert = dir.appendingPathComponent("\(name).pem").path
        let key = dir.appendingPathComponent("\(name).key").path
        try POTest.run(POTest.openssl!, ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                                         "-nodes", "-keyout", key, "-out", cert, "-days", "2",
                                         "-subj", "/CN=shelcaster test", "-addext", "subjectAltName=\(san)"])
        return (cert, key)
    }

    /// Runs one server, points an rtmps sink at it, and returns the sink's error and what the server saw.
    static func attempt(_ dir: URL, serverCert: (cert: String, key: String), caFile: String?) throws
        -> (error: ProgramOutputError?, server: String)
    {
        let id = UUID().uuidString
        let portFile = dir.appendingPathComponent("port-\(id)").path
        let resultFile = dir.appendingPathComponent("result-\(id)").path
        let process = Process()
        process.executableURL = URL(fileURLWithPath: POTest.python!)
        process.arguments = ["-c", server, serverCert.cert, serverCert.key, portFile, resultFile]
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        defer {
            if process.isRunning { process.terminate() }
            process.waitUntilExit()
        }
        var deadline = Date().addingTimeInterval(10)
        while !FileManager.default.fileExists(atPath: portFile) && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        let port = try #require(Int((try? String(contentsOfFile: portFile, encoding: .utf8)) ?? ""))

        var sinkError: ProgramOutputError?
        do {
            let sink = try makeSink(.stream(url: "rtmps://127.0.0.1:\(port)/app/streamkey"),
                                    options: OutputOptions(caFile: caFile, ioTimeoutSeconds: 5))
            try sink.finish()
        } catch let error as ProgramOutputError {
            sinkError = error
        }
        deadline = Date().addingTimeInterval(15)
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        let seen = (try? String(contentsOfFile: resultFile, encoding: .utf8)) ?? "no result"
        return (sinkError, seen)
    }

    @Test("a certificate not in the trust store is refused; ca_file makes it trusted; a wrong host name is refused")
    func verification() throws {
        let dir = POTest.tempDir()
        defer { try? FileManager.default.removeItem(at: dir) }
        let good = try Self.certificate(dir, "good", san: "IP:127.0.0.1")
        let wrongName = try Self.certificate(dir, "wrong", san: "DNS:elsewhere.example")

        // System trust only: the self-signed certificate fails verification, no RTMP is sent.
        let untrusted = try Self.attempt(dir, serverCert: good, caFile: nil)
        #expect(untrusted.server.hasPrefix("closed") || untrusted.server.hasPrefix("handshake-failed"), "\(untrusted.server)")
        guard case .connectFailed = untrusted.error else { Issue.record("\(String(describing: untrusted.error))"); return }

        // ca_file reaches the TLS layer: now the client trusts it and starts the RTMP handshake (C0 = 3).
        let trusted = try Self.attempt(dir, serverCert: good, caFile: good.cert)
        #expect(trusted.server == "rtmp 03", "\(trusted.server)")
        // The server is not RTMP, so the sink still fails, after TLS.
        guard case .connectFailed = trusted.error else { Issue.record("\(String(describing: trusted.error))"); return }

        // Trusted chain but issued to another name: refused.
        let mismatch = try Self.attempt(dir, serverCert: wrongName, caFile: wrongName.cert)
        #expect(mismatch.server.hasPrefix("closed") || mismatch.server.hasPrefix("handshake-failed"), "\(mismatch.server)")
        guard case .connectFailed = mismatch.error else { Issue.record("\(String(describing: mismatch.error))"); return }
    }
}
