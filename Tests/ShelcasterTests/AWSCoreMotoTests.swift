import Foundation
import Testing
import AWSCore

/// S3 and IVS through our client against moto_server on loopback. moto does not check
/// signatures (those are covered by the SigV4 vectors); it has no IVS stream-key or
/// ivs-realtime APIs (covered with a stub in AWSCoreTests).
@Suite(.enabled(if: AWSTestKit.motoAvailable, "moto_server is not installed (pip install \"moto[server]\")"))
struct AWSCoreMotoTests {
    static let objectKey = "music/My Song+1 ü.mp3"

    @Test func s3GetObjectToFile() throws {
        let moto = try AWSMotoServer()
        defer { moto.stop() }
        try AWSTestKit.python("""
            import boto3, os
            s3 = boto3.client("s3", endpoint_url=os.environ["MOTO"], region_name="us-east-1")
            s3.create_bucket(Bucket="tracks")
            s3.put_object(Bucket="tracks", Key="\(Self.objectKey)", Body=bytes((i * 7 + 3) % 256 for i in range(200000)), ContentType="audio/mpeg")
            s3.put_object(Bucket="tracks", Key="empty.wav", Body=b"")
            """, environment: ["MOTO": moto.endpoint])
        let s3 = S3Client(client: try AWSTestKit.client(endpoint: moto.endpoint))
        let dir = try HTTPTestKit.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }

        let file = dir.appendingPathComponent("track.mp3").path
        let info = try s3.getObject(bucket: "tracks", key: Self.objectKey, toFile: file, maxBytes: 1 << 20)
        #expect(info.bytes == 200_000)
        #expect(info.contentType == "audio/mpeg")
        #expect(info.eTag?.isEmpty == false)
        let expected = (0..<200_000).map { UInt8(($0 * 7 + 3) % 256) }
        #expect(try [UInt8](Data(contentsOf: URL(fileURLWithPath: file))) == expected)

        let empty = dir.appendingPathComponent("empty.wav").path
        #expect(try s3.getObject(bucket: "tracks", key: "empty.wav", toFile: empty, maxBytes: 10).bytes == 0)
        #expect(FileManager.default.fileExists(atPath: empty))

        let missing = dir.appendingPathComponent("missing").path
        do {
            try s3.getObject(bucket: "tracks", key: "music/nope.mp3", toFile: missing, maxBytes: 1 << 20)
            Issue.record("expected NoSuchKey")
        } catch {
            #expect(error.code == "NoSuchKey")
            #expect(error.status == 404)
            #expect(error.isNotFound)
            #expect(!error.isRetryable)
            #expect(error.attempts == 1)
        }
        #expect(!FileManager.default.fileExists(atPath: missing))

        do {
            try s3.getObject(bucket: "no-such-bucket", key: "x", toFile: missing, maxBytes: 1 << 20)
            Issue.record("expected NoSuchBucket")
        } catch {
            #expect(error.code == "NoSuchBucket")
            #expect(error.isNotFound)
        }

        let capped = dir.appendingPathComponent("capped").path
        do {
            try s3.getObject(bucket: "tracks", key: Self.objectKey, toFile: capped, maxBytes: 100_000)
            Issue.record("expected ResponseTooLarge")
        } catch {
            #expect(error.code == "ResponseTooLarge")
            #expect(error.transport?.kind == .responseTooLarge)
            #expect(!error.isRetryable)
        }
        #expect(!FileManager.default.fileExists(atPath: capped))
    }

    @Test func ivsChannelLookup() throws {
        let moto = try AWSMotoServer()
        defer { moto.stop() }
        let ivs = IVSClient(client: try AWSTestKit.client(endpoint: moto.endpoint))
        let (created, key) = try ivs.createChannel(name: "show-channel")
        #expect(created.arn.hasPrefix("arn:aws:ivs:us-east-1:"))
        let k = try #require(key)
        #expect(k.value.revealed.hasPrefix("sk_us-east-1_"))
        #expect(!"\(k)".contains(k.value.revealed))

        // A channel made by boto3 is found by our client too.
        let boto = try AWSTestKit.python("""
            import boto3, os
            c = boto3.client("ivs", endpoint_url=os.environ["MOTO"], region_name="us-east-1")
            print(c.create_channel(name="boto-channel", latencyMode="NORMAL")["channel"]["arn"])
            """, environment: ["MOTO": moto.endpoint])
        let botoArn = try #require(boto.split(separator: "\n").last.map(String.init))

        let channel = try ivs.getChannel(arn: created.arn)
        #expect(channel.arn == created.arn)
        #expect(channel.name == "show-channel")
        #expect(channel.ingestEndpoint == "ingest.example.com")
        let other = try ivs.getChannel(arn: botoArn)
        #expect(other.name == "boto-channel")
        #expect(other.latencyMode == "NORMAL")

        do {
            _ = try ivs.getChannel(arn: "arn:aws:ivs:us-east-1:123456789012:channel/nonexistent")
            Issue.record("expected ResourceNotFoundException")
        } catch {
            #expect(error.code == "ResourceNotFoundException")
            #expect(error.isNotFound)
        }
    }
}
