import Foundation
import Testing
import DTLS
import SRTP

/// Interop with a real, independent implementation: aiortc's RTCDtlsTransport (pyOpenSSL +
/// pylibsrtp's own libsrtp build) over loopback UDP. Skipped when `python3 -c "import aiortc"`
/// fails (pip install aiortc).
@Suite("DTLS-SRTP interop with aiortc", .serialized)
struct DTLSInteropTests {
    struct Case: Sendable, CustomStringConvertible {
        var ourRole: DTLSEndpoint.Role
        var ourProfiles: [DTLSSRTPProfile]
        /// The profile the DTLS server's preference yields (nil when the handshake must fail).
        var expectedProfile: DTLSSRTPProfile?
        var wrongFingerprint = false

        var description: String {
            "we are \(ourRole == .client ? "client" : "server"), offer \(ourProfiles.map(\.openSSLName))\(wrongFingerprint ? ", wrong fingerprint" : "")"
        }
    }

    static let cases: [Case] = [
        // aiortc as server prefers AEAD_AES_256_GCM.
        Case(ourRole: .client, ourProfiles: DTLSSRTPProfile.defaultPreference, expectedProfile: .aeadAes256Gcm),
        // We as server prefer AEAD_AES_128_GCM.
        Case(ourRole: .server, ourProfiles: DTLSSRTPProfile.defaultPreference, expectedProfile: .aeadAes128Gcm),
        Case(ourRole: .client, ourProfiles: [.aes128CmSha1_80], expectedProfile: .aes128CmSha1_80),
        Case(ourRole: .server, ourProfiles: [.aes128CmSha1_80], expectedProfile: .aes128CmSha1_80),
        Case(ourRole: .server, ourProfiles: DTLSSRTPProfile.defaultPreference, expectedProfile: nil, wrongFingerprint: true),
    ]

    @Test(.enabled(if: DTLSInteropPeer.aiortcAvailable, "python3 with aiortc is not installed"),
          .timeLimit(.minutes(1)), arguments: cases)
    func handshakeAndSRTPWithAiortc(_ testCase: Case) throws {
        let certificate = try DTLSCertificate.generate()
        let socket = try DTLSLoopbackSocket()
        defer { socket.close() }
        let peer = try DTLSInteropPeer(role: testCase.ourRole == .client ? "server" : "client",
                                       ourPort: socket.port, ourFingerprint: certificate.fingerprint)
        defer { peer.stop() }

        let hello = try #require(peer.readJSONLine(), "aiortc script printed no port/fingerprint")
        let peerPort = try #require(hello["port"] as? Int)
        let announced = try DTLSFingerprint(sdpAttributeValue: try #require(hello["fingerprint"] as? String))
        let expected = testCase.wrongFingerprint ? try DTLSCertificate.generate().fingerprint : announced

        let endpoint = try DTLSEndpoint(role: testCase.ourRole, certificate: certificate,
                                        expectedPeerFingerprint: expected, srtpProfiles: testCase.ourProfiles,
                                        initialRetransmitTimeout: .milliseconds(200))
        var events = endpoint.start()
        var inbound: SRTPSession?
        var outbound: SRTPSession?
        var receivedRTP: [UInt8]?
        var receivedRTCP: [UInt8]?
        var sentRTP: [UInt8]?
        var buffer = [UInt8](repeating: 0, count: 2048)
        let deadline = ContinuousClock.now + .seconds(20)

        while ContinuousClock.now < deadline {
            for datagram in endpoint.pendingOutput() { socket.send(datagram, toPort: peerPort) }
            if let datagram = socket.receive(into: &buffer) {
                if let first = datagram.first, (20...63).contains(first) {
                    events += endpoint.feed(datagram)
                } else if let first = datagram.first, (128...191).contains(first), datagram.count > 1, let inbound {
                    if (192...223).contains(datagram[1]) {
                        if receivedRTCP == nil { receivedRTCP = try? inbound.unprotectRTCP(datagram) }
                    } else if receivedRTP == nil {
                        receivedRTP = try? inbound.unprotect(datagram)
                    }
                }
            }
            events += endpoint.handleTimeout()
            if inbound == nil, let keys = endpoint.keyingMaterial,
               let profile = SRTPProfile(rawValue: keys.profile.rawValue) {
                inbound = try SRTPSession(profile: profile, key: keys.remoteKey, salt: keys.remoteSalt, direction: .inbound)
                outbound = try SRTPSession(profile: profile, key: keys.localKey, salt: keys.localSalt, direction: .outbound)
            }
            // Answer once we have decrypted theirs: aiortc decrypts ours and exits.
            if sentRTP == nil, receivedRTP != nil, receivedRTCP != nil, let outbound {
                let rtp = dtlsTestRTP(sequence: 4242, timestamp: 48_000, ssrc: 0xABCD_0001, payload: Array("hello from swift".utf8))
                socket.send(try outbound.protect(rtp), toPort: peerPort)
                sentRTP = rtp
            }
            if !peer.isRunning {
                // The peer is done: take what it sent last (its close_notify), then stop.
                while let datagram = socket.receive(into: &buffer) {
                    if let first = datagram.first, (20...63).contains(first) { events += endpoint.feed(datagram) }
                }
                break
            }
        }
        let (status, lines) = peer.finish()
        let state = lines.first { $0["state"] != nil }

        guard let expectedProfile = testCase.expectedProfile else {
            // We refuse the peer: mismatch reported, no keys, and aiortc's handshake fails too.
            #expect(events.dtlsFailure == .fingerprintMismatch(expected: expected.hexValue, actual: announced.hexValue))
            #expect(endpoint.keyingMaterial == nil)
            #expect(state?["state"] as? String == "failed")
            #expect(status != 0)
            return
        }

        let keys = try #require(events.dtlsKeys, "handshake did not complete: \(events), aiortc said \(lines)")
        #expect(keys.profile == expectedProfile)
        #expect(state?["profile"] as? String == expectedProfile.openSSLName)
        #expect(endpoint.peerFingerprint == announced)

        // aiortc's RTP: V=2, PT 111, SSRC 0x01020304, payload "hello from aiortc".
        let rtp = try #require(receivedRTP, "no SRTP packet from aiortc decrypted")
        #expect(rtp.count == 12 + 17)
        #expect(Array(rtp[8..<12]) == [0x01, 0x02, 0x03, 0x04])
        #expect(rtp[1] & 0x7F == 111)
        #expect(String(decoding: rtp[12...], as: UTF8.self) == "hello from aiortc")
        #expect(receivedRTCP == [0x80, 201, 0x00, 0x01, 0x01, 0x02, 0x03, 0x04])

        // aiortc decrypted our packet with its own libsrtp: our write keys are right as well.
        let echoed = lines.first { $0["received"] != nil }?["received"] as? String
        #expect(echoed == sentRTP.map(dtlsHex))
        #expect(status == 0)
        // aiortc closes with close_notify after it is done.
        #expect(events.contains(.closed))
    }
}

func dtlsHex(_ bytes: [UInt8]) -> String {
    bytes.map { String(format: "%02x", $0) }.joined()
}

/// The aiortc side: a Python script run as a child process, talking JSON lines on stdout.
final class DTLSInteropPeer {
    static let aiortcAvailable: Bool = {
        guard let result = try? dtlsRunToolStatus("/usr/bin/env", ["python3", "-c", "import aiortc"]) else { return false }
        return result == 0
    }()

    private let process = Process()
    private let stdout = Pipe()
    private var pending = Data()
    private let scriptPath: String

    init(role: String, ourPort: UInt16, ourFingerprint: DTLSFingerprint) throws {
        scriptPath = FileManager.default.temporaryDirectory.appendingPathComponent("dtls-aiortc-\(UUID().uuidString).py").path
        try Self.script.write(toFile: scriptPath, atomically: true, encoding: .utf8)
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", scriptPath, role, String(ourPort),
                             ourFingerprint.algorithm.rawValue, ourFingerprint.hexValue]
        process.standardOutput = stdout
        process.standardError = FileHandle.nullDevice
        try process.run()
    }

    var isRunning: Bool { process.isRunning }

    /// Reads one JSON line (blocking; the script prints it right after binding, or exits).
    func readJSONLine() -> [String: Any]? {
        for _ in 0..<1000 {
            if let newline = pending.firstIndex(of: 0x0A) {
                let line = pending[pending.startIndex..<newline]
                pending = Data(pending[(newline + 1)...])
                return (try? JSONSerialization.jsonObject(with: line)) as? [String: Any]
            }
            let chunk = stdout.fileHandleForReading.availableData
            if chunk.isEmpty { return nil }
            pending.append(chunk)
        }
        return nil
    }

    /// Waits (bounded) for exit; returns the status and every remaining JSON line.
    func finish() -> (Int32, [[String: Any]]) {
        let deadline = Date().addingTimeInterval(10)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning { process.terminate(); process.waitUntilExit() }
        pending.append(stdout.fileHandleForReading.readDataToEndOfFile())
        let lines = pending.split(separator: 0x0A).compactMap {
            (try? JSONSerialization.jsonObject(with: Data($0))) as? [String: Any]
        }
        return (process.terminationStatus, lines)
    }

    func stop() {
        if process.isRunning { process.terminate(); process.waitUntilExit() }
        try? FileManager.default.removeItem(atPath: scriptPath)
    }

    /// Drives aiortc's RTCDtlsTransport over a plain UDP socket: a stand-in object provides the
    /// two coroutines of RTCIceTransport that the DTLS transport uses (_recv, _send).
    static let script = #"""
import asyncio, json, sys
from aiortc.rtcdtlstransport import (RTCCertificate, RTCDtlsFingerprint,
                                     RTCDtlsParameters, RTCDtlsTransport)

def emit(obj):
    print(json.dumps(obj), flush=True)

async def main():
    role, peer_port, fp_alg, fp_hex = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    loop = asyncio.get_running_loop()
    dtls_queue, media_queue = asyncio.Queue(), asyncio.Queue()

    class Protocol(asyncio.DatagramProtocol):
        def datagram_received(self, data, addr):
            if data and 128 <= data[0] < 192:
                media_queue.put_nowait(data)
            else:
                dtls_queue.put_nowait(data)

    udp, _ = await loop.create_datagram_endpoint(Protocol, local_addr=("127.0.0.1", 0))
    peer = ("127.0.0.1", peer_port)

    class LoopbackIce:
        role = "controlled"
        async def _recv(self):
            return await dtls_queue.get()
        async def _send(self, data):
            udp.sendto(data, peer)

    certificate = RTCCertificate.generateCertificate()
    dtls = RTCDtlsTransport(LoopbackIce(), [certificate])
    dtls._set_role(role)
    ours = [f for f in certificate.getFingerprints() if f.algorithm == "sha-256"][0]
    emit({"port": udp.get_extra_info("sockname")[1], "fingerprint": f"{ours.algorithm} {ours.value}"})

    remote = RTCDtlsParameters(fingerprints=[RTCDtlsFingerprint(algorithm=fp_alg, value=fp_hex)])
    try:
        await asyncio.wait_for(dtls.start(remote), 10)
    except asyncio.TimeoutError:
        emit({"state": "timeout"})
        return 4
    connected = dtls.state == "connected"
    emit({"state": dtls.state,
          "profile": dtls._ssl.get_selected_srtp_profile().decode() if connected else None})
    if not connected:
        return 2

    ssrc = bytes([1, 2, 3, 4])
    receiver_report = bytes([0x80, 201, 0x00, 0x01]) + ssrc
    deadline = loop.time() + 10
    sequence = 1
    while loop.time() < deadline:
        rtp = (bytes([0x80, 111]) + sequence.to_bytes(2, "big")
               + (sequence * 960).to_bytes(4, "big") + ssrc + b"hello from aiortc")
        await dtls._send_rtp(rtp)
        await dtls._send_rtp(receiver_report)
        sequence += 1
        try:
            data = await asyncio.wait_for(media_queue.get(), 0.1)
        except asyncio.TimeoutError:
            continue
        emit({"received": dtls._rx_srtp.unprotect(data).hex()})
        await dtls.stop()
        await asyncio.sleep(0.05)
        return 0
    emit({"state": "no media from peer"})
    return 3

sys.exit(asyncio.run(main()))
"""#
}

/// A UDP socket on 127.0.0.1 with a short receive timeout, for the interop test.
final class DTLSLoopbackSocket {
    private let fd: Int32
    let port: UInt16

    init() throws {
        let descriptor = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        guard descriptor >= 0 else { throw DTLSError.invalidConfiguration("socket() failed") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &length) }
        }
        guard bound == 0, named == 0 else {
            Glibc.close(descriptor)
            throw DTLSError.invalidConfiguration("bind/getsockname failed")
        }
        var timeout = timeval(tv_sec: 0, tv_usec: 20_000)
        setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        fd = descriptor
        port = UInt16(bigEndian: address.sin_port)
    }

    func send(_ bytes: [UInt8], toPort port: Int) {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(truncatingIfNeeded: port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        _ = bytes.withUnsafeBytes { payload in
            withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(fd, payload.baseAddress, payload.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        }
    }

    /// One datagram, or nil after the 20 ms timeout.
    func receive(into buffer: inout [UInt8]) -> [UInt8]? {
        let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        return count > 0 ? Array(buffer[0..<count]) : nil
    }

    func close() { Glibc.close(fd) }
}

func dtlsRunToolStatus(_ path: String, _ arguments: [String]) throws -> Int32 {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    process.standardOutput = FileHandle.nullDevice
    process.standardError = FileHandle.nullDevice
    try process.run()
    process.waitUntilExit()
    return process.terminationStatus
}
