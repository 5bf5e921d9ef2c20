import Foundation
import Testing
import HTTPClient

@Suite struct HTTPClientTests {
    @Test func getSendsHeadersAndReadsResponse() throws {
        let server = try HTTPStubServer { req, _ in
            HTTPStubResponse.text(200, "hello \(req.path)", headers: [("X-Answer", "forty-two"), ("x-answer", "again")])
        }
        defer { server.stop() }
        var request = HTTPRequest(url: server.baseURL + "/a/b?x=1&y=%20z")
        request.headers["X-Custom"] = "v1"
        request.headers["Empty-One"] = ""
        let r = try HTTPClient.shared.send(request)
        #expect(r.status == 200)
        #expect(r.bodyText == "hello /a/b")
        #expect(r.headers["x-ANSWER"] == "forty-two")
        #expect(r.headers.values(for: "X-Answer") == ["forty-two", "again"])
        #expect(r.headers["content-length"] == "10")
        let seen = try #require(server.requests.first)
        #expect(seen.method == "GET")
        #expect(seen.target == "/a/b?x=1&y=%20z")
        #expect(seen.headers["x-custom"] == "v1")
        #expect(seen.headers.contains("Empty-One"))
        #expect(seen.headers["Empty-One"] == "")
        #expect(seen.headers["Host"] == "127.0.0.1:\(server.port)")
        #expect(seen.headers["Expect"] == nil)
    }

    @Test func postPutDeleteCarryMethodAndBody() throws {
        let server = try HTTPStubServer { req, _ in HTTPStubResponse.text(201, "\(req.method):\(req.bodyText)") }
        defer { server.stop() }
        let big = String(repeating: "x", count: 5000)   // over curl's 1 KiB "Expect: 100-continue" threshold
        for (method, body) in [("POST", "{\"a\":1}"), ("PUT", big), ("DELETE", ""), ("POST", "")] {
            let r = try HTTPClient.shared.send(HTTPRequest(method: method, url: server.baseURL + "/m", body: Array(body.utf8)))
            #expect(r.status == 201)
            #expect(r.bodyText == "\(method):\(body)")
        }
        #expect(server.requests.map(\.method) == ["POST", "PUT", "DELETE", "POST"])
        #expect(server.requests[1].headers["Content-Length"] == "5000")
        #expect(server.requests.allSatisfy { $0.headers["Expect"] == nil }, "no 100-continue round trip")
    }

    @Test func redirectsAreReturnedUnlessAsked() throws {
        let server = try HTTPStubServer { req, _ in
            req.path == "/start"
                ? HTTPStubResponse.text(307, "moved", headers: [("Location", "/final?token=t")])
                : HTTPStubResponse.text(200, "final")
        }
        defer { server.stop() }
        let r = try HTTPClient.shared.send(HTTPRequest(url: server.baseURL + "/start"))
        #expect(r.status == 307)
        #expect(r.headers["location"] == "/final?token=t")
        #expect(server.hits == 1)
        let followed = try HTTPClient.shared.send(HTTPRequest(url: server.baseURL + "/start", followRedirects: true))
        #expect(followed.status == 200)
        #expect(followed.bodyText == "final")
        #expect(followed.headers["Location"] == nil, "headers are those of the final response")
        #expect(server.hits == 3)
    }

    @Test func connectionRefusedIsTypedAndHidesTheQuery() {
        let port = HTTPTestKit.closedPort()
        let url = "http://127.0.0.1:\(port)/path?X-Amz-Security-Token=QUERYSECRET123456"
        do {
            _ = try HTTPClient.shared.send(HTTPRequest(url: url, timeout: 5))
            Issue.record("expected a failure")
        } catch {
            #expect(error.kind == .connectionRefused)
            #expect(error.isTransient)
            #expect(error.target == "http://127.0.0.1:\(port)/path")
            #expect(!error.description.contains("QUERYSECRET"))
            #expect(!error.description.contains("X-Amz-Security-Token"))
            #expect(error.description.contains("connection refused"))
        }
    }

    @Test func totalTimeoutIsEnforced() throws {
        let server = try HTTPStubServer { _, _ in HTTPStubResponse(status: 200, body: Array("late".utf8), delay: 2) }
        defer { server.stop() }
        let start = Date()
        do {
            _ = try HTTPClient.shared.send(HTTPRequest(url: server.baseURL + "/slow", timeout: 0.3))
            Issue.record("expected a timeout")
        } catch {
            #expect(error.kind == .timeout)
            #expect(error.isTransient)
        }
        #expect(Date().timeIntervalSince(start) < 1.9, "the stub answers only after 2 s")
    }

    @Test func tlsAgainstAPlainServerIsATLSError() throws {
        let server = try HTTPStubServer { _, _ in HTTPStubResponse.text(200, "plain") }
        defer { server.stop() }
        do {
            _ = try HTTPClient.shared.send(HTTPRequest(url: "https://127.0.0.1:\(server.port)/x", timeout: 5))
            Issue.record("expected a TLS failure")
        } catch {
            #expect(error.kind == .tlsHandshake, "\(error)")
        }
    }

    @Test func missingCAFileIsAVerificationError() throws {
        let server = try HTTPStubServer { _, _ in HTTPStubResponse.text(200, "plain") }
        defer { server.stop() }
        let client = HTTPClient(caFile: "/nonexistent/ca-bundle.pem")
        do {
            _ = try client.send(HTTPRequest(url: "https://127.0.0.1:\(server.port)/x", timeout: 5))
            Issue.record("expected a TLS failure")
        } catch {
            #expect(error.kind == .tlsVerification, "\(error)")
            #expect(!error.isTransient)
        }
    }

    @Test func downloadWritesFileAtomicallyAndEnforcesTheCap() throws {
        let payload = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
        let server = try HTTPStubServer { req, _ in
            req.path == "/missing"
                ? HTTPStubResponse.text(404, "<Error><Code>NoSuchKey</Code></Error>")
                : req.path == "/empty" ? HTTPStubResponse(status: 200) : HTTPStubResponse(status: 200, body: payload)
        }
        defer { server.stop() }
        let dir = try HTTPTestKit.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }

        let file = dir.appendingPathComponent("obj.bin").path
        let r = try HTTPClient.shared.download(HTTPRequest(url: server.baseURL + "/obj"), toFile: file, maxBytes: 1 << 20)
        #expect(r.status == 200)
        #expect(r.downloadedBytes == payload.count)
        #expect(r.body.isEmpty)
        #expect(try [UInt8](Data(contentsOf: URL(fileURLWithPath: file))) == payload)
        #expect(!FileManager.default.fileExists(atPath: file + ".part"))

        let capped = dir.appendingPathComponent("capped.bin").path
        do {
            _ = try HTTPClient.shared.download(HTTPRequest(url: server.baseURL + "/obj"), toFile: capped, maxBytes: 100_000)
            Issue.record("expected responseTooLarge")
        } catch {
            #expect(error.kind == .responseTooLarge)
        }
        #expect(!FileManager.default.fileExists(atPath: capped))
        #expect(!FileManager.default.fileExists(atPath: capped + ".part"))

        let missing = dir.appendingPathComponent("missing.bin").path
        let r404 = try HTTPClient.shared.download(HTTPRequest(url: server.baseURL + "/missing"), toFile: missing, maxBytes: 1000)
        #expect(r404.status == 404)
        #expect(r404.bodyText.contains("NoSuchKey"))
        #expect(r404.downloadedBytes == nil)
        #expect(!FileManager.default.fileExists(atPath: missing))

        let empty = dir.appendingPathComponent("empty.bin").path
        let r0 = try HTTPClient.shared.download(HTTPRequest(url: server.baseURL + "/empty"), toFile: empty, maxBytes: 1000)
        #expect(r0.downloadedBytes == 0)
        #expect(FileManager.default.fileExists(atPath: empty))
    }

    @Test func inMemoryBodyCap() throws {
        let server = try HTTPStubServer { _, _ in HTTPStubResponse(status: 200, body: [UInt8](repeating: 65, count: 10_000)) }
        defer { server.stop() }
        do {
            _ = try HTTPClient.shared.send(HTTPRequest(url: server.baseURL + "/", maxResponseBytes: 4096))
            Issue.record("expected responseTooLarge")
        } catch {
            #expect(error.kind == .responseTooLarge)
            #expect(!error.isTransient)
        }
        let ok = try HTTPClient.shared.send(HTTPRequest(url: server.baseURL + "/", maxResponseBytes: 10_000))
        #expect(ok.body.count == 10_000)
    }

    @Test func invalidRequestsAreRejectedBeforeSending() throws {
        let server = try HTTPStubServer { _, _ in HTTPStubResponse.text(200, "ok") }
        defer { server.stop() }
        for url in ["not a url", "ftp://127.0.0.1/x", "file:///etc/passwd", "http://:80/"] {
            do {
                _ = try HTTPClient.shared.send(HTTPRequest(url: url))
                Issue.record("accepted \(url)")
            } catch {
                #expect(error.kind == .invalidRequest, "\(url): \(error)")
            }
        }
        var injected = HTTPRequest(url: server.baseURL + "/")
        injected.headers["X-Bad"] = "a\r\nX-Injected: 1"
        do {
            _ = try HTTPClient.shared.send(injected)
            Issue.record("accepted a header with CR/LF")
        } catch {
            #expect(error.kind == .invalidRequest)
        }
        #expect(server.hits == 0)
    }

    @Test func concurrentCallsShareTheClientSafely() throws {
        let server = try HTTPStubServer { req, _ in HTTPStubResponse.text(200, req.path) }
        defer { server.stop() }
        let failures = AWSLockedCounter()
        DispatchQueue.concurrentPerform(iterations: 24) { i in
            do {
                let r = try HTTPClient.shared.send(HTTPRequest(url: server.baseURL + "/n\(i)", timeout: 10))
                if r.bodyText != "/n\(i)" { failures.increment() }
            } catch {
                failures.increment()
            }
        }
        #expect(failures.value == 0)
        #expect(server.hits == 24)
    }

    @Test func curlCodesMapToKinds() {
        #expect(HTTPError.kind(forCurlCode: 6) == .dns)
        #expect(HTTPError.kind(forCurlCode: 5) == .dns)
        #expect(HTTPError.kind(forCurlCode: 7, osErrno: Int(ECONNREFUSED)) == .connectionRefused)
        #expect(HTTPError.kind(forCurlCode: 7, osErrno: Int(EHOSTUNREACH)) == .connectFailed)
        #expect(HTTPError.kind(forCurlCode: 28) == .timeout)
        #expect(HTTPError.kind(forCurlCode: 35) == .tlsHandshake)
        #expect(HTTPError.kind(forCurlCode: 60) == .tlsVerification)
        #expect(HTTPError.kind(forCurlCode: 77) == .tlsVerification)
        #expect(HTTPError.kind(forCurlCode: 56) == .connectionLost)
        #expect(HTTPError.kind(forCurlCode: 52) == .connectionLost)
        #expect(HTTPError.kind(forCurlCode: 3) == .invalidRequest)
        #expect(HTTPError(kind: .dns, target: "x", detail: "").isTransient)
        #expect(!HTTPError(kind: .tlsVerification, target: "x", detail: "").isTransient)
    }

    @Test func urlPartsAreSplitWithoutNormalising() throws {
        let u = try #require(HTTPURL("HTTPS://user:pw@Example.COM:8443/a%2Fb/./c?x=1&y=2#frag"))
        #expect(u.scheme == "https")
        #expect(u.host == "example.com")
        #expect(u.port == 8443)
        #expect(u.path == "/a%2Fb/./c")
        #expect(u.query == "x=1&y=2")
        #expect(u.hostHeader == "example.com:8443")
        #expect(u.redacted == "https://example.com:8443/a%2Fb/./c")
        let d = try #require(HTTPURL("https://h.example:443"))
        #expect(d.path == "/")
        #expect(d.query == nil)
        #expect(d.hostHeader == "h.example")
        let v6 = try #require(HTTPURL("http://[::1]:9000/p?"))
        #expect(v6.host == "[::1]")
        #expect(v6.port == 9000)
        #expect(v6.query == "")
        #expect(HTTPURL("http://host:99999/") == nil)
        #expect(HTTPURL("http://host:x/") == nil)
        #expect(HTTPURL("mailto:x@y") == nil)
    }

    @Test func headersLookupIsCaseInsensitiveAndOrdered() {
        var h: HTTPHeaders = ["Content-Type": "a", "X-One": "1"]
        h.add("x-one", "2")
        #expect(h.values(for: "X-ONE") == ["1", "2"])
        h["X-One"] = "3"
        #expect(h.values(for: "x-one") == ["3"])
        h["content-type"] = nil
        #expect(!h.contains("Content-Type"))
        #expect(h.entries.map(\.name) == ["X-One"])
    }

    @Test func secretsAreMaskedEverywhere() {
        let secret = SecretString("stage-token-\(UUID().uuidString)")
        #expect("\(secret)" == Secrets.mask)
        #expect(String(reflecting: secret) == Secrets.mask)
        var dumped = ""
        dump(secret, to: &dumped)
        #expect(!dumped.contains(secret.revealed))
        #expect(Secrets.redact("token=\(secret.revealed)!") == "token=\(Secrets.mask)!")
        let e = HTTPError(kind: .other, target: "http://h/", detail: "server said \(secret.revealed)")
        #expect(!e.description.contains(secret.revealed))
        Secrets.register("short")   // below the minimum length: ignored
        #expect(Secrets.redact("a short word") == "a short word")
    }
}

final class AWSLockedCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    func increment() {
        lock.lock()
        n += 1
        lock.unlock()
    }
    var value: Int {
        lock.lock()
        defer { lock.unlock() }
        return n
    }
}
