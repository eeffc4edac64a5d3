// JSON text read and written without a JSONValue tree, for hot paths that only need a few
// members of a payload or write a payload of known shape: the members of an object as byte
// ranges of its text, the compact form of validated text (byte for byte what
// `JSONValue.parse(text).jsonBytes` gives), and an object writer.

public enum JSONText {
    /// Validates `text` as `JSONValue.parse` does (one JSON value, whitespace around it, valid
    /// UTF-8, within `limits`) while calling `body` for each top-level member of the object
    /// it must be, in document order: the key's raw bytes (between the quotes, escapes not
    /// decoded), whether the key holds escapes, and the range of the member's value in `text`.
    ///
    /// Returns false when `text` is not a valid JSON object within the limits; `body` may have
    /// been called for members before the fault was found, so callers discard what they
    /// gathered then.
    public static func forEachMember(
        of text: UnsafeRawBufferPointer, limits: DecodeLimits = .default,
        _ body: (_ key: UnsafeRawBufferPointer, _ keyEscaped: Bool, _ value: Range<Int>) -> Void
    ) -> Bool {
        if text.count > limits.maxSize { return false }
        // Strings are checked for UTF-8 as they are scanned; outside strings a byte that is not
        // ASCII is a syntax error, so a scan that succeeds has seen valid UTF-8 throughout.
        var s = JSONScanner(text, maxDepth: limits.effectiveDepth, checksUTF8: true)
        let n = text.count
        do throws(OrchestraError) {
            s.skipWhitespace()
            guard s.pos < n, text[s.pos] == 0x7B, s.maxDepth >= 1 else { return false }
            s.pos += 1
            s.skipWhitespace()
            if s.pos < n && text[s.pos] == 0x7D {
                s.pos += 1
            } else {
                while true {
                    guard s.pos < n, text[s.pos] == 0x22 else { return false }
                    let key = try s.scanStringRaw()
                    try s.expect(0x3A, "after object key")
                    s.skipWhitespace()
                    let start = s.pos
                    try s.skipValue(depth: 1)
                    body(UnsafeRawBufferPointer(rebasing: text[key.start..<key.end]), key.escaped, start..<s.pos)
                    s.skipWhitespace()
                    guard s.pos < n else { return false }
                    let c = text[s.pos]
                    s.pos += 1
                    if c == 0x7D { break }
                    guard c == 0x2C else { return false }
                    s.skipWhitespace()
                }
            }
            try s.expectEnd()
            return true
        } catch {
            return false
        }
    }

    /// Writes the compact form of `text`, which must be valid JSON (`JSONValidator.validate`,
    /// or a value range from `forEachMember`): exactly the bytes `JSONValue.parse(text)
    /// .jsonBytes` gives, without building the tree. Whitespace is dropped; strings without
    /// escapes are copied as they are, others decoded and written again (so `\/` becomes `/`
    /// and `\u00e9` becomes `é`); integers that fit in 64 bits are written in decimal, other
    /// numbers through Double as the tree does (`1E2` becomes `100.0`, out-of-range values
    /// `null`). Text that is not valid JSON gives unspecified output, never a read outside it.
    public static func writeCompact(_ text: UnsafeRawBufferPointer, into w: inout ByteWriter) {
        let n = text.count
        guard n > 0, let p = text.baseAddress else { return }
        var i = 0
        var decoded = ByteWriter(capacity: 64)   // an escaped string, unescaped
        while i < n {
            let c = p.load(fromByteOffset: i, as: UInt8.self)
            switch c {
            case 0x20, 0x0A, 0x0D, 0x09:
                i += 1
            case 0x22:
                let stop = firstStringStop(p, from: i + 1, count: n)
                if stop < n && p.load(fromByteOffset: stop, as: UInt8.self) == 0x22 {
                    // No escape: written again it would be the same bytes.
                    w.append(UnsafeRawBufferPointer(rebasing: text[i...stop]))
                    i = stop + 1
                    continue
                }
                var s = JSONScanner(text, maxDepth: 0, pos: i)
                guard let (start, end, _) = try? s.scanStringRaw() else { return }
                let raw = UnsafeRawBufferPointer(rebasing: text[start..<end])
                decoded.removeAll()
                decoded.reserve(raw.count)
                JSONScanner.unescapeChecked(raw, into: &decoded)
                JSONWriter.writeValidString(decoded.bytes, into: &w)
                i = s.pos
            case 0x2D, 0x30...0x39:
                var j = i + 1
                var integral = true
                while j < n {
                    let d = p.load(fromByteOffset: j, as: UInt8.self)
                    if d == 0x2E || d == 0x65 || d == 0x45 { integral = false }
                    else if !(isJSONDigit(d) || d == 0x2D || d == 0x2B) { break }
                    j += 1
                }
                writeNumber(UnsafeRawBufferPointer(rebasing: text[i..<j]), integral: integral, into: &w)
                i = j
            default:
                // Structure and the letters of true, false and null.
                w.append(c)
                i += 1
            }
        }
    }

    /// A JSON integer lexeme (-?digits) as Int64; nil when it is not one or out of range.
    public static func parseInteger(_ lexeme: UnsafeRawBufferPointer) -> Int64? {
        parseInt64(lexeme)
    }

    /// The compact form of valid JSON `text` as a String (see `writeCompact`).
    public static func compactString(_ text: UnsafeRawBufferPointer) -> String {
        if isCompact(text) { return String(decoding: text, as: UTF8.self) }
        var w = ByteWriter(capacity: text.count + 16)
        writeCompact(text, into: &w)
        return String(decoding: w.bytes, as: UTF8.self)
    }

    /// Whether valid JSON `text` is its own compact form, by a quick look: no whitespace, no
    /// string with an escape, numbers only integers of at most 18 digits other than -0. False
    /// means it may not be (`writeCompact` then writes it).
    static func isCompact(_ text: UnsafeRawBufferPointer) -> Bool {
        let n = text.count
        guard n > 0, let p = text.baseAddress else { return false }
        var i = 0
        while i < n {
            let c = p.load(fromByteOffset: i, as: UInt8.self)
            switch c {
            case 0x22:
                let stop = firstStringStop(p, from: i + 1, count: n)
                guard stop < n, p.load(fromByteOffset: stop, as: UInt8.self) == 0x22 else { return false }
                i = stop + 1
            case 0x7B, 0x7D, 0x5B, 0x5D, 0x2C, 0x3A:
                i += 1
            case 0x74, 0x6E:   // true, null
                i += 4
            case 0x66:         // false
                i += 5
            case 0x2D, 0x30...0x39:
                var j = i
                if c == 0x2D {
                    j += 1
                    if j < n && p.load(fromByteOffset: j, as: UInt8.self) == 0x30 { return false }   // -0 is written 0
                }
                let digits = j
                while j < n && isJSONDigit(p.load(fromByteOffset: j, as: UInt8.self)) { j += 1 }
                if j == digits || j - digits > 18 { return false }
                if j < n {
                    let d = p.load(fromByteOffset: j, as: UInt8.self)
                    if d == 0x2E || d == 0x65 || d == 0x45 { return false }   // a fraction or exponent
                }
                i = j
            default:
                return false   // whitespace
            }
        }
        return true
    }

    /// A number lexeme as the tree writes it: `.int` when integral and in range, else the
    /// double strtod reads (non-finite: null).
    private static func writeNumber(_ t: UnsafeRawBufferPointer, integral: Bool, into w: inout ByteWriter) {
        if integral, let v = parseInt64(t) {
            JSONWriter.writeInt(v, into: &w)
            return
        }
        JSONWriter.writeNumber(parseDouble(t), into: &w)
    }
}

/// Writes one JSON object member by member into a `ByteWriter`: `{"key":value,...}`, for
/// payloads of a known shape (no JSONValue tree, no String per value). Keys are static
/// strings written as they are, so they must need no escaping (ASCII letters and digits).
public struct JSONObjectWriter: ~Copyable {
    public var writer: ByteWriter
    private var empty = true

    /// Starts the object in a writer of `capacity` bytes (it grows as needed).
    public init(capacity: Int) {
        writer = ByteWriter(capacity: capacity)
        writer.append(0x7B)
    }

    /// Writes `,"key":` (no comma before the first member).
    @inline(__always)
    public mutating func key(_ k: StaticString) {
        writer.reserve(k.utf8CodeUnitCount + 4)
        if !empty { writer.put(0x2C) }
        empty = false
        writer.put(0x22)
        writer.put(UnsafeRawPointer(k.utf8Start), k.utf8CodeUnitCount)
        writer.put(0x22)
        writer.put(0x3A)
    }

    public mutating func string(_ k: StaticString, _ v: String) {
        key(k)
        JSONWriter.writeString(v, into: &writer)
    }

    /// `v` must be valid UTF-8 (checked by the caller).
    public mutating func string(_ k: StaticString, validUTF8 v: UnsafeRawBufferPointer) {
        key(k)
        JSONWriter.writeValidString(v, into: &writer)
    }

    public mutating func int(_ k: StaticString, _ v: Int64) {
        key(k)
        JSONWriter.writeInt(v, into: &writer)
    }

    public mutating func bool(_ k: StaticString, _ v: Bool) {
        key(k)
        if v { writer.append("true") } else { writer.append("false") }
    }

    /// As `JSONValue.double` writes it (not finite: null).
    public mutating func double(_ k: StaticString, _ v: Double) {
        key(k)
        JSONWriter.writeNumber(v, into: &writer)
    }

    /// The compact form of valid JSON text (`JSONText.writeCompact`).
    public mutating func compactJSON(_ k: StaticString, _ validJSON: UnsafeRawBufferPointer) {
        key(k)
        JSONText.writeCompact(validJSON, into: &writer)
    }

    /// Closes the object and returns its bytes.
    public consuming func finish() -> [UInt8] {
        writer.append(0x7D)
        return makeBytes(writer.bytes)
    }
}
