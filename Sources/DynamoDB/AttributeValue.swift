import Foundation
import AWSCore

/// A DynamoDB attribute value. Numbers stay exact decimal text (DynamoDB keeps 38 digits;
/// nothing here rounds them through Double unless a Double is asked for).
public indirect enum AttributeValue: Sendable, Hashable {
    case s(String)
    case n(String)
    case b([UInt8])
    case bool(Bool)
    case null
    case m([String: AttributeValue])
    case l([AttributeValue])
    case ss([String])
    case ns([String])
    case bs([[UInt8]])
}

public typealias DynamoItem = [String: AttributeValue]

/// A value of the wrong shape on the wire; `path` names it ("Item.metrics.levels.p1").
public struct DynamoDBCodecError: Error, Sendable, Equatable, CustomStringConvertible {
    public var path: String
    public var reason: String
    public init(path: String, reason: String) {
        self.path = path
        self.reason = reason
    }
    public var description: String { "DynamoDB value \(path.isEmpty ? "(top)" : path): \(reason)" }
}

// MARK: - Swift values in

extension AttributeValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByFloatLiteral,
    ExpressibleByBooleanLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral, ExpressibleByNilLiteral {
    public init(stringLiteral value: String) { self = .s(value) }
    public init(integerLiteral value: Int) { self = .n(String(value)) }
    public init(floatLiteral value: Double) { self = .number(value) }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(arrayLiteral elements: AttributeValue...) { self = .l(elements) }
    public init(dictionaryLiteral elements: (String, AttributeValue)...) {
        self = .m(Dictionary(elements, uniquingKeysWith: { _, last in last }))
    }
    public init(nilLiteral: ()) { self = .null }

    public init(_ value: String) { self = .s(value) }
    public init(_ value: Bool) { self = .bool(value) }
    public init(_ value: [UInt8]) { self = .b(value) }
    public init<I: BinaryInteger>(_ value: I) { self = .n(String(value)) }

    public static func number<I: BinaryInteger>(_ v: I) -> AttributeValue { .n(String(v)) }

    /// Shortest text that reads back as the same Double. NaN and infinities have no DynamoDB
    /// form: they become NULL (clamp before writing if that matters).
    public static func number(_ v: Double) -> AttributeValue {
        guard v.isFinite else { return .null }
        if v == v.rounded(), abs(v) < 1e15 { return .n(String(Int64(v))) }
        return .n(v.description)
    }

    /// A number from its text, if it is decimal-number syntax.
    public static func number(text: String) -> AttributeValue? {
        isDecimalNumber(text) ? .n(text) : nil
    }

    /// A string set; nil when empty (DynamoDB has no empty sets).
    public static func stringSet<S: Sequence>(_ values: S) -> AttributeValue? where S.Element == String {
        let v = Array(Set(values)).sorted()
        return v.isEmpty ? nil : .ss(v)
    }

    /// "-12.5e3", "+7", "0.25": sign, digits with an optional point, optional exponent.
    public static func isDecimalNumber(_ text: String) -> Bool {
        var digits = 0
        var seenPoint = false
        var seenExp = false
        var expDigits = 0
        var prev: UInt8 = 0
        for (i, c) in text.utf8.enumerated() {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"):
                if seenExp { expDigits += 1 } else { digits += 1 }
            case UInt8(ascii: "+"), UInt8(ascii: "-"):
                guard i == 0 || prev == UInt8(ascii: "e") || prev == UInt8(ascii: "E") else { return false }
            case UInt8(ascii: "."):
                guard !seenPoint, !seenExp else { return false }
                seenPoint = true
            case UInt8(ascii: "e"), UInt8(ascii: "E"):
                guard !seenExp, digits > 0 else { return false }
                seenExp = true
            default:
                return false
            }
            prev = c
        }
        return digits > 0 && (!seenExp || expDigits > 0)
    }
}

// MARK: - Swift values out

extension AttributeValue {
    public var stringValue: String? {
        if case .s(let v) = self { return v }
        return nil
    }
    /// The exact number text of an N.
    public var numberText: String? {
        if case .n(let v) = self { return v }
        return nil
    }
    public var doubleValue: Double? { numberText.flatMap { Double($0) } }
    /// The N as an integer when it is one exactly ("42", "42.0", "4.2e1").
    public var int64Value: Int64? {
        guard let t = numberText else { return nil }
        if let i = Int64(t) { return i }
        guard let d = Double(t), d == d.rounded(), abs(d) < 9.0e15 else { return nil }
        return Int64(d)
    }
    public var intValue: Int? { int64Value.flatMap { Int(exactly: $0) } }
    public var boolValue: Bool? {
        if case .bool(let v) = self { return v }
        return nil
    }
    public var binaryValue: [UInt8]? {
        if case .b(let v) = self { return v }
        return nil
    }
    public var mapValue: [String: AttributeValue]? {
        if case .m(let v) = self { return v }
        return nil
    }
    public var listValue: [AttributeValue]? {
        if case .l(let v) = self { return v }
        return nil
    }
    public var isNull: Bool { self == .null }

    /// Member of an M.
    public subscript(key: String) -> AttributeValue? {
        mapValue?[key]
    }

    /// The DynamoDB type tag: "S", "N", "B", "BOOL", "NULL", "M", "L", "SS", "NS", "BS".
    public var typeTag: String {
        switch self {
        case .s: "S"
        case .n: "N"
        case .b: "B"
        case .bool: "BOOL"
        case .null: "NULL"
        case .m: "M"
        case .l: "L"
        case .ss: "SS"
        case .ns: "NS"
        case .bs: "BS"
        }
    }
}

// MARK: - Wire form ({"S": "x"}, {"N": "1"}, ...)

extension AttributeValue {
    public var json: JSONValue {
        switch self {
        case .s(let v): .object(["S": .string(v)])
        case .n(let v): .object(["N": .string(v)])
        case .b(let v): .object(["B": .string(Data(v).base64EncodedString())])
        case .bool(let v): .object(["BOOL": .bool(v)])
        case .null: .object(["NULL": .bool(true)])
        case .m(let v): .object(["M": .object(v.mapValues(\.json))])
        case .l(let v): .object(["L": .array(v.map(\.json))])
        case .ss(let v): .object(["SS": .array(v.map { .string($0) })])
        case .ns(let v): .object(["NS": .array(v.map { .string($0) })])
        case .bs(let v): .object(["BS": .array(v.map { .string(Data($0).base64EncodedString()) })])
        }
    }

    public init(json: JSONValue, path: String = "") throws(DynamoDBCodecError) {
        func fail(_ reason: String) -> DynamoDBCodecError { DynamoDBCodecError(path: path, reason: reason) }
        guard let o = json.objectValue else { throw fail("expected an object like {\"S\": ...}") }
        guard o.count == 1, let only = o.first else {
            throw fail("expected exactly one type tag, found \(o.count)")
        }
        let (tag, v) = (only.key, only.value)
        switch tag {
        case "S":
            guard let s = v.stringValue else { throw fail("S is not a string") }
            self = .s(s)
        case "N":
            guard let s = v.stringValue, Self.isDecimalNumber(s) else { throw fail("N is not a decimal number string") }
            self = .n(s)
        case "B":
            guard let s = v.stringValue, let d = Data(base64Encoded: s) else { throw fail("B is not base64") }
            self = .b([UInt8](d))
        case "BOOL":
            guard let b = v.boolValue else { throw fail("BOOL is not a boolean") }
            self = .bool(b)
        case "NULL":
            guard v.boolValue == true else { throw fail("NULL is not true") }
            self = .null
        case "M":
            guard let m = v.objectValue else { throw fail("M is not an object") }
            var out: [String: AttributeValue] = [:]
            for (k, item) in m {
                out[k] = try AttributeValue(json: item, path: path.isEmpty ? k : "\(path).\(k)")
            }
            self = .m(out)
        case "L":
            guard let a = v.arrayValue else { throw fail("L is not an array") }
            var out: [AttributeValue] = []
            out.reserveCapacity(a.count)
            for (i, item) in a.enumerated() {
                out.append(try AttributeValue(json: item, path: "\(path)[\(i)]"))
            }
            self = .l(out)
        case "SS":
            guard let a = v.arrayValue else { throw fail("SS is not an array") }
            var out: [String] = []
            for item in a {
                guard let s = item.stringValue else { throw fail("SS holds a non-string") }
                out.append(s)
            }
            self = .ss(out)
        case "NS":
            guard let a = v.arrayValue else { throw fail("NS is not an array") }
            var out: [String] = []
            for item in a {
                guard let s = item.stringValue, Self.isDecimalNumber(s) else { throw fail("NS holds a non-number") }
                out.append(s)
            }
            self = .ns(out)
        case "BS":
            guard let a = v.arrayValue else { throw fail("BS is not an array") }
            var out: [[UInt8]] = []
            for item in a {
                guard let s = item.stringValue, let d = Data(base64Encoded: s) else { throw fail("BS holds a non-base64 value") }
                out.append([UInt8](d))
            }
            self = .bs(out)
        default:
            throw fail("unknown type tag \"\(tag.prefix(20))\"")
        }
    }

    /// An item (top-level map without the M wrapper).
    public static func encodeItem(_ item: DynamoItem) -> JSONValue {
        .object(item.mapValues(\.json))
    }

    public static func decodeItem(_ json: JSONValue, path: String = "Item") throws(DynamoDBCodecError) -> DynamoItem {
        guard let o = json.objectValue else { throw DynamoDBCodecError(path: path, reason: "expected an object of attributes") }
        var out: DynamoItem = [:]
        for (k, v) in o {
            out[k] = try AttributeValue(json: v, path: "\(path).\(k)")
        }
        return out
    }
}

// MARK: - Loosely typed form

/// A JSON-like value without DynamoDB's type tags, for code that reads documents loosely
/// (the routing record): sets become arrays, N becomes a Double.
public indirect enum PlainValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case binary([UInt8])
    case array([PlainValue])
    case object([String: PlainValue])
}

extension AttributeValue {
    public var plain: PlainValue {
        switch self {
        case .s(let v): .string(v)
        // Validated on decode; an unparsable N built by hand falls back to its text.
        case .n(let v): Double(v).map { .number($0) } ?? .string(v)
        case .b(let v): .binary(v)
        case .bool(let v): .bool(v)
        case .null: .null
        case .m(let v): .object(v.mapValues(\.plain))
        case .l(let v): .array(v.map(\.plain))
        case .ss(let v): .array(v.map { .string($0) })
        case .ns(let v): .array(v.map { Double($0).map { .number($0) } ?? .string($0) })
        case .bs(let v): .array(v.map { .binary($0) })
        }
    }

    public init(plain: PlainValue) {
        switch plain {
        case .null: self = .null
        case .bool(let v): self = .bool(v)
        case .number(let v): self = .number(v)
        case .string(let v): self = .s(v)
        case .binary(let v): self = .b(v)
        case .array(let v): self = .l(v.map(AttributeValue.init(plain:)))
        case .object(let v): self = .m(v.mapValues(AttributeValue.init(plain:)))
        }
    }

    public static func plainObject(_ item: DynamoItem) -> [String: PlainValue] {
        item.mapValues(\.plain)
    }
}
