import CUV
import Glibc
import OrchestraCore
import Synchronization

/// A parsed ws:// or wss:// URL.
public struct WebSocketURL: Sendable, Equatable {
    public let secure: Bool
    public let host: String
    public let port: UInt16
    /// Path and query ("/chat?room=1").
    public let target: String

    /// The Host header value (port omitted when it is the scheme's default).
    public var hostHeader: String {
        let h = host.contains(":") ? "[\(host)]" : host
        return port == (secure ? 443 : 80) ? h : "\(h):\(port)"
    }

    /// Whether `url` names a wss:// (TLS) endpoint: its scheme, in any case, is wss.
    public static func isSecure(_ url: String) -> Bool {
        url.prefix(6).lowercased() == "wss://"
    }

    public init(_ s: String) throws(OrchestraError) {
        func bad(_ why: String) -> OrchestraError { OrchestraError(.invalidArgument, "invalid WebSocket URL \"\(s)\": \(why)") }
        var rest: Substring
        if WebSocketURL.isSecure(s) { secure = true; rest = s.dropFirst(6) }
        else if s.lowercased().hasPrefix("ws://") { secure = false; rest = s.dropFirst(5) }
        else { throw bad("the scheme must be ws:// or wss://") }
        if let hash = rest.firstIndex(of: "#") {
            guard rest[hash...].count == 1 else { throw bad("a WebSocket URL has no fragment (RFC 6455 section 3)") }
            rest = rest[..<hash]
        }
        let slash = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) ?? rest.endIndex
        var authority = rest[..<slash]
        var t = String(rest[slash...])
        if t.isEmpty { t = "/" } else if t.hasPrefix("?") { t = "/" + t }
        if authority.contains("@") { throw bad("user information is not supported") }
        var port: UInt16 = secure ? 443 : 80
        var host: Substring
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { throw bad("unclosed [ in the host") }
            host = authority[authority.index(after: authority.startIndex)..<close]
            authority = authority[authority.index(after: close)...]
            if !authority.isEmpty {
                guard authority.hasPrefix(":"), let p = UInt16(authority.dropFirst()), p > 0 else { throw bad("bad port") }
                port = p
            }
        } else if let colon = authority.lastIndex(of: ":") {
            host = authority[..<colon]
            guard let p = UInt16(authority[authority.index(after: colon)...]), p > 0 else { throw bad("bad port") }
            port = p
        } else {
            host = authority
        }
        guard !host.isEmpty else { throw bad("no host") }
        guard t.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else { throw bad("the path holds spaces or control characters") }
        self.host = String(host)
        self.port = port
        self.target = t
    }
}

/// The life of a client, reported to its handler.
public enum ClientState: Int32, Sendable {
    case connecting = 0, open = 1, reconnecting = 2, closing = 3, closed = 4
}

/// Settings of a client.
public struct ClientOptions: Sendable {
    /// Extra request header fields (authorization, Origin, ...).
    public var headers: [HTTPField] = []
    public var subprotocols: [String] = []
    /// TCP connect plus opening handshake, per attempt.
    public var connectTimeoutMs: UInt64 = 10_000
    /// Reconnect after a connection is lost or an attempt fails (not after `close`).
    public var reconnect = false
    /// Full-jitter exponential backoff: attempt n waits a random time in
    /// [0, min(max, initial * 2^n)] (RFC 6455 section 7.2.3 asks for a random first delay).
    /// A client of several URLs counts its attempts across them: the backoff grows while no
    /// URL answers and starts again once a connection opens.
    public var reconnectInitialDelayMs: UInt64 = 100
    public var reconnectMaxDelayMs: UInt64 = 30_000
    /// Attempts in a row before giving up (0: no limit).
    public var reconnectMaxAttempts = 0
    /// Messages sent while not open wait here (bounded: more fail with `.full`) and go out in
    /// order after the next open. 0 messages: sending while not open fails with `.closed`.
    public var offlineBufferMessages = 1024
    public var offlineBufferBytes = 1 << 20
    public var websocket = WebSocketOptions()
    /// For wss:// URLs: nil uses `TLSContext.client()` (the system's trusted CAs, certificate
    /// and host name verified).
    public var tls: TLSContext? = nil
    public init() {}
}

/// Client events beyond the connection's.
public protocol ClientHandler: WebSocketHandler {
    /// The client's state changed; `reason` says why (the last error when reconnecting or
    /// closed after a failure, empty otherwise).
    func stateChanged(_ client: Client, _ state: ClientState, reason: String)
    /// A client of several URLs moves on: its next attempt goes to `urls[to]` because the
    /// connection to, or the attempt at, `urls[from]` failed (`reason`). Called after the
    /// `reconnecting` state change that reports the failure, before the backoff delay.
    func urlChanged(_ client: Client, from: Int, to: Int, reason: String)
}

public extension ClientHandler {
    func stateChanged(_ client: Client, _ state: ClientState, reason: String) {}
    func urlChanged(_ client: Client, from: Int, to: Int, reason: String) {}
}

/// A WebSocket client (RFC 6455) that connects by URL, reconnects with backoff and buffers
/// what is sent while it is offline. Any thread may call its methods; the handler runs on the
/// I/O thread.
///
/// Several URLs (endpoints of one service, e.g. hubs that share a database) are tried round
/// robin: the first attempt goes to `urls[0]`; after an attempt fails or an open connection is
/// lost, the next attempt (after the usual backoff delay) goes to the next URL, and after the
/// last one to `urls[0]` again. A URL whose connection stays open is kept: the client goes
/// back to the first URL only by going round the list, never because the first one is back.
public final class Client: ConnectionOwner, @unchecked Sendable {
    public let runtime: Runtime
    /// The URLs in the order they are tried (one for a client of one URL).
    public let urls: [WebSocketURL]
    public let options: ClientOptions
    /// `options.websocket`, shared by every connection.
    let settings: SharedWebSocketOptions
    let handler: ClientHandler
    let handshakeConfig: ClientHandshake.Configuration
    let tlsContext: TLSContext?

    // I/O thread state.
    var connection: Connection? = nil
    var handshake: ClientHandshake? = nil
    var tcp: UnsafeMutablePointer<uv_tcp_t>? = nil   // while connecting
    var addresses: [sockaddr_storage] = []            // resolved, not tried yet
    var timer: UnsafeMutablePointer<uv_timer_t>? = nil
    var attemptDeadline: UInt64 = 0
    var retryAt: UInt64 = 0
    var attempts = 0
    var userClosed = false
    var started = false
    var attemptSerial: UInt64 = 0
    var jitter = SplitMix(seed: monotonicNanos())
    /// The index into `urls` of the open connection, or of the attempt in progress or next.
    /// Changed on the I/O thread only; read from any thread.
    let urlIndexShared = Atomic<Int>(0)

    // Shared state under `lock`: what `send` sees.
    let lock = PthreadMutex()
    var active: Connection? = nil
    var offline: [(Opcode, [UInt8])] = []
    var offlineBytes = 0
    /// A new client counts as connecting (what it sends is buffered until it opens).
    let stateShared = Atomic<Int32>(ClientState.connecting.rawValue)
    let reconnects = Counter()

    public convenience init(runtime: Runtime, url: String, options: ClientOptions, handler: ClientHandler) throws(OrchestraError) {
        try self.init(runtime: runtime, urls: [url], options: options, handler: handler)
    }

    /// A client of several URLs, tried round robin (see the type's documentation); `.invalidArgument`
    /// for an empty list or a bad URL (the message names it).
    public init(runtime: Runtime, urls: [String], options: ClientOptions, handler: ClientHandler) throws(OrchestraError) {
        try options.websocket.validate()
        guard !urls.isEmpty else { throw OrchestraError(.invalidArgument, "no URL to connect to") }
        var parsed: [WebSocketURL] = []
        for s in urls { parsed.append(try WebSocketURL(s)) }
        if !parsed.contains(where: \.secure) {
            tlsContext = nil
        } else if let t = options.tls {
            tlsContext = t
        } else {
            tlsContext = try TLSContext.client()
        }
        if options.reconnectInitialDelayMs == 0 || options.reconnectMaxDelayMs < options.reconnectInitialDelayMs {
            throw OrchestraError(.invalidArgument, "reconnect delays: initial must be positive and at most max")
        }
        var hc = ClientHandshake.Configuration()
        hc.subprotocols = options.subprotocols
        hc.perMessageDeflate = options.websocket.perMessageDeflate
        hc.headers = options.headers
        for u in parsed {
            do { _ = try ClientHandshake(host: u.hostHeader, target: u.target, hc) } catch {
                throw OrchestraError(.invalidArgument, "cannot build the handshake: \(error.message)")
            }
        }
        self.runtime = runtime
        self.urls = parsed
        self.options = options
        settings = SharedWebSocketOptions(options.websocket)
        self.handler = handler
        handshakeConfig = hc
    }

    public var state: ClientState { ClientState(rawValue: stateShared.load(ordering: .relaxed)) ?? .closed }
    /// The index into `urls` of the open connection, or of the attempt in progress or next.
    public var urlIndex: Int { urlIndexShared.load(ordering: .relaxed) }
    /// `urls[urlIndex]`.
    public var url: WebSocketURL { urls[urlIndex] }
    /// Reconnections made (attempts after the first).
    public var reconnectCount: UInt64 { reconnects.value }
    /// The open connection's counters (zero when none is open).
    public var stats: ConnectionStats { lock.withLock { active?.stats } ?? ConnectionStats() }
    public var bufferedAmount: Int { lock.withLock { (active?.bufferedAmount ?? 0) + offlineBytes } }

    private func setState(_ s: ClientState, _ reason: String = "") {
        if stateShared.exchange(s.rawValue, ordering: .relaxed) != s.rawValue || s == .reconnecting || s == .connecting {
            handler.stateChanged(self, s, reason: reason)
        }
    }

    /// Starts connecting (returns at once; watch the state events). Any thread.
    public func connect() throws(OrchestraError) {
        try runtime.onIOThread { [self] in
            guard !started else { return }
            started = true
            runtime.addEndpoint(ObjectIdentifier(self)) { [self] in hardClose() }
            let t = UnsafeMutablePointer<uv_timer_t>.allocate(capacity: 1)
            uv_timer_init(runtime.loop, t)
            t.pointee.data = Unmanaged.passUnretained(self).toOpaque()
            let ws = options.websocket
            var period = Swift.min(ws.closeTimeoutMs, options.connectTimeoutMs, 1000)
            if ws.pingIntervalMs > 0 { period = Swift.min(period, ws.pingIntervalMs, ws.pongTimeoutMs) }
            period = Swift.max(10, period / 4)
            uv_timer_start(t, { t in
                Unmanaged<Client>.fromOpaque(t!.pointee.data).takeUnretainedValue().tick()
            }, period, period)
            timer = t
            setState(.connecting)
            attempt()
        }
    }

    private func tick() {
        let now = monotonicMillis()
        if let c = connection { c.tick(now) }
        if attemptDeadline != 0 && now >= attemptDeadline {
            attemptDeadline = 0
            if let h = tcp {
                tcp = nil
                Server.closeHandle(h)
                attemptFailed("connect to \(url.host):\(url.port) timed out after \(options.connectTimeoutMs) ms")
            } else if let c = connection, c.phase == .handshake {
                c.abort(reason: "opening handshake timed out after \(options.connectTimeoutMs) ms")
            }
        }
        if retryAt != 0 && now >= retryAt {
            retryAt = 0
            attempt()
        }
    }

    /// One connection attempt: resolve, connect, handshake.
    private func attempt() {
        guard !userClosed else { return }
        attemptSerial &+= 1
        let serial = attemptSerial
        attemptDeadline = monotonicMillis() + options.connectTimeoutMs
        let req = UnsafeMutablePointer<uv_getaddrinfo_t>.allocate(capacity: 1)
        let box = Unmanaged.passRetained(AttemptBox(client: self, serial: serial))
        req.pointee.data = box.toOpaque()
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_flags = AI_NUMERICSERV
        let rc = uv_getaddrinfo(runtime.loop, req, { req, status, res in
            let box = Unmanaged<AttemptBox>.fromOpaque(req!.pointee.data).takeRetainedValue()
            req!.deallocate()
            defer { if let res { uv_freeaddrinfo(res) } }
            box.client.resolved(serial: box.serial, status: status, res)
        }, url.host, String(url.port), &hints)
        if rc != 0 {
            box.release()
            req.deallocate()
            attemptFailed("cannot resolve \(url.host): \(Runtime.uvError(rc))")
        }
    }

    final class AttemptBox {
        let client: Client
        let serial: UInt64
        init(client: Client, serial: UInt64) { self.client = client; self.serial = serial }
    }

    private func resolved(serial: UInt64, status: Int32, _ res: UnsafeMutablePointer<addrinfo>?) {
        guard serial == attemptSerial, !userClosed, attemptDeadline != 0 else { return }
        guard status == 0, res != nil else {
            attemptFailed("cannot resolve \(url.host): \(Runtime.uvError(status))")
            return
        }
        // Every address, tried in order until one connects ("localhost" may be ::1 first
        // while the server listens on 127.0.0.1).
        addresses = []
        var ai = res
        while let a = ai {
            var ss = sockaddr_storage()
            withUnsafeMutableBytes(of: &ss) { $0.copyMemory(from: UnsafeRawBufferPointer(start: a.pointee.ai_addr, count: Int(a.pointee.ai_addrlen))) }
            addresses.append(ss)
            ai = a.pointee.ai_next
        }
        connectNext(serial: serial, lastError: "no address for \(url.host)")
    }

    /// Connects to the next resolved address, or fails the attempt with the last error.
    private func connectNext(serial: UInt64, lastError: String) {
        guard !addresses.isEmpty else {
            attemptFailed(lastError)
            return
        }
        var addr = addresses.removeFirst()
        let h = UnsafeMutablePointer<uv_tcp_t>.allocate(capacity: 1)
        uv_tcp_init(runtime.loop, h)
        tcp = h
        let req = UnsafeMutablePointer<uv_connect_t>.allocate(capacity: 1)
        req.pointee.data = Unmanaged.passRetained(AttemptBox(client: self, serial: serial)).toOpaque()
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                uv_tcp_connect(req, h, sa) { req, status in
                    let box = Unmanaged<AttemptBox>.fromOpaque(req!.pointee.data).takeRetainedValue()
                    let h = req!.pointee.handle
                    req!.deallocate()
                    box.client.connected(serial: box.serial, status: status, h)
                }
            }
        }
        if rc != 0 {
            Unmanaged<AttemptBox>.fromOpaque(req.pointee.data).release()
            req.deallocate()
            tcp = nil
            Server.closeHandle(h)
            connectNext(serial: serial, lastError: "cannot connect to \(url.host):\(url.port): \(Runtime.uvError(rc))")
        }
    }

    private func connected(serial: UInt64, status: Int32, _ stream: UnsafeMutablePointer<uv_stream_t>?) {
        // A timed-out or closed attempt already closed its handle (status is then ECANCELED).
        guard serial == attemptSerial, let h = tcp,
              UnsafeMutableRawPointer(h) == stream.map({ UnsafeMutableRawPointer($0) }) else { return }
        tcp = nil
        guard status == 0 else {
            Server.closeHandle(h)
            connectNext(serial: serial, lastError: "cannot connect to \(url.host):\(url.port): \(Runtime.uvError(status))")
            return
        }
        let id = nextConnectionId.wrappingAdd(1, ordering: .relaxed).newValue
        let c = Connection(id: id, role: .client, runtime: runtime, settings: settings, owner: self)
        c.handler = handler
        c.path = String(url.target.prefix { $0 != "?" })
        c.attach(h)
        c.handshakeDeadline = 0   // the attempt deadline covers it
        if url.secure, let ctx = tlsContext {
            do {
                c.tls = try TLSSession(context: ctx, serverName: url.host)
            } catch {
                connection = c
                c.abort(reason: "cannot start TLS: \(error.message)")
                return
            }
        }
        do {
            let hs = try ClientHandshake(host: url.hostHeader, target: url.target, handshakeConfig)
            handshake = hs
            c.enqueueRaw(hs.request)
        } catch {
            c.abort(reason: "cannot build the handshake: \(error.message)")
            return
        }
        connection = c
        runtime.markDirty(c)
        c.startReading()
    }

    private func attemptFailed(_ reason: String) {
        attemptDeadline = 0
        scheduleRetry(reason)
    }

    private func scheduleRetry(_ reason: String) {
        if userClosed {
            finishClosed(reason)
            return
        }
        let limit = options.reconnectMaxAttempts
        guard options.reconnect, limit == 0 || attempts < limit else {
            finishClosed(options.reconnect ? "gave up after \(attempts) reconnection attempts: \(reason)" : reason)
            return
        }
        let cap = options.reconnectInitialDelayMs << UInt64(Swift.min(attempts, 30))
        let ceiling = Swift.min(options.reconnectMaxDelayMs, cap)
        let delay = jitter.next() % (ceiling + 1)
        attempts += 1
        reconnects.add(1)
        retryAt = monotonicMillis() + Swift.max(delay, 1)
        setState(.reconnecting, reason)
        if urls.count > 1 {
            let from = urlIndexShared.load(ordering: .relaxed)
            let to = (from + 1) % urls.count
            urlIndexShared.store(to, ordering: .relaxed)
            handler.urlChanged(self, from: from, to: to, reason: reason)
        }
    }

    private func finishClosed(_ reason: String) {
        retryAt = 0
        attemptDeadline = 0
        let dropped: Int = lock.withLock {
            let n = offline.count
            offline.removeAll()
            offlineBytes = 0
            return n
        }
        var why = reason
        if dropped > 0 { why += (why.isEmpty ? "" : "; ") + "\(dropped) buffered message(s) not sent" }
        setState(.closed, why)
        if let t = timer { timer = nil; uv_timer_stop(t); Server.closeHandle(t) }
        runtime.removeEndpoint(ObjectIdentifier(self))
    }

    // MARK: ConnectionOwner

    func connection(_ c: Connection, receivedRequest head: HTTPRequestHead, rest: UnsafeMutableRawBufferPointer) {}

    func connection(_ c: Connection, receivedResponse head: HTTPResponseHead) -> Result<ClientHandshake.Accepted, HandshakeError> {
        guard let hs = handshake else { return .failure(HandshakeError(0, "no handshake in progress")) }
        return hs.validate(head)
    }

    func connectionDidOpen(_ c: Connection) {
        attemptDeadline = 0
        attempts = 0
        handshake = nil
        // Flush what waited, in order, before anything sent from now on.
        lock.withLock {
            for (op, bytes) in offline { _ = bytes.withUnsafeBytes { try? c.send(op, $0) } }
            offline.removeAll()
            offlineBytes = 0
            active = c
        }
        setState(.open)
    }

    func connectionDidClose(_ c: Connection, code: UInt16, reason: String, clean: Bool, opened: Bool) {
        lock.withLock { if active === c { active = nil } }
        if connection === c { connection = nil }
        let why = reason.isEmpty ? "closed with \(code)" : "closed with \(code): \(reason)"
        if userClosed || (opened && clean && !options.reconnect) {
            finishClosed(userClosed ? "" : why)
        } else {
            scheduleRetry(why)
        }
    }

    // MARK: Sending

    /// Sends a message: on the open connection, or into the offline buffer while connecting
    /// or reconnecting. Any thread. Throws `.closed` when closed (or not open and buffering
    /// is off), `.full` when the offline buffer is full or the send buffer passed its limit.
    public func send(_ opcode: Opcode, _ payload: UnsafeRawBufferPointer) throws(OrchestraError) -> SendStatus {
        try lock.withLock { () throws(OrchestraError) -> SendStatus in
            if let a = active { return try a.send(opcode, payload) }
            let st = state
            guard st == .connecting || st == .reconnecting, options.offlineBufferMessages > 0 else {
                throw OrchestraError(.closed, "client is \(st) and buffers nothing offline")
            }
            guard opcode == .text || opcode == .binary else { throw OrchestraError(.invalidArgument, "send takes a text or binary opcode") }
            guard offline.count < options.offlineBufferMessages, offlineBytes + payload.count <= options.offlineBufferBytes else {
                throw OrchestraError(.full, "offline buffer is full (\(offline.count) messages, \(offlineBytes) bytes)")
            }
            offline.append((opcode, Array(payload)))
            offlineBytes += payload.count
            return .queued
        }
    }

    /// Pings the open connection (RTT lands in `stats`). Any thread.
    public func ping() throws(OrchestraError) {
        guard let a = lock.withLock({ active }) else { throw OrchestraError(.closed, "client is not open") }
        try a.ping()
    }

    /// Closes for good: the closing handshake when open, else stops connecting. Any thread.
    public func close(code: UInt16 = 1000, reason: String = "") throws(OrchestraError) {
        guard CloseCode(code).isSendable else { throw OrchestraError(.invalidArgument, "close code \(code) may not be sent") }
        guard reason.utf8.count <= CloseFrame.maxReasonLength else { throw OrchestraError(.invalidArgument, "close reason over 123 bytes") }
        try runtime.onIOThread { [self] in
            guard !userClosed else { return }
            userClosed = true
            guard started else { setState(.closed); return }
            if let c = connection {
                setState(.closing)
                if c.phase == .open { try? c.close(code: code, reason: reason) } else { c.abort(reason: "closed by the user") }
            } else {
                if let h = tcp { tcp = nil; Server.closeHandle(h) }
                attemptSerial &+= 1
                finishClosed("")
            }
        }
    }

    private func hardClose() {
        userClosed = true
        if let h = tcp { tcp = nil; Server.closeHandle(h) }
        if let c = connection { c.abort(reason: "runtime shut down") }
        if let t = timer { timer = nil; uv_timer_stop(t); Server.closeHandle(t) }
        stateShared.store(ClientState.closed.rawValue, ordering: .relaxed)
    }
}

/// A small fast PRNG for backoff jitter (not for secrets).
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
