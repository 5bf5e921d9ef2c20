// swift-tools-version:6.0
import PackageDescription

// One job per module; C libraries only through the C* system-library targets.
let package = Package(
    name: "shelcaster-composer",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "shelcaster-composer", targets: ["ShelcasterComposer"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
    ],
    targets: [
        // C shims
        .systemLibrary(name: "CFFmpeg", pkgConfig: "libavformat libavcodec libavfilter libswresample libswscale libavutil",
                       providers: [.apt(["libavformat-dev", "libavcodec-dev", "libavfilter-dev", "libswresample-dev", "libswscale-dev"])]),
        .systemLibrary(name: "COpus", pkgConfig: "opus", providers: [.apt(["libopus-dev"])]),
        .systemLibrary(name: "CSRTP", pkgConfig: "libsrtp2", providers: [.apt(["libsrtp2-dev"])]),
        .systemLibrary(name: "COpenSSL", pkgConfig: "openssl", providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),

        // Media pipeline
        .target(name: "AudioCore"),
        // Secret values that must never reach a message: one registry for the whole process.
        .target(name: "Redaction"),
        .target(name: "FFmpegSupport", dependencies: ["CFFmpeg", "Redaction"]),
        .target(name: "PacketCapture"),
        .target(name: "RTP"),
        .target(name: "OpusCodec", dependencies: ["COpus", "AudioCore"]),
        .target(name: "JitterBuffer", dependencies: ["RTP", "OpusCodec", "AudioCore"]),
        .target(name: "Tracklist", dependencies: ["CFFmpeg", "FFmpegSupport", "AudioCore",
                                                  .product(name: "Logging", package: "swift-log")]),
        .target(name: "Routing"),
        .target(name: "Mixer", dependencies: ["CFFmpeg", "FFmpegSupport", "AudioCore", "Routing"]),
        .target(name: "ProgramOutput", dependencies: ["CFFmpeg", "FFmpegSupport", "AudioCore"]),
        .target(name: "ShowControl", dependencies: ["Routing", "Tracklist"]),
        .target(name: "LocalRun", dependencies: ["ShowControl", "PacketCapture", "RTP", "OpusCodec", "JitterBuffer", "Tracklist", "Routing",
                                                 "Mixer", "ProgramOutput", "AudioCore",
                                                 .product(name: "Logging", package: "swift-log")]),

        // Control plane (AWS over libcurl)
        .target(name: "HTTPClient", dependencies: ["CCurl", "Redaction"]),
        .target(name: "AWSCore", dependencies: ["HTTPClient", "COpenSSL", .product(name: "Logging", package: "swift-log")]),
        .target(name: "DynamoDB", dependencies: ["AWSCore", "HTTPClient"]),
        .target(name: "ControlPlane", dependencies: ["AWSCore", "DynamoDB", "HTTPClient", "Routing", "Tracklist", "AudioCore", "ShowControl",
                                                     .product(name: "Logging", package: "swift-log")]),

        // WebRTC receive stack, one protocol a module
        .target(name: "SDP"),
        .target(name: "STUN", dependencies: ["COpenSSL"]),
        .target(name: "ICE", dependencies: ["STUN", "RTP", .product(name: "Logging", package: "swift-log")]),
        .target(name: "DTLS", dependencies: ["COpenSSL", "SRTP"]),
        .target(name: "SRTP", dependencies: ["CSRTP"]),
        // One subscription's media path: ICE + DTLS + SRTP + RTCP → decrypted RTP.
        .target(name: "StageMedia", dependencies: ["ICE", "DTLS", "SRTP", "SDP", "STUN", "RTP",
                                                   .product(name: "Logging", package: "swift-log")]),
        // The stage: events WebSocket, WHIP subscribe, one subscription per publisher, the live mix.
        .target(name: "StageClient", dependencies: ["StageMedia", "ICE", "HTTPClient", "COpenSSL", "SDP", "RTP", "JitterBuffer", "Tracklist",
                                                    "Mixer", "ProgramOutput", "Routing", "ShowControl", "AudioCore",
                                                    "PacketCapture", "FFmpegSupport",
                                                    .product(name: "Logging", package: "swift-log")]),

        // The worker's own services: health endpoints, log format.
        .target(name: "HealthServer", dependencies: ["ShowControl", .product(name: "Logging", package: "swift-log")]),
        .target(name: "WorkerLogging", dependencies: ["Redaction", .product(name: "Logging", package: "swift-log")]),

        // `run`: the ECS task, its Services in one ServiceGroup.
        .target(name: "Worker", dependencies: ["ControlPlane", "StageClient", "HealthServer", "ShowControl", "AWSCore",
                                               "ProgramOutput", "Redaction", "Tracklist",
                                               .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                                               .product(name: "Logging", package: "swift-log")]),

        .executableTarget(name: "ShelcasterComposer", dependencies: [
            "Worker",
            "LocalRun", "AudioCore", "FFmpegSupport", "HealthServer", "WorkerLogging", "Redaction", "StageClient", "ControlPlane", "ShowControl", "Routing",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),

        .testTarget(name: "ShelcasterTests", dependencies: [
            "AudioCore", "PacketCapture", "RTP", "OpusCodec", "JitterBuffer", "Tracklist", "Routing",
            "Mixer", "ProgramOutput", "LocalRun", "FFmpegSupport",
            "ShowControl", "HTTPClient", "AWSCore", "DynamoDB", "ControlPlane", "SDP", "STUN", "ICE", "DTLS", "SRTP",
            "StageMedia", "StageClient", "HealthServer", "WorkerLogging", "Redaction", "Worker",
        ]),
    ],
    swiftLanguageModes: [.v6]
)
