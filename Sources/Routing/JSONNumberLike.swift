import Foundation

/// NSNumber as Foundation's JSON parser produces it, with the boolean check Swift hides.
protocol JSONNumberLike {
    var isBoolean: Bool { get }
    var boolValue: Bool { get }
    var doubleValue: Double { get }
}

extension NSNumber: JSONNumberLike {
    var isBoolean: Bool {
        // CFBoolean is a distinct singleton type on every platform's Foundation.
        let typeOfTrue = type(of: NSNumber(value: true))
        return type(of: self) == typeOfTrue
    }
}
