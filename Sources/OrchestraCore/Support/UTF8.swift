/// Strict UTF-8 validation (RFC 3629): rejects overlong forms, surrogates (U+D800..U+DFFF),
/// code points above U+10FFFF and truncated sequences.
public enum UTF8Validator {
    /// Returns nil when `bytes` is valid UTF-8, else the byte offset of the first invalid sequence.
    @inlinable
    public static func firstInvalidOffset(_ bytes: UnsafeRawBufferPointer) -> Int? {
        let n = bytes.count
        var i = 0
        while i < n {
            // ASCII fast path while at least 8 bytes remain: 32 bytes per step (four 8-byte
            // words, one test), then 8 at a time. (Offsets stay below n: no wrapping.)
            if n &- i >= 8 {
                while n &- i >= 32 {
                    let w0 = bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self)
                    let w1 = bytes.loadUnaligned(fromByteOffset: i &+ 8, as: UInt64.self)
                    let w2 = bytes.loadUnaligned(fromByteOffset: i &+ 16, as: UInt64.self)
                    let w3 = bytes.loadUnaligned(fromByteOffset: i &+ 24, as: UInt64.self)
                    if (w0 | w1 | w2 | w3) & 0x8080_8080_8080_8080 != 0 { break }
                    i &+= 32
                }
                while n &- i >= 8 {
                    let word = bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self)
                    if word & 0x8080_8080_8080_8080 != 0 { break }
                    i &+= 8
                }
            }
            if i >= n { break }
            let b0 = bytes[i]
            if b0 < 0x80 { i += 1; continue }
            if b0 < 0xC2 || b0 > 0xF4 { return i }
            if b0 < 0xE0 {
                guard i + 1 < n, bytes[i + 1] & 0xC0 == 0x80 else { return i }
                i += 2
            } else if b0 < 0xF0 {
                guard i + 2 < n else { return i }
                let b1 = bytes[i + 1], b2 = bytes[i + 2]
                guard b1 & 0xC0 == 0x80, b2 & 0xC0 == 0x80 else { return i }
                if b0 == 0xE0 && b1 < 0xA0 { return i }   // overlong
                if b0 == 0xED && b1 > 0x9F { return i }   // surrogate
                i += 3
            } else {
                guard i + 3 < n else { return i }
                let b1 = bytes[i + 1], b2 = bytes[i + 2], b3 = bytes[i + 3]
                guard b1 & 0xC0 == 0x80, b2 & 0xC0 == 0x80, b3 & 0xC0 == 0x80 else { return i }
                if b0 == 0xF0 && b1 < 0x90 { return i }   // overlong
                if b0 == 0xF4 && b1 > 0x8F { return i }   // > U+10FFFF
                i += 4
            }
        }
        return nil
    }

    @inlinable
    public static func isValid(_ bytes: UnsafeRawBufferPointer) -> Bool {
        firstInvalidOffset(bytes) == nil
    }

    @inlinable
    public static func isValid(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { firstInvalidOffset($0) == nil }
    }
}

/// The end of the UTF-8 sequence whose lead byte (>= 0x80) is at `i`, or nil when it is not a
/// valid sequence (the rules of `UTF8Validator`: no overlong forms, surrogates, values above
/// U+10FFFF or truncation before `n`).
@inline(__always)
func utf8SequenceEnd(_ p: UnsafeRawPointer, at i: Int, count n: Int) -> Int? {
    @inline(__always) func at(_ k: Int) -> UInt8 { p.load(fromByteOffset: k, as: UInt8.self) }
    let b0 = at(i)
    if b0 < 0xC2 || b0 > 0xF4 { return nil }
    if b0 < 0xE0 {
        guard i + 1 < n, at(i + 1) & 0xC0 == 0x80 else { return nil }
        return i + 2
    }
    if b0 < 0xF0 {
        guard i + 2 < n else { return nil }
        let b1 = at(i + 1), b2 = at(i + 2)
        guard b1 & 0xC0 == 0x80, b2 & 0xC0 == 0x80 else { return nil }
        if b0 == 0xE0 && b1 < 0xA0 { return nil }   // overlong
        if b0 == 0xED && b1 > 0x9F { return nil }   // surrogate
        return i + 3
    }
    guard i + 3 < n else { return nil }
    let b1 = at(i + 1), b2 = at(i + 2), b3 = at(i + 3)
    guard b1 & 0xC0 == 0x80, b2 & 0xC0 == 0x80, b3 & 0xC0 == 0x80 else { return nil }
    if b0 == 0xF0 && b1 < 0x90 { return nil }   // overlong
    if b0 == 0xF4 && b1 > 0x8F { return nil }   // > U+10FFFF
    return i + 4
}
