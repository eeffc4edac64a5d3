import Glibc
import OrchestraCore
import OrchestraNet

/// What a connection is to the hub. Kept in `Connection.attachment`; touched on the I/O thread.
final class Peer {
    enum Role { case agent, web }
    let role: Role
    let conn: Connection
    /// The wire format the peer spoke last (the hub answers in it).
    var format = WireFormat.json
    /// Set once `agent.register` succeeded, with the key it registered with.
    var agentId: String?
    var keyId = ""
    /// A web client's user, their role (the journal's, kept current by revocation checks),
    /// the generation of their token and its expiry (seconds).
    var user = ""
    var userRole = UserRole.viewer
    var tokenGeneration: Int64 = 0
    var tokenExpiry: Int64 = 0
    var sessions: Set<String> = []
    /// Sessions whose replay this watcher waits for: their live events are held until then.
    var resuming: [String: Resume] = [:]
    /// Token bucket of the rate limit.
    var tokens: Double
    var tokensAtMs: Int64
    var closing = false

    init(role: Role, conn: Connection, burst: Double, nowMs: Int64) {
        self.role = role
        self.conn = conn
        self.tokens = burst
        self.tokensAtMs = nowMs
    }

    /// Who this peer is, for the authorization check.
    var caller: Caller {
        switch role {
        case .web: return .user(name: user, role: userRole)
        case .agent:
            if let agentId { return .agent(id: agentId, keyId: keyId) }
            return .unregisteredAgent
        }
    }
}

/// A task that is not finished: its journal record and what only lives in memory.
final class LiveTask {
    var rec: TaskRecord
    /// When the agent's lease runs out (assigned and running tasks).
    var leaseDeadlineMs: Int64 = 0
    /// Accepted by the agent (the journal keeps `assigned` for both).
    var running = false
    /// Stream ordering for the current attempt.
    var nextSeq: Int64 = 0
    /// False for an attempt this hub did not hand out (found leased after a restart, or
    /// adopted from another hub): its agent has streamed before, so the first chunk that
    /// arrives here sets `nextSeq`.
    var seqKnown: Bool
    var early: [Int64: Message] = [:]
    /// Payload bytes waiting in `early` (bounded by the session byte budget).
    var earlyBytes = 0
    /// The connection that submitted it (notified of the result when not watching its session).
    var submitter: UInt64 = 0
    /// After a restart: the agent that held it may claim it until then.
    var orphanUntilMs: Int64 = 0
    /// Its outcome is being journaled (`Hub.finish`): no new lease, no lease expiry, its agent's
    /// messages about it are stale.
    var finishing = false
    /// The capabilities the task asks for (from its spec, read once).
    let needs: [String]

    init(_ rec: TaskRecord) {
        self.rec = rec
        self.needs = rec.spec["capabilities"]?.array?.compactMap(\.string) ?? []
        self.seqKnown = rec.state != .assigned
    }

    var state: String {
        switch rec.state {
        case .assigned: return running ? "running" : "assigned"
        default: return rec.state.rawValue
        }
    }
}

/// The hub: agents, tasks, sessions. Every method runs on the runtime's I/O thread except
/// `init`, `start`, `beginShutdown` and the read-only counters, which say so.
public final class Hub: ServerHandler, @unchecked Sendable {
    public let config: HubConfig
    public let runtime: Runtime
    /// The journal (SQLite or PostgreSQL), used on the I/O thread only.
    let store: HubStore
    public let log: Logger
    public let metrics = MetricsRegistry()
    var server: Server!
    /// The key web tokens are signed with (`--jwt-key-file`, or the journal's; set by `start`).
    var jwtSecret: [UInt8] = []
    let startedMs = wallClockMillis()
    var timerId: UInt64 = 0

    var agents: [String: AgentEntry] = [:]
    var live: [String: LiveTask] = [:]
    /// Queued task ids by priority (index 3 = CRITICAL), oldest first.
    var pending: [[String]] = [[], [], [], []]
    var sessions: [String: SessionLog] = [:]
    /// What every session's replay log costs together (`SessionLog.keptCost`).
    var replayCost = 0
    /// This hub's id (`HubConfig.hubId`).
    var hubId: String { config.hubId }
    /// What the open batch changed that other hubs should hear of (`HubStore.notify`).
    var notifyOthers: Set<String> = []
    /// Several hubs: the last inbox message read, the hubs known alive, the dead ones already
    /// reported, reads of the journal under way (and whether they were asked for again
    /// meanwhile: a notification that comes while its read is under way must not be lost), when
    /// the agents' presence was last written.
    var inboxSeq: Int64 = 0
    var readingInbox = false
    var inboxAgain = false
    var liveHubs: [String] = []
    /// The hubs as the journal said at the last heartbeat, and the database's time then.
    var clusterHubs: (hubs: [HubRecord], nowMs: Int64) = ([], 0)
    var reportedDead: Set<String> = []
    var reserving = false
    var reserveAgain = false
    var lastHeartbeatMs: Int64 = 0
    var lastRetentionMs: Int64 = 0
    var lastPresenceMs: Int64 = 0
    /// The cluster's agents as the journal said at the last heartbeat (several hubs).
    var clusterPresence: [AgentPresence] = []
    /// Tasks submitted here that run on another hub: their submitter's connection.
    var remoteSubmits: [String: UInt64] = [:]
    /// The journal could not be reached lately (`/health` says degraded).
    var journalTrouble: (since: Int64, reason: String)? = nil
    /// While the database is unreachable (PostgreSQL): session events and task outcomes that
    /// could not be written, in order, written once it is back (`journalReconnected`).
    var heldEvents: [(SessionLog, Message)] = []
    var heldEventBytes = 0
    var heldOutcomes: [() -> Void] = []
    var webPeers: [UInt64: Peer] = [:]
    var balancer = LoadBalancer()
    var dispatching = false
    var dispatchAgain = false
    /// Verified (or refused) web handshakes, from shouldAccept to didOpen, by remote address.
    var handshakeAuth: [String: (verdict: Result<WebIdentity, AuthFailure>, atMs: Int64)] = [:]
    /// Users and keys as the journal had them at the last check (revocations are enforced
    /// against it when another process changes the journal).
    var userAccounts: [String: UserAccount] = [:]
    var keyAccounts: [String: KeyAccount] = [:]
    var lastWindowPruneMs: Int64 = 0
    var shuttingDown = false
    /// Group commit: a journal transaction is open for this loop turn's writes, and what the
    /// hub sends meanwhile waits in `deferred` until it is committed (an acknowledgement never
    /// leaves before what it acknowledges is on disk).
    var batchOpen = false
    var deferred: [Outgoing] = []
    /// Batches sent for commit and not answered yet, oldest first (PostgreSQL; SQLite answers
    /// at once).
    var committing: [CommitSlot] = []
    /// Submits acknowledged in the open batch: (connection, request id, task id).
    var batchSubmits: [(UInt64, String, String)] = []
    /// The message being handled and its frame (valid during didReceive only), so a message
    /// forwarded unchanged goes out as the bytes it came in (no encode).
    var currentMessage: Message? = nil
    var currentFrame: UnsafeRawBufferPointer? = nil
    var currentFormat = WireFormat.json
    /// The last task counts read for /health (refreshed by the timer where reads are not
    /// immediate).
    var lastCounts: (byState: [TaskState: Int], dead: Int)? = nil
    var lastCountsMs: Int64 = 0
    /// Stats, alerts, logins and files of the dashboard (Dashboard/).
    lazy var dashboard = Dashboard(config)

    // metrics
    let submitted: Counter
    let succeeded: Counter
    let failedCount: Counter
    let reassigned: Counter
    let rejectedAuth: Counter
    let badMessages: Counter
    let deniedRequests: Counter
    let replayDropped: Counter
    let taskLatency: HistogramMetric
    let journalRoundTrip: HistogramMetric

    /// Opens nothing itself: give it a runtime and an open journal; `start` loads its state.
    public init(config: HubConfig, runtime: Runtime, store: HubStore, logger: Logger) throws(OrchestraError) {
        self.config = config
        self.runtime = runtime
        self.store = store
        self.log = logger
        submitted = try metrics.counter("orchestra_hub_tasks_submitted_total", help: "Tasks acknowledged to submitters")
        succeeded = try metrics.counter("orchestra_hub_tasks_finished_total", help: "Tasks finished, by outcome", labels: ["outcome": "succeeded"])
        failedCount = try metrics.counter("orchestra_hub_tasks_finished_total", labels: ["outcome": "failed"])
        reassigned = try metrics.counter("orchestra_hub_tasks_reassigned_total", help: "Attempts lost to a disconnect, an expired lease or a rejection")
        rejectedAuth = try metrics.counter("orchestra_hub_auth_failures_total", help: "Registrations and web handshakes refused (AUTH_001)")
        badMessages = try metrics.counter("orchestra_hub_bad_messages_total", help: "Messages answered with PARAM_001")
        deniedRequests = try metrics.counter("orchestra_hub_requests_denied_total", help: "Requests refused by the authorization check (AUTH_001, auth.denied)")
        replayDropped = try metrics.counter("orchestra_hub_replay_dropped_bytes_total", help: "Bytes of stream chunks dropped from replay logs over their byte budget")
        taskLatency = try metrics.histogram("orchestra_hub_task_duration_us", help: "Submit to result, microseconds")
        journalRoundTrip = try metrics.histogram("orchestra_hub_journal_round_trip_us",
                                                 help: "A journal round trip (PostgreSQL: statement or transaction; SQLite: commit), microseconds")
        metrics.register(owner: self) { hub in hub.gaugeSamples() }
    }

    /// The key web tokens are signed with: kept in the journal, made on first use (by a hub or
    /// a command, whichever comes first).
    public static func jwtSecret(_ journal: AdminJournal) throws(OrchestraError) -> [UInt8] {
        let hex = try journal.setting("jwt_secret", insertingIfAbsent: HMACSHA256.hex(Secrets.random(32)))
        guard let s = Secrets.fromHex(hex), s.count >= 32 else {
            throw OrchestraError(.io, "journal: the setting jwt_secret is not a hex key of at least 32 bytes")
        }
        return s
    }

    /// Loads what the hub needs from the journal, on the I/O thread: the token key, the
    /// unfinished tasks (after a restart, assigned tasks wait one lease for their agent), the
    /// sessions with a replay log and those of unfinished tasks, users and keys.
    func recover(_ done: @escaping (OrchestraError?) -> Void) {
        func step<T>(_ r: Result<T, OrchestraError>, _ next: (T) -> Void) {
            switch r {
            case .success(let v): next(v)
            case .failure(let e): done(e)
            }
        }
        let generated = HMACSHA256.hex(Secrets.random(32))
        store.setting("jwt_secret", insertingIfAbsent: generated) { [self] r in step(r) { hex in
            if let key = config.jwtKey {
                jwtSecret = key
            } else if let s = Secrets.fromHex(hex), s.count >= 32 {
                jwtSecret = s
            } else {
                done(OrchestraError(.io, "\(store.label): the setting jwt_secret is not a hex key of at least 32 bytes"))
                return
            }
            store.hubId = hubId
            store.onChange = { [weak self] c in self?.storeChanged(c) }
            store.onConnectionChange = { [weak self] why in self?.journalConnection(why) }
            store.onRoundTrip = { [journalRoundTrip] us in journalRoundTrip.record(us) }
            store.unfinishedTasks { [self] r in step(r) { all in
                let now = wallClockMillis()
                var requeued = 0, orphaned = 0
                // This hub's tasks: those it holds (or reserved), and leases from before hubs had
                // ids. Queued tasks nobody reserved are the reservations' (`reserveQueued`).
                let tasks = all.filter { $0.hubId == hubId || ($0.hubId == nil && $0.state != .queued) }
                for rec in tasks {
                    let t = LiveTask(rec)
                    live[rec.id] = t
                    switch rec.state {
                    case .queued:
                        pending[rec.priority].append(rec.id)
                        requeued += 1
                    default:
                        t.orphanUntilMs = now + config.leaseMs
                        t.leaseDeadlineMs = now + config.leaseMs
                        orphaned += 1
                    }
                }
                let taskSessions = Set(tasks.compactMap(\.sessionId))
                store.replayLogs(including: taskSessions) { [self] r in step(r) { logs in
                    for (rec, entries) in logs {
                        let s = SessionLog(id: rec.id, owner: rec.owner, sharedWith: Set(rec.sharedWith), head: rec.head)
                        for e in entries { s.kept(offset: e.offset, atMs: e.atMs, bytes: e.bytes, kind: e.kind) }
                        sessions[rec.id] = s
                    }
                    replayCost = sessions.values.reduce(0) { $0 + $1.keptCost }
                    reloadAccounts { [self] e in
                        if let e { done(e); return }
                        _ = store.changedElsewhere()   // from here on, only others' changes count
                        // This hub's row (its heartbeat and inbox head) exists before it listens:
                        // another hub that runs a task submitted here posts the result to this
                        // hub's inbox, and a post to a hub without a row has nowhere to go.
                        store.heartbeat(hubId: hubId, startedMs: startedMs, nowMs: wallClockMillis(),
                                        info: ["agents": 0, "web": 0, "tasks": .int(Int64(live.count))]) { [self] r in step(r) { _ in
                            store.inboxHead(hubId: hubId) { [self] r in step(r) { h in
                                inboxSeq = h
                                lastHeartbeatMs = wallClockMillis()
                                log.info("hub.recovered", ["queued": .int(Int64(requeued)), "awaitingAgents": .int(Int64(orphaned)),
                                                           "sessions": .int(Int64(sessions.count)), "replayBytes": .int(Int64(replayCost)),
                                                           "journal": .string(store.label)])
                                done(nil)
                            }}
                        }}
                    }
                }}
            }}
        }}
    }

    /// Loads the journal's state (on the I/O thread; the caller waits), then listens. Any
    /// thread but the I/O thread.
    public func start() throws(OrchestraError) {
        let loaded = Rendezvous<OrchestraError?>()
        try runtime.post { [self] in recover { e in loaded.put(e) } }
        if let e = loaded.take() { throw e }
        var o = ServerOptions()
        o.host = config.host
        o.port = config.port
        o.paths = ["/agent", "/web"]
        o.maxConnections = config.maxConnections
        o.websocket.maxMessageSize = config.maxMessageSize
        o.websocket.maxFrameSize = config.maxMessageSize
        o.websocket.pingIntervalMs = UInt64(config.heartbeatIntervalMs)
        o.websocket.pongTimeoutMs = UInt64(config.heartbeatIntervalMs * config.missedHeartbeats)
        // A watcher that resumes gets a session's whole replay log at once.
        o.websocket.maxBuffered = max(o.websocket.maxBuffered, 2 * config.replaySessionBytes + 2 * config.maxMessageSize)
        if let cert = config.tlsCertFile, let key = config.tlsKeyFile {
            o.tls = try TLSContext.server(certFile: cert, keyFile: key)
        }
        server = try Server(runtime: runtime, options: o, handler: self)
        try server.start()
        timerId = try runtime.startTimer(delayMs: 250, repeatMs: 250, fire: { [self] in tick() })
        try startDashboard()
        log.info("hub.listening", ["host": .string(config.host), "port": .int(Int64(server.port)),
                                   "tls": .bool(o.tls != nil), "strategy": .string(config.strategy.rawValue)])
    }

    /// The port listened on. Any thread.
    public var port: UInt16 { server?.port ?? 0 }

    /// Open connections. Any thread.
    public var connectionCount: Int { server?.connectionCount ?? 0 }

    /// Stops accepting, tells every peer (close 1001 "hub shutting down") and stops the
    /// timers. Tasks in flight stay assigned in the journal: after a restart their agents
    /// claim them. Any thread; the caller then waits for `connectionCount` to reach 0 (or a
    /// deadline), shuts the runtime down and closes the journal.
    public func beginShutdown() {
        try? runtime.post { [self] in
            guard !shuttingDown else { return }
            commitBatch()
            shuttingDown = true
            log.info("hub.stopping", ["connections": .int(Int64(server.connectionCount)), "tasksInFlight": .int(Int64(live.count))])
            try? runtime.stopTimer(timerId)
            try? server.close(code: 1001, reason: "hub shutting down")
        }
    }

    /// The last writes, once the connections are closed: this hub leaves the cluster (marked
    /// stopped: the other hubs release its reservations at once and its leased tasks one lease
    /// later), and the open batch commits. `done` runs on the I/O thread once every commit has
    /// answered, or after `timeoutMs`. Any thread.
    public func finishShutdown(timeoutMs: Int64 = 5000, _ done: @escaping () -> Void) {
        let deadline = wallClockMillis() + timeoutMs
        do {
            try runtime.post { [self] in
                journaled("mark this hub stopped") { store.stopHub(hubId: hubId, nowMs: wallClockMillis(), logFailure("mark this hub stopped")) }
                commitBatch()
                func check() {
                    if (committing.isEmpty && !batchOpen) || wallClockMillis() >= deadline { done(); return }
                    if batchOpen { commitBatch() }
                    if (try? runtime.startTimer(delayMs: 10, repeatMs: 0, fire: check)) == nil { done() }
                }
                check()
            }
        } catch {
            done()
        }
    }

    // MARK: connections

    public func shouldAccept(_ request: HTTPRequestInfo) -> HTTPResponse? {
        if shuttingDown { return HTTPResponse.json(503, HubError(.resourceExhausted, "hub shutting down").info()) }
        // The allow-list is for browsers, which always send Origin; agents, SDKs and servers
        // send none and are not refused for that (docs/security.md, "Origin").
        if !config.allowedOrigins.isEmpty, let origin = request.header("Origin"), !config.allowedOrigins.contains(origin) {
            log.warn("connection.refused", ["reason": "origin not allowed", "origin": .string(origin),
                                            "remote": .string(request.remoteAddress)])
            return HTTPResponse.json(403, HubError(.authenticationFailed, "origin not allowed").info())
        }
        if request.path == "/web" {
            handshakeAuth[request.remoteAddress] = (verifyTokenClaims(request), wallClockMillis())
        }
        return nil
    }

    public func didOpen(_ c: Connection) {
        let now = wallClockMillis()
        let burst = Double(max(config.rateLimitPerMinute, 1))
        if c.path == "/agent" {
            let p = Peer(role: .agent, conn: c, burst: burst, nowMs: now)
            c.attachment = p
            // Registration must come first, and soon.
            let id = c.id
            _ = try? runtime.startTimer(delayMs: config.registerTimeoutMs, repeatMs: 0, fire: { [self] in
                guard let conn = server?.connection(id: id), let p = conn.attachment as? Peer, p.agentId == nil, !p.closing else { return }
                refuse(p, HubError(.authenticationFailed, "agent.register did not arrive within \(config.registerTimeoutMs) ms"),
                       correlationId: nil, rule: "agent.register-timeout")
            })
            return
        }
        let p = Peer(role: .web, conn: c, burst: burst, nowMs: now)
        c.attachment = p
        switch handshakeAuth.removeValue(forKey: c.remoteAddress)?.verdict ?? .failure(AuthFailure(reason: "no token")) {
        case .failure(let f):
            refuse(p, HubError(.authenticationFailed, f.reason), correlationId: nil, rule: "web.token")
        case .success(let claims):
            // Nothing the client sends is read until its user is known to be valid.
            c.holdReading()
            checkUser(claims) { [self] verdict in
                guard !p.closing, c.attachment === p else { return }
                switch verdict {
                case .failure(let f):
                    refuse(p, HubError(.authenticationFailed, f.reason), correlationId: nil, rule: "web.token")
                case .success(let who):
                    p.user = who.user
                    p.userRole = who.role
                    p.tokenGeneration = who.generation
                    p.tokenExpiry = who.expiry
                    webPeers[c.id] = p
                    log.info("web.connected", ["conn": .int(Int64(c.id)), "user": .string(who.user), "role": .string(who.role.rawValue),
                                               "remote": .string(c.remoteAddress)])
                }
                c.resumeReading()
            }
        }
    }

    public func didReceivePong(_ c: Connection, rttMicros: UInt64) {
        guard rttMicros > 0, let p = c.attachment as? Peer, let id = p.agentId, let a = agents[id], a.connection === c else { return }
        a.latencyMicros = rttMicros
    }

    public func didClose(_ c: Connection, code: UInt16, reason: String, clean: Bool) {
        guard let p = c.attachment as? Peer else { return }
        c.attachment = nil
        p.closing = true
        switch p.role {
        case .web:
            webPeers.removeValue(forKey: c.id)
            for s in p.sessions { sessions[s]?.watchers.removeValue(forKey: c.id) }
            // Results of its tasks that run on other hubs have nobody to go to here (a retried
            // submit on a new connection asks again).
            if !remoteSubmits.isEmpty { remoteSubmits = remoteSubmits.filter { $0.value != c.id } }
            if !p.user.isEmpty { log.info("web.disconnected", ["conn": .int(Int64(c.id)), "user": .string(p.user), "code": .int(Int64(code))]) }
        case .agent:
            guard let id = p.agentId, let a = agents[id], a.connection === c else { return }
            agentGone(a, why: "disconnected (\(code)\(reason.isEmpty ? "" : " \(reason)"))")
        }
    }

    /// An agent's connection ended or it missed its heartbeats: its tasks go back to the queue.
    func agentGone(_ a: AgentEntry, why: String) {
        a.online = false
        a.connection = nil
        log.info("agent.disconnected", ["agentId": .string(a.id), "reason": .string(why), "tasksInFlight": .int(Int64(a.inFlight.count))])
        if shuttingDown { return }  // leases stay in the journal; the agent claims them after the restart
        let ids = a.inFlight
        a.inFlight.removeAll()
        for id in ids.sorted() {
            if let t = live[id] { requeue(t, why: "agent \(a.id) \(why)") }
        }
        broadcastWeb(HubEnvelope.make("agent.disconnected", ["agentId": .string(a.id), "reason": .string(why)]))
        writePresence(a)
        dispatch()
    }

    // MARK: messages

    public func didReceive(_ c: Connection, opcode: Opcode, bytes: UnsafeRawBufferPointer) {
        guard let p = c.attachment as? Peer, !p.closing else { return }
        let format: WireFormat = opcode == .binary ? .msgpack : .json
        p.format = format
        let m: Message
        do {
            m = try EnvelopeCodec.decode(bytes, format: format, limits: DecodeLimits(maxSize: config.maxMessageSize))
        } catch {
            badMessages.add()
            log.warn("message.malformed", ["conn": .int(Int64(c.id)), "reason": .string(error.message)])
            send(p, HubEnvelope.error(HubError(.invalidParameters, "malformed envelope: \(error.message)"), correlationId: nil))
            return
        }
        let reqId = m.id
        currentMessage = m
        currentFrame = bytes
        currentFormat = format
        defer { currentMessage = nil; currentFrame = nil }
        answer(p, reqId, type: m.type) { () throws(HubError) in
            try HubEnvelope.checkProtocol(m)
            switch p.role {
            case .agent: try handleAgent(p, m)
            case .web: try handleWeb(p, m)
            }
        }
    }

    /// Runs (part of) the handling of request `requestId` of `p`; a failure is answered with an
    /// `error` envelope (AUTH_001 refusals through `refuse`). Handlers that continue after a
    /// journal read or write run their continuation through it too.
    func answer(_ p: Peer, _ requestId: String, type: String, _ body: () throws(HubError) -> Void) {
        do { try body() } catch {
            switch error.code {
            case .authenticationFailed:
                refuse(p, error, correlationId: requestId, rule: error.details?["rule"]?.string ?? "")
            default:
                if error.code == .invalidParameters { badMessages.add() }
                log.warn("request.failed", ["conn": .int(Int64(p.conn.id)), "type": .string(type), "code": .string(error.code.rawValue),
                                            "reason": .string(error.message)])
                send(p, HubEnvelope.error(error, correlationId: requestId))
            }
        }
    }

    /// The authorization check every request passes (docs/security.md, "Rules"): the rules of
    /// `request.type` in `table`, in order, against the peer's identity. A refusal is
    /// `AUTH_001` naming the rule and an `auth.denied` log line; `rules` nil (a type the
    /// endpoint does not know) is `PARAM_001`.
    func authorize(_ p: Peer, _ table: [String: [AccessRule]], _ request: AccessRequest) throws(HubError) {
        guard let rules = Access.rules(table, request.type) else {
            throw HubError(.invalidParameters, "unknown event type '\(request.type)' for \(p.role == .agent ? "an agent" : "a web client")")
        }
        do { try Access.check(rules, p.caller, request) } catch {
            throw denied(who: p.caller, request: request, error, conn: p.conn)
        }
    }

    /// Logs a refusal (`auth.denied`) and makes its `AUTH_001` error.
    func denied(who: Caller, request: AccessRequest, _ d: AccessDenial, conn: Connection?) -> HubError {
        deniedRequests.add()
        var fields: JSONValue = ["who": .string(who.who), "what": .string(request.target.isEmpty ? request.type : "\(request.type) \(request.target)"),
                                 "rule": .string(d.rule.rawValue), "reason": .string(d.reason)]
        if let conn { fields.set("conn", .int(Int64(conn.id))) }
        log.warn("auth.denied", fields)
        return HubError(.authenticationFailed, "\(request.type): refused by rule '\(d.rule.rawValue)': \(d.reason)",
                        details: ["rule": .string(d.rule.rawValue), "type": .string(request.type)])
    }

    /// AUTH_001 for a request: an identity that failed (registration, token, revocation) is
    /// refused and its connection closed with 1008; a valid identity refused by a rule keeps
    /// its connection (`Access`).
    func refuse(_ p: Peer, _ e: HubError, correlationId: String?, rule: String) {
        if let r = e.details?["rule"]?.string, let ar = AccessRule(rawValue: r), !ar.closesConnection {
            send(p, HubEnvelope.error(e, correlationId: correlationId))
            return
        }
        rejectedAuth.add()
        if AccessRule(rawValue: rule) == nil {
            // An identity refused before any rule of the table ran (token, signature, timeout,
            // revocation): the same auth.denied line as a rule's refusal.
            let who: String
            switch p.caller {
            case .user(let name, _) where name.isEmpty: who = "unauthenticated"
            default: who = p.caller.who
            }
            log.warn("auth.denied", ["who": .string(who), "what": .string(p.role == .agent ? "agent connection" : "web connection"),
                                     "rule": .string(rule), "reason": .string(e.message), "conn": .int(Int64(p.conn.id))])
        }
        log.warn("auth.refused", ["conn": .int(Int64(p.conn.id)), "role": .string(p.role == .agent ? "agent" : "web"),
                                  "rule": .string(rule), "reason": .string(e.message), "remote": .string(p.conn.remoteAddress)])
        send(p, HubEnvelope.error(e, correlationId: correlationId))
        p.closing = true
        close(p.conn, code: 1008, reason: "AUTH_001")
    }

    func send(_ p: Peer, _ m: Message) {
        send(p.conn, m, format: p.format)
    }

    func send(_ c: Connection, _ m: Message, format: WireFormat) {
        guard let bytes = try? EnvelopeCodec.encode(m, format: format) else {
            log.error("message.encode_failed", ["type": .string(m.type)])
            return
        }
        deliver(c, format, bytes)
    }

    /// Sends encoded bytes now, or after the open batch is committed.
    func deliver(_ c: Connection, _ format: WireFormat, _ bytes: [UInt8]) {
        output(.send(c, format == .json ? .text : .binary, bytes))
    }

    /// Closes after what was sent before (deferred ones included) has gone out.
    func close(_ c: Connection, code: UInt16, reason: String) {
        output(.close(c, code, reason))
    }

    /// Runs `body` once the open batch is committed (now when none is open).
    func afterCommit(_ body: @escaping () -> Void) {
        output(.after(body))
    }

    /// The hub's output, in the order it was made: with the open batch (after its commit);
    /// behind the batches still being committed (PostgreSQL answers later: what comes after
    /// them in time must not overtake what waits for them); or now.
    func output(_ o: Outgoing) {
        if batchOpen {
            deferred.append(o)
        } else if let last = committing.last {
            last.riders.append(o)
        } else {
            o.run()
        }
    }

    /// Sends to every web client: of this hub (`local`), or of every hub.
    func broadcastWeb(_ m: Message, local: Bool = false) {
        if !local, let text = try? EnvelopeCodec.encode(m, format: .json) {
            for hub in liveHubs where hub != hubId { post(to: hub, .broadcast, ["frame": .string(String(decoding: text, as: UTF8.self))]) }
        }
        var encoded: [WireFormat: [UInt8]] = [:]
        for p in webPeers.values {
            if encoded[p.format] == nil { encoded[p.format] = (try? EnvelopeCodec.encode(m, format: p.format)) ?? [] }
            deliver(p.conn, p.format, encoded[p.format]!)
        }
    }

    // MARK: group commit

    /// Opens this loop turn's batch if none is open (committed by a job that runs after the
    /// turn's other callbacks). What the hub sends meanwhile waits for the commit.
    func openBatch() throws(HubError) {
        guard !batchOpen else { return }
        do { try store.beginBatch() } catch { throw HubError.database(error) }
        batchOpen = true
        do { try runtime.post { [self] in commitBatch() } } catch {
            // The runtime is stopping and takes no more jobs: shutdown commits (beginShutdown).
        }
    }

    /// A journal write in this turn's batch: opens the batch, then runs `write`. A failure to
    /// open it is logged (the caller's state stays as it was, the write did not happen).
    @discardableResult
    func journaled(_ what: @autoclosure () -> String, _ write: () -> Void) -> Bool {
        do { try openBatch() } catch {
            log.error("journal.write_failed", ["what": .string(what()), "reason": .string(error.message)])
            return false
        }
        write()
        return true
    }

    /// The completion of a write whose only outcome that matters is a failure: logged.
    func logFailure<T>(_ what: @escaping @autoclosure () -> String) -> StoreDone<T> {
        { [log, store] r in
            // (While the database is away, journal.unreachable said so once.)
            if case .failure(let e) = r, store.connectedSinceMs != nil {
                log.error("journal.write_failed", ["what": .string(what()), "reason": .string(e.message)])
            }
        }
    }

    /// Commits the batch, then sends what waited for it. When the commit fails nothing of the
    /// batch was written: its submitters get DB_001 instead of an acknowledgement and the
    /// messages that depended on it are not sent.
    func commitBatch() {
        guard batchOpen else { return }
        if !notifyOthers.isEmpty {
            store.notify(notifyOthers)
            notifyOthers.removeAll(keepingCapacity: true)
        }
        batchOpen = false
        let slot = CommitSlot(own: deferred)
        deferred = []
        let submits = batchSubmits
        batchSubmits = []
        committing.append(slot)
        store.commitBatch { [self] error in
            slot.done = true
            if let error {
                if journalTrouble == nil { journalTrouble = (wallClockMillis(), error.message) }
                log.error("journal.commit_failed", ["reason": .string(error.message), "submits": .int(Int64(submits.count)),
                                                    "messagesDropped": .int(Int64(slot.own.count))])
                // Nothing of the batch happened: what depended on it is not sent (closes still
                // happen); its submitters hear DB_001 (after what came before, like any answer).
                slot.own = slot.own.filter { if case .close = $0 { return true } else { return false } }
                for (connId, requestId, taskId) in submits {
                    if let t = live.removeValue(forKey: taskId) { pending[t.rec.priority].removeAll { $0 == taskId } }
                    if let p = webPeers[connId], let bytes = try? EnvelopeCodec.encode(HubEnvelope.error(HubError.database(error), correlationId: requestId), format: p.format) {
                        slot.own.append(.send(p.conn, p.format == .json ? .text : .binary, bytes))
                    }
                }
            } else {
                journalTrouble = nil
            }
            // Batches commit in order; what waits behind one still being committed waits on.
            while let head = committing.first, head.done {
                committing.removeFirst()
                for o in head.own { o.run() }
                for o in head.riders { o.run() }
            }
        }
    }

    // MARK: timers

    func tick() {
        let now = wallClockMillis()
        // Missed heartbeats.
        let silentLimit = config.heartbeatIntervalMs * config.missedHeartbeats
        for a in agents.values where a.online && now - a.lastSeenMs > silentLimit {
            let c = a.connection
            agentGone(a, why: "missed \(config.missedHeartbeats) heartbeats")
            if let c, let p = c.attachment as? Peer { p.closing = true; close(c, code: 4001, reason: "missed heartbeats") }
        }
        // Expired leases, and orphans of a restart nobody claimed.
        var expired: [LiveTask] = []
        for t in live.values where t.rec.state == .assigned && !t.finishing && t.leaseDeadlineMs < now { expired.append(t) }
        for t in expired.sorted(by: { $0.rec.id < $1.rec.id }) {
            if let agentId = t.rec.agentId, let a = agents[agentId], a.inFlight.remove(t.rec.id) != nil, let c = a.connection {
                send(c, HubEnvelope.make("task.cancel", ["taskId": .string(t.rec.id), "attempt": .int(Int64(t.rec.attempt)),
                                                         "reason": "lease expired"]), format: (c.attachment as? Peer)?.format ?? .json)
            }
            requeue(t, why: t.orphanUntilMs > 0 ? "not claimed after the restart" : "lease expired")
        }
        // Handshakes that were accepted but never opened (the peer went away meanwhile).
        if !handshakeAuth.isEmpty {
            for (k, v) in handshakeAuth where now - v.atMs > 60_000 { handshakeAuth.removeValue(forKey: k) }
        }
        // Agents offline for an hour with nothing leased leave the registry.
        for (id, a) in agents where !a.online && a.inFlight.isEmpty && now - a.lastSeenMs > 3_600_000 {
            agents.removeValue(forKey: id)
        }
        // Session events past the recovery window leave the replay log (once a second).
        if now - lastWindowPruneMs >= 1000 {
            lastWindowPruneMs = now
            pruneReplayWindow(nowMs: now)
        }
        // Finished tasks past the retention leave the journal (once a minute, in slices).
        if config.taskRetentionMs > 0 && now - lastRetentionMs >= min(60_000, max(1000, config.taskRetentionMs)) {
            lastRetentionMs = now
            pruneFinishedTasks(before: now - config.taskRetentionMs)
        }
        // Another process changed the journal: users and keys (revocations take effect) and
        // tasks it put back in the queue (orchestra-hub dead requeue).
        if store.changedElsewhere() { storeChanged([.accounts, .tasks, .inbox, .events]) }
        clusterTick(now)
        // Task counts for /health where reading them is not immediate.
        if now - lastCountsMs >= 2000 {
            lastCountsMs = now
            store.taskCounts { [self] r in if case .success(let c) = r { lastCounts = c } }
        }
        if expired.count > 0 || pendingCount > 0 { dispatch() }
    }

    var pendingCount: Int { pending.reduce(0) { $0 + $1.count } }

    // MARK: health and metrics

    public func handleHTTP(_ request: HTTPRequestInfo, respond: @escaping (HTTPResponse) -> Void) -> Bool {
        if let handled = dashboardHTTP(request, respond: respond) { return handled }
        guard request.method == "GET" || request.method == "HEAD" else {
            respond(HTTPResponse.json(405, HubError(.invalidParameters, "only GET").info()))
            return true
        }
        let type = "GET \(request.path)"
        guard let rules = Access.rules(Access.http, type) else { return false }
        let req = AccessRequest(type: type)
        // The check, with the caller a token names (read only where a rule asks for one).
        let check = { [self] (caller: Caller) -> Void in
            do throws(AccessDenial) { try Access.check(rules, caller, req) } catch {
                let e = denied(who: caller, request: req, error, conn: nil)
                respond(HTTPResponse(status: 401, headers: [HTTPField("Content-Type", "application/json"), HTTPField("WWW-Authenticate", "Bearer")],
                                     body: e.info().jsonBytes))
                return
            }
            respond(httpAnswer(request.path))
        }
        guard rules.contains(.anyUser), case .success(let claims) = verifyTokenClaims(request) else { check(Caller.anonymous); return true }
        checkUser(claims) { verdict in
            if case .success(let who) = verdict { check(Caller.user(name: who.user, role: who.role)) } else { check(Caller.anonymous) }
        }
        return true
    }

    /// What an HTTP path answers once its rules passed.
    func httpAnswer(_ path: String) -> HTTPResponse {
        switch path {
        case "/health/agents":
            return HTTPResponse.json(200, ["agents": .array(agents.values.sorted { $0.id < $1.id }.map { $0.json(maxLoad: config.maxLoadPerAgent) })])
        case "/metrics":
            return HTTPResponse(status: 200, headers: [HTTPField("Content-Type", "text/plain; version=0.0.4")], body: metrics.renderPrometheus())
        default:
            return HTTPResponse.json(200, healthJSON())
        }
    }

    /// The result of a store call when its completion ran before it returned (SQLite), nil
    /// when it will come later (its completion then does nothing).
    func immediate<T>(_ call: (@escaping StoreDone<T>) -> Void) -> Result<T, OrchestraError>? {
        var result: Result<T, OrchestraError>? = nil
        var waiting = true
        call { r in if waiting { result = r } }
        waiting = false
        return result
    }

    func healthJSON() -> JSONValue {
        var byState: [String: Int64] = ["queued": 0, "assigned": 0, "running": 0, "succeeded": 0, "failed": 0]
        // Read now where that is immediate (SQLite); else the timer's last reading.
        if case .success(let c)? = immediate({ store.taskCounts($0) }) { lastCounts = c }
        if let counts = lastCounts {
            byState["succeeded"] = Int64(counts.byState[.succeeded] ?? 0)
            byState["failed"] = Int64(counts.byState[.failed] ?? 0)
        }
        for t in live.values { byState[t.state, default: 0] += 1 }
        let healthy = agents.values.filter { $0.online }.count
        var tasks: JSONValue = .object([])
        for k in ["queued", "assigned", "running", "succeeded", "failed"] { tasks.set(k, .int(byState[k] ?? 0)) }
        if let dead = lastCounts?.dead { tasks.set("dead", .int(Int64(dead))) }
        return [
            "status": .string(shuttingDown ? "stopping" : journalTrouble != nil ? "degraded" : "ok"),
            "hubId": .string(hubId),
            "journal": journalHealthJSON(),
            "cluster": clusterHealthJSON(),
            "uptimeSeconds": .double(Double(wallClockMillis() - startedMs) / 1000),
            "agents": ["total": .int(Int64(agents.count)), "healthy": .int(Int64(healthy))],
            "tasks": tasks,
            "queues": ["pending": .int(Int64(pendingCount)),
                       "byPriority": ["low": .int(Int64(pending[0].count)), "normal": .int(Int64(pending[1].count)),
                                      "high": .int(Int64(pending[2].count)), "critical": .int(Int64(pending[3].count))]],
            "connections": ["agents": .int(Int64(agents.values.filter { $0.connection != nil }.count)),
                            "web": .int(Int64(webPeers.count))],
            "protocol": .int(hubProtocolVersion),
            "alerts": alertsHealthJSON(),
        ]
    }

    /// Gauges read when /metrics is rendered (on the I/O thread, from handleHTTP).
    func gaugeSamples() -> [MetricSample] {
        [
            MetricSample(name: "orchestra_hub_agents", help: "Agents by status", kind: .gauge, labels: ["status": "online"],
                         value: Double(agents.values.filter { $0.online }.count)),
            MetricSample(name: "orchestra_hub_agents", help: "Agents by status", kind: .gauge, labels: ["status": "offline"],
                         value: Double(agents.values.filter { !$0.online }.count)),
            MetricSample(name: "orchestra_hub_tasks_pending", help: "Tasks waiting for an agent", kind: .gauge, value: Double(pendingCount)),
            MetricSample(name: "orchestra_hub_tasks_in_flight", help: "Tasks assigned to agents", kind: .gauge,
                         value: Double(live.values.filter { $0.rec.state == .assigned }.count)),
            MetricSample(name: "orchestra_hub_web_connections", help: "Web clients connected", kind: .gauge, value: Double(webPeers.count)),
            MetricSample(name: "orchestra_hub_uptime_seconds", help: "Seconds since start", kind: .gauge,
                         value: Double(wallClockMillis() - startedMs) / 1000),
            MetricSample(name: "orchestra_hub_info", help: "This hub (its id as a label)", kind: .gauge, labels: ["hub_id": hubId], value: 1),
            MetricSample(name: "orchestra_hub_journal_up", help: "1 when the journal answers, 0 while it is unreachable", kind: .gauge,
                         value: store.connectedSinceMs == nil ? 0 : 1),
            MetricSample(name: "orchestra_hub_cluster_hubs_alive", help: "Hubs with a recent heartbeat (this one included)", kind: .gauge,
                         value: Double(liveHubs.count)),
        ]
    }
}

/// A send or a close held back until the open journal batch is committed.
enum Outgoing {
    case send(Connection, Opcode, [UInt8])
    case close(Connection, UInt16, String)
    /// Work that must only happen once the batch is on disk (the task.finished log line).
    case after(() -> Void)

    func run() {
        switch self {
        case .send(let c, let opcode, let bytes): bytes.withUnsafeBytes { b in _ = try? c.send(opcode, b) }
        case .close(let c, let code, let reason): try? c.close(code: code, reason: reason)
        case .after(let body): body()
        }
    }
}

/// A batch being committed: its own output (sent when it committed, dropped when it failed)
/// and what was made after it while it was being committed (sent after it either way).
final class CommitSlot {
    var own: [Outgoing]
    var riders: [Outgoing] = []
    var done = false
    init(own: [Outgoing]) { self.own = own }
}

extension HTTPResponse {
    static func json(_ status: Int, _ v: JSONValue) -> HTTPResponse {
        HTTPResponse(status: status, headers: [HTTPField("Content-Type", "application/json")], body: v.jsonBytes)
    }
}
