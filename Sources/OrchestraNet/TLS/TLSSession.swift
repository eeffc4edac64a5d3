// One TLS connection, sans-I/O: ciphertext goes in and out through two OpenSSL memory BIOs and
// the caller moves it to and from the socket. No sockets, no threads, no clocks here.
import CSSL
import Glibc
import OrchestraCore

/// One TLS connection over OpenSSL memory BIOs. The owner moves bytes; the session never does
/// I/O:
///
/// ```
/// socket bytes in  -> feed(_:)            then read(into:) until .needMore: plaintext for the app
/// app bytes out    -> write(_:)           (buffered until the handshake completes)
/// after any call   -> takeCiphertext()    bytes to send on the socket (handshake, records, alerts)
/// socket EOF       -> feedEOF()           then read(into:): .closed after close_notify, else .tls
/// closing          -> shutdown()          queues close_notify; send it, then close the socket
/// ```
///
/// A client session sends its ClientHello as soon as it is made, so `takeCiphertext()` has
/// bytes right after `init`. The handshake advances inside `feed` and `read`; when it completes,
/// plaintext written earlier is encrypted and queued.
///
/// Errors are sticky: once a call throws, every later call throws the same error (its code is
/// `.tls` for protocol and certificate failures). OpenSSL may have queued an alert for the
/// peer by then: send what `takeCiphertext()` still returns before closing the socket.
///
/// A session is used by one thread at a time (the connection's I/O thread).
public final class TLSSession {
    /// The session's progress. `closed` means both sides sent close_notify (or this side shut
    /// down before the handshake completed).
    public enum State: Equatable, Sendable {
        case handshaking
        case established
        case closed
        case failed
    }

    /// What `read(into:)` found.
    public enum ReadResult: Equatable, Sendable {
        /// `n` plaintext bytes were written to the start of the buffer (n > 0).
        case bytes(Int)
        /// No plaintext is available until more ciphertext is fed (the handshake may still be
        /// running, or a record is incomplete).
        case needMore
        /// The peer sent close_notify: it will send nothing more. Every later read says so too.
        case closed
    }

    public let context: TLSContext
    public var role: TLSRole { context.role }
    private let ssl: OpaquePointer
    /// Incoming ciphertext (owned by `ssl`, freed by SSL_free).
    private let rbio: OpaquePointer
    /// Outgoing ciphertext (owned by `ssl`).
    private let wbio: OpaquePointer
    private var handshakeDone = false
    private var eofFed = false
    private var shutdownRequested = false
    /// shutdown() came before the handshake completed, with nothing to send: the session is
    /// closed without a close_notify (none can be sent before the handshake).
    private var abandoned = false
    /// Plaintext written before the handshake completed, sent once it has.
    private var pendingPlaintext: [UInt8] = []
    private let requestedName: String?

    /// The first error; every later call throws it again.
    public private(set) var error: OrchestraError? = nil
    /// The peer's close_notify was read.
    public private(set) var receivedCloseNotify = false
    /// This side's close_notify was queued (`shutdown()`).
    public private(set) var sentCloseNotify = false

    /// A session for one connection.
    ///
    /// A client passes the name it connects to as `serverName`: a DNS name is sent as SNI and
    /// checked against the certificate's subjectAltName DNS entries (wildcards only as a whole
    /// left-most label); an IP address (v4, or v6 with or without brackets) is checked against
    /// its IP entries and not sent as SNI (RFC 6066 forbids IP literals there). A verifying
    /// client must give one. A server passes nil and reads the client's SNI from `serverName`
    /// once the handshake has progressed.
    ///
    /// Errors: `.invalidArgument` (a verifying client without serverName, a name with a NUL
    /// byte, a server given a serverName), `.tls` (OpenSSL cannot make the session).
    public init(context: TLSContext, serverName: String? = nil) throws(OrchestraError) {
        var name = serverName
        if let n = name, n.hasPrefix("["), n.hasSuffix("]"), n.count > 2 {
            name = String(n.dropFirst().dropLast())
        }
        if let n = name {
            if n.isEmpty || n.utf8.contains(0) {
                throw OrchestraError(.invalidArgument, "TLS server name must be non-empty and contain no NUL byte")
            }
            if context.role == .server {
                throw OrchestraError(.invalidArgument, "a TLS server session takes no serverName (it reads the client's SNI)")
            }
        } else if context.role == .client && context.verifiesPeer {
            throw OrchestraError(.invalidArgument, "a verifying TLS client needs the serverName to check the certificate against")
        }
        ERR_clear_error()
        guard let ssl = SSL_new(context.ctx) else {
            throw OrchestraError(.tls, "SSL_new failed: \(TLSErrors.drain())")
        }
        guard let rbio = BIO_new(BIO_s_mem()) else {
            SSL_free(ssl)
            throw OrchestraError(.noMemory, "BIO_new failed: \(TLSErrors.drain())")
        }
        guard let wbio = BIO_new(BIO_s_mem()) else {
            BIO_free(rbio)
            SSL_free(ssl)
            throw OrchestraError(.noMemory, "BIO_new failed: \(TLSErrors.drain())")
        }
        // An empty read BIO means "no bytes yet" (retry), not end of stream, until feedEOF().
        orc_bio_set_mem_eof_return(rbio, -1)
        SSL_set_bio(ssl, rbio, wbio)  // ssl owns both BIOs from here on
        if context.role == .client {
            SSL_set_connect_state(ssl)
            if let n = name {
                let isIP = TLSSession.isIPAddress(n)
                var ok = SSL_set1_host(ssl, n) == 1  // an IP literal is checked as an IP address
                if ok && !isIP { ok = orc_ssl_set_tlsext_host_name(ssl, n) == 1 }
                if !ok {
                    let reason = TLSErrors.drain()
                    SSL_free(ssl)
                    throw OrchestraError(.invalidArgument, "invalid TLS server name '\(n)': \(reason)")
                }
                SSL_set_hostflags(ssl, UInt32(X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS))
                ERR_clear_error()  // SSL_set1_host tries the name as an IP address first
            }
        } else {
            SSL_set_accept_state(ssl)
        }
        self.context = context
        self.ssl = ssl
        self.rbio = rbio
        self.wbio = wbio
        self.requestedName = name
        if context.role == .client { advanceHandshake() }  // queues the ClientHello
    }

    deinit { SSL_free(ssl) }

    // MARK: State

    public var state: State {
        if error != nil { return .failed }
        if abandoned { return .closed }
        if !handshakeDone { return .handshaking }
        return receivedCloseNotify && sentCloseNotify ? .closed : .established
    }

    public var handshakeComplete: Bool { handshakeDone }

    /// Client: the name given to `init`. Server: the SNI name the client sent, once its
    /// ClientHello has been read (nil if it sent none).
    public var serverName: String? {
        if role == .client { return requestedName }
        guard let p = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name) else { return nil }
        return String(cString: p)
    }

    /// The negotiated protocol ("TLSv1.3"), once the handshake is complete.
    public var protocolVersion: String? {
        handshakeDone ? String(cString: SSL_get_version(ssl)) : nil
    }

    /// The negotiated cipher suite ("TLS_AES_256_GCM_SHA384"), once the handshake is complete.
    public var cipherSuite: String? {
        guard handshakeDone, let c = SSL_get_current_cipher(ssl), let n = SSL_CIPHER_get_name(c) else { return nil }
        return String(cString: n)
    }

    /// Whether the peer presented a certificate (a server always does; a client when asked).
    public var peerPresentedCertificate: Bool { SSL_get0_peer_certificate(ssl) != nil }

    /// Bytes of ciphertext waiting to be sent (what `takeCiphertext()` would return).
    public var pendingCiphertextCount: Int { Int(BIO_ctrl_pending(wbio)) }

    /// Bytes of plaintext written before the handshake completed, not yet encrypted.
    public var pendingPlaintextCount: Int { pendingPlaintext.count }

    // MARK: Input

    /// Hands ciphertext received from the peer to the session (copied into its read BIO) and
    /// advances the handshake. Plaintext it carries is returned by `read(into:)`.
    ///
    /// Errors: the sticky error; `.state` after `feedEOF()`; `.tls` when the handshake fails
    /// ("certificate verify failed: hostname mismatch", "wrong version number", ...).
    public func feed(_ ciphertext: UnsafeRawBufferPointer) throws(OrchestraError) {
        if let error { throw error }
        if abandoned { throw OrchestraError(.closed, "TLS session shut down before its handshake completed") }
        if eofFed { throw OrchestraError(.state, "TLS feed after feedEOF()") }
        guard let base = ciphertext.baseAddress, ciphertext.count > 0 else { return }
        var offset = 0
        while offset < ciphertext.count {
            let n = min(ciphertext.count - offset, Int(Int32.max))
            // A memory BIO takes every byte unless malloc fails.
            let w = BIO_write(rbio, base + offset, Int32(n))
            if w <= 0 {
                throw fail(OrchestraError(.noMemory, "cannot buffer \(n) bytes of TLS input: \(TLSErrors.drain())"))
            }
            offset += Int(w)
        }
        if !handshakeDone {
            advanceHandshake()
            if let error { throw error }
        }
    }

    public func feed(_ ciphertext: [UInt8]) throws(OrchestraError) {
        try withTLSBytes(ciphertext) { (b) throws(OrchestraError) in try feed(b) }
    }

    /// The transport reached end of stream (the peer closed TCP). Later reads return what is
    /// still buffered, then `.closed` if the peer's close_notify came first, otherwise they
    /// throw `.tls` ("connection truncated"): without close_notify an attacker may have cut the
    /// stream short.
    public func feedEOF() {
        eofFed = true
        orc_bio_set_mem_eof_return(rbio, 0)
    }

    /// Decrypts plaintext into `buffer`: `.bytes(n)` (call again: more may be ready), `.needMore`
    /// (feed more ciphertext), or `.closed` (the peer sent close_notify). Reading also processes
    /// the handshake and post-handshake messages (TLS 1.3 session tickets, key updates), which
    /// may queue ciphertext to send.
    ///
    /// Errors: the sticky error; `.invalidArgument` (empty buffer); `.tls` (a record failed to
    /// authenticate -- "bad record mac", an alert from the peer, truncation after `feedEOF()`).
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(OrchestraError) -> ReadResult {
        if let error { throw error }
        guard let base = buffer.baseAddress, buffer.count > 0 else {
            throw OrchestraError(.invalidArgument, "TLS read into an empty buffer")
        }
        if receivedCloseNotify { return .closed }
        if abandoned { throw OrchestraError(.closed, "TLS session shut down before its handshake completed") }
        if !handshakeDone {
            advanceHandshake()
            if let error { throw error }
            if !handshakeDone { return .needMore }
        }
        clearStaleErrors()
        var n = 0
        let rc = SSL_read_ex(ssl, base, buffer.count, &n)
        if rc == 1 { return .bytes(n) }
        let code = SSL_get_error(ssl, rc)
        switch code {
        case SSL_ERROR_ZERO_RETURN:
            receivedCloseNotify = true
            return .closed
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
            return .needMore
        default:
            throw fail(failure(code, during: "read"))
        }
    }

    /// Reads every plaintext byte available now, in chunks of at most `scratch.count` bytes,
    /// calling `body` with each (a slice of `scratch`, which `body` may modify, e.g. to unmask
    /// WebSocket payloads in place). Returns `.needMore` or `.closed`, like `read(into:)`.
    public func readAvailable(scratch: UnsafeMutableRawBufferPointer,
                              _ body: (UnsafeMutableRawBufferPointer) throws(OrchestraError) -> Void) throws(OrchestraError) -> ReadResult {
        while true {
            switch try read(into: scratch) {
            case .bytes(let n): try body(UnsafeMutableRawBufferPointer(rebasing: scratch[0..<n]))
            case let other: return other
            }
        }
    }

    // MARK: Output

    /// Encrypts `plaintext` into records (16 KiB each at most) queued for `takeCiphertext()`.
    /// Every byte is taken: before the handshake completes they are copied and sent once it has.
    ///
    /// Errors: the sticky error; `.closed` after `shutdown()`; `.tls` from OpenSSL.
    public func write(_ plaintext: UnsafeRawBufferPointer) throws(OrchestraError) {
        if let error { throw error }
        if shutdownRequested { throw OrchestraError(.closed, "TLS write after shutdown()") }
        guard let base = plaintext.baseAddress, plaintext.count > 0 else { return }
        if !handshakeDone || !pendingPlaintext.isEmpty {
            pendingPlaintext.append(contentsOf: UnsafeRawBufferPointer(start: base, count: plaintext.count))
            if handshakeDone { try flushPendingPlaintext() }
            return
        }
        let written = try encrypt(plaintext)
        if written < plaintext.count {
            pendingPlaintext.append(contentsOf: UnsafeRawBufferPointer(rebasing: plaintext[written...]))
        }
    }

    public func write(_ plaintext: [UInt8]) throws(OrchestraError) {
        try withTLSBytes(plaintext) { (b) throws(OrchestraError) in try write(b) }
    }

    /// Queues close_notify (after any plaintext still waiting for the handshake). Send the
    /// ciphertext, then close the socket; waiting for the peer's close_notify is optional
    /// (RFC 8446 section 6.1). Before the handshake completes nothing can be sent: the session
    /// is closed at once (state `.closed`; feed and read throw `.closed`), unless plaintext is
    /// waiting, in which case close_notify follows it when the handshake completes. Calling it
    /// again does nothing.
    ///
    /// Errors: `.tls` from OpenSSL. A failed session has nothing to close: no error, no bytes.
    public func shutdown() throws(OrchestraError) {
        if error != nil || shutdownRequested { return }
        shutdownRequested = true
        if !handshakeDone {
            if pendingPlaintext.isEmpty { abandoned = true }
            return
        }
        try sendCloseNotify()
    }

    /// Moves up to `buffer.count` bytes of pending ciphertext into `buffer`; returns how many.
    public func takeCiphertext(into buffer: UnsafeMutableRawBufferPointer) -> Int {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return 0 }
        let n = BIO_read(wbio, base, Int32(min(buffer.count, Int(Int32.max))))
        return max(Int(n), 0)
    }

    /// All pending ciphertext as one array (empty when there is none): one allocation of the
    /// exact size and one copy out of the write BIO. The array is the caller's, so it can stay
    /// alive for an asynchronous socket write while the session queues more.
    public func takeCiphertext() -> [UInt8] {
        let pending = pendingCiphertextCount
        if pending == 0 { return [] }
        return [UInt8](unsafeUninitializedCapacity: pending) { buf, count in
            count = takeCiphertext(into: UnsafeMutableRawBufferPointer(buf))
        }
    }

    // MARK: Internals

    private func advanceHandshake() {
        clearStaleErrors()
        let rc = SSL_do_handshake(ssl)
        if rc == 1 {
            handshakeDone = true
            do throws(OrchestraError) {
                try flushPendingPlaintext()
                if shutdownRequested && !sentCloseNotify { try sendCloseNotify() }
            } catch {
                // fail() already recorded it as the sticky error.
            }
            return
        }
        let code = SSL_get_error(ssl, rc)
        if code == SSL_ERROR_WANT_READ || code == SSL_ERROR_WANT_WRITE { return }
        _ = fail(failure(code, during: "handshake"))
    }

    private func flushPendingPlaintext() throws(OrchestraError) {
        if pendingPlaintext.isEmpty { return }
        let written = try withTLSBytes(pendingPlaintext) { (b) throws(OrchestraError) in try encrypt(b) }
        pendingPlaintext.removeFirst(written)
    }

    /// SSL_write_ex until every byte is taken or OpenSSL asks to wait; returns the bytes taken.
    /// With a memory write BIO a write never has to wait for the socket; it could only wait for
    /// a peer message (none without renegotiation), and then the rest stays pending.
    private func encrypt(_ bytes: UnsafeRawBufferPointer) throws(OrchestraError) -> Int {
        guard let base = bytes.baseAddress else { return 0 }
        var offset = 0
        while offset < bytes.count {
            clearStaleErrors()
            var n = 0
            let rc = SSL_write_ex(ssl, base + offset, bytes.count - offset, &n)
            if rc == 1 {
                offset += n
                continue
            }
            let code = SSL_get_error(ssl, rc)
            if code == SSL_ERROR_WANT_READ || code == SSL_ERROR_WANT_WRITE { break }
            throw fail(failure(code, during: "write"))
        }
        return offset
    }

    private func sendCloseNotify() throws(OrchestraError) {
        clearStaleErrors()
        let rc = SSL_shutdown(ssl)
        if rc < 0 {
            let code = SSL_get_error(ssl, rc)
            if code != SSL_ERROR_WANT_READ && code != SSL_ERROR_WANT_WRITE {
                throw fail(failure(code, during: "shutdown"))
            }
        }
        sentCloseNotify = true
    }

    /// SSL_get_error reads the thread's OpenSSL error queue, so it must be empty before an SSL
    /// call. ERR_clear_error resets all 16 slots (about 850 instructions); peeking first costs a
    /// fraction of that, and the queue is almost always empty (failures drain it).
    @inline(__always)
    private func clearStaleErrors() {
        if ERR_peek_error() != 0 { ERR_clear_error() }
    }

    @discardableResult
    private func fail(_ e: OrchestraError) -> OrchestraError {
        if error == nil { error = e }
        return error!
    }

    /// The error for a failed SSL call, with OpenSSL's reasons and, for a rejected certificate,
    /// the verification result ("certificate verify failed: hostname mismatch").
    private func failure(_ code: Int32, during what: String) -> OrchestraError {
        let peer = role == .client ? (requestedName.map { " with '\($0)'" } ?? "") : ""
        let prefix = "TLS \(what)\(peer) failed"
        var reason: String
        switch code {
        case SSL_ERROR_SSL:
            reason = TLSErrors.drain()
        case SSL_ERROR_SYSCALL:
            // With memory BIOs there is no system call: this is an end of stream OpenSSL did
            // not expect.
            let queued = TLSErrors.drain()
            reason = queued == "no reason given by OpenSSL" ? "unexpected eof while reading" : queued
        default:
            reason = "SSL_get_error \(code): \(TLSErrors.drain())"
        }
        // The verification result only matters when the peer is verified: a client with
        // verifyPeer false records one too, and ignores it.
        let verify = SSL_get_verify_result(ssl)
        if context.verifiesPeer, verify != Int(X509_V_OK), let s = X509_verify_cert_error_string(verify) {
            var detail = String(cString: s)
            if verify == Int(X509_V_ERR_HOSTNAME_MISMATCH) || verify == Int(X509_V_ERR_IP_ADDRESS_MISMATCH),
               let n = requestedName {
                detail += " (the certificate is not valid for '\(n)')"
            }
            reason = reason.contains("certificate verify failed")
                ? reason.replacing("certificate verify failed", with: "certificate verify failed: \(detail)", maxReplacements: 1)
                : "\(reason); certificate verify failed: \(detail)"
        }
        if reason.contains("unexpected eof while reading") {
            if handshakeDone {
                reason = "connection truncated: the peer closed the connection without close_notify (unexpected eof while reading)"
            } else {
                reason = "the peer closed the connection during the handshake (unexpected eof while reading)"
            }
        } else if reason.contains("http request") {
            reason += ": the peer sent plain HTTP to a TLS port"
        } else if reason.contains("wrong version number") && !handshakeDone {
            reason += ": the peer does not speak TLS (or only an unsupported version)"
        }
        return OrchestraError(.tls, "\(prefix): \(reason)")
    }

    static func isIPAddress(_ s: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, s, &v4) == 1 || inet_pton(AF_INET6, s, &v6) == 1
    }
}
