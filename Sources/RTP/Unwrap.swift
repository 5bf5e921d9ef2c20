/// Extends 16-bit RTP sequence numbers to a monotonic Int64 line.
///
/// Each number is placed at the position nearest (within ±32767) to the highest value seen so far,
/// so wraps (65535 → 0) and packets reordered across a wrap both land correctly. The first number
/// is taken as is; a packet older than it gets a smaller, possibly negative, value.
public struct SequenceUnwrapper: Sendable {
    /// Highest extended value returned so far.
    public private(set) var highest: Int64?

    public init() {}

    public mutating func unwrap(_ sequence: UInt16) -> Int64 {
        let value = peek(sequence)
        if value > highest ?? Int64.min { highest = value }
        return value
    }

    /// The extended value `sequence` would get, without recording it.
    public func peek(_ sequence: UInt16) -> Int64 {
        guard let highest else { return Int64(sequence) }
        let delta = Int16(bitPattern: sequence &- UInt16(truncatingIfNeeded: highest))
        return highest &+ Int64(delta)
    }
}

/// Extends 32-bit RTP timestamps to a monotonic Int64 line (same rule as `SequenceUnwrapper`,
/// with a ±2^31 window).
public struct TimestampUnwrapper: Sendable {
    public private(set) var highest: Int64?

    public init() {}

    public mutating func unwrap(_ timestamp: UInt32) -> Int64 {
        let value = peek(timestamp)
        if value > highest ?? Int64.min { highest = value }
        return value
    }

    public func peek(_ timestamp: UInt32) -> Int64 {
        guard let highest else { return Int64(timestamp) }
        let delta = Int32(bitPattern: timestamp &- UInt32(truncatingIfNeeded: highest))
        return highest &+ Int64(delta)
    }
}
