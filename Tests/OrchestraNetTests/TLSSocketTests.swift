import Glibc
import OrchestraCore
@testable import OrchestraNet
import Testing

// TLSSession over real TCP sockets on 127.0.0.1 against Python's `ssl` module (another TLS
// driver: its own socket BIOs, its own close_notify handling), in both roles. The sockets are
// blocking, with a receive timeout as a safety net so a broken peer fails the test instead of
// hanging it.

private let pythonServer = #"""
import socket, ssl, sys
cert, key = sys.argv[1], sys.argv[2]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
seen = []
ctx.sni_callback = lambda sock, name, c: seen.append(name)
ls = socket.socket()
ls.bind(("127.0.0.1", 0))
ls.listen(1)
print(ls.getsockname()[1], flush=True)
conn, _ = ls.accept()
conn.settimeout(20)
s = ctx.wrap_socket(conn, server_side=True)
head = b""
while len(head) < 4:
    head += s.recv(4 - len(head))
n = int.from_bytes(head, "big")
body = bytearray()
while len(body) < n:
    chunk = s.recv(65536)
    if not chunk:
        sys.exit("eof before the whole message")
    body += chunk
s.sendall(head + bytes(b ^ 0xFF for b in body))
s = s.unwrap()   # sends close_notify, waits for the client's
s.close()
print("sni", seen[0] if seen else None, flush=True)
print("done", flush=True)
"""#

private let pythonClient = #"""
import socket, ssl, sys
port, ca = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=ca)
with socket.create_connection(("127.0.0.1", port), timeout=20) as raw:
    with ctx.wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(b"ping from python")
        got = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break   # the server's close_notify
            got += chunk
        print("got", got.decode(), flush=True)
        print("version", s.version(), flush=True)
        s.unwrap()
print("done", flush=True)
"""#

/// A blocking TCP socket with a receive timeout.
private struct Socket {
    let fd: Int32

    static func connect(port: UInt16) throws -> Socket {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #expect(fd >= 0)
        var addr = loopback(port)
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if rc != 0 { throw OrchestraError(.io, "connect: errno \(errno)") }
        let s = Socket(fd: fd)
        s.setTimeout()
        return s
    }

    static func loopback(_ port: UInt16) -> sockaddr_in {
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        addr.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        return addr
    }

    func setTimeout() {
        var tv = timeval(tv_sec: 20, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    func send(_ bytes: [UInt8]) throws {
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + off, bytes.count - off, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { throw OrchestraError(.io, "send: errno \(errno)") }
            off += n
        }
    }

    /// Some bytes, or [] at EOF.
    func receive() throws -> [UInt8] {
        var buf = [UInt8](repeating: 0, count: 65536)
        let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n < 0 { throw OrchestraError(.io, "recv: errno \(errno)") }
        return Array(buf[0..<n])
    }

    func close() { _ = Glibc.close(fd) }
}

/// Sends whatever the session has queued.
private func flush(_ t: TLSSession, _ s: Socket) throws {
    let out = t.takeCiphertext()
    if !out.isEmpty { try s.send(out) }
}

/// Runs `command`, writing its script to a file first; returns the pipe to its stdout.
private func spawnPython(_ script: String, _ args: [String]) -> UnsafeMutablePointer<FILE> {
    let path = "\(TestPKI.shared.dir)/peer-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).py"
    let f = fopen(path, "w")!
    fputs(script, f)
    fclose(f)
    let cmd = (["python3", path] + args).map { "'\($0)'" }.joined(separator: " ")
    return popen(cmd, "r")!
}

private func readLine(_ f: UnsafeMutablePointer<FILE>) -> String? {
    var buf = [CChar](repeating: 0, count: 4096)
    guard fgets(&buf, Int32(buf.count), f) != nil else { return nil }
    let s = String(cString: buf)
    return s.hasSuffix("\n") ? String(s.dropLast()) : s
}

@Suite struct TLSSocketTests {
    @Test func clientAgainstPythonServer() throws {
        let pki = TestPKI.shared
        let py = spawnPython(pythonServer, [pki.serverCert, pki.serverKey])
        let port = try #require(readLine(py).flatMap { UInt16($0) })
        let sock = try Socket.connect(port: port)
        defer { sock.close() }
        let tls = try TLSSession(context: try clientContext(), serverName: "localhost")
        try flush(tls, sock)  // ClientHello
        // A 1 MiB message with a length prefix, written before the handshake completes.
        let body = pattern(1 << 20, seed: 11)
        let n = UInt32(body.count)
        try tls.write([UInt8(n >> 24), UInt8(n >> 16 & 0xFF), UInt8(n >> 8 & 0xFF), UInt8(n & 0xFF)] + body)
        var received: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 16384)
        var closed = false
        while !closed {
            let chunk = try sock.receive()
            if chunk.isEmpty {
                tls.feedEOF()
            } else {
                try tls.feed(chunk)
            }
            loop: while true {
                switch try buf.withUnsafeMutableBytes({ try tls.read(into: $0) }) {
                case .bytes(let k): received += buf[0..<k]
                case .needMore: break loop
                case .closed: closed = true; break loop
                }
            }
            try flush(tls, sock)  // handshake messages, then the pending message
            if chunk.isEmpty && !closed { Issue.record("EOF before close_notify"); break }
        }
        #expect(tls.protocolVersion == "TLSv1.3")
        #expect(received.count == 4 + body.count)
        #expect(Array(received.dropFirst(4)) == body.map { $0 ^ 0xFF })
        try tls.shutdown()
        try flush(tls, sock)
        #expect(tls.state == .closed)
        var lines: [String] = []
        while let l = readLine(py) { lines.append(l) }
        #expect(pclose(py) == 0)
        #expect(lines == ["sni localhost", "done"])
    }

    @Test func serverAgainstPythonClient() throws {
        let pki = TestPKI.shared
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { _ = close(listener) }
        var addr = Socket.loopback(0)
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        try withUnsafeMutablePointer(to: &addr) { p in
            try p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                if bind(listener, sa, len) != 0 || listen(listener, 1) != 0 || getsockname(listener, sa, &len) != 0 {
                    throw OrchestraError(.io, "bind/listen: errno \(errno)")
                }
            }
        }
        let port = UInt16(bigEndian: addr.sin_port)
        let py = spawnPython(pythonClient, [String(port), pki.ca])
        let fd = accept(listener, nil, nil)
        #expect(fd >= 0)
        let sock = Socket(fd: fd)
        sock.setTimeout()
        defer { sock.close() }
        let tls = try TLSSession(context: try serverContext())
        var received: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        var replied = false
        var peerClosed = false
        while !peerClosed {
            let chunk = try sock.receive()
            if chunk.isEmpty { tls.feedEOF() } else { try tls.feed(chunk) }
            loop: while true {
                switch try buf.withUnsafeMutableBytes({ try tls.read(into: $0) }) {
                case .bytes(let k): received += buf[0..<k]
                case .needMore: break loop
                case .closed: peerClosed = true; break loop
                }
            }
            if !replied && received == bytes("ping from python") {
                try tls.write(bytes("pong from swift"))
                try tls.shutdown()  // close_notify: python's recv returns b"" and it unwraps
                replied = true
            }
            try flush(tls, sock)
            if chunk.isEmpty && !peerClosed { Issue.record("EOF before close_notify"); break }
        }
        #expect(tls.serverName == "localhost")
        #expect(tls.state == .closed)
        var lines: [String] = []
        while let l = readLine(py) { lines.append(l) }
        #expect(pclose(py) == 0)
        #expect(lines == ["got pong from swift", "version TLSv1.3", "done"])
    }
}
