import CUV
import Glibc
import OrchestraCore
import Synchronization

/// Settings of a WebSocket server.
public struct ServerOptions: Sendable {
    /// Address to listen on: an IPv4 or IPv6 literal or a host name ("::" for every IPv6 and,
    /// unless `ipv6Only`, IPv4 address).
    public var host = "127.0.0.1"
    /// 0: an ephemeral port (read it from `Server.port` after `start`).
    public var port: UInt16 = 0
    public var backlog: Int32 = 511
    public var ipv6Only = false
    /// Paths that accept upgrades ("/ws"); empty: every path.
    public var paths: [String] = []
    /// Subprotocols we speak, best first; the first the client offers is chosen.
    public var subprotocols: [String] = []
    /// Open connections at most (0: no limit); more are refused with 503.
    public var maxConnections = 0
    /// The largest body of a plain HTTP request (Content-Length) the server reads before
    /// `handleHTTP`; a larger one is refused with 413, a chunked one with 400.
    public var maxRequestBody = 16 * 1024
    public var websocket = WebSocketOptions()
    /// Serve wss: every connection starts with a TLS handshake (`TLSContext.server`).
    public var tls: TLSContext? = nil
    public init() {}
}

/// The server's hooks, called on the I/O thread, plus the connection events.
public protocol ServerHandler: WebSocketHandler {
    /// An upgrade passed the RFC 6455 checks: accept it (nil) or refuse it with a response
    /// (authentication, Origin checks).
    func shouldAccept(_ request: HTTPRequestInfo) -> HTTPResponse?
    /// A request that is not an upgrade (or whose path takes no upgrades). nil: 404.
    func handleHTTP(_ request: HTTPRequestInfo) -> HTTPResponse?
    /// The same, for a handler that may answer later (after a database read): true when it
    /// will call `respond` once, on the I/O thread (now or later; the connection waits, within
    /// its handshake timeout); false: 404. By default, `handleHTTP(_:)`'s answer at once.
    func handleHTTP(_ request: HTTPRequestInfo, respond: @escaping (HTTPResponse) -> Void) -> Bool
}

public extension ServerHandler {
    func shouldAccept(_ request: HTTPRequestInfo) -> HTTPResponse? { nil }
    func handleHTTP(_ request: HTTPRequestInfo) -> HTTPResponse? { nil }
    func handleHTTP(_ request: HTTPRequestInfo, respond: @escaping (HTTPResponse) -> Void) -> Bool {
        guard let r = handleHTTP(request) else { return false }
        respond(r)
        return true
    }
}

/// Connection ids, unique per process.
let nextConnectionId = Atomic<UInt64>(0)

/// A WebSocket server on a runtime: listens, runs the opening handshake (with the accept and
/// HTTP hooks), and owns its connections. Any thread may call its methods; the handler runs
/// on the I/O thread.
public final class Server: ConnectionOwner, @unchecked Sendable {
    public let runtime: Runtime
    public let options: ServerOptions
    /// `options.websocket`, shared by every connection.
    let settings: SharedWebSocketOptions
    let handler: ServerHandler
    let handshakeConfig: ServerHandshake.Configuration

    // I/O thread state.
    var listener: UnsafeMutablePointer<uv_tcp_t>? = nil
    var sweep: UnsafeMutablePointer<uv_timer_t>? = nil
    /// Written on the I/O thread under `connLock`; read there freely, elsewhere under the lock.
    var connections: [UInt64: Connection] = [:]
    let connLock = PthreadMutex()
    var stopping = false

    let boundPort = Atomic<UInt16>(0)
    let openCount = Atomic<Int>(0)
    /// Upgrades refused (by a check or the hook), plain HTTP requests answered.
    let refused = Counter(), httpRequests = Counter(), accepted = Counter()

    public init(runtime: Runtime, options: ServerOptions, handler: ServerHandler) throws(OrchestraError) {
        try options.websocket.validate()
        for p in options.paths where !p.hasPrefix("/") {
            throw OrchestraError(.invalidArgument, "path \"\(p)\" must start with /")
        }
        for s in options.subprotocols where s.isEmpty || !HTTPBytes.isToken(Array(s.utf8)) {
            throw OrchestraError(.invalidArgument, "subprotocol \"\(s)\" is not an HTTP token")
        }
        self.runtime = runtime
        self.options = options
        settings = SharedWebSocketOptions(options.websocket)
        self.handler = handler
        var hc = ServerHandshake.Configuration()
        hc.subprotocols = options.subprotocols
        hc.perMessageDeflate = options.websocket.perMessageDeflate
        handshakeConfig = hc
    }

    /// The port listened on (after `start`).
    public var port: UInt16 { boundPort.load(ordering: .acquiring) }
    /// Open connections.
    public var connectionCount: Int { openCount.load(ordering: .relaxed) }

    /// Binds and listens. Any thread; returns once listening (or throws `.io` with the
    /// reason: address in use, bad host, ...).
    public func start() throws(OrchestraError) {
        let addr = try Server.resolve(host: options.host, port: options.port)
        var result: OrchestraError? = nil
        if runtime.embedded {
            // No I/O thread to wait for: bind here, as the loop's thread.
            try runtime.runAsLoopThread { [self] in
                do throws(OrchestraError) { try listen(addr) } catch { result = error }
            }
            if let result { throw result }
            return
        }
        let done = DispatchlessSemaphore()
        try runtime.onIOThread { [self] in
            do throws(OrchestraError) { try listen(addr) } catch { result = error }
            done.signal()
        }
        done.wait()
        if let result { throw result }
    }

    static func resolve(host: String, port: UInt16) throws(OrchestraError) -> sockaddr_storage {
        var hints = addrinfo()
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var res: UnsafeMutablePointer<addrinfo>? = nil
        let rc = getaddrinfo(host, String(port), &hints, &res)
        guard rc == 0, let first = res else {
            throw OrchestraError(.io, "cannot resolve host \"\(host)\": \(String(cString: gai_strerror(rc)))")
        }
        defer { freeaddrinfo(res) }
        var ss = sockaddr_storage()
        withUnsafeMutableBytes(of: &ss) { $0.copyMemory(from: UnsafeRawBufferPointer(start: first.pointee.ai_addr, count: Int(first.pointee.ai_addrlen))) }
        return ss
    }

    private func listen(_ addr: sockaddr_storage) throws(OrchestraError) {
        guard listener == nil else { throw OrchestraError(.state, "server already started") }
        let h = UnsafeMutablePointer<uv_tcp_t>.allocate(capacity: 1)
        uv_tcp_init(runtime.loop, h)
        h.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        var a = addr
        let flags: UInt32 = options.ipv6Only ? UInt32(UV_TCP_IPV6ONLY.rawValue) : 0
        var rc = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { uv_tcp_bind(h, $0, flags) } }
        if rc == 0 {
            rc = uv_listen(streamOf(h), options.backlog) { s, status in
                let server = Unmanaged<Server>.fromOpaque(s!.pointee.data).takeUnretainedValue()
                server.accept(status)
            }
        }
        if rc != 0 {
            Server.closeHandle(h)
            throw OrchestraError(.io, "cannot listen on \(options.host):\(options.port): \(Runtime.uvError(rc))")
        }
        listener = h
        var ss = sockaddr_storage()
        var len = Int32(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &ss) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { uv_tcp_getsockname(h, $0, &len) } }
        let family = Int32(ss.ss_family)
        let port: UInt16 = withUnsafeBytes(of: &ss) { raw in
            family == AF_INET6
                ? UInt16(bigEndian: raw.load(as: sockaddr_in6.self).sin6_port)
                : UInt16(bigEndian: raw.load(as: sockaddr_in.self).sin_port)
        }
        boundPort.store(port, ordering: .releasing)
        startSweep()
        runtime.addEndpoint(ObjectIdentifier(self)) { [self] in hardClose() }
    }

    /// Closes a handle allocated with `UnsafeMutablePointer.allocate` and frees it after.
    static func closeHandle<T>(_ h: UnsafeMutablePointer<T>) {
        uv_close(UnsafeMutableRawPointer(h).assumingMemoryBound(to: uv_handle_t.self)) { hh in
            // Every handle type is freed alike: the allocation is untyped memory.
            UnsafeMutableRawPointer(hh!).deallocate()
        }
    }

    private func startSweep() {
        let ws = options.websocket
        var period = Swift.min(ws.closeTimeoutMs, ws.handshakeTimeoutMs)
        if ws.pingIntervalMs > 0 { period = Swift.min(period, ws.pingIntervalMs, ws.pongTimeoutMs) }
        period = Swift.max(10, Swift.min(1000, period / 4))
        let t = UnsafeMutablePointer<uv_timer_t>.allocate(capacity: 1)
        uv_timer_init(runtime.loop, t)
        t.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        uv_timer_start(t, { t in
            let server = Unmanaged<Server>.fromOpaque(t!.pointee.data).takeUnretainedValue()
            let now = monotonicMillis()
            for c in server.connections.values { c.tick(now) }
        }, period, period)
        uv_unref(UnsafeMutableRawPointer(t).assumingMemoryBound(to: uv_handle_t.self))
        sweep = t
    }

    private func accept(_ status: Int32) {
        guard status == 0, let l = listener else { return }
        let h = UnsafeMutablePointer<uv_tcp_t>.allocate(capacity: 1)
        uv_tcp_init(runtime.loop, h)
        guard uv_accept(streamOf(l), streamOf(h)) == 0 else {
            Server.closeHandle(h)
            return
        }
        let id = nextConnectionId.wrappingAdd(1, ordering: .relaxed).newValue
        let c = Connection(id: id, role: .server, runtime: runtime, settings: settings, owner: self)
        c.handler = handler
        c.attach(h)
        if let ctx = options.tls {
            do {
                c.tls = try TLSSession(context: ctx)
            } catch {
                c.abort(reason: "cannot start TLS: \(error.message)")
                return
            }
        }
        connLock.withLock { connections[id] = c }
        c.startReading()
    }

    // MARK: ConnectionOwner

    func connection(_ c: Connection, receivedRequest head: HTTPRequestHead, rest: UnsafeMutableRawBufferPointer) {
        let upgrade = ServerHandshake.isWebSocketAttempt(head)
        let path = head.pathString
        var fields: [HTTPField] = []
        let h = head.headers
        for i in 0..<h.count {
            fields.append(HTTPField(String(decoding: h.name(at: i), as: UTF8.self), String(decoding: h.value(at: i), as: UTF8.self)))
        }
        func info(_ sub: String?, body: [UInt8] = []) -> HTTPRequestInfo {
            HTTPRequestInfo(method: head.methodString, path: path, query: head.queryString, headers: fields,
                            remoteAddress: c.remoteAddress, subprotocol: sub, body: body)
        }
        guard upgrade, options.paths.isEmpty || options.paths.contains(path) else {
            httpRequests.add(1)
            // The body first (bounded; the handshake timeout bounds a slow one), then the handler.
            let answer = { [self] (body: [UInt8]) in
                let answered = handler.handleHTTP(info(nil, body: body)) { r in c.respondAndClose(Server.render(r)) }
                if !answered {
                    c.respondAndClose(Server.render(HTTPResponse(status: 404, headers: [HTTPField("Content-Type", "text/plain")],
                                                                 body: Array("not found\n".utf8))))
                }
            }
            switch HTTPBodyReader.plan(head, maxBody: options.maxRequestBody) {
            case .failure(let e):
                c.respondAndClose(Server.render(HTTPResponse(status: e.status, headers: [HTTPField("Content-Type", "text/plain")],
                                                             body: Array((e.message + "\n").utf8))))
            case .success(let length):
                let reader = Box(HTTPBodyReader(length: length))
                reader.value.feed(UnsafeRawBufferPointer(rest))
                if reader.value.isComplete { answer(reader.value.body); return }
                c.bodyInput = { [weak c] bytes in
                    reader.value.feed(bytes)
                    guard reader.value.isComplete, let c else { return }
                    c.bodyInput = nil
                    answer(reader.value.body)
                }
            }
            return
        }
        if stopping {
            refused.add(1)
            c.respondAndClose(Server.render(HTTPResponse(status: 503, body: Array("server is shutting down\n".utf8))))
            return
        }
        if options.maxConnections > 0 && openCount.load(ordering: .relaxed) >= options.maxConnections {
            refused.add(1)
            c.respondAndClose(Server.render(HTTPResponse(status: 503, headers: [HTTPField("Retry-After", "1")],
                                                         body: Array("too many connections\n".utf8))))
            return
        }
        switch ServerHandshake.accept(head, handshakeConfig) {
        case .failure(let e):
            refused.add(1)
            c.respondAndClose(e.response)
        case .success(let acc):
            if let refusal = handler.shouldAccept(info(acc.subprotocol)) {
                refused.add(1)
                c.respondAndClose(Server.render(refusal))
                return
            }
            accepted.add(1)
            c.path = path
            c.query = head.queryString
            c.subprotocol = acc.subprotocol
            c.enqueueRaw(acc.response())
            runtime.markDirty(c)
            c.open(deflate: acc.perMessageDeflate)
            if rest.count > 0 { c.process(rest) }
        }
    }

    func connection(_ c: Connection, receivedResponse head: HTTPResponseHead) -> Result<ClientHandshake.Accepted, HandshakeError> {
        .failure(HandshakeError(0, "a server connection does not read responses"))
    }

    func connectionDidOpen(_ c: Connection) {
        openCount.wrappingAdd(1, ordering: .relaxed)
    }

    func connectionDidClose(_ c: Connection, code: UInt16, reason: String, clean: Bool, opened: Bool) {
        _ = connLock.withLock { connections.removeValue(forKey: c.id) }
        if opened { openCount.wrappingSubtract(1, ordering: .relaxed) }
        if stopping && connections.isEmpty { closeSweep() }
    }

    static func render(_ r: HTTPResponse) -> [UInt8] {
        HTTPResponseWriter.simple(status: r.status, headers: r.headers, body: r.body)
    }

    // MARK: Sending to many

    /// Sends one message to every open connection: the frame is built once and its bytes are
    /// shared (uncompressed, even where permessage-deflate was agreed). Any thread. A
    /// connection whose buffer is full gets its slow-consumer policy.
    public func broadcast(_ opcode: Opcode, _ payload: UnsafeRawBufferPointer) throws(OrchestraError) {
        guard opcode == .text || opcode == .binary else { throw OrchestraError(.invalidArgument, "broadcast takes a text or binary opcode") }
        let frame = FrameBytes.serverFrame(opcode, payload)
        try runtime.onIOThread { [self] in
            for c in connections.values where c.isOpen { _ = try? c.send(shared: frame) }
        }
    }

    /// The open connection with this id, or nil. Any thread.
    public func connection(id: UInt64) -> Connection? {
        connLock.withLock { connections[id] }.flatMap { $0.isOpen ? $0 : nil }
    }

    /// Every open connection, on the I/O thread (inside a handler).
    public func forEachConnection(_ body: (Connection) -> Void) {
        for c in connections.values where c.isOpen { body(c) }
    }

    // MARK: Stopping

    /// Stops listening and closes every connection with `code` (1001 going away by default);
    /// connections finish their closing handshakes (bounded by the close timeout). Any thread;
    /// returns at once. Idempotent.
    public func close(code: UInt16 = 1001, reason: String = "server shutting down") throws(OrchestraError) {
        try runtime.onIOThread { [self] in
            guard !stopping else { return }
            stopping = true
            if let l = listener { listener = nil; Server.closeHandle(l) }
            for c in connections.values {
                if c.phase == .handshake { c.abort(reason: "server closed") } else { try? c.close(code: code, reason: reason) }
            }
            if connections.isEmpty {
                closeSweep()
            } else {
                // Until the last connection has closed (then closeSweep), a runtime shutdown
                // must abort the rest.
                runtime.removeEndpoint(ObjectIdentifier(self))
                runtime.addEndpoint(ObjectIdentifier(self)) { [self] in hardClose() }
            }
        }
    }

    private func closeSweep() {
        if let t = sweep { sweep = nil; uv_timer_stop(t); Server.closeHandle(t) }
        runtime.removeEndpoint(ObjectIdentifier(self))
    }

    /// At runtime shutdown: every handle closed now.
    private func hardClose() {
        stopping = true
        if let l = listener { listener = nil; Server.closeHandle(l) }
        for c in Array(connections.values) { c.abort(reason: "runtime shut down") }
        if let t = sweep { sweep = nil; uv_timer_stop(t); Server.closeHandle(t) }
    }
}

/// A one-shot wait for a job on the I/O thread.
final class DispatchlessSemaphore: @unchecked Sendable {
    private let sem: UnsafeMutablePointer<sem_t>
    init() { sem = .allocate(capacity: 1); sem_init(sem, 0, 0) }
    deinit { sem_destroy(sem); sem.deallocate() }
    func signal() { sem_post(sem) }
    func wait() { while sem_wait(sem) != 0 && errno == EINTR {} }
}
