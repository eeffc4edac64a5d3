// The one JSON writer: strings (the one escaper), integers and doubles, written into a
// ByteWriter. The [UInt8] forms are the same code through `appendWritten`. No intermediate
// Strings.

public enum JSONWriter {
    /// Appends `s` as a JSON string: escapes `"`, `\` and control characters (\n \r \t \b \f,
    /// others as \u00XX); non-ASCII and `/` are written as they are. `s` must be valid UTF-8
    /// (throws `.invalidArgument` naming `what` otherwise).
    public static func writeString(_ s: UnsafeRawBufferPointer, into out: inout [UInt8], what: String) throws(OrchestraError) {
        try out.appendWritten(capacity: s.count + 16) { (w) throws(OrchestraError) in try writeString(s, into: &w, what: what) }
    }

    public static func writeString(_ s: [UInt8], into out: inout [UInt8], what: String) throws(OrchestraError) {
        try withBytes(s) { (b) throws(OrchestraError) in try writeString(b, into: &out, what: what) }
    }

    /// Appends the decimal form of `v`.
    public static func writeInt(_ v: Int64, into out: inout [UInt8]) {
        out.appendWritten(capacity: 20) { writeInt(v, into: &$0) }
    }

    public static func writeUInt(_ v: UInt64, into out: inout [UInt8]) {
        out.appendWritten(capacity: 20) { writeUInt(v, into: &$0) }
    }

    /// Appends `s` as a JSON string (Swift strings are valid UTF-8, so nothing can fail).
    public static func writeString(_ s: String, into w: inout ByteWriter) {
        var s = s
        s.withUTF8 { writeValidString(UnsafeRawBufferPointer($0), into: &w) }
    }

    /// A double as a JSON value writes it: the shortest round-trip form, `null` when not
    /// finite (JSON has no NaN or infinity).
    static func writeNumber(_ d: Double, into w: inout ByteWriter) {
        if d.isFinite { w.append(d.description.utf8) } else { w.append("null") }
    }
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
