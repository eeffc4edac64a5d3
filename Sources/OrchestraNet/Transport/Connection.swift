import CUV
import Glibc
import OrchestraCore
import Synchronization

/// What owns a connection (a server or a client) and hears about its life.
protocol ConnectionOwner: AnyObject {
    /// Server side: the request head of a connection arrived; `rest` is what followed it.
    func connection(_ c: Connection, receivedRequest head: HTTPRequestHead, rest: UnsafeMutableRawBufferPointer)
    /// Client side: the handshake was answered; the owner checks it.
    func connection(_ c: Connection, receivedResponse head: HTTPResponseHead) -> Result<ClientHandshake.Accepted, HandshakeError>
    /// The handshake completed (both sides).
    func connectionDidOpen(_ c: Connection)
    /// The socket is closed; `c` reports nothing more.
    func connectionDidClose(_ c: Connection, code: UInt16, reason: String, clean: Bool, opened: Bool)
}

/// One WebSocket connection over TCP (RFC 6455), server or client side. Everything but the
/// send side runs on its runtime's I/O thread; `send`, `close`, `ping` and the counters may be
/// used from any thread.
///
/// Reading: libuv reads into the runtime's shared buffer; the frame decoder unmasks in place;
/// a message that arrives whole in one read is handed to the handler straight from that
/// buffer, others are gathered in `assembly` (inflated there when compressed).
///
/// Writing: `send` builds the frame (compressed, masked for a client) under the send lock and
/// appends it to `outbox`; the runtime flushes dirty connections once per loop turn, one
/// writev each, and at most one write is in flight per connection.
public final class Connection: @unchecked Sendable {
    enum Phase: UInt8 { case handshake, open, closing, closed }

    public let id: UInt64
    public let role: WebSocketRole
    unowned let runtime: Runtime
    /// The owner's settings, one instance shared by all its connections.
    let settings: SharedWebSocketOptions
    var options: WebSocketOptions { _read { yield settings.value } }
    var owner: ConnectionOwner?
    public var handler: WebSocketHandler?
    /// A pointer-sized slot for the user (the C ABI's `orc_conn_set_user_data`).
    public let userData = Atomic<UInt>(0)
    /// A slot for a binding's per-connection state (the C ABI keeps C strings of the path and
    /// subprotocol there). Set on the I/O thread before `didOpen`.
    public var attachment: AnyObject? = nil

    // Handshake results, set on the I/O thread before `didOpen`.
    public internal(set) var path = ""
    public internal(set) var query: String? = nil
    public internal(set) var subprotocol: String? = nil
    public internal(set) var deflate: PerMessageDeflate.Agreement? = nil
    public internal(set) var remoteAddress = ""

    // MARK: I/O thread state
    var tcp: UnsafeMutablePointer<uv_tcp_t>? = nil
    var phase = Phase.handshake
    let phaseShared = Atomic<UInt8>(Phase.handshake.rawValue)
    /// The opening handshake's parser, boxed so that an open connection does not carry its
    /// inline size; released once the head is read.
    var requestParser: Box<HTTPRequestParser>? = nil
    /// Server: takes what follows a plain request's head while its body is read (Server).
    var bodyInput: ((UnsafeRawBufferPointer) -> Void)? = nil
    var responseParser: Box<HTTPResponseParser>? = nil
    var decoder: FrameDecoder
    var inflater: MessageInflater? = nil
    var assembly: [UInt8] = []
    var assemblyChecked = 0
    var assemblyUTF8 = UTF8StreamValidator()
    var closeSent = false
    var closeReceived = false
    var closeCode: UInt16 = 1006
    var closeReason = ""
    var opened = false
    var finished = false
    /// Monotonic ms deadlines (0: none).
    var handshakeDeadline: UInt64 = 0
    var closeDeadline: UInt64 = 0
    var pingSentAt: UInt64 = 0   // monotonic ns of the outstanding heartbeat ping, 0: none
    var lastPingAt: UInt64 = 0   // monotonic ms
    var openedAt: UInt64 = 0     // monotonic ns
    var closeAfterFlush = false
    /// We failed the connection (`fail`): what the peer still sends is read and discarded, and
    /// once our close frame is written the write side is shut down (FIN), so the close frame
    /// arrives instead of a reset. Closing with unread input makes the kernel send RST, which
    /// throws away the close frame before the peer reads it (a 1006 instead of, say, 1009).
    var lingering = false
    private var shutdownSent = false
    /// Reading is held (the delivery queue is full): bytes of the current read not yet
    /// decoded wait in `stash` until `resumeReading`.
    var held = false
    var stash: [UInt8] = []
    /// The uv_write of what the socket did not take at once; nil when none is in flight.
    var writeReq: UnsafeMutablePointer<uv_write_t>? = nil
    /// Buffers being written (frames, or for TLS the ciphertext of frames).
    var inflight: [FrameBytes] = []
    /// The frame bytes and frames the write in flight carries (what `buffered` counts).
    var inflightBytes = 0
    var inflightFrames = 0
    /// TLS (wss): frames go through it on the way out, received bytes on the way in.
    var tls: TLSSession? = nil

    // MARK: Send side (any thread, under sendLock)
    let sendLock = PthreadMutex()
    var outbox: [FrameBytes] = []
    var scheduled = false
    var sendOpen = false
    var encoder: FrameEncoder
    var deflater: MessageDeflater? = nil
    var aboveHigh = false
    let buffered = Atomic<Int>(0)

    // MARK: Counters
    let bytesIn = Counter(), bytesOut = Counter(), messagesIn = Counter(), messagesOut = Counter()
    let messagesDropped = Counter(), errors = Counter(), rtt = Counter()

    init(id: UInt64, role: WebSocketRole, runtime: Runtime, settings: SharedWebSocketOptions, owner: ConnectionOwner) {
        self.id = id
        self.role = role
        self.runtime = runtime
        self.settings = settings
        self.owner = owner
        let options = settings.value
        var cfg = FrameDecoder.Configuration(role: role)
        cfg.maxFrameSize = options.maxFrameSize
        cfg.maxMessageSize = options.maxMessageSize
        decoder = FrameDecoder(cfg)
        encoder = FrameEncoder(role: role)
        if role == .server { requestParser = Box(HTTPRequestParser()) } else { responseParser = Box(HTTPResponseParser()) }
    }

    deinit {
        writeReq?.deallocate()
    }

    /// Open, closing or closed, as any thread sees it.
    public var isOpen: Bool { phaseShared.load(ordering: .relaxed) == Phase.open.rawValue }

    func setPhase(_ p: Phase) {
        phase = p
        phaseShared.store(p.rawValue, ordering: .relaxed)
    }

    /// On the I/O thread: takes a TCP handle (initialised on the runtime's loop) and starts
    /// reading. The handle keeps the connection alive until it is closed.
    func attach(_ h: UnsafeMutablePointer<uv_tcp_t>) {
        tcp = h
        h.pointee.data = Unmanaged.passRetained(self).toOpaque()
        handshakeDeadline = monotonicMillis() + options.handshakeTimeoutMs
        uv_tcp_nodelay(h, 1)
        remoteAddress = Connection.peerName(h)
    }

    func startReading() {
        guard let h = tcp else { return }
        let rc = uv_read_start(streamOf(h), { handle, _, buf in
            let c = Connection.of(handle!)
            buf!.pointee = uv_buf_init(c.runtime.sharedReadBuffer().assumingMemoryBound(to: CChar.self),
                                       UInt32(sharedReadBufferSize))
        }, { handle, n, buf in
            Connection.of(handle!).didRead(n, buf!.pointee)
        })
        if rc != 0 { abort(reason: "uv_read_start: \(Runtime.uvError(rc))") }
    }

    static func of(_ h: UnsafeMutablePointer<uv_stream_t>) -> Connection {
        Unmanaged<Connection>.fromOpaque(h.pointee.data).takeUnretainedValue()
    }

    static func of(_ h: UnsafeMutablePointer<uv_handle_t>) -> Connection {
        Unmanaged<Connection>.fromOpaque(h.pointee.data).takeUnretainedValue()
    }

    static func peerName(_ h: UnsafeMutablePointer<uv_tcp_t>) -> String {
        var ss = sockaddr_storage()
        var len = Int32(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &ss) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { uv_tcp_getpeername(h, $0, &len) }
        }
        guard rc == 0 else { return "" }
        return SocketAddress.describe(&ss)
    }

    // MARK: Reading

    private func didRead(_ n: Int, _ buf: uv_buf_t) {
        if n < 0 {
            if n != Int(UV_EOF.rawValue) { errors.add(1) }
            // The peer closed its side (or the socket failed). A client that sent or received
            // a close frame expects this; anything else is an abnormal closure.
            if n != Int(UV_EOF.rawValue) && closeReason.isEmpty && !closeReceived {
                closeReason = "read failed: \(Runtime.uvError(Int32(n)))"
            }
            tls?.feedEOF()
            closeTCP()
            return
        }
        guard n > 0, let base = buf.base else { return }
        bytesIn.add(UInt64(n))
        let input = UnsafeMutableRawBufferPointer(start: UnsafeMutableRawPointer(base), count: n)
        if let t = tls { decrypt(t, input) } else { process(input) }
    }

    /// TLS: feeds ciphertext and processes the plaintext it yields, decrypted into the same
    /// shared buffer (its ciphertext was copied into the session first). Handshake messages
    /// and alerts the session wants to send go out with the next flush.
    private func decrypt(_ t: TLSSession, _ input: UnsafeMutableRawBufferPointer) {
        do throws(OrchestraError) {
            try t.feed(UnsafeRawBufferPointer(input))
            let r = try t.readAvailable(scratch: input) { (plain) throws(OrchestraError) in
                if phase != .closed { process(plain) }
            }
            if r == .closed && phase != .closed && !closeReceived {
                closeReason = "the peer closed TLS (close_notify) without a WebSocket close"
            }
        } catch {
            errors.add(1)
            if closeReason.isEmpty || !closeReceived { closeReason = error.message }
            closeAfterFlush = true
            if let h = tcp { uv_read_stop(streamOf(h)) }
        }
        if t.pendingCiphertextCount > 0 || closeAfterFlush { runtime.markDirty(self) }
    }

    /// Feeds received bytes (from TCP, or the plaintext TLS decrypted).
    func process(_ input: UnsafeMutableRawBufferPointer) {
        if lingering { return }
        switch phase {
        case .handshake: processHandshake(input)
        case .open, .closing: processFrames(input)
        case .closed: break
        }
    }

    private func processHandshake(_ input: UnsafeMutableRawBufferPointer) {
        if role == .server {
            guard let p = requestParser else { bodyInput?(UnsafeRawBufferPointer(input)); return }
            let r = p.value.feed(UnsafeRawBufferPointer(input))
            switch r {
            case .needMore: return
            case .error(let e):
                requestParser = nil
                respondAndClose(HTTPResponseWriter.simple(status: e.status,
                                                          body: Array((e.message + "\n").utf8)))
            case .done(let consumed):
                let head = p.value.head
                requestParser = nil
                let rest = UnsafeMutableRawBufferPointer(rebasing: input[consumed...])
                owner?.connection(self, receivedRequest: head, rest: rest)
            }
        } else {
            guard let p = responseParser else { return }
            let r = p.value.feed(UnsafeRawBufferPointer(input))
            switch r {
            case .needMore: return
            case .error(let e):
                responseParser = nil
                abort(reason: "bad handshake response: \(e.message)")
            case .done(let consumed):
                let head = p.value.head
                responseParser = nil
                switch owner?.connection(self, receivedResponse: head) {
                case .success(let acc)?:
                    subprotocol = acc.subprotocol
                    open(deflate: acc.perMessageDeflate)
                    if consumed < input.count && phase == .open {
                        processFrames(UnsafeMutableRawBufferPointer(rebasing: input[consumed...]))
                    }
                case .failure(let e)?:
                    abort(reason: "handshake refused: \(e.description)")
                case nil:
                    abort(reason: "handshake without an owner")
                }
            }
        }
    }

    /// Stops reading (I/O thread, typically inside `didReceive` when the consumer is full):
    /// nothing more is delivered until `resumeReading`. The kernel's buffer then fills and
    /// TCP flow control slows the peer down: nothing is lost.
    public func holdReading() {
        guard !held else { return }
        held = true
        if let h = tcp { uv_read_stop(streamOf(h)) }
    }

    /// Delivers what waited and reads again (I/O thread).
    public func resumeReading() {
        guard held else { return }
        held = false
        if !stash.isEmpty {
            var s = stash
            stash = []
            s.withUnsafeMutableBytes { processFrames($0) }
        }
        if !held, phase == .open || phase == .closing, !closeReceived, !closeAfterFlush { startReading() }
    }

    /// Server: writes an HTTP response (a refusal, a plain HTTP answer) and closes after it.
    func respondAndClose(_ bytes: [UInt8]) {
        closeReason = "HTTP request answered"
        enqueueRaw(bytes)
        closeAfterFlush = true
        if let h = tcp { uv_read_stop(streamOf(h)) }
        closeDeadline = monotonicMillis() + options.closeTimeoutMs
        runtime.markDirty(self)
    }

    /// Both sides: the handshake succeeded. Sets up compression and opens the send side.
    func open(deflate agreement: PerMessageDeflate.Agreement?) {
        deflate = agreement
        if let a = agreement {
            var cfg = decoder.configuration
            cfg.perMessageDeflate = true
            decoder = FrameDecoder(cfg)
            let peerBits = role == .server ? a.clientMaxWindowBits : a.serverMaxWindowBits
            let peerNoCtx = role == .server ? a.clientNoContextTakeover : a.serverNoContextTakeover
            inflater = try? MessageInflater(windowBits: Swift.max(peerBits, 9), noContextTakeover: peerNoCtx,
                                            maxMessageSize: options.maxMessageSize)
            if a.canCompress(role) {
                let ourBits = role == .server ? a.serverMaxWindowBits : a.clientMaxWindowBits
                let ourNoCtx = role == .server ? a.serverNoContextTakeover : a.clientNoContextTakeover
                let d = try? MessageDeflater(windowBits: ourBits, noContextTakeover: ourNoCtx,
                                             level: options.compressionLevel, memLevel: options.compressionMemLevel)
                sendLock.withLock { deflater = d }
            }
        }
        setPhase(.open)
        opened = true
        openedAt = monotonicNanos()
        openedAtShared.store(openedAt, ordering: .relaxed)
        lastPingAt = monotonicMillis()
        handshakeDeadline = 0
        sendLock.withLock { sendOpen = true }
        owner?.connectionDidOpen(self)
        handler?.didOpen(self)
    }

    private func processFrames(_ input: UnsafeMutableRawBufferPointer) {
        var off = 0
        while phase == .open || phase == .closing {
            if held {
                if off < input.count { stash.append(contentsOf: UnsafeRawBufferPointer(rebasing: input[off...])) }
                return
            }
            switch decoder.next(input, offset: &off) {
            case .needMore:
                return
            case .data(let chunk):
                received(chunk)
            case .ping(let payload):
                if !closeSent { sendControl(.pong, payload) }
            case .pong(let payload):
                receivedPong(payload)
            case .close(let code, let reason):
                receivedClose(code: code, reason: reason)
                return
            case .error(let e):
                fail(e)
                return
            }
        }
    }

    private func received(_ chunk: FrameDecoder.DataChunk) {
        if phase == .closing && closeSent { return }   // data after our close frame is discarded
        if chunk.compressed {
            guard let inf = inflater else { fail(WebSocketError(.protocolError, "compressed frame without permessage-deflate")); return }
            do throws(WebSocketError) {
                try inf.inflate(chunk.bytes, final: chunk.isLast, into: &assembly)
            } catch {
                fail(error)
                return
            }
            if chunk.opcode == .text {
                // Fail fast: check what was inflated so far.
                let bad: Int? = assembly.withUnsafeBytes { all in
                    assemblyUTF8.feed(UnsafeRawBufferPointer(rebasing: all[assemblyChecked...]))
                }
                assemblyChecked = assembly.count
                if bad != nil { fail(WebSocketError(.invalidPayload, "text message is not valid UTF-8")); return }
                if chunk.isLast && !assemblyUTF8.isAtBoundary {
                    fail(WebSocketError(.invalidPayload, "text message ends inside a UTF-8 sequence"))
                    return
                }
            }
            if chunk.isLast { deliverAssembly(chunk.opcode) }
            return
        }
        if chunk.isFirst && chunk.isLast {
            messagesIn.add(1)
            handler?.didReceive(self, opcode: chunk.opcode, bytes: chunk.bytes)
            return
        }
        assembly.append(contentsOf: chunk.bytes)
        if chunk.isLast { deliverAssembly(chunk.opcode) }
    }

    private func deliverAssembly(_ opcode: Opcode) {
        messagesIn.add(1)
        assembly.withUnsafeBytes { handler?.didReceive(self, opcode: opcode, bytes: $0) }
        // Keep a small buffer for the next message; give a large one back.
        if assembly.capacity > 64 * 1024 { assembly = [] } else { assembly.removeAll(keepingCapacity: true) }
        assemblyChecked = 0
        assemblyUTF8.reset()
    }

    private func receivedPong(_ payload: UnsafeRawBufferPointer) {
        var rttMicros: UInt64 = 0
        if payload.count == 8 {
            let sent = UInt64(bigEndian: payload.loadUnaligned(as: UInt64.self))
            let now = monotonicNanos()
            if sent == pingSentAt && sent != 0 && now >= sent {
                rttMicros = Swift.max((now - sent) / 1000, 1)
                rtt.set(rttMicros)
                pingSentAt = 0
            }
        }
        handler?.didReceivePong(self, rttMicros: rttMicros)
    }

    private func receivedClose(code: CloseCode?, reason: UnsafeRawBufferPointer) {
        closeReceived = true
        closeCode = code?.rawValue ?? 1005
        closeReason = String(decoding: reason, as: UTF8.self)
        if !closeSent {
            // Echo the code (RFC 6455 section 5.5.1); an empty close gets an empty one.
            sendClose(code: code, reason: [])
        }
        if let h = tcp { uv_read_stop(streamOf(h)) }
        setPhase(.closing)
        if role == .server {
            closeAfterFlush = true
            closeDeadline = monotonicMillis() + options.closeTimeoutMs
            runtime.markDirty(self)
        } else {
            // The server closes the TCP connection first (section 7.1.1); wait for it, but
            // not past the close timeout.
            if let h = tcp {
                uv_read_start(streamOf(h), { handle, _, buf in
                    let c = Connection.of(handle!)
                    buf!.pointee = uv_buf_init(c.runtime.sharedReadBuffer().assumingMemoryBound(to: CChar.self),
                                               UInt32(sharedReadBufferSize))
                }, { handle, n, _ in
                    if n < 0 { Connection.of(handle!).closeTCP() }
                })
            }
            closeDeadline = monotonicMillis() + options.closeTimeoutMs
        }
    }

    /// The peer broke the protocol: send the close code, stop reading, close after the write.
    func fail(_ e: WebSocketError) {
        errors.add(1)
        if !closeSent {
            sendClose(code: e.closeCode, reason: Array(e.message.utf8.prefix(CloseFrame.maxReasonLength)))
        }
        if !closeReceived {
            closeCode = e.closeCode.rawValue
            closeReason = e.message
        }
        lingering = true   // keep reading, and discard it, until the peer closes or the deadline
        setPhase(.closing)
        closeAfterFlush = true
        closeDeadline = monotonicMillis() + options.closeTimeoutMs
        runtime.markDirty(self)
    }

    /// Drops the connection at once (no close frame): handshake failures, dead peers.
    func abort(reason: String) {
        if closeReason.isEmpty || !closeReceived { closeReason = reason }
        closeTCP()
    }

    // MARK: Sending (any thread)

    /// Sends one text or binary message. Any thread. Throws `.closed` when the connection is
    /// not open (or closing), `.full` past `maxBuffered` (after applying the slow-consumer
    /// policy), `.invalidArgument` for a control opcode.
    public func send(_ opcode: Opcode, _ payload: UnsafeRawBufferPointer) throws(OrchestraError) -> SendStatus {
        guard opcode == .text || opcode == .binary else {
            throw OrchestraError(.invalidArgument, "send takes a text or binary opcode; use ping and close for control frames")
        }
        return try enqueue { () throws(OrchestraError) -> FrameBytes in
            if let d = deflater, payload.count >= options.compressionThreshold {
                var z: [UInt8] = []
                z.reserveCapacity(payload.count / 2 + 64)
                try d.compress(payload, into: &z)
                return z.withUnsafeBytes { buildFrame(opcode, $0, rsv1: true) }
            }
            return buildFrame(opcode, payload, rsv1: false)
        }
    }

    /// Sends prebuilt frame bytes (server broadcast). Any thread.
    public func send(shared frame: FrameBytes) throws(OrchestraError) -> SendStatus {
        guard role == .server else { throw OrchestraError(.invalidArgument, "shared frames are unmasked: server connections only") }
        return try enqueue { () throws(OrchestraError) -> FrameBytes in frame }
    }

    /// Builds a frame under the send lock (the encoder's mask keys are per connection).
    private func buildFrame(_ opcode: Opcode, _ payload: UnsafeRawBufferPointer, rsv1: Bool) -> FrameBytes {
        let f = FrameBytes(capacity: FrameEncoder.maxHeaderSize + payload.count)
        let h = encoder.writeHeader(into: f.base, opcode: opcode, fin: true, rsv1: rsv1, payloadLength: payload.count)
        if let k = h.maskKey {
            Masking.copy(from: payload, to: f.base + h.length, key: k, phase: 0)
        } else if payload.count > 0 {
            (f.base + h.length).copyMemory(from: payload.baseAddress!, byteCount: payload.count)
        }
        f.count = h.length + payload.count
        return f
    }

    /// Embedded runtimes: frames a send from outside a run of the loop may leave queued before
    /// it writes them itself (see `enqueue`).
    static let embeddedEarlyFlushFrames = 8

    private func enqueue(_ make: () throws(OrchestraError) -> FrameBytes) throws(OrchestraError) -> SendStatus {
        var schedule = false
        var queuedFrames = 0
        var policyClose: SlowConsumerPolicy? = nil
        let status: SendStatus = try sendLock.withLock { () throws(OrchestraError) -> SendStatus in
            guard sendOpen else { throw OrchestraError(.closed, "connection \(id) is not open") }
            let now = buffered.load(ordering: .relaxed)
            if now >= options.maxBuffered {
                messagesDropped.add(1)
                if options.slowConsumer != .drop {
                    sendOpen = false
                    policyClose = options.slowConsumer
                }
                throw OrchestraError(.full, "connection \(id): send buffer holds \(now) bytes (max_buffered \(options.maxBuffered)); slow consumer policy \(options.slowConsumer)")
            }
            let f = try make()
            outbox.append(f)
            queuedFrames = outbox.count
            // An atomic add, not a store of now + count: the I/O thread subtracts written
            // bytes without the lock (wrote), and a store here would undo a subtraction made
            // since the load above, leaving the count high forever (no drain ever again).
            let total = buffered.wrappingAdd(f.count, ordering: .relaxed).newValue
            if !scheduled { scheduled = true; schedule = true }
            if total > options.highWatermark { aboveHigh = true; return .aboveHighWatermark }
            return .queued
        } catchingThen: { () in
            if let p = policyClose { self.closeForSlowConsumer(p) }
        }
        if schedule { scheduleFlush() }
        // Embedded: frames sent from the host's code (not a callback of a run) go out when the
        // host next runs the loop, all in one writev. A host that sends many in one go (a
        // burst of replies) would then hold them all until the burst ends while the peer
        // idles: past a few frames, write them now, as the loop's thread (unless another
        // thread is running the loop: that run writes them).
        if queuedFrames >= Connection.embeddedEarlyFlushFrames && runtime.embedded {
            runtime.runAsLoopThreadIfIdle { [self] in flush() }
        }
        return status
    }

    private func closeForSlowConsumer(_ p: SlowConsumerPolicy) {
        let code: CloseCode = p == .close1013 ? .tryAgainLater : .policyViolation
        try? runtime.onIOThread { [self] in
            guard phase == .open else { return }
            errors.add(1)
            // The buffer is full: drop what waits and close now with the code.
            sendLock.withLock {
                let dropped = outbox.reduce(0) { $0 + $1.count }
                outbox.removeAll()
                buffered.wrappingSubtract(dropped, ordering: .relaxed)
            }
            closeCode = code.rawValue
            closeReason = "slow consumer: send buffer passed max_buffered"
            sendClose(code: code, reason: Array("slow consumer".utf8))
            closeDeadline = monotonicMillis() + options.closeTimeoutMs
            setPhase(.closing)
        }
    }

    private func scheduleFlush() {
        if runtime.isIOThread {
            runtime.markDirty(self)
        } else {
            do {
                try runtime.post { [self] in runtime.markDirty(self) }
            } catch {
                // Shutting down: the runtime closes every connection; nothing to flush.
            }
        }
    }

    /// Queues a control frame (I/O thread or under no lock held).
    func sendControl(_ opcode: Opcode, _ payload: UnsafeRawBufferPointer) {
        let schedule: Bool = sendLock.withLock {
            let f = buildFrame(opcode, UnsafeRawBufferPointer(rebasing: payload.prefix(125)), rsv1: false)
            outbox.append(f)
            buffered.wrappingAdd(f.count, ordering: .relaxed)
            if scheduled { return false }
            scheduled = true
            return true
        }
        if schedule { scheduleFlush() }
    }

    /// Queues our close frame and closes the send side (I/O thread).
    func sendClose(code: CloseCode?, reason: [UInt8]) {
        if closeSent { return }
        closeSent = true
        var payload = [UInt8](repeating: 0, count: 125)
        let n: Int = reason.withUnsafeBytes { rb in
            payload.withUnsafeMutableBytes { out in
                switch CloseFrame.writePayload(code: code, reason: rb, into: out.baseAddress!) {
                case .success(let n): return n
                case .failure: return 0
                }
            }
        }
        sendLock.withLock { sendOpen = false }
        payload.withUnsafeBytes { sendControl(.close, UnsafeRawBufferPointer(rebasing: $0[0..<n])) }
    }

    /// Starts the closing handshake with `code` (1000 by default) and a UTF-8 `reason` of at
    /// most 123 bytes. Any thread. Throws `.invalidArgument` for a code that may not be sent
    /// or a long reason; closing a connection that is already closing does nothing.
    public func close(code: UInt16 = 1000, reason: String = "") throws(OrchestraError) {
        let cc = CloseCode(code)
        guard cc.isSendable else { throw OrchestraError(.invalidArgument, "close code \(code) may not be sent (1000-1003, 1007-1014, 3000-4999)") }
        let r = Array(reason.utf8)
        guard r.count <= CloseFrame.maxReasonLength else {
            throw OrchestraError(.invalidArgument, "close reason is \(r.count) bytes; at most \(CloseFrame.maxReasonLength)")
        }
        try runtime.onIOThread { [self] in
            switch phase {
            case .handshake:
                closeReason = "closed by us before the handshake completed"
                closeTCP()
            case .open:
                closeCode = code
                closeReason = reason
                sendClose(code: cc, reason: r)
                setPhase(.closing)
                closeDeadline = monotonicMillis() + options.closeTimeoutMs
            case .closing, .closed:
                break
            }
        }
    }

    /// Sends a ping (any thread); its pong updates the RTT.
    public func ping() throws(OrchestraError) {
        try runtime.onIOThread { [self] in
            if phase == .open && !closeSent { sendHeartbeat() }
        }
    }

    private func sendHeartbeat() {
        let t = monotonicNanos()
        pingSentAt = t
        lastPingAt = t / 1_000_000
        withUnsafeBytes(of: t.bigEndian) { sendControl(.ping, $0) }
    }

    /// Raw bytes (the handshake) ahead of any frame.
    func enqueueRaw(_ bytes: [UInt8]) {
        let f = FrameBytes(capacity: bytes.count)
        bytes.withUnsafeBytes { f.base.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        f.count = bytes.count
        sendLock.withLock {
            outbox.append(f)
            buffered.wrappingAdd(f.count, ordering: .relaxed)
            scheduled = true
        }
    }

    public var bufferedAmount: Int { buffered.load(ordering: .relaxed) }

    public var stats: ConnectionStats {
        var s = ConnectionStats()
        s.bytesIn = bytesIn.value
        s.bytesOut = bytesOut.value
        s.messagesIn = messagesIn.value
        s.messagesOut = messagesOut.value
        s.messagesDropped = messagesDropped.value
        s.errors = errors.value
        s.rttMicros = rtt.value
        s.bufferedAmount = UInt64(bufferedAmount)
        let o = openedAtShared.load(ordering: .relaxed)
        if o != 0 { s.uptimeMicros = (monotonicNanos() &- o) / 1000 }
        return s
    }
    let openedAtShared = Atomic<UInt64>(0)

    // MARK: Writing (I/O thread)

    /// Writes what the outbox holds, one writev per batch, unless a write is in flight (its
    /// completion flushes again). The writev is `uv_try_write`, straight from here; only what
    /// the socket does not take at once goes to a `uv_write` (which waits for POLLOUT). A
    /// `uv_write` for every batch would cost a second syscall per batch: libuv re-arms the
    /// socket's epoll registration (epoll_ctl) each time its write queue drains.
    func flush() {
        while let h = tcp, writeReq == nil {
            sendLock.withLock {
                swap(&outbox, &inflight)
                scheduled = false
            }
            let frames = inflight.count
            let bytes = inflight.reduce(0) { $0 + $1.count }
            if let t = tls {
                // Encrypt every frame into one ciphertext buffer (plus what the handshake wants).
                do throws(OrchestraError) {
                    for f in inflight { try t.write(UnsafeRawBufferPointer(start: f.base, count: f.count)) }
                } catch {
                    errors.add(1)
                    inflight.removeAll()
                    abort(reason: error.message)
                    return
                }
                inflight.removeAll(keepingCapacity: true)
                let pending = t.pendingCiphertextCount
                if pending > 0 {
                    let c = FrameBytes(capacity: pending)
                    c.count = t.takeCiphertext(into: UnsafeMutableRawBufferPointer(start: c.base, count: pending))
                    inflight.append(c)
                }
            }
            if inflight.isEmpty {
                if bytes > 0 {   // TLS: frames taken in, held until the handshake completes
                    completed(bytes: bytes, frames: frames, wire: 0)
                    continue
                }
                if closeAfterFlush { lingering ? shutdownWrite() : closeTCP() }
                return
            }
            let count = inflight.count
            let bufs = runtime.writeBuffers(count)
            var wire = 0
            for (i, f) in inflight.enumerated() {
                bufs[i] = uv_buf_init(f.base.assumingMemoryBound(to: CChar.self), UInt32(f.count))
                wire += f.count
            }
            let n = Int(uv_try_write(streamOf(h), bufs, UInt32(count)))
            if n == wire {
                completed(bytes: bytes, frames: frames, wire: wire)
                continue   // whatever the handlers sent meanwhile
            }
            if n < 0 && n != Int(UV_EAGAIN.rawValue) {
                inflight.removeAll()
                buffered.wrappingSubtract(bytes, ordering: .relaxed)
                errors.add(1)
                abort(reason: "write failed: \(Runtime.uvError(Int32(n)))")
                return
            }
            // The socket took `n` bytes (or none): the rest goes out when it is writable.
            var first = 0
            var skip = Swift.max(n, 0)
            while skip >= Int(bufs[first].len) { skip -= Int(bufs[first].len); first += 1 }
            bufs[first].base = bufs[first].base + skip
            bufs[first].len -= skip
            inflightBytes = bytes
            inflightFrames = frames
            let req = UnsafeMutablePointer<uv_write_t>.allocate(capacity: 1)
            req.pointee.data = Unmanaged.passUnretained(self).toOpaque()
            writeReq = req
            let rc = uv_write(req, streamOf(h), bufs + first, UInt32(count - first)) { req, status in
                let c = Unmanaged<Connection>.fromOpaque(req!.pointee.data).takeUnretainedValue()
                c.wrote(status)
            }
            if rc != 0 {
                writeReq = nil
                req.deallocate()
                inflight.removeAll()
                buffered.wrappingSubtract(bytes, ordering: .relaxed)
                inflightBytes = 0
                inflightFrames = 0
                errors.add(1)
                abort(reason: "write failed: \(Runtime.uvError(rc))")
            }
            return
        }
    }

    /// A batch of `frames` frames (`bytes` bytes of them, `wire` bytes on the socket) is
    /// written: counters, the send buffer, and the drain event when it falls to the low
    /// watermark.
    private func completed(bytes: Int, frames: Int, wire: Int) {
        inflight.removeAll(keepingCapacity: inflight.count <= 64)
        let left = buffered.wrappingSubtract(bytes, ordering: .relaxed).newValue
        bytesOut.add(UInt64(wire))
        messagesOut.add(UInt64(frames))
        if left <= options.lowWatermark {
            let drained: Bool = sendLock.withLock {
                if aboveHigh { aboveHigh = false; return true }
                return false
            }
            if drained && phase == .open { handler?.didDrain(self) }
        }
    }

    /// The `uv_write` of a partly written batch is done (or cancelled by closing).
    private func wrote(_ status: Int32) {
        writeReq?.deallocate()
        writeReq = nil
        let bytes = inflightBytes, frames = inflightFrames
        inflightBytes = 0
        inflightFrames = 0
        if status < 0 {
            inflight.removeAll()
            buffered.wrappingSubtract(bytes, ordering: .relaxed)
            if status != Int32(UV_ECANCELED.rawValue) {
                errors.add(1)
                abort(reason: "write failed: \(Runtime.uvError(status))")
            }
            return
        }
        completed(bytes: bytes, frames: frames, wire: inflight.reduce(0) { $0 + $1.count })
        flush()
    }

    // MARK: Timers (the owner's sweep, I/O thread)

    /// Checks deadlines and heartbeats; `now` in monotonic ms.
    func tick(_ now: UInt64) {
        switch phase {
        case .handshake:
            if handshakeDeadline != 0 && now >= handshakeDeadline {
                abort(reason: "opening handshake timed out after \(options.handshakeTimeoutMs) ms")
            }
        case .open:
            guard options.pingIntervalMs > 0 else { return }
            if pingSentAt != 0 {
                if now >= pingSentAt / 1_000_000 + options.pongTimeoutMs {
                    closeCode = 1006
                    closeReason = "peer did not answer a ping within \(options.pongTimeoutMs) ms"
                    errors.add(1)
                    closeTCP()
                }
            } else if now >= lastPingAt + options.pingIntervalMs {
                sendHeartbeat()
            }
        case .closing:
            if closeDeadline != 0 && now >= closeDeadline {
                if closeReason.isEmpty { closeReason = "close handshake timed out" }
                closeTCP()
            }
        case .closed:
            break
        }
    }

    // MARK: Closing (I/O thread)

    /// Shuts down the write side once what was queued is written (lingering close); the read
    /// side stays open until the peer's EOF or the close deadline, then `closeTCP`.
    private func shutdownWrite() {
        guard let h = tcp, !shutdownSent else { return }
        shutdownSent = true
        let req = UnsafeMutablePointer<uv_shutdown_t>.allocate(capacity: 1)
        req.pointee.data = Unmanaged.passUnretained(self).toOpaque()   // the handle keeps self alive until its close
        let rc = uv_shutdown(req, streamOf(h)) { req, status in
            let c = Unmanaged<Connection>.fromOpaque(req!.pointee.data).takeUnretainedValue()
            req!.deallocate()
            if status < 0 && status != Int32(UV_ECANCELED.rawValue) { c.closeTCP() }
        }
        if rc != 0 {
            req.deallocate()
            closeTCP()
        }
    }

    /// Closes the socket; the handler hears `didClose` once it is closed.
    func closeTCP() {
        guard let h = tcp else { return }
        tcp = nil
        if phase != .closed { setPhase(.closing) }
        sendLock.withLock { sendOpen = false }
        let hh = UnsafeMutableRawPointer(h).assumingMemoryBound(to: uv_handle_t.self)
        if uv_is_closing(hh) != 0 { return }
        uv_close(hh) { hh in
            let h = UnsafeMutableRawPointer(hh!).assumingMemoryBound(to: uv_tcp_t.self)
            let c = Unmanaged<Connection>.fromOpaque(h.pointee.data).takeRetainedValue()
            h.deallocate()
            c.finish()
        }
    }

    private func finish() {
        guard !finished else { return }
        finished = true
        setPhase(.closed)
        sendLock.withLock {
            outbox.removeAll()
            buffered.store(0, ordering: .relaxed)
        }
        inflight.removeAll()
        assembly = []
        inflater = nil
        let clean = closeSent && closeReceived
        let owner = self.owner
        self.owner = nil
        if opened { handler?.didClose(self, code: closeCode, reason: closeReason, clean: clean) }
        owner?.connectionDidClose(self, code: closeCode, reason: closeReason, clean: clean, opened: opened)
        handler = nil
    }
}

@inline(__always) func streamOf(_ h: UnsafeMutablePointer<uv_tcp_t>) -> UnsafeMutablePointer<uv_stream_t> {
    UnsafeMutableRawPointer(h).assumingMemoryBound(to: uv_stream_t.self)
}

func monotonicMillis() -> UInt64 { monotonicNanos() / 1_000_000 }

extension PthreadMutex {
    /// `withLock` that runs `after` once the lock is released, whether `body` threw or not.
    @inline(__always)
    func withLock<R>(_ body: () throws(OrchestraError) -> R, catchingThen after: () -> Void) throws(OrchestraError) -> R {
        defer { after() }
        return try withLock(body)
    }
}

/// Text forms of socket addresses.
enum SocketAddress {
    static func describe(_ ss: UnsafePointer<sockaddr_storage>) -> String {
        var buf = [CChar](repeating: 0, count: 64)
        let raw = UnsafeRawPointer(ss)
        switch Int32(ss.pointee.ss_family) {
        case AF_INET:
            let a = raw.assumingMemoryBound(to: sockaddr_in.self)
            uv_ip4_name(a, &buf, buf.count)
            return buf.withUnsafeBufferPointer { String(cString: $0.baseAddress!) } + ":" + String(UInt16(bigEndian: a.pointee.sin_port))
        case AF_INET6:
            let a = raw.assumingMemoryBound(to: sockaddr_in6.self)
            uv_ip6_name(a, &buf, buf.count)
            return "[" + buf.withUnsafeBufferPointer { String(cString: $0.baseAddress!) } + "]:" + String(UInt16(bigEndian: a.pointee.sin6_port))
        default:
            return ""
        }
    }
}
