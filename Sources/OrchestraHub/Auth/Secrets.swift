import CSSL

/// Random bytes from OpenSSL's CSPRNG, and hex conversions for secrets in configuration.
public enum Secrets {
    /// `n` random bytes (none when `n <= 0`). Stops the process if the CSPRNG fails: the
    /// hub must never hand out a token or salt made from weak randomness.
    public static func random(_ n: Int) -> [UInt8] {
        guard n > 0 else { return [] }
        var out = [UInt8](repeating: 0, count: n)
        var done = 0
        while done < n {
            // RAND_bytes takes an Int32 length; fill in chunks.
            let chunk = min(n - done, 1 << 30)
            let ok = out.withUnsafeMutableBufferPointer { RAND_bytes($0.baseAddress! + done, Int32(chunk)) }
            guard ok == 1 else { fatalError("RAND_bytes failed: the system's random source is unavailable") }
            done += chunk
        }
        return out
    }

    /// `n` random bytes as lower-case hex (2n characters).
    public static func randomHex(_ n: Int) -> String {
        HMACSHA256.hex(random(n))
    }

    /// Bytes of a hex string (either case, even length, no prefix or spaces); nil otherwise.
    public static func fromHex(_ s: String) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(s.utf8.count / 2)
        var high: UInt8? = nil
        for c in s.utf8 {
            let d: UInt8
            switch c {
            case 0x30...0x39: d = c - 0x30
            case 0x41...0x46: d = c - 0x41 + 10
            case 0x61...0x66: d = c - 0x61 + 10
            default: return nil
            }
            if let h = high {
                out.append(h << 4 | d)
                high = nil
            } else {
                high = d
            }
        }
        return high == nil ? out : nil
    }
}
