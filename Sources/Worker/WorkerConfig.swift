import ControlPlane
import Foundation
import ProgramOutput
import Redaction
import StageClient

/// Everything `run` reads from the environment (DATA-MODEL.md), checked before anything connects:
/// a missing or invalid value is exit 2 with the variable's name.
public struct WorkerConfig: Sendable {
    public var control: ControlPlaneConfig
    public var stageToken: SecretString
    public var stageArn: String?
    public var eventsURL: String?
    public var whipURL: String?
    /// Explicit ingest (`INGEST_URL` + `STREAM_KEY`); nil → looked up through IVS from the channel.
    public var ingest: SecretString?
    public var channelArn: String?
    public var ingestCAFile: String?
    public var healthPort: UInt16

    public static func fromEnvironment(_ env: [String: String]) throws(ConfigError) -> WorkerConfig {
        let control = try ControlPlaneConfig.fromEnvironment(env)
        func value(_ name: String) -> String? { env[name].flatMap { $0.isEmpty ? nil : $0 } }

        guard let token = value("STAGE_TOKEN") else {
            throw ConfigError(variable: "STAGE_TOKEN", problem: "is required (a participant token with subscribe capability)")
        }
        Secrets.register(token)
        let parsed: StageToken
        do { parsed = try StageToken(token) } catch {
            throw ConfigError(variable: "STAGE_TOKEN", problem: "not a participant token: \(error)")
        }
        if parsed.allowSubscribe == false { throw ConfigError(variable: "STAGE_TOKEN", problem: "the token does not allow subscribing") }
        if parsed.isExpired() { throw ConfigError(variable: "STAGE_TOKEN", problem: "the token has expired") }
        for name in ["STAGE_EVENTS_URL", "STAGE_WHIP_URL"] {
            if let u = value(name), URL(string: u)?.scheme == nil {
                throw ConfigError(variable: name, problem: "not a URL")
            }
        }

        var ingest: SecretString?
        switch (value("INGEST_URL"), value("STREAM_KEY")) {
        case let (url?, key?):
            Secrets.register(key)
            let base = url.hasSuffix("/") ? url : url + "/"
            let full = base + key
            let target: OutputTarget
            do { target = try OutputTarget.parse(full) } catch {
                throw ConfigError(variable: "INGEST_URL", problem: "\(error)")
            }
            guard case .stream = target else {
                throw ConfigError(variable: "INGEST_URL", problem: "expected an rtmp:// or rtmps:// URL")
            }
            ingest = SecretString(full)
        case (_?, nil):
            throw ConfigError(variable: "STREAM_KEY", problem: "is required with INGEST_URL")
        case (nil, _?):
            throw ConfigError(variable: "INGEST_URL", problem: "is required with STREAM_KEY")
        case (nil, nil):
            ingest = nil
        }
        if let ca = value("INGEST_CA_FILE"), !FileManager.default.isReadableFile(atPath: ca) {
            throw ConfigError(variable: "INGEST_CA_FILE", problem: "\(ca) cannot be read")
        }
        var port: UInt16 = 8080
        if let p = value("HEALTH_PORT") {
            guard let n = UInt16(p) else { throw ConfigError(variable: "HEALTH_PORT", problem: "\"\(p)\" is not a port number (0-65535)") }
            port = n
        }
        return WorkerConfig(control: control, stageToken: SecretString(token), stageArn: value("STAGE_ARN"),
                            eventsURL: value("STAGE_EVENTS_URL"), whipURL: value("STAGE_WHIP_URL"), ingest: ingest,
                            channelArn: value("CHANNEL_ARN"), ingestCAFile: value("INGEST_CA_FILE"), healthPort: port)
    }
}
