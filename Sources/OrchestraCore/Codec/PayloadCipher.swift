// Payload encryption: AES-256-GCM with a key derived by HKDF-SHA256 (OpenSSL 3).
import CSSL

public final class PayloadCipher: @unchecked Sendable {
    public static let keyLength = 32
    public static let nonceLength = 12
    public static let tagLength = 16

    /// Immutable after init; each call makes its own EVP_CIPHER_CTX, so any thread may use it.
    private let key: UnsafeMutablePointer<UInt8>

    /// Key = HKDF-SHA256(secret, salt, info) -> 32 bytes (OpenSSL EVP_KDF "HKDF").
    /// Empty secret -> `.invalidArgument`; `.crypto` if OpenSSL fails.
    public init(secret: [UInt8], salt: [UInt8] = [], info: [UInt8] = Array("liborchestra payload v1".utf8)) throws(OrchestraError) {
        guard !secret.isEmpty else { throw OrchestraError(.invalidArgument, "cipher secret is empty") }
        key = .allocate(capacity: PayloadCipher.keyLength)
        key.initialize(repeating: 0, count: PayloadCipher.keyLength)
        let ok = PayloadCipher.hkdf(secret: secret, salt: salt, info: info, into: key)
        if !ok {
            OPENSSL_cleanse(key, PayloadCipher.keyLength)
            key.deallocate()
            throw OrchestraError(.crypto, "HKDF-SHA256 key derivation failed: \(opensslError())")
        }
    }

    deinit {
        OPENSSL_cleanse(key, PayloadCipher.keyLength)
        key.deallocate()
    }

    private static func hkdf(secret: [UInt8], salt: [UInt8], info: [UInt8], into out: UnsafeMutablePointer<UInt8>) -> Bool {
        guard let kdf = EVP_KDF_fetch(nil, "HKDF", nil) else { return false }
        defer { EVP_KDF_free(kdf) }
        guard let ctx = EVP_KDF_CTX_new(kdf) else { return false }
        defer { EVP_KDF_CTX_free(ctx) }
        var secret = secret, salt = salt, info = info
        var digest = Array("SHA256".utf8CString)
        return digest.withUnsafeMutableBufferPointer { d in
            secret.withUnsafeMutableBytes { s in
                salt.withUnsafeMutableBytes { sa in
                    info.withUnsafeMutableBytes { i in
                        var params: [OSSL_PARAM] = []
                        params.append(OSSL_PARAM_construct_utf8_string(cName("digest"), d.baseAddress, 0))
                        params.append(OSSL_PARAM_construct_octet_string(cName("key"), s.baseAddress, s.count))
                        if sa.count > 0 { params.append(OSSL_PARAM_construct_octet_string(cName("salt"), sa.baseAddress, sa.count)) }
                        if i.count > 0 { params.append(OSSL_PARAM_construct_octet_string(cName("info"), i.baseAddress, i.count)) }
                        params.append(OSSL_PARAM_construct_end())
                        return params.withUnsafeBufferPointer { p in
                            EVP_KDF_derive(ctx, out, PayloadCipher.keyLength, p.baseAddress) == 1
                        }
                    }
                }
            }
        }
    }

    /// AES-256-GCM: the payload becomes nonce (12 random bytes) | ciphertext | tag (16);
    /// AAD = id | 0x00 | type; sets `encrypted`. `.state` if already encrypted or there is no
    /// payload; `.tooBig` past 2 GiB; `.crypto` if OpenSSL fails.
    public func encrypt(_ m: Message) throws(OrchestraError) {
        if m.encrypted { throw OrchestraError(.state, "payload is already encrypted") }
        guard let plain = m.payload else { throw OrchestraError(.state, "message has no payload to encrypt") }
        guard plain.count <= Int(Int32.max) - 64 else {
            throw OrchestraError(.tooBig, "payload of \(plain.count) bytes is too large to encrypt")
        }
        let aad = m.idBytes + [0] + m.typeBytes
        let total = PayloadCipher.nonceLength + plain.count + PayloadCipher.tagLength
        var failure: String? = nil
        let out = [UInt8](unsafeUninitializedCapacity: total) { buf, initialized in
            initialized = 0
            guard let base = buf.baseAddress else { failure = "allocation"; return }
            guard RAND_bytes(base, Int32(PayloadCipher.nonceLength)) == 1 else { failure = "RAND_bytes"; return }
            guard let ctx = EVP_CIPHER_CTX_new() else { failure = "EVP_CIPHER_CTX_new"; return }
            defer { EVP_CIPHER_CTX_free(ctx) }
            guard EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), nil, key, base) == 1 else { failure = "EVP_EncryptInit_ex"; return }
            var outl: Int32 = 0
            let aadOK = aad.withUnsafeBufferPointer { a in
                EVP_EncryptUpdate(ctx, nil, &outl, a.baseAddress, Int32(a.count)) == 1
            }
            guard aadOK else { failure = "EVP_EncryptUpdate(aad)"; return }
            let ct = base + PayloadCipher.nonceLength
            var written = 0
            if !plain.isEmpty {
                let ok = plain.withUnsafeBufferPointer { p in
                    EVP_EncryptUpdate(ctx, ct, &outl, p.baseAddress, Int32(p.count)) == 1
                }
                guard ok else { failure = "EVP_EncryptUpdate"; return }
                written = Int(outl)
            }
            guard EVP_EncryptFinal_ex(ctx, ct + written, &outl) == 1 else { failure = "EVP_EncryptFinal_ex"; return }
            written += Int(outl)
            guard written == plain.count else { failure = "unexpected ciphertext length"; return }
            guard EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, Int32(PayloadCipher.tagLength), ct + written) == 1 else {
                failure = "EVP_CTRL_GCM_GET_TAG"; return
            }
            initialized = total
        }
        if let failure { throw OrchestraError(.crypto, "encryption failed in \(failure): \(opensslError())") }
        m.payload = out
        m.encrypted = true
    }

    /// Verifies and decrypts. Any change to nonce, ciphertext, tag, id or type (or a wrong key)
    /// -> `.crypto` "payload authentication failed: ..."; `.state` if not encrypted; `.parse`
    /// if the payload is shorter than nonce + tag (28 bytes).
    public func decrypt(_ m: Message) throws(OrchestraError) {
        guard m.encrypted else { throw OrchestraError(.state, "payload is not encrypted") }
        let sealed = m.payload ?? []
        let overhead = PayloadCipher.nonceLength + PayloadCipher.tagLength
        guard sealed.count >= overhead else {
            throw OrchestraError(.parse, "encrypted payload is \(sealed.count) bytes; at least \(overhead) (nonce + tag) are required")
        }
        guard sealed.count <= Int(Int32.max) else {
            throw OrchestraError(.tooBig, "encrypted payload of \(sealed.count) bytes is too large")
        }
        let aad = m.idBytes + [0] + m.typeBytes
        let plainCount = sealed.count - overhead
        var failure: OrchestraError? = nil
        let out = [UInt8](unsafeUninitializedCapacity: max(plainCount, 1)) { buf, initialized in
            initialized = 0
            sealed.withUnsafeBufferPointer { s in
                guard let sb = s.baseAddress, let ob = buf.baseAddress else {
                    failure = OrchestraError(.noMemory, "allocation failed"); return
                }
                guard let ctx = EVP_CIPHER_CTX_new() else {
                    failure = OrchestraError(.crypto, "EVP_CIPHER_CTX_new failed: \(opensslError())"); return
                }
                defer { EVP_CIPHER_CTX_free(ctx) }
                guard EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), nil, key, sb) == 1 else {
                    failure = OrchestraError(.crypto, "EVP_DecryptInit_ex failed: \(opensslError())"); return
                }
                var outl: Int32 = 0
                let aadOK = aad.withUnsafeBufferPointer { a in
                    EVP_DecryptUpdate(ctx, nil, &outl, a.baseAddress, Int32(a.count)) == 1
                }
                guard aadOK else { failure = OrchestraError(.crypto, "EVP_DecryptUpdate(aad) failed"); return }
                var written = 0
                if plainCount > 0 {
                    guard EVP_DecryptUpdate(ctx, ob, &outl, sb + PayloadCipher.nonceLength, Int32(plainCount)) == 1 else {
                        failure = OrchestraError(.crypto, "EVP_DecryptUpdate failed"); return
                    }
                    written = Int(outl)
                }
                let tag = UnsafeMutableRawPointer(mutating: sb + PayloadCipher.nonceLength + plainCount)
                guard EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, Int32(PayloadCipher.tagLength), tag) == 1 else {
                    failure = OrchestraError(.crypto, "EVP_CTRL_GCM_SET_TAG failed"); return
                }
                guard EVP_DecryptFinal_ex(ctx, ob + written, &outl) == 1 else {
                    ERR_clear_error()
                    OPENSSL_cleanse(ob, max(plainCount, 1))   // never keep unauthenticated plaintext
                    failure = OrchestraError(.crypto, "payload authentication failed: the GCM tag does not match (wrong key, or the payload, id or type was changed)")
                    return
                }
                initialized = plainCount
            }
        }
        if let failure { throw failure }
        m.payload = out
        m.encrypted = false
    }
}

/// A C string that lives forever (OSSL_PARAM keeps the key-name pointer, so a temporary
/// bridged String would dangle).
private func cName(_ s: StaticString) -> UnsafePointer<CChar> {
    UnsafeRawPointer(s.utf8Start).assumingMemoryBound(to: CChar.self)
}

/// The most recent OpenSSL error as text (and clears the queue).
func opensslError() -> String {
    let code = ERR_get_error()
    ERR_clear_error()
    if code == 0 { return "no OpenSSL error detail" }
    var buf = [CChar](repeating: 0, count: 256)
    ERR_error_string_n(code, &buf, buf.count)
    return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
