import CFFmpeg

/// An FFmpeg call that failed: the operation we attempted plus FFmpeg's own text for the code.
public struct FFmpegError: Error, CustomStringConvertible, Sendable {
    public let code: Int32
    public let operation: String
    public init(_ code: Int32, _ operation: String) { self.code = code; self.operation = operation }
    public var description: String { "\(operation): \(FFmpegError.text(code))" }

    public static func text(_ code: Int32) -> String {
        var buffer = [CChar](repeating: 0, count: 128)
        _ = cff_error_string(code, &buffer, buffer.count)
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
    public var isEOF: Bool { code == cff_eof() }
    public var isAgain: Bool { code == cff_eagain() }
}

/// Throws `FFmpegError` for a negative return code; returns it otherwise.
@discardableResult @inlinable
public func ffCheck(_ code: Int32, _ operation: @autoclosure () -> String) throws -> Int32 {
    if code < 0 { throw FFmpegError(code, operation()) }
    return code
}
