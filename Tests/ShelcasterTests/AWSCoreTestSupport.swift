import Foundation
import AWSCore
#if canImport(Glibc)
import Glibc
#endif

/// moto_server on loopback for the AWS client tests, and a python3 runner for boto3 set-up.
enum AWSTestKit {
    static func findExecutable(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for dir in path.split(separator: ":") {
            let candidate = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    static let motoServerPath: String? = findExecutable("moto_server")
    static var motoAvailable: Bool { motoServerPath != nil }

    static let fakeCredentials = AWSCredentials(accessKeyId: "testing", secretAccessKey: "testing")

    /// A client pointed at `endpoint` through AWS_ENDPOINT_URL, as the worker would be configured.
    static func client(endpoint: String, retry: RetryPolicy = RetryPolicy(maxAttempts: 2, baseDelay: 0.01),
                       extra: [String: String] = [:]) throws -> AWSClient {
        var vars = ["AWS_ENDPOINT_URL": endpoint]
        vars.merge(extra) { _, new in new }
        let env = try AWSEnvironment(region: "us-east-1", variables: vars)
        return AWSClient(environment: env, credentials: StaticCredentialsProvider(fakeCredentials), retry: retry)
    }

    /// Runs python3 with a script; fails when it exits non-zero or takes over `timeout` seconds.
    @discardableResult
    static func python(_ script: String, environment: [String: String] = [:], timeout: Double = 60) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: findExecutable("python3") ?? "/usr/bin/python3")
        p.arguments = ["-c", script]
        var env = ProcessInfo.processInfo.environment
        env.merge(["AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"]) { _, n in n }
        env.merge(environment) { _, n in n }
        p.environment = env
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        // Read before waiting so a chatty child cannot fill the pipe and stall.
        let reader = AWSPipeReader(out.fileHandleForReading)
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        if p.isRunning {
            p.terminate()
            throw HTTPStubError("python3 timed out")
        }
        let text = reader.finish()
        guard p.terminationStatus == 0 else { throw HTTPStubError("python3 failed: \(text.suffix(2000))") }
        return text
    }
}

final class AWSPipeReader: @unchecked Sendable {
    private var data = Data()
    private let lock = NSLock()
    private let done = DispatchSemaphore(value: 0)

    init(_ handle: FileHandle) {
        Thread { [self] in
            let d = handle.readDataToEndOfFile()
            lock.lock()
            data = d
            lock.unlock()
            done.signal()
        }.start()
    }

    func finish() -> String {
        _ = done.wait(timeout: .now() + 10)
        lock.lock()
        defer { lock.unlock() }
        return String(decoding: data, as: UTF8.self)
    }
}

/// A moto_server process on 127.0.0.1 and a free port; stopped by `stop()` (also on deinit).
final class AWSMotoServer: @unchecked Sendable {
    let port: Int
    let process: Process
    var endpoint: String { "http://127.0.0.1:\(port)" }

    init() throws {
        guard let path = AWSTestKit.motoServerPath else { throw HTTPStubError("moto_server not installed") }
        var lastError: Error = HTTPStubError("moto_server did not start")
        // A port picked as free can be taken before moto binds it: try a few.
        for _ in 0..<3 {
            let port = HTTPTestKit.closedPort()
            let p = Process()
            p.executableURL = URL(fileURLWithPath: path)
            p.arguments = ["-H", "127.0.0.1", "-p", String(port)]
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            do {
                try p.run()
            } catch {
                lastError = error
                continue
            }
            if Self.waitForListen(port: port, process: p, timeout: 45) {
                self.port = port
                process = p
                return
            }
            p.terminate()
            p.waitUntilExit()
            lastError = HTTPStubError("moto_server did not listen on \(port) in time")
        }
        throw lastError
    }

    deinit { stop() }

    func stop() {
        guard process.isRunning else { return }
        process.terminate()
        let deadline = Date().addingTimeInterval(5)
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }

    static func waitForListen(port: Int, process: Process, timeout: Double) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline && process.isRunning {
            if let r = try? HTTPClient.shared.send(HTTPRequest(url: "http://127.0.0.1:\(port)/moto-api/", timeout: 2, connectTimeout: 1)),
               r.status > 0 {
                return true
            }
            Thread.sleep(forTimeInterval: 0.2)
        }
        return false
    }
}
