import COpus

/// A libopus failure (or a packet/argument we refuse before calling libopus), with libopus's own text.
public struct OpusError: Error, Sendable, Equatable, CustomStringConvertible {
    /// libopus error code (`OPUS_BAD_ARG`, `OPUS_INVALID_PACKET`, ...); always negative.
    public let code: Int32
    /// What we were doing, e.g. "decode" or "packet parse".
    public let operation: String
    /// `opus_strerror(code)`, plus detail where we have some.
    public let message: String

    public init(code: Int32, operation: String, detail: String? = nil) {
        self.code = code
        self.operation = operation
        let text = String(cString: opus_strerror(code))
        self.message = detail.map { "\(text) (\($0))" } ?? text
    }

    public var description: String { "opus \(operation): \(message)" }

    public static let badArgument = OPUS_BAD_ARG
    public static let bufferTooSmall = OPUS_BUFFER_TOO_SMALL
    public static let invalidPacket = OPUS_INVALID_PACKET

    /// The packet itself is corrupt or empty (as opposed to a caller mistake or an internal failure).
    public var isInvalidPacket: Bool { code == OPUS_INVALID_PACKET }
}

/// Throws for a negative libopus return value, passes a non-negative one through.
@inline(__always) func opusCheck(_ ret: Int32, _ operation: String) throws -> Int {
    if ret < 0 { throw OpusError(code: ret, operation: operation) }
    return Int(ret)
}
