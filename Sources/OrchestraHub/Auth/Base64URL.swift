/// Base64 with the URL and filename safe alphabet (RFC 4648 section 5), as JWTs use it.
public enum Base64URL {
    private static let alphabet: [UInt8] = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)

    /// Value of each byte in the alphabet; -1 for bytes outside it.
    private static let values: [Int8] = {
        var t = [Int8](repeating: -1, count: 256)
        for (i, c) in alphabet.enumerated() { t[Int(c)] = Int8(i) }
        return t
    }()

    /// Encodes without padding.
    public static func encode(_ b: [UInt8]) -> String {
        var out: [UInt8] = []
        out.reserveCapacity((b.count * 4 + 2) / 3)
        var i = 0
        while i + 3 <= b.count {
            let n = UInt32(b[i]) << 16 | UInt32(b[i + 1]) << 8 | UInt32(b[i + 2])
            out.append(alphabet[Int(n >> 18 & 63)])
            out.append(alphabet[Int(n >> 12 & 63)])
            out.append(alphabet[Int(n >> 6 & 63)])
            out.append(alphabet[Int(n & 63)])
            i += 3
        }
        switch b.count - i {
        case 1:
            let n = UInt32(b[i]) << 16
            out.append(alphabet[Int(n >> 18 & 63)])
            out.append(alphabet[Int(n >> 12 & 63)])
        case 2:
            let n = UInt32(b[i]) << 16 | UInt32(b[i + 1]) << 8
            out.append(alphabet[Int(n >> 18 & 63)])
            out.append(alphabet[Int(n >> 12 & 63)])
            out.append(alphabet[Int(n >> 6 & 63)])
        default: break
        }
        return String(decoding: out, as: UTF8.self)
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
        var out: [UInt8] = []
        out.reserveCapacity(end / 4 * 3 + 2)
        var acc: UInt32 = 0
        var bits = 0
        for i in 0..<end {
            let v = values[Int(input[i])]
            guard v >= 0 else { return nil }
            acc = acc << 6 | UInt32(v)
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8(truncatingIfNeeded: acc >> UInt32(bits)))
                acc &= (1 << UInt32(bits)) - 1
            }
        }
        // The unused low bits of the last character must be zero.
        guard acc == 0 else { return nil }
        return out
    }
}
