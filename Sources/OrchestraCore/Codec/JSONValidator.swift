// Strict RFC 8259 JSON: a byte-level scanner over UnsafeRawBufferPointer, used by the validator,
// the envelope decoder and the JSON -> MessagePack transcoder. The input is hostile: every
// read is bounds-checked, nesting is limited, and errors name the byte offset.
import Glibc

/// Limits applied to every decoded input (JSON text, MessagePack, envelopes).
public struct DecodeLimits: Sendable, Equatable {
    /// The deepest nesting any decoder accepts, whatever `maxDepth` says. Decoders and
    /// transcoders recurse once per level, so this keeps stack use bounded on any thread.
    public static let depthCeiling = 256

    /// Largest input in bytes (default 16 MiB).
    public var maxSize: Int
    /// Deepest nesting of objects/arrays (maps/arrays); the envelope itself is level 1.
    /// Values above `depthCeiling` act as `depthCeiling`.
    public var maxDepth: Int

    public init(maxSize: Int = 16 << 20, maxDepth: Int = 64) {
        self.maxSize = maxSize
        self.maxDepth = maxDepth
    }

    public static let `default` = DecodeLimits()

    /// The depth limit decoders enforce: `maxDepth` clamped to 0...depthCeiling.
    @inlinable public var effectiveDepth: Int { min(max(maxDepth, 0), DecodeLimits.depthCeiling) }
}

public enum JSONValidator {
    /// Checks that `bytes` is exactly one JSON value (RFC 8259), optionally surrounded by
    /// whitespace. Throws `.parse` ("invalid JSON at byte 17: ...") or `.tooBig` (size, depth).
    public static func validate(_ bytes: UnsafeRawBufferPointer, limits: DecodeLimits) throws(OrchestraError) {
        if bytes.count > limits.maxSize {
            throw OrchestraError(.tooBig, "JSON text is \(bytes.count) bytes; the limit is \(limits.maxSize)")
        }
        if let bad = UTF8Validator.firstInvalidOffset(bytes) {
            throw OrchestraError(.parse, "invalid JSON at byte \(bad): invalid UTF-8")
        }
        var s = JSONScanner(bytes, maxDepth: limits.effectiveDepth)
        s.skipWhitespace()
        try s.skipValue(depth: 0)
        try s.expectEnd()
    }

    public static func validate(_ bytes: [UInt8], limits: DecodeLimits = .default) throws(OrchestraError) {
        try withBytes(bytes) { (b) throws(OrchestraError) in try validate(b, limits: limits) }
    }
}

@inline(__always) func isJSONDigit(_ c: UInt8) -> Bool { c &- 0x30 < 10 }

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

    /// Scans the string whose opening quote is at `pos`. With `decode`, appends the unescaped
    /// UTF-8 bytes to `out`. Raw control characters, bad escapes and lone surrogates are errors.
    mutating func scanString(into out: inout [UInt8], decode: Bool) throws(OrchestraError) {
        let n = bytes.count
        guard let p = bytes.baseAddress else { throw fail("unterminated string") }
        pos += 1   // opening quote
        var runStart = pos
        while true {
            pos = firstStringStop(p, from: pos, count: n)
            guard pos < n else { throw fail("unterminated string") }
            let c = p.load(fromByteOffset: pos, as: UInt8.self)
            if c == 0x22 {   // "
                if decode && pos > runStart {
                    out.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[runStart..<pos]))
                }
                pos += 1
                return
            }
            if c == 0x5C {   // backslash
                if decode && pos > runStart {
                    out.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[runStart..<pos]))
                }
                try scanEscape(into: &out, decode: decode)
                runStart = pos
                continue
            }
            throw fail("control character 0x\(hex2(c)) must be escaped in a string")
        }
    }

    /// Scans (validates) the string whose opening quote is at `pos` without copying it: returns
    /// the range of its raw contents (between the quotes) and whether it holds escapes. Errors
    /// as `scanString`. Inlined: a string that runs to its closing quote without a stop (no
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
                    var none: [UInt8] = []
                    try scanEscape(into: &none, decode: false)
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

    /// The string value whose opening quote is at `pos`, unescaped, as a new array of exactly
    /// its size.
    mutating func readString() throws(OrchestraError) -> [UInt8] {
        let open = pos
        let (start, end, escaped) = try scanStringRaw()
        if !escaped { return makeBytes(bytes, start, end) }
        var out = [UInt8]()
        out.reserveCapacity(end - start)
        let after = pos
        pos = open
        try scanString(into: &out, decode: true)
        precondition(pos == after)
        return out
    }

    private mutating func scanEscape(into out: inout [UInt8], decode: Bool) throws(OrchestraError) {
        let escPos = pos
        pos += 1
        guard pos < bytes.count else { throw fail("unterminated escape sequence", at: escPos) }
        let e = bytes[pos]
        pos += 1
        let simple: UInt8
        switch e {
        case 0x22: simple = 0x22          // \"
        case 0x5C: simple = 0x5C          // \\
        case 0x2F: simple = 0x2F          // \/
        case 0x62: simple = 0x08          // \b
        case 0x66: simple = 0x0C          // \f
        case 0x6E: simple = 0x0A          // \n
        case 0x72: simple = 0x0D          // \r
        case 0x74: simple = 0x09          // \t
        case 0x75:                        // \uXXXX
            var scalar = try hex4(escPos)
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
                scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
            } else if scalar >= 0xDC00 && scalar <= 0xDFFF {
                throw fail("lone low surrogate \\u\(hexString(scalar))", at: escPos)
            }
            if decode { appendUTF8(scalar, to: &out) }
            return
        default:
            throw fail("invalid escape sequence '\\\(printable(e))'", at: escPos)
        }
        if decode { out.append(simple) }
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

@inline(__always)
func appendUTF8(_ scalar: UInt32, to out: inout [UInt8]) {
    if scalar < 0x80 {
        out.append(UInt8(scalar))
    } else if scalar < 0x800 {
        out.append(UInt8(0xC0 | (scalar >> 6)))
        out.append(UInt8(0x80 | (scalar & 0x3F)))
    } else if scalar < 0x10000 {
        out.append(UInt8(0xE0 | (scalar >> 12)))
        out.append(UInt8(0x80 | ((scalar >> 6) & 0x3F)))
        out.append(UInt8(0x80 | (scalar & 0x3F)))
    } else {
        out.append(UInt8(0xF0 | (scalar >> 18)))
        out.append(UInt8(0x80 | ((scalar >> 12) & 0x3F)))
        out.append(UInt8(0x80 | ((scalar >> 6) & 0x3F)))
        out.append(UInt8(0x80 | (scalar & 0x3F)))
    }
}

private let hexDigitsUpper: [UInt8] = Array("0123456789ABCDEF".utf8)

func hex2(_ b: UInt8) -> String {
    String(decoding: [hexDigitsUpper[Int(b >> 4)], hexDigitsUpper[Int(b & 0xF)]], as: UTF8.self)
}

func hexString(_ v: UInt32) -> String {
    hex2(UInt8(truncatingIfNeeded: v >> 8)) + hex2(UInt8(truncatingIfNeeded: v))
}

/// A byte for an error message: printable ASCII as itself, else 0xNN.
func printable(_ b: UInt8) -> String {
    if b >= 0x20 && b < 0x7F { return String(Character(Unicode.Scalar(b))) }
    return "0x" + hex2(b)
}

/// Up to `limit` bytes of `bytes` as text for an error message.
func excerpt(_ bytes: UnsafeRawBufferPointer, limit: Int = 40) -> String {
    let n = min(bytes.count, limit)
    let s = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[0..<n]), as: UTF8.self)
    return n < bytes.count ? s + "..." : s
}

/// A new array holding bytes[start..<end] (one allocation of exactly that size). Built from
/// a typed buffer pointer: that path is specialised for UInt8, while
/// `Array(unsafeUninitializedCapacity:)` looks up the generic array-storage metadata on every
/// call (measured: about twice the instructions per small array).
@inline(__always)
func makeBytes(_ bytes: UnsafeRawBufferPointer, _ start: Int, _ end: Int) -> [UInt8] {
    let n = end - start
    if n <= 0 { return [] }
    let src = (bytes.baseAddress.unsafelyUnwrapped + start).assumingMemoryBound(to: UInt8.self)
    return Array(UnsafeBufferPointer(start: src, count: n))
}

@inline(__always)
func makeBytes(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
    makeBytes(bytes, 0, bytes.count)
}
