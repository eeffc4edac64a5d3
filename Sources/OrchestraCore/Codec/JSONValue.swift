import Glibc

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
        var p = JSONTreeParser(bytes: bytes)
        return p.value()
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
        switch self {
        case .null: out.append(contentsOf: "null".utf8)
        case .bool(let b): out.append(contentsOf: (b ? "true" : "false").utf8)
        case .int(let i): JSONWriter.writeInt(i, into: &out)
        case .double(let d):
            if d.isFinite { JSONWriter.writeDouble(d, into: &out) } else { out.append(contentsOf: "null".utf8) }
        case .string(let s): JSONValue.writeString(s, into: &out)
        case .array(let a):
            out.append(0x5B)
            for (i, v) in a.enumerated() {
                if i > 0 { out.append(0x2C) }
                v.write(into: &out)
            }
            out.append(0x5D)
        case .object(let members):
            out.append(0x7B)
            for (i, (k, v)) in members.enumerated() {
                if i > 0 { out.append(0x2C) }
                JSONValue.writeString(k, into: &out)
                out.append(0x3A)
                v.write(into: &out)
            }
            out.append(0x7D)
        }
    }

    /// Compact JSON text as bytes.
    public var jsonBytes: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(64)
        write(into: &out)
        return out
    }

    /// Compact JSON text.
    public var jsonText: String { String(decoding: jsonBytes, as: UTF8.self) }

    /// Swift Strings are valid Unicode, so their UTF-8 never fails the writer's check.
    static func writeString(_ s: String, into out: inout [UInt8]) {
        var s = s
        s.withUTF8 { JSONWriter.writeValidString(UnsafeRawBufferPointer($0), into: &out) }
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

/// Builds the tree from text the validator already accepted, so it checks nothing itself.
private struct JSONTreeParser {
    let bytes: UnsafeRawBufferPointer
    var pos = 0

    mutating func skipWS() {
        while pos < bytes.count {
            let c = bytes[pos]
            if c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 { pos += 1 } else { break }
        }
    }

    mutating func value() -> JSONValue {
        skipWS()
        let c = bytes[pos]
        switch c {
        case 0x7B:
            pos += 1
            var members: [(String, JSONValue)] = []
            skipWS()
            if bytes[pos] == 0x7D { pos += 1; return .object(members) }
            while true {
                skipWS()
                let k = string()
                skipWS()
                pos += 1  // ':'
                let v = value()
                members.append((k, v))
                skipWS()
                let d = bytes[pos]
                pos += 1
                if d == 0x7D { return .object(members) }
            }
        case 0x5B:
            pos += 1
            var items: [JSONValue] = []
            skipWS()
            if bytes[pos] == 0x5D { pos += 1; return .array(items) }
            while true {
                items.append(value())
                skipWS()
                let d = bytes[pos]
                pos += 1
                if d == 0x5D { return .array(items) }
            }
        case 0x22: return .string(string())
        case 0x74: pos += 4; return .bool(true)
        case 0x66: pos += 5; return .bool(false)
        case 0x6E: pos += 4; return .null
        default: return number()
        }
    }

    mutating func number() -> JSONValue {
        let start = pos
        var integral = true
        while pos < bytes.count {
            let c = bytes[pos]
            if c == 0x2E || c == 0x65 || c == 0x45 { integral = false }
            else if !(isJSONDigit(c) || c == 0x2D || c == 0x2B) { break }
            pos += 1
        }
        let text = UnsafeRawBufferPointer(rebasing: bytes[start..<pos])
        if integral, let i = parseInt64(text) { return .int(i) }
        var chars = [CChar](repeating: 0, count: text.count + 1)
        for (i, b) in text.enumerated() { chars[i] = CChar(bitPattern: b) }
        return .double(strtod(chars, nil))
    }

    func parseInt64(_ t: UnsafeRawBufferPointer) -> Int64? {
        var i = 0
        let neg = t[0] == 0x2D
        if neg { i = 1 }
        var v: UInt64 = 0
        while i < t.count {
            let (m, o1) = v.multipliedReportingOverflow(by: 10)
            let (a, o2) = m.addingReportingOverflow(UInt64(t[i] - 0x30))
            if o1 || o2 { return nil }
            v = a
            i += 1
        }
        if neg { return v <= UInt64(Int64.max) + 1 ? (v == UInt64(Int64.max) + 1 ? Int64.min : -Int64(v)) : nil }
        return v <= UInt64(Int64.max) ? Int64(v) : nil
    }

    mutating func hex4() -> UInt32 {
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = bytes[pos]
            pos += 1
            let d: UInt32
            switch c {
            case 0x30...0x39: d = UInt32(c - 0x30)
            case 0x41...0x46: d = UInt32(c - 0x41 + 10)
            default: d = UInt32(c - 0x61 + 10)
            }
            v = v << 4 | d
        }
        return v
    }

    mutating func string() -> String {
        pos += 1  // opening quote
        let start = pos
        // Fast path: no escapes.
        while bytes[pos] != 0x22 && bytes[pos] != 0x5C { pos += 1 }
        if bytes[pos] == 0x22 {
            let s = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<pos]), as: UTF8.self)
            pos += 1
            return s
        }
        var out = Array(UnsafeRawBufferPointer(rebasing: bytes[start..<pos]))
        while true {
            let c = bytes[pos]
            pos += 1
            if c == 0x22 { break }
            if c != 0x5C { out.append(c); continue }
            let e = bytes[pos]
            pos += 1
            switch e {
            case 0x6E: out.append(0x0A)
            case 0x72: out.append(0x0D)
            case 0x74: out.append(0x09)
            case 0x62: out.append(0x08)
            case 0x66: out.append(0x0C)
            case 0x75:
                // The validator accepted the text, so a high surrogate has its low half.
                var scalar = hex4()
                if scalar >= 0xD800 && scalar < 0xDC00 {
                    pos += 2
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (hex4() - 0xDC00)
                }
                out.append(contentsOf: String(Character(Unicode.Scalar(scalar) ?? "\u{FFFD}")).utf8)
            default: out.append(e)  // " \ /
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
