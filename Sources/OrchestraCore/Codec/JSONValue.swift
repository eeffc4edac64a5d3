/// A parsed JSON value (RFC 8259), for the places that must look inside a payload: the hub's
/// control messages, tokens, configuration. The envelope codec never builds these; routing
/// stays on the envelope.
///
/// Objects keep their members in document order; lookups are linear, which is what small
/// control payloads want. Numbers that are integers and fit in 64 bits are `.int`, other
/// numbers `.double`.
public enum JSONValue: Equatable, Sendable {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([(String, JSONValue)])

    public static func == (a: JSONValue, b: JSONValue) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case let (.bool(x), .bool(y)): return x == y
        case let (.int(x), .int(y)): return x == y
        case let (.double(x), .double(y)): return x == y
        case let (.int(x), .double(y)), let (.double(y), .int(x)): return Double(x) == y
        case let (.string(x), .string(y)): return x == y
        case let (.array(x), .array(y)): return x == y
        case let (.object(x), .object(y)):
            guard x.count == y.count else { return false }
            for (k, v) in x {
                guard let w = y.first(where: { $0.0 == k })?.1, w == v else { return false }
            }
            return true
        default: return false
        }
    }

    // MARK: access

    /// The member `key` of an object (nil for other values or a missing key).
    public subscript(key: String) -> JSONValue? {
        guard case .object(let members) = self else { return nil }
        for (k, v) in members where k == key { return v }
        return nil
    }

    public var string: String? { if case .string(let s) = self { return s }; return nil }
    public var bool: Bool? { if case .bool(let b) = self { return b }; return nil }
    public var array: [JSONValue]? { if case .array(let a) = self { return a }; return nil }
    public var object: [(String, JSONValue)]? { if case .object(let o) = self { return o }; return nil }
    public var isNull: Bool { if case .null = self { return true }; return false }
    /// An integer, or a double with no fractional part that fits in 64 bits.
    public var int: Int64? {
        switch self {
        case .int(let i): return i
        case .double(let d) where d.rounded() == d && abs(d) < 9.2e18: return Int64(d)
        default: return nil
        }
    }
    public var double: Double? {
        switch self {
        case .int(let i): return Double(i)
        case .double(let d): return d
        default: return nil
        }
    }

    /// Sets (replaces or appends) the member `key` of an object; no effect on other values.
    public mutating func set(_ key: String, _ value: JSONValue) {
        guard case .object(var members) = self else { return }
        if let i = members.firstIndex(where: { $0.0 == key }) {
            members[i].1 = value
        } else {
            members.append((key, value))
        }
        self = .object(members)
    }

    /// Removes the member `key` of an object.
    public mutating func remove(_ key: String) {
        guard case .object(var members) = self else { return }
        members.removeAll { $0.0 == key }
        self = .object(members)
    }

    // MARK: parse

    /// Parses exactly one JSON value. Throws `.parse` naming the byte offset, or `.tooBig`.
    public static func parse(_ bytes: UnsafeRawBufferPointer, limits: DecodeLimits = .default) throws(OrchestraError) -> JSONValue {
        try JSONValidator.validate(bytes, limits: limits)
        var p = JSONTreeParser(JSONScanner(bytes, maxDepth: DecodeLimits.depthCeiling))
        return try p.value()
    }

    public static func parse(_ bytes: [UInt8], limits: DecodeLimits = .default) throws(OrchestraError) -> JSONValue {
        try withBytes(bytes) { (b) throws(OrchestraError) in try parse(b, limits: limits) }
    }

    public static func parse(_ text: String, limits: DecodeLimits = .default) throws(OrchestraError) -> JSONValue {
        try parse(Array(text.utf8), limits: limits)
    }

    // MARK: write

    /// Appends compact JSON text. Doubles that are not finite are written as `null`.
    public func write(into out: inout [UInt8]) {
        out.appendWritten(capacity: 64) { write(into: &$0) }
    }

    /// Appends compact JSON text to `w`.
    func write(into w: inout ByteWriter) {
        switch self {
        case .null: w.append("null")
        case .bool(let b): if b { w.append("true") } else { w.append("false") }
        case .int(let i): JSONWriter.writeInt(i, into: &w)
        case .double(let d): JSONWriter.writeNumber(d, into: &w)
        case .string(let s): JSONWriter.writeString(s, into: &w)
        case .array(let a):
            w.append(0x5B)
            for (i, v) in a.enumerated() {
                if i > 0 { w.append(0x2C) }
                v.write(into: &w)
            }
            w.append(0x5D)
        case .object(let members):
            w.append(0x7B)
            for (i, (k, v)) in members.enumerated() {
                if i > 0 { w.append(0x2C) }
                JSONWriter.writeString(k, into: &w)
                w.append(0x3A)
                v.write(into: &w)
            }
            w.append(0x7D)
        }
    }

    /// Compact JSON text as bytes.
    public var jsonBytes: [UInt8] {
        var w = ByteWriter(capacity: 64)
        write(into: &w)
        return makeBytes(w.bytes)
    }

    /// Compact JSON text.
    public var jsonText: String {
        var w = ByteWriter(capacity: 64)
        write(into: &w)
        return String(decoding: w.bytes, as: UTF8.self)
    }
}

extension JSONValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral, ExpressibleByNilLiteral, ExpressibleByFloatLiteral
{
    public init(stringLiteral s: String) { self = .string(s) }
    public init(integerLiteral i: Int64) { self = .int(i) }
    public init(booleanLiteral b: Bool) { self = .bool(b) }
    public init(arrayLiteral a: JSONValue...) { self = .array(a) }
    public init(dictionaryLiteral members: (String, JSONValue)...) { self = .object(members) }
    public init(nilLiteral: ()) { self = .null }
    public init(floatLiteral d: Double) { self = .double(d) }
}

/// Builds the tree from text the validator already accepted, with the scanner's primitives
/// (so it finds no error of its own; one would still be thrown, not trapped).
private struct JSONTreeParser {
    var s: JSONScanner

    init(_ s: JSONScanner) { self.s = s }

    mutating func value() throws(OrchestraError) -> JSONValue {
        s.skipWhitespace()
        let c = try s.peek("a value")
        switch c {
        case 0x7B:
            s.pos += 1
            var members: [(String, JSONValue)] = []
            s.skipWhitespace()
            if try s.peek("'}' or a key") == 0x7D { s.pos += 1; return .object(members) }
            while true {
                s.skipWhitespace()
                let k = try string()
                try s.expect(0x3A, "after object key")
                members.append((k, try value()))
                if try s.consumeObjectEnd() { return .object(members) }
            }
        case 0x5B:
            s.pos += 1
            var items: [JSONValue] = []
            s.skipWhitespace()
            if try s.peek("']' or a value") == 0x5D { s.pos += 1; return .array(items) }
            while true {
                items.append(try value())
                s.skipWhitespace()
                let d = try s.peek("',' or ']'")
                s.pos += 1
                if d == 0x5D { return .array(items) }
            }
        case 0x22: return .string(try string())
        case 0x74: try s.scanLiteral("true"); return .bool(true)
        case 0x66: try s.scanLiteral("false"); return .bool(false)
        case 0x6E: try s.scanLiteral("null"); return .null
        default: return try number()
        }
    }

    mutating func number() throws(OrchestraError) -> JSONValue {
        let start = s.pos
        let integral = try s.scanNumber()
        let text = UnsafeRawBufferPointer(rebasing: s.bytes[start..<s.pos])
        if integral, let i = parseInt64(text) { return .int(i) }
        return .double(parseDouble(text))
    }

    mutating func string() throws(OrchestraError) -> String {
        let (start, end, escaped) = try s.scanStringRaw()
        let raw = UnsafeRawBufferPointer(rebasing: s.bytes[start..<end])
        if !escaped { return String(decoding: raw, as: UTF8.self) }
        return String(decoding: JSONScanner.unescaped(raw), as: UTF8.self)
    }
}
