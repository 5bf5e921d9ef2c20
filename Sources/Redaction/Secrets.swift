import Foundation

/// Process-wide list of secret values (AWS secret keys, session tokens, stream keys, stage tokens)
/// that must never appear in a message. Error descriptions in these modules pass through
/// `redact`, so a secret that a server echoes back, or that reaches a message by mistake,
/// is masked. Register a secret as soon as it is read.
public enum Secrets {
    /// Shorter values are ignored: masking them would shred ordinary text.
    public static let minimumLength = 8
    /// Oldest entries are dropped past this (rotated credentials keep arriving).
    public static let capacity = 256

    private static let store = SecretStore()

    public static func register(_ value: String) {
        guard value.utf8.count >= minimumLength else { return }
        store.add(value)
    }

    public static func redact(_ text: String) -> String {
        store.redact(text)
    }

    public static let mask = "[REDACTED]"
}

private final class SecretStore: @unchecked Sendable {
    private let lock = NSLock()
    private var values: [String] = []

    func add(_ value: String) {
        lock.lock()
        defer { lock.unlock() }
        if let i = values.firstIndex(of: value) { values.remove(at: i) }
        values.append(value)
        if values.count > Secrets.capacity { values.removeFirst(values.count - Secrets.capacity) }
    }

    func redact(_ text: String) -> String {
        lock.lock()
        let current = values
        lock.unlock()
        var out = text
        // Longest first, so a secret containing another is masked whole.
        for v in current.sorted(by: { $0.utf8.count > $1.utf8.count }) where out.contains(v) {
            out = out.replacingOccurrences(of: v, with: Secrets.mask)
        }
        return out
    }
}

/// A secret string value. Printing, interpolating, dumping or reflecting it shows a mask;
/// the value itself is only reachable through `revealed`. Creating one registers the value
/// with `Secrets` so it is also masked wherever it might be echoed back.
public struct SecretString: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible,
    CustomReflectable {
    public let revealed: String

    public init(_ value: String) {
        revealed = value
        Secrets.register(value)
    }

    public var isEmpty: Bool { revealed.isEmpty }
    public var description: String { Secrets.mask }
    public var debugDescription: String { Secrets.mask }
    public var customMirror: Mirror { Mirror(self, children: [], displayStyle: .struct) }
}
