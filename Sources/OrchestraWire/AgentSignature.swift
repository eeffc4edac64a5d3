import CSSL

/// HMAC-SHA256 and the agent registration signature of docs/protocol.md.
public enum HMACSHA256 {
    /// HMAC-SHA256(key, data): 32 bytes.
    public static func mac(key: [UInt8], data: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        var len: UInt32 = 32
        key.withUnsafeBufferPointer { k in
            data.withUnsafeBufferPointer { d in
                _ = out.withUnsafeMutableBufferPointer { o in
                    // A NULL key pointer with length 0 is valid for OpenSSL; never NULL with length > 0.
                    HMAC(EVP_sha256(), k.baseAddress ?? UnsafePointer(bitPattern: 1), Int32(k.count),
                         d.baseAddress, d.count, o.baseAddress, &len)
                }
            }
        }
        return out
    }

    /// Lower-case hex.
    public static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 15)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Compares two byte strings in time that depends only on their lengths.
    public static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var diff: UInt8 = 0
        for i in 0..<a.count { diff |= a[i] ^ b[i] }
        return diff == 0
    }
}

/// The signature an agent sends with `agent.register`:
/// hex(HMAC-SHA256(secret, agentId + "\n" + timestamp + "\n" + nonce)).
public enum AgentSignature {
    public static func sign(secret: [UInt8], agentId: String, timestamp: Int64, nonce: String) -> String {
        HMACSHA256.hex(HMACSHA256.mac(key: secret, data: Array("\(agentId)\n\(timestamp)\n\(nonce)".utf8)))
    }

    public static func verify(secret: [UInt8], agentId: String, timestamp: Int64, nonce: String, signature: String) -> Bool {
        let expected = Array(sign(secret: secret, agentId: agentId, timestamp: timestamp, nonce: nonce).utf8)
        return HMACSHA256.constantTimeEqual(expected, Array(signature.lowercased().utf8))
    }
}
