import Foundation

/// A service as the signer and the endpoint resolver need it.
public struct AWSService: Sendable, Hashable, CustomStringConvertible {
    /// botocore's name ("ivs-realtime"), used in messages.
    public let id: String
    /// SigV4 signing name (ivs-realtime signs as "ivs").
    public let signingName: String
    /// First label of the default host name.
    public let endpointPrefix: String
    /// Suffix of its AWS_ENDPOINT_URL_<SUFFIX> variable (the service id upper-cased, blanks and '-' as '_').
    public let environmentSuffix: String

    public init(id: String, signingName: String, endpointPrefix: String, environmentSuffix: String) {
        self.id = id
        self.signingName = signingName
        self.endpointPrefix = endpointPrefix
        self.environmentSuffix = environmentSuffix
    }

    public static let dynamodb = AWSService(id: "dynamodb", signingName: "dynamodb", endpointPrefix: "dynamodb", environmentSuffix: "DYNAMODB")
    public static let s3 = AWSService(id: "s3", signingName: "s3", endpointPrefix: "s3", environmentSuffix: "S3")
    public static let ivs = AWSService(id: "ivs", signingName: "ivs", endpointPrefix: "ivs", environmentSuffix: "IVS")
    public static let ivsRealTime = AWSService(id: "ivs-realtime", signingName: "ivs", endpointPrefix: "ivsrealtime", environmentSuffix: "IVS_REALTIME")

    public var description: String { id }
}

public struct AWSEndpoint: Sendable, Equatable {
    /// scheme://host[:port][/base], no trailing slash.
    public let url: String
    /// Set from AWS_ENDPOINT_URL(_<SERVICE>) (S3 then uses path-style addressing).
    public let isOverride: Bool
}

/// Region and endpoints, read from the environment the way the AWS SDKs read it.
public struct AWSEnvironment: Sendable {
    public let region: String
    public let variables: [String: String]

    /// `variables` supplies the endpoint overrides (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_<SERVICE>).
    public init(region: String, variables: [String: String] = [:]) throws(AWSError) {
        guard Self.isValidRegion(region) else {
            throw AWSError(kind: .configuration, code: "InvalidRegion", message: "region \"\(region.prefix(40))\" is not a valid AWS region name")
        }
        self.region = region
        self.variables = variables
    }

    /// Region from AWS_REGION, else AWS_DEFAULT_REGION.
    public static func fromEnvironment(_ env: [String: String] = ProcessInfo.processInfo.environment) throws(AWSError) -> AWSEnvironment {
        let region = [env["AWS_REGION"], env["AWS_DEFAULT_REGION"]].compactMap { $0 }.first { !$0.isEmpty }
        guard let region else {
            throw AWSError(kind: .configuration, code: "MissingRegion", message: "set AWS_REGION (or AWS_DEFAULT_REGION)")
        }
        return try AWSEnvironment(region: region, variables: env)
    }

    static func isValidRegion(_ r: String) -> Bool {
        !r.isEmpty && r.count <= 64 && r.utf8.allSatisfy { ($0 >= 0x61 && $0 <= 0x7A) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2D }
    }

    public var dnsSuffix: String { region.hasPrefix("cn-") ? "amazonaws.com.cn" : "amazonaws.com" }

    /// AWS_ENDPOINT_URL_<SERVICE>, else AWS_ENDPOINT_URL, else https://<prefix>.<region>.amazonaws.com.
    /// AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true disables the overrides, as in the SDKs.
    public func endpoint(for service: AWSService) throws(AWSError) -> AWSEndpoint {
        let ignore = variables["AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"]?.lowercased() == "true"
        if !ignore {
            for name in ["AWS_ENDPOINT_URL_\(service.environmentSuffix)", "AWS_ENDPOINT_URL"] {
                guard let raw = variables[name], !raw.isEmpty else { continue }
                guard let url = HTTPURL(raw), url.query == nil else {
                    throw AWSError(kind: .configuration, code: "InvalidEndpoint",
                                   message: "\(name) is not an http(s) URL without a query")
                }
                var base = raw
                while base.hasSuffix("/") { base.removeLast() }
                return AWSEndpoint(url: base, isOverride: true)
            }
        }
        return AWSEndpoint(url: "https://\(service.endpointPrefix).\(region).\(dnsSuffix)", isOverride: false)
    }
}
