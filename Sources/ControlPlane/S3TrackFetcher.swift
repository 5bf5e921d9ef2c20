import AWSCore
import Foundation
import Logging
import Tracklist

/// Turns `.s3(bucket:key:)` tracks into local files: GetObject into a private temp folder,
/// at most `maxBytesPerFile` per object and `maxFilesOnDisk` files kept (least recently used
/// deleted first), transient failures retried with backoff. A missing or refused object throws
/// at once, so the player skips that track with a warning. Local `.file` tracks pass through.
///
/// The player asks for the next track while the current one plays (its prefetch queue), so the
/// download happens ahead of the track change. A deleted file that a decoder still has open
/// stays readable (POSIX), so eviction never cuts a playing track short.
public final class S3TrackFetcher: TrackFileResolver, @unchecked Sendable {
    public static let defaultMaxBytes = 200 << 20

    /// One finished download.
    public struct Download: Sendable, Equatable {
        public var location: TrackLocation
        public var path: String
        public var bytes: Int
        public var attempts: Int
        /// Wall-clock time the file was complete.
        public var finishedAt: Date
    }

    public let directory: String
    public let maxBytesPerFile: Int
    public let maxFilesOnDisk: Int
    private let s3: S3Client
    private let retry: RetryPolicy
    private let logger: Logger

    private let lock = NSLock()
    // Guarded by `lock`.
    private var cached: [(location: TrackLocation, path: String)] = []  // most recently used last
    private var finished: [Download] = []
    private var counter = 0

    /// - Parameters:
    ///   - directory: where files go; a new private folder under the temp directory by default.
    ///   - retry: the fetcher's own attempts around the client's (which retries quickly itself):
    ///     longer waits, for an S3 or network hiccup of a few seconds.
    public init(s3: S3Client, directory: String? = nil, maxBytesPerFile: Int = defaultMaxBytes, maxFilesOnDisk: Int = 3,
                retry: RetryPolicy = RetryPolicy(maxAttempts: 4, baseDelay: 0.5, maxDelay: 4),
                logger: Logger = Logger(label: "shelcaster.tracks")) throws {
        self.s3 = s3
        self.maxBytesPerFile = max(1, maxBytesPerFile)
        self.maxFilesOnDisk = max(2, maxFilesOnDisk)
        self.retry = retry
        self.logger = logger
        if let directory {
            self.directory = directory
        } else {
            self.directory = FileManager.default.temporaryDirectory
                .appendingPathComponent("shelcaster-tracks-\(UUID().uuidString.prefix(8))").path
        }
        try FileManager.default.createDirectory(atPath: self.directory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
    }

    /// Downloads so far, in order.
    public var downloads: [Download] { lock.withLock { finished } }
    /// Files currently kept.
    public var filesOnDisk: [String] { lock.withLock { cached.map(\.path) } }

    /// Deletes every downloaded file and the folder.
    public func removeAll() {
        lock.withLock { cached.removeAll() }
        try? FileManager.default.removeItem(atPath: directory)
    }

    public func localPath(for location: TrackLocation) throws -> String {
        guard case .s3(let bucket, let key) = location else {
            if case .file(let path) = location { return path }
            throw TrackResolveError(location: location, reason: "unsupported location")
        }
        if let hit = lock.withLock({ () -> String? in
            guard let i = cached.firstIndex(where: { $0.location == location }) else { return nil }
            let entry = cached.remove(at: i)
            guard FileManager.default.fileExists(atPath: entry.path) else { return nil }
            cached.append(entry)
            return entry.path
        }) {
            return hit
        }
        let path = lock.withLock { () -> String in
            counter += 1
            return directory + "/" + String(format: "%04d-", counter) + Self.safeName(key)
        }
        var attempt = 0
        while true {
            attempt += 1
            do throws(AWSError) {
                let info = try s3.getObject(bucket: bucket, key: key, toFile: path, maxBytes: maxBytesPerFile)
                let evicted = lock.withLock { () -> [String] in
                    cached.append((location, path))
                    finished.append(Download(location: location, path: path, bytes: info.bytes, attempts: attempt, finishedAt: Date()))
                    var out: [String] = []
                    while cached.count > maxFilesOnDisk { out.append(cached.removeFirst().path) }
                    return out
                }
                for p in evicted { try? FileManager.default.removeItem(atPath: p) }
                logger.debug("tracklist: downloaded \(location) (\(info.bytes) bytes)")
                return path
            } catch {
                try? FileManager.default.removeItem(atPath: path)
                if error.isNotFound {
                    throw TrackResolveError(location: location, reason: "not found in S3 (\(error.code))")
                }
                if error.isAccessDenied {
                    throw TrackResolveError(location: location, reason: "access denied by S3 (\(error.code))")
                }
                if error.code == "ResponseTooLarge" {
                    throw TrackResolveError(location: location, reason: "larger than the \(maxBytesPerFile >> 20) MB limit per track")
                }
                guard error.isRetryable, attempt < retry.maxAttempts else {
                    throw TrackResolveError(location: location, reason: "download failed after \(attempt) attempt(s): \(error)")
                }
                let delay = retry.delay(forRetry: attempt)
                logger.warning("tracklist: downloading \(location) failed, retrying in \(String(format: "%.1f", delay)) s: \(error)")
                Thread.sleep(forTimeInterval: delay)
            }
        }
    }

    /// The key's last component, reduced to safe characters, extension kept (it helps the
    /// demuxer probe), and bounded in length.
    static func safeName(_ key: String) -> String {
        let last = key.split(separator: "/").last.map(String.init) ?? "track"
        let cleaned = String(last.unicodeScalars.map { s -> Character in
            let v = s.value
            let ok = (v >= 0x30 && v <= 0x39) || (v >= 0x41 && v <= 0x5A) || (v >= 0x61 && v <= 0x7A) || v == 0x2E || v == 0x2D || v == 0x5F
            return ok ? Character(s) : "_"
        })
        let trimmed = cleaned.hasPrefix(".") ? "_" + cleaned.dropFirst() : cleaned
        return trimmed.count > 80 ? String(trimmed.suffix(80)) : (trimmed.isEmpty ? "track" : trimmed)
    }
}

extension S3TrackFetcher {
    /// Downloads the first track that can be fetched (within `maxTracks`), so a run can start
    /// with music ready. Returns its index, or nil when none could be had.
    @discardableResult
    public func prefetchFirstPlayable(of tracks: [Track], maxTracks: Int = 5) -> Int? {
        for (i, t) in tracks.prefix(maxTracks).enumerated() {
            do {
                _ = try localPath(for: t.location)
                return i
            } catch {
                logger.warning("tracklist: track \(i + 1) '\(t.title)' cannot be fetched: \(error)")
            }
        }
        return nil
    }
}
