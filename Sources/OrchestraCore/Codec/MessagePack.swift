// MessagePack (https://github.com/msgpack/msgpack/blob/master/spec.md) for the envelope:
// a top-level map with the same str keys as the JSON form. JSON-typed values (a JSON payload,
// .json header/metadata values, extensions) are carried as native MessagePack values and
// transcoded to and from JSON text. Input is hostile: no allocation from a declared length
// larger than the remaining input, depth and size limits, byte offsets in errors.

// MARK: - Writer

enum MsgPackWriter {
    @inline(__always)
    static func be16(_ v: UInt16, _ w: inout ByteWriter) {
        w.reserve(2)
        w.put(UInt8(truncatingIfNeeded: v >> 8)); w.put(UInt8(truncatingIfNeeded: v))
    }
    @inline(__always)
    static func be32(_ v: UInt32, _ w: inout ByteWriter) {
        be16(UInt16(truncatingIfNeeded: v >> 16), &w); be16(UInt16(truncatingIfNeeded: v), &w)
    }
    @inline(__always)
    static func be64(_ v: UInt64, _ w: inout ByteWriter) {
        be32(UInt32(truncatingIfNeeded: v >> 32), &w); be32(UInt32(truncatingIfNeeded: v), &w)
    }

    /// The smallest int form for `v`.
    static func writeUInt(_ v: UInt64, into w: inout ByteWriter) {
        if v < 0x80 { w.append(UInt8(v)) }
        else if v <= 0xFF { w.append(0xCC); w.append(UInt8(v)) }
        else if v <= 0xFFFF { w.append(0xCD); be16(UInt16(v), &w) }
        else if v <= 0xFFFF_FFFF { w.append(0xCE); be32(UInt32(v), &w) }
        else { w.append(0xCF); be64(v, &w) }
    }

    static func writeInt(_ v: Int64, into w: inout ByteWriter) {
        if v >= 0 { writeUInt(UInt64(v), into: &w); return }
        if v >= -32 { w.append(UInt8(bitPattern: Int8(v))) }
        else if v >= Int64(Int8.min) { w.append(0xD0); w.append(UInt8(bitPattern: Int8(v))) }
        else if v >= Int64(Int16.min) { w.append(0xD1); be16(UInt16(bitPattern: Int16(v)), &w) }
        else if v >= Int64(Int32.min) { w.append(0xD2); be32(UInt32(bitPattern: Int32(v)), &w) }
        else { w.append(0xD3); be64(UInt64(bitPattern: v), &w) }
    }

    static func writeInt(_ v: Int64, into out: inout [UInt8]) {
        var w = ByteWriter(capacity: 9)
        writeInt(v, into: &w)
        out.append(contentsOf: w.bytes)
    }

    static func writeDouble(_ v: Double, into w: inout ByteWriter) {
        w.append(0xCB); be64(v.bitPattern, &w)
    }

    static func writeStrHeader(_ n: Int, into w: inout ByteWriter) throws(OrchestraError) {
        if n < 32 { w.append(0xA0 | UInt8(n)) }
        else if n <= 0xFF { w.append(0xD9); w.append(UInt8(n)) }
        else if n <= 0xFFFF { w.append(0xDA); be16(UInt16(n), &w) }
        else if n <= 0xFFFF_FFFF { w.append(0xDB); be32(UInt32(n), &w) }
        else { throw OrchestraError(.tooBig, "string of \(n) bytes exceeds MessagePack's 4 GiB limit") }
    }

    /// A str of bytes known to be valid UTF-8.
    @inline(__always)
    static func writeValidStr(_ s: UnsafeRawBufferPointer, into w: inout ByteWriter) throws(OrchestraError) {
        try writeStrHeader(s.count, into: &w)
        w.append(s)
    }

    @inline(__always)
    static func writeStr(_ s: UnsafeRawBufferPointer, into w: inout ByteWriter, what: @autoclosure () -> String) throws(OrchestraError) {
        if let bad = UTF8Validator.firstInvalidOffset(s) {
            throw OrchestraError(.invalidArgument, "\(what()) is not valid UTF-8 (byte \(bad))")
        }
        try writeValidStr(s, into: &w)
    }

    @inline(__always)
    static func writeStr(_ s: [UInt8], into w: inout ByteWriter, what: @autoclosure () -> String) throws(OrchestraError) {
        try withBytes(s) { (b) throws(OrchestraError) in try writeStr(b, into: &w, what: what()) }
    }

    /// A key known to be short ASCII.
    @inline(__always)
    static func writeKey(_ s: StaticString, into w: inout ByteWriter) {
        w.reserve(1 + s.utf8CodeUnitCount)
        w.put(0xA0 | UInt8(s.utf8CodeUnitCount))
        w.put(UnsafeRawPointer(s.utf8Start), s.utf8CodeUnitCount)
    }

    static func writeBin(_ b: [UInt8], into w: inout ByteWriter) throws(OrchestraError) {
        let n = b.count
        if n <= 0xFF { w.append(0xC4); w.append(UInt8(n)) }
        else if n <= 0xFFFF { w.append(0xC5); be16(UInt16(n), &w) }
        else if n <= 0xFFFF_FFFF { w.append(0xC6); be32(UInt32(n), &w) }
        else { throw OrchestraError(.tooBig, "binary payload of \(n) bytes exceeds MessagePack's 4 GiB limit") }
        w.append(b)
    }

    static func writeContainerHeader(map: Bool, count n: Int, into w: inout ByteWriter) throws(OrchestraError) {
        if n < 16 { w.append((map ? 0x80 : 0x90) | UInt8(n)) }
        else if n <= 0xFFFF { w.append(map ? 0xDE : 0xDC); be16(UInt16(n), &w) }
        else if n <= 0xFFFF_FFFF { w.append(map ? 0xDF : 0xDD); be32(UInt32(n), &w) }
        else { throw OrchestraError(.tooBig, "\(map ? "map" : "array") of \(n) entries exceeds MessagePack's limit") }
    }

    /// Replaces the 5-byte placeholder at `p` with the smallest header for `n` entries.
    static func patchContainerHeader(map: Bool, count n: Int, at p: Int, in w: inout ByteWriter) throws(OrchestraError) {
        if n < 16 {
            w.set((map ? 0x80 : 0x90) | UInt8(n), at: p)
            w.remove(4, at: p + 1)
        } else if n <= 0xFFFF {
            w.set(map ? 0xDE : 0xDC, at: p)
            w.set(UInt8(n >> 8), at: p + 1); w.set(UInt8(n & 0xFF), at: p + 2)
            w.remove(2, at: p + 3)
        } else if n <= 0xFFFF_FFFF {
            w.set(map ? 0xDF : 0xDD, at: p)
            w.set(UInt8(n >> 24 & 0xFF), at: p + 1); w.set(UInt8(n >> 16 & 0xFF), at: p + 2)
            w.set(UInt8(n >> 8 & 0xFF), at: p + 3); w.set(UInt8(n & 0xFF), at: p + 4)
        } else {
            throw OrchestraError(.tooBig, "\(map ? "map" : "array") of \(n) entries exceeds MessagePack's limit")
        }
    }
}

// MARK: - JSON text -> MessagePack

extension JSONScanner {
    /// Transcodes the JSON value at `pos` (whitespace skipped) into MessagePack. Integers must
    /// fit Int64/UInt64; other numbers become float64. Containers get a placeholder header
    /// that is shrunk to the smallest form once the count is known.
    mutating func transcodeToMsgPack(depth: Int, into w: inout ByteWriter) throws(OrchestraError) {
        let c = try peek("a value")
        switch c {
        case 0x7B, 0x5B:
            let isMap = c == 0x7B
            if depth + 1 > maxDepth { throw tooDeep() }
            pos += 1
            let headerPos = w.count
            w.reserve(5)
            for _ in 0..<5 { w.put(0) }
            var count = 0
            skipWhitespace()
            let close: UInt8 = isMap ? 0x7D : 0x5D
            if try peek(isMap ? "'}' or a key" : "']' or a value") == close {
                pos += 1
            } else {
                while true {
                    skipWhitespace()
                    if isMap {
                        guard try peek("an object key") == 0x22 else { throw fail("expected a string as object key") }
                        try transcodeString(into: &w)
                        try expect(0x3A, "after object key")
                        skipWhitespace()
                    }
                    try transcodeToMsgPack(depth: depth + 1, into: &w)
                    count += 1
                    skipWhitespace()
                    guard pos < bytes.count else { throw fail("unexpected end of input, expected ',' or '\(isMap ? "}" : "]")'") }
                    let d = bytes[pos]
                    pos += 1
                    if d == 0x2C { continue }
                    if d == close { break }
                    pos -= 1
                    throw fail(isMap ? "expected ',' or '}' after object member" : "expected ',' or ']' after array element")
                }
            }
            try MsgPackWriter.patchContainerHeader(map: isMap, count: count, at: headerPos, in: &w)
        case 0x22:
            try transcodeString(into: &w)
        case 0x2D, 0x30...0x39:
            let start = pos
            let isInteger = try scanNumber()
            let lexeme = UnsafeRawBufferPointer(rebasing: bytes[start..<pos])
            if isInteger {
                if lexeme[0] == 0x2D {
                    guard let v = parseInt64(lexeme) else {
                        throw OrchestraError(.invalidArgument, "integer \(excerpt(lexeme)) is out of MessagePack range")
                    }
                    MsgPackWriter.writeInt(v, into: &w)
                } else {
                    guard let v = parseUInt64(lexeme) else {
                        throw OrchestraError(.invalidArgument, "integer \(excerpt(lexeme)) is out of MessagePack range")
                    }
                    MsgPackWriter.writeUInt(v, into: &w)
                }
            } else {
                let text = String(decoding: lexeme, as: UTF8.self)
                guard let d = Double(text), d.isFinite else {
                    throw OrchestraError(.invalidArgument, "number \(excerpt(lexeme)) is out of the float64 range")
                }
                MsgPackWriter.writeDouble(d, into: &w)
            }
        case 0x74: try scanLiteral("true"); w.append(0xC3)
        case 0x66: try scanLiteral("false"); w.append(0xC2)
        case 0x6E: try scanLiteral("null"); w.append(0xC0)
        default: throw fail("unexpected character '\(printable(c))', expected a value")
        }
    }

    /// The JSON string at `pos` as a MessagePack str. Without escapes it is copied straight
    /// from the input. With escapes it is unescaped straight into `w`, after a header sized
    /// for its raw length (the unescaped form is never longer); the header is shrunk when the
    /// unescaped length needs a smaller one.
    private mutating func transcodeString(into w: inout ByteWriter) throws(OrchestraError) {
        let (start, end, escaped) = try scanStringRaw()
        let raw = UnsafeRawBufferPointer(rebasing: bytes[start..<end])
        if !escaped {
            try MsgPackWriter.writeValidStr(raw, into: &w)
            return
        }
        let header = MsgPackReader.smallestStrHeader(raw.count)
        let headerPos = w.count
        w.reserve(header + raw.count)
        w.advance(header)
        JSONScanner.unescapeChecked(raw, into: &w)
        let n = w.count - headerPos - header
        if n > 0xFFFF_FFFF {
            throw OrchestraError(.tooBig, "string of \(n) bytes exceeds MessagePack's 4 GiB limit")
        }
        let smallest = MsgPackReader.smallestStrHeader(n)
        if smallest < header { w.remove(header - smallest, at: headerPos + smallest) }
        switch smallest {
        case 1:
            w.set(0xA0 | UInt8(n), at: headerPos)
        case 2:
            w.set(0xD9, at: headerPos); w.set(UInt8(n), at: headerPos + 1)
        case 3:
            w.set(0xDA, at: headerPos)
            w.set(UInt8(n >> 8), at: headerPos + 1); w.set(UInt8(n & 0xFF), at: headerPos + 2)
        default:
            w.set(0xDB, at: headerPos)
            w.set(UInt8(n >> 24 & 0xFF), at: headerPos + 1); w.set(UInt8(n >> 16 & 0xFF), at: headerPos + 2)
            w.set(UInt8(n >> 8 & 0xFF), at: headerPos + 3); w.set(UInt8(n & 0xFF), at: headerPos + 4)
        }
    }

    /// Unescapes the contents of a string that `scanStringRaw` has checked (so every escape
    /// is well formed, surrogates come in pairs, and no quote or control character is left)
    /// into room reserved in `w` for `s.count` bytes. Runs between escapes are found with
    /// `firstStringStop` (16 or 8 bytes per step) and copied whole.
    static func unescapeChecked(_ s: UnsafeRawBufferPointer, into w: inout ByteWriter) {
        let n = s.count
        guard n > 0, let p = s.baseAddress else { return }
        @inline(__always) func hex(_ at: Int) -> UInt32 {
            var v: UInt32 = 0
            for k in 0..<4 {
                let c = p.load(fromByteOffset: at + k, as: UInt8.self)
                let d = c <= 0x39 ? c &- 0x30 : (c | 0x20) &- 0x57
                v = v << 4 | UInt32(d)
            }
            return v
        }
        var i = 0
        while i < n {
            let j = firstStringStop(p, from: i, count: n)   // only a backslash stops here
            w.put(p + i, j - i)
            if j >= n { break }
            let e = p.load(fromByteOffset: j + 1, as: UInt8.self)
            switch e {
            case 0x75:   // \uXXXX, or a surrogate pair \uD8XX\uDCXX
                var scalar = hex(j + 2)
                i = j + 6
                if scalar >= 0xD800 && scalar <= 0xDBFF {
                    scalar = 0x10000 + ((scalar - 0xD800) << 10) + (hex(j + 8) - 0xDC00)
                    i = j + 12
                }
                if scalar < 0x80 {
                    w.put(UInt8(scalar))
                } else if scalar < 0x800 {
                    w.put(UInt8(0xC0 | (scalar >> 6))); w.put(UInt8(0x80 | (scalar & 0x3F)))
                } else if scalar < 0x10000 {
                    w.put(UInt8(0xE0 | (scalar >> 12))); w.put(UInt8(0x80 | ((scalar >> 6) & 0x3F)))
                    w.put(UInt8(0x80 | (scalar & 0x3F)))
                } else {
                    w.put(UInt8(0xF0 | (scalar >> 18))); w.put(UInt8(0x80 | ((scalar >> 12) & 0x3F)))
                    w.put(UInt8(0x80 | ((scalar >> 6) & 0x3F))); w.put(UInt8(0x80 | (scalar & 0x3F)))
                }
                continue
            case 0x62: w.put(0x08)   // \b
            case 0x66: w.put(0x0C)   // \f
            case 0x6E: w.put(0x0A)   // \n
            case 0x72: w.put(0x0D)   // \r
            case 0x74: w.put(0x09)   // \t
            default: w.put(e)        // \" \\ \/
            }
            i = j + 2
        }
    }
}

/// Transcodes one complete JSON text into one MessagePack value (written to `w`).
func jsonToMsgPack(_ json: [UInt8], into w: inout ByteWriter, what: @autoclosure () -> String) throws(OrchestraError) {
    do {
        try withBytes(json) { (b) throws(OrchestraError) in
            if let bad = UTF8Validator.firstInvalidOffset(b) {
                throw OrchestraError(.parse, "invalid JSON at byte \(bad): invalid UTF-8")
            }
            var s = JSONScanner(b, maxDepth: DecodeLimits.depthCeiling)
            s.skipWhitespace()
            try s.transcodeToMsgPack(depth: 0, into: &w)
            try s.expectEnd()
        }
    } catch {
        throw OrchestraError(.invalidArgument, "cannot encode \(what()): \(error.message)")
    }
}

func jsonToMsgPack(_ json: [UInt8], into out: inout [UInt8], what: String) throws(OrchestraError) {
    var w = ByteWriter(capacity: json.count + 16)
    try jsonToMsgPack(json, into: &w, what: what)
    out.append(contentsOf: w.bytes)
}

// MARK: - Reader

struct MsgPackReader {
    let bytes: UnsafeRawBufferPointer
    var pos = 0
    let maxDepth: Int

    init(_ bytes: UnsafeRawBufferPointer, maxDepth: Int) {
        self.bytes = bytes
        self.maxDepth = maxDepth
    }

    var remaining: Int { bytes.count - pos }

    func fail(_ message: String, at p: Int? = nil) -> OrchestraError {
        OrchestraError(.parse, "invalid MessagePack at byte \(p ?? pos): \(message)")
    }

    func tooDeep(at p: Int) -> OrchestraError {
        OrchestraError(.tooBig, "MessagePack nesting at byte \(p) exceeds the depth limit of \(maxDepth)")
    }

    mutating func byte() throws(OrchestraError) -> UInt8 {
        guard pos < bytes.count else { throw fail("truncated input: expected a value") }
        let b = bytes[pos]
        pos += 1
        return b
    }

    mutating func uint(_ n: Int) throws(OrchestraError) -> UInt64 {
        guard n <= remaining else { throw fail("truncated input: expected \(n) more bytes, \(remaining) remain") }
        var v: UInt64 = 0
        for i in 0..<n { v = v << 8 | UInt64(bytes[pos + i]) }
        pos += n
        return v
    }

    /// Consumes `n` declared bytes; fails (without allocating) when fewer remain.
    mutating func take(_ n: UInt64, _ what: String, at start: Int) throws(OrchestraError) -> UnsafeRawBufferPointer {
        guard n <= UInt64(remaining) else {
            throw fail("truncated input: \(what) declares \(n) bytes but only \(remaining) remain", at: start)
        }
        let r = UnsafeRawBufferPointer(rebasing: bytes[pos..<(pos + Int(n))])
        pos += Int(n)
        return r
    }

    enum Value {
        case null
        case bool(Bool)
        case int(Int64)
        case uint(UInt64)      // only values above Int64.max
        case float32(Float)
        case float64(Double)
        case str(UnsafeRawBufferPointer)
        case bin(UnsafeRawBufferPointer)
        case array(Int)
        case map(Int)
        case ext(Int8, UnsafeRawBufferPointer)
    }

    /// Reads one value header (and the bytes of str/bin/ext). Container counts are checked
    /// against the remaining input (each element needs at least one byte).
    mutating func next() throws(OrchestraError) -> Value {
        let start = pos
        let b = try byte()
        switch b {
        case 0x00...0x7F: return .int(Int64(b))
        case 0x80...0x8F: return try mapCount(UInt64(b & 0x0F), at: start)
        case 0x90...0x9F: return try arrayCount(UInt64(b & 0x0F), at: start)
        case 0xA0...0xBF: return .str(try take(UInt64(b & 0x1F), "str", at: start))
        case 0xC0: return .null
        case 0xC2: return .bool(false)
        case 0xC3: return .bool(true)
        case 0xC4: let n = try uint(1); return .bin(try take(n, "bin 8", at: start))
        case 0xC5: let n = try uint(2); return .bin(try take(n, "bin 16", at: start))
        case 0xC6: let n = try uint(4); return .bin(try take(n, "bin 32", at: start))
        case 0xC7, 0xC8, 0xC9:
            let n = try uint(b == 0xC7 ? 1 : b == 0xC8 ? 2 : 4)
            let t = Int8(bitPattern: try byte())
            return .ext(t, try take(n, "ext", at: start))
        case 0xCA: return .float32(Float(bitPattern: UInt32(try uint(4))))
        case 0xCB: return .float64(Double(bitPattern: try uint(8)))
        case 0xCC: return .int(Int64(try uint(1)))
        case 0xCD: return .int(Int64(try uint(2)))
        case 0xCE: return .int(Int64(try uint(4)))
        case 0xCF:
            let v = try uint(8)
            return v <= UInt64(Int64.max) ? .int(Int64(v)) : .uint(v)
        case 0xD0: return .int(Int64(Int8(truncatingIfNeeded: try uint(1))))
        case 0xD1: return .int(Int64(Int16(truncatingIfNeeded: try uint(2))))
        case 0xD2: return .int(Int64(Int32(truncatingIfNeeded: try uint(4))))
        case 0xD3: return .int(Int64(bitPattern: try uint(8)))
        case 0xD4, 0xD5, 0xD6, 0xD7, 0xD8:
            let n: UInt64 = [1, 2, 4, 8, 16][Int(b - 0xD4)]
            let t = Int8(bitPattern: try byte())
            return .ext(t, try take(n, "fixext", at: start))
        case 0xD9: let n = try uint(1); return .str(try take(n, "str 8", at: start))
        case 0xDA: let n = try uint(2); return .str(try take(n, "str 16", at: start))
        case 0xDB: let n = try uint(4); return .str(try take(n, "str 32", at: start))
        // Read the count first: a non-mutating call copies `self` before evaluating arguments.
        case 0xDC: let n = try uint(2); return try arrayCount(n, at: start)
        case 0xDD: let n = try uint(4); return try arrayCount(n, at: start)
        case 0xDE: let n = try uint(2); return try mapCount(n, at: start)
        case 0xDF: let n = try uint(4); return try mapCount(n, at: start)
        case 0xE0...0xFF: return .int(Int64(Int8(bitPattern: b)))
        default: throw fail("invalid type byte 0x\(hex2(b)) (never used)", at: start)
        }
    }

    private func arrayCount(_ n: UInt64, at start: Int) throws(OrchestraError) -> Value {
        guard n <= UInt64(remaining) else {
            throw fail("truncated input: array declares \(n) elements but only \(remaining) bytes remain", at: start)
        }
        return .array(Int(n))
    }

    private func mapCount(_ n: UInt64, at start: Int) throws(OrchestraError) -> Value {
        guard n <= UInt64(remaining) / 2 else {
            throw fail("truncated input: map declares \(n) entries but only \(remaining) bytes remain", at: start)
        }
        return .map(Int(n))
    }

    /// A str value (UTF-8 checked), naming `what` in errors.
    mutating func readStr(_ what: @autoclosure () -> String) throws(OrchestraError) -> UnsafeRawBufferPointer {
        let start = pos
        guard case .str(let s) = try next() else {
            throw fail("\(what()) must be a str", at: start)
        }
        if let bad = UTF8Validator.firstInvalidOffset(s) {
            throw fail("\(what()) is not valid UTF-8", at: pos - s.count + bad)
        }
        return s
    }

    /// Skips one complete value (validating its structure).
    mutating func skip(depth: Int) throws(OrchestraError) {
        let start = pos
        switch try next() {
        case .array(let n):
            if depth + 1 > maxDepth { throw tooDeep(at: start) }
            for _ in 0..<n { try skip(depth: depth + 1) }
        case .map(let n):
            if depth + 1 > maxDepth { throw tooDeep(at: start) }
            for _ in 0..<n { try skip(depth: depth + 1); try skip(depth: depth + 1) }
        default: break
        }
    }

    /// Transcodes one value into JSON text. bin/ext, non-str keys, NaN/Infinity are errors.
    mutating func transcodeToJSON(depth: Int, into w: inout ByteWriter) throws(OrchestraError) {
        let start = pos
        switch try next() {
        case .null: w.append("null")
        case .bool(let v): if v { w.append("true") } else { w.append("false") }
        case .int(let v): JSONWriter.writeInt(v, into: &w)
        case .uint(let v): JSONWriter.writeUInt(v, into: &w)
        case .float32(let f):
            guard f.isFinite else { throw fail("float \(f) has no JSON form", at: start) }
            w.append(f.description.utf8)
        case .float64(let d):
            guard d.isFinite else { throw fail("float \(d) has no JSON form", at: start) }
            w.append(d.description.utf8)
        case .str(let s):
            if let bad = UTF8Validator.firstInvalidOffset(s) {
                throw fail("str is not valid UTF-8", at: pos - s.count + bad)
            }
            JSONWriter.writeValidString(s, into: &w)
        case .bin:
            throw fail("bin where a JSON value is expected", at: start)
        case .ext(let t, _):
            throw fail("ext type \(t) where a JSON value is expected", at: start)
        case .array(let n):
            if depth + 1 > maxDepth { throw tooDeep(at: start) }
            w.append(0x5B)
            for i in 0..<n {
                if i > 0 { w.append(0x2C) }
                try transcodeToJSON(depth: depth + 1, into: &w)
            }
            w.append(0x5D)
        case .map(let n):
            if depth + 1 > maxDepth { throw tooDeep(at: start) }
            w.append(0x7B)
            for i in 0..<n {
                if i > 0 { w.append(0x2C) }
                let k = try readStr("a map key")
                JSONWriter.writeValidString(k, into: &w)
                w.append(0x3A)
                try transcodeToJSON(depth: depth + 1, into: &w)
            }
            w.append(0x7D)
        }
    }

    /// One value as JSON text in a new array of exactly its size (for the small values of
    /// headers, metadata and extensions).
    mutating func transcodeToJSON(depth: Int) throws(OrchestraError) -> [UInt8] {
        var w = ByteWriter(capacity: min(remaining, 1 << 16) * 9 / 8 + 16)
        try transcodeToJSON(depth: depth, into: &w)
        return makeBytes(w.bytes)
    }

    /// One value as JSON text in a new array of `capacity` bytes, written straight into the
    /// array's storage (for a large payload: no second allocation and copy); only a text that
    /// outgrows `capacity` is copied from the writer's own memory.
    mutating func transcodeToJSON(depth: Int, capacity: Int) throws(OrchestraError) -> [UInt8] {
        let cap = max(capacity, 16)
        var failure: OrchestraError? = nil
        var spill: [UInt8]? = nil
        let text = [UInt8](unsafeUninitializedCapacity: cap) { buf, initialized in
            var w = ByteWriter(lending: UnsafeMutableRawPointer(buf.baseAddress), capacity: cap)
            do throws(OrchestraError) {
                try transcodeToJSON(depth: depth, into: &w)
            } catch {
                failure = error
                initialized = 0
                return
            }
            if w.isInLentBuffer {
                initialized = w.count
            } else {
                // Too big for the guess: the bytes are in the writer's memory; copied below.
                initialized = 0
                spill = makeBytes(w.bytes)
            }
        }
        if let failure { throw failure }
        if let spill { return spill }
        return text
    }

    /// Checks one value exactly as `transcodeToJSON` does (the same errors at the same
    /// offsets) without writing anything. Returns whether the value is in the form
    /// `jsonToMsgPack` writes for its JSON text (smallest int, str, array and map headers;
    /// float64, as float32 becomes float64 through JSON), so that copying it gives the same
    /// bytes as transcoding it to JSON and back.
    mutating func checkJSONValue(depth: Int) throws(OrchestraError) -> Bool {
        let start = pos
        switch try next() {
        case .null, .bool, .uint: return true
        case .int(let v): return MsgPackReader.isSmallestInt(v, first: bytes[start], size: pos - start)
        case .float32(let f):
            guard f.isFinite else { throw fail("float \(f) has no JSON form", at: start) }
            return false
        case .float64(let d):
            guard d.isFinite else { throw fail("float \(d) has no JSON form", at: start) }
            return true
        case .str(let s):
            if let bad = UTF8Validator.firstInvalidOffset(s) {
                throw fail("str is not valid UTF-8", at: pos - s.count + bad)
            }
            return pos - s.count - start == MsgPackReader.smallestStrHeader(s.count)
        case .bin:
            throw fail("bin where a JSON value is expected", at: start)
        case .ext(let t, _):
            throw fail("ext type \(t) where a JSON value is expected", at: start)
        case .array(let n):
            if depth + 1 > maxDepth { throw tooDeep(at: start) }
            var smallest = pos - start == MsgPackReader.smallestContainerHeader(n)
            for _ in 0..<n {
                if !(try checkJSONValue(depth: depth + 1)) { smallest = false }
            }
            return smallest
        case .map(let n):
            if depth + 1 > maxDepth { throw tooDeep(at: start) }
            var smallest = pos - start == MsgPackReader.smallestContainerHeader(n)
            for _ in 0..<n {
                let keyStart = pos
                let k = try readStr("a map key")
                if pos - k.count - keyStart != MsgPackReader.smallestStrHeader(k.count) { smallest = false }
                if !(try checkJSONValue(depth: depth + 1)) { smallest = false }
            }
            return smallest
        }
    }

    /// Whether `v`, read from `size` bytes starting with `first`, is in the form
    /// `MsgPackWriter.writeInt`/`writeUInt` write (non-negative values as positive fixint or
    /// uint 8/16/32/64, negative ones as negative fixint or int 8/16/32/64, the smallest that
    /// holds the value). The value fixes the bytes after the type byte.
    static func isSmallestInt(_ v: Int64, first: UInt8, size: Int) -> Bool {
        let want: (UInt8, Int)
        if v >= 0 {
            if v < 0x80 { want = (UInt8(v), 1) }
            else if v <= 0xFF { want = (0xCC, 2) }
            else if v <= 0xFFFF { want = (0xCD, 3) }
            else if v <= 0xFFFF_FFFF { want = (0xCE, 5) }
            else { want = (0xCF, 9) }
        } else {
            if v >= -32 { want = (UInt8(bitPattern: Int8(v)), 1) }
            else if v >= Int64(Int8.min) { want = (0xD0, 2) }
            else if v >= Int64(Int16.min) { want = (0xD1, 3) }
            else if v >= Int64(Int32.min) { want = (0xD2, 5) }
            else { want = (0xD3, 9) }
        }
        return first == want.0 && size == want.1
    }

    /// Bytes of the smallest str header for `n` bytes (fixstr, str 8, str 16, str 32).
    @inline(__always)
    static func smallestStrHeader(_ n: Int) -> Int {
        n < 32 ? 1 : n <= 0xFF ? 2 : n <= 0xFFFF ? 3 : 5
    }

    /// Bytes of the smallest array or map header for `n` entries (fix, 16, 32).
    @inline(__always)
    static func smallestContainerHeader(_ n: Int) -> Int {
        n < 16 ? 1 : n <= 0xFFFF ? 3 : 5
    }
}

// MARK: - Envelope

enum MsgPackEnvelope {
    static func encode(_ m: Message, into w: inout ByteWriter) throws(OrchestraError) {
        try checkEncodable(m)
        let hasOthers = m.metadata.contains { $0.key != metaCompressed && $0.key != metaEncrypted }
        let hasMetadata = m.compressed || m.encrypted || hasOthers
        var count = 2
        if m.timestamp != nil { count += 1 }
        if m.textStorage(.version) != nil { count += 1 }
        if m.textStorage(.source) != nil { count += 1 }
        if m.textStorage(.target) != nil { count += 1 }
        if m.textStorage(.correlationId) != nil { count += 1 }
        if m.textStorage(.replyTo) != nil { count += 1 }
        if m.ttl != nil { count += 1 }
        if m.priority != nil { count += 1 }
        if m.contentType != .json { count += 1 }
        if m.headerCount > 0 { count += 1 }
        if hasMetadata { count += 1 }
        count += m.extensions.count
        if m.payloadStorage != nil { count += 1 }

        try MsgPackWriter.writeContainerHeader(map: true, count: count, into: &w)
        MsgPackWriter.writeKey("id", into: &w)
        try MsgPackWriter.writeStr(m.textStorage(.id) ?? UnsafeRawBufferPointer(start: nil, count: 0), into: &w, what: "id")
        MsgPackWriter.writeKey("type", into: &w)
        try MsgPackWriter.writeStr(m.textStorage(.type) ?? UnsafeRawBufferPointer(start: nil, count: 0), into: &w, what: "type")
        if let ts = m.timestamp {
            MsgPackWriter.writeKey("timestamp", into: &w)
            MsgPackWriter.writeInt(ts, into: &w)
        }
        if let v = m.textStorage(.version) {
            MsgPackWriter.writeKey("version", into: &w)
            try MsgPackWriter.writeStr(v, into: &w, what: "version")
        }
        if let v = m.textStorage(.source) {
            MsgPackWriter.writeKey("source", into: &w)
            try MsgPackWriter.writeStr(v, into: &w, what: "source")
        }
        if let v = m.textStorage(.target) {
            MsgPackWriter.writeKey("target", into: &w)
            try MsgPackWriter.writeStr(v, into: &w, what: "target")
        }
        if let v = m.textStorage(.correlationId) {
            MsgPackWriter.writeKey("correlationId", into: &w)
            try MsgPackWriter.writeStr(v, into: &w, what: "correlationId")
        }
        if let v = m.textStorage(.replyTo) {
            MsgPackWriter.writeKey("replyTo", into: &w)
            try MsgPackWriter.writeStr(v, into: &w, what: "replyTo")
        }
        if let ttl = m.ttl {
            MsgPackWriter.writeKey("ttl", into: &w)
            MsgPackWriter.writeInt(ttl, into: &w)
        }
        if let p = m.priority {
            MsgPackWriter.writeKey("priority", into: &w)
            MsgPackWriter.writeUInt(UInt64(p.rawValue), into: &w)
        }
        switch m.contentType {
        case .json: break
        case .text:
            MsgPackWriter.writeKey("contentType", into: &w)
            MsgPackWriter.writeKey("text/plain", into: &w)
        case .binary:
            MsgPackWriter.writeKey("contentType", into: &w)
            MsgPackWriter.writeKey("application/octet-stream", into: &w)
        }
        let headerCount = m.headerCount
        if headerCount > 0 {
            MsgPackWriter.writeKey("headers", into: &w)
            try MsgPackWriter.writeContainerHeader(map: true, count: headerCount, into: &w)
            for i in 0..<headerCount { try MsgPackWriter.writeHeader(m.headerStorage(at: i), into: &w) }
        }
        if hasMetadata {
            MsgPackWriter.writeKey("metadata", into: &w)
            let others = m.metadata.filter { $0.key != metaCompressed && $0.key != metaEncrypted }
            let n = (m.compressed ? 1 : 0) + (m.encrypted ? 1 : 0) + others.count
            try MsgPackWriter.writeContainerHeader(map: true, count: n, into: &w)
            if m.compressed { MsgPackWriter.writeKey("compressed", into: &w); w.append(0xC3) }
            if m.encrypted { MsgPackWriter.writeKey("encrypted", into: &w); w.append(0xC3) }
            for f in others { try writeField(f, into: &w, what: "metadata") }
        }
        for e in m.extensions { try writeField(e, into: &w, what: "extension") }
        if m.payloadForm == .msgpack, m.contentType == .json, !m.compressed, !m.encrypted,
           let mp = m.payloadStorage {
            // Checked at decoding and in the form jsonToMsgPack writes: a copy.
            MsgPackWriter.writeKey("payload", into: &w)
            w.append(mp)
        } else if let p = m.payload {
            MsgPackWriter.writeKey("payload", into: &w)
            if m.compressed || m.encrypted || m.contentType == .binary {
                try MsgPackWriter.writeBin(p, into: &w)
            } else if m.contentType == .text {
                try MsgPackWriter.writeStr(p, into: &w, what: "text payload")
            } else {
                try jsonToMsgPack(p, into: &w, what: "JSON payload")
            }
        }
    }

    private static func writeField(_ f: Field, into w: inout ByteWriter, what: StaticString) throws(OrchestraError) {
        try MsgPackWriter.writeStr(f.key, into: &w, what: "\(what) key")
        switch f.value {
        case .string(let s):
            try MsgPackWriter.writeStr(s, into: &w, what: "\(what) \"\(String(decoding: f.key, as: UTF8.self))\"")
        case .json(let j):
            try jsonToMsgPack(j, into: &w, what: "\(what) \"\(String(decoding: f.key, as: UTF8.self))\"")
        }
    }

    // MARK: Decoding

    static func envelopeError(_ at: Int, _ message: String) -> OrchestraError {
        EnvelopeFields.error(at, message)
    }

    static func decode(_ bytes: UnsafeRawBufferPointer, limits: DecodeLimits) throws(OrchestraError) -> Message {
        // The text fields and headers go into one TextBlock, as in the JSON decoder.
        let result: Result<Message, OrchestraError> = withUnsafeTemporaryAllocation(
            byteCount: JSONEnvelope.scratchText + JSONEnvelope.scratchRecords, alignment: 16
        ) { scratch in
            var text = TextCollector(scratch)
            do throws(OrchestraError) {
                return .success(try decodeBody(bytes, limits: limits, text: &text))
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    private static func decodeBody(_ bytes: UnsafeRawBufferPointer, limits: DecodeLimits, text: inout TextCollector) throws(OrchestraError) -> Message {
        var r = MsgPackReader(bytes, maxDepth: limits.effectiveDepth)
        guard case .map(let count) = try r.next() else {
            throw r.fail("the envelope must be a map", at: 0)
        }
        if r.maxDepth < 1 { throw r.tooDeep(at: 0) }

        var f = EnvelopeFields()
        var payloadPos: Int?
        var seen: UInt32 = 0

        for _ in 0..<count {
            let keyPos = r.pos
            let key = try r.readStr("an envelope key")
            let valuePos = r.pos
            guard let k = EnvelopeKey.lookup(key) else {
                let json = try r.transcodeToJSON(depth: 1)
                f.extensions.append(Field(key: makeBytes(key), value: .json(json)))
                continue
            }
            let bit: UInt32 = 1 << UInt32(k.rawValue)
            if seen & bit != 0 { throw envelopeError(keyPos, "duplicate key \"\(k.name)\"") }
            seen |= bit
            switch k {
            case .id: try collectText(&r, k, .id, &text)
            case .type: try collectText(&r, k, .type, &text)
            case .version: try collectText(&r, k, .version, &text)
            case .source: try collectText(&r, k, .source, &text)
            case .target: try collectText(&r, k, .target, &text)
            case .correlationId: try collectText(&r, k, .correlationId, &text)
            case .replyTo: try collectText(&r, k, .replyTo, &text)
            case .contentType:
                let v = try readText(&r, k)
                f.contentType = try EnvelopeFields.contentType(v, at: valuePos)
            case .timestamp:
                f.timestamp = try readInt(&r, k)
            case .ttl:
                f.ttl = try EnvelopeFields.ttl(readInt(&r, k), at: valuePos)
            case .priority:
                f.priority = try EnvelopeFields.priority(readInt(&r, k), at: valuePos)
            case .headers:
                try collectHeaders(&r, k, &text)
            case .metadata:
                guard case .map(let n) = try r.next() else {
                    throw envelopeError(valuePos, "\"metadata\" must be a map")
                }
                if r.maxDepth < 2 { throw r.tooDeep(at: valuePos) }
                var fields: [Field] = []
                for _ in 0..<n {
                    let fk = makeBytes(try r.readStr("a metadata key"))
                    let fpos = r.pos
                    if fk == metaCompressed || fk == metaEncrypted {
                        guard case .bool(let flag) = try r.next() else {
                            throw envelopeError(fpos, "\"metadata.\(String(decoding: fk, as: UTF8.self))\" must be a boolean")
                        }
                        if fk == metaCompressed { f.compressed = flag } else { f.encrypted = flag }
                        fields.append(Field(key: fk, value: .json([])))
                    } else {
                        fields.append(Field(key: fk, value: try readFieldValue(&r)))
                    }
                }
                do { try checkDuplicateKeys(fields, in: "\"metadata\"") } catch { throw envelopeError(valuePos, error.message) }
                f.metadata = fields.filter { $0.key != metaCompressed && $0.key != metaEncrypted }
            case .payload:
                payloadPos = valuePos
                try r.skip(depth: 1)
            }
        }
        if r.pos != bytes.count {
            throw r.fail("\(bytes.count - r.pos) trailing bytes after the envelope map")
        }
        // The checks of EnvelopeFields.checkComplete, in its order.
        if !text.has(.id) { throw OrchestraError(.parse, "invalid envelope: missing required field \"id\"") }
        if !text.has(.type) { throw OrchestraError(.parse, "invalid envelope: missing required field \"type\"") }
        try checkDuplicateKeys(f.extensions, in: "the envelope")
        let compressed = f.compressed, encrypted = f.encrypted, contentType = f.contentType
        var payload: [UInt8]? = nil
        var form = PayloadForm.bytes
        if let start = payloadPos {
            r.pos = start
            if compressed || encrypted || contentType == .binary {
                guard case .bin(let b) = try r.next() else {
                    throw envelopeError(start, compressed || encrypted
                        ? "a compressed or encrypted payload must be bin"
                        : "an application/octet-stream payload must be bin")
                }
                payload = makeBytes(b)
            } else if contentType == .text {
                payload = makeBytes(try r.readStr("a text/plain payload"))
            } else if try r.checkJSONValue(depth: 1) {
                // Kept as it arrived; its JSON text is made when asked for (Message.payload).
                payload = makeBytes(bytes, start, r.pos)
                form = .msgpack
            } else {
                // Checked, but not in our encoder's form (e.g. float32, a wider int or header
                // than needed): kept as JSON text, so that it re-encodes as before.
                r.pos = start
                payload = try r.transcodeToJSON(depth: 1)
            }
        }
        return Message(
            text: MessageText(block: text.makeBlock()), timestamp: f.timestamp, ttl: f.ttl,
            priority: f.priority, payload: payload, payloadForm: form, contentType: contentType,
            compressed: compressed, encrypted: encrypted, metadata: f.metadata, extensions: f.extensions)
    }

    /// A str value for text field `k` into the collector, with the checks of `readText`.
    @inline(__always)
    private static func collectText(_ r: inout MsgPackReader, _ k: EnvelopeKey, _ field: TextField, _ text: inout TextCollector) throws(OrchestraError) {
        let at = r.pos
        let s = try r.readStr("\"\(k.name)\"")
        if s.count > Message.maxTextFieldLength {
            throw OrchestraError(.tooBig, "invalid envelope at byte \(at): \"\(k.name)\" is \(s.count) bytes; the limit is \(Message.maxTextFieldLength)")
        }
        if s.isEmpty && (k == .id || k == .type) {
            throw envelopeError(at, "\"\(k.name)\" must not be empty")
        }
        let from = text.append(s)
        text.setField(field, from, text.count)
    }

    /// The `headers` map into the collector, with the checks of `readFields`: str values are
    /// kept as text, other values as their JSON text.
    private static func collectHeaders(_ r: inout MsgPackReader, _ k: EnvelopeKey, _ text: inout TextCollector) throws(OrchestraError) {
        let at = r.pos
        guard case .map(let n) = try r.next() else {
            throw envelopeError(at, "\"\(k.name)\" must be a map")
        }
        if r.maxDepth < 2 { throw r.tooDeep(at: at) }
        for _ in 0..<n {
            let ks = text.append(try r.readStr("a \(k.name) key"))
            let ke = text.count
            let vat = r.pos
            if vat < r.bytes.count, case let b = r.bytes[vat], (0xA0...0xBF).contains(b) || b == 0xD9 || b == 0xDA || b == 0xDB {
                let vs = text.append(try r.readStr("a string value"))
                text.addHeader(ks, ke, vs, text.count, isJSON: false)
            } else {
                let json = try r.transcodeToJSON(depth: 2)
                let vs = json.withUnsafeBytes { text.append($0) }
                text.addHeader(ks, ke, vs, text.count, isJSON: true)
            }
        }
        if let dup = text.firstDuplicateHeaderKey() {
            throw envelopeError(at, "duplicate key \"\(String(decoding: dup, as: UTF8.self))\" in \"\(k.name)\"")
        }
    }

    /// The JSON text of a `.msgpack`-form payload (checked by `checkJSONValue` when it was
    /// decoded, within a depth limit no deeper than the ceiling used here, so this cannot fail).
    static func jsonText(ofCheckedPayload mp: [UInt8]) -> [UInt8] {
        do {
            return try withBytes(mp) { (b) throws(OrchestraError) -> [UInt8] in
                var r = MsgPackReader(b, maxDepth: DecodeLimits.depthCeiling)
                return try r.transcodeToJSON(depth: 0, capacity: b.count + b.count / 8 + 16)
            }
        } catch {
            preconditionFailure("a checked MessagePack payload did not transcode: \(error.message)")
        }
    }

    private static func readText(_ r: inout MsgPackReader, _ k: EnvelopeKey) throws(OrchestraError) -> [UInt8] {
        let at = r.pos
        let s = try r.readStr("\"\(k.name)\"")
        if s.count > Message.maxTextFieldLength {
            throw OrchestraError(.tooBig, "invalid envelope at byte \(at): \"\(k.name)\" is \(s.count) bytes; the limit is \(Message.maxTextFieldLength)")
        }
        if s.isEmpty && (k == .id || k == .type) {
            throw envelopeError(at, "\"\(k.name)\" must not be empty")
        }
        return makeBytes(s)
    }

    private static func readInt(_ r: inout MsgPackReader, _ k: EnvelopeKey) throws(OrchestraError) -> Int64 {
        let at = r.pos
        switch try r.next() {
        case .int(let v): return v
        case .uint(let v): throw envelopeError(at, "\"\(k.name)\" \(v) is out of the 64-bit integer range")
        case .float32, .float64: throw envelopeError(at, "\"\(k.name)\" must be an integer, got a float")
        default: throw envelopeError(at, "\"\(k.name)\" must be an integer")
        }
    }

    private static func readFieldValue(_ r: inout MsgPackReader) throws(OrchestraError) -> FieldValue {
        let at = r.pos
        if at < r.bytes.count {
            let b = r.bytes[at]
            if (0xA0...0xBF).contains(b) || b == 0xD9 || b == 0xDA || b == 0xDB {
                return .string(makeBytes(try r.readStr("a string value")))
            }
        }
        return .json(try r.transcodeToJSON(depth: 2))
    }
}
