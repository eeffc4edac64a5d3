// Base64 (RFC 4648): the standard alphabet with padding, strict on decode, for binary,
// compressed and encrypted payloads in JSON and the WebSocket handshake (section 4); and the
// URL and filename safe alphabet, as JWTs use it (section 5). One encoder and one decoder
// serve both alphabets.

/// Base64, standard alphabet with padding (RFC 4648 section 4), strict on decode.
public enum Base64 {
    /// An alphabet: its 64 characters, and the value of every byte (0xFF outside it).
    struct Alphabet {
        let chars: [UInt8]
        let values: [UInt8]

        init(_ chars: String) {
            self.chars = Array(chars.utf8)
            var t = [UInt8](repeating: 0xFF, count: 256)
            for (i, c) in self.chars.enumerated() { t[Int(c)] = UInt8(i) }
            values = t
        }
    }

    static let standard = Alphabet("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
    static let url = Alphabet("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")

    /// Characters of the padded encoding of `n` bytes.
    public static func encodedCount(_ n: Int) -> Int { (n + 2) / 3 * 4 }

    public static func encode(_ src: UnsafeRawBufferPointer, into out: inout [UInt8]) {
        out.appendWritten(capacity: encodedCount(src.count)) { encode(src, into: &$0) }
    }

    public static func encode(_ src: [UInt8]) -> [UInt8] {
        var out = [UInt8]()
        src.withUnsafeBytes { encode($0, into: &out) }
        return out
    }

    /// Appends the base64 form of `src` to `w`: in `alphabet`, padded with '=' to a multiple
    /// of 4 characters when `pad`.
    static func encode(_ src: UnsafeRawBufferPointer, alphabet: Alphabet = standard, pad: Bool = true, into w: inout ByteWriter) {
        let n = src.count
        let count = pad ? encodedCount(n) : (n * 4 + 2) / 3
        w.reserve(count)
        var at = w.count
        alphabet.chars.withUnsafeBufferPointer { a in
            var i = 0
            while i + 3 <= n {
                let v = UInt32(src[i]) << 16 | UInt32(src[i + 1]) << 8 | UInt32(src[i + 2])
                w.set(a[Int(v >> 18 & 63)], atReserved: at); w.set(a[Int(v >> 12 & 63)], atReserved: at + 1)
                w.set(a[Int(v >> 6 & 63)], atReserved: at + 2); w.set(a[Int(v & 63)], atReserved: at + 3)
                at += 4
                i += 3
            }
            let rest = n - i
            if rest > 0 {
                let v = UInt32(src[i]) << 16 | (rest == 2 ? UInt32(src[i + 1]) << 8 : 0)
                w.set(a[Int(v >> 18 & 63)], atReserved: at); w.set(a[Int(v >> 12 & 63)], atReserved: at + 1)
                if rest == 2 { w.set(a[Int(v >> 6 & 63)], atReserved: at + 2) } else if pad { w.set(0x3D, atReserved: at + 2) }
                if pad { w.set(0x3D, atReserved: at + 3) }
            }
        }
        w.advance(count)
    }

    /// Decodes strictly: length a multiple of 4, '=' only as the final one or two characters,
    /// no whitespace, unused trailing bits zero. Returns the offset of the first bad character
    /// (or the length for a bad length) on failure.
    public static func decode(_ src: UnsafeRawBufferPointer) -> Result<[UInt8], Base64Error> {
        let n = src.count
        if n % 4 != 0 { return .failure(Base64Error(offset: n, reason: "length \(n) is not a multiple of 4")) }
        var end = n
        if n > 0 && src[n - 1] == 0x3D {
            end -= 1
            if src[n - 2] == 0x3D { end -= 1 }
        }
        return decode(src, count: end, alphabet: standard)
    }

    /// Decodes the first `end` characters of `src`, all of `alphabet` (no padding; `end % 4`
    /// is not 1). The unused low bits of the last character must be zero, so every byte
    /// string has one accepted form. Fails at the first bad character.
    static func decode(_ src: UnsafeRawBufferPointer, count end: Int, alphabet: Alphabet) -> Result<[UInt8], Base64Error> {
        var out = [UInt8]()
        out.reserveCapacity(end / 4 * 3 + 2)
        return alphabet.values.withUnsafeBufferPointer { t -> Result<[UInt8], Base64Error> in
            @inline(__always) func value(_ k: Int) -> UInt8 { t[Int(src[k])] }
            let bad = { (k: Int) in Result<[UInt8], Base64Error>.failure(Base64Error(offset: k, reason: "invalid character")) }
            var i = 0
            while i + 4 <= end {
                let c0 = value(i), c1 = value(i + 1), c2 = value(i + 2), c3 = value(i + 3)
                if c0 == 0xFF { return bad(i) }
                if c1 == 0xFF { return bad(i + 1) }
                if c2 == 0xFF { return bad(i + 2) }
                if c3 == 0xFF { return bad(i + 3) }
                let v = UInt32(c0) << 18 | UInt32(c1) << 12 | UInt32(c2) << 6 | UInt32(c3)
                out.append(UInt8(truncatingIfNeeded: v >> 16))
                out.append(UInt8(truncatingIfNeeded: v >> 8))
                out.append(UInt8(truncatingIfNeeded: v))
                i += 4
            }
            let rest = end - i   // 0, 2 or 3 characters
            if rest >= 2 {
                let c0 = value(i), c1 = value(i + 1), c2 = rest == 3 ? value(i + 2) : 0
                if c0 == 0xFF { return bad(i) }
                if c1 == 0xFF { return bad(i + 1) }
                if c2 == 0xFF { return bad(i + 2) }
                let v = UInt32(c0) << 18 | UInt32(c1) << 12 | UInt32(c2) << 6
                out.append(UInt8(truncatingIfNeeded: v >> 16))
                if rest == 3 { out.append(UInt8(truncatingIfNeeded: v >> 8)) }
                if rest == 2 && c1 & 0x0F != 0 { return .failure(Base64Error(offset: i + 1, reason: "non-zero padding bits")) }
                if rest == 3 && c2 & 0x03 != 0 { return .failure(Base64Error(offset: i + 2, reason: "non-zero padding bits")) }
            }
            return .success(out)
        }
    }
}

public struct Base64Error: Error, Sendable {
    public let offset: Int
    public let reason: String
}

/// Base64 with the URL and filename safe alphabet (RFC 4648 section 5), as JWTs use it.
public enum Base64URL {
    /// Encodes without padding.
    public static func encode(_ b: [UInt8]) -> String {
        var w = ByteWriter(capacity: Base64.encodedCount(b.count))
        b.withUnsafeBytes { Base64.encode($0, alphabet: Base64.url, pad: false, into: &w) }
        return String(decoding: w.bytes, as: UTF8.self)
    }

    /// Decodes padded or unpadded input. Nil for a byte outside the alphabet (including `+`, `/`
    /// and whitespace), a length no encoding has, wrong padding, or non-zero unused bits in the
    /// last character (so every byte string has exactly one accepted unpadded form).
    public static func decode(_ s: String) -> [UInt8]? {
        decode(utf8: Array(s.utf8))
    }

    /// The same over the text's UTF-8 bytes.
    public static func decode(utf8 input: [UInt8]) -> [UInt8]? {
        var end = input.count
        if let firstPad = input.firstIndex(of: 0x3D) {  // '='
            let pad = input.count - firstPad
            guard pad <= 2, input.count % 4 == 0 else { return nil }
            for i in firstPad..<input.count where input[i] != 0x3D { return nil }
            end = firstPad
        }
        guard end % 4 != 1 else { return nil }
        return input.withUnsafeBytes { try? Base64.decode($0, count: end, alphabet: Base64.url).get() }
    }
}
