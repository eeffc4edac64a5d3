// The one JSON scanner: a byte-level cursor over UnsafeRawBufferPointer, used by the
// validator, the envelope decoder, the tree parser (JSONValue), JSONText and the JSON ->
// MessagePack transcoder. The input is hostile: every read is bounds-checked, nesting is
// limited, and errors name the byte offset. Strings are checked here (`scanStringRaw`) and
// unescaped by one function (`unescapeChecked`), whatever the caller does with them.

/// A cursor over JSON text. The caller validates UTF-8 of the whole input first, so the
/// scanner only checks structure. Positions in errors are offsets into `bytes` plus `base`.
struct JSONScanner {
    let bytes: UnsafeRawBufferPointer
    var pos: Int = 0
    let maxDepth: Int
    var base: Int = 0
    /// SWAR mask of the bytes `scanStringRaw` stops at to check UTF-8: the high bits when the
    /// scanner checks UTF-8 inside strings itself (`checksUTF8`), else 0.
    let utf8StopMask: UInt64

    /// With `checksUTF8`, `scanStringRaw` (and so `skipValue`) also checks that the strings'
    /// raw bytes are valid UTF-8, throwing at the first invalid sequence (the envelope decoder
    /// then reports the input's first invalid byte). Since a byte outside a string that is not
    /// ASCII is a syntax error, a scan that succeeds has then seen valid UTF-8 throughout.
    /// Without it the caller must have validated the whole input first.
    init(_ bytes: UnsafeRawBufferPointer, maxDepth: Int, pos: Int = 0, checksUTF8: Bool = false) {
        self.bytes = bytes
        self.maxDepth = maxDepth
        self.pos = pos
        self.utf8StopMask = checksUTF8 ? 0x8080_8080_8080_8080 : 0
    }

    var atEnd: Bool { pos >= bytes.count }

    @inline(never)
    func fail(_ message: String, at p: Int? = nil) -> OrchestraError {
        OrchestraError(.parse, "invalid JSON at byte \(base + (p ?? pos)): \(message)")
    }

    func tooDeep() -> OrchestraError {
        OrchestraError(.tooBig, "JSON nesting at byte \(base + pos) exceeds the depth limit of \(maxDepth)")
    }

    @inline(__always)
    mutating func skipWhitespace() {
        let n = bytes.count
        if pos < n && bytes[pos] > 0x20 { return }   // the common case: no whitespace
        while pos < n {
            let c = bytes[pos]
            if c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 { pos += 1 } else { return }
        }
    }

    /// The next byte (no whitespace skipping); throws at the end of input.
    @inline(__always)
    func peek(_ expecting: StaticString) throws(OrchestraError) -> UInt8 {
        guard pos < bytes.count else { throw fail("unexpected end of input, expected \(expecting)") }
        return bytes[pos]
    }

    /// Skips whitespace, then consumes `c` or throws "expected 'c' <context>".
    @inline(__always)
    mutating func expect(_ c: UInt8, _ context: StaticString) throws(OrchestraError) {
        skipWhitespace()
        if pos < bytes.count && bytes[pos] == c { pos += 1; return }
        try expectFailed(c, context)
    }

    @inline(never)
    private func expectFailed(_ c: UInt8, _ context: StaticString) throws(OrchestraError) {
        guard pos < bytes.count else {
            throw fail("unexpected end of input, expected '\(Character(Unicode.Scalar(c)))' \(context)")
        }
        throw fail("expected '\(Character(Unicode.Scalar(c)))' \(context)")
    }

    /// Only whitespace may follow the value.
    mutating func expectEnd() throws(OrchestraError) {
        skipWhitespace()
        if pos < bytes.count { throw fail("unexpected data after the JSON value") }
    }

    // MARK: Strings

    /// Scans (validates) the string whose opening quote is at `pos` without copying it: returns
    /// the range of its raw contents (between the quotes) and whether it holds escapes. Raw
    /// control characters, bad escapes and lone surrogates are errors. Inlined: a string that runs to its closing quote without a stop (no
    /// escape, no byte to check) costs one scan; everything else goes to `scanStringRawSlow`.
    @inline(__always)
    mutating func scanStringRaw() throws(OrchestraError) -> (start: Int, end: Int, escaped: Bool) {
        let n = bytes.count
        guard let p = bytes.baseAddress else { throw fail("unterminated string") }
        let start = pos + 1
        let stop = firstScanStop(p, from: start, count: n, alsoStopAt: utf8StopMask)
        if stop < n && p.load(fromByteOffset: stop, as: UInt8.self) == 0x22 {
            pos = stop + 1
            return (start, stop, false)
        }
        pos = stop
        return try scanStringRawSlow(p, start: start)
    }

    /// `scanStringRaw` from a stop that is not the closing quote (at `pos`).
    @inline(never)
    private mutating func scanStringRawSlow(_ p: UnsafeRawPointer, start: Int) throws(OrchestraError) -> (start: Int, end: Int, escaped: Bool) {
        let n = bytes.count
        var escaped = false
        while true {
            guard pos < n else { throw fail("unterminated string") }
            let c = p.load(fromByteOffset: pos, as: UInt8.self)
            if c == 0x22 {
                let end = pos
                pos += 1
                return (start, end, escaped)
            }
            if c == 0x5C {
                escaped = true
                // A one-character escape (\" \\ \/ \b \f \n \r \t) is skipped here; \u and
                // errors go through scanEscape.
                let e: UInt8 = pos + 1 < n ? p.load(fromByteOffset: pos + 1, as: UInt8.self) : 0
                switch e {
                case 0x22, 0x5C, 0x2F, 0x62, 0x66, 0x6E, 0x72, 0x74:
                    pos += 2
                default:
                    try checkEscape()
                }
            } else if c >= 0x80 {   // only a stop when checking UTF-8
                guard let next = utf8SequenceEnd(p, at: pos, count: n) else { throw fail("invalid UTF-8") }
                pos = next
            } else {
                throw fail("control character 0x\(hex2(c)) must be escaped in a string")
            }
            pos = firstScanStop(p, from: pos, count: n, alsoStopAt: utf8StopMask)
        }
    }

    /// The string value whose opening quote is at `pos`, unescaped, as a new array (of exactly
    /// its size when it holds no escape).
    mutating func readString() throws(OrchestraError) -> [UInt8] {
        let (start, end, escaped) = try scanStringRaw()
        if !escaped { return makeBytes(bytes, start, end) }
        return JSONScanner.unescaped(UnsafeRawBufferPointer(rebasing: bytes[start..<end]))
    }

    /// Checks the escape sequence at `pos` (a backslash) and moves past it: a one-character
    /// escape, or `\uXXXX` (a high surrogate must be followed by a low one, a low one must
    /// not stand alone). Its value is written by `unescapeChecked`.
    private mutating func checkEscape() throws(OrchestraError) {
        let escPos = pos
        pos += 1
        guard pos < bytes.count else { throw fail("unterminated escape sequence", at: escPos) }
        let e = bytes[pos]
        pos += 1
        switch e {
        case 0x22, 0x5C, 0x2F, 0x62, 0x66, 0x6E, 0x72, 0x74:   // \" \\ \/ \b \f \n \r \t
            return
        case 0x75:                                             // \uXXXX
            let scalar = try hex4(escPos)
            if scalar >= 0xD800 && scalar <= 0xDBFF {
                guard pos + 1 < bytes.count, bytes[pos] == 0x5C, bytes[pos + 1] == 0x75 else {
                    throw fail("lone high surrogate \\u\(hexString(scalar)) (a \\uDC00-\\uDFFF escape must follow)", at: escPos)
                }
                let lowPos = pos
                pos += 2
                let low = try hex4(lowPos)
                guard low >= 0xDC00 && low <= 0xDFFF else {
                    throw fail("lone high surrogate \\u\(hexString(scalar)) (followed by \\u\(hexString(low)))", at: escPos)
                }
            } else if scalar >= 0xDC00 && scalar <= 0xDFFF {
                throw fail("lone low surrogate \\u\(hexString(scalar))", at: escPos)
            }
        default:
            throw fail("invalid escape sequence '\\\(printable(e))'", at: escPos)
        }
    }

    private mutating func hex4(_ escPos: Int) throws(OrchestraError) -> UInt32 {
        // pos is just after "\u"
        guard pos + 4 <= bytes.count else { throw fail("truncated \\u escape", at: escPos) }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = bytes[pos]
            let d: UInt8
            switch c {
            case 0x30...0x39: d = c - 0x30
            case 0x41...0x46: d = c - 0x41 + 10
            case 0x61...0x66: d = c - 0x61 + 10
            default: throw fail("invalid hex digit '\(printable(c))' in \\u escape", at: pos)
            }
            v = v << 4 | UInt32(d)
            pos += 1
        }
        return v
    }

    // MARK: Numbers and literals

    /// Scans a number at `pos` per the RFC grammar. Returns true when it is an integer
    /// (no fraction, no exponent).
    mutating func scanNumber() throws(OrchestraError) -> Bool {
        let n = bytes.count
        if pos < n && bytes[pos] == 0x2D { pos += 1 }   // -
        guard pos < n else { throw fail("unexpected end of input in a number") }
        let first = bytes[pos]
        if first == 0x30 {
            pos += 1
            if pos < n && isJSONDigit(bytes[pos]) { throw fail("leading zeros are not allowed in numbers") }
        } else if isJSONDigit(first) {
            while pos < n && isJSONDigit(bytes[pos]) { pos += 1 }
        } else {
            throw fail("expected a digit in number")
        }
        var integer = true
        if pos < n && bytes[pos] == 0x2E {   // .
            integer = false
            pos += 1
            guard pos < n, isJSONDigit(bytes[pos]) else { throw fail("expected a digit after the decimal point") }
            while pos < n && isJSONDigit(bytes[pos]) { pos += 1 }
        }
        if pos < n && (bytes[pos] == 0x65 || bytes[pos] == 0x45) {   // e E
            integer = false
            pos += 1
            if pos < n && (bytes[pos] == 0x2B || bytes[pos] == 0x2D) { pos += 1 }
            guard pos < n, isJSONDigit(bytes[pos]) else { throw fail("expected a digit in the exponent") }
            while pos < n && isJSONDigit(bytes[pos]) { pos += 1 }
        }
        return integer
    }

    mutating func scanLiteral(_ word: StaticString) throws(OrchestraError) {
        let len = word.utf8CodeUnitCount
        let start = word.utf8Start
        guard pos + len <= bytes.count else { throw fail("invalid literal (expected '\(word)')") }
        for i in 0..<len where bytes[pos + i] != start[i] {
            throw fail("invalid literal (expected '\(word)')")
        }
        pos += len
    }

    // MARK: Values

    /// Skips one value starting at `pos` (whitespace already skipped), validating it.
    /// `depth` is the nesting level of the container holding the value (0 at the top).
    /// Iterative: nesting costs one bit per level, not a stack frame.
    mutating func skipValue(depth baseDepth: Int) throws(OrchestraError) {
        var stack = BitStack()   // true = object, false = array
        while true {
            // A value.
            let c = try peek("a value")
            switch c {
            case 0x7B, 0x5B:   // { [
                if baseDepth + stack.count + 1 > maxDepth { throw tooDeep() }
                let isObject = c == 0x7B
                stack.push(isObject)
                pos += 1
                skipWhitespace()
                let close: UInt8 = isObject ? 0x7D : 0x5D
                if pos < bytes.count && bytes[pos] == close {
                    pos += 1
                    stack.pop()
                } else if isObject {
                    try scanMemberKey()
                    skipWhitespace()
                    continue
                } else {
                    continue
                }
            case 0x22: _ = try scanStringRaw()
            case 0x2D, 0x30...0x39: _ = try scanNumber()
            case 0x74: try scanLiteral("true")
            case 0x66: try scanLiteral("false")
            case 0x6E: try scanLiteral("null")
            default: throw fail("unexpected character '\(printable(c))', expected a value")
            }
            // After a value: close containers or move to the next element.
            while true {
                if stack.count == 0 { return }
                skipWhitespace()
                let inObject = stack.top
                guard pos < bytes.count else {
                    throw fail(inObject ? "unexpected end of input, expected ',' or '}'" : "unexpected end of input, expected ',' or ']'")
                }
                let d = bytes[pos]
                if d == 0x2C {   // ,
                    pos += 1
                    skipWhitespace()
                    if inObject { try scanMemberKey(); skipWhitespace() }
                    break
                }
                if (inObject && d == 0x7D) || (!inObject && d == 0x5D) {
                    pos += 1
                    stack.pop()
                    continue
                }
                throw fail(inObject ? "expected ',' or '}' after object member" : "expected ',' or ']' after array element")
            }
        }
    }

    /// At a member: a string key, ':' (whitespace allowed around it).
    private mutating func scanMemberKey() throws(OrchestraError) {
        guard pos < bytes.count else { throw fail("unexpected end of input, expected an object key") }
        guard bytes[pos] == 0x22 else { throw fail("expected a string as object key") }
        _ = try scanStringRaw()
        try expect(0x3A, "after object key")
        skipWhitespace()
    }
}

/// A stack of booleans, one bit per level; spills to an array past 64 levels.
struct BitStack {
    private var bits: UInt64 = 0
    private var spill: [Bool] = []
    private(set) var count = 0

    mutating func push(_ v: Bool) {
        if count < 64 {
            if v { bits |= 1 << UInt64(count) } else { bits &= ~(1 << UInt64(count)) }
        } else {
            spill.append(v)
        }
        count += 1
    }

    mutating func pop() {
        if count > 64 { spill.removeLast() }
        count -= 1
    }

    var top: Bool {
        let i = count - 1
        if i < 64 { return bits & (1 << UInt64(i)) != 0 }
        return spill[i - 64]
    }
}

extension JSONScanner {
    /// After an object member: consumes ',' (returns false) or '}' (returns true).
    @inline(__always)
    mutating func consumeObjectEnd() throws(OrchestraError) -> Bool {
        skipWhitespace()
        if pos < bytes.count {
            let c = bytes[pos]
            if c == 0x2C { pos += 1; return false }
            if c == 0x7D { pos += 1; return true }
        }
        throw objectEndFailure()
    }

    @inline(never)
    func objectEndFailure() -> OrchestraError {
        guard pos < bytes.count else { return fail("unexpected end of input, expected ',' or '}'") }
        return fail("expected ',' or '}' after object member")
    }
}

// MARK: Small helpers

/// Where the decoder's string scan stops: the first byte at or after `from` (below `count`)
/// that is '"', '\\' or a control character, as `firstStringStop(_:from:count:)`; with `high` = 0x8080...80 it also stops at every byte
/// >= 0x80 (the start of a UTF-8 sequence to check).
@inline(__always)
func firstScanStop(_ p: UnsafeRawPointer, from: Int, count n: Int, alsoStopAt high: UInt64) -> Int {
    var j = from
    // 16 bytes per step (SSE2 compares), then 8 (SWAR), then one at a time.
    if j + 16 <= n {
        let quote = SIMD16<UInt8>(repeating: 0x22), backslash = SIMD16<UInt8>(repeating: 0x5C)
        let space = SIMD16<UInt8>(repeating: 0x20), hi = SIMD16<UInt8>(repeating: UInt8(truncatingIfNeeded: high))
        repeat {
            let v = p.loadUnaligned(fromByteOffset: j, as: SIMD16<UInt8>.self)
            let stop = (v .== quote) .| (v .== backslash) .| (v .< space) .| ((v & hi) .!= .zero)
            // The mask's lanes are 0 or all ones; as two words, the lowest set byte is the stop.
            let m = unsafeBitCast(stop, to: SIMD2<UInt64>.self)
            if m[0] != 0 { return j + m[0].trailingZeroBitCount >> 3 }
            if m[1] != 0 { return j + 8 + m[1].trailingZeroBitCount >> 3 }
            j += 16
        } while j + 16 <= n
    }
    while j + 8 <= n {
        let w = UInt64(littleEndian: p.loadUnaligned(fromByteOffset: j, as: UInt64.self))
        let m = swarStringStops(w) | (w & high)
        if m != 0 { return j + m.trailingZeroBitCount >> 3 }
        j += 8
    }
    let highByte = UInt8(truncatingIfNeeded: high)
    while j < n {
        let c = p.load(fromByteOffset: j, as: UInt8.self)
        if c < 0x20 || c == 0x22 || c == 0x5C || c & highByte != 0 { return j }
        j += 1
    }
    return n
}

/// For 8 bytes of a JSON string (little-endian load): a mask whose lowest set bit (bit 7 of a
/// byte) marks the first byte that is '"', '\' or a control character (< 0x20). Bytes above
/// the first such byte may be marked falsely (borrows), so only the lowest mark is meaningful.
@inline(__always)
func swarStringStops(_ w: UInt64) -> UInt64 {
    let ones: UInt64 = 0x0101_0101_0101_0101
    let q = w ^ (ones &* 0x22)
    let b = w ^ (ones &* 0x5C)
    let quote = (q &- ones) & ~q
    let backslash = (b &- ones) & ~b
    let control = (w &- ones &* 0x20) & ~w
    return (quote | backslash | control) & (ones &* 0x80)
}

/// The offset of the first byte at or after `from` (below `count`) that is '"', '\' or a
/// control character, or `count` if there is none: 16 bytes per step while 32 or more remain
/// (behind that test, so short strings do not pay its set-up), then 8 at a time, then bytes.
@inline(__always)
func firstStringStop(_ p: UnsafeRawPointer, from: Int, count n: Int) -> Int {
    var j = from
    if n &- j >= 32 {
        j = skipLongStringRun(p, from: j, count: n)
        if n &- j >= 16 { return j }   // it stopped at a byte to find
    }
    // Offsets stay below n, so wrapping arithmetic cannot wrap.
    while n &- j >= 8 {
        let m = swarStringStops(UInt64(littleEndian: p.loadUnaligned(fromByteOffset: j, as: UInt64.self)))
        if m != 0 { return j &+ m.trailingZeroBitCount >> 3 }
        j &+= 8
    }
    while j < n {
        let c = p.load(fromByteOffset: j, as: UInt8.self)
        if c < 0x20 || c == 0x22 || c == 0x5C { return j }
        j &+= 1
    }
    return n
}

/// Looks 16 bytes per step for '"', '\' or a control character: returns its offset, or the
/// offset where fewer than 16 bytes remain (a result with 16 or more bytes after it is a find).
@inline(__always)
func skipLongStringRun(_ p: UnsafeRawPointer, from: Int, count n: Int) -> Int {
    var j = from
    while n &- j >= 16 {
        let m0 = swarStringStops(UInt64(littleEndian: p.loadUnaligned(fromByteOffset: j, as: UInt64.self)))
        let m1 = swarStringStops(UInt64(littleEndian: p.loadUnaligned(fromByteOffset: j &+ 8, as: UInt64.self)))
        if m0 | m1 != 0 {
            return m0 != 0 ? j &+ m0.trailingZeroBitCount >> 3 : j &+ 8 &+ m1.trailingZeroBitCount >> 3
        }
        j &+= 16
    }
    return j
}

// MARK: The unescaper

extension JSONScanner {
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

    /// The unescaped contents of a string that `scanStringRaw` has checked, as a new array
    /// (the unescaped form is never longer than the raw one, so it is written in place).
    static func unescaped(_ raw: UnsafeRawBufferPointer) -> [UInt8] {
        let n = raw.count
        return [UInt8](unsafeUninitializedCapacity: n) { buf, initialized in
            var w = ByteWriter(lending: UnsafeMutableRawPointer(buf.baseAddress), capacity: n)
            unescapeChecked(raw, into: &w)
            initialized = w.count
        }
    }
}
