import Foundation
import Testing
@testable import AWSCore

/// Records backoff sleeps (and really sleeps, briefly).
final class AWSSleepRecorder: @unchecked Sendable {
    private let lock = NSLock()
    private var recorded: [Double] = []
    var delays: [Double] {
        lock.lock()
        defer { lock.unlock() }
        return recorded
    }
    var sleep: @Sendable (Double) -> Void {
        { [self] d in
            lock.lock()
            recorded.append(d)
            lock.unlock()
            Thread.sleep(forTimeInterval: d)
        }
    }
}

final class AWSTestClock: @unchecked Sendable {
    private let lock = NSLock()
    private var t: Date
    init(_ start: Date) { t = start }
    var now: Date {
        lock.lock()
        defer { lock.unlock() }
        return t
    }
    func advance(_ seconds: Double) {
        lock.lock()
        t = t.addingTimeInterval(seconds)
        lock.unlock()
    }
}

enum AWSCoreTestData {
    static func iso(_ d: Date) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime]
        return f.string(from: d)
    }

    static func amzDate(_ text: String) -> Date? {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        return f.date(from: text)
    }

    /// Recomputes the signature of a request the stub received, over the headers it names as
    /// signed, with the given credentials: equal only if what went on the wire is what was signed.
    static func verifySignature(_ r: HTTPStubRequest, credentials: AWSCredentials, region: String, service: String) -> Bool {
        guard let auth = r.headers["Authorization"], let dateText = r.headers["X-Amz-Date"],
              let date = amzDate(dateText),
              let signedPart = auth.components(separatedBy: "SignedHeaders=").last?.components(separatedBy: ",").first
        else { return false }
        let signedNames = Set(signedPart.split(separator: ";").map(String.init))
        var headers = HTTPHeaders()
        for h in r.headers where signedNames.contains(h.name.lowercased()) { headers.add(h.name, h.value) }
        let signer = service == "s3" ? SigV4Signer.s3(credentials: credentials, region: region)
            : SigV4Signer(credentials: credentials, region: region, service: service)
        let payload = r.headers["X-Amz-Content-Sha256"] == SigV4Signer.unsignedPayload
            ? SigV4Signer.unsignedPayload : AWSCrypto.sha256Hex(r.body)
        let s = signer.sign(method: r.method, path: r.path, query: r.query, headers: headers, payloadHash: payload, date: date,
                            addContentSHA256Header: service == "s3")
        return s.authorization == auth
    }
}

@Suite struct AWSCoreTests {
    // MARK: JSON

    @Test func jsonRoundTripKeepsNumbersExactAndBooleansApart() throws {
        let text = #"{"n":12345678901234567890.123456789012345678,"t":true,"one":1,"z":0,"f":false,"s":"a\"b\\c\n\u00e9\ud83c\udfb5","a":[null,-1.5e-7,{}],"e":""}"#
        let v = try JSONValue.parse(text)
        #expect(v["n"] == .number("12345678901234567890.123456789012345678"))
        #expect(v["t"] == .bool(true))
        #expect(v["one"] == .number("1"))
        #expect(v["one"]?.boolValue == nil)
        #expect(v["t"]?.intValue == nil)
        #expect(v["s"]?.stringValue == "a\"b\\c\né🎵")
        #expect(v["a"]?.arrayValue?.count == 3)
        #expect(v["a"]?.arrayValue?[1].doubleValue == -1.5e-7)
        let again = try JSONValue.parse(v.serialized())
        #expect(again == v)
        #expect(JSONValue.object(["b": .int(2), "a": .string("x\u{1}")]).jsonText == #"{"a":"x\u0001","b":2}"#)
    }

    @Test(arguments: [
        ("", "unexpected end"), ("{", "member name"), ("[1,]", "unexpected character"), ("{\"a\" 1}", "expected ':'"),
        ("01", "unexpected data"), ("1.", "fraction"), ("-", "invalid number"), ("1e", "exponent"), ("tru", "truncated"),
        ("\"abc", "unterminated string"), ("\"\\ud800\"", "lone high surrogate"), ("\"\\udc00\"", "lone low surrogate"),
        ("\"a\nb\"", "control character"), ("\"\\x\"", "invalid escape"), ("[1] 2", "unexpected data"), ("nul", "truncated"),
    ])
    func jsonErrorsNameTheProblem(_ input: String, _ reason: String) {
        do {
            _ = try JSONValue.parse(input)
            Issue.record("accepted \(input)")
        } catch {
            #expect(error.reason.contains(reason), "\(input): \(error)")
        }
    }

    @Test func jsonRejectsInvalidUTF8DeepNestingAndNeverTraps() {
        #expect(throws: JSONError.self) { try JSONValue.parse([0x22, 0xC3, 0x28, 0x22]) }
        let deep = String(repeating: "[", count: 100) + String(repeating: "]", count: 100)
        #expect(throws: JSONError.self) { try JSONValue.parse(deep) }
        #expect((try? JSONValue.parse(deep, maxDepth: 200)) != nil)
        // Random and mutated documents: must return or throw, never crash.
        var rng = SystemRandomNumberGenerator()
        let seed = Array(#"{"a":[1,2.5e3,"x\u0041",true,null,{"b":"c"}]}"#.utf8)
        for _ in 0..<3000 {
            var bytes = seed
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                bytes[Int.random(in: 0..<bytes.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            }
            if let v = try? JSONValue.parse(bytes) { _ = v.serialized() }
        }
    }

    // MARK: environment

    @Test func regionAndEndpointsFollowTheSDKRules() throws {
        #expect(throws: AWSError.self) { try AWSEnvironment.fromEnvironment([:]) }
        #expect(try AWSEnvironment.fromEnvironment(["AWS_DEFAULT_REGION": "eu-west-1"]).region == "eu-west-1")
        #expect(try AWSEnvironment.fromEnvironment(["AWS_REGION": "us-west-2", "AWS_DEFAULT_REGION": "eu-west-1"]).region == "us-west-2")
        #expect(throws: AWSError.self) { try AWSEnvironment(region: "us-east-1.evil.com/") }

        let plain = try AWSEnvironment(region: "eu-central-1")
        #expect(try plain.endpoint(for: .dynamodb) == AWSEndpoint(url: "https://dynamodb.eu-central-1.amazonaws.com", isOverride: false))
        #expect(try plain.endpoint(for: .s3).url == "https://s3.eu-central-1.amazonaws.com")
        #expect(try plain.endpoint(for: .ivs).url == "https://ivs.eu-central-1.amazonaws.com")
        #expect(try plain.endpoint(for: .ivsRealTime).url == "https://ivsrealtime.eu-central-1.amazonaws.com")
        #expect(try AWSEnvironment(region: "cn-north-1").endpoint(for: .s3).url == "https://s3.cn-north-1.amazonaws.com.cn")

        let overridden = try AWSEnvironment(region: "us-east-1", variables: [
            "AWS_ENDPOINT_URL": "http://127.0.0.1:5000/",
            "AWS_ENDPOINT_URL_DYNAMODB": "http://localhost:8000",
            "AWS_ENDPOINT_URL_IVS_REALTIME": "http://127.0.0.1:7000",
        ])
        #expect(try overridden.endpoint(for: .dynamodb) == AWSEndpoint(url: "http://localhost:8000", isOverride: true))
        #expect(try overridden.endpoint(for: .s3) == AWSEndpoint(url: "http://127.0.0.1:5000", isOverride: true))
        #expect(try overridden.endpoint(for: .ivs).url == "http://127.0.0.1:5000")
        #expect(try overridden.endpoint(for: .ivsRealTime).url == "http://127.0.0.1:7000")
        let ignored = try AWSEnvironment(region: "us-east-1", variables: [
            "AWS_ENDPOINT_URL": "http://127.0.0.1:5000", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "true"])
        #expect(try ignored.endpoint(for: .s3).isOverride == false)
        let bad = try AWSEnvironment(region: "us-east-1", variables: ["AWS_ENDPOINT_URL_S3": "localhost:9000"])
        #expect(throws: AWSError.self) { try bad.endpoint(for: .s3) }
    }

    @Test func s3AddressingStyle() throws {
        let aws = AWSClient(environment: try AWSEnvironment(region: "eu-west-1"), credentials: StaticCredentialsProvider(AWSTestKit.fakeCredentials))
        let s3 = S3Client(client: aws)
        let v = try s3.location(bucket: "my-bucket", key: "music/a b+c.mp3")
        #expect(v.baseURL == "https://my-bucket.s3.eu-west-1.amazonaws.com")
        #expect(v.path == "/music/a%20b%2Bc.mp3")
        let dotted = try s3.location(bucket: "my.bucket", key: "k")
        #expect(dotted.baseURL == "https://s3.eu-west-1.amazonaws.com")
        #expect(dotted.path == "/my.bucket/k")
        let local = S3Client(client: try AWSTestKit.client(endpoint: "http://127.0.0.1:1234"))
        let p = try local.location(bucket: "tracks", key: "x/y.wav")
        #expect(p.baseURL == "http://127.0.0.1:1234")
        #expect(p.path == "/tracks/x/y.wav")
        #expect(throws: AWSError.self) { try s3.location(bucket: "ab", key: "k") }
        #expect(throws: AWSError.self) { try s3.location(bucket: "ok-bucket", key: "") }
        #expect(throws: AWSError.self) { try s3.location(bucket: "bad/bucket", key: "k") }
    }

    // MARK: error decoding

    @Test func errorsAreDecodedFromEveryProtocol() {
        let ddb = AWSError.decode(HTTPResponse(status: 400, headers: ["x-amzn-RequestId": "RID1"],
            body: Array(#"{"__type":"com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException","message":"The conditional request failed"}"#.utf8)),
            operation: "dynamodb PutItem")
        #expect(ddb.code == "ConditionalCheckFailedException")
        #expect(ddb.isConditionalCheckFailed)
        #expect(!ddb.isRetryable)
        #expect(ddb.status == 400)
        #expect(ddb.message == "The conditional request failed")
        #expect(ddb.requestId == "RID1")
        #expect(ddb.kind == .service)

        let throttled = AWSError.decode(HTTPResponse(status: 400,
            body: Array(#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"slow down"}"#.utf8)),
            operation: "dynamodb GetItem")
        #expect(throttled.isThrottling)
        #expect(throttled.isRetryable)

        let ivs = AWSError.decode(HTTPResponse(status: 404,
            headers: ["x-amzn-ErrorType": "ResourceNotFoundException:http://internal.amazon.com/coral/com.amazon.ivs/"],
            body: Array(#"{"message":"channel not found"}"#.utf8)), operation: "ivs GetChannel")
        #expect(ivs.code == "ResourceNotFoundException")
        #expect(ivs.message == "channel not found")
        #expect(ivs.isNotFound)

        let s3 = AWSError.decode(HTTPResponse(status: 404, headers: ["x-amz-request-id": "S3RID"],
            body: Array("<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code><Message>The key &amp; more</Message></Error>".utf8)),
            operation: "s3 GetObject")
        #expect(s3.code == "NoSuchKey")
        #expect(s3.message == "The key & more")
        #expect(s3.requestId == "S3RID")

        let bare = AWSError.decode(HTTPResponse(status: 503), operation: "s3 GetObject")
        #expect(bare.code == "ServiceUnavailable")
        #expect(bare.isRetryable)
        let garbage = AWSError.decode(HTTPResponse(status: 500, body: Array("{not json".utf8)), operation: "x")
        #expect(garbage.code == "InternalServerError")
        #expect(garbage.isRetryable)
    }

    @Test func backoffCeilingGrowsAndIsCapped() {
        let p = RetryPolicy(maxAttempts: 5, baseDelay: 0.1, maxDelay: 0.5)
        #expect(p.delayCeiling(forRetry: 1) == 0.1)
        #expect(p.delayCeiling(forRetry: 2) == 0.2)
        #expect(p.delayCeiling(forRetry: 3) == 0.4)
        #expect(p.delayCeiling(forRetry: 4) == 0.5)
        #expect(p.delayCeiling(forRetry: 60) == 0.5)
        let samples = (0..<500).map { _ in p.delay(forRetry: 3) }
        #expect(samples.allSatisfy { $0 >= 0 && $0 <= 0.4 })
        #expect(Set(samples).count > 100, "full jitter spreads the delays")
        #expect(RetryPolicy(maxAttempts: 0).maxAttempts == 1)
    }

    // MARK: retries (loopback stub)

    static func stubClient(_ server: HTTPStubServer, attempts: Int = 3, sleeper: AWSSleepRecorder,
                           credentials: AWSCredentials = AWSTestKit.fakeCredentials) throws -> AWSClient {
        let env = try AWSEnvironment(region: "us-east-1", variables: ["AWS_ENDPOINT_URL_DYNAMODB": server.baseURL])
        return AWSClient(environment: env, credentials: StaticCredentialsProvider(credentials),
                         retry: RetryPolicy(maxAttempts: attempts, baseDelay: 0.02, maxDelay: 0.05), timeout: 5,
                         sleep: sleeper.sleep)
    }

    @Test func serverErrorsAreRetriedWithBackoffThenSucceed() throws {
        let server = try HTTPStubServer { _, i in
            i < 2 ? HTTPStubResponse.json(503, #"{"__type":"ServiceUnavailable","message":"try later"}"#)
                : HTTPStubResponse.json(200, #"{"Item":{"k":{"S":"v"}}}"#)
        }
        defer { server.stop() }
        let sleeper = AWSSleepRecorder()
        let client = try Self.stubClient(server, sleeper: sleeper)
        let start = Date()
        let out = try client.callJSON(service: .dynamodb, operation: "GetItem", target: "DynamoDB_20120810.GetItem",
                                      body: .object(["TableName": .string("t")]))
        #expect(out["Item"]?["k"]?["S"] == .string("v"))
        #expect(server.hits == 3)
        #expect(sleeper.delays.count == 2)
        #expect(sleeper.delays[0] <= 0.02 && sleeper.delays[1] <= 0.04)
        #expect(Date().timeIntervalSince(start) >= sleeper.delays.reduce(0, +))
        // Every attempt is signed afresh and what went on the wire is what was signed.
        for r in server.requests {
            #expect(r.headers["X-Amz-Target"] == "DynamoDB_20120810.GetItem")
            #expect(r.headers["Content-Type"] == "application/x-amz-json-1.0")
            #expect(AWSCoreTestData.verifySignature(r, credentials: AWSTestKit.fakeCredentials, region: "us-east-1", service: "dynamodb"))
        }
    }

    @Test func throttlingIsRetried() throws {
        let server = try HTTPStubServer { _, i in
            i < 2 ? HTTPStubResponse.json(400, #"{"__type":"com.amazon.coral.availability#ThrottlingException","message":"Rate exceeded"}"#)
                : HTTPStubResponse.json(200, "{}")
        }
        defer { server.stop() }
        let sleeper = AWSSleepRecorder()
        _ = try Self.stubClient(server, sleeper: sleeper).callJSON(service: .dynamodb, operation: "PutItem",
                                                                   target: "DynamoDB_20120810.PutItem", body: .object([:]))
        #expect(server.hits == 3)
        #expect(sleeper.delays.count == 2)
    }

    @Test func throttlingThatOutlastsTheAttemptsIsReported() throws {
        let server = try HTTPStubServer { _, _ in
            HTTPStubResponse.json(400, #"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"busy"}"#)
        }
        defer { server.stop() }
        let sleeper = AWSSleepRecorder()
        let client = try Self.stubClient(server, attempts: 4, sleeper: sleeper)
        do {
            _ = try client.callJSON(service: .dynamodb, operation: "Query", target: "DynamoDB_20120810.Query", body: .object([:]))
            Issue.record("expected a failure")
        } catch {
            #expect(error.code == "ProvisionedThroughputExceededException")
            #expect(error.isThrottling)
            #expect(error.attempts == 4)
        }
        #expect(server.hits == 4)
        #expect(sleeper.delays.count == 3)
    }

    @Test func validationErrorsAreNotRetried() throws {
        let server = try HTTPStubServer { _, _ in
            HTTPStubResponse.json(400, #"{"__type":"com.amazon.coral.validate#ValidationException","message":"1 validation error detected"}"#,
                              headers: [("x-amzn-RequestId", "REQ-42")])
        }
        defer { server.stop() }
        let sleeper = AWSSleepRecorder()
        let client = try Self.stubClient(server, sleeper: sleeper)
        do {
            _ = try client.callJSON(service: .dynamodb, operation: "GetItem", target: "DynamoDB_20120810.GetItem", body: .object([:]))
            Issue.record("expected a failure")
        } catch {
            #expect(error.code == "ValidationException")
            #expect(error.status == 400)
            #expect(!error.isRetryable)
            #expect(error.requestId == "REQ-42")
            #expect(error.operation == "dynamodb GetItem")
            #expect(error.description.contains("ValidationException"))
        }
        #expect(server.hits == 1)
        #expect(sleeper.delays.isEmpty)
    }

    @Test func connectionRefusedIsRetriedThenReported() throws {
        let port = HTTPTestKit.closedPort()
        let env = try AWSEnvironment(region: "us-east-1", variables: ["AWS_ENDPOINT_URL": "http://127.0.0.1:\(port)"])
        let sleeper = AWSSleepRecorder()
        let client = AWSClient(environment: env, credentials: StaticCredentialsProvider(AWSTestKit.fakeCredentials),
                               retry: RetryPolicy(maxAttempts: 3, baseDelay: 0.01), sleep: sleeper.sleep)
        do {
            _ = try client.callJSON(service: .dynamodb, operation: "GetItem", target: "DynamoDB_20120810.GetItem", body: .object([:]))
            Issue.record("expected a failure")
        } catch {
            #expect(error.kind == .transport)
            #expect(error.code == "NetworkError")
            #expect(error.transport?.kind == .connectionRefused)
            #expect(error.attempts == 3)
            #expect(error.isRetryable)
        }
        #expect(sleeper.delays.count == 2)
    }

    @Test func expiredTokenRefetchesCredentialsOnce() throws {
        let server = try HTTPStubServer { _, i in
            i == 0 ? HTTPStubResponse.json(400, #"{"__type":"com.amazon.coral.service#ExpiredTokenException","message":"expired"}"#)
                : HTTPStubResponse.json(200, "{}")
        }
        defer { server.stop() }
        let provider = AWSCountingProvider()
        let env = try AWSEnvironment(region: "us-east-1", variables: ["AWS_ENDPOINT_URL": server.baseURL])
        let client = AWSClient(environment: env, credentials: provider, retry: RetryPolicy(maxAttempts: 3, baseDelay: 0.001))
        _ = try client.callRestJSON(service: .ivs, operation: "GetChannel", path: "/GetChannel", body: .object([:]))
        #expect(provider.invalidations == 1)
        #expect(server.hits == 2)
        let keys = server.requests.compactMap { $0.headers["Authorization"]?.components(separatedBy: "Credential=").last?.prefix(6) }
        #expect(keys == ["AKID-1", "AKID-2"], "the retry used the refetched credentials")
    }

    // MARK: container credentials

    static func credentialsStub(token: String, t0: Date) throws -> HTTPStubServer {
        try HTTPStubServer { req, i in
            guard req.path == "/v2/credentials/task-1" else { return HTTPStubResponse.json(404, "{}") }
            guard req.headers["Authorization"] == token else { return HTTPStubResponse.json(401, #"{"message":"no"}"#) }
            let expiration = AWSCoreTestData.iso(t0.addingTimeInterval(Double(i + 1) * 600))
            return HTTPStubResponse.json(200, """
                {"RoleArn":"arn:aws:iam::123456789012:role/task","AccessKeyId":"ASIAKEY\(i)","SecretAccessKey":"secret-key-value-\(i)-abcdef",
                 "Token":"session-token-value-\(i)-abcdef","Expiration":"\(expiration)"}
                """)
        }
    }

    @Test func containerCredentialsAreCachedAndRefreshedBeforeExpiration() throws {
        let t0 = Date(timeIntervalSince1970: 1_700_000_000)
        let authToken = "container-auth-token-0123456789"
        let server = try Self.credentialsStub(token: authToken, t0: t0)
        defer { server.stop() }
        let clock = AWSTestClock(t0)
        let provider = ContainerCredentialsProvider(
            environment: ["AWS_CONTAINER_CREDENTIALS_FULL_URI": server.baseURL + "/v2/credentials/task-1",
                          "AWS_CONTAINER_AUTHORIZATION_TOKEN": authToken],
            now: { clock.now })

        let first = try provider.credentials()
        #expect(first.accessKeyId == "ASIAKEY0")
        #expect(first.sessionToken == "session-token-value-0-abcdef")
        #expect(first.expiration == t0.addingTimeInterval(600))
        #expect(server.hits == 1)

        clock.advance(60)   // 9 minutes left: cached
        #expect(try provider.credentials().accessKeyId == "ASIAKEY0")
        #expect(server.hits == 1)

        clock.advance(270)  // 4.5 minutes left: inside the 5-minute window
        let second = try provider.credentials()
        #expect(second.accessKeyId == "ASIAKEY1")
        #expect(server.hits == 2)

        clock.advance(60)
        #expect(try provider.credentials().accessKeyId == "ASIAKEY1")
        #expect(server.hits == 2)
        #expect(server.requests.allSatisfy { $0.headers["Authorization"] == authToken })
    }

    @Test func failedRefreshKeepsValidCredentialsUntilTheyExpire() throws {
        let t0 = Date(timeIntervalSince1970: 1_700_000_000)
        let failing = AWSLockedFlag()
        let server = try HTTPStubServer { _, i in
            if failing.isSet { return HTTPStubResponse.json(500, "{}") }
            return HTTPStubResponse.json(200, """
                {"AccessKeyId":"ASIAONLY","SecretAccessKey":"only-secret-abcdef","Token":"only-token-abcdef","Expiration":"\(AWSCoreTestData.iso(t0.addingTimeInterval(600)))"}
                """)
        }
        defer { server.stop() }
        let clock = AWSTestClock(t0)
        let provider = ContainerCredentialsProvider(environment: ["AWS_CONTAINER_CREDENTIALS_FULL_URI": server.baseURL + "/c"],
                                                    now: { clock.now })
        _ = try provider.credentials()
        failing.set()
        clock.advance(400)   // refresh window, still valid
        #expect(try provider.credentials().accessKeyId == "ASIAONLY")
        #expect(server.hits == 4, "one fetch, then three failed refresh attempts")
        clock.advance(300)   // expired
        do {
            _ = try provider.credentials()
            Issue.record("expected a failure once expired")
        } catch {
            #expect(error.kind == .endpointUnavailable)
            #expect(error.description.contains("HTTP 500"))
        }
    }

    @Test func containerCredentialsSignRequestsThroughTheChain() throws {
        let t0 = Date()
        let authToken = "container-auth-token-abcdefgh"
        let creds = try Self.credentialsStub(token: authToken, t0: t0)
        defer { creds.stop() }
        let api = try HTTPStubServer { _, _ in HTTPStubResponse.json(200, #"{"channel":{"arn":"arn:c","ingestEndpoint":"ingest.example"}}"#) }
        defer { api.stop() }
        let env = [
            "AWS_REGION": "us-east-1",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": creds.baseURL + "/v2/credentials/task-1",
            "AWS_CONTAINER_AUTHORIZATION_TOKEN": authToken,
            "AWS_ENDPOINT_URL_IVS": api.baseURL,
        ]
        let chain = CredentialsProviderChain.standard(environment: env)
        let client = AWSClient(environment: try AWSEnvironment.fromEnvironment(env), credentials: chain)
        let channel = try IVSClient(client: client).getChannel(arn: "arn:c")
        #expect(channel.ingestEndpoint == "ingest.example")
        let sent = try #require(api.requests.first)
        #expect(sent.headers["X-Amz-Security-Token"] == "session-token-value-0-abcdef")
        #expect(sent.headers["Authorization"]?.contains("Credential=ASIAKEY0/") == true)
        let used = AWSCredentials(accessKeyId: "ASIAKEY0", secretAccessKey: "secret-key-value-0-abcdef",
                                  sessionToken: "session-token-value-0-abcdef")
        #expect(AWSCoreTestData.verifySignature(sent, credentials: used, region: "us-east-1", service: "ivs"))
        #expect(creds.hits == 1)
    }

    @Test func containerEndpointRules() throws {
        #expect(try ContainerCredentialsProvider.resolveEndpoint(["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/v2/credentials/abc"]).get()
                == "http://169.254.170.2/v2/credentials/abc")
        // RELATIVE wins over FULL, as in the SDKs.
        #expect(try ContainerCredentialsProvider.resolveEndpoint(["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/r",
                                                                  "AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://127.0.0.1:1/f"]).get()
                == "http://169.254.170.2/r")
        let remote = ContainerCredentialsProvider(environment: ["AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://example.com/creds"])
        #expect(throws: CredentialsError(.invalidConfiguration, "AWS_CONTAINER_CREDENTIALS_FULL_URI uses http to example.com; only loopback or the ECS/EKS agent addresses may use http")) {
            try remote.credentials()
        }
        #expect(ContainerCredentialsProvider.isAllowedPlainHost("127.0.0.1"))
        #expect(ContainerCredentialsProvider.isAllowedPlainHost("169.254.170.23"))
        #expect(!ContainerCredentialsProvider.isAllowedPlainHost("127.0.0.1.example.com"))
        let none = ContainerCredentialsProvider(environment: [:])
        do {
            _ = try none.credentials()
            Issue.record("expected notConfigured")
        } catch {
            #expect(error.kind == .notConfigured)
        }
    }

    @Test func unusableCredentialAnswersNeverQuoteTheBody() throws {
        let server = try HTTPStubServer { _, _ in
            HTTPStubResponse.json(200, #"{"AccessKeyId":"ASIAX","Token":"LEAKY-TOKEN-abcdef123"}"#)
        }
        defer { server.stop() }
        let provider = ContainerCredentialsProvider(environment: ["AWS_CONTAINER_CREDENTIALS_FULL_URI": server.baseURL + "/c"])
        do {
            _ = try provider.credentials()
            Issue.record("expected invalidResponse")
        } catch {
            #expect(error.kind == .invalidResponse)
            #expect(error.description.contains("no SecretAccessKey"))
            #expect(!error.description.contains("LEAKY"))
        }
    }

    @Test func chainPrefersEnvironmentKeysAndExplainsAbsence() throws {
        let env = ["AWS_ACCESS_KEY_ID": "AKIAENV", "AWS_SECRET_ACCESS_KEY": "env-secret-abcdef", "AWS_SESSION_TOKEN": "env-token-abcdef",
                   "AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://127.0.0.1:\(HTTPTestKit.closedPort())/never"]
        let c = try CredentialsProviderChain.standard(environment: env).credentials()
        #expect(c.accessKeyId == "AKIAENV")
        #expect(c.sessionToken == "env-token-abcdef")
        do {
            _ = try CredentialsProviderChain.standard(environment: [:]).credentials()
            Issue.record("expected notConfigured")
        } catch {
            #expect(error.kind == .notConfigured)
            #expect(error.message.contains("AWS_ACCESS_KEY_ID"))
        }
        do {
            _ = try CredentialsProviderChain.standard(environment: ["AWS_ACCESS_KEY_ID": "AKIAHALF"]).credentials()
            Issue.record("expected invalidConfiguration")
        } catch {
            #expect(error.kind == .invalidConfiguration)
        }
    }

    // MARK: IVS via stub (moto has no stream keys and no ivs-realtime)

    @Test func ivsStreamKeysAndStageEndpoints() throws {
        let keyValue = "sk_us-east-1_STREAMKEYSECRET\(UUID().uuidString.prefix(8))"
        let ivs = try HTTPStubServer { req, _ in
            switch req.path {
            case "/ListStreamKeys":
                return req.bodyText.contains("\"nextToken\":\"page2\"")
                    ? HTTPStubResponse.json(200, #"{"streamKeys":[{"arn":"arn:aws:ivs:us-east-1:1:stream-key/k2","channelArn":"arn:ch"}]}"#)
                    : HTTPStubResponse.json(200, #"{"streamKeys":[{"arn":"arn:aws:ivs:us-east-1:1:stream-key/k1","channelArn":"arn:ch"}],"nextToken":"page2"}"#)
            case "/GetStreamKey" where req.bodyText.contains("arn:broken"):
                return HTTPStubResponse.json(200, #"{"streamKey":{"value":"BROKENSECRETVALUE123"#)
            case "/GetChannel" where req.bodyText.contains("arn:partial"):
                return HTTPStubResponse.json(200, #"{"channel":{"arn":"arn:partial"}}"#)
            case "/GetStreamKey":
                return HTTPStubResponse.json(200, #"{"streamKey":{"arn":"arn:aws:ivs:us-east-1:1:stream-key/k1","channelArn":"arn:ch","value":"\#(keyValue)"}}"#)
            default:
                return HTTPStubResponse.json(404, #"{"message":"nope"}"#, headers: [("x-amzn-ErrorType", "ResourceNotFoundException:")])
            }
        }
        defer { ivs.stop() }
        let realtime = try HTTPStubServer { req, _ in
            req.path == "/GetStage"
                ? HTTPStubResponse.json(200, #"{"stage":{"arn":"arn:stage","name":"show","activeSessionId":"st-1","endpoints":{"events":"wss://global.events.live-video.net","whip":"https://f99084460c35.global-bm.whip.live-video.net","rtmp":"rtmp://x/app/","rtmps":"rtmps://x:443/app/"}}}"#)
                : HTTPStubResponse.json(404, "{}")
        }
        defer { realtime.stop() }
        let env = try AWSEnvironment(region: "us-east-1", variables: [
            "AWS_ENDPOINT_URL_IVS": ivs.baseURL, "AWS_ENDPOINT_URL_IVS_REALTIME": realtime.baseURL,
        ])
        let client = AWSClient(environment: env, credentials: StaticCredentialsProvider(AWSTestKit.fakeCredentials))

        let keys = try IVSClient(client: client).listStreamKeys(channelArn: "arn:ch")
        #expect(keys.map(\.arn) == ["arn:aws:ivs:us-east-1:1:stream-key/k1", "arn:aws:ivs:us-east-1:1:stream-key/k2"])
        let key = try IVSClient(client: client).streamKey(channelArn: "arn:ch")
        #expect(key.value.revealed == keyValue)
        #expect(!"\(key)".contains(keyValue))
        var dumped = ""
        dump(key, to: &dumped)
        #expect(!dumped.contains(keyValue))
        #expect(Secrets.redact("rtmps://host/app/\(keyValue)") == "rtmps://host/app/\(Secrets.mask)")

        let listBody = try JSONValue.parse(ivs.requests[0].body)
        #expect(listBody["channelArn"] == .string("arn:ch"))
        #expect(ivs.requests.map(\.path) == ["/ListStreamKeys", "/ListStreamKeys", "/ListStreamKeys", "/ListStreamKeys", "/GetStreamKey"])
        #expect(ivs.requests.allSatisfy { $0.method == "POST" && $0.headers["Content-Type"] == "application/json" })

        let stage = try IVSRealTimeClient(client: client).getStage(arn: "arn:stage")
        #expect(stage.endpoints.whip == "https://f99084460c35.global-bm.whip.live-video.net")
        #expect(stage.endpoints.events == "wss://global.events.live-video.net")
        #expect(stage.activeSessionId == "st-1")
        let sent = try #require(realtime.requests.first)
        #expect(sent.headers["Authorization"]?.contains("/us-east-1/ivs/aws4_request") == true, "ivs-realtime signs as ivs")
        #expect(AWSCoreTestData.verifySignature(sent, credentials: AWSTestKit.fakeCredentials, region: "us-east-1", service: "ivs"))

        do {
            _ = try IVSClient(client: client).getChannel(arn: "arn:partial")
            Issue.record("expected InvalidResponse")
        } catch {
            #expect(error.kind == .invalidResponse)
            #expect(error.description.contains("channel.ingestEndpoint"))
        }
        do {
            _ = try IVSClient(client: client).getStreamKey(arn: "arn:broken")
            Issue.record("expected InvalidResponse")
        } catch {
            #expect(error.kind == .invalidResponse)
            #expect(error.operation == "ivs GetStreamKey")
            #expect(!error.description.contains("BROKENSECRET"))
        }
        do {
            _ = try IVSClient(client: client).getChannel(arn: "arn:none")
            Issue.record("expected not found")
        } catch {
            #expect(error.code == "ResourceNotFoundException")
            #expect(error.isNotFound)
        }
    }

    @Test func secretsNeverReachErrorsOrDescriptions() throws {
        let creds = AWSCredentials(accessKeyId: "AKIASECRETTEST", secretAccessKey: "very-secret-key-\(UUID().uuidString)",
                                   sessionToken: "very-secret-token-\(UUID().uuidString)")
        let description = "\(creds) \(String(reflecting: creds))"
        #expect(!description.contains(creds.secretAccessKey))
        #expect(!description.contains(try #require(creds.sessionToken)))
        var dumped = ""
        dump(creds, to: &dumped)
        #expect(!dumped.contains(creds.secretAccessKey))

        // A server that echoes the token back in its message.
        let token = try #require(creds.sessionToken)
        let server = try HTTPStubServer { _, _ in
            HTTPStubResponse.json(403, #"{"__type":"UnrecognizedClientException","message":"bad token \#(token) / \#(creds.secretAccessKey)"}"#)
        }
        defer { server.stop() }
        let sleeper = AWSSleepRecorder()
        let client = try Self.stubClient(server, sleeper: sleeper, credentials: creds)
        do {
            _ = try client.callJSON(service: .dynamodb, operation: "GetItem", target: "DynamoDB_20120810.GetItem", body: .object([:]))
            Issue.record("expected a failure")
        } catch {
            #expect(error.isAccessDenied)
            #expect(!error.description.contains(token))
            #expect(!error.description.contains(creds.secretAccessKey))
            #expect(error.description.contains(Secrets.mask))
        }
    }
}

final class AWSCountingProvider: CredentialsProvider, @unchecked Sendable {
    private let lock = NSLock()
    private var generation = 1
    private(set) var invalidations = 0
    func credentials() throws(CredentialsError) -> AWSCredentials {
        lock.lock()
        defer { lock.unlock() }
        return AWSCredentials(accessKeyId: "AKID-\(generation)", secretAccessKey: "secret-\(generation)-abcdefgh")
    }
    func invalidate() {
        lock.lock()
        generation += 1
        invalidations += 1
        lock.unlock()
    }
}

final class AWSLockedFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var flag = false
    func set() {
        lock.lock()
        flag = true
        lock.unlock()
    }
    var isSet: Bool {
        lock.lock()
        defer { lock.unlock() }
        return flag
    }
}
