import OrchestraCore
import OrchestraNet

/// The hub's journal on PostgreSQL (`--journal postgresql://...`): `HubStore` over one
/// `PostgresClient` on the hub's loop. A batch is the statements of one loop turn, sent
/// together as one transaction when the hub commits it; the completions of its writes run once
/// the transaction has committed (after `commitBatch`'s own), or with its error. A read issued
/// while a batch is open is sent after that batch, so it sees its writes.
///
/// Other processes' changes arrive as notifications on the channel `orchestra` (payload
/// `accounts` or `tasks`; `orchestra-hub` commands send them), with a slow poll behind them in
/// case one is missed.
///
/// Threads: everything on the runtime's I/O thread, except `open`, which any other thread may
/// call and wait for.
public final class PostgresStore: HubStore, @unchecked Sendable {
    public let client: PostgresClient
    public let label: String
    public var completesAfterCommit: Bool { true }
    /// The channel other processes notify.
    public static let channel = "orchestra"

    /// The open batch's statements and what to do with each one's result (a group of task
    /// rows holds its place with an empty statement until the commit: PostgresStore+TaskRows).
    private var batch: [(PostgresStatement, (Result<PostgresResult, PostgresError>) -> Void)]? = nil
    /// The batch's groups of task rows, and those rows may still join, by kind.
    private var groups: [TaskRowGroup] = []
    private var openGroups: [TaskRowKind: TaskRowGroup] = [:]
    /// The last place in the batch that writes each task.
    private var lastWrite: [String: Int] = [:]
    /// Whether the batch writes tasks (then it plans with `planSettings`).
    private var writesTasks = false
    /// The rows of `sessions` and `hubs` the batch will update, locked first (`lockFirst`).
    private var sessionRows: Set<String> = []
    private var hubRows: Set<String> = []
    /// Reads asked for while a batch was open: sent after it.
    private var readsAfterBatch: [(PostgresStatement, (Result<PostgresResult, PostgresError>) -> Void)] = []
    private var accountsChanged = false
    private var tasksChanged = false
    private var lastPollMs: Int64 = 0
    /// Told at once (on the I/O thread) what another process changed.
    public var onChange: ((StoreChanges) -> Void)?
    /// This hub's id: a notification for its inbox names it.
    public var hubId = ""
    private var lastNoncePruneMs: Int64? = nil
    /// Without a notification, a change is looked for this often anyway.
    static let pollIntervalMs: Int64 = 10_000

    /// How hard a commit is pushed to disk: `.normal` commits asynchronously on the server
    /// (`synchronous_commit = off`: a commit survives a crash of the hub, the last ones may be
    /// lost if the database server itself crashes, as SQLite's normal loses them to a power
    /// loss); `.full` waits for the server's WAL flush at every commit.
    public let durability: Durability

    /// When the connection came up (this process's wall clock, ms); nil while the database is
    /// unreachable. Every call then fails at once (DB_001 for the hub's requests) while the
    /// client reconnects with backoff.
    public private(set) var connectedSinceMs: Int64? = nil
    public var reconnects: Bool { true }
    /// Told when the connection is lost (why) and when it is back (nil), on the I/O thread.
    public var onConnectionChange: ((String?) -> Void)?
    /// Told each round trip's time in microseconds (a statement, a batch's transaction).
    public var onRoundTrip: ((UInt64) -> Void)?

    /// A store on `runtime`'s loop for the database at `url` (not connected: `open`).
    public init(runtime: Runtime, url: String, durability: Durability = .normal) {
        self.durability = durability
        var o = PostgresClient.Options(url)
        o.maxInFlight = 4096
        client = PostgresClient(runtime: runtime, options: o)
        label = PostgresStore.redact(url)
        // This hub's own notifications tell it nothing it does not know (answering them made it
        // reserve the tasks it had just queued itself: a row update per task).
        client.onNotification = { [weak self] n in
            guard let self, n.senderPID != client.backendPID else { return }
            notified(n.payload)
        }
        client.onConnectionLost = { [weak self] e in self?.connectionLost(e) }
    }

    /// The connection's session settings (set again after a reconnect): it commits as
    /// `durability` asks, and never compiles a plan with JIT. No statement of the hub runs long
    /// enough to gain from it, and plans whose estimated cost passes `jit_above_cost` once the
    /// tables have statistics were compiled at every run: the session event fetch (a LATERAL
    /// join estimated at 100 sessions of 2,600 events) took 5-9 ms of JIT for 0.1 ms of work,
    /// in two of five cross-hub session latency runs (p99 29 ms instead of 5); the reaper's
    /// scan of `agent_presence` under a batch's disabled sequential scans, 260 ms.
    private func setSessionSettings() {
        client.query("SELECT set_config('synchronous_commit', $1, false), set_config('jit', 'off', false)",
                     [.text(durability == .full ? "on" : "off")]) { _ in }
    }

    /// The connection broke: what was in flight has failed; calls fail at once until the client
    /// is connected again (it tries with backoff, 100 ms doubling to 5 s, for as long as it
    /// takes). Changes others made meanwhile were not notified: once back, the hub is told to
    /// look at everything.
    private func connectionLost(_ e: PostgresError) {
        guard connectedSinceMs != nil else { return }
        connectedSinceMs = nil
        onConnectionChange?(e.message)
        client.reconnect { [weak self] r in
            guard let self, case .success = r else { return }   // (closed: the hub is stopping)
            setSessionSettings()
            connectedSinceMs = wallClockMillis()
            onConnectionChange?(nil)
            onChange?(.all)
        }
    }

    private func unreachable() -> PostgresError {
        PostgresError(.notConnected, "the database is unreachable (reconnecting)")
    }

    /// A statement on its own (a transaction of its own), timed; fails at once while the
    /// database is unreachable.
    private func send(_ statement: PostgresStatement, _ handler: @escaping (Result<PostgresResult, PostgresError>) -> Void) {
        guard connectedSinceMs != nil else { handler(.failure(unreachable())); return }
        let start = monotonicNanos()
        client.query(statement) { [weak self] r in
            self?.onRoundTrip?((monotonicNanos() &- start) / 1000)
            handler(r)
        }
    }

    /// Statements in one transaction, timed; fail at once while the database is unreachable.
    private func sendTransaction(_ statements: [PostgresStatement], _ done: @escaping ([Result<PostgresResult, PostgresError>]) -> Void) {
        guard connectedSinceMs != nil else { done(Array(repeating: .failure(unreachable()), count: statements.count)); return }
        let start = monotonicNanos()
        client.transaction(statements) { [weak self] rs in
            self?.onRoundTrip?((monotonicNanos() &- start) / 1000)
            done(rs)
        }
    }

    /// The URL without its password, for logs.
    public static func redact(_ url: String) -> String {
        let b = Array(url.utf8)
        // "scheme://user:password@host...": the password is between the first ':' after "://"
        // and the '@'.
        var i = 0
        while i + 2 < b.count && !(b[i] == 0x3A && b[i + 1] == 0x2F && b[i + 2] == 0x2F) { i += 1 }
        guard i + 2 < b.count, let at = b[(i + 3)...].firstIndex(of: 0x40),
              let colon = b[(i + 3)..<at].firstIndex(of: 0x3A) else { return url }
        return String(decoding: b[..<colon], as: UTF8.self) + ":***" + String(decoding: b[at...], as: UTF8.self)
    }

    // MARK: opening

    /// Connects, brings the schema up to date (under an advisory lock, so hubs and commands
    /// that start together migrate once) and listens for others' changes. Waits; not on the
    /// I/O thread. Returns the version the schema had before (nil: it was current).
    @discardableResult
    public func open() throws(OrchestraError) -> Int64? {
        let r = Rendezvous<Result<Int64?, OrchestraError>>()
        do {
            try client.runtime.post { [self] in
                client.connect { [self] c in
                    if case .failure(let e) = c { r.put(.failure(OrchestraError(e.code, "journal \(label): connect failed: \(e.message)"))); return }
                    setSessionSettings()
                    migrate { [self] m in
                        guard case .success = m else { r.put(m); return }
                        client.listen(PostgresStore.channel) { [self] l in
                            if case .failure(let e) = l { r.put(.failure(e.error)); return }
                            connectedSinceMs = wallClockMillis()
                            r.put(m)
                        }
                    }
                }
            }
        } catch { throw error }
        return try r.take().get()
    }

    private func migrate(_ done: @escaping (Result<Int64?, OrchestraError>) -> Void) {
        func fail(_ e: PostgresError) { done(.failure(OrchestraError(e.code, "journal \(label): migrate failed: \(e.message)"))) }
        client.query("SELECT pg_advisory_lock($1)", [.int64(PostgresSchema.migrationLock)]) { [self] r in
            if case .failure(let e) = r { fail(e); return }
            let unlock = { [client] in client.query("SELECT pg_advisory_unlock($1)", [.int64(PostgresSchema.migrationLock)]) { _ in } }
            client.transaction([
                PostgresStatement("CREATE TABLE IF NOT EXISTS orchestra_meta (key text PRIMARY KEY, value text NOT NULL)"),
                PostgresStatement("SELECT value FROM orchestra_meta WHERE key = 'schema_version'"),
            ]) { [self] rs in
                guard case .success(let res) = rs[1] else {
                    if case .failure(let e) = rs[1] { fail(e) }
                    unlock()
                    return
                }
                var version: Int64 = 0
                if res.rowCount > 0, let text = try? res.text(0, 0) { version = Int64(text) ?? -1 }
                if version < 0 || version > PostgresSchema.version {
                    unlock()
                    done(.failure(OrchestraError(.version, "journal \(label): schema version \(version) is newer than this orchestra-hub understands (\(PostgresSchema.version)); use the orchestra-hub that wrote it, or a newer one")))
                    return
                }
                if version == PostgresSchema.version { unlock(); done(.success(nil)); return }
                var statements: [PostgresStatement] = []
                for step in PostgresSchema.steps where step.from >= version || (version == 0 && step.from == 0) {
                    statements += step.sql.map { PostgresStatement($0) }
                }
                statements.append(PostgresStatement(
                    "INSERT INTO orchestra_meta (key, value) VALUES ('schema_version', $1) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    [.text(String(PostgresSchema.version))]))
                client.transaction(statements) { rs in
                    unlock()
                    if let e = PostgresStore.firstError(rs) { fail(e) } else { done(.success(version)) }
                }
            }
        }
    }

    /// Closes the connection; `done` on the I/O thread once closed.
    public func close(_ done: (() -> Void)? = nil) { client.close(done) }

    // MARK: statements

    static func firstError(_ rs: [Result<PostgresResult, PostgresError>]) -> PostgresError? {
        // The statement that failed carries the server's error; the others say "aborted".
        var aborted: PostgresError? = nil
        for r in rs {
            guard case .failure(let e) = r else { continue }
            if e.kind != .aborted { return e }
            aborted = aborted ?? e
        }
        return aborted
    }

    /// A write of the open batch; `parse` turns its result into the completion's value.
    func write<T>(_ sql: String, _ params: [PostgresValue], tasks: TaskWrites = .none, _ done: @escaping StoreDone<T>,
                  _ parse: @escaping (PostgresResult) throws(OrchestraError) -> T) {
        let statement = PostgresStatement(sql, params)
        let handler: (Result<PostgresResult, PostgresError>) -> Void = { [label] r in
            switch r {
            case .failure(let e): done(.failure(OrchestraError(e.code, "journal \(label): \(e.message)")))
            case .success(let res):
                do throws(OrchestraError) { done(.success(try parse(res))) } catch { done(.failure(error)) }
            }
        }
        if batch != nil {
            switch tasks {
            case .none: break
            case .one(let id): lastWrite[id] = batch!.count; writesTasks = true
            case .chosen: openGroups.removeAll(); writesTasks = true
            }
            batch!.append((statement, handler))
        } else {
            // Outside a batch (the hub always opens one first): a transaction of its own.
            send(statement, handler)
        }
    }

    /// Notes that the open batch updates the row of session `sessionId` (a head) or of hub
    /// `hubId` (a heartbeat, an inbox head): `commitBatch` locks these rows at the start of the
    /// transaction, sessions before hubs, each in the order of their ids. Every hub takes them
    /// in that order, so two hubs' batches cannot wait for each other on them. (In the order
    /// the statements came, two hubs each appending to sessions s-0 and s-1 deadlocked:
    /// PostgreSQL rolled one batch back after `deadlock_timeout`, 1 s.)
    func lockFirst(session sessionId: String? = nil, hub hubId: String? = nil) {
        guard batch != nil else { return }
        if let sessionId { sessionRows.insert(sessionId) }
        if let hubId { hubRows.insert(hubId) }
    }

    /// Locks the rows of `table` (`sessions` or `hubs`) with these ids, in the order of the ids.
    static func lockRows(_ table: String, _ ids: Set<String>) -> PostgresStatement {
        PostgresStatement("SELECT 1 FROM \(table) WHERE id IN (SELECT jsonb_array_elements_text($1::jsonb)) ORDER BY id FOR UPDATE",
                          [.text(JSONValue.array(ids.sorted().map { .string($0) }).jsonText)])
    }

    /// A task row for the open batch's group of `kind` (PostgresStore+TaskRows): it joins the
    /// open group unless a write of its task was asked for after that group's place.
    func addRow(_ kind: TaskRowKind, id: String, _ row: [(String, JSONValue)], _ done: @escaping StoreDone<Bool>) {
        guard batch != nil else {
            // Outside a batch: a statement of its own.
            let g = TaskRowGroup(kind: kind, position: 0)
            g.rows.append(.object(row))
            g.waiting.append((id, done))
            let (statement, handler) = self.statement(for: g)
            send(statement, handler)
            return
        }
        var g: TaskRowGroup
        if let open = openGroups[kind], !open.ids.contains(id), (lastWrite[id] ?? -1) < open.position {
            g = open
        } else {
            g = TaskRowGroup(kind: kind, position: batch!.count)
            batch!.append((PostgresStatement(""), { _ in }))
            groups.append(g)
            openGroups[kind] = g
        }
        g.ids.insert(id)
        g.rows.append(.object(row))
        g.waiting.append((id, done))
        lastWrite[id] = max(lastWrite[id] ?? -1, g.position)
        writesTasks = true
    }

    /// A read: at once, or after the open batch.
    func read<T>(_ sql: String, _ params: [PostgresValue], _ done: @escaping StoreDone<T>,
                         _ parse: @escaping (PostgresResult) throws(OrchestraError) -> T) {
        let statement = PostgresStatement(sql, params)
        let handler: (Result<PostgresResult, PostgresError>) -> Void = { [label] r in
            switch r {
            case .failure(let e): done(.failure(OrchestraError(e.code, "journal \(label): \(e.message)")))
            case .success(let res):
                do throws(OrchestraError) { done(.success(try parse(res))) } catch { done(.failure(error)) }
            }
        }
        if batch != nil { readsAfterBatch.append((statement, handler)) } else { send(statement, handler) }
    }

    /// Several reads in one transaction (one snapshot): at once, or after the open batch.
    func readMany<T>(_ statements: [PostgresStatement], _ done: @escaping StoreDone<T>,
                             _ parse: @escaping ([PostgresResult]) throws(OrchestraError) -> T) {
        let run = { [self, label] in
            sendTransaction(statements) { rs in
                if let e = PostgresStore.firstError(rs) { done(.failure(OrchestraError(e.code, "journal \(label): \(e.message)"))); return }
                let results = rs.compactMap { try? $0.get() }
                do throws(OrchestraError) { done(.success(try parse(results))) } catch { done(.failure(error)) }
            }
        }
        if batch != nil { deferredReads.append(run) } else { run() }
    }
    /// `readMany`s asked for while a batch was open: sent after it.
    private var deferredReads: [() -> Void] = []

    public func beginBatch() throws(OrchestraError) {
        if batch == nil { batch = [] }
    }

    public func commitBatch(_ done: @escaping (OrchestraError?) -> Void) {
        guard var ops = batch else { done(nil); return }
        batch = nil
        for g in groups { ops[g.position] = statement(for: g) }
        groups = []
        openGroups = [:]
        lastWrite = [:]
        if !ops.isEmpty {
            // Plans for the tasks' rows (PostgresStore+TaskRows), set for this transaction only.
            var first: [(PostgresStatement, (Result<PostgresResult, PostgresError>) -> Void)] = []
            if writesTasks { first.append((PostgresStore.planSettings, { _ in })) }
            if !sessionRows.isEmpty { first.append((PostgresStore.lockRows("sessions", sessionRows), { _ in })) }
            if !hubRows.isEmpty { first.append((PostgresStore.lockRows("hubs", hubRows), { _ in })) }
            ops.insert(contentsOf: first, at: 0)
        }
        sessionRows = []
        hubRows = []
        writesTasks = false
        let reads = readsAfterBatch
        readsAfterBatch = []
        if ops.isEmpty {
            done(nil)
        } else {
            sendTransaction(ops.map(\.0)) { [label] rs in
                let first = PostgresStore.firstError(rs)
                let e = first.map { OrchestraError($0.code, "journal \(label): commit failed: \($0.message)") }
                done(e)
                // A statement that ran in a transaction that did not commit: rolled back, or
                // (the connection broke at the commit) not known to be committed.
                let kind: PostgresError.Kind = first.map { [.connectionLost, .notConnected, .timedOut].contains($0.kind) } == true ? first!.kind : .aborted
                for (i, op) in ops.enumerated() {
                    if let e, case .success = rs[i] {
                        op.1(.failure(PostgresError(kind, "rolled back: \(e.message)")))
                    } else {
                        op.1(rs[i])
                    }
                }
            }
        }
        for (s, h) in reads { send(s, h) }
        let many = deferredReads
        deferredReads = []
        for run in many { run() }
    }

    // MARK: rows

    static let taskColumns = """
        id, state, spec, session_id, submitter, trace_id, priority, strategy, pinned_agent, attempt, \
        max_attempts, agent_id, rejected_by, result, error, error_code, dead, created_ms, updated_ms, hub_id, submit_hub
        """

    private func bad(_ row: String, _ what: String) -> OrchestraError {
        OrchestraError(.io, "journal \(label): \(row) is unreadable: \(what)")
    }

    private func readTask(_ r: PostgresResult, _ i: Int) throws(OrchestraError) -> TaskRecord {
        guard let id = try r.text(i, 0) else { throw bad("a task", "column id is NULL") }
        let row = "task \"\(id)\""
        guard let stateName = try r.text(i, 1), let state = TaskState(rawValue: stateName) else { throw bad(row, "column state") }
        func json(_ c: Int) throws(OrchestraError) -> JSONValue? {
            guard let t = try r.text(i, c) else { return nil }
            do { return try JSONValue.parse(Array(t.utf8), limits: DecodeLimits(maxSize: 1 << 30, maxDepth: DecodeLimits.depthCeiling)) } catch {
                throw bad(row, "column \(c) is not valid JSON (\(error.message))")
            }
        }
        func int(_ c: Int, _ name: String) throws(OrchestraError) -> Int {
            guard let v = try r.int64(i, c), let n = Int(exactly: v) else { throw bad(row, "column \(name)") }
            return n
        }
        guard let spec = try json(2) else { throw bad(row, "column spec is NULL") }
        var t = TaskRecord(id: id, spec: spec, sessionId: try r.text(i, 3), submitter: try r.text(i, 4),
                           traceId: try r.text(i, 5) ?? id, priority: try int(6, "priority"), strategy: try r.text(i, 7),
                           pinnedAgent: try r.text(i, 8), maxAttempts: try int(10, "max_attempts"), nowMs: 0)
        t.state = state
        t.attempt = try int(9, "attempt")
        t.agentId = try r.text(i, 11)
        guard let rejected = try json(12)?.array else { throw bad(row, "column rejected_by is not a JSON array") }
        t.rejectedBy = rejected.compactMap(\.string)
        t.result = try json(13)
        t.error = try r.text(i, 14)
        t.errorCode = try r.text(i, 15)
        t.dead = try r.bool(i, 16) ?? false
        t.createdMs = try r.int64(i, 17) ?? 0
        t.updatedMs = try r.int64(i, 18) ?? 0
        t.hubId = try r.text(i, 19)
        t.submitHub = try r.text(i, 20)
        return t
    }

    func readTasks(_ r: PostgresResult) throws(OrchestraError) -> [TaskRecord] {
        var out: [TaskRecord] = []
        out.reserveCapacity(r.rowCount)
        for i in 0..<r.rowCount { out.append(try readTask(r, i)) }
        return out
    }

    static let userColumns = "name, role, disabled, token_generation, created_ms"

    func readUser(_ r: PostgresResult, _ i: Int) throws(OrchestraError) -> UserAccount {
        guard let name = try r.text(i, 0) else { throw bad("a user", "column name is NULL") }
        guard let roleName = try r.text(i, 1), let role = UserRole(rawValue: roleName) else {
            throw bad("user \"\(name)\"", "column role has an unknown value")
        }
        return UserAccount(name: name, role: role, disabled: try r.bool(i, 2) ?? false, tokenGeneration: try r.int64(i, 3) ?? 0,
                           createdMs: try r.int64(i, 4) ?? 0)
    }

    private static let keyColumns = "id, disabled, agents, created_ms"

    private func readKey(_ r: PostgresResult, _ i: Int) throws(OrchestraError) -> KeyAccount {
        guard let id = try r.text(i, 0) else { throw bad("a key", "column id is NULL") }
        var scope: AgentIdScope? = nil
        if let text = try r.text(i, 2) {
            guard let s = AgentIdScope(text) else { throw bad("key \"\(id)\"", "column agents holds the bad pattern list \"\(text)\"") }
            scope = s
        }
        return KeyAccount(id: id, disabled: try r.bool(i, 1) ?? false, agents: scope, createdMs: try r.int64(i, 3) ?? 0)
    }

    private func readSession(_ r: PostgresResult, _ i: Int, shares: [String]) throws(OrchestraError) -> SessionRecord {
        guard let id = try r.text(i, 0), let owner = try r.text(i, 1) else { throw bad("a session", "column id or owner is NULL") }
        return SessionRecord(id: id, owner: owner, head: try r.int64(i, 2) ?? 0, sharedWith: shares, createdMs: try r.int64(i, 3) ?? 0)
    }

    // MARK: writes

    public func updatePlacement(_ t: TaskRecord, _ done: @escaping StoreDone<Void>) {
        write("""
            UPDATE tasks SET state = $2, attempt = $3, agent_id = $4, rejected_by = $5, updated_ms = $6
            WHERE id = $1 AND state NOT IN ('succeeded', 'failed')
            """, [.text(t.id), .text(t.state.rawValue), .int64(Int64(t.attempt)), t.agentId.map { .text($0) } ?? .null,
                  .text(JSONValue.array(t.rejectedBy.map { .string($0) }).jsonText), .int64(t.updatedMs)], tasks: .one(t.id), done) { _ in () }
    }

    public func requeueDead(id: String, nowMs: Int64, _ done: @escaping StoreDone<TaskRecord?>) {
        write("""
            UPDATE tasks SET state = 'queued', attempt = 0, agent_id = NULL, rejected_by = '[]', result = NULL,
            error = NULL, error_code = NULL, dead = false, updated_ms = $2, hub_id = NULL
            WHERE id = $1 AND dead RETURNING \(PostgresStore.taskColumns)
            """, [.text(id), .int64(nowMs)], tasks: .one(id), done) { [self] (r) throws(OrchestraError) -> TaskRecord? in
            r.rowCount == 0 ? nil : try readTask(r, 0)
        }
    }

    public func rememberNonce(keyId: String, nonce: String, timestampMs: Int64, nowMs: Int64, _ done: @escaping StoreDone<Bool>) {
        if lastNoncePruneMs.map({ nowMs < $0 || nowMs - $0 >= 60_000 }) ?? true {
            lastNoncePruneMs = nowMs
            write("DELETE FROM nonces WHERE expires_ms <= $1", [.int64(nowMs)], { (_: Result<Void, OrchestraError>) in }) { _ in () }
        }
        let (expires, overflow) = max(nowMs, timestampMs).addingReportingOverflow(Journal.nonceRetentionMs)
        write("""
            INSERT INTO nonces (key_id, nonce, timestamp_ms, expires_ms) VALUES ($1, $2, $3, $4)
            ON CONFLICT (key_id, nonce) DO UPDATE SET timestamp_ms = excluded.timestamp_ms, expires_ms = excluded.expires_ms
            WHERE nonces.expires_ms <= $5
            """, [.text(keyId), .text(nonce), .int64(timestampMs), .int64(overflow ? Int64.max : expires), .int64(nowMs)], done) { $0.affectedRows == 1 }
    }

    public func bindAgent(agentId: String, keyId: String, nowMs: Int64, _ done: @escaping StoreDone<String>) {
        // The key it is bound to afterwards: ours when the insert happened, else the one there.
        write("""
            WITH ins AS (
                INSERT INTO agent_bindings (agent_id, key_id, created_ms) VALUES ($1, $2, $3)
                ON CONFLICT (agent_id) DO NOTHING RETURNING key_id)
            SELECT key_id FROM ins UNION ALL
            SELECT key_id FROM agent_bindings WHERE agent_id = $1 AND NOT EXISTS (SELECT 1 FROM ins)
            """, [.text(agentId), .text(keyId), .int64(nowMs)], done) { (r) throws(OrchestraError) -> String in
            // Bound by a transaction this statement's snapshot did not see: not ours.
            guard r.rowCount > 0, let k = try r.text(0, 0) else { return "" }
            return k
        }
    }

    public func insertSession(id: String, owner: String, nowMs: Int64, _ done: @escaping StoreDone<Bool>) {
        write("INSERT INTO sessions (id, owner, head, created_ms, updated_ms) VALUES ($1, $2, 0, $3, $3) ON CONFLICT (id) DO NOTHING",
              [.text(id), .text(owner), .int64(nowMs)], done) { $0.affectedRows == 1 }
    }

    public func setSessionHead(id: String, head: Int64, nowMs: Int64, _ done: @escaping StoreDone<Void>) {
        lockFirst(session: id)
        write("UPDATE sessions SET head = greatest(head, $2), updated_ms = $3 WHERE id = $1",
              [.text(id), .int64(head), .int64(nowMs)], done) { _ in () }
    }

    public func setSessionShares(id: String, users: [String], _ done: @escaping StoreDone<Void>) {
        write("DELETE FROM session_shares WHERE session_id = $1", [.text(id)], { (_: Result<Void, OrchestraError>) in }) { _ in () }
        write("""
            INSERT INTO session_shares (session_id, user_name)
            SELECT $1, u FROM jsonb_array_elements_text($2::jsonb) AS u ON CONFLICT DO NOTHING
            """, [.text(id), .text(JSONValue.array(users.map { .string($0) }).jsonText)], done) { _ in () }
    }

    public func appendSessionEvent(sessionId: String, offset: Int64, atMs: Int64, kind: SessionEventKind, frame: [UInt8],
                                   _ done: @escaping StoreDone<Void>) {
        write("INSERT INTO session_events (session_id, event_offset, at_ms, kind, frame) VALUES ($1, $2, $3, $4, $5)",
              [.text(sessionId), .int64(offset), .int64(atMs), .int64(Int64(kind.rawValue)), .bytea(frame)], done) { _ in () }
    }

    public func deleteSessionEvents(sessionId: String, _ range: ClosedRange<Int64>, kind: SessionEventKind?, _ done: @escaping StoreDone<Void>) {
        if let kind {
            write("DELETE FROM session_events WHERE session_id = $1 AND event_offset BETWEEN $2 AND $3 AND kind = $4",
                  [.text(sessionId), .int64(range.lowerBound), .int64(range.upperBound), .int64(Int64(kind.rawValue))], done) { _ in () }
        } else {
            write("DELETE FROM session_events WHERE session_id = $1 AND event_offset BETWEEN $2 AND $3",
                  [.text(sessionId), .int64(range.lowerBound), .int64(range.upperBound)], done) { _ in () }
        }
    }

    // MARK: reads

    public func setting(_ key: String, insertingIfAbsent value: String, _ done: @escaping StoreDone<String>) {
        read("""
            WITH ins AS (INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING RETURNING value)
            SELECT value FROM ins UNION ALL SELECT value FROM settings WHERE key = $1 AND NOT EXISTS (SELECT 1 FROM ins)
            """, [.text(key), .text(value)], done) { (r) throws(OrchestraError) -> String in
            guard r.rowCount > 0, let v = try r.text(0, 0) else { return value }
            return v
        }
    }

    public func replayLogs(including sessions: Set<String>, _ done: @escaping StoreDone<[(SessionRecord, [SessionEventEntry])]>) {
        sessionEventIndex(sessionId: nil) { [self] r in
            let index: [SessionEventEntry]
            switch r {
            case .failure(let e): done(.failure(e)); return
            case .success(let x): index = x
            }
            var byId: [String: [SessionEventEntry]] = [:]
            for e in index { byId[e.sessionId, default: []].append(e) }
            let idsJSON = JSONValue.array(Set(byId.keys).union(sessions).sorted().map { .string($0) }).jsonText
            readMany([
                PostgresStatement("SELECT session_id, user_name FROM session_shares WHERE session_id IN (SELECT jsonb_array_elements_text($1::jsonb)) ORDER BY 1, 2",
                                  [.text(idsJSON)]),
                PostgresStatement("SELECT id, owner, head, created_ms FROM sessions WHERE id IN (SELECT jsonb_array_elements_text($1::jsonb)) ORDER BY id",
                                  [.text(idsJSON)]),
            ], done) { [self] (rs) throws(OrchestraError) -> [(SessionRecord, [SessionEventEntry])] in
                var sharedWith: [String: [String]] = [:]
                for i in 0..<rs[0].rowCount {
                    if let s = try rs[0].text(i, 0), let u = try rs[0].text(i, 1) { sharedWith[s, default: []].append(u) }
                }
                var out: [(SessionRecord, [SessionEventEntry])] = []
                for i in 0..<rs[1].rowCount {
                    var rec = try readSession(rs[1], i, shares: [])
                    rec.sharedWith = sharedWith[rec.id] ?? []
                    out.append((rec, byId[rec.id] ?? []))
                }
                return out
            }
        }
    }

    public func task(id: String, _ done: @escaping StoreDone<TaskRecord?>) {
        read("SELECT \(PostgresStore.taskColumns) FROM tasks WHERE id = $1", [.text(id)], done) { [self] (r) throws(OrchestraError) -> TaskRecord? in
            r.rowCount == 0 ? nil : try readTask(r, 0)
        }
    }

    public func deadLetters(limit: Int, _ done: @escaping StoreDone<[TaskRecord]>) {
        read("SELECT \(PostgresStore.taskColumns) FROM tasks WHERE dead ORDER BY updated_ms DESC, id DESC LIMIT $1",
             [.int64(Int64(max(limit, 0)))], done) { [self] (r) throws(OrchestraError) in try readTasks(r) }
    }

    public func unfinishedTasks(_ done: @escaping StoreDone<[TaskRecord]>) {
        read("SELECT \(PostgresStore.taskColumns) FROM tasks WHERE state IN ('queued', 'assigned', 'running') ORDER BY created_ms, id",
             [], done) { [self] (r) throws(OrchestraError) in try readTasks(r) }
    }

    public func keySecret(id: String, _ done: @escaping StoreDone<[UInt8]?>) {
        read("SELECT secret FROM agent_keys WHERE id = $1 AND NOT disabled", [.text(id)], done) { (r) throws(OrchestraError) -> [UInt8]? in
            r.rowCount == 0 ? nil : try r.bytes(0, 0)
        }
    }

    public func keyAccount(id: String, _ done: @escaping StoreDone<KeyAccount?>) {
        read("SELECT \(PostgresStore.keyColumns) FROM agent_keys WHERE id = $1", [.text(id)], done) { [self] (r) throws(OrchestraError) -> KeyAccount? in
            r.rowCount == 0 ? nil : try readKey(r, 0)
        }
    }

    public func agentBinding(agentId: String, _ done: @escaping StoreDone<String?>) {
        read("SELECT key_id FROM agent_bindings WHERE agent_id = $1", [.text(agentId)], done) { (r) throws(OrchestraError) -> String? in
            r.rowCount == 0 ? nil : try r.text(0, 0)
        }
    }

    public func user(name: String, _ done: @escaping StoreDone<UserAccount?>) {
        read("SELECT \(PostgresStore.userColumns) FROM users WHERE name = $1", [.text(name)], done) { [self] (r) throws(OrchestraError) -> UserAccount? in
            r.rowCount == 0 ? nil : try readUser(r, 0)
        }
    }

    public func accounts(_ done: @escaping StoreDone<(users: [UserAccount], keys: [KeyAccount])>) {
        readMany([PostgresStatement("SELECT \(PostgresStore.userColumns) FROM users ORDER BY name"),
                  PostgresStatement("SELECT \(PostgresStore.keyColumns) FROM agent_keys ORDER BY id")], done) { [self] (rs) throws(OrchestraError) in
            var users: [UserAccount] = [], keys: [KeyAccount] = []
            for i in 0..<rs[0].rowCount { users.append(try readUser(rs[0], i)) }
            for i in 0..<rs[1].rowCount { keys.append(try readKey(rs[1], i)) }
            return (users, keys)
        }
    }

    public func session(id: String, _ done: @escaping StoreDone<SessionRecord?>) {
        readMany([PostgresStatement("SELECT user_name FROM session_shares WHERE session_id = $1 ORDER BY user_name", [.text(id)]),
                  PostgresStatement("SELECT id, owner, head, created_ms FROM sessions WHERE id = $1", [.text(id)])], done) { [self] (rs) throws(OrchestraError) -> SessionRecord? in
            var shares: [String] = []
            for i in 0..<rs[0].rowCount { if let u = try rs[0].text(i, 0) { shares.append(u) } }
            return rs[1].rowCount == 0 ? nil : try readSession(rs[1], 0, shares: shares)
        }
    }

    public func sessionEventIndex(sessionId: String?, _ done: @escaping StoreDone<[SessionEventEntry]>) {
        let columns = "SELECT session_id, event_offset, at_ms, kind, length(frame)::int8 FROM session_events"
        let parse: (PostgresResult) throws(OrchestraError) -> [SessionEventEntry] = { (r) throws(OrchestraError) in
            var out: [SessionEventEntry] = []
            for i in 0..<r.rowCount {
                guard let sid = try r.text(i, 0), let off = try r.int64(i, 1), let at = try r.int64(i, 2), let k = try r.int64(i, 3),
                      let kind = SessionEventKind(rawValue: Int(k)), let n = try r.int64(i, 4) else { continue }
                out.append(SessionEventEntry(sessionId: sid, offset: off, atMs: at, bytes: Int(n), kind: kind))
            }
            return out
        }
        if let sessionId {
            read("\(columns) WHERE session_id = $1 ORDER BY event_offset", [.text(sessionId)], done, parse)
        } else {
            read("\(columns) ORDER BY session_id, event_offset", [], done, parse)
        }
    }

    public func sessionEvents(sessionId: String, after offset: Int64, _ done: @escaping StoreDone<[(offset: Int64, frame: [UInt8])]>) {
        read("SELECT event_offset, frame FROM session_events WHERE session_id = $1 AND event_offset > $2 ORDER BY event_offset",
             [.text(sessionId), .int64(offset)], done) { (r) throws(OrchestraError) -> [(offset: Int64, frame: [UInt8])] in
            var out: [(offset: Int64, frame: [UInt8])] = []
            for i in 0..<r.rowCount {
                guard let o = try r.int64(i, 0), let f = try r.bytes(i, 1) else { continue }
                out.append((o, f))
            }
            return out
        }
    }

    public func taskCounts(_ done: @escaping StoreDone<(byState: [TaskState: Int], dead: Int)>) {
        read("""
            SELECT state, count(*)::int8, count(*) FILTER (WHERE dead)::int8 FROM tasks GROUP BY state
            """, [], done) { (r) throws(OrchestraError) -> (byState: [TaskState: Int], dead: Int) in
            var counts: [TaskState: Int] = [:]
            for s in TaskState.allCases { counts[s] = 0 }
            var dead = 0
            for i in 0..<r.rowCount {
                guard let name = try r.text(i, 0), let s = TaskState(rawValue: name) else { continue }
                counts[s] = Int(try r.int64(i, 1) ?? 0)
                dead += Int(try r.int64(i, 2) ?? 0)
            }
            return (counts, dead)
        }
    }

    /// A notification's payload: the kinds of change, separated by spaces ("accounts",
    /// "tasks", "events", "inbox:HUB", "agents", or "all").
    private func notified(_ payload: String) {
        var c: StoreChanges = []
        for word in payload.split(separator: " ") {
            switch word {
            case "accounts": c.insert(.accounts); accountsChanged = true
            case "tasks": c.insert(.tasks); tasksChanged = true
            case "events": c.insert(.events)
            case "agents": c.insert(.agents)
            case "all": c = .all; accountsChanged = true; tasksChanged = true
            default:
                if word.hasPrefix("inbox:"), word.dropFirst(6) == hubId { c.insert(.inbox) }
            }
        }
        if !c.isEmpty { onChange?(c) }
    }

    public func changedElsewhere() -> Bool {
        let now = wallClockMillis()
        if now - lastPollMs >= PostgresStore.pollIntervalMs { lastPollMs = now; accountsChanged = true; tasksChanged = true }
        let changed = accountsChanged || tasksChanged
        accountsChanged = false
        tasksChanged = false
        return changed
    }
}
