import AWSCore
import DynamoDB
import Foundation
import Logging

/// A failure of the control plane, with the exit code LOCAL-RUN.md gives it.
public struct ControlPlaneError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// The environment is wrong (names the variable): exit 2.
        case configuration
        /// A record the configuration points at does not exist (names the variable): exit 2.
        case notFound
        /// Another task serves this show: exit 1.
        case fenced
        /// AWS could not be reached or refused the call: exit 1.
        case unavailable
    }
    public let kind: Kind
    public let message: String
    public init(_ kind: Kind, _ message: String) { self.kind = kind; self.message = message }
    public var description: String { Secrets.redact(message) }
    public var exitCode: Int32 { kind == .configuration || kind == .notFound ? 2 : 1 }

    static func config(_ e: ConfigError) -> ControlPlaneError { .init(.configuration, e.description) }
}

/// The worker's AWS side for one show: clients built from the environment, the show record,
/// the tracklist, and the `ShowControl` that polls routing and writes heartbeats.
public final class ControlPlane: Sendable {
    public let config: ControlPlaneConfig
    /// Routing polls, heartbeats, participant reads: one attempt and a short timeout, since the
    /// next tick is the retry (and a hung call must not hold up the ticks after it).
    public let quick: DynamoDBClient
    /// Start-up reads, the claim and the final status: a few retries.
    public let retrying: DynamoDBClient
    public let s3: S3Client
    public let logger: Logger

    /// Region, endpoints and credentials from `environment` (AWS_REGION, AWS_ENDPOINT_URL…,
    /// AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the ECS container credentials).
    public convenience init(config: ControlPlaneConfig, environment: [String: String], logger: Logger) throws(ControlPlaneError) {
        let aws: AWSEnvironment
        do throws(AWSError) {
            aws = try AWSEnvironment.fromEnvironment(environment)
        } catch {
            let variable = error.code == "InvalidEndpoint" ? "AWS_ENDPOINT_URL" : "AWS_REGION"
            throw .config(ConfigError(variable: variable, problem: error.message))
        }
        for name in ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_S3"] {
            do throws(AWSError) {
                _ = try aws.endpoint(for: name.hasSuffix("_S3") ? .s3 : .dynamodb)
            } catch {
                throw .config(ConfigError(variable: name, problem: error.message))
            }
        }
        let id = environment["AWS_ACCESS_KEY_ID"].map { !$0.isEmpty } ?? false
        let secret = environment["AWS_SECRET_ACCESS_KEY"].map { !$0.isEmpty } ?? false
        let container = ["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"]
            .contains { environment[$0].map { !$0.isEmpty } ?? false }
        if id != secret {
            throw .config(ConfigError(variable: id ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID",
                                      problem: "not set while \(id ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY") is"))
        }
        if !id && !container {
            throw .config(ConfigError(variable: "AWS_ACCESS_KEY_ID",
                                      problem: "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run in ECS (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI)"))
        }
        let credentials = CredentialsProviderChain.standard(environment: environment, logger: logger)
        self.init(config: config, aws: aws, credentials: credentials, logger: logger)
    }

    public init(config: ControlPlaneConfig, aws: AWSEnvironment, credentials: any CredentialsProvider, logger: Logger) {
        self.config = config
        self.logger = logger
        // A poll that takes longer than a few intervals is worth abandoning for the next one.
        let quickTimeout = min(5, max(1, Double(config.routingPollMs) * 4 / 1000))
        quick = DynamoDBClient(client: AWSClient(environment: aws, credentials: credentials, retry: .none,
                                                 timeout: quickTimeout, logger: logger))
        retrying = DynamoDBClient(client: AWSClient(environment: aws, credentials: credentials,
                                                    retry: RetryPolicy(maxAttempts: 3, baseDelay: 0.1, maxDelay: 1),
                                                    timeout: 5, logger: logger))
        // S3TrackFetcher retries with its own, longer backoff on top of these.
        s3 = S3Client(client: AWSClient(environment: aws, credentials: credentials,
                                        retry: RetryPolicy(maxAttempts: 2, baseDelay: 0.2, maxDelay: 1), timeout: 30, logger: logger),
                      downloadTimeout: 300)
    }

    /// The show item (consistent read). A missing item is `.notFound` naming SHOW_ID.
    public func readShow() throws(ControlPlaneError) -> ShowRecord {
        let item: DynamoItem?
        do throws(DynamoDBError) {
            item = try retrying.getItem(table: config.showsTable, key: ["showId": .s(config.showId)])
        } catch {
            throw ControlPlaneError(.unavailable, "cannot read show \(config.showId) from \(config.showsTable): \(error)")
        }
        guard let item else {
            throw ControlPlaneError(.notFound, "SHOW_ID: no show \"\(config.showId)\" in table \(config.showsTable)")
        }
        return ShowRecord(item: item, showId: config.showId)
    }

    /// The tracklist record. `variable` names where the id came from, for the not-found message.
    public func loadTracklist(id: String, variable: String = "TRACKLIST_ID") throws(ControlPlaneError) -> TracklistRecord {
        let item: DynamoItem?
        do throws(DynamoDBError) {
            item = try retrying.getItem(table: config.tracklistsTable, key: ["tracklistId": .s(id)])
        } catch {
            throw ControlPlaneError(.unavailable, "cannot read tracklist \(id) from \(config.tracklistsTable): \(error)")
        }
        guard let item else {
            throw ControlPlaneError(.notFound, "\(variable): no tracklist \"\(id)\" in table \(config.tracklistsTable)")
        }
        let record = TracklistRecord(item: item, tracklistId: id, defaultBucket: config.tracklistBucket)
        for w in record.warnings { logger.warning("tracklist \(id): \(w)") }
        return record
    }

    public func makeTrackFetcher(maxBytesPerFile: Int = S3TrackFetcher.defaultMaxBytes) throws(ControlPlaneError) -> S3TrackFetcher {
        do {
            return try S3TrackFetcher(s3: s3, maxBytesPerFile: maxBytesPerFile, logger: logger)
        } catch {
            throw ControlPlaneError(.unavailable, "cannot create a download folder for tracks: \(error)")
        }
    }

    public func makeShowControl(show: ShowRecord?) -> DynamoShowControl {
        DynamoShowControl(config: config, quick: quick, retrying: retrying, show: show, logger: logger)
    }
}
