// TLS configuration shared by many connections: one OpenSSL SSL_CTX with its certificate, key
// and trust store. Sessions (TLSSession) are made from it, one per connection.
import CSSL
import Glibc
import OrchestraCore

/// Which end of a TLS connection a context makes sessions for.
public enum TLSRole: Sendable {
    case client
    case server
}

/// What a TLS client trusts and presents (see `TLSContext.client`).
public struct ClientTLSSettings: Sendable {
    /// A PEM file of CAs to trust besides (or instead of) the system's store.
    public var caFile: String? = nil
    public var useSystemStore = true
    /// false turns certificate and host name checking off (tests only).
    public var verifyPeer = true
    /// A client certificate and its key (PEM) for servers that ask for one.
    public var certFile: String? = nil
    public var keyFile: String? = nil

    public init(caFile: String? = nil, useSystemStore: Bool = true, verifyPeer: Bool = true,
                certFile: String? = nil, keyFile: String? = nil) {
        self.caFile = caFile
        self.useSystemStore = useSystemStore
        self.verifyPeer = verifyPeer
        self.certFile = certFile
        self.keyFile = keyFile
    }
}

/// A TLS configuration (an OpenSSL `SSL_CTX`): role, certificate and key, trust store and
/// verification policy. TLS 1.2 is the minimum version; renegotiation and compression are off.
///
/// A context is immutable once made and may be shared by any number of sessions on any threads
/// (OpenSSL reference-counts the `SSL_CTX` and locks what sessions share in it, such as the
/// session-ticket keys).
public final class TLSContext: @unchecked Sendable {
    let ctx: OpaquePointer
    public let role: TLSRole
    /// Whether sessions verify the peer's certificate (always for a client made with
    /// `verifyPeer: true`; for a server, when it was given a CA file for client certificates).
    public let verifiesPeer: Bool

    private init(ctx: OpaquePointer, role: TLSRole, verifiesPeer: Bool) {
        self.ctx = ctx
        self.role = role
        self.verifiesPeer = verifiesPeer
    }

    deinit { SSL_CTX_free(ctx) }

    /// A server context presenting the certificate chain in `certFile` (PEM: the leaf first, then
    /// any intermediates) with the private key in `keyFile` (PEM, unencrypted).
    ///
    /// With `clientCAFile`, clients are asked for a certificate, which must chain to a CA in that
    /// file; `requireClientCertificate` makes one mandatory (mutual TLS). Without it no client
    /// certificate is requested.
    ///
    /// Errors: `.io` when a file cannot be read (with the system's reason), `.tls` when a file is
    /// not valid PEM, the key is encrypted or does not match the certificate (with OpenSSL's
    /// reason), `.invalidArgument` for `requireClientCertificate` without `clientCAFile`.
    public static func server(certFile: String, keyFile: String, clientCAFile: String? = nil,
                              requireClientCertificate: Bool = false) throws(OrchestraError) -> TLSContext {
        if requireClientCertificate && clientCAFile == nil {
            throw OrchestraError(.invalidArgument, "requireClientCertificate needs clientCAFile to verify client certificates")
        }
        let ctx = try newContext(TLS_server_method())
        do throws(OrchestraError) {
            try useCertificateAndKey(ctx, certFile: certFile, keyFile: keyFile)
            if let clientCAFile {
                try loadCAFile(ctx, clientCAFile)
                ERR_clear_error()
                // The CA names the server sends in its CertificateRequest, so a client with
                // several certificates can pick the right one.
                guard let names = SSL_load_client_CA_file(clientCAFile) else {
                    throw OrchestraError(.tls, "no CA certificate names in '\(clientCAFile)': \(TLSErrors.drain())")
                }
                SSL_CTX_set_client_CA_list(ctx, names)
                var mode = SSL_VERIFY_PEER
                if requireClientCertificate { mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT }
                SSL_CTX_set_verify(ctx, mode, nil)
            } else {
                SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nil)
            }
        } catch {
            SSL_CTX_free(ctx)
            throw error
        }
        return TLSContext(ctx: ctx, role: .server, verifiesPeer: clientCAFile != nil)
    }

    /// A client context. With `verifyPeer` (the default and the only safe choice outside tests)
    /// the server's certificate must chain to a CA from `caFile` (PEM, one or more certificates)
    /// and/or the system's trust store (`useSystemStore`: OpenSSL's default paths,
    /// /etc/ssl/certs on Debian), and must match the name given to `TLSSession(serverName:)`.
    /// With `verifyPeer: false` any certificate is accepted: the connection is encrypted but not
    /// authenticated.
    ///
    /// `certFile` and `keyFile` give a client certificate for servers that ask for one.
    ///
    /// Errors: `.invalidArgument` (verifyPeer with neither caFile nor useSystemStore: nothing
    /// could be trusted; only one of certFile and keyFile), `.io` (a file cannot be read), `.tls`
    /// (a file is not valid PEM, the key does not match the certificate, the system store cannot
    /// be loaded).
    public static func client(caFile: String? = nil, useSystemStore: Bool = true, verifyPeer: Bool = true,
                              certFile: String? = nil, keyFile: String? = nil) throws(OrchestraError) -> TLSContext {
        if verifyPeer && caFile == nil && !useSystemStore {
            throw OrchestraError(.invalidArgument, "a verifying TLS client needs caFile or useSystemStore: no CA would be trusted")
        }
        if (certFile == nil) != (keyFile == nil) {
            throw OrchestraError(.invalidArgument, "a client certificate needs both certFile and keyFile")
        }
        let ctx = try newContext(TLS_client_method())
        do throws(OrchestraError) {
            if let caFile { try loadCAFile(ctx, caFile) }
            if useSystemStore {
                ERR_clear_error()
                if SSL_CTX_set_default_verify_paths(ctx) != 1 {
                    throw OrchestraError(.tls, "cannot load the system's trusted CA certificates: \(TLSErrors.drain())")
                }
            }
            if let certFile, let keyFile {
                try useCertificateAndKey(ctx, certFile: certFile, keyFile: keyFile)
            }
            SSL_CTX_set_verify(ctx, verifyPeer ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nil)
        } catch {
            SSL_CTX_free(ctx)
            throw error
        }
        return TLSContext(ctx: ctx, role: .client, verifiesPeer: verifyPeer)
    }

    /// The context a client for `url` connects with: nil for a ws:// URL (no TLS); for wss://
    /// one made by `client(...)` from the settings `settings()` gives (asked only then, so
    /// settings that only TLS needs are not read for a ws:// URL).
    public static func client(forURL url: String, _ settings: () throws(OrchestraError) -> ClientTLSSettings) throws(OrchestraError) -> TLSContext? {
        guard WebSocketURL.isSecure(url) else { return nil }
        let s = try settings()
        return try client(caFile: s.caFile, useSystemStore: s.useSystemStore, verifyPeer: s.verifyPeer,
                          certFile: s.certFile, keyFile: s.keyFile)
    }

    private static func newContext(_ method: OpaquePointer?) throws(OrchestraError) -> OpaquePointer {
        ERR_clear_error()
        guard let ctx = SSL_CTX_new(method) else {
            throw OrchestraError(.tls, "SSL_CTX_new failed: \(TLSErrors.drain())")
        }
        guard orc_ssl_ctx_set_min_proto_version(ctx, TLS1_2_VERSION) == 1 else {
            SSL_CTX_free(ctx)
            throw OrchestraError(.tls, "cannot set TLS 1.2 as the minimum version: \(TLSErrors.drain())")
        }
        _ = orc_ssl_ctx_set_default_options(ctx)
        // An encrypted key would make OpenSSL prompt on the terminal for a passphrase: refuse.
        SSL_CTX_set_default_passwd_cb(ctx) { _, _, _, _ in 0 }
        return ctx
    }

    private static func checkReadable(_ path: String, _ what: String) throws(OrchestraError) {
        if access(path, R_OK) != 0 {
            let reason = String(cString: strerror(errno))
            throw OrchestraError(.io, "cannot read \(what) '\(path)': \(reason)")
        }
    }

    private static func useCertificateAndKey(_ ctx: OpaquePointer, certFile: String, keyFile: String) throws(OrchestraError) {
        try checkReadable(certFile, "certificate file")
        try checkReadable(keyFile, "private key file")
        ERR_clear_error()
        if SSL_CTX_use_certificate_chain_file(ctx, certFile) != 1 {
            throw OrchestraError(.tls, "certificate file '\(certFile)' is not a PEM certificate chain: \(TLSErrors.drain())")
        }
        if SSL_CTX_use_PrivateKey_file(ctx, keyFile, SSL_FILETYPE_PEM) != 1 {
            let reason = TLSErrors.drain()
            if reason.contains("key values mismatch") {
                throw OrchestraError(.tls, "private key '\(keyFile)' does not match certificate '\(certFile)': \(reason)")
            }
            throw OrchestraError(.tls, "private key file '\(keyFile)' is not an unencrypted PEM private key: \(reason)")
        }
        if SSL_CTX_check_private_key(ctx) != 1 {
            throw OrchestraError(.tls, "private key '\(keyFile)' does not match certificate '\(certFile)': \(TLSErrors.drain())")
        }
    }

    private static func loadCAFile(_ ctx: OpaquePointer, _ caFile: String) throws(OrchestraError) {
        try checkReadable(caFile, "CA file")
        ERR_clear_error()
        if SSL_CTX_load_verify_locations(ctx, caFile, nil) != 1 {
            throw OrchestraError(.tls, "CA file '\(caFile)' holds no PEM certificate: \(TLSErrors.drain())")
        }
    }
}

/// OpenSSL's per-thread error queue, as text.
enum TLSErrors {
    /// Empties the calling thread's OpenSSL error queue and returns its reasons, oldest first,
    /// joined by "; " ("certificate verify failed"), or "no reason given by OpenSSL".
    static func drain() -> String {
        var parts: [String] = []
        while true {
            var data: UnsafePointer<CChar>? = nil
            var flags: Int32 = 0
            let e = ERR_get_error_all(nil, nil, nil, &data, &flags)
            if e == 0 { break }
            var text: String
            if let r = ERR_reason_error_string(e) {
                text = String(cString: r)
            } else {
                text = "OpenSSL error 0x\(String(e, radix: 16))"
            }
            if let data, flags & ERR_TXT_STRING != 0, data.pointee != 0 {
                text += " (\(String(cString: data)))"
            }
            // Reasons from SSL_AD_REASON_OFFSET up are alerts the peer sent.
            if ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) >= SSL_AD_REASON_OFFSET {
                text = "alert from the peer: \(text)"
            }
            if !parts.contains(text) { parts.append(text) }
        }
        return parts.isEmpty ? "no reason given by OpenSSL" : parts.joined(separator: "; ")
    }
}

/// `body` over an array's bytes, keeping the typed error.
func withTLSBytes<R>(_ a: [UInt8], _ body: (UnsafeRawBufferPointer) throws(OrchestraError) -> R) throws(OrchestraError) -> R {
    let r: Result<R, OrchestraError> = a.withUnsafeBytes { b in
        do throws(OrchestraError) { return .success(try body(b)) } catch { return .failure(error) }
    }
    return try r.get()
}
