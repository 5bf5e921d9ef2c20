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
