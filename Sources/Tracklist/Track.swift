/// Where a track's audio lives. Local files play directly; other locations are turned into a local
/// path by a `TrackFileResolver` (an S3 fetcher downloads and hands over the downloaded file).
public enum TrackLocation: Sendable, Hashable, CustomStringConvertible {
    case file(String)
    case s3(bucket: String, key: String)

    public var description: String {
        switch self {
        case .file(let path): return path
        case .s3(let bucket, let key): return "s3://\(bucket)/\(key)"
        }
    }
}

/// One entry of a tracklist.
public struct Track: Sendable, Hashable {
    public var title: String
    public var location: TrackLocation

    public init(title: String, location: TrackLocation) {
        self.title = title
        self.location = location
    }

    /// A track read from a local file.
    public init(title: String, path: String) {
        self.init(title: title, location: .file(path))
    }
}

/// Turns a track location into a local file path.
///
/// Called on the player's prefetch queue, never on the mix thread, so it may block (e.g. while a
/// download finishes). Throwing skips the track (logged and counted like an unreadable file).
public protocol TrackFileResolver: Sendable {
    func localPath(for location: TrackLocation) throws -> String
}

public struct TrackResolveError: Error, CustomStringConvertible, Sendable, Equatable {
    public let location: TrackLocation
    public let reason: String
    public init(location: TrackLocation, reason: String) { self.location = location; self.reason = reason }
    public var description: String { "\(location): \(reason)" }
}

/// Plays local files as they are; has no way to fetch remote objects.
public struct LocalFileResolver: TrackFileResolver {
    public init() {}
    public func localPath(for location: TrackLocation) throws -> String {
        switch location {
        case .file(let path): return path
        case .s3: throw TrackResolveError(location: location, reason: "no S3 fetcher configured for this tracklist")
        }
    }
}
