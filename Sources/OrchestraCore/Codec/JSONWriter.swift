// JSON output into a caller-owned, reused [UInt8]. No intermediate Strings.

public enum JSONWriter {
    /// Appends `s` as a JSON string: escapes `"`, `\` and control characters (\n \r \t \b \f,
    /// others as \u00XX); non-ASCII and `/` are written as they are. `s` must be valid UTF-8
    /// (throws `.invalidArgument` naming `what` otherwise).
    public static func writeString(_ s: UnsafeRawBufferPointer, into out: inout [UInt8], what: String) throws(OrchestraError) {
        if let bad = UTF8Validator.firstInvalidOffset(s) {
            throw OrchestraError(.invalidArgument, "\(what) is not valid UTF-8 (byte \(bad))")
        }
        writeValidString(s, into: &out)
    }

    public static func writeString(_ s: [UInt8], into out: inout [UInt8], what: String) throws(OrchestraError) {
        try withBytes(s) { (b) throws(OrchestraError) in try writeString(b, into: &out, what: what) }
    }

    /// Like writeString, for bytes already known to be valid UTF-8.
    static func writeValidString(_ s: UnsafeRawBufferPointer, into out: inout [UInt8]) {
        out.append(0x22)
        var runStart = 0
        let n = s.count
        var i = 0
        while i < n {
            let c = s[i]
            if c >= 0x20 && c != 0x22 && c != 0x5C { i += 1; continue }
            if i > runStart { out.append(contentsOf: UnsafeRawBufferPointer(rebasing: s[runStart..<i])) }
            out.append(0x5C)
            switch c {
            case 0x22: out.append(0x22)
            case 0x5C: out.append(0x5C)
            case 0x0A: out.append(0x6E)
            case 0x0D: out.append(0x72)
            case 0x09: out.append(0x74)
            case 0x08: out.append(0x62)
            case 0x0C: out.append(0x66)
            default:
                out.append(0x75); out.append(0x30); out.append(0x30)
                out.append(lowerHex[Int(c >> 4)]); out.append(lowerHex[Int(c & 0xF)])
            }
            i += 1
            runStart = i
        }
        if n > runStart { out.append(contentsOf: UnsafeRawBufferPointer(rebasing: s[runStart..<n])) }
        out.append(0x22)
    }

    /// Appends the decimal form of `v`.
    public static func writeInt(_ v: Int64, into out: inout [UInt8]) {
        if v < 0 {
            out.append(0x2D)
            writeUInt(v.magnitude, into: &out)
        } else {
            writeUInt(UInt64(v), into: &out)
        }
    }

    public static func writeUInt(_ v: UInt64, into out: inout [UInt8]) {
        if v < 10 { out.append(0x30 + UInt8(v)); return }
        let start = out.count
        var x = v
        while x > 0 {
            out.append(0x30 + UInt8(x % 10))
            x /= 10
        }
        out[start...].reverse()
    }

    /// Appends a finite double in Swift's shortest round-trip form (valid JSON number text).
    static func writeDouble(_ d: Double, into out: inout [UInt8]) {
        out.append(contentsOf: d.description.utf8)
    }

    /// A double as a JSON value writes it: the shortest round-trip form, `null` when not
    /// finite (JSON has no NaN or infinity).
    static func writeNumber(_ d: Double, into w: inout ByteWriter) {
        if d.isFinite { w.append(d.description.utf8) } else { w.append("null") }
    }

    static func writeFloat(_ f: Float, into out: inout [UInt8]) {
        out.append(contentsOf: f.description.utf8)
    }
}

private let lowerHex: [UInt8] = Array("0123456789abcdef".utf8)

/// Base64, standard alphabet with padding (RFC 4648 section 4), strict on decode.
public enum Base64 {
    private static let alphabet: [UInt8] = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
    private static let decodeTable: [UInt8] = {
        var t = [UInt8](repeating: 0xFF, count: 256)
        for (i, c) in alphabet.enumerated() { t[Int(c)] = UInt8(i) }
        return t
    }()

    public static func encodedCount(_ n: Int) -> Int { (n + 2) / 3 * 4 }

    public static func encode(_ src: UnsafeRawBufferPointer, into out: inout [UInt8]) {
        let n = src.count
        out.reserveCapacity(out.count + encodedCount(n))
        alphabet.withUnsafeBufferPointer { a in
            var i = 0
            while i + 3 <= n {
                let v = UInt32(src[i]) << 16 | UInt32(src[i + 1]) << 8 | UInt32(src[i + 2])
                out.append(a[Int(v >> 18 & 63)]); out.append(a[Int(v >> 12 & 63)])
                out.append(a[Int(v >> 6 & 63)]); out.append(a[Int(v & 63)])
                i += 3
            }
            let rest = n - i
            if rest == 1 {
                let v = UInt32(src[i]) << 16
                out.append(a[Int(v >> 18 & 63)]); out.append(a[Int(v >> 12 & 63)])
                out.append(0x3D); out.append(0x3D)
            } else if rest == 2 {
                let v = UInt32(src[i]) << 16 | UInt32(src[i + 1]) << 8
                out.append(a[Int(v >> 18 & 63)]); out.append(a[Int(v >> 12 & 63)])
                out.append(a[Int(v >> 6 & 63)]); out.append(0x3D)
            }
        }
    }

    /// Appends the base64 form of `src` to `w`.
    static func encode(_ src: UnsafeRawBufferPointer, into w: inout ByteWriter) {
        let n = src.count
        w.reserve(encodedCount(n))
        var at = w.count
        alphabet.withUnsafeBufferPointer { a in
            var i = 0
            while i + 3 <= n {
                let v = UInt32(src[i]) << 16 | UInt32(src[i + 1]) << 8 | UInt32(src[i + 2])
                w.set(a[Int(v >> 18 & 63)], atReserved: at); w.set(a[Int(v >> 12 & 63)], atReserved: at + 1)
                w.set(a[Int(v >> 6 & 63)], atReserved: at + 2); w.set(a[Int(v & 63)], atReserved: at + 3)
                at += 4
                i += 3
            }
            let rest = n - i
            if rest == 1 {
                let v = UInt32(src[i]) << 16
                w.set(a[Int(v >> 18 & 63)], atReserved: at); w.set(a[Int(v >> 12 & 63)], atReserved: at + 1)
                w.set(0x3D, atReserved: at + 2); w.set(0x3D, atReserved: at + 3)
            } else if rest == 2 {
                let v = UInt32(src[i]) << 16 | UInt32(src[i + 1]) << 8
                w.set(a[Int(v >> 18 & 63)], atReserved: at); w.set(a[Int(v >> 12 & 63)], atReserved: at + 1)
                w.set(a[Int(v >> 6 & 63)], atReserved: at + 2); w.set(0x3D, atReserved: at + 3)
            }
        }
        w.advance(encodedCount(n))
    }

    public static func encode(_ src: [UInt8]) -> [UInt8] {
        var out = [UInt8]()
        src.withUnsafeBytes { encode($0, into: &out) }
        return out
    }

    /// Decodes strictly: length a multiple of 4, '=' only as the final one or two characters,
    /// no whitespace, unused trailing bits zero. Returns the offset of the first bad character
    /// (or the length for a bad length) on failure.
    public static func decode(_ src: UnsafeRawBufferPointer) -> Result<[UInt8], Base64Error> {
        let n = src.count
        if n % 4 != 0 { return .failure(Base64Error(offset: n, reason: "length \(n) is not a multiple of 4")) }
        var out = [UInt8]()
        out.reserveCapacity(n / 4 * 3)
        return decodeTable.withUnsafeBufferPointer { t -> Result<[UInt8], Base64Error> in
            var i = 0
            while i < n {
                let last = i + 4 == n
                let c0 = t[Int(src[i])], c1 = t[Int(src[i + 1])]
                var c2 = t[Int(src[i + 2])], c3 = t[Int(src[i + 3])]
                if c0 == 0xFF { return .failure(Base64Error(offset: i, reason: "invalid character")) }
                if c1 == 0xFF { return .failure(Base64Error(offset: i + 1, reason: "invalid character")) }
                var pad = 0
                if last && src[i + 3] == 0x3D {
                    pad = 1; c3 = 0
                    if src[i + 2] == 0x3D { pad = 2; c2 = 0 }
                }
                if c2 == 0xFF { return .failure(Base64Error(offset: i + 2, reason: "invalid character")) }
                if c3 == 0xFF { return .failure(Base64Error(offset: i + 3, reason: "invalid character")) }
                let v = UInt32(c0) << 18 | UInt32(c1) << 12 | UInt32(c2) << 6 | UInt32(c3)
                out.append(UInt8(truncatingIfNeeded: v >> 16))
                if pad < 2 { out.append(UInt8(truncatingIfNeeded: v >> 8)) }
                if pad < 1 { out.append(UInt8(truncatingIfNeeded: v)) }
                if pad == 2 && c1 & 0x0F != 0 { return .failure(Base64Error(offset: i + 1, reason: "non-zero padding bits")) }
                if pad == 1 && c2 & 0x03 != 0 { return .failure(Base64Error(offset: i + 2, reason: "non-zero padding bits")) }
                i += 4
            }
            return .success(out)
        }
    }
}

public struct Base64Error: Error, Sendable {
    public let offset: Int
    public let reason: String
}

/// `withUnsafeBytes` with a typed-throwing body (the stdlib's rethrows as `any Error`).
@inline(__always)
func withBytes<R>(_ a: [UInt8], _ body: (UnsafeRawBufferPointer) throws(OrchestraError) -> R) throws(OrchestraError) -> R {
    let r: Result<R, OrchestraError> = a.withUnsafeBytes { b in
        Result { () throws(OrchestraError) -> R in try body(b) }
    }
    return try r.get()
}

// MARK: - Writing into a ByteWriter (the envelope encoders)

extension JSONWriter {
    /// Appends `s` as a JSON string (as `writeString(_:into:what:)`); `what` is only built
    /// for the error.
    @inline(__always)
    static func writeString(_ s: UnsafeRawBufferPointer, into w: inout ByteWriter, what: @autoclosure () -> String) throws(OrchestraError) {
        if let bad = UTF8Validator.firstInvalidOffset(s) {
            throw OrchestraError(.invalidArgument, "\(what()) is not valid UTF-8 (byte \(bad))")
        }
        writeValidString(s, into: &w)
    }

    @inline(__always)
    static func writeString(_ s: [UInt8], into w: inout ByteWriter, what: @autoclosure () -> String) throws(OrchestraError) {
        try withBytes(s) { (b) throws(OrchestraError) in try writeString(b, into: &w, what: what()) }
    }

    /// Appends valid UTF-8 as a JSON string. Runs without characters to escape are found with
    /// `firstStringStop` (16 or 8 bytes per step) and copied whole.
    static func writeValidString(_ s: UnsafeRawBufferPointer, into w: inout ByteWriter) {
        let n = s.count
        w.reserve(n + 2)
        w.put(0x22)
        guard n > 0, let p = s.baseAddress else { w.put(0x22); return }
        var runStart = 0
        while true {
            let i = firstStringStop(p, from: runStart, count: n)
            if i >= n { break }
            let c = p.load(fromByteOffset: i, as: UInt8.self)
            w.reserve(i - runStart + 6 + (n - i))
            w.put(p + runStart, i - runStart)
            w.put(0x5C)
            switch c {
            case 0x22: w.put(0x22)
            case 0x5C: w.put(0x5C)
            case 0x0A: w.put(0x6E)
            case 0x0D: w.put(0x72)
            case 0x09: w.put(0x74)
            case 0x08: w.put(0x62)
            case 0x0C: w.put(0x66)
            default:
                w.put(0x75); w.put(0x30); w.put(0x30)
                w.put(lowerHexDigit(c >> 4)); w.put(lowerHexDigit(c & 0xF))
            }
            runStart = i + 1
        }
        w.reserve(n - runStart + 1)
        w.put(p + runStart, n - runStart)
        w.put(0x22)
    }

    static func writeInt(_ v: Int64, into w: inout ByteWriter) {
        if v < 0 {
            w.append(0x2D)
            writeUInt(v.magnitude, into: &w)
        } else {
            writeUInt(UInt64(v), into: &w)
        }
    }

    static func writeUInt(_ v: UInt64, into w: inout ByteWriter) {
        var digits = 1
        var x = v
        while x >= 10 { x /= 10; digits += 1 }
        w.reserve(digits)
        x = v
        var at = w.count + digits - 1
        for _ in 0..<digits {
            w.set(0x30 + UInt8(truncatingIfNeeded: x % 10), atReserved: at)
            x /= 10
            at -= 1
        }
        w.advance(digits)
    }
}

@inline(__always)
func lowerHexDigit(_ v: UInt8) -> UInt8 { v < 10 ? 0x30 + v : 0x57 + v }

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
