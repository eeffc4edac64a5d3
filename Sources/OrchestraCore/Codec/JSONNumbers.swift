// JSON numbers: the digit tests, the one integer parser (an integer lexeme to Int64 or
// UInt64, with the envelope decoder's inlined fast path in front of it) and a number lexeme
// to Double. The scanner's `scanNumber` checks the grammar; these give values.
import Glibc

@inline(__always) func isJSONDigit(_ c: UInt8) -> Bool { c &- 0x30 < 10 }

/// Whether `c` cannot continue a number (so a digit run before it is the whole integer).
@inline(__always)
func endsNumber(_ c: UInt8) -> Bool {
    !(isJSONDigit(c) || c == 0x2E || c == 0x65 || c == 0x45)
}

/// The sign and magnitude of an integer lexeme (-?digits); nil when it is not one or its
/// magnitude does not fit in 64 bits.
@inline(__always)
private func parseDecimal(_ lexeme: UnsafeRawBufferPointer) -> (negative: Bool, magnitude: UInt64)? {
    var i = 0
    let negative = lexeme.count > 0 && lexeme[0] == 0x2D
    if negative { i = 1 }
    guard i < lexeme.count else { return nil }
    var mag: UInt64 = 0
    while i < lexeme.count {
        let d = lexeme[i] &- 0x30
        guard d < 10 else { return nil }
        let (m1, o1) = mag.multipliedReportingOverflow(by: 10)
        let (m2, o2) = m1.addingReportingOverflow(UInt64(d))
        if o1 || o2 { return nil }
        mag = m2
        i += 1
    }
    return (negative, mag)
}

/// Parses an integer lexeme (-?digits) into Int64; nil when it is not one or out of range.
func parseInt64(_ lexeme: UnsafeRawBufferPointer) -> Int64? {
    guard let (negative, mag) = parseDecimal(lexeme) else { return nil }
    if negative {
        if mag > UInt64(Int64.max) + 1 { return nil }
        return mag == UInt64(Int64.max) + 1 ? Int64.min : -Int64(mag)
    }
    return mag > UInt64(Int64.max) ? nil : Int64(mag)
}

/// Parses a non-negative integer lexeme (digits) into UInt64; nil when it is not one or out
/// of range.
func parseUInt64(_ lexeme: UnsafeRawBufferPointer) -> UInt64? {
    guard let (negative, mag) = parseDecimal(lexeme), !negative else { return nil }
    return mag
}

/// A number lexeme as the double strtod reads (out of range: infinite, or zero).
func parseDouble(_ lexeme: UnsafeRawBufferPointer) -> Double {
    var chars = [CChar](repeating: 0, count: lexeme.count + 1)
    for (k, b) in lexeme.enumerated() { chars[k] = CChar(bitPattern: b) }
    return strtod(chars, nil)
}

extension JSONScanner {
    /// The fast path of the integer parser, for the envelope's integer fields: when the
    /// number at `pos` is -?0 or -?[1-9] with at most 17 more digits (below 10^18, so no
    /// overflow) and ends where a number must end, returns its value and moves past it.
    /// Otherwise (a fraction, exponent, leading zero, long number or an error) returns nil
    /// with `pos` unchanged: the caller reads it with `scanNumber` and `parseInt64`.
    @inline(__always)
    mutating func scanShortInteger() -> Int64? {
        let n = bytes.count
        var i = pos
        let negative = i < n && bytes[i] == 0x2D
        if negative { i += 1 }
        if i < n, case let d0 = bytes[i] &- 0x30, d0 < 10 {
            var v = UInt64(d0)
            i += 1
            if d0 != 0 {
                let limit = min(n, i + 17)
                while i < limit {
                    let d = bytes[i] &- 0x30
                    if d >= 10 { break }
                    v = v &* 10 &+ UInt64(d)
                    i += 1
                }
            }
            if i < n && endsNumber(bytes[i]) {
                pos = i
                return negative ? -Int64(v) : Int64(v)
            }
        }
        return nil
    }
}
