// MessagePack (https://github.com/msgpack/msgpack/blob/master/spec.md): the writer and the
// reader the envelope codec and the JSON transcoding use. Input is hostile: no allocation
// from a declared length larger than the remaining input, depth limits, byte offsets in
// errors.

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

    /// Whether the next value is a str (fixstr, str 8, 16 or 32).
    var atStr: Bool {
        guard pos < bytes.count else { return false }
        let b = bytes[pos]
        return (0xA0...0xBF).contains(b) || b == 0xD9 || b == 0xDA || b == 0xDB
    }

    /// A str value (UTF-8 checked), naming `what` in errors.
    @inline(__always)
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
