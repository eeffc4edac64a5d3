// Randomness and hashing the WebSocket layer needs, from OpenSSL's libcrypto: random bytes for
// handshake keys and masking keys (RFC 6455 section 10.3 wants masks from a strong source of
// entropy) and SHA-1 for Sec-WebSocket-Accept.
import CSSL

enum Entropy {
    /// Fills `buffer` with cryptographically strong random bytes. RAND_bytes fails only when the
    /// CSPRNG cannot be seeded, which leaves nothing safe to do.
    static func fill(_ buffer: UnsafeMutableRawBufferPointer) {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return }
        guard RAND_bytes(base.assumingMemoryBound(to: UInt8.self), Int32(buffer.count)) == 1 else {
            fatalError("RAND_bytes failed: OpenSSL's random generator is not seeded")
        }
    }

    static func bytes(_ n: Int) -> [UInt8] {
        var a = [UInt8](repeating: 0, count: n)
        a.withUnsafeMutableBytes { fill($0) }
        return a
    }

    /// SHA-1 of `data` (20 bytes).
    static func sha1(_ data: [UInt8]) -> [UInt8] {
        var md = [UInt8](repeating: 0, count: 20)
        var len: UInt32 = 0
        let ok = data.withUnsafeBytes { d in
            md.withUnsafeMutableBufferPointer { m in
                EVP_Digest(d.baseAddress, d.count, m.baseAddress, &len, EVP_sha1(), nil) == 1
            }
        }
        guard ok, len == 20 else { fatalError("EVP_Digest(SHA-1) failed") }
        return md
    }
}

/// Masking keys for a client's frames: random bytes drawn from RAND_bytes 256 at a time, so a
/// frame costs four bytes of a buffer instead of a call into OpenSSL. The buffer is allocated
/// on the first key, so a server's encoder (which never masks) carries none.
public struct MaskKeySource {
    private var pool: [UInt8] = []
    private var next = 0

    public init() {}

    public mutating func nextKey() -> UInt32 {
        if next == pool.count {
            if pool.isEmpty { pool = [UInt8](repeating: 0, count: 256) }
            pool.withUnsafeMutableBytes { Entropy.fill($0) }
            next = 0
        }
        let k = pool.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: next, as: UInt32.self) }
        next += 4
        return k
    }
}
