import CPQ
import CUV
import Glibc
import OrchestraCore
import OrchestraNet
import Synchronization

/// One PostgreSQL connection driven by libpq from a `Runtime`'s libuv loop: no thread of its
/// own, no thread per query, and no libpq call that blocks on the I/O thread.
///
/// - Connecting: `PQconnectStartParams`/`PQconnectPoll` under a `uv_poll_t` on `PQsocket`
///   (a new poll handle for every step: libpq may close the socket and open another, which can
///   get the same descriptor number). A host name is resolved first with `uv_getaddrinfo` on
///   libuv's thread pool and handed to libpq as `hostaddr`, because libpq's own resolution
///   blocks. `connectTimeoutMs` bounds an attempt.
/// - Statements: the connection runs in pipeline mode and non-blocking. Each `query` is sent
///   as soon as it is called (at most `maxInFlight` statements sent and not yet answered; the
///   rest wait in order; those issued by completions go out together after them) with
///   `PQsendQueryParams`, or `PQsendQueryPrepared` once its text was prepared on this
///   connection, then a pipeline sync; `PQflush` runs again when the socket is writable.
///   Completions run on the I/O thread in the order the statements were sent.
/// - Transactions: `transaction` sends its statements with a single sync. PostgreSQL runs the
///   statements between two syncs as one implicit transaction, committed at the sync: that is
///   `BEGIN ... COMMIT`, and on an error it rolls back and skips the rest without leaving the
///   session in an aborted transaction block, as an explicit `BEGIN ... COMMIT` would (which
///   would fail every statement pipelined behind it until a `ROLLBACK`).
/// - `LISTEN`: `listen(channel)`; notifications reach `onNotification` after each read
///   (`PQnotifies`), and the channels are listened to again after a reconnect.
/// - A broken connection fails the statements in flight (`.connectionLost`) and the queued ones
///   (`.notConnected`), then `onConnectionLost` runs; `reconnect` tries again with backoff.
/// - `close()` fails what is pending with `.closed`, closes the poll handle and the
///   connection. The runtime's shutdown does the same for a client still open.
///
/// Threads: any thread may call the methods; work is posted to the I/O thread (done at once
/// when called there: the hub calls from its loop). Completions and handlers run on the I/O
/// thread, except that a call made after the runtime shut down completes on the calling
/// thread with `.closed`. Set the handlers before `connect`, or on the I/O thread.
public final class PostgresClient: @unchecked Sendable {
    public struct Options: Sendable {
        /// A libpq connection string: `postgresql://user:password@127.0.0.1:5432/db` or
        /// `host=... port=... dbname=...`. Several comma-separated hosts are passed to libpq as
        /// they are (libpq resolves those itself, blocking: give them as IP addresses). TLS
        /// (`sslmode=require`) is not tested with this client yet: a record OpenSSL read ahead
        /// of what libpq asked for could wait until the socket is readable again.
        public var conninfo: String
        /// Statements sent and not yet answered; further ones wait in order. A transaction
        /// larger than this is sent alone.
        public var maxInFlight: Int = 1024
        /// One connection attempt's limit (resolving the name included).
        public var connectTimeoutMs: UInt64 = 10_000
        /// Prepare each statement text (with its parameter types) on first use and run it by
        /// name afterwards: the server parses and plans it once.
        public var prepareStatements: Bool = true
        /// Prepared texts kept per connection; later new texts run unprepared.
        public var maxPreparedStatements: Int = 256
        /// `reconnect` waits this long after the first failed attempt, doubling up to the max.
        public var reconnectInitialDelayMs: UInt64 = 100
        public var reconnectMaxDelayMs: UInt64 = 5_000

        public init(_ conninfo: String) { self.conninfo = conninfo }
    }

    public enum State: UInt8, Sendable {
        /// Not connected yet, or the connection was lost (or an attempt failed).
        case disconnected
        case connecting
        case connected
        case closed
    }

    public typealias Completion = (Result<PostgresResult, PostgresError>) -> Void
    public typealias TransactionCompletion = ([Result<PostgresResult, PostgresError>]) -> Void
    public typealias ConnectCompletion = (Result<Void, PostgresError>) -> Void

    public let runtime: Runtime
    public let options: Options

    /// A notification on a channel this connection listens on.
    public var onNotification: ((PostgresNotification) -> Void)?
    /// The connection broke (after the pending statements were failed).
    public var onConnectionLost: ((PostgresError) -> Void)?
    /// A NOTICE or WARNING the server sent (dropped when nil).
    public var onNotice: ((String) -> Void)?

    // Readable from any thread.
    private let stateShared = Atomic<UInt8>(State.disconnected.rawValue)
    private let inFlightShared = Atomic<Int>(0)
    private let queuedShared = Atomic<Int>(0)
    private let highWaterShared = Atomic<Int>(0)

    // MARK: I/O thread state
    private var state = State.disconnected
    private var conn: OpaquePointer? = nil
    /// The server process of the connection (0 while not connected): notifications it sent
    /// itself carry it. I/O thread.
    public var backendPID: Int32 { conn.map { PQbackendPID($0) } ?? 0 }
    private var poll: UnsafeMutablePointer<uv_poll_t>? = nil
    private var pollEvents: Int32 = 0
    /// Units waiting to be sent, in order.
    private var queue = PGFifo<PGUnit>()
    /// What the server will answer, in order: one entry per PQsend* call and per sync.
    private var expected = PGFifo<PGExpect>()
    /// The head of `expected` received a result (its NULL ends it).
    private var headAnswered = false
    private var inFlight = 0
    /// Completions are being delivered: statements they issue wait for the pump after them.
    private var delivering = false
    /// Prepared statement texts by key (text + parameter types).
    private var prepared: [String: PGPrepared] = [:]
    private var nextPreparedName = 0
    /// Channels listened to (in the order first asked), listened to again on reconnect.
    private var channels: [String] = []
    private var connectWaiters: [ConnectCompletion] = []
    private var closeWaiters: [() -> Void] = []
    /// Handles being closed (poll handles); close waiters run when it reaches zero.
    private var closingHandles = 0
    private var attempt: UInt64 = 0
    private var connectTimer: UInt64? = nil
    private var retryTimer: UInt64? = nil
    private var attemptsLeft = 0
    private var retryDelayMs: UInt64 = 0
    private var registered = false
    /// The server's last FATAL message (why it is closing), for the loss report.
    private var lastFatal: PostgresError? = nil
    /// Reused for every statement's parameters.
    private var paramBytes: [UInt8] = []
    private var paramLengths: [Int32] = []
    private var paramOffsets: [Int] = []
    private var paramTypes: [UInt32] = []
    private var paramFormats: [Int32] = []
    private var paramPointers: [UnsafePointer<CChar>?] = []

    public init(runtime: Runtime, options: Options) {
        self.runtime = runtime
        self.options = options
    }

    /// The state as any thread sees it.
    public var currentState: State { State(rawValue: stateShared.load(ordering: .acquiring)) ?? .closed }
    /// Statements sent and not yet answered.
    public var inFlightCount: Int { inFlightShared.load(ordering: .relaxed) }
    /// Statements waiting to be sent.
    public var queuedCount: Int { queuedShared.load(ordering: .relaxed) }
    /// The most statements that were ever in flight at once.
    public var inFlightHighWater: Int { highWaterShared.load(ordering: .relaxed) }

    // MARK: Public API

    /// Connects (one attempt). `done` runs on the I/O thread. Statements issued while
    /// connecting wait and go out once connected (or fail with the attempt's error).
    public func connect(_ done: @escaping ConnectCompletion) {
        onIO(fail: { done(.failure($0)) }) { [self] in startConnecting(attempts: 1, done) }
    }

    /// After a lost connection or a failed attempt: tries to connect up to `maxAttempts` times,
    /// waiting `reconnectInitialDelayMs` after the first failure and twice as long after each
    /// next one (at most `reconnectMaxDelayMs`). `done` runs once: connected, the last
    /// attempt's error, or `.closed`. At once with success when connected.
    public func reconnect(maxAttempts: Int = Int.max, _ done: @escaping ConnectCompletion) {
        onIO(fail: { done(.failure($0)) }) { [self] in startConnecting(attempts: max(1, maxAttempts), done) }
    }

    /// Runs one statement in a transaction of its own. Statements run in the order issued.
    public func query(_ sql: String, _ parameters: [PostgresValue] = [], _ done: @escaping Completion) {
        let unit = PGUnit([PostgresStatement(sql, parameters)], transaction: false) { done($0[0]) }
        submit(unit)
    }

    public func query(_ statement: PostgresStatement, _ done: @escaping Completion) {
        submit(PGUnit([statement], transaction: false) { done($0[0]) })
    }

    /// Runs the statements as one transaction (one sync): all commit or none does. `done`
    /// gets one result per statement; when one fails, it carries the server's error, the ones
    /// after it fail as `.aborted` (not run) and the ones before it as `.aborted` (rolled back).
    public func transaction(_ statements: [PostgresStatement], _ done: @escaping TransactionCompletion) {
        if statements.isEmpty {
            onIO(fail: { _ in done([]) }) { done([]) }
            return
        }
        submit(PGUnit(statements, transaction: true, done))
    }

    /// `LISTEN channel`: `onNotification` receives what is sent to it. The name must be a plain
    /// lower-case identifier (`[a-z_][a-z0-9_]*`, at most 63 bytes), the form `pg_notify` uses
    /// as it is. The channel is listened to again after a reconnect.
    public func listen(_ channel: String, _ done: @escaping Completion) {
        channelCommand("LISTEN", channel, done) { [self] ok in
            if ok && !channels.contains(channel) { channels.append(channel) }
        }
    }

    /// `UNLISTEN channel` (see `listen`).
    public func unlisten(_ channel: String, _ done: @escaping Completion) {
        channelCommand("UNLISTEN", channel, done) { [self] _ in channels.removeAll { $0 == channel } }
    }

    /// `verb channel` once the name is checked (an identifier, not a value: LISTEN takes no
    /// parameters); `after` runs on the I/O thread before `done`, told whether it succeeded.
    private func channelCommand(_ verb: String, _ channel: String, _ done: @escaping Completion,
                                after: @escaping (Bool) -> Void) {
        guard PostgresClient.isPlainIdentifier(channel) else {
            let e = PostgresError(.invalidArgument, "\(verb): channel \"\(channel)\" is not a plain lower-case identifier ([a-z_][a-z0-9_]*, at most 63 bytes)")
            onIO(fail: { done(.failure($0)) }) { done(.failure(e)) }
            return
        }
        query(verb + " " + channel) { r in
            if case .success = r { after(true) } else { after(false) }
            done(r)
        }
    }

    /// Fails every pending statement with `.closed`, closes the connection and its poll
    /// handle; `done` runs on the I/O thread once the handle is closed. Idempotent.
    public func close(_ done: (() -> Void)? = nil) {
        onIO(fail: { _ in done?() }) { [self] in
            if let done { closeWaiters.append(done) }
            shutDown(reason: "the PostgreSQL client was closed")
        }
    }

    // MARK: Dispatch

    /// Runs `body` on the I/O thread (at once when there); calls `fail` on this thread when
    /// the runtime no longer takes work.
    private func onIO(fail: (PostgresError) -> Void, _ body: @escaping () -> Void) {
        do {
            try runtime.onIOThread(body)
        } catch {
            fail(PostgresError(.closed, "PostgreSQL client: the runtime \"\(runtime.name)\" has shut down"))
        }
    }

    private func submit(_ unit: PGUnit) {
        for s in unit.statements {
            do throws(PostgresError) { try s.validate() } catch {
                let e = error
                let n = unit.statements.count
                onIO(fail: { unit.complete(Array(repeating: .failure($0), count: n)) }) {
                    unit.complete(Array(repeating: .failure(e), count: n))
                }
                return
            }
        }
        onIO(fail: { e in unit.complete(Array(repeating: .failure(e), count: unit.statements.count)) }) { [self] in
            switch state {
            case .connected, .connecting:
                queue.append(unit)
                if !delivering { pump() }   // (else once the completions were delivered)
            case .disconnected:
                unit.fail(PostgresError(.notConnected, "not sent: the PostgreSQL client is not connected"))
            case .closed:
                unit.fail(PostgresError(.closed, "not sent: the PostgreSQL client is closed"))
            }
        }
    }

    private func setState(_ s: State) {
        state = s
        stateShared.store(s.rawValue, ordering: .releasing)
    }

    private func publishCounts() {
        inFlightShared.store(inFlight, ordering: .relaxed)
        queuedShared.store(queue.count, ordering: .relaxed)
        if inFlight > highWaterShared.load(ordering: .relaxed) { highWaterShared.store(inFlight, ordering: .relaxed) }
    }

    // MARK: Connecting

    private func startConnecting(attempts: Int, _ done: @escaping ConnectCompletion) {
        switch state {
        case .closed:
            done(.failure(PostgresError(.closed, "the PostgreSQL client is closed")))
        case .connected:
            done(.success(()))
        case .connecting:
            connectWaiters.append(done)
            attemptsLeft = max(attemptsLeft, attempts - 1)
        case .disconnected:
            if !registered {
                registered = true
                runtime.addEndpoint(ObjectIdentifier(self)) { [self] in
                    shutDown(reason: "the runtime \"\(runtime.name)\" shut down")
                }
            }
            connectWaiters.append(done)
            attemptsLeft = attempts - 1
            retryDelayMs = options.reconnectInitialDelayMs
            if let t = retryTimer { retryTimer = nil; try? runtime.stopTimer(t) }
            beginAttempt()
        }
    }

    private func beginAttempt() {
        attempt &+= 1
        let me = attempt
        setState(.connecting)
        do {
            connectTimer = try runtime.startTimer(delayMs: options.connectTimeoutMs, repeatMs: 0, fire: { [weak self] in
                guard let self, self.attempt == me, self.state == .connecting else { return }
                self.connectTimer = nil
                self.attemptFailed(PostgresError(.timedOut, "could not connect to PostgreSQL within \(self.options.connectTimeoutMs) ms (\(self.target))"))
            })
        } catch {
            attemptFailed(PostgresError(.closed, "the runtime \"\(runtime.name)\" has shut down"))
            return
        }
        let hostInfo: HostInfo
        do throws(PostgresError) { hostInfo = try PostgresClient.hostInfo(options.conninfo) } catch {
            attemptsLeft = 0
            attemptFailed(error)
            return
        }
        guard let name = hostInfo.nameToResolve else {
            startLibpq(hostaddr: nil)
            return
        }
        let req = UnsafeMutablePointer<uv_getaddrinfo_t>.allocate(capacity: 1)
        let ctx = PGResolveContext(client: self, attempt: me, host: name)
        req.pointee.data = Unmanaged.passRetained(ctx).toOpaque()
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        let rc = uv_getaddrinfo(runtime.loop, req, { req, status, res in
            guard let req else { return }
            let ctx = Unmanaged<PGResolveContext>.fromOpaque(req.pointee.data).takeRetainedValue()
            req.deallocate()
            defer { if let res { uv_freeaddrinfo(res) } }
            ctx.client.resolved(ctx, status: status, res)
        }, name, nil, &hints)
        if rc != 0 {
            Unmanaged<PGResolveContext>.fromOpaque(req.pointee.data).release()
            req.deallocate()
            attemptFailed(PostgresError(.connectFailed, "could not resolve PostgreSQL host \"\(name)\": \(String(cString: uv_strerror(rc)))"))
        }
    }

    private func resolved(_ ctx: PGResolveContext, status: Int32, _ res: UnsafeMutablePointer<addrinfo>?) {
        guard ctx.attempt == attempt, state == .connecting else { return }   // timed out or closed meanwhile
        if status != 0 {
            attemptFailed(PostgresError(.connectFailed, "could not resolve PostgreSQL host \"\(ctx.host)\": \(String(cString: uv_strerror(status)))"))
            return
        }
        var addrs: [String] = []
        var p = res
        while let ai = p, addrs.count < 4 {
            var buf = [CChar](repeating: 0, count: 64)
            if ai.pointee.ai_family == AF_INET {
                ai.pointee.ai_addr.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { _ = uv_ip4_name($0, &buf, buf.count) }
            } else if ai.pointee.ai_family == AF_INET6 {
                ai.pointee.ai_addr.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { _ = uv_ip6_name($0, &buf, buf.count) }
            }
            let s = String(cString: buf)
            if !s.isEmpty && !addrs.contains(s) { addrs.append(s) }
            p = ai.pointee.ai_next
        }
        if addrs.isEmpty {
            attemptFailed(PostgresError(.connectFailed, "PostgreSQL host \"\(ctx.host)\" has no address"))
            return
        }
        // One host entry per address, so libpq tries each in turn without resolving.
        startLibpq(hostaddr: (Array(repeating: ctx.host, count: addrs.count).joined(separator: ","),
                              addrs.joined(separator: ",")))
    }

    /// Defaults placed before the connection string, which overrides them: a peer that
    /// vanishes without closing (a dead host, a cut link) is noticed within about a minute
    /// while idle (TCP keepalives) and within 30 s while sent data waits for its
    /// acknowledgement, instead of the system's two hours and fifteen minutes.
    static let connectionDefaults: [(String, String)] = [
        ("keepalives", "1"), ("keepalives_idle", "30"), ("keepalives_interval", "10"),
        ("keepalives_count", "3"), ("tcp_user_timeout", "30000"),
    ]

    private func startLibpq(hostaddr: (hosts: String, addrs: String)?) {
        var keys = PostgresClient.connectionDefaults.map { $0.0 } + ["dbname", "fallback_application_name"]
        var values = PostgresClient.connectionDefaults.map { $0.1 } + [options.conninfo, "orchestra"]
        if let h = hostaddr {
            keys += ["host", "hostaddr"]
            values += [h.hosts, h.addrs]
        }
        let c: OpaquePointer? = withCStringArray(keys) { k in
            withCStringArray(values) { v in PQconnectStartParams(k, v, 1) }
        }
        guard let c else {
            attemptFailed(PostgresError(.connectFailed, "could not connect to PostgreSQL: libpq is out of memory"))
            return
        }
        conn = c
        PQsetNoticeReceiver(c, { arg, res in
            guard let arg, let res else { return }
            let client = Unmanaged<PostgresClient>.fromOpaque(arg).takeUnretainedValue()
            guard let handler = client.onNotice else { return }
            handler(PostgresClient.oneLine(String(cString: PQresultErrorMessage(res))))
        }, Unmanaged.passUnretained(self).toOpaque())   // the client outlives its connection
        if PQstatus(c) == CONNECTION_BAD {
            attemptFailed(PostgresError(.connectFailed, "could not connect to PostgreSQL (\(target)): \(connectionMessage())"))
            return
        }
        // As if PQconnectPoll had answered PGRES_POLLING_WRITING.
        watchNewSocket(Int32(UV_WRITABLE.rawValue))
    }

    /// During connection: one step of PQconnectPoll.
    private func connectStep() {
        guard let c = conn else { return }
        switch PQconnectPoll(c) {
        case PGRES_POLLING_OK:
            didConnect(c)
        case PGRES_POLLING_FAILED:
            attemptFailed(PostgresError(.connectFailed, "could not connect to PostgreSQL (\(target)): \(connectionMessage())"))
        case PGRES_POLLING_READING:
            watchNewSocket(Int32(UV_READABLE.rawValue))
        default:
            watchNewSocket(Int32(UV_WRITABLE.rawValue))
        }
    }

    private func didConnect(_ c: OpaquePointer) {
        if let t = connectTimer { connectTimer = nil; try? runtime.stopTimer(t) }
        guard PQsetnonblocking(c, 1) == 0, PQenterPipelineMode(c) == 1 else {
            attemptFailed(PostgresError(.connectFailed, "PostgreSQL (\(target)): cannot enter non-blocking pipeline mode: \(connectionMessage())"))
            return
        }
        watchNewSocket(Int32(UV_READABLE.rawValue))
        guard poll != nil else { return }   // (attemptFailed ran)
        setState(.connected)
        prepared.removeAll()
        lastFatal = nil
        attemptsLeft = 0
        if !channels.isEmpty {
            // Listen again before anything queued goes out.
            let again = PGUnit(channels.map { PostgresStatement("LISTEN " + $0) }, transaction: false) { _ in }
            queue.pushFront(again)
        }
        pump()
        let waiters = connectWaiters
        connectWaiters = []
        for w in waiters { w(.success(())) }
    }

    /// An attempt failed: tries again after the backoff delay while attempts are left;
    /// otherwise the waiters and the queued statements get the error.
    private func attemptFailed(_ error: PostgresError) {
        if let t = connectTimer { connectTimer = nil; try? runtime.stopTimer(t) }
        dropConnection()
        guard state == .connecting else { return }
        setState(.disconnected)
        if attemptsLeft > 0 {
            attemptsLeft -= 1
            let delay = retryDelayMs
            retryDelayMs = min(retryDelayMs * 2, options.reconnectMaxDelayMs)
            do {
                retryTimer = try runtime.startTimer(delayMs: delay, repeatMs: 0, fire: { [weak self] in
                    guard let self, self.state == .connecting, self.retryTimer != nil else { return }
                    self.retryTimer = nil
                    self.beginAttempt()
                })
                setState(.connecting)   // statements issued meanwhile keep waiting
                return
            } catch {}
        }
        attemptsLeft = 0
        let waiters = connectWaiters
        connectWaiters = []
        let queued = queue.removeAll()
        publishCounts()
        for u in queued { u.fail(PostgresError(error.kind, "not sent: \(error.message)", sqlstate: error.sqlstate)) }
        for w in waiters { w(.failure(error)) }
    }

    // MARK: The poll handle

    /// Closes the poll handle (if any) and watches the connection's current socket with a new
    /// one. libpq may have closed the old socket and opened one with the same number, which
    /// the old handle's epoll registration would not see.
    private func watchNewSocket(_ events: Int32) {
        closePoll()
        guard let c = conn else { return }
        let fd = PQsocket(c)
        guard fd >= 0 else {
            attemptOrConnectionFailed("libpq has no socket: \(connectionMessage())")
            return
        }
        let p = UnsafeMutablePointer<uv_poll_t>.allocate(capacity: 1)
        let rc = uv_poll_init_socket(runtime.loop, p, fd)
        if rc != 0 {
            p.deallocate()
            attemptOrConnectionFailed("uv_poll_init_socket: \(String(cString: uv_strerror(rc)))")
            return
        }
        p.pointee.data = Unmanaged.passRetained(self).toOpaque()
        poll = p
        pollEvents = 0
        watch(events)
    }

    private func watch(_ events: Int32) {
        guard let p = poll, events != pollEvents else { return }
        pollEvents = events
        let rc = uv_poll_start(p, events) { h, status, events in
            guard let h, let data = h.pointee.data else { return }
            Unmanaged<PostgresClient>.fromOpaque(data).takeUnretainedValue().pollEvent(status: status, events: events)
        }
        if rc != 0 { attemptOrConnectionFailed("uv_poll_start: \(String(cString: uv_strerror(rc)))") }
    }

    private func closePoll() {
        guard let p = poll else { return }
        poll = nil
        pollEvents = 0
        closingHandles += 1
        uv_close(UnsafeMutableRawPointer(p).assumingMemoryBound(to: uv_handle_t.self)) { h in
            guard let h else { return }
            let p = UnsafeMutableRawPointer(h).assumingMemoryBound(to: uv_poll_t.self)
            let client = Unmanaged<PostgresClient>.fromOpaque(p.pointee.data).takeRetainedValue()
            p.deallocate()
            client.handleClosed()
        }
    }

    private func handleClosed() {
        closingHandles -= 1
        if closingHandles == 0 && state == .closed && !closeWaiters.isEmpty {
            let waiters = closeWaiters
            closeWaiters = []
            for w in waiters { w() }
        }
    }

    private func attemptOrConnectionFailed(_ why: String) {
        if state == .connected { connectionLost(why) } else { attemptFailed(PostgresError(.connectFailed, "could not connect to PostgreSQL (\(target)): \(why)")) }
    }

    private func pollEvent(status: Int32, events: Int32) {
        switch state {
        case .connecting:
            connectStep()   // (on a poll error too: libpq reads the socket's error itself)
        case .connected:
            guard let c = conn else { return }
            if status < 0 {
                // libuv reports POLLERR (the server reset the connection: it exited with our
                // later statements unread) as EBADF and stops the handle. What the server sent
                // before that is still readable, such as the FATAL message saying why: take it,
                // then report the loss.
                var rounds = 0
                while state == .connected, let c = conn, rounds < 16, PQconsumeInput(c) != 0 {
                    processInput()
                    rounds += 1
                }
                let why = connectionMessage()
                connectionLost(why.isEmpty ? "polling the socket failed: \(String(cString: uv_strerror(status)))" : why)
                return
            }
            if events & Int32(UV_READABLE.rawValue | UV_DISCONNECT.rawValue) != 0 {
                if PQconsumeInput(c) == 0 {
                    connectionLost(connectionMessage())
                    return
                }
                processInput()
                guard state == .connected else { return }
            }
            pump(flush: true)
        case .disconnected, .closed:
            break
        }
    }

    // MARK: Sending

    /// Sends queued units while fewer than `maxInFlight` statements are in flight, then
    /// flushes (also when `flush` asks for it: the socket became writable).
    private func pump(flush: Bool = false) {
        guard state == .connected, let c = conn else { publishCounts(); return }
        var sent = 0
        var corked = false
        while let u = queue.first {
            if inFlight > 0 && inFlight + u.statements.count > options.maxInFlight { break }
            _ = queue.removeFirst()
            inFlight += u.statements.count
            if sent == 1 && !corked {
                // Before libpq 17 every sync writes at once: several units in one turn would
                // each be a packet of their own. Corked, they leave as full segments when
                // the socket is uncorked below (one system call each remains).
                corked = setCork(c, true)
            }
            if !send(u, c) {
                connectionLost(connectionMessage())
                return
            }
            sent += 1
        }
        if corked { _ = setCork(c, false) }
        publishCounts()
        if sent > 0 || flush || pollEvents & Int32(UV_WRITABLE.rawValue) != 0 {
            let r = PQflush(c)
            if r < 0 {
                connectionLost(connectionMessage())
                return
            }
            watch(Int32(UV_READABLE.rawValue) | (r == 1 ? Int32(UV_WRITABLE.rawValue) : 0))
        }
    }

    /// TCP_CORK on the connection's socket (false for a Unix socket, or on failure).
    private func setCork(_ c: OpaquePointer, _ on: Bool) -> Bool {
        var v: Int32 = on ? 1 : 0
        return setsockopt(PQsocket(c), Int32(IPPROTO_TCP), TCP_CORK, &v, socklen_t(MemoryLayout<Int32>.size)) == 0
    }

    /// Puts one unit in libpq's output buffer: each statement (prepared first when new), then
    /// a sync. False when libpq refused (the connection broke).
    private func send(_ u: PGUnit, _ c: OpaquePointer) -> Bool {
        for (i, st) in u.statements.enumerated() {
            encodeParameters(st.parameters)
            var name: String? = nil
            if options.prepareStatements {
                let key = preparedKey(st)
                switch prepared[key] {
                case .ready(let n)?:
                    name = n
                case .pending?:
                    break   // its PREPARE is still in flight: run this one unprepared
                case nil:
                    if prepared.count < options.maxPreparedStatements {
                        let n = "orc_\(nextPreparedName)"
                        nextPreparedName += 1
                        let ok = paramTypes.withUnsafeBufferPointer { types in
                            PQsendPrepare(c, n, st.sql, Int32(st.parameters.count), types.baseAddress) != 0
                        }
                        if !ok { return false }
                        prepared[key] = .pending(n)
                        expected.append(.prepare(u, i, key, n))
                        name = n
                    }
                }
            }
            let ok: Bool = paramBytes.withUnsafeBufferPointer { bytes in
                let base = UnsafeRawPointer(bytes.baseAddress!).assumingMemoryBound(to: CChar.self)
                paramPointers.removeAll(keepingCapacity: true)
                for (j, off) in paramOffsets.enumerated() {
                    paramPointers.append(paramLengths[j] < 0 ? nil : base + off)
                }
                let n = Int32(st.parameters.count)
                return paramPointers.withUnsafeBufferPointer { values in
                    paramLengths.withUnsafeBufferPointer { lengths in
                        paramFormats.withUnsafeBufferPointer { formats in
                            if let name {
                                return PQsendQueryPrepared(c, name, n, values.baseAddress, lengths.baseAddress,
                                                           formats.baseAddress, 1) != 0
                            }
                            return paramTypes.withUnsafeBufferPointer { types in
                                PQsendQueryParams(c, st.sql, n, types.baseAddress, values.baseAddress,
                                                  lengths.baseAddress, formats.baseAddress, 1) != 0
                            }
                        }
                    }
                }
            }
            if !ok { return false }
            expected.append(.statement(u, i))
        }
        if orc_pq_pipeline_sync(c) == 0 { return false }   // (pump flushes)
        expected.append(.sync(u))
        return true
    }

    private func preparedKey(_ st: PostgresStatement) -> String {
        if st.parameters.isEmpty { return st.sql }
        var key = st.sql
        key.append("\u{0}")
        for p in st.parameters { key.append(String(p.typeOID)); key.append(",") }
        return key
    }

    /// Fills the reused parameter arrays (binary format; one spare byte so that an empty
    /// value still has an address: a NULL pointer would mean SQL NULL).
    private func encodeParameters(_ params: [PostgresValue]) {
        paramBytes.removeAll(keepingCapacity: true)
        paramLengths.removeAll(keepingCapacity: true)
        paramOffsets.removeAll(keepingCapacity: true)
        paramTypes.removeAll(keepingCapacity: true)
        paramFormats.removeAll(keepingCapacity: true)
        for p in params {
            paramOffsets.append(paramBytes.count)
            paramLengths.append(p.encode(into: &paramBytes))
            paramTypes.append(p.typeOID)
            paramFormats.append(1)
        }
        paramBytes.append(0)
    }

    // MARK: Receiving

    /// After a read: takes every complete result (never calling PQgetResult while libpq is
    /// busy, which would block), delivers the notifications, then the completed units in order.
    private func processInput() {
        guard let c = conn else { return }
        var completed: [PGUnit] = []
        var nulls = 0
        while let head = expected.first, PQstatus(c) == CONNECTION_OK {
            if PQisBusy(c) != 0 { break }
            guard let r = PQgetResult(c) else {
                // The end of the head statement's results.
                nulls += 1
                if nulls > 1 { break }   // nothing more is ready
                switch head {
                case .prepare, .statement:
                    if headAnswered {
                        _ = expected.removeFirst()
                        headAnswered = false
                        nulls = 0
                    }
                case .sync:
                    break
                }
                continue
            }
            nulls = 0
            headAnswered = true
            let status = PQresultStatus(r)
            switch head {
            case .prepare(let u, let i, let key, let name):
                if status == PGRES_COMMAND_OK {
                    prepared[key] = .ready(name)
                } else {
                    prepared[key] = nil
                    if status == PGRES_FATAL_ERROR && u.results[i] == nil {
                        u.results[i] = .failure(serverError(r, u, i))
                    }
                }
                PQclear(r)
            case .statement(let u, let i):
                switch status {
                case PGRES_TUPLES_OK, PGRES_COMMAND_OK, PGRES_EMPTY_QUERY:
                    if u.results[i] == nil { u.results[i] = .success(PostgresResult(r)) } else { PQclear(r) }
                case PGRES_FATAL_ERROR:
                    if u.results[i] == nil { u.results[i] = .failure(serverError(r, u, i)) }
                    PQclear(r)
                case PGRES_PIPELINE_ABORTED:
                    PQclear(r)   // (deliver names the failed statement)
                default:
                    if u.results[i] == nil {
                        u.results[i] = .failure(PostgresError(.server, "\(u.describe(i)): unexpected result \(String(cString: PQresStatus(status))) (COPY is not supported)"))
                    }
                    PQclear(r)
                }
            case .sync(let u):
                if status == PGRES_PIPELINE_SYNC {
                    PQclear(r)
                    _ = expected.removeFirst()
                    headAnswered = false
                    inFlight -= u.statements.count
                    completed.append(u)
                } else {
                    // An error at commit (a deferred constraint): nothing of the unit committed.
                    if status == PGRES_FATAL_ERROR && u.commitError == nil {
                        u.commitError = serverError(r, u, nil)
                    }
                    PQclear(r)
                }
            }
        }
        if PQstatus(c) == CONNECTION_OK {
            var notes: [PostgresNotification] = []
            while let n = PQnotifies(c) {
                notes.append(PostgresNotification(channel: String(cString: n.pointee.relname),
                                                  payload: String(cString: n.pointee.extra),
                                                  senderPID: n.pointee.be_pid))
                PQfreemem(n)
            }
            for n in notes { onNotification?(n) }
        }
        publishCounts()
        // Statements the completions issue go out together afterwards (pollEvent pumps).
        delivering = true
        for u in completed { u.deliver() }
        delivering = false
        if state == .connected, let c2 = conn, PQstatus(c2) != CONNECTION_OK {
            connectionLost(connectionMessage())
        }
    }

    private func serverError(_ r: OpaquePointer, _ u: PGUnit, _ index: Int?) -> PostgresError {
        let sqlstate = PQresultErrorField(r, orc_pq_diag_sqlstate()).map { String(cString: $0) }
        let severity = PQresultErrorField(r, orc_pq_diag_severity()).map { String(cString: $0) } ?? "ERROR"
        let primary = PQresultErrorField(r, orc_pq_diag_message_primary()).map { String(cString: $0) }
            ?? PostgresClient.oneLine(String(cString: PQresultErrorMessage(r)))
        let detail = PQresultErrorField(r, orc_pq_diag_message_detail()).map { " (\(String(cString: $0)))" } ?? ""
        let where_ = index.map { u.describe($0) } ?? "the commit of \(u.describe(nil))"
        let e = PostgresError(.server, "PostgreSQL \(severity) \(sqlstate ?? "?????") in \(where_): \(primary)\(detail)",
                              sqlstate: sqlstate)
        if severity == "FATAL" || severity == "PANIC" { lastFatal = e }
        return e
    }

    // MARK: Loss and close

    /// The connection broke: fails what was sent (`.connectionLost`) and what waited
    /// (`.notConnected`), in order, then tells `onConnectionLost`.
    private func connectionLost(_ why: String) {
        guard state == .connected else { return }
        var reason = why.isEmpty ? "the connection closed" : why
        if let f = lastFatal { reason = "\(f.message); \(reason)" }
        let sqlstate = lastFatal?.sqlstate
        dropConnection()
        setState(.disconnected)
        let (sent, queued) = takePending()
        for u in sent {
            u.fail { i in PostgresError(.connectionLost, "connection to PostgreSQL lost with \(u.describe(i)) in flight: \(reason)", sqlstate: sqlstate) }
        }
        for u in queued {
            u.fail(PostgresError(.notConnected, "not sent: the connection to PostgreSQL was lost: \(reason)", sqlstate: sqlstate))
        }
        onConnectionLost?(PostgresError(.connectionLost, "connection to PostgreSQL lost: \(reason)", sqlstate: sqlstate))
    }

    /// Closes the poll handle (first: libpq closes the socket) and the libpq connection.
    private func dropConnection() {
        closePoll()
        if let c = conn {
            conn = nil
            PQfinish(c)
        }
    }

    /// Units sent (in order) and waiting; empties both lists.
    private func takePending() -> ([PGUnit], [PGUnit]) {
        var sent: [PGUnit] = []
        for e in expected.removeAll() { if case .sync(let u) = e { sent.append(u) } }
        headAnswered = false
        inFlight = 0
        let queued = queue.removeAll()
        publishCounts()
        return (sent, queued)
    }

    private func shutDown(reason: String) {
        if state == .closed {
            if closingHandles == 0 && !closeWaiters.isEmpty {
                let waiters = closeWaiters
                closeWaiters = []
                for w in waiters { w() }
            }
            return
        }
        setState(.closed)
        if let t = connectTimer { connectTimer = nil; try? runtime.stopTimer(t) }
        if let t = retryTimer { retryTimer = nil; try? runtime.stopTimer(t) }
        attempt &+= 1
        dropConnection()
        if registered {
            registered = false
            runtime.removeEndpoint(ObjectIdentifier(self))
        }
        let (sent, queued) = takePending()
        for u in sent { u.fail { i in PostgresError(.closed, "\(reason) with \(u.describe(i)) in flight") } }
        for u in queued { u.fail(PostgresError(.closed, "not sent: \(reason)")) }
        let waiters = connectWaiters
        connectWaiters = []
        for w in waiters { w(.failure(PostgresError(.closed, reason))) }
        handleClosedIfIdle()
    }

    private func handleClosedIfIdle() {
        if closingHandles == 0 {
            closingHandles = 1
            handleClosed()
        }
    }

    // MARK: Helpers

    /// "user@host:port/db" of the connection being made (never the password).
    private var target: String {
        guard let c = conn else { return PostgresClient.describeTarget(options.conninfo) }
        let user = PQuser(c).map { String(cString: $0) } ?? ""
        let host = PQhost(c).map { String(cString: $0) } ?? ""
        let port = PQport(c).map { String(cString: $0) } ?? ""
        let db = PQdb(c).map { String(cString: $0) } ?? ""
        return "\(user)@\(host):\(port)/\(db)"
    }

    private func connectionMessage() -> String {
        guard let c = conn, let m = PQerrorMessage(c) else { return "" }
        return PostgresClient.oneLine(String(cString: m))
    }

    static func oneLine(_ s: String) -> String {
        var out = ""
        var space = false
        for ch in s {
            if ch == "\n" || ch == "\r" || ch == "\t" || ch == " " {
                space = !out.isEmpty
            } else {
                if space { out.append(" "); space = false }
                out.append(ch)
            }
        }
        return out
    }

    static func isPlainIdentifier(_ s: String) -> Bool {
        let u = Array(s.utf8)
        guard !u.isEmpty, u.count <= 63 else { return false }
        for (i, b) in u.enumerated() {
            let lower = b >= 0x61 && b <= 0x7a, digit = b >= 0x30 && b <= 0x39, under = b == 0x5f
            if !(lower || under || (digit && i > 0)) { return false }
        }
        return true
    }

    struct HostInfo {
        /// A single host name libpq would resolve (blocking): resolve it first.
        var nameToResolve: String?
    }

    /// Parses the connection string (URL or key=value) with libpq, without connecting.
    static func hostInfo(_ conninfo: String) throws(PostgresError) -> HostInfo {
        var err: UnsafeMutablePointer<CChar>? = nil
        guard let opts = PQconninfoParse(conninfo, &err) else {
            let msg = err.map { oneLine(String(cString: $0)) } ?? "out of memory"
            if let err { PQfreemem(err) }
            throw PostgresError(.invalidArgument, "invalid PostgreSQL connection string: \(msg)")
        }
        defer { PQconninfoFree(opts) }
        var host: String? = nil
        var hostaddr: String? = nil
        var p = opts
        while let k = p.pointee.keyword {
            let key = String(cString: k)
            if key == "host", let v = p.pointee.val { host = String(cString: v) }
            if key == "hostaddr", let v = p.pointee.val { hostaddr = String(cString: v) }
            p += 1
        }
        guard let h = host, !h.isEmpty, hostaddr?.isEmpty ?? true,
              !h.hasPrefix("/"), !h.hasPrefix("@"), !h.contains(",") else { return HostInfo(nameToResolve: nil) }
        var a4 = in_addr(), a6 = in6_addr()
        if inet_pton(AF_INET, h, &a4) == 1 || inet_pton(AF_INET6, h, &a6) == 1 { return HostInfo(nameToResolve: nil) }
        return HostInfo(nameToResolve: h)
    }

    /// host:port/db of a connection string, for messages before libpq parsed it.
    static func describeTarget(_ conninfo: String) -> String {
        var err: UnsafeMutablePointer<CChar>? = nil
        guard let opts = PQconninfoParse(conninfo, &err) else {
            if let err { PQfreemem(err) }
            return "an invalid connection string"
        }
        defer { PQconninfoFree(opts) }
        var fields: [String: String] = [:]
        var p = opts
        while let k = p.pointee.keyword {
            if let v = p.pointee.val { fields[String(cString: k)] = String(cString: v) }
            p += 1
        }
        return "\(fields["user"] ?? "")@\(fields["host"] ?? ""):\(fields["port"] ?? "")/\(fields["dbname"] ?? "")"
    }
}

// MARK: - Units and expected results

/// Statements sent with one sync (one statement, or a transaction), and their completion.
fileprivate final class PGUnit {
    let statements: [PostgresStatement]
    let transaction: Bool
    let complete: ([Result<PostgresResult, PostgresError>]) -> Void
    var results: [Result<PostgresResult, PostgresError>?]
    var commitError: PostgresError? = nil

    init(_ statements: [PostgresStatement], transaction: Bool,
         _ complete: @escaping ([Result<PostgresResult, PostgresError>]) -> Void) {
        self.statements = statements
        self.transaction = transaction
        self.complete = complete
        results = Array(repeating: nil, count: statements.count)
    }

    /// `statement "..."` or `statement 2 of 3 "..."` of a transaction; the whole for nil.
    func describe(_ i: Int?) -> String {
        guard let i else {
            return statements.count == 1 ? "statement \"\(statements[0].excerpt)\"" : "a transaction of \(statements.count) statements"
        }
        if statements.count == 1 { return "statement \"\(statements[i].excerpt)\"" }
        return "statement \(i + 1) of \(statements.count) \"\(statements[i].excerpt)\""
    }

    func fail(_ e: PostgresError) { complete(Array(repeating: .failure(e), count: statements.count)) }
    func fail(_ e: (Int) -> PostgresError) { complete((0..<statements.count).map { .failure(e($0)) }) }

    /// At the sync: the results, or when a statement (or the commit) failed, its error and
    /// `.aborted` for the others.
    func deliver() {
        var cause: (index: Int?, error: PostgresError)? = commitError.map { (nil, $0) }
        if cause == nil {
            for (i, r) in results.enumerated() {
                if case .failure(let e)? = r { cause = (i, e); break }
            }
        }
        guard let cause else {
            complete(results.enumerated().map { i, r in
                r ?? .failure(PostgresError(.server, "\(describe(i)): the server sent no result"))
            })
            return
        }
        let why = "\(cause.index.map { describe($0) } ?? "the commit") failed: \(cause.error.message)"
        complete((0..<statements.count).map { i in
            if i == cause.index { return .failure(cause.error) }
            if let f = cause.index, i > f {
                return .failure(PostgresError(.aborted, "\(describe(i)) was not run: \(why)", sqlstate: cause.error.sqlstate))
            }
            return .failure(PostgresError(.aborted, "\(describe(i)) was rolled back: \(why)", sqlstate: cause.error.sqlstate))
        })
    }
}

/// What the server answers next, in the order the calls were made.
fileprivate enum PGExpect {
    case prepare(PGUnit, Int, String, String)   // unit, statement index, cache key, name
    case statement(PGUnit, Int)
    case sync(PGUnit)
}

fileprivate enum PGPrepared {
    case pending(String)
    case ready(String)
}

fileprivate final class PGResolveContext {
    let client: PostgresClient
    let attempt: UInt64
    let host: String
    init(client: PostgresClient, attempt: UInt64, host: String) {
        self.client = client
        self.attempt = attempt
        self.host = host
    }
}

/// A FIFO over an array with a moving head (amortised O(1) at both ends used here).
fileprivate struct PGFifo<T> {
    private var items: [T?] = []
    private var head = 0

    var isEmpty: Bool { head == items.count }
    var count: Int { items.count - head }
    var first: T? { head < items.count ? items[head] : nil }

    mutating func append(_ x: T) { items.append(x) }

    mutating func pushFront(_ x: T) {
        if head > 0 {
            head -= 1
            items[head] = x
        } else {
            items.insert(x, at: 0)
        }
    }

    mutating func removeFirst() -> T? {
        guard head < items.count else { return nil }
        let x = items[head]
        items[head] = nil
        head += 1
        if head == items.count {
            items.removeAll(keepingCapacity: true)
            head = 0
        } else if head >= 1024 && head * 2 >= items.count {
            items.removeFirst(head)
            head = 0
        }
        return x
    }

    mutating func removeAll() -> [T] {
        let all = items[head...].compactMap { $0 }
        items.removeAll(keepingCapacity: true)
        head = 0
        return all
    }
}

/// Calls `body` with a NULL-terminated array of C strings (libpq's keyword/value arrays).
private func withCStringArray<R>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> R) -> R {
    let copies = strings.map { strdup($0) }
    defer { for c in copies { free(c) } }
    var ptrs: [UnsafePointer<CChar>?] = copies.map { $0.map { UnsafePointer($0) } }
    ptrs.append(nil)
    return ptrs.withUnsafeBufferPointer { body($0.baseAddress!) }
}
