public struct IVSChannel: Sendable, Equatable {
    public var arn: String
    public var name: String?
    /// Host of the RTMPS ingest, e.g. "abcd.global-contribute.live-video.net".
    public var ingestEndpoint: String
    public var playbackUrl: String?
    public var type: String?
    public var latencyMode: String?
}

public struct IVSStreamKeySummary: Sendable, Equatable {
    public var arn: String
    public var channelArn: String?
}

/// A stream key. `value` is a `SecretString`: printing the key shows a mask.
public struct IVSStreamKey: Sendable, Equatable, CustomStringConvertible {
    public var arn: String
    public var channelArn: String?
    public var value: SecretString
    public var description: String { "IVSStreamKey(\(arn), value \(Secrets.mask))" }
}

/// Amazon IVS (REST-JSON; POST /GetChannel, /ListStreamKeys, /GetStreamKey).
public struct IVSClient: Sendable {
    public let client: AWSClient
    public init(client: AWSClient) { self.client = client }

    public func getChannel(arn: String) throws(AWSError) -> IVSChannel {
        let out = try client.callRestJSON(service: .ivs, operation: "GetChannel", path: "/GetChannel",
                                          body: .object(["arn": .string(arn)]))
        guard let ch = out["channel"], ch.objectValue != nil else { throw missing("GetChannel", "channel") }
        return try Self.channel(ch, operation: "GetChannel")
    }

    /// All stream keys of the channel (follows nextToken, at most 20 pages).
    public func listStreamKeys(channelArn: String) throws(AWSError) -> [IVSStreamKeySummary] {
        var keys: [IVSStreamKeySummary] = []
        var token: String?
        for _ in 0..<20 {
            var body: [String: JSONValue] = ["channelArn": .string(channelArn), "maxResults": .int(50)]
            if let token { body["nextToken"] = .string(token) }
            let out = try client.callRestJSON(service: .ivs, operation: "ListStreamKeys", path: "/ListStreamKeys", body: .object(body))
            guard let list = out["streamKeys"]?.arrayValue else { throw missing("ListStreamKeys", "streamKeys") }
            for item in list {
                guard let arn = item["arn"]?.stringValue else { throw missing("ListStreamKeys", "streamKeys[].arn") }
                keys.append(IVSStreamKeySummary(arn: arn, channelArn: item["channelArn"]?.stringValue))
            }
            token = out["nextToken"]?.stringValue
            if token?.isEmpty ?? true { break }
        }
        return keys
    }

    public func getStreamKey(arn: String) throws(AWSError) -> IVSStreamKey {
        let out = try client.callRestJSON(service: .ivs, operation: "GetStreamKey", path: "/GetStreamKey",
                                          body: .object(["arn": .string(arn)]))
        guard let value = out["streamKey"]?["value"]?.stringValue, !value.isEmpty else {
            throw missing("GetStreamKey", "streamKey.value")
        }
        return IVSStreamKey(arn: out["streamKey"]?["arn"]?.stringValue ?? arn,
                            channelArn: out["streamKey"]?["channelArn"]?.stringValue, value: SecretString(value))
    }

    /// The first stream key of the channel (a channel has exactly one).
    public func streamKey(channelArn: String) throws(AWSError) -> IVSStreamKey {
        guard let first = try listStreamKeys(channelArn: channelArn).first else {
            throw AWSError(kind: .service, code: "ResourceNotFoundException", message: "the channel has no stream key",
                           operation: "ivs ListStreamKeys")
        }
        return try getStreamKey(arn: first.arn)
    }

    /// CreateChannel (for local setups and tests); returns the channel and, when given, its key.
    public func createChannel(name: String, latencyMode: String = "LOW", type: String = "STANDARD") throws(AWSError) -> (IVSChannel, IVSStreamKey?) {
        let out = try client.callRestJSON(service: .ivs, operation: "CreateChannel", path: "/CreateChannel",
                                          body: .object(["name": .string(name), "latencyMode": .string(latencyMode), "type": .string(type)]))
        guard let ch = out["channel"] else { throw missing("CreateChannel", "channel") }
        let channel = try Self.channel(ch, operation: "CreateChannel")
        var key: IVSStreamKey?
        if let k = out["streamKey"], let arn = k["arn"]?.stringValue, let v = k["value"]?.stringValue {
            key = IVSStreamKey(arn: arn, channelArn: k["channelArn"]?.stringValue, value: SecretString(v))
        }
        return (channel, key)
    }

    static func channel(_ ch: JSONValue, operation: String) throws(AWSError) -> IVSChannel {
        guard let arn = ch["arn"]?.stringValue else { throw missing(operation, "channel.arn") }
        guard let ingest = ch["ingestEndpoint"]?.stringValue, !ingest.isEmpty else {
            throw missing(operation, "channel.ingestEndpoint")
        }
        return IVSChannel(arn: arn, name: ch["name"]?.stringValue, ingestEndpoint: ingest,
                          playbackUrl: ch["playbackUrl"]?.stringValue, type: ch["type"]?.stringValue,
                          latencyMode: ch["latencyMode"]?.stringValue)
    }
}

public struct IVSStageEndpoints: Sendable, Equatable {
    public var events: String?
    public var whip: String?
    public var rtmp: String?
    public var rtmps: String?
}

public struct IVSStage: Sendable, Equatable {
    public var arn: String
    public var name: String?
    public var activeSessionId: String?
    public var endpoints: IVSStageEndpoints
}

/// Amazon IVS real-time (ivsrealtime.<region>.amazonaws.com, signing name "ivs").
public struct IVSRealTimeClient: Sendable {
    public let client: AWSClient
    public init(client: AWSClient) { self.client = client }

    public func getStage(arn: String) throws(AWSError) -> IVSStage {
        let out = try client.callRestJSON(service: .ivsRealTime, operation: "GetStage", path: "/GetStage",
                                          body: .object(["arn": .string(arn)]))
        guard let stage = out["stage"], let stageArn = stage["arn"]?.stringValue else { throw missing("GetStage", "stage.arn") }
        let e = stage["endpoints"]
        return IVSStage(arn: stageArn, name: stage["name"]?.stringValue, activeSessionId: stage["activeSessionId"]?.stringValue,
                        endpoints: IVSStageEndpoints(events: e?["events"]?.stringValue, whip: e?["whip"]?.stringValue,
                                                     rtmp: e?["rtmp"]?.stringValue, rtmps: e?["rtmps"]?.stringValue))
    }
}

/// A 2xx answer without a field the caller needs. Names the field, never quotes the body.
func missing(_ operation: String, _ field: String) -> AWSError {
    let service = operation == "GetStage" ? "ivs-realtime" : "ivs"
    return AWSError(kind: .invalidResponse, code: "InvalidResponse", message: "\(operation) response has no \(field)",
                    operation: "\(service) \(operation)")
}
