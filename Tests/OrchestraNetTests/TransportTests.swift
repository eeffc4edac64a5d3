import Glibc
import OrchestraCore
@testable import OrchestraNet
import Synchronization
import Testing
import OrchestraTestSupport

/// Events seen on the I/O thread, behind a pthread mutex (visible to TSan).
private final class Events: @unchecked Sendable {
    private let lock = PthreadMutex()
    private var items: [String] = []
    private var messages: [(Opcode, [UInt8])] = []
    func add(_ s: String) { lock.withLock { items.append(s) } }
    func addMessage(_ op: Opcode, _ b: [UInt8]) { lock.withLock { messages.append((op, b)) } }
    var all: [String] { lock.withLock { items } }
    var received: [(Opcode, [UInt8])] { lock.withLock { messages } }
    func has(_ prefix: String) -> Bool { all.contains { $0.hasPrefix(prefix) } }
}

/// Echoes every message; answers /health over plain HTTP; refuses upgrades with ?deny.
private final class EchoServer: ServerHandler, @unchecked Sendable {
    let events = Events()
    func didOpen(_ c: Connection) { events.add("open \(c.path) \(c.subprotocol ?? "-") deflate=\(c.deflate != nil)") }
    func didReceive(_ c: Connection, opcode: Opcode, bytes: UnsafeRawBufferPointer) {
        _ = try? c.send(opcode, bytes)
    }
    func didClose(_ c: Connection, code: UInt16, reason: String, clean: Bool) {
        events.add("close \(code) clean=\(clean) \(reason)")
    }
    func shouldAccept(_ r: HTTPRequestInfo) -> HTTPResponse? {
        if r.query == "deny" { return HTTPResponse(status: 401, body: Array("no token\n".utf8)) }
        return nil
    }
    func handleHTTP(_ r: HTTPRequestInfo) -> HTTPResponse? {
        if r.path == "/echo" { return HTTPResponse(status: 200, headers: [HTTPField("X-Method", r.method)], body: r.body) }
        return r.path == "/health" ? HTTPResponse(status: 200, headers: [HTTPField("Content-Type", "text/plain")], body: Array("ok\n".utf8)) : nil
    }
}

private final class Recorder: ClientHandler, @unchecked Sendable {
    let events = Events()
    func didOpen(_ c: Connection) { events.add("open") }
    func didReceive(_ c: Connection, opcode: Opcode, bytes: UnsafeRawBufferPointer) { events.addMessage(opcode, Array(bytes)) }
    func didClose(_ c: Connection, code: UInt16, reason: String, clean: Bool) { events.add("close \(code) clean=\(clean)") }
    func stateChanged(_ client: Client, _ state: ClientState, reason: String) { events.add("state \(state) \(reason)") }
}

/// A blocking TCP socket to 127.0.0.1:port for raw protocol tests.
private struct RawSocket {
    let fd: Int32
    init(port: UInt16) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = port.bigEndian
        a.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        if rc != 0 { throw OrchestraError(.io, "connect failed") }
        var tv = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }
    func write(_ s: String) { write(Array(s.utf8)) }
    func write(_ b: [UInt8]) { _ = b.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } }
    /// Reads until the peer closes (or the timeout).
    func readAll() -> [UInt8] {
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { return out }
            out += buf[0..<n]
        }
    }
    func read(atLeast count: Int) -> [UInt8] {
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while out.count < count {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { break }
            out += buf[0..<n]
        }
        return out
    }
    func close() { Glibc.close(fd) }
}

private let upgradeRequest = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"

@Suite(.serialized) struct TransportTests {
    private func startServer(_ rt: Runtime, _ h: EchoServer, _ configure: (inout ServerOptions) -> Void = { _ in }) throws -> Server {
        var o = ServerOptions()
        configure(&o)
        let s = try Server(runtime: rt, options: o, handler: h)
        try s.start()
        return s
    }

    @Test(arguments: [false, true]) func clientAndServerEchoEverySize(deflate: Bool) throws {
        let rt = try Runtime(name: "echo")
        defer { rt.shutdown() }
        let sh = EchoServer()
        let server = try startServer(rt, sh) { if deflate { $0.websocket.perMessageDeflate = .init() } }
        var co = ClientOptions()
        if deflate { co.websocket.perMessageDeflate = .init() }
        let rec = Recorder()
        let client = try Client(runtime: rt, url: "ws://127.0.0.1:\(server.port)/chat?x=1", options: co, handler: rec)
        try client.connect()
        #expect(eventually { client.state == .open })
        #expect(sh.events.has("open /chat - deflate=\(deflate)"))
        var sent: [(Opcode, [UInt8])] = []
        for (i, size) in [0, 1, 125, 126, 65535, 65536, 1 << 20].enumerated() {
            let bytes = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ i) }
            sent.append((.binary, bytes))
            _ = try bytes.withUnsafeBytes { try client.send(.binary, $0) }
            let text = Array(String(repeating: "héllo wörld ✓ ", count: size / 16 + 1).utf8)
            sent.append((.text, text))
            _ = try text.withUnsafeBytes { try client.send(.text, $0) }
        }
        // Up to 2 MiB each way through deflate: under ThreadSanitizer on a busy 2-core machine
        // this has taken more than 10 s, so the hang guard is a minute.
        #expect(eventually(60) { rec.events.received.count == sent.count })
        let got = rec.events.received
        #expect(got.count == sent.count)
        for (a, b) in zip(got, sent) {
            #expect(a.0 == b.0)
            #expect(a.1 == b.1)
        }
        try client.close(code: 1000, reason: "bye")
        #expect(eventually { client.state == .closed })
        #expect(eventually { sh.events.has("close 1000 clean=true bye") })
        #expect(rec.events.has("close 1000 clean=true"))
        #expect(client.stats.messagesIn == 0)   // no connection is open any more
    }

    @Test func plainHTTPAndRefusals() throws {
        let rt = try Runtime()
        defer { rt.shutdown() }
        let sh = EchoServer()
        let server = try startServer(rt, sh) { $0.paths = ["/ws"] }
        var s = try RawSocket(port: server.port)
        s.write("GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        var r = String(decoding: s.readAll(), as: UTF8.self)
        #expect(r.hasPrefix("HTTP/1.1 200 "))
        #expect(r.hasSuffix("\r\n\r\nok\n"))
        s.close()
        s = try RawSocket(port: server.port)
        s.write("GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(String(decoding: s.readAll(), as: UTF8.self).hasPrefix("HTTP/1.1 404 "))
        s.close()
        s = try RawSocket(port: server.port)
        s.write(upgradeRequest.replacing("Version: 13", with: "Version: 8"))
        r = String(decoding: s.readAll(), as: UTF8.self)
        #expect(r.hasPrefix("HTTP/1.1 426 "))
        #expect(r.contains("Sec-WebSocket-Version: 13\r\n"))
        s.close()
        s = try RawSocket(port: server.port)
        s.write(upgradeRequest.replacing("GET /ws", with: "GET /ws?deny"))
        #expect(String(decoding: s.readAll(), as: UTF8.self).hasPrefix("HTTP/1.1 401 "))
        s.close()
        s = try RawSocket(port: server.port)
        s.write("GARBAGE\r\n\r\n")
        #expect(String(decoding: s.readAll(), as: UTF8.self).hasPrefix("HTTP/1.1 400 "))
        s.close()
        #expect(server.connectionCount == 0)
    }

    @Test func plainRequestBodiesAreReadWithinTheLimit() throws {
        let rt = try Runtime()
        defer { rt.shutdown() }
        let sh = EchoServer()
        let server = try startServer(rt, sh) { $0.paths = ["/ws"]; $0.maxRequestBody = 64 }
        let body = "{\"user\":\"alice\",\"password\":\"p w\"}"
        // In one write, and split across writes (head, part of the body, the rest).
        for pieces in [[0], [10], [1, 5, 7]] {
            let s = try RawSocket(port: server.port)
            let head = "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: \(body.utf8.count)\r\n\r\n"
            if pieces == [0] {
                s.write(head + body)
            } else {
                s.write(head)
                var rest = Array(body.utf8)[...]
                for n in pieces { s.write(Array(rest.prefix(n))); rest = rest.dropFirst(n); usleep(20_000) }
                s.write(Array(rest))
            }
            let r = String(decoding: s.readAll(), as: UTF8.self)
            #expect(r.hasPrefix("HTTP/1.1 200 "), "\(pieces): \(r)")
            #expect(r.contains("X-Method: POST\r\n"))
            #expect(r.hasSuffix("\r\n\r\n" + body), "\(pieces): \(r)")
            s.close()
        }
        // Over the limit: 413 without reading it; chunked: 400; both say why.
        var s = try RawSocket(port: server.port)
        s.write("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 65\r\n\r\n")
        var r = String(decoding: s.readAll(), as: UTF8.self)
        #expect(r.hasPrefix("HTTP/1.1 413 ") && r.contains("larger than 64 bytes"), "\(r)")
        s.close()
        s = try RawSocket(port: server.port)
        s.write("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
        r = String(decoding: s.readAll(), as: UTF8.self)
        #expect(r.hasPrefix("HTTP/1.1 400 ") && r.contains("chunked"), "\(r)")
        s.close()
        s = try RawSocket(port: server.port)
        s.write("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n")
        #expect(String(decoding: s.readAll(), as: UTF8.self).hasPrefix("HTTP/1.1 400 "))
        s.close()
        // A GET without a body is answered as before, and an upgrade still opens.
        s = try RawSocket(port: server.port)
        s.write("GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
        r = String(decoding: s.readAll(), as: UTF8.self)
        #expect(r.hasPrefix("HTTP/1.1 200 ") && r.hasSuffix("\r\n\r\n"))
        s.close()
        s = try RawSocket(port: server.port)
        s.write(upgradeRequest)
        #expect(String(decoding: s.read(atLeast: 12), as: UTF8.self).hasPrefix("HTTP/1.1 101 "))
        s.close()
        #expect(eventually { server.connectionCount == 0 })
    }

    @Test func protocolErrorClosesWith1002AndServerKeepsServing() throws {
        let rt = try Runtime()
        defer { rt.shutdown() }
        let sh = EchoServer()
        let server = try startServer(rt, sh)
        let s = try RawSocket(port: server.port)
        s.write(upgradeRequest)
        let head = s.read(atLeast: 1)
        #expect(String(decoding: head, as: UTF8.self).hasPrefix("HTTP/1.1 101 "))
        s.write([0x81, 0x05, 1, 2, 3, 4, 5])   // unmasked frame from a client
        let rest = s.readAll()
        #expect(rest.count >= 4)
        #expect(Array(rest.prefix(4)) == [0x88, rest[1], 0x03, 0xEA])   // close 1002
        s.close()
        #expect(eventually { sh.events.has("close 1002 clean=false") })
        // Still serving.
        let rec = Recorder()
        let client = try Client(runtime: rt, url: "ws://127.0.0.1:\(server.port)/", options: ClientOptions(), handler: rec)
        try client.connect()
        #expect(eventually { client.state == .open })
        try client.close()
    }

    @Test func deadPeerIsDetectedByHeartbeat() throws {
        let rt = try Runtime()
        defer { rt.shutdown() }
        let sh = EchoServer()
        let server = try startServer(rt, sh) { $0.websocket.pingIntervalMs = 50; $0.websocket.pongTimeoutMs = 100 }
        let s = try RawSocket(port: server.port)
        s.write(upgradeRequest)
        _ = s.read(atLeast: 1)
        // Never answer the pings.
        #expect(eventually { sh.events.has("close 1006 clean=false peer did not answer a ping") })
        s.close()
    }

    @Test func clientReconnectsAndFlushesItsOfflineBufferInOrder() throws {
        let rt = try Runtime()
        defer { rt.shutdown() }
        let sh = EchoServer()
        let server = try startServer(rt, sh)
        var co = ClientOptions()
        co.reconnect = true
        co.reconnectInitialDelayMs = 20
        co.reconnectMaxDelayMs = 100
        let rec = Recorder()
        let client = try Client(runtime: rt, url: "ws://127.0.0.1:\(server.port)/", options: co, handler: rec)
        // Sent before the first open: buffered, then flushed in order.
        for i in 0..<5 { _ = try [UInt8(i)].withUnsafeBytes { try client.send(.binary, $0) } }
        try client.connect()
        #expect(eventually { client.state == .open && rec.events.received.count == 5 })
        // The server drops every connection: the client reconnects.
        try rt.post { server.forEachConnection { try? $0.close(code: 1012, reason: "restart") } }
        #expect(eventually { rec.events.has("state reconnecting") })
        #expect(eventually { client.state == .open })
        for i in 5..<10 { _ = try [UInt8(i)].withUnsafeBytes { try client.send(.binary, $0) } }
        #expect(eventually { rec.events.received.count == 10 })
        #expect(rec.events.received.map { $0.1 } == (0..<10).map { [UInt8($0)] })
        #expect(client.reconnectCount >= 1)
        try client.close()
        #expect(eventually { client.state == .closed })
    }

    @Test func clientGivesUpAfterMaxAttempts() throws {
        let rt = try Runtime()
        defer { rt.shutdown() }
        // A port nobody listens on: bind one, read its number, close it.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len); return getsockname(fd, $0, &len) } }
        let port = UInt16(bigEndian: a.sin_port)
        Glibc.close(fd)
        var co = ClientOptions()
        co.reconnect = true
        co.reconnectInitialDelayMs = 5
        co.reconnectMaxDelayMs = 20
        co.reconnectMaxAttempts = 3
        let rec = Recorder()
        let client = try Client(runtime: rt, url: "ws://127.0.0.1:\(port)/", options: co, handler: rec)
        try client.connect()
        #expect(eventually { client.state == .closed })
        #expect(rec.events.all.filter { $0.hasPrefix("state reconnecting") }.count == 3)
        #expect(rec.events.has("state closed gave up after 3 reconnection attempts"))
        do { _ = try [UInt8(1)].withUnsafeBytes { try client.send(.binary, $0) }; Issue.record("send after closed") } catch {
            #expect((error as? OrchestraError)?.code == .closed)
        }
    }

    @Test func slowConsumerPolicies() throws {
        let rt = try Runtime()
        defer { rt.shutdown() }
        final class Pusher: ServerHandler, @unchecked Sendable {
            let events = Events()
            let status = Atomic<Int>(-1)
            func didOpen(_ c: Connection) {
                // Write until the buffer is full: the peer never reads.
                let chunk = [UInt8](repeating: 7, count: 64 * 1024)
                var sawHigh = false
                for _ in 0..<10_000 {
                    do {
                        let st = try chunk.withUnsafeBytes { try c.send(.binary, $0) }
                        if st == .aboveHighWatermark { sawHigh = true }
                    } catch let e as OrchestraError {
                        events.add("error \(e.code) high=\(sawHigh)")
                        return
                    } catch {
                        events.add("error other")
                        return
                    }
                }
                events.add("never full")
            }
            func didClose(_ c: Connection, code: UInt16, reason: String, clean: Bool) { events.add("close \(code)") }
        }
        for (policy, closes) in [(SlowConsumerPolicy.drop, false), (.close1013, true)] {
            let h = Pusher()
            var o = ServerOptions()
            o.websocket.highWatermark = 256 * 1024
            o.websocket.lowWatermark = 64 * 1024
            o.websocket.maxBuffered = 1 << 20
            o.websocket.slowConsumer = policy
            o.websocket.closeTimeoutMs = 200
            let server = try Server(runtime: rt, options: o, handler: h)
            try server.start()
            let s = try RawSocket(port: server.port)
            var rcv: Int32 = 4096
            setsockopt(s.fd, SOL_SOCKET, SO_RCVBUF, &rcv, socklen_t(4))
            s.write(upgradeRequest)
            #expect(eventually { h.events.has("error full high=true") })
            if closes {
                #expect(eventually { h.events.has("close 1013") })
            } else {
                usleep(300_000)
                #expect(!h.events.has("close"))
                #expect(server.connectionCount == 1)
            }
            s.close()
            try server.close()
        }
    }

    @Test func queueDeliveryHoldsReadingWhenFullAndLosesNothing() throws {
        let rt = try Runtime()
        defer { rt.shutdown() }
        // A tiny queue with the block policy: the I/O thread must neither block nor drop.
        let q = try MessageQueue(QueueOptions(capacity: 4, policy: .block, pushTimeoutMs: -1))
        let delivery = QueueDelivery(queue: q, events: true)
        let server = try Server(runtime: rt, options: ServerOptions(), handler: delivery)
        try server.start()
        let rec = Recorder()
        let client = try Client(runtime: rt, url: "ws://127.0.0.1:\(server.port)/", options: ClientOptions(), handler: rec)
        try client.connect()
        let n = 500
        for i in 0..<n {
            let b = Array("message \(i) ".utf8) + [UInt8](repeating: UInt8(i & 0xFF), count: i * 7 % 3000)
            _ = try b.withUnsafeBytes { try client.send(.binary, $0) }
        }
        var got: [[UInt8]] = []
        var types: [String] = []
        var conn: UInt64 = 0
        while got.count < n {
            let m = try q.pop(timeoutMs: 10_000)
            types.append(m.type)
            if m.type == "ws.message" { got.append(m.payload ?? []); conn = m.connectionId }
            if got.count % 50 == 0 { usleep(2000) }   // a slow consumer
        }
        #expect(types.first == "ws.open")
        #expect(conn != 0)
        for (i, b) in got.enumerated() {
            #expect(b == Array("message \(i) ".utf8) + [UInt8](repeating: UInt8(i & 0xFF), count: i * 7 % 3000))
        }
        // Replies by id reach the client.
        let c = try #require(server.connection(id: conn))
        _ = try [UInt8(9)].withUnsafeBytes { try c.send(.binary, $0) }
        #expect(eventually { rec.events.received.count == 1 })
        try client.close()
        let closeEvent = try q.pop(timeoutMs: 10_000)
        #expect(closeEvent.type == "ws.close")
        #expect(String(decoding: closeEvent.payload ?? [], as: UTF8.self) == "{\"code\":1000,\"reason\":\"\",\"clean\":true}")
    }

    @Test(arguments: [false, true]) func wssEchoWithDeflate(deflate: Bool) throws {
        let rt = try Runtime()
        defer { rt.shutdown() }
        let sh = EchoServer()
        let server = try startServer(rt, sh) {
            $0.tls = try? serverContext()
            if deflate { $0.websocket.perMessageDeflate = .init() }
        }
        var co = ClientOptions()
        co.tls = try clientContext()
        if deflate { co.websocket.perMessageDeflate = .init() }
        let rec = Recorder()
        let client = try Client(runtime: rt, url: "wss://localhost:\(server.port)/secure", options: co, handler: rec)
        try client.connect()
        #expect(eventually { client.state == .open })
        let big = (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        for m in [Array("hello over TLS".utf8), big, []] {
            _ = try m.withUnsafeBytes { try client.send(.binary, $0) }
        }
        #expect(eventually { rec.events.received.count == 3 })
        #expect(rec.events.received.map { $0.1 } == [Array("hello over TLS".utf8), big, []])
        try client.close()
        #expect(eventually { client.state == .closed })
        #expect(eventually { sh.events.has("close 1000 clean=true") })
    }

    @Test func wssRejectsAnUntrustedServerWithTheReason() throws {
        let rt = try Runtime()
        defer { rt.shutdown() }
        let server = try startServer(rt, EchoServer()) { $0.tls = try? serverContext() }
        var co = ClientOptions()
        co.tls = try TLSContext.client(useSystemStore: true)   // our test CA is not in it
        let rec = Recorder()
        let client = try Client(runtime: rt, url: "wss://localhost:\(server.port)/", options: co, handler: rec)
        try client.connect()
        #expect(eventually { client.state == .closed })
        #expect(rec.events.all.contains { $0.contains("certificate verify failed") })
        // A plain ws:// client at a TLS port fails its handshake too, and the server lives on.
        let plain = try Client(runtime: rt, url: "ws://127.0.0.1:\(server.port)/", options: ClientOptions(), handler: Recorder())
        try plain.connect()
        #expect(eventually { plain.state == .closed })
    }

    @Test func urlParsing() throws {
        let u = try WebSocketURL("ws://[::1]:9000/a/b?c=d")
        #expect(u.host == "::1" && u.port == 9000 && u.target == "/a/b?c=d" && u.hostHeader == "[::1]:9000")
        let v = try WebSocketURL("WSS://example.com?x")
        #expect(v.secure && v.port == 443 && v.target == "/?x" && v.hostHeader == "example.com")
        for bad in ["http://x/", "ws://", "ws://h:0/", "ws://h:99999/", "ws://h/#frag", "ws://u@h/", "ws://h/a b"] {
            #expect(throws: OrchestraError.self) { _ = try WebSocketURL(bad) }
        }
    }
}
