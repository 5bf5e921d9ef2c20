/// A loosely typed value as it arrives from JSON files or DynamoDB items, before validation.
/// Routing is validated field by field from this, so one bad field never discards the rest.
public enum ControlValue: Sendable, Equatable {
    case number(Double)
    case string(String)
    case bool(Bool)
    case array([ControlValue])
    case object([String: ControlValue])
    case null

    var typeName: String {
        switch self {
        case .number: "number"
        case .string: "string"
        case .bool: "boolean"
        case .array: "array"
        case .object: "object"
        case .null: "null"
        }
    }
}

extension ControlValue {
    /// Converts the output of `JSONSerialization` (Foundation's `Any` tree).
    /// Booleans come back as NSNumber there; `isBoolean` tells them apart from 0/1.
    public static func fromJSONObject(_ any: Any) -> ControlValue {
        switch any {
        case let s as String: return .string(s)
        case let n as JSONNumberLike where n.isBoolean: return .bool(n.boolValue)
        case let n as JSONNumberLike: return .number(n.doubleValue)
        case let a as [Any]: return .array(a.map(fromJSONObject))
        case let d as [String: Any]: return .object(d.mapValues(fromJSONObject))
        default: return .null
        }
    }
}

extension ControlValue: CustomStringConvertible {
    /// JSON-like text for messages: `"loud"`, `500`, `true`, `[…]`, `{…}`.
    public var description: String {
        switch self {
        case .number(let n): n.rounded() == n && abs(n) < 1e15 ? String(Int64(n)) : String(n)
        case .string(let s): "\"\(s.count > 40 ? String(s.prefix(40)) + "…" : s)\""
        case .bool(let b): b ? "true" : "false"
        case .array: "a list"
        case .object: "an object"
        case .null: "null"
        }
    }
}
