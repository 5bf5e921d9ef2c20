import AudioCore
import Foundation
import JitterBuffer
import Routing
import RTP

// How a changing set of stage voices meets a mixer whose inputs are fixed at init.
//
// The mixer gets a fixed pool of voice slots, each an `AudioSource` that renders a participant's
// jitter buffer, or silence while unassigned. The mixer's inputs, and so the routing and meters by
// input, stay fixed for the whole show, so a join or leave touches only its own slot. An empty
// slot is at gain 0, which keeps it out of the mixer's gain graph (see `ProgramMixer`): it costs a
// silent render per block, no filtering. The pool is sized to IVS's publisher limit per stage,
// 12; a participant beyond it is warned about and waits for a free slot.
//
// Routing is per participant, the mixer's gains per input: `SlotRouting` rewrites the show's
// routing into one over slot ids, each slot a "caller" whose participant volume is exactly the
// gain the routing implies for the participant it holds (0 when empty or draining). The mixer
// then ramps slot gains click-free as usual, including to and from 0 on assignment.

/// RTP handed from a peer's thread to the mix thread. Only this queue is shared: the jitter buffer
/// (not thread-safe) is touched by the mix thread alone, which inserts a packet once program time
/// reaches its arrival — exactly what `local` does with a recording, so a replay mixes the same.
public final class PacketInbox: @unchecked Sendable {
    public struct Item: Sendable {
        /// Arrival in program frames (48 kHz since the mix started).
        public var arrival: Int64
        public var packet: RTPPacket
    }

    private let lock = NSLock()
    private var items: [Item] = []
    private var droppedCount = 0
    /// A stalled mix thread must not let the queue grow without bound (~40 s of 10 ms packets).
    public let capacity: Int

    public init(capacity: Int = 4096) {
        self.capacity = capacity
        items.reserveCapacity(64)
    }

    public func push(_ item: Item) {
        lock.lock()
        if items.count >= capacity {
            items.removeFirst(items.count - capacity + 1)
            droppedCount += 1
        }
        items.append(item)
        lock.unlock()
    }

    /// Moves everything queued to the end of `out`.
    public func take(into out: inout [Item]) {
        lock.lock()
        if !items.isEmpty {
            out.append(contentsOf: items)
            items.removeAll(keepingCapacity: true)
        }
        lock.unlock()
    }

    public var dropped: Int {
        lock.lock(); defer { lock.unlock() }
        return droppedCount
    }
}

/// Who a slot holds.
public struct SlotVoice: Sendable, Equatable {
    public var participantId: String
    public var userId: String?
    public var role: ParticipantRole
    public init(participantId: String, userId: String?, role: ParticipantRole) {
        self.participantId = participantId; self.userId = userId; self.role = role
    }
}

/// One mixer input: renders whichever jitter buffer the mix thread put in it, else silence.
final class VoiceSlot: AudioSource {
    var buffer: JitterBuffer?
    var isIdle: Bool { buffer == nil }
    func render(into out: UnsafeMutablePointer<Float>, frames: Int, at: Int64) {
        if let b = buffer { b.render(into: out, frames: frames, at: at) } else { out.update(repeating: 0, count: frames * AudioFormat.channels) }
    }
}

/// Slot assignments, shared by the session (assigns and releases) and the mix thread (frees a
/// released slot once its audio has drained). A generation counter tells the mix thread when to look.
public final class SlotTable: @unchecked Sendable {
    public struct Entry: Sendable {
        public var voice: SlotVoice
        public var inbox: PacketInbox
        /// Asked to go: the mix thread ramps it out, then frees the slot.
        public var released: Bool
    }

    private let lock = NSLock()
    private var entries: [Entry?]
    private var gen: UInt64 = 1

    public init(count: Int) { entries = Array(repeating: nil, count: max(1, count)) }

    public var count: Int { entries.count }

    public var generation: UInt64 {
        lock.lock(); defer { lock.unlock() }
        return gen
    }

    /// Puts `voice` in a free slot; nil when all are taken.
    public func assign(_ voice: SlotVoice, inbox: PacketInbox) -> Int? {
        lock.lock(); defer { lock.unlock() }
        guard let i = entries.firstIndex(where: { $0 == nil }) else { return nil }
        entries[i] = Entry(voice: voice, inbox: inbox, released: false)
        gen &+= 1
        return i
    }

    public func release(slot i: Int, inbox: PacketInbox) {
        lock.lock(); defer { lock.unlock() }
        guard entries.indices.contains(i), let e = entries[i], e.inbox === inbox, !e.released else { return }
        entries[i]?.released = true
        gen &+= 1
    }

    public func update(slot i: Int, inbox: PacketInbox, voice: SlotVoice) {
        lock.lock(); defer { lock.unlock() }
        guard entries.indices.contains(i), let e = entries[i], e.inbox === inbox, e.voice != voice else { return }
        entries[i]?.voice = voice
        gen &+= 1
    }

    /// Called by the mix thread when a released slot has drained.
    public func free(slot i: Int, inbox: PacketInbox) {
        lock.lock(); defer { lock.unlock() }
        guard entries.indices.contains(i), let e = entries[i], e.inbox === inbox else { return }
        entries[i] = nil
        gen &+= 1
    }

    /// The entries if anything changed since `generation`.
    public func snapshot(after generation: UInt64) -> (generation: UInt64, entries: [Entry?])? {
        lock.lock(); defer { lock.unlock() }
        return gen == generation ? nil : (gen, entries)
    }

    public var occupied: Int {
        lock.lock(); defer { lock.unlock() }
        return entries.reduce(0) { $0 + ($1 == nil ? 0 : 1) }
    }
}

public enum SlotRouting {
    /// The mixer-side id of slot `i`: never a real participant id (those cannot contain a NUL).
    public static func slotId(_ i: Int) -> String { "\u{0}slot-\(i)" }

    /// `routing` rewritten over slot ids: every slot a caller at 100 % group volume whose own
    /// volume is the participant's gain under `routing` (0 for empty or draining slots). Master,
    /// music, dynamics and ducking pass through unchanged.
    public static func make(_ routing: Routing, voices: [SlotVoice?]) -> Routing {
        var r = routing
        r.hostVolume = 100
        r.callersVolume = 100
        var onAir = Set<String>()
        var volumes: [String: Double] = [:]
        for (i, v) in voices.enumerated() {
            guard let v else { continue }
            let gain = routing.voiceGain(role: v.role, participantId: v.participantId, userId: v.userId)
            guard gain > 0 else { continue }
            let id = slotId(i)
            onAir.insert(id)
            volumes[id] = min(100, gain * 100)
        }
        r.onAirCallerIds = onAir
        r.participantVolumes = volumes
        return r
    }
}
