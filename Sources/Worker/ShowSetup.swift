import AWSCore
import ControlPlane
import Foundation
import Logging
import Redaction
import ShowControl
import Tracklist

/// What the show needs beyond the environment, looked up once at start: stage endpoints (flags,
/// else GetStage, else the token's claims), the ingest (explicit, else the channel's through IVS)
/// and the tracklist (TRACKLIST_ID, else the show's).
struct ShowSetup {
    var eventsURL: String?
    var whipURL: String?
    var output: SecretString
    var tracklist: TracklistSource?

    struct Failure: Error, CustomStringConvertible {
        let description: String
        let exitCode: Int32
    }

    static func resolve(config: WorkerConfig, show: ShowRecord, plane: ControlPlane, environment env: [String: String],
                        logger: Logger) throws(Failure) -> ShowSetup {
        var events = config.eventsURL, whip = config.whipURL
        let needsIVS = config.ingest == nil || ((events == nil || whip == nil) && (config.stageArn ?? show.stageArn) != nil)
        var aws: AWSClient?
        if needsIVS {
            do {
                aws = AWSClient(environment: try AWSEnvironment.fromEnvironment(env),
                                credentials: CredentialsProviderChain.standard(environment: env, logger: logger), logger: logger)
            } catch {
                throw Failure(description: "AWS_REGION: \(error.message)", exitCode: 2)
            }
        }
        if events == nil || whip == nil, let arn = config.stageArn ?? show.stageArn, let aws {
            do {
                let stage = try IVSRealTimeClient(client: aws).getStage(arn: arn)
                events = events ?? stage.endpoints.events
                whip = whip ?? stage.endpoints.whip
            } catch {
                // The token's claims may still carry the endpoints; StageJoin says so if not.
                logger.warning("GetStage failed; using the token's endpoints", metadata: ["error": .string("\(error)")])
            }
        }

        let output: SecretString
        if let explicit = config.ingest {
            output = explicit
        } else {
            guard let channel = config.channelArn ?? show.channelArn, let aws else {
                throw Failure(description: "INGEST_URL: no ingest: set INGEST_URL and STREAM_KEY, or CHANNEL_ARN (or the show's channelArn)", exitCode: 2)
            }
            do {
                let ivs = IVSClient(client: aws)
                let ingest = try ivs.getChannel(arn: channel).ingestEndpoint
                let key = try ivs.streamKey(channelArn: channel).value
                Secrets.register(key.revealed)
                output = SecretString("rtmps://\(ingest):443/app/\(key.revealed)")
            } catch {
                throw Failure(description: "CHANNEL_ARN: cannot look up the ingest: \(error)", exitCode: 1)
            }
        }

        var tracklist: TracklistSource?
        if let id = config.control.tracklistId ?? show.tracklistId {
            do {
                let record = try plane.loadTracklist(id: id, variable: config.control.tracklistId != nil ? "TRACKLIST_ID" : "tracklistId")
                tracklist = TracklistSource(tracks: record.tracks, loop: record.loop, resolver: try plane.makeTrackFetcher())
            } catch {
                throw Failure(description: error.description, exitCode: error.exitCode)
            }
        }
        return ShowSetup(eventsURL: events, whipURL: whip, output: output, tracklist: tracklist)
    }
}
