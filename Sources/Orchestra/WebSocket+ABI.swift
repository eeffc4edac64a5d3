// C ABI of WebSocket servers, clients and connections (header section WEBSOCKET): option
// conversion, handle conversion and callback trampolines only; the protocol lives in
// OrchestraNet.
import COrchestra
import Glibc
import OrchestraCore
import OrchestraNet

// MARK: Options

private func wsDefaults() -> orc_ws_options_t {
    let d = WebSocketOptions()
    return orc_ws_options_t(
        max_frame_size: d.maxFrameSize, max_message_size: d.maxMessageSize,
        ping_interval_ms: UInt32(d.pingIntervalMs), pong_timeout_ms: UInt32(d.pongTimeoutMs),
        close_timeout_ms: UInt32(d.closeTimeoutMs), handshake_timeout_ms: UInt32(d.handshakeTimeoutMs),
        high_watermark: d.highWatermark, low_watermark: d.lowWatermark, max_buffered: d.maxBuffered,
        slow_consumer: ORC_SLOW_CONSUMER_CLOSE_1008, deflate: 0, server_no_context_takeover: 0,
        client_no_context_takeover: 0, server_max_window_bits: 0, client_max_window_bits: 0,
        compression_threshold: d.compressionThreshold, compression_level: d.compressionLevel,
        compression_mem_level: d.compressionMemLevel)
}

private func wsOptions(_ o: orc_ws_options_t) throws(OrchestraError) -> WebSocketOptions {
    var w = WebSocketOptions()
    w.maxFrameSize = try cSize(o.max_frame_size, "max_frame_size")
    w.maxMessageSize = try cSize(o.max_message_size, "max_message_size")
    w.pingIntervalMs = UInt64(o.ping_interval_ms)
    w.pongTimeoutMs = UInt64(o.pong_timeout_ms)
    w.closeTimeoutMs = UInt64(o.close_timeout_ms)
    w.handshakeTimeoutMs = UInt64(o.handshake_timeout_ms)
    w.highWatermark = try cSize(o.high_watermark, "high_watermark")
    w.lowWatermark = try cSize(o.low_watermark, "low_watermark")
    w.maxBuffered = try cSize(o.max_buffered, "max_buffered")
    guard let policy = SlowConsumerPolicy(rawValue: Int32(bitPattern: o.slow_consumer.rawValue)) else {
        throw OrchestraError(.invalidArgument, "slow_consumer \(o.slow_consumer.rawValue) is not an orc_slow_consumer_t")
    }
    w.slowConsumer = policy
    if o.deflate != 0 {
        var d = PerMessageDeflate.Configuration()
        d.serverNoContextTakeover = o.server_no_context_takeover != 0
        d.clientNoContextTakeover = o.client_no_context_takeover != 0
        d.serverMaxWindowBits = o.server_max_window_bits == 0 ? nil : Int(o.server_max_window_bits)
        d.clientMaxWindowBits = o.client_max_window_bits == 0 ? nil : Int(o.client_max_window_bits)
        w.perMessageDeflate = d
    }
    w.compressionThreshold = try cSize(o.compression_threshold, "compression_threshold")
    w.compressionLevel = o.compression_level
    w.compressionMemLevel = o.compression_mem_level
    try w.validate()
    return w
}

private func strings(_ p: UnsafePointer<UnsafePointer<CChar>?>?, _ n: Int, _ what: StaticString) throws(OrchestraError) -> [String] {
    guard n > 0 else { return [] }
    let list = try required(p, what)
    var out: [String] = []
    for i in 0..<n {
        out.append(try text(list[i], what))
    }
    return out
}

private func fields(_ p: UnsafePointer<orc_http_header_t>?, _ n: Int) throws(OrchestraError) -> [HTTPField] {
    guard n > 0 else { return [] }
    let list = try required(p, "headers")
    var out: [HTTPField] = []
    for i in 0..<n {
        let f = HTTPField(try text(list[i].name, "header name"), try text(list[i].value, "header value"))
        guard f.isValid else { throw OrchestraError(.invalidArgument, "header field \(f.name) is not a valid HTTP field") }
        out.append(f)
    }
    return out
}

private func opcode(_ v: Int32) throws(OrchestraError) -> Opcode {
    switch v {
    case ORC_WS_TEXT: return .text
    case ORC_WS_BINARY: return .binary
    default: throw OrchestraError(.invalidArgument, "opcode \(v) is neither ORC_WS_TEXT nor ORC_WS_BINARY")
    }
}

private func closeArgs(_ code: Int32, _ reason: UnsafePointer<CChar>?) throws(OrchestraError) -> (UInt16, String) {
    guard code >= 0 && code <= 0xFFFF else { throw OrchestraError(.invalidArgument, "close code \(code) out of range") }
    return (UInt16(code), try optionalText(reason, "reason") ?? "")
}

private func status(_ s: SendStatus) -> Int32 { s == .aboveHighWatermark ? ORC_WS_ABOVE_HIGH_WATERMARK : orcOK }

// MARK: Callbacks

/// NUL-terminated copies of a connection's strings, kept on the connection for its getters.
private final class ConnStrings {
    let path: UnsafeMutablePointer<CChar>
    let subprotocol: UnsafeMutablePointer<CChar>?
    let remote: UnsafeMutablePointer<CChar>
    init(_ c: Connection) {
        path = strdup(c.path)
        subprotocol = c.subprotocol.map { strdup($0) }
        remote = strdup(c.remoteAddress)
    }
    deinit { free(path); free(subprotocol); free(remote) }
}

private func connPointer(_ c: Connection) -> OpaquePointer { OpaquePointer(Unmanaged.passUnretained(c).toOpaque()) }

/// The C callbacks and hooks of one server or client.
private final class CHandler: ServerHandler, ClientHandler, @unchecked Sendable {
    let cb: orc_ws_callbacks_t
    var onUpgrade: (@convention(c) (UnsafeMutableRawPointer?, UnsafePointer<orc_http_request_t>?, UnsafeMutablePointer<orc_http_response_t>?) -> Int32)? = nil
    var onHTTP: (@convention(c) (UnsafeMutableRawPointer?, UnsafePointer<orc_http_request_t>?, UnsafeMutablePointer<orc_http_response_t>?) -> Int32)? = nil
    var hookUserData: UnsafeMutableRawPointer? = nil
    var serverFree: (@convention(c) (UnsafeMutableRawPointer?, UnsafeMutableRawPointer?) -> Void)? = nil
    var clientFree: (@convention(c) (UnsafeMutableRawPointer?) -> Void)? = nil
    var onState: (@convention(c) (UnsafeMutableRawPointer?, OpaquePointer?, orc_client_state_t, UnsafePointer<CChar>?) -> Void)? = nil
    weak var client: Client? = nil

    init(_ cb: orc_ws_callbacks_t) { self.cb = cb }

    deinit {
        serverFree?(cb.user_data, hookUserData)
        clientFree?(cb.user_data)
    }

    func didOpen(_ c: Connection) {
        c.attachment = ConnStrings(c)
        cb.on_open?(cb.user_data, connPointer(c))
    }
    func didReceive(_ c: Connection, opcode: Opcode, bytes: UnsafeRawBufferPointer) {
        guard let f = cb.on_message else { return }
        f(cb.user_data, connPointer(c), opcode == .text ? ORC_WS_TEXT : ORC_WS_BINARY,
          bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), bytes.count)
    }
    func didDrain(_ c: Connection) { cb.on_drain?(cb.user_data, connPointer(c)) }
    func didReceivePong(_ c: Connection, rttMicros: UInt64) { cb.on_pong?(cb.user_data, connPointer(c), rttMicros) }
    func didClose(_ c: Connection, code: UInt16, reason: String, clean: Bool) {
        guard let f = cb.on_close else { return }
        reason.withCString { f(cb.user_data, connPointer(c), Int32(code), $0, clean ? 1 : 0) }
    }
    func stateChanged(_ client: Client, _ state: ClientState, reason: String) {
        guard let f = onState else { return }
        let p = OpaquePointer(Unmanaged.passUnretained(client).toOpaque())
        reason.withCString { f(cb.user_data, p, orc_client_state_t(UInt32(state.rawValue)), $0) }
    }
    func shouldAccept(_ r: HTTPRequestInfo) -> HTTPResponse? {
        guard let f = onUpgrade else { return nil }
        return call(f, r, refusedWith: 403)
    }
    func handleHTTP(_ r: HTTPRequestInfo) -> HTTPResponse? {
        guard let f = onHTTP else { return nil }
        return call(f, r, refusedWith: nil)
    }

    /// Runs a hook with the request as C strings; non-zero means "use the response" for the
    /// upgrade hook (a refusal) and "404" for the HTTP hook.
    private func call(_ f: @convention(c) (UnsafeMutableRawPointer?, UnsafePointer<orc_http_request_t>?, UnsafeMutablePointer<orc_http_response_t>?) -> Int32,
                      _ r: HTTPRequestInfo, refusedWith fallback: Int?) -> HTTPResponse? {
        var owned: [UnsafeMutablePointer<CChar>?] = []
        defer { for p in owned { free(p) } }
        func c(_ s: String?) -> UnsafePointer<CChar>? {
            guard let s else { return nil }
            let p = strdup(s)
            owned.append(p)
            return UnsafePointer(p)
        }
        let headers = r.headers.map { orc_http_header_t(name: c($0.name), value: c($0.value)) }
        var resp = orc_http_response_t(status: 0, content_type: nil, body: nil, body_len: 0, headers: nil, header_count: 0)
        let rc: Int32 = headers.withUnsafeBufferPointer { hb in
            var req = orc_http_request_t(method: c(r.method), path: c(r.path), query: c(r.query),
                                         remote_address: c(r.remoteAddress), subprotocol: c(r.subprotocol),
                                         headers: hb.baseAddress, header_count: hb.count)
            return f(hookUserData, &req, &resp)
        }
        let isUpgradeHook = fallback != nil
        if isUpgradeHook ? rc == 0 : rc != 0 { return nil }
        return response(resp, fallbackStatus: fallback ?? 500)
    }

    /// Copies a hook's response; a malformed one becomes a 500 (or the fallback status).
    private func response(_ r: orc_http_response_t, fallbackStatus: Int) -> HTTPResponse {
        var out = HTTPResponse(status: (100...599).contains(Int(r.status)) ? Int(r.status) : fallbackStatus)
        if let ct = r.content_type, let s = try? text(ct, "content_type") { out.headers.append(HTTPField("Content-Type", s)) }
        if let extra = try? fields(r.headers, r.header_count) { out.headers += extra }
        if let body = try? cBytes(r.body, r.body_len, "body") { out.body = Array(body) }
        return out
    }
}

// MARK: Server

@_cdecl("orc_server_options_init_sized")
public func orc_server_options_init_sized(_ opts: UnsafeMutablePointer<orc_server_options_t>?, _ structSize: Int) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let o = try structToInit(opts, structSize, "orc_server_options_t")
        o.pointee.backlog = 511
        o.pointee.ws = wsDefaults()
    }
}

@_cdecl("orc_server_new")
public func orc_server_new(_ rt: OpaquePointer?, _ opts: UnsafePointer<orc_server_options_t>?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let out = try required(out, "out")
        out.pointee = nil
        let runtime = try handle(rt, Runtime.self, "rt")
        let o = try initialisedOptions(try required(opts, "opts"), "orc_server_options_t")
        var so = ServerOptions()
        if let h = try optionalText(o.host, "host") { so.host = h }
        so.port = o.port
        so.backlog = o.backlog
        so.ipv6Only = o.ipv6_only != 0
        so.paths = try strings(o.paths, try cSize(o.path_count, "path_count"), "paths")
        so.subprotocols = try strings(o.subprotocols, try cSize(o.subprotocol_count, "subprotocol_count"), "subprotocols")
        so.maxConnections = try cSize(o.max_connections, "max_connections")
        so.websocket = try wsOptions(o.ws)
        switch (o.tls_cert_file, o.tls_key_file) {
        case (nil, nil):
            if o.tls_client_ca_file != nil { throw OrchestraError(.invalidArgument, "tls_client_ca_file needs tls_cert_file and tls_key_file") }
        case (let cert?, let key?):
            so.tls = try TLSContext.server(certFile: try text(cert, "tls_cert_file"), keyFile: try text(key, "tls_key_file"),
                                           clientCAFile: try optionalText(o.tls_client_ca_file, "tls_client_ca_file"))
        default:
            throw OrchestraError(.invalidArgument, "tls_cert_file and tls_key_file go together")
        }
        let h = CHandler(o.callbacks)
        h.onUpgrade = o.on_upgrade
        h.onHTTP = o.on_http
        h.hookUserData = o.hook_user_data
        var handler: ServerHandler = h
        if let q = o.queue {
            handler = QueueDelivery(queue: try handle(q, MessageQueue.self, "queue"), events: o.queue_events != 0, forwardingTo: h)
        }
        let server = try Server(runtime: runtime, options: so, handler: handler)
        h.serverFree = o.user_data_free   // only once the server exists: a failed new frees nothing
        out.pointee = retainedHandle(server)
    }
}

@_cdecl("orc_server_start")
public func orc_server_start(_ s: OpaquePointer?) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let server = try handle(s, Server.self, "server")
        if server.runtime.isIOThread && !server.runtime.embedded { throw OrchestraError(.state, "orc_server_start waits for the I/O thread: call it from another thread") }
        try server.start()
    }
}

@_cdecl("orc_server_port")
public func orc_server_port(_ s: OpaquePointer?) -> UInt16 {
    guard let s else { return 0 }
    return (unmanaged(s) as Unmanaged<Server>)._withUnsafeGuaranteedRef { $0.port }
}

@_cdecl("orc_server_connection_count")
public func orc_server_connection_count(_ s: OpaquePointer?) -> Int {
    guard let s else { return 0 }
    return (unmanaged(s) as Unmanaged<Server>)._withUnsafeGuaranteedRef { $0.connectionCount }
}

@_cdecl("orc_server_broadcast")
public func orc_server_broadcast(_ s: OpaquePointer?, _ op: Int32, _ data: UnsafePointer<UInt8>?, _ len: Int) -> Int32 {
    abiCall { () throws(OrchestraError) in
        try handle(s, Server.self, "server").broadcast(try opcode(op), try cBytes(data, len, "data"))
    }
}

@_cdecl("orc_server_send")
public func orc_server_send(_ s: OpaquePointer?, _ id: UInt64, _ op: Int32, _ data: UnsafePointer<UInt8>?, _ len: Int) -> Int32 {
    var st = SendStatus.queued
    let rc = abiCall { () throws(OrchestraError) in
        let server = try handle(s, Server.self, "server")
        let bytes = try cBytes(data, len, "data")
        let o = try opcode(op)
        guard let c = server.connection(id: id) else { throw OrchestraError(.notFound, "no open connection \(id)") }
        st = try c.send(o, bytes)
    }
    return rc == orcOK ? status(st) : rc
}

@_cdecl("orc_server_connection_stats")
public func orc_server_connection_stats(_ s: OpaquePointer?, _ id: UInt64, _ out: UnsafeMutablePointer<orc_conn_stats_t>?) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let server = try handle(s, Server.self, "server")
        let out = try required(out, "out")
        guard let c = server.connection(id: id) else { throw OrchestraError(.notFound, "no open connection \(id)") }
        out.pointee = cStats(c.stats, reconnects: 0)
    }
}

@_cdecl("orc_server_close_connection")
public func orc_server_close_connection(_ s: OpaquePointer?, _ id: UInt64, _ code: Int32, _ reason: UnsafePointer<CChar>?) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let server = try handle(s, Server.self, "server")
        let (c, r) = try closeArgs(code, reason)
        guard let conn = server.connection(id: id) else { throw OrchestraError(.notFound, "no open connection \(id)") }
        try conn.close(code: c, reason: r)
    }
}

@_cdecl("orc_server_close")
public func orc_server_close(_ s: OpaquePointer?, _ code: Int32, _ reason: UnsafePointer<CChar>?) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let server = try handle(s, Server.self, "server")
        let (c, r) = try closeArgs(code, reason)
        guard CloseCode(c).isSendable else { throw OrchestraError(.invalidArgument, "close code \(c) may not be sent") }
        try server.close(code: c, reason: r)
    }
}

@_cdecl("orc_server_free")
public func orc_server_free(_ s: OpaquePointer?) {
    guard let s else { return }
    let u = unmanaged(s) as Unmanaged<Server>
    u._withUnsafeGuaranteedRef { try? $0.close() }
    u.release()
}

// MARK: Client

@_cdecl("orc_client_options_init_sized")
public func orc_client_options_init_sized(_ opts: UnsafeMutablePointer<orc_client_options_t>?, _ structSize: Int) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let o = try structToInit(opts, structSize, "orc_client_options_t")
        let d = ClientOptions()
        o.pointee.connect_timeout_ms = UInt32(d.connectTimeoutMs)
        o.pointee.reconnect_initial_delay_ms = UInt32(d.reconnectInitialDelayMs)
        o.pointee.reconnect_max_delay_ms = UInt32(d.reconnectMaxDelayMs)
        o.pointee.offline_buffer_messages = d.offlineBufferMessages
        o.pointee.offline_buffer_bytes = d.offlineBufferBytes
        o.pointee.ws = wsDefaults()
        o.pointee.tls_use_system_store = 1
        o.pointee.tls_verify_peer = 1
    }
}

@_cdecl("orc_client_new")
public func orc_client_new(_ rt: OpaquePointer?, _ url: UnsafePointer<CChar>?, _ opts: UnsafePointer<orc_client_options_t>?,
                           _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let out = try required(out, "out")
        out.pointee = nil
        let runtime = try handle(rt, Runtime.self, "rt")
        let u = try text(url, "url")
        var co = ClientOptions()
        var cb = orc_ws_callbacks_t()
        var onState: (@convention(c) (UnsafeMutableRawPointer?, OpaquePointer?, orc_client_state_t, UnsafePointer<CChar>?) -> Void)? = nil
        var queue: MessageQueue? = nil
        var events = false
        var free: (@convention(c) (UnsafeMutableRawPointer?) -> Void)? = nil
        if let p = opts {
            let o = try initialisedOptions(p, "orc_client_options_t")
            co.headers = try fields(o.headers, try cSize(o.header_count, "header_count"))
            co.subprotocols = try strings(o.subprotocols, try cSize(o.subprotocol_count, "subprotocol_count"), "subprotocols")
            co.connectTimeoutMs = UInt64(o.connect_timeout_ms)
            co.reconnect = o.reconnect != 0
            co.reconnectInitialDelayMs = UInt64(o.reconnect_initial_delay_ms)
            co.reconnectMaxDelayMs = UInt64(o.reconnect_max_delay_ms)
            co.reconnectMaxAttempts = Int(o.reconnect_max_attempts)
            co.offlineBufferMessages = try cSize(o.offline_buffer_messages, "offline_buffer_messages")
            co.offlineBufferBytes = try cSize(o.offline_buffer_bytes, "offline_buffer_bytes")
            co.websocket = try wsOptions(o.ws)
            cb = o.callbacks
            onState = o.on_state
            if let q = o.queue { queue = try handle(q, MessageQueue.self, "queue") }
            events = o.queue_events != 0
            free = o.user_data_free
            co.tls = try TLSContext.client(forURL: u) { () throws(OrchestraError) in
                ClientTLSSettings(caFile: try optionalText(o.tls_ca_file, "tls_ca_file"),
                                  useSystemStore: o.tls_use_system_store != 0, verifyPeer: o.tls_verify_peer != 0,
                                  certFile: try optionalText(o.tls_cert_file, "tls_cert_file"),
                                  keyFile: try optionalText(o.tls_key_file, "tls_key_file"))
            }
        }
        if co.connectTimeoutMs == 0 { throw OrchestraError(.invalidArgument, "connect_timeout_ms must be positive") }
        let h = CHandler(cb)
        h.onState = onState
        let handler: ClientHandler = queue.map { QueueDelivery(queue: $0, events: events, forwardingTo: h) } ?? h
        let client = try Client(runtime: runtime, url: u, options: co, handler: handler)
        h.client = client
        h.clientFree = free
        out.pointee = retainedHandle(client)
    }
}

@_cdecl("orc_client_connect")
public func orc_client_connect(_ c: OpaquePointer?) -> Int32 {
    abiCall { () throws(OrchestraError) in try handle(c, Client.self, "client").connect() }
}

@_cdecl("orc_client_send")
public func orc_client_send(_ c: OpaquePointer?, _ op: Int32, _ data: UnsafePointer<UInt8>?, _ len: Int) -> Int32 {
    var st = SendStatus.queued
    let rc = abiCall { () throws(OrchestraError) in
        let client = try handle(c, Client.self, "client")
        st = try client.send(try opcode(op), try cBytes(data, len, "data"))
    }
    return rc == orcOK ? status(st) : rc
}

@_cdecl("orc_client_ping")
public func orc_client_ping(_ c: OpaquePointer?) -> Int32 {
    abiCall { () throws(OrchestraError) in try handle(c, Client.self, "client").ping() }
}

@_cdecl("orc_client_close")
public func orc_client_close(_ c: OpaquePointer?, _ code: Int32, _ reason: UnsafePointer<CChar>?) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let client = try handle(c, Client.self, "client")
        let (cc, r) = try closeArgs(code, reason)
        try client.close(code: cc, reason: r)
    }
}

@_cdecl("orc_client_state")
public func orc_client_state(_ c: OpaquePointer?) -> orc_client_state_t {
    guard let c else { return ORC_CLIENT_CLOSED }
    let s = (unmanaged(c) as Unmanaged<Client>)._withUnsafeGuaranteedRef { $0.state }
    return orc_client_state_t(UInt32(s.rawValue))
}

private func cStats(_ s: ConnectionStats, reconnects: UInt64) -> orc_conn_stats_t {
    orc_conn_stats_t(bytes_in: s.bytesIn, bytes_out: s.bytesOut, messages_in: s.messagesIn, messages_out: s.messagesOut,
                     messages_dropped: s.messagesDropped, errors: s.errors, rtt_us: s.rttMicros,
                     uptime_us: s.uptimeMicros, buffered_amount: s.bufferedAmount, reconnects: reconnects)
}

@_cdecl("orc_client_stats")
public func orc_client_stats(_ c: OpaquePointer?, _ out: UnsafeMutablePointer<orc_conn_stats_t>?) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let client = try handle(c, Client.self, "client")
        try required(out, "out").pointee = cStats(client.stats, reconnects: client.reconnectCount)
    }
}

@_cdecl("orc_client_free")
public func orc_client_free(_ c: OpaquePointer?) {
    guard let c else { return }
    let u = unmanaged(c) as Unmanaged<Client>
    u._withUnsafeGuaranteedRef { try? $0.close() }
    u.release()
}

// MARK: Connections

@inline(__always)
private func withConn<R>(_ c: OpaquePointer?, _ empty: R, _ body: (Connection) -> R) -> R {
    guard let c else { return empty }
    return (unmanaged(c) as Unmanaged<Connection>)._withUnsafeGuaranteedRef(body)
}

@_cdecl("orc_conn_send")
public func orc_conn_send(_ c: OpaquePointer?, _ op: Int32, _ data: UnsafePointer<UInt8>?, _ len: Int) -> Int32 {
    var st = SendStatus.queued
    let rc = abiCall { () throws(OrchestraError) in
        let conn = try handle(c, Connection.self, "conn")
        st = try conn.send(try opcode(op), try cBytes(data, len, "data"))
    }
    return rc == orcOK ? status(st) : rc
}

@_cdecl("orc_conn_close")
public func orc_conn_close(_ c: OpaquePointer?, _ code: Int32, _ reason: UnsafePointer<CChar>?) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let conn = try handle(c, Connection.self, "conn")
        let (cc, r) = try closeArgs(code, reason)
        try conn.close(code: cc, reason: r)
    }
}

@_cdecl("orc_conn_ping")
public func orc_conn_ping(_ c: OpaquePointer?) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let conn = try handle(c, Connection.self, "conn")
        guard conn.isOpen else { throw OrchestraError(.closed, "connection \(conn.id) is not open") }
        try conn.ping()
    }
}

@_cdecl("orc_conn_id")
public func orc_conn_id(_ c: OpaquePointer?) -> UInt64 { withConn(c, 0) { $0.id } }

@_cdecl("orc_conn_buffered_amount")
public func orc_conn_buffered_amount(_ c: OpaquePointer?) -> Int { withConn(c, 0) { $0.bufferedAmount } }

@_cdecl("orc_conn_stats")
public func orc_conn_stats(_ c: OpaquePointer?, _ out: UnsafeMutablePointer<orc_conn_stats_t>?) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let conn = try handle(c, Connection.self, "conn")
        try required(out, "out").pointee = cStats(conn.stats, reconnects: 0)
    }
}

@_cdecl("orc_conn_path")
public func orc_conn_path(_ c: OpaquePointer?) -> UnsafePointer<CChar>? {
    withConn(c, nil) { ($0.attachment as? ConnStrings).map { UnsafePointer($0.path) } }
}

@_cdecl("orc_conn_subprotocol")
public func orc_conn_subprotocol(_ c: OpaquePointer?) -> UnsafePointer<CChar>? {
    withConn(c, nil) { ($0.attachment as? ConnStrings)?.subprotocol.map { UnsafePointer($0) } }
}

@_cdecl("orc_conn_remote_address")
public func orc_conn_remote_address(_ c: OpaquePointer?) -> UnsafePointer<CChar>? {
    withConn(c, nil) { ($0.attachment as? ConnStrings).map { UnsafePointer($0.remote) } }
}

@_cdecl("orc_conn_set_user_data")
public func orc_conn_set_user_data(_ c: OpaquePointer?, _ ud: UnsafeMutableRawPointer?) {
    withConn(c, ()) { $0.userData.store(UInt(bitPattern: ud), ordering: .releasing) }
}

@_cdecl("orc_conn_user_data")
public func orc_conn_user_data(_ c: OpaquePointer?) -> UnsafeMutableRawPointer? {
    withConn(c, nil) { UnsafeMutableRawPointer(bitPattern: $0.userData.load(ordering: .acquiring)) }
}

@_cdecl("orc_conn_retain")
public func orc_conn_retain(_ c: OpaquePointer?) -> OpaquePointer? {
    guard let c else { return nil }
    _ = (unmanaged(c) as Unmanaged<Connection>).retain()
    return c
}

@_cdecl("orc_conn_release")
public func orc_conn_release(_ c: OpaquePointer?) {
    guard let c else { return }
    (unmanaged(c) as Unmanaged<Connection>).release()
}

@_cdecl("orc_msg_connection_id")
public func orc_msg_connection_id(_ m: OpaquePointer?) -> UInt64 {
    guard let m else { return 0 }
    return (unmanaged(m) as Unmanaged<Message>)._withUnsafeGuaranteedRef { $0.connectionId }
}
