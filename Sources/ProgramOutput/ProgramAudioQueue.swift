import AudioCore

/// A bounded queue of program audio between the mix thread and the output's connection thread.
///
/// Planar (left and right), already clipped, so the connection thread copies straight into the
/// encoder's frame. Audio is program-ordered and contiguous: the queue holds program frames
/// `head ..< end`. When a push would overflow it, the OLDEST frames are dropped (and counted), so
/// a slow or dead connection never makes the program fall behind: what is sent is always recent.
///
/// Not synchronised: its owner locks around every call. Storage is allocated once.
final class ProgramAudioQueue {
    let capacity: Int
    private let left: UnsafeMutablePointer<Float>
    private let right: UnsafeMutablePointer<Float>
    /// Ring index of the oldest frame.
    private var readIndex = 0
    /// Program frame of the oldest queued frame.
    private(set) var head: Int64 = 0
    private(set) var count = 0
    /// Frames dropped because the queue was full, over its lifetime.
    private(set) var droppedFrames: Int64 = 0

    /// Program frame just after the newest queued frame (= frames pushed so far).
    var end: Int64 { head &+ Int64(count) }

    init(capacityFrames: Int) {
        capacity = max(1, capacityFrames)
        left = .allocate(capacity: capacity)
        right = .allocate(capacity: capacity)
        left.initialize(repeating: 0, count: capacity)
        right.initialize(repeating: 0, count: capacity)
    }

    deinit {
        left.deallocate()
        right.deallocate()
    }

    /// Appends `frames` interleaved stereo frames (the next program frames), clipping to [-1, 1]
    /// and turning NaN into silence (the AAC encoder refuses non-finite input). Returns how many
    /// old frames were dropped to make room.
    @discardableResult
    func push(interleaved src: UnsafePointer<Float>, frames: Int) -> Int {
        guard frames > 0 else { return 0 }
        var dropped = 0
        var source = src
        var n = frames
        if n > capacity {
            // Only the newest `capacity` frames can be kept; the rest of this block is dropped too.
            let skip = n - capacity
            dropped += count
            dropOldest(count)
            head &+= Int64(skip)
            droppedFrames &+= Int64(skip)
            dropped += skip
            source += skip * 2
            n = capacity
        }
        let overflow = count + n - capacity
        if overflow > 0 {
            dropOldest(overflow)
            dropped += overflow
        }
        var write = (readIndex + count) % capacity
        for i in 0..<n {
            let l = source[2 * i], r = source[2 * i + 1]
            left[write] = l.isNaN ? 0 : min(max(l, -1), 1)
            right[write] = r.isNaN ? 0 : min(max(r, -1), 1)
            write += 1
            if write == capacity { write = 0 }
        }
        count += n
        return dropped
    }

    private func dropOldest(_ n: Int) {
        let k = min(n, count)
        readIndex = (readIndex + k) % capacity
        count -= k
        head &+= Int64(k)
        droppedFrames &+= Int64(k)
    }

    /// Removes up to `maxFrames` of the oldest frames into two planes; returns the program frame of
    /// the first one and how many were copied.
    func pop(maxFrames: Int, left outL: UnsafeMutablePointer<Float>, right outR: UnsafeMutablePointer<Float>)
        -> (start: Int64, frames: Int)
    {
        let n = min(maxFrames, count)
        let start = head
        guard n > 0 else { return (start, 0) }
        let first = min(n, capacity - readIndex)
        outL.update(from: left + readIndex, count: first)
        outR.update(from: right + readIndex, count: first)
        if first < n {
            outL.advanced(by: first).update(from: left, count: n - first)
            outR.advanced(by: first).update(from: right, count: n - first)
        }
        readIndex = (readIndex + n) % capacity
        count -= n
        head &+= Int64(n)
        return (start, n)
    }

    /// Empties the queue (the frames count as dropped: they were never sent).
    func discardAll() { dropOldest(count) }
}
