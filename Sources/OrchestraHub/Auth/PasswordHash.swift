import CSSL

/// Password storage with PBKDF2-HMAC-SHA256 (RFC 8018), 16-byte random salt, 32-byte hash:
/// `pbkdf2-sha256$<iterations>$<salt hex>$<hash hex>`.
public enum PasswordHash {
    public static let prefix = "pbkdf2-sha256"
    /// `verify` refuses encodings asking for more than this many iterations (a stored value
    /// must not be able to stall the hub).
    public static let maxIterations = 10_000_000

    /// Hashes `password` with a fresh salt. `iterations` below 1 act as 1, above
    /// `maxIterations` as `maxIterations`.
    public static func hash(_ password: String, iterations: Int = 100_000) -> String {
        let iter = min(max(1, iterations), maxIterations)
        let salt = Secrets.random(16)
        guard let dk = derive(password: Array(password.utf8), salt: salt, iterations: iter, length: 32) else {
            fatalError("PKCS5_PBKDF2_HMAC failed with valid parameters (out of memory?)")
        }
        return "\(prefix)$\(iter)$\(HMACSHA256.hex(salt))$\(HMACSHA256.hex(dk))"
    }

    /// Whether `password` matches `encoded`; false for anything malformed (wrong prefix,
    /// iterations outside 1...maxIterations, salt not 1..1024 bytes of hex, hash not 32 bytes
    /// of hex, as `hash` writes them). The hashes are compared in constant time.
    public static func verify(_ password: String, encoded: String) -> Bool {
        let parts = encoded.split(separator: "$", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0] == prefix else { return false }
        let iterText = parts[1]
        guard !iterText.isEmpty, iterText.utf8.count <= 9, iterText.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
              let iter = Int(iterText), iter >= 1, iter <= maxIterations else { return false }
        guard let salt = Secrets.fromHex(String(parts[2])), !salt.isEmpty, salt.count <= 1024 else { return false }
        guard let stored = Secrets.fromHex(String(parts[3])), stored.count == 32 else { return false }
        guard let dk = derive(password: Array(password.utf8), salt: salt, iterations: iter, length: stored.count) else { return false }
        return HMACSHA256.constantTimeEqual(dk, stored)
    }

    /// PBKDF2-HMAC-SHA256(password, salt, iterations, length); nil if OpenSSL refuses.
    public static func derive(password: [UInt8], salt: [UInt8], iterations: Int, length: Int) -> [UInt8]? {
        guard iterations >= 1, iterations <= Int(Int32.max), length >= 1, length <= 1 << 20,
              password.count <= Int(Int32.max), salt.count <= Int(Int32.max) else { return nil }
        var out = [UInt8](repeating: 0, count: length)
        let ok = password.withUnsafeBufferPointer { p in
            salt.withUnsafeBufferPointer { s in
                out.withUnsafeMutableBufferPointer { o in
                    p.withMemoryRebound(to: CChar.self) { pc in
                        // OpenSSL reads nothing from a pointer with length 0, but wants one.
                        PKCS5_PBKDF2_HMAC(pc.baseAddress ?? UnsafePointer(bitPattern: 1), Int32(p.count),
                                          s.baseAddress ?? UnsafePointer(bitPattern: 1), Int32(s.count),
                                          Int32(iterations), EVP_sha256(), Int32(length), o.baseAddress)
                    }
                }
            }
        }
        return ok == 1 ? out : nil
    }
}
