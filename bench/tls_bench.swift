// tls_bench: TLSSession (OrchestraNet, sans-I/O over memory BIOs) in memory, beside raw OpenSSL
// in the same process: the same SSL_CTX settings driven directly over a BIO pair (the cheapest
// in-memory transport OpenSSL has: no copies outside OpenSSL). Not part of bench/run yet (the
// end-to-end benchmarks compare whole servers); it shows what the wrapper costs.
//
//   build/tls_bench [MiB=256] [WRITE=16384] [HANDSHAKES=500]
//
// bulk: client writes of WRITE bytes, each moved to the server and read there into a 16 KiB
// buffer (ours: write, takeCiphertext, feed, read; raw: SSL_write, SSL_read over the pair);
// handshakes: a client and a server session made and taken through a full TLS 1.3 handshake
// (ECDHE X25519, ECDSA P-256 certificate, chain verified by the client).
// The certificates are made with the `openssl` command in a temporary directory.
import CSSL
import Glibc
import OrchestraCore
import OrchestraNet

let args = CommandLine.arguments
let mib = args.count > 1 ? Int(args[1]) ?? 256 : 256
let writeSize = args.count > 2 ? Int(args[2]) ?? 16384 : 16384
let handshakes = args.count > 3 ? Int(args[3]) ?? 500 : 500

// --- certificates ---
var template = Array("/tmp/orc-tls-bench-XXXXXX".utf8CString)
guard let dirp = mkdtemp(&template) else { fatalError("mkdtemp") }
let dir = String(cString: dirp)
let script = """
set -e; cd '\(dir)'
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca.key
openssl req -x509 -new -key ca.key -out ca.pem -days 2 -subj /CN=bench-ca -addext basicConstraints=critical,CA:TRUE
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out server.key
openssl req -new -key server.key -out server.csr -subj /CN=localhost
printf 'subjectAltName=DNS:localhost\\n' > ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile ext -out server.pem
"""
guard system("(\(script)) >/dev/null 2>&1") == 0 else { fatalError("openssl failed making certificates in \(dir)") }
defer { _ = system("rm -rf '\(dir)'") }

func now() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
}

// --- ours ---
let serverContext = try TLSContext.server(certFile: "\(dir)/server.pem", keyFile: "\(dir)/server.key")
let clientContext = try TLSContext.client(caFile: "\(dir)/ca.pem", useSystemStore: false)
let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 16384, alignment: 16)

func pump(_ a: TLSSession, _ b: TLSSession) throws(OrchestraError) -> Int {
    var got = 0
    func move(_ from: TLSSession, _ to: TLSSession) throws(OrchestraError) -> Bool {
        let out = from.takeCiphertext()
        if out.isEmpty { return false }
        try to.feed(out)
        let r = try to.readAvailable(scratch: scratch) { (chunk) throws(OrchestraError) in got += chunk.count }
        precondition(r == .needMore)
        return true
    }
    while true {
        let ab = try move(a, b)
        let ba = try move(b, a)
        if !ab && !ba { return got }
    }
}

func oursHandshakes(_ n: Int) throws(OrchestraError) -> Double {
    let t0 = now()
    for _ in 0..<n {
        let c = try TLSSession(context: clientContext, serverName: "localhost")
        let s = try TLSSession(context: serverContext)
        _ = try pump(c, s)
        precondition(c.handshakeComplete && s.handshakeComplete)
    }
    return (now() - t0) / Double(n)
}

func oursBulk(_ bytes: Int) throws(OrchestraError) -> Double {
    let c = try TLSSession(context: clientContext, serverName: "localhost")
    let s = try TLSSession(context: serverContext)
    _ = try pump(c, s)
    let payload = [UInt8](repeating: 0x61, count: writeSize)
    var received = 0
    let t0 = now()
    var sent = 0
    while sent < bytes {
        try c.write(payload)
        sent += payload.count
        received += try pump(c, s)
    }
    let dt = now() - t0
    precondition(received == sent)
    return Double(sent) / dt / 1e6
}

// --- raw OpenSSL over a BIO pair, same settings ---
func rawContext(server: Bool) -> OpaquePointer {
    let ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method())!
    precondition(orc_ssl_ctx_set_min_proto_version(ctx, TLS1_2_VERSION) == 1)
    _ = orc_ssl_ctx_set_default_options(ctx)
    if server {
        precondition(SSL_CTX_use_certificate_chain_file(ctx, "\(dir)/server.pem") == 1)
        precondition(SSL_CTX_use_PrivateKey_file(ctx, "\(dir)/server.key", SSL_FILETYPE_PEM) == 1)
    } else {
        precondition(SSL_CTX_load_verify_locations(ctx, "\(dir)/ca.pem", nil) == 1)
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nil)
    }
    return ctx
}
let rawServerCtx = rawContext(server: true)
let rawClientCtx = rawContext(server: false)

/// A connected pair of SSL objects over one BIO pair (each side's writes are the other's reads).
func rawPair() -> (OpaquePointer, OpaquePointer) {
    let c = SSL_new(rawClientCtx)!, s = SSL_new(rawServerCtx)!
    var b1: OpaquePointer? = nil, b2: OpaquePointer? = nil
    precondition(BIO_new_bio_pair(&b1, 1 << 20, &b2, 1 << 20) == 1)
    SSL_set_bio(c, b1, b1)
    SSL_set_bio(s, b2, b2)
    SSL_set_connect_state(c)
    SSL_set_accept_state(s)
    precondition(SSL_set1_host(c, "localhost") == 1 && orc_ssl_set_tlsext_host_name(c, "localhost") == 1)
    return (c, s)
}

func rawHandshake(_ c: OpaquePointer, _ s: OpaquePointer) {
    var cDone = false, sDone = false
    while !(cDone && sDone) {
        if !cDone { cDone = SSL_do_handshake(c) == 1 }
        if !sDone { sDone = SSL_do_handshake(s) == 1 }
    }
    // The client reads the server's session tickets, as ours does inside pump.
    _ = SSL_read(c, scratch.baseAddress, Int32(scratch.count))
}

func rawHandshakes(_ n: Int) -> Double {
    let t0 = now()
    for _ in 0..<n {
        let (c, s) = rawPair()
        rawHandshake(c, s)
        SSL_free(c)
        SSL_free(s)
    }
    return (now() - t0) / Double(n)
}

func rawBulk(_ bytes: Int) -> Double {
    let (c, s) = rawPair()
    rawHandshake(c, s)
    let payload = [UInt8](repeating: 0x61, count: writeSize)
    var received = 0, sent = 0
    let t0 = now()
    while sent < bytes {
        let w = payload.withUnsafeBytes { SSL_write(c, $0.baseAddress, Int32($0.count)) }
        precondition(w == Int32(writeSize))
        sent += writeSize
        while true {
            let r = SSL_read(s, scratch.baseAddress, Int32(scratch.count))
            if r <= 0 { break }
            received += Int(r)
        }
    }
    let dt = now() - t0
    precondition(received == sent)
    SSL_free(c)
    SSL_free(s)
    return Double(sent) / dt / 1e6
}

// Warm up both, then measure alternately.
_ = try oursBulk(4 << 20)
_ = rawBulk(4 << 20)
let bytes = mib << 20
let ob = try oursBulk(bytes), rb = rawBulk(bytes)
let oh = try oursHandshakes(handshakes), rh = rawHandshakes(handshakes)
func fmt(_ v: Double) -> String { String(Int(v.rounded())) }
print("bulk \(mib) MiB in writes of \(writeSize) B: ours \(fmt(ob)) MB/s, raw OpenSSL BIO pair \(fmt(rb)) MB/s, ratio \(String(Int(ob / rb * 100)))%")
print("handshake (client+server, TLS 1.3): ours \(fmt(oh * 1e6)) us, raw \(fmt(rh * 1e6)) us, ratio \(String(Int(rh / oh * 100)))%")
SSL_CTX_free(rawServerCtx)
SSL_CTX_free(rawClientCtx)
