// Incremental UTF-8 validation (RFC 3629) for text messages that arrive in pieces: fragments,
// reads, inflated chunks. A sequence may be split anywhere; the validator keeps what the next
// byte must be, and fails at the first byte that cannot continue a valid text (RFC 6455
// section 8.1 asks to fail fast), not at the end of the message.

public struct UTF8StreamValidator: Sendable {
    /// Continuation bytes still expected by the current sequence.
    @usableFromInline var need: UInt8 = 0
    /// Allowed range of the next continuation byte (narrower than 80..BF right after E0, ED,
    /// F0 and F4: overlongs, surrogates, code points past U+10FFFF).
    @usableFromInline var lo: UInt8 = 0x80
    @usableFromInline var hi: UInt8 = 0xBF

    public init() {}

    /// True when no sequence is left open (a message may end here).
    @inlinable public var isAtBoundary: Bool { need == 0 }

    public mutating func reset() { need = 0; lo = 0x80; hi = 0xBF }

    /// Validates the next piece. Returns nil if every byte can belong to valid text, else the
    /// offset of the first byte that cannot (the state is then meaningless).
    @inlinable
    public mutating func feed(_ bytes: UnsafeRawBufferPointer) -> Int? {
        let n = bytes.count
        var i = 0
        var need = self.need, lo = self.lo, hi = self.hi
        defer { self.need = need; self.lo = lo; self.hi = hi }
        while i < n {
            if need == 0 {
                // ASCII fast path, 16 then 8 bytes at a time.
                while i + 16 <= n {
                    let w = bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self)
                        | bytes.loadUnaligned(fromByteOffset: i + 8, as: UInt64.self)
                    if w & 0x8080_8080_8080_8080 != 0 { break }
                    i += 16
                }
                if i + 8 <= n && bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self) & 0x8080_8080_8080_8080 == 0 {
                    i += 8
                }
                if i == n { break }
                let b = bytes[i]
                if b < 0x80 { i += 1; continue }
                switch b {
                case 0xC2...0xDF: need = 1; lo = 0x80; hi = 0xBF
                case 0xE0: need = 2; lo = 0xA0; hi = 0xBF
                case 0xE1...0xEC, 0xEE, 0xEF: need = 2; lo = 0x80; hi = 0xBF
                case 0xED: need = 2; lo = 0x80; hi = 0x9F
                case 0xF0: need = 3; lo = 0x90; hi = 0xBF
                case 0xF1...0xF3: need = 3; lo = 0x80; hi = 0xBF
                case 0xF4: need = 3; lo = 0x80; hi = 0x8F
                default: return i
                }
                i += 1
            } else {
                let b = bytes[i]
                if b < lo || b > hi { return i }
                need -= 1
                lo = 0x80; hi = 0xBF
                i += 1
            }
        }
        return nil
    }
}
