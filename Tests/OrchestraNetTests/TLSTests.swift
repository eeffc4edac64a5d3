import CSSL
import Glibc
import OrchestraCore
@testable import OrchestraNet
import Testing

// The TLS layer without sockets: a client TLSSession and a server TLSSession exchange ciphertext
// in memory. Certificates come from the `openssl` command, made once per test process in a
// temporary directory (removed at exit).

/// The test PKI: a CA and certificates it signed, plus a self-signed one.
struct TestPKI: Sendable {
    let dir: String
    var ca: String { "\(dir)/ca.pem" }
    /// localhost + 127.0.0.1 (subjectAltName), signed by the CA, valid now.
    var serverCert: String { "\(dir)/server.pem" }
    var serverKey: String { "\(dir)/server.key" }
    /// wrong.example and *.wild.test, signed by the CA.
    var wrongCert: String { "\(dir)/wrong.pem" }
    var wrongKey: String { "\(dir)/wrong.key" }
    /// localhost, signed by the CA, expired in 2020.
    var expiredCert: String { "\(dir)/expired.pem" }
    var expiredKey: String { "\(dir)/expired.key" }
    /// localhost, self-signed (no CA).
    var selfSignedCert: String { "\(dir)/self.pem" }
    var selfSignedKey: String { "\(dir)/self.key" }
    /// A client certificate signed by the CA (clientAuth).
    var clientCert: String { "\(dir)/client.pem" }
    var clientKey: String { "\(dir)/client.key" }
    /// Another CA, unrelated to the first.
    var otherCA: String { "\(dir)/other-ca.pem" }

    static let shared: TestPKI = make()

    private static func make() -> TestPKI {
        var template = Array("/tmp/orc-tls-XXXXXX".utf8CString)
        guard let p = mkdtemp(&template) else { fatalError("mkdtemp failed: errno \(errno)") }
        let dir = String(cString: p)
        pkiDirForCleanup = strdup(dir)
        atexit {
            if let d = pkiDirForCleanup {
                _ = system("rm -rf '\(String(cString: d))'")
            }
        }
        // Tests/support/make-test-pki.sh, found from this file's path.
        var parts = "\(#filePath)".split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(2)
        let script = parts.joined(separator: "/") + "/support/make-test-pki.sh"
        let rc = system("sh '\(script)' '\(dir)' > '\(dir)/make.log' 2>&1")
        if rc != 0 {
            let log = (try? readFile("\(dir)/make.log")) ?? "(no log)"
            fatalError("making the test certificates with openssl failed (\(rc)):\n\(log)")
        }
        return TestPKI(dir: dir)
    }
}

nonisolated(unsafe) private var pkiDirForCleanup: UnsafeMutablePointer<CChar>? = nil

private func readFile(_ path: String) throws -> String {
    guard let f = fopen(path, "r") else { throw OrchestraError(.io, "cannot open \(path)") }
    defer { fclose(f) }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = fread(&buf, 1, buf.count, f)
        if n == 0 { break }
        out += buf[0..<n]
    }
    return String(decoding: out, as: UTF8.self)
}

private func writeFile(_ path: String, _ text: String) {
    let f = fopen(path, "w")!
    fputs(text, f)
    fclose(f)
}

/// One end of an in-memory connection: its session and what it has read.
final class Peer {
    let session: TLSSession
    var received: [UInt8] = []
    var sawClose = false
    init(_ s: TLSSession) { session = s }

    /// Reads until the session needs more ciphertext, through a small buffer (several reads
    /// per record).
    func drain() throws {
        var buf = [UInt8](repeating: 0, count: 3000)
        loop: while true {
            let r = try buf.withUnsafeMutableBytes { try session.read(into: $0) }
            switch r {
            case .bytes(let n):
                #expect(n > 0 && n <= buf.count)
                received += buf[0..<n]
            case .needMore: break loop
            case .closed:
                sawClose = true
                break loop
            }
        }
    }
}

/// Moves ciphertext both ways until neither side has any left, feeding it in chunks of
/// 1...maxChunk bytes (random when `rng` is given) and reading plaintext after each chunk.
/// Returns the bytes that crossed.
@discardableResult
func pump(_ a: Peer, _ b: Peer, maxChunk: Int = Int.max, rng: inout TestRNG) throws -> Int {
    var total = 0
    while true {
        var moved = false
        for (from, to) in [(a, b), (b, a)] {
            let out = from.session.takeCiphertext()
            if out.isEmpty { continue }
            moved = true
            total += out.count
            var pos = 0
            while pos < out.count {
                let n = maxChunk == Int.max ? out.count - pos : min(out.count - pos, 1 + rng.below(maxChunk))
                try out[pos..<(pos + n)].withUnsafeBytes { try to.session.feed($0) }
                pos += n
                try to.drain()
            }
        }
        if !moved { return total }
    }
}

@discardableResult
func pump(_ a: Peer, _ b: Peer) throws -> Int {
    var rng = TestRNG(seed: 1)
    return try pump(a, b, rng: &rng)
}

func serverContext(_ pki: TestPKI = .shared, cert: String? = nil, key: String? = nil) throws(OrchestraError) -> TLSContext {
    try TLSContext.server(certFile: cert ?? pki.serverCert, keyFile: key ?? pki.serverKey)
}

func clientContext(_ pki: TestPKI = .shared, verify: Bool = true) throws(OrchestraError) -> TLSContext {
    try TLSContext.client(caFile: pki.ca, useSystemStore: false, verifyPeer: verify)
}

/// A client and a server session, not yet connected.
func pair(_ server: TLSContext, _ client: TLSContext, name: String?) throws -> (client: Peer, server: Peer) {
    (Peer(try TLSSession(context: client, serverName: name)), Peer(try TLSSession(context: server)))
}

/// Pumps a handshake that must fail; returns the client's and the server's errors.
func failingHandshake(_ server: TLSContext, _ client: TLSContext, name: String?) throws -> (client: OrchestraError?, server: OrchestraError?) {
    let (c, s) = try pair(server, client, name: name)
    do {
        try pump(c, s)
        Issue.record("the handshake succeeded")
    } catch let e as OrchestraError {
        #expect(e.code == .tls)
        // Whoever failed first queued an alert for the other: deliver it.
        _ = try? pump(c, s)
    }
    return (c.session.error, s.session.error)
}

func pattern(_ n: Int, seed: UInt64) -> [UInt8] {
    var rng = TestRNG(seed: seed)
    return (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
}

@Suite struct TLSTests {
    @Test func handshakeAndSmallDataBothWays() throws {
        let (c, s) = try pair(try serverContext(), try clientContext(), name: "localhost")
        #expect(c.session.state == .handshaking && s.session.state == .handshaking)
        #expect(c.session.pendingCiphertextCount > 0)  // the ClientHello, queued by init
        // Written before the handshake: kept and sent once it completes.
        try c.session.write(bytes("GET / HTTP/1.1\r\n\r\n"))
        #expect(c.session.pendingPlaintextCount == 18)
        try pump(c, s)
        #expect(c.session.handshakeComplete && s.session.handshakeComplete)
        #expect(c.session.state == .established && s.session.state == .established)
        #expect(c.session.pendingPlaintextCount == 0)
        #expect(s.received == bytes("GET / HTTP/1.1\r\n\r\n"))
        #expect(s.session.serverName == "localhost")  // the client's SNI, read by the server
        #expect(c.session.serverName == "localhost")
        #expect(c.session.protocolVersion == "TLSv1.3" && s.session.protocolVersion == "TLSv1.3")
        #expect(c.session.cipherSuite != nil && c.session.cipherSuite == s.session.cipherSuite)
        #expect(c.session.peerPresentedCertificate && !s.session.peerPresentedCertificate)
        try s.session.write(bytes("HTTP/1.1 101 Switching Protocols\r\n\r\n"))
        try c.session.write(bytes("x"))
        try s.session.write(bytes("y"))
        try pump(c, s)
        #expect(c.received == bytes("HTTP/1.1 101 Switching Protocols\r\n\r\ny"))
        #expect(s.received == bytes("GET / HTTP/1.1\r\n\r\nx"))
        #expect(c.session.error == nil && s.session.error == nil)
    }

    @Test func oneMebibyteEachWayInRandomChunks() throws {
        let (c, s) = try pair(try serverContext(), try clientContext(), name: "localhost")
        var rng = TestRNG(seed: 42)
        try pump(c, s, maxChunk: 700, rng: &rng)
        let up = pattern(1 << 20, seed: 7)
        let down = pattern(1 << 20, seed: 8)
        // One 1 MiB write (64 records) one way; many odd-sized writes the other way.
        try c.session.write(up)
        let bigOut = c.session.pendingCiphertextCount
        #expect(bigOut > up.count && bigOut < up.count + 64 * 64)  // records of 16 KiB + overhead
        var pos = 0
        while pos < down.count {
            let n = min(down.count - pos, 1 + rng.below(40_000))
            try down[pos..<(pos + n)].withUnsafeBytes { try s.session.write($0) }
            pos += n
        }
        try pump(c, s, maxChunk: 20_000, rng: &rng)
        #expect(s.received.count == up.count && s.received == up)
        #expect(c.received.count == down.count && c.received == down)
    }

    @Test func handshakeFedOneByteAtATime() throws {
        let (c, s) = try pair(try serverContext(), try clientContext(), name: "127.0.0.1")
        try c.session.write(bytes("hello"))
        var rng = TestRNG(seed: 3)
        try pump(c, s, maxChunk: 1, rng: &rng)
        #expect(c.session.handshakeComplete && s.session.handshakeComplete)
        #expect(s.received == bytes("hello"))
        #expect(s.session.serverName == nil)  // an IP address is not sent as SNI
    }

    @Test func tls12Works() throws {
        let client = try clientContext()
        #expect(SSL_CTX_ctrl(client.ctx, SSL_CTRL_SET_MAX_PROTO_VERSION, Int(TLS1_2_VERSION), nil) == 1)
        let (c, s) = try pair(try serverContext(), client, name: "localhost")
        try c.session.write(bytes("over 1.2"))
        try pump(c, s)
        #expect(c.session.protocolVersion == "TLSv1.2" && s.session.protocolVersion == "TLSv1.2")
        #expect(s.received == bytes("over 1.2"))
        try s.session.shutdown()
        try pump(c, s)
        #expect(c.sawClose)
    }

    @Test func hostnameMismatchIsRejectedWithAClearMessage() throws {
        let (ce, se) = try failingHandshake(try serverContext(cert: TestPKI.shared.wrongCert, key: TestPKI.shared.wrongKey),
                                            try clientContext(), name: "localhost")
        let m = try #require(ce).message
        #expect(m.contains("certificate verify failed: hostname mismatch"), "\(m)")
        #expect(m.contains("'localhost'"), "\(m)")
        // The client's alert reaches the server.
        let sm = try #require(se).message
        #expect(sm.contains("alert from the peer: sslv3 alert bad certificate"), "\(sm)")
    }

    @Test func ipAddressMismatchIsRejected() throws {
        let (ce, _) = try failingHandshake(try serverContext(), try clientContext(), name: "127.0.0.2")
        let m = try #require(ce).message
        #expect(m.contains("certificate verify failed: IP address mismatch"), "\(m)")
    }

    @Test func wildcardsMatchOneWholeLabel() throws {
        let server = try serverContext(cert: TestPKI.shared.wrongCert, key: TestPKI.shared.wrongKey)
        let (c, s) = try pair(server, try clientContext(), name: "a.wild.test")
        try pump(c, s)
        #expect(c.session.state == .established)
        for bad in ["wild.test", "a.b.wild.test"] {
            let (ce, _) = try failingHandshake(server, try clientContext(), name: bad)
            #expect(ce?.message.contains("hostname mismatch") == true, "\(bad): \(String(describing: ce))")
        }
    }

    @Test func unknownCAIsRejected() throws {
        // Self-signed.
        let (ce, se) = try failingHandshake(try serverContext(cert: TestPKI.shared.selfSignedCert, key: TestPKI.shared.selfSignedKey),
                                            try clientContext(), name: "localhost")
        let m = try #require(ce).message
        #expect(m.contains("certificate verify failed: self-signed certificate"), "\(m)")
        #expect(se?.message.contains("unknown ca") == true, "\(String(describing: se))")
        // Signed by a CA the client does not trust (only another CA, or only the system store).
        for client in [try TLSContext.client(caFile: TestPKI.shared.otherCA, useSystemStore: false),
                       try TLSContext.client(useSystemStore: true)] {
            let (ce2, _) = try failingHandshake(try serverContext(), client, name: "localhost")
            let m2 = try #require(ce2).message
            #expect(m2.contains("certificate verify failed: unable to get local issuer certificate"), "\(m2)")
        }
    }

    @Test func expiredCertificateIsRejected() throws {
        let (ce, _) = try failingHandshake(try serverContext(cert: TestPKI.shared.expiredCert, key: TestPKI.shared.expiredKey),
                                           try clientContext(), name: "localhost")
        let m = try #require(ce).message
        #expect(m.contains("certificate verify failed: certificate has expired"), "\(m)")
    }

    @Test func verifyPeerFalseAcceptsAnyCertificate() throws {
        let pki = TestPKI.shared
        let client = try TLSContext.client(caFile: nil, useSystemStore: false, verifyPeer: false)
        for (cert, key, name) in [(pki.selfSignedCert, pki.selfSignedKey, "localhost" as String?),
                                  (pki.expiredCert, pki.expiredKey, "localhost"),
                                  (pki.wrongCert, pki.wrongKey, "localhost"),
                                  (pki.serverCert, pki.serverKey, nil)] {
            let (c, s) = try pair(try serverContext(cert: cert, key: key), client, name: name)
            try c.session.write(bytes("ok"))
            try pump(c, s)
            #expect(c.session.state == .established && s.received == bytes("ok"))
            // A later failure is not blamed on the certificate the client chose to accept.
            try s.session.write(bytes("tampered"))
            var out = s.session.takeCiphertext()
            out[out.count - 1] ^= 0x40
            do {
                try c.session.feed(out)
                try c.drain()
                Issue.record("tampered record accepted")
            } catch let e as OrchestraError {
                #expect(e.message.contains("bad record mac") && !e.message.contains("certificate"), "\(e.message)")
            }
        }
    }

    @Test func closeNotifyFromTheClient() throws {
        let (c, s) = try pair(try serverContext(), try clientContext(), name: "localhost")
        try pump(c, s)
        try c.session.write(bytes("last words"))
        try c.session.shutdown()
        try c.session.shutdown()  // again: nothing more
        #expect(c.session.sentCloseNotify && c.session.state == .established)
        do { try c.session.write(bytes("more")); Issue.record("write after shutdown") } catch { #expect(error.code == .closed) }
        try pump(c, s)
        #expect(s.received == bytes("last words") && s.sawClose && s.session.receivedCloseNotify)
        // Half-closed: the server may still send, then closes too.
        try s.session.write(bytes("reply"))
        try s.session.shutdown()
        try pump(c, s)
        #expect(c.received == bytes("reply") && c.sawClose)
        #expect(c.session.state == .closed && s.session.state == .closed)
        // EOF after close_notify is a clean end.
        c.session.feedEOF()
        var buf = [UInt8](repeating: 0, count: 16)
        #expect(try buf.withUnsafeMutableBytes { try c.session.read(into: $0) } == .closed)
    }

    @Test func closeNotifyFromTheServerThenEOF() throws {
        let (c, s) = try pair(try serverContext(), try clientContext(), name: "localhost")
        try pump(c, s)
        try s.session.write(bytes("bye"))
        try s.session.shutdown()
        // The client gets the data, the close_notify, then TCP EOF: a clean close.
        try c.session.feed(s.session.takeCiphertext())
        c.session.feedEOF()
        try c.drain()
        #expect(c.received == bytes("bye") && c.sawClose && c.session.error == nil)
    }

    @Test func eofWithoutCloseNotifyIsTruncation() throws {
        let (c, s) = try pair(try serverContext(), try clientContext(), name: "localhost")
        try pump(c, s)
        try s.session.write(bytes("partial"))
        try c.session.feed(s.session.takeCiphertext())
        c.session.feedEOF()
        var buf = [UInt8](repeating: 0, count: 64)
        // The data that arrived is still delivered...
        #expect(try buf.withUnsafeMutableBytes { try c.session.read(into: $0) } == .bytes(7))
        // ...then the missing close_notify is an error.
        do {
            _ = try buf.withUnsafeMutableBytes { try c.session.read(into: $0) }
            Issue.record("truncation not reported")
        } catch let e as OrchestraError {
            #expect(e.code == .tls)
            #expect(e.message.contains("truncated") && e.message.contains("close_notify"), "\(e.message)")
        }
        #expect(c.session.state == .failed)
    }

    @Test func eofInTheMiddleOfARecordIsTruncation() throws {
        let (c, s) = try pair(try serverContext(), try clientContext(), name: "localhost")
        try pump(c, s)
        try s.session.write(pattern(1000, seed: 1))
        let out = s.session.takeCiphertext()
        try out[0..<500].withUnsafeBytes { try c.session.feed($0) }
        var buf = [UInt8](repeating: 0, count: 2000)
        #expect(try buf.withUnsafeMutableBytes { try c.session.read(into: $0) } == .needMore)
        c.session.feedEOF()
        do {
            _ = try buf.withUnsafeMutableBytes { try c.session.read(into: $0) }
            Issue.record("truncation not reported")
        } catch let e as OrchestraError {
            #expect(e.code == .tls && e.message.contains("truncated"), "\(e.message)")
        }
    }

    @Test func eofDuringTheHandshake() throws {
        let (c, s) = try pair(try serverContext(), try clientContext(), name: "localhost")
        try s.session.feed(c.session.takeCiphertext())
        c.session.feedEOF()
        var buf = [UInt8](repeating: 0, count: 64)
        do {
            _ = try buf.withUnsafeMutableBytes { try c.session.read(into: $0) }
            Issue.record("EOF in handshake not reported")
        } catch let e as OrchestraError {
            #expect(e.code == .tls && e.message.contains("during the handshake"), "\(e.message)")
        }
    }

    @Test func corruptedCiphertextIsAnErrorNotACrash() throws {
        let (c, s) = try pair(try serverContext(), try clientContext(), name: "localhost")
        try pump(c, s)
        try c.session.write(pattern(5000, seed: 9))
        var out = c.session.takeCiphertext()
        out[out.count / 2] ^= 0x01
        do {
            try s.session.feed(out)
            try s.drain()
            Issue.record("a corrupted record was accepted")
        } catch let e as OrchestraError {
            #expect(e.code == .tls)
            #expect(e.message.contains("bad record mac") || e.message.contains("decryption failed"), "\(e.message)")
        }
        #expect(s.received.isEmpty)  // nothing of the forged record reaches the application
        #expect(s.session.state == .failed)
        #expect(s.session.pendingCiphertextCount > 0)  // the alert for the client
        // Sticky: every later call reports the same error.
        do { try s.session.write(bytes("x")); Issue.record("write on a failed session") } catch {
            #expect(error == s.session.error)
        }
        // The alert reaches the client as an error.
        try? c.session.feed(s.session.takeCiphertext())
        #expect(throws: OrchestraError.self) { try c.drain() }
    }

    @Test func plainHTTPToAServerIsAClearError() throws {
        let s = try TLSSession(context: try serverContext())
        do {
            try s.feed(bytes("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"))
            Issue.record("plain HTTP accepted")
        } catch {
            #expect(error.code == .tls)
            #expect(error.message.contains("http request") && error.message.contains("plain HTTP"), "\(error.message)")
        }
        let s2 = try TLSSession(context: try serverContext())
        do {
            try s2.feed([0x42, 0x55] + pattern(298, seed: 5).map { $0 & 0x7F })
            Issue.record("garbage accepted")
        } catch {
            #expect(error.code == .tls, "\(error)")
        }
    }

    @Test func serverGarbageToAClientIsAClearError() throws {
        let c = try TLSSession(context: try clientContext(), serverName: "localhost")
        _ = c.takeCiphertext()
        do {
            try c.feed(bytes("HTTP/1.1 400 Bad Request\r\n\r\n"))
            Issue.record("plain HTTP accepted by the client")
        } catch {
            #expect(error.code == .tls && error.message.contains("wrong version number"), "\(error.message)")
        }
    }

    @Test func clientCertificates() throws {
        let pki = TestPKI.shared
        let server = try TLSContext.server(certFile: pki.serverCert, keyFile: pki.serverKey,
                                           clientCAFile: pki.ca, requireClientCertificate: true)
        // With a certificate from the CA: accepted, and the server saw it.
        let withCert = try TLSContext.client(caFile: pki.ca, useSystemStore: false,
                                             certFile: pki.clientCert, keyFile: pki.clientKey)
        let (c, s) = try pair(server, withCert, name: "localhost")
        try c.session.write(bytes("mtls"))
        try pump(c, s)
        #expect(s.received == bytes("mtls") && s.session.peerPresentedCertificate)
        // Without one: the server refuses.
        let (_, se) = try failingHandshake(server, try clientContext(), name: "localhost")
        #expect(se?.message.contains("peer did not return a certificate") == true, "\(String(describing: se))")
        // With a self-signed one: the server refuses it as unknown.
        let selfSigned = try TLSContext.client(caFile: pki.ca, useSystemStore: false,
                                               certFile: pki.selfSignedCert, keyFile: pki.selfSignedKey)
        let (_, se2) = try failingHandshake(server, selfSigned, name: "localhost")
        #expect(se2?.message.contains("certificate verify failed") == true, "\(String(describing: se2))")
    }

    @Test func shutdownBeforeTheHandshakeCompletes() throws {
        // With data waiting: it is sent, then close_notify, once the handshake completes.
        let (c, s) = try pair(try serverContext(), try clientContext(), name: "localhost")
        try c.session.write(bytes("early"))
        try c.session.shutdown()
        #expect(c.session.state == .handshaking)
        try pump(c, s)
        #expect(s.received == bytes("early") && s.sawClose)
        // Without data: closed at once.
        let c2 = try TLSSession(context: try clientContext(), serverName: "localhost")
        try c2.shutdown()
        #expect(c2.state == .closed && !c2.sentCloseNotify)
        do { try c2.feed(bytes("x")); Issue.record("feed after an early shutdown") } catch { #expect(error.code == .closed) }
    }

    @Test func contextErrorsAreClear() throws {
        let pki = TestPKI.shared
        func expectError(_ code: ErrorCode, _ part: String, _ body: () throws -> TLSContext) {
            do {
                _ = try body()
                Issue.record("expected \(code.name) containing '\(part)'")
            } catch let error as OrchestraError {
                #expect(error.code == code && error.message.contains(part), "\(error)")
            } catch {
                Issue.record("not an OrchestraError: \(error)")
            }
        }
        expectError(.io, "No such file or directory") {
            try TLSContext.server(certFile: "\(pki.dir)/missing.pem", keyFile: pki.serverKey)
        }
        expectError(.io, "private key file") {
            try TLSContext.server(certFile: pki.serverCert, keyFile: "\(pki.dir)/missing.key")
        }
        let junk = "\(pki.dir)/junk.pem"
        writeFile(junk, "this is not PEM\n")
        expectError(.tls, "is not a PEM certificate chain") { try TLSContext.server(certFile: junk, keyFile: pki.serverKey) }
        expectError(.tls, "not an unencrypted PEM private key") { try TLSContext.server(certFile: pki.serverCert, keyFile: junk) }
        expectError(.tls, "does not match certificate") { try TLSContext.server(certFile: pki.serverCert, keyFile: pki.wrongKey) }
        expectError(.tls, "holds no PEM certificate") { try TLSContext.client(caFile: junk, useSystemStore: false) }
        expectError(.io, "CA file") { try TLSContext.client(caFile: "\(pki.dir)/nope.pem", useSystemStore: false) }
        expectError(.invalidArgument, "caFile or useSystemStore") { try TLSContext.client(caFile: nil, useSystemStore: false) }
        expectError(.invalidArgument, "needs clientCAFile") {
            try TLSContext.server(certFile: pki.serverCert, keyFile: pki.serverKey, requireClientCertificate: true)
        }
        // An encrypted key is refused instead of prompting on the terminal.
        let encrypted = "\(pki.dir)/encrypted.key"
        #expect(system("openssl pkey -in '\(pki.serverKey)' -aes256 -passout pass:secret -out '\(encrypted)' 2>/dev/null") == 0)
        expectError(.tls, "not an unencrypted PEM private key") { try TLSContext.server(certFile: pki.serverCert, keyFile: encrypted) }

        // Sessions.
        do { _ = try TLSSession(context: try clientContext()); Issue.record("verifying client without a name") } catch {
            #expect(error.code == .invalidArgument && error.message.contains("serverName"))
        }
        do { _ = try TLSSession(context: try serverContext(), serverName: "x"); Issue.record("server with a name") } catch {
            #expect(error.code == .invalidArgument)
        }
        var empty: [UInt8] = []
        let c = try TLSSession(context: try clientContext(), serverName: "localhost")
        do { _ = try empty.withUnsafeMutableBytes { try c.read(into: $0) }; Issue.record("empty read buffer") } catch let e as OrchestraError {
            #expect(e.code == .invalidArgument)
        }
        c.feedEOF()
        do { try c.feed(bytes("x")); Issue.record("feed after EOF") } catch { #expect(error.code == .state) }
    }

    @Test func bracketedIPv6NamesAndReadAvailable() throws {
        // verifyPeer false: the certificate has no ::1 entry; the name must still be accepted.
        let client = try TLSContext.client(caFile: nil, useSystemStore: false, verifyPeer: false)
        let (c, s) = try pair(try serverContext(), client, name: "[::1]")
        try pump(c, s)
        #expect(s.session.serverName == nil)
        try s.session.write(pattern(50_000, seed: 2))
        try c.session.feed(s.session.takeCiphertext())
        var scratch = [UInt8](repeating: 0, count: 8192)
        var got: [UInt8] = []
        let r = try scratch.withUnsafeMutableBytes { buf in
            try c.session.readAvailable(scratch: buf) { chunk in got += chunk }
        }
        #expect(r == .needMore && got == pattern(50_000, seed: 2))
    }
}
