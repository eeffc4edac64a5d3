import Glibc
import OrchestraCore

/// A task's state in the journal (docs/protocol.md, "Tasks").
public enum TaskState: String, Sendable, CaseIterable {
    case queued, assigned, running, succeeded, failed

    public var isFinished: Bool { self == .succeeded || self == .failed }
}

/// How hard a commit is pushed to the disk.
public enum Durability: String, Sendable {
    /// `PRAGMA synchronous=NORMAL` (the default): with WAL, every commit survives the process
    /// being killed (kill -9); the last commits may be lost if the machine loses power.
    case normal
    /// `PRAGMA synchronous=FULL`: the WAL is fsynced at every commit, so commits survive a
    /// power loss too, at the price of one fsync per write.
    case full
}

/// One task as the journal keeps it.
public struct TaskRecord: Sendable, Equatable {
    public var id: String
    public var state: TaskState
    /// The task as agents get it: type, tool, capabilities, parameters, priority, sessionId.
    public var spec: JSONValue
    public var sessionId: String?
    public var submitter: String?
    public var traceId: String
    /// 0...3 (low, normal, high, critical).
    public var priority: Int
    public var strategy: String?
    public var pinnedAgent: String?
    /// 0 = never assigned.
    public var attempt: Int
    public var maxAttempts: Int
    public var agentId: String?
    public var rejectedBy: [String]
    public var result: JSONValue?
    public var error: String?
    public var errorCode: String?
    /// In the dead-letter list.
    public var dead: Bool
    /// The hub holding its lease, or that reserved it while queued (several hubs).
    public var hubId: String? = nil
    /// The hub its submitter is connected to (several hubs: where its result goes).
    public var submitHub: String? = nil
    public var createdMs: Int64
    public var updatedMs: Int64

    /// A new task: state queued, attempt 0, no agent, no result.
    public init(id: String, spec: JSONValue, sessionId: String?, submitter: String?, traceId: String, priority: Int,
                strategy: String?, pinnedAgent: String?, maxAttempts: Int, nowMs: Int64)
    {
        self.id = id
        self.state = .queued
        self.spec = spec
        self.sessionId = sessionId
        self.submitter = submitter
        self.traceId = traceId
        self.priority = priority
        self.strategy = strategy
        self.pinnedAgent = pinnedAgent
        self.attempt = 0
        self.maxAttempts = maxAttempts
        self.agentId = nil
        self.rejectedBy = []
        self.result = nil
        self.error = nil
        self.errorCode = nil
        self.dead = false
        self.createdMs = nowMs
        self.updatedMs = nowMs
    }
}

/// The hub's journal: tasks, agent keys, users, seen nonces and settings in one SQLite file
/// (WAL mode). Outside a batch every write is committed before the call returns. Inside a
/// batch (`beginBatch`, group commit: the hub opens one per loop turn) writes join one open
/// transaction and are committed by `commitBatch`, all or none: until then a write that
/// returned is neither durable nor visible to another `Journal`, and a failed `commitBatch`
/// rolls every write of the batch back. Whoever opens a batch acknowledges nothing of it
/// before `commitBatch` succeeded.
///
/// Threads: a `Journal` is used from one thread at a time — the hub's I/O thread, or a CLI
/// command. It is `Sendable` so it can be handed to that thread; it has no lock of its own.
/// Two `Journal` objects (in one process or two, e.g. the running hub and `orchestra-hub dead
/// requeue`) may share a file: SQLite orders their writes (busy timeout 5 s), and
/// `dataVersion()` tells one that the other committed.
///
/// Errors: SQLite failures and rows that cannot be read back (bad JSON, an unknown state) are
/// `OrchestraError(.io, "journal <path>: <what> failed: ...")`; a journal written by a newer
/// hub is `.version`; a bad argument (priority 7) is `.invalidArgument`; a use after `close()`
/// is `.closed`.
public final class Journal: @unchecked Sendable {
    /// The schema this code writes (`PRAGMA user_version`): the number of `migrations`.
    public static var schemaVersion: Int64 { Int64(migrations.count) }

    /// The schema's history: step i takes a journal from version i to i + 1. Opening a journal
    /// applies the steps it lacks in one transaction (`orchestra-hub migrate` does only that).
    static let migrations = [schemaV1, schemaV2, schemaV3, schemaV4]
    /// How long a nonce is remembered after it was seen (or after its timestamp, if later).
    public static let nonceRetentionMs: Int64 = 10 * 60 * 1000
    /// At most this often, `rememberNonce` deletes the expired nonces.
    static let noncePruneIntervalMs: Int64 = 60 * 1000

    public let path: String
    public let durability: Durability
    let db: SQLiteDatabase
    private var lastNoncePruneMs: Int64? = nil
    /// JSON columns hold what this code wrote, so any depth a JSONValue can have is allowed back.
    private static let jsonLimits = DecodeLimits(maxSize: 1 << 30, maxDepth: DecodeLimits.depthCeiling)

    /// Opens (creating it, and its directory, if missing) the journal at `path`: WAL mode,
    /// `synchronous` per `durability`, foreign keys on, the schema created or checked.
    public init(path: String, durability: Durability = .normal) throws(OrchestraError) {
        self.path = path
        self.durability = durability
        db = try SQLiteDatabase(path: path, label: "journal")
        do throws(OrchestraError) {
            try setUp()
        } catch {
            db.close()
            throw error
        }
    }

    deinit { close() }

    /// Checkpoints the WAL into the main file (truncating it), finalizes the statements and
    /// closes the connection. Idempotent; later calls throw `.closed`.
    public func close() {
        guard !db.isClosed else { return }
        db.rollback()
        _ = try? db.exec("PRAGMA wal_checkpoint(TRUNCATE)")
        db.close()
    }

    /// What of the journal other users can read or write: its file, -wal and -shm files (mode
    /// bits for group or others) and its directory (readable or writable by others). Empty
    /// when it is private, or in memory. The hub logs each as a warning at start.
    public func exposure() -> [String] {
        guard path != ":memory:" else { return [] }
        var out: [String] = []
        for file in [path, path + "-wal", path + "-shm"] {
            var st = stat()
            guard stat(file, &st) == 0 else { continue }
            let mode = st.st_mode & 0o777
            if mode & 0o077 != 0 {
                out.append("\(file) has mode \(String(mode, radix: 8)): other users can read it (agent secrets, password hashes, the token key); chmod 600 it")
            }
        }
        let slash = path.lastIndex(of: "/")
        let dir = slash.map { $0 == path.startIndex ? "/" : String(path[..<$0]) } ?? "."
        var st = stat()
        if stat(dir, &st) == 0, st.st_mode & 0o022 != 0 {
            out.append("directory \(dir) has mode \(String(st.st_mode & 0o777, radix: 8)): other users can replace the journal; chmod 700 it")
        }
        return out
    }

    // MARK: schema

    private func setUp() throws(OrchestraError) {
        // The first read checks the file is a database at all ("file is not a database").
        let version = try userVersion(what: "open")
        if version > Journal.schemaVersion { throw newerSchema(version) }
        let mode = try pragmaText("PRAGMA journal_mode=WAL", what: "set WAL mode")
        if mode != "wal" && !(path == ":memory:" && mode == "memory") {
            throw OrchestraError(.io, "journal \(path): set WAL mode failed: the journal mode stayed \"\(mode)\"")
        }
        try db.exec("PRAGMA synchronous=\(durability == .full ? "FULL" : "NORMAL")", what: "set synchronous")
        try db.exec("PRAGMA foreign_keys=ON", what: "enable foreign keys")
        // A WAL that a burst made large is cut back to this size when it next starts over.
        try db.exec("PRAGMA journal_size_limit=\(Journal.walSizeLimitBytes)", what: "set journal_size_limit")
        // Under the write lock, so two processes opening a new file create the schema once.
        try db.transaction { () throws(OrchestraError) in
            let v = try userVersion(what: "read the schema version")
            if v > Journal.schemaVersion { throw newerSchema(v) }
            if v == Journal.schemaVersion { return }
            if v == 0 {
                let objects = try db.prepare("SELECT count(*) FROM sqlite_master")
                defer { objects.reset() }
                _ = try objects.step(what: "read the schema")
                let n = objects.int64(0)
                objects.reset()
                if n != 0 {
                    throw OrchestraError(.io, "journal \(path): open failed: the file is an SQLite database but not an orchestra journal (user_version 0 and \(n) schema objects)")
                }
            }
            // Each step takes the schema from version i to i + 1, in this one transaction.
            for i in Int(v)..<Journal.migrations.count {
                try db.exec(Journal.migrations[i], what: "migrate the schema to version \(i + 1)")
            }
            try db.exec("PRAGMA user_version=\(Journal.schemaVersion)", what: "set the schema version")
            migratedFrom = v
        }
    }

    /// The schema version the journal had before this open migrated it (nil: it was current).
    public private(set) var migratedFrom: Int64? = nil

    private func newerSchema(_ v: Int64) -> OrchestraError {
        OrchestraError(.version, "journal \(path): schema version \(v) is newer than this orchestra-hub understands (\(Journal.schemaVersion)); use the orchestra-hub that wrote it, or a newer one")
    }

    private func userVersion(what: String) throws(OrchestraError) -> Int64 {
        let s = try db.prepare("PRAGMA user_version")
        defer { s.reset() }
        guard try s.step(what: what) else { return 0 }
        return s.int64(0)
    }

    private func pragmaText(_ sql: String, what: String) throws(OrchestraError) -> String {
        let s = try db.prepare(sql)
        defer { s.reset() }
        guard try s.step(what: what) else { return "" }
        return s.text(0) ?? ""
    }

    static let schemaV1 = """
        CREATE TABLE tasks (
            id TEXT PRIMARY KEY NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('queued','assigned','running','succeeded','failed')),
            spec TEXT NOT NULL,
            session_id TEXT,
            submitter TEXT,
            trace_id TEXT NOT NULL,
            priority INTEGER NOT NULL CHECK (priority BETWEEN 0 AND 3),
            strategy TEXT,
            pinned_agent TEXT,
            attempt INTEGER NOT NULL CHECK (attempt >= 0),
            max_attempts INTEGER NOT NULL CHECK (max_attempts >= 0),
            agent_id TEXT,
            rejected_by TEXT NOT NULL,
            result TEXT,
            error TEXT,
            error_code TEXT,
            dead INTEGER NOT NULL CHECK (dead IN (0, 1)),
            created_ms INTEGER NOT NULL,
            updated_ms INTEGER NOT NULL
        );
        CREATE INDEX tasks_by_state ON tasks (state, updated_ms);
        CREATE INDEX tasks_dead ON tasks (updated_ms) WHERE dead = 1;
        CREATE TABLE agent_keys (
            id TEXT PRIMARY KEY NOT NULL,
            secret BLOB NOT NULL,
            created_ms INTEGER NOT NULL
        );
        CREATE TABLE users (
            name TEXT PRIMARY KEY NOT NULL,
            password_hash TEXT NOT NULL,
            role TEXT NOT NULL,
            created_ms INTEGER NOT NULL
        );
        CREATE TABLE nonces (
            key_id TEXT NOT NULL,
            nonce TEXT NOT NULL,
            timestamp_ms INTEGER NOT NULL,
            expires_ms INTEGER NOT NULL,
            PRIMARY KEY (key_id, nonce)
        ) WITHOUT ROWID;
        CREATE INDEX nonces_by_expiry ON nonces (expires_ms);
        CREATE TABLE settings (
            key TEXT PRIMARY KEY NOT NULL,
            value TEXT NOT NULL
        ) WITHOUT ROWID;
        """

    /// Version 2, trust: users get a disabled flag and a token generation (raising it revokes
    /// every token issued before), keys a disabled flag and the agent ids they may register;
    /// agent ids are bound to the key that first registered them; sessions have an owner, the
    /// users they are shared with, a head offset and their events (the replay log).
    static let schemaV2 = """
        ALTER TABLE users ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1));
        ALTER TABLE users ADD COLUMN token_generation INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE agent_keys ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1));
        ALTER TABLE agent_keys ADD COLUMN agents TEXT;
        CREATE TABLE agent_bindings (
            agent_id TEXT PRIMARY KEY NOT NULL,
            key_id TEXT NOT NULL,
            created_ms INTEGER NOT NULL
        ) WITHOUT ROWID;
        CREATE TABLE sessions (
            id TEXT PRIMARY KEY NOT NULL,
            owner TEXT NOT NULL,
            head INTEGER NOT NULL CHECK (head >= 0),
            created_ms INTEGER NOT NULL,
            updated_ms INTEGER NOT NULL
        ) WITHOUT ROWID;
        CREATE TABLE session_shares (
            session_id TEXT NOT NULL,
            user_name TEXT NOT NULL,
            PRIMARY KEY (session_id, user_name)
        ) WITHOUT ROWID;
        CREATE TABLE session_events (
            session_id TEXT NOT NULL,
            event_offset INTEGER NOT NULL,
            at_ms INTEGER NOT NULL,
            kind INTEGER NOT NULL CHECK (kind IN (0, 1)),
            frame BLOB NOT NULL,
            PRIMARY KEY (session_id, event_offset)
        );
        CREATE INDEX tasks_by_session ON tasks (session_id) WHERE session_id IS NOT NULL;
        """

    /// Version 3, several hubs on one database (PostgreSQL; a SQLite journal has one hub, and
    /// the same tables so both backends answer the same questions): the hub holding a task's
    /// lease and the hub its submitter is on, the hub that wrote a session event, the hubs and
    /// their heartbeats, each hub's inbox (events for its connections from other hubs), the
    /// cluster's agents.
    static let schemaV3 = """
        ALTER TABLE tasks ADD COLUMN hub_id TEXT;
        ALTER TABLE tasks ADD COLUMN submit_hub TEXT;
        ALTER TABLE session_events ADD COLUMN hub_id TEXT;
        CREATE INDEX tasks_queued ON tasks (priority DESC, created_ms) WHERE state = 'queued';
        CREATE INDEX tasks_by_hub ON tasks (hub_id) WHERE state = 'assigned';
        CREATE INDEX session_events_by_time ON session_events (at_ms);
        CREATE TABLE hubs (
            id TEXT PRIMARY KEY NOT NULL,
            started_ms INTEGER NOT NULL,
            heartbeat_ms INTEGER NOT NULL,
            stopped INTEGER NOT NULL DEFAULT 0 CHECK (stopped IN (0, 1)),
            inbox_head INTEGER NOT NULL DEFAULT 0,
            info TEXT NOT NULL DEFAULT '{}'
        ) WITHOUT ROWID;
        CREATE TABLE hub_inbox (
            hub_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            at_ms INTEGER NOT NULL,
            body BLOB NOT NULL,
            PRIMARY KEY (hub_id, seq)
        );
        CREATE TABLE agent_presence (
            agent_id TEXT PRIMARY KEY NOT NULL,
            hub_id TEXT NOT NULL,
            online INTEGER NOT NULL CHECK (online IN (0, 1)),
            info TEXT NOT NULL,
            updated_ms INTEGER NOT NULL
        ) WITHOUT ROWID;
        """

    // MARK: tasks

    /// The task columns, in the order `bindTask` binds them (?1...?19) and `readTask` reads them.
    static let taskColumns = """
        id, state, spec, session_id, submitter, trace_id, priority, strategy, pinned_agent, attempt, \
        max_attempts, agent_id, rejected_by, result, error, error_code, dead, created_ms, updated_ms, hub_id, submit_hub
        """
    private static let insertTaskSQL = """
        INSERT INTO tasks (\(taskColumns)) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)
        ON CONFLICT (id) DO NOTHING
        """
    private static let updateTaskSQL = """
        UPDATE tasks SET state = ?2, spec = ?3, session_id = ?4, submitter = ?5, trace_id = ?6, priority = ?7,
        strategy = ?8, pinned_agent = ?9, attempt = ?10, max_attempts = ?11, agent_id = ?12, rejected_by = ?13,
        result = ?14, error = ?15, error_code = ?16, dead = ?17, created_ms = ?18, updated_ms = ?19, hub_id = ?20, submit_hub = ?21
        WHERE id = ?1
        """
    private static let selectTaskSQL = "SELECT \(taskColumns) FROM tasks WHERE id = ?1"
    private static let unfinishedSQL = """
        SELECT \(taskColumns) FROM tasks WHERE state IN ('queued', 'assigned', 'running') ORDER BY created_ms, rowid
        """
    private static let deadSQL = "SELECT \(taskColumns) FROM tasks WHERE dead = 1 ORDER BY updated_ms DESC, rowid DESC LIMIT ?1"
    private static let finishSQL = """
        UPDATE tasks SET state = ?3, result = ?4, error = ?5, error_code = ?6, dead = ?7, updated_ms = ?8
        WHERE id = ?1 AND attempt = ?2 AND state NOT IN ('succeeded', 'failed')
        """
    private static let requeueSQL = """
        UPDATE tasks SET state = 'queued', attempt = 0, agent_id = NULL, rejected_by = '[]', result = NULL,
        error = NULL, error_code = NULL, dead = 0, updated_ms = ?2, hub_id = NULL
        WHERE id = ?1 AND dead = 1
        """

    /// Writes a new task. Returns false, writing nothing, when a task with its id exists.
    public func insertTask(_ t: TaskRecord) throws(OrchestraError) -> Bool {
        let s = try db.prepare(Journal.insertTaskSQL)
        try bindTask(s, t)
        return try s.run(what: "insert task \"\(t.id)\"") == 1
    }

    /// The task with this id, or nil.
    public func task(id: String) throws(OrchestraError) -> TaskRecord? {
        let s = try db.prepare(Journal.selectTaskSQL)
        defer { s.reset() }
        try s.bind(1, id)
        guard try s.step(what: "read task \"\(id)\"") else { return nil }
        return try readTask(s)
    }

    /// Replaces the whole row of `t.id`. `.notFound` when there is no such task.
    public func updateTask(_ t: TaskRecord) throws(OrchestraError) {
        let s = try db.prepare(Journal.updateTaskSQL)
        try bindTask(s, t)
        if try s.run(what: "update task \"\(t.id)\"") != 1 {
            throw OrchestraError(.notFound, "journal \(path): update task \"\(t.id)\" failed: no such task")
        }
    }

    private static let placeSQL = """
        UPDATE tasks SET state = ?2, attempt = ?3, agent_id = ?4, rejected_by = ?5, updated_ms = ?6
        WHERE id = ?1 AND state NOT IN ('succeeded', 'failed')
        """

    /// Writes only what assigning or re-queueing changes (state, attempt, agent, rejections,
    /// update time): the task's spec is not written again. A finished task is left as it is
    /// (its outcome is final). `.notFound` when there is no such unfinished task.
    public func updatePlacement(_ t: TaskRecord) throws(OrchestraError) {
        let s = try db.prepare(Journal.placeSQL)
        try s.bind(1, t.id)
        try s.bind(2, t.state.rawValue)
        try s.bind(3, t.attempt)
        try s.bind(4, t.agentId)
        try s.bind(5, JSONValue.array(t.rejectedBy.map { .string($0) }).jsonText)
        try s.bind(6, t.updatedMs)
        if try s.run(what: "update task \"\(t.id)\"") != 1 {
            throw OrchestraError(.notFound, "journal \(path): update task \"\(t.id)\" failed: no such unfinished task")
        }
    }

    // MARK: checkpoints

    /// Sets SQLite's automatic WAL checkpoint (pages; 0 turns it off: a `JournalCheckpointer`
    /// on another thread does the checkpoints, so no commit of this connection waits for one).
    public func setAutoCheckpoint(pages: Int) throws(OrchestraError) {
        try db.exec("PRAGMA wal_autocheckpoint=\(max(0, pages))", what: "set wal_autocheckpoint")
    }

    /// The size a WAL is cut back to when it starts over (`PRAGMA journal_size_limit`).
    public static let walSizeLimitBytes = 64 << 20

    /// Copies the WAL into the database as far as readers allow (PASSIVE: never blocks a
    /// writer). For a second connection on another thread.
    @discardableResult
    public func checkpoint() throws(OrchestraError) -> SQLiteDatabase.CheckpointResult {
        try db.walCheckpoint(mode: .passive)
    }

    /// Makes the next write start the WAL over from its beginning (RESTART): copies what is
    /// left of it into the database while holding the write lock, then waits for readers to
    /// leave it. Writers wait meanwhile, so run it right after `checkpoint()`, which leaves
    /// little to copy. Waits at most `busyTimeoutMs` for each lock; `busy` when it gave up.
    ///
    /// Without it, under a steady stream of commits the WAL never starts over: SQLite restarts
    /// it only when a write begins with every frame already copied, and a PASSIVE checkpoint
    /// on another connection always finishes behind the writer. The file then grows with every
    /// commit (hundreds of megabytes a minute on the hub benchmark), and every commit appends
    /// to new pages of it, which the kernel allocates and zeroes.
    @discardableResult
    public func restartWAL(busyTimeoutMs: Int32) throws(OrchestraError) -> SQLiteDatabase.CheckpointResult {
        let saved = db.busyTimeoutMs
        db.busyTimeoutMs = busyTimeoutMs
        defer { db.busyTimeoutMs = saved }
        return try db.walCheckpoint(mode: .restart)
    }

    // MARK: group commit

    /// Opens a write transaction that the following writes join until `commitBatch` (group
    /// commit: one commit for every write of a loop turn). No effect when one is open.
    public func beginBatch() throws(OrchestraError) {
        guard db.isAutocommit else { return }
        try db.prepare("BEGIN IMMEDIATE").run(what: "begin transaction")
    }

    /// Commits the batch (no effect when none is open). On failure the batch is rolled back
    /// and the error thrown: none of its writes happened.
    public func commitBatch() throws(OrchestraError) {
        guard !db.isAutocommit else { return }
        do throws(OrchestraError) {
            try db.prepare("COMMIT").run(what: "commit")
        } catch {
            db.rollback()
            throw error
        }
    }

    /// Whether a batch (or any transaction) is open.
    public var inBatch: Bool { !db.isAutocommit }

    /// Replaces the rows of `ts` in one transaction: all of them or (on an error) none.
    public func updateTasks(_ ts: [TaskRecord]) throws(OrchestraError) {
        if ts.isEmpty { return }
        try db.transaction { () throws(OrchestraError) in
            for t in ts { try updateTask(t) }
        }
    }

    /// Records a final outcome once: only when the row's attempt == attempt and its state is not
    /// succeeded/failed. Returns false (and writes nothing) otherwise. `state` must be
    /// `.succeeded` or `.failed`.
    public func finishTask(id: String, attempt: Int, state: TaskState, result: JSONValue?, error: String?,
                           errorCode: String?, dead: Bool, nowMs: Int64) throws(OrchestraError) -> Bool
    {
        guard state.isFinished else {
            throw OrchestraError(.invalidArgument, "journal \(path): finish task \"\(id)\": state \(state.rawValue) is not a final state")
        }
        let s = try db.prepare(Journal.finishSQL)
        try s.bind(1, id)
        try s.bind(2, attempt)
        try s.bind(3, state.rawValue)
        try s.bind(4, result?.jsonText)
        try s.bind(5, error)
        try s.bind(6, errorCode)
        try s.bind(7, dead ? 1 : 0)
        try s.bind(8, nowMs)
        return try s.run(what: "finish task \"\(id)\"") == 1
    }

    /// Tasks queued, assigned or running, oldest first.
    public func unfinishedTasks() throws(OrchestraError) -> [TaskRecord] {
        try readTasks(db.prepare(Journal.unfinishedSQL), what: "read unfinished tasks")
    }

    /// How many tasks are in each state (every state is present, 0 when none).
    public func taskCounts() throws(OrchestraError) -> [TaskState: Int] {
        let s = try db.prepare("SELECT state, count(*) FROM tasks GROUP BY state")
        defer { s.reset() }
        var counts: [TaskState: Int] = [:]
        for state in TaskState.allCases { counts[state] = 0 }
        while try s.step(what: "count tasks") {
            let name = s.text(0) ?? "NULL"
            guard let state = TaskState(rawValue: name) else {
                throw OrchestraError(.io, "journal \(path): count tasks failed: \(s.int64(1)) task(s) have the unknown state \"\(name)\"")
            }
            counts[state] = Int(s.int64(1))
        }
        return counts
    }

    /// How many tasks are in the dead-letter list.
    public func deadCount() throws(OrchestraError) -> Int {
        let s = try db.prepare("SELECT count(*) FROM tasks WHERE dead = 1")
        defer { s.reset() }
        guard try s.step(what: "count dead letters") else { return 0 }
        return Int(s.int64(0))
    }

    /// The dead-letter list, most recently failed first, at most `limit` tasks.
    public func deadLetters(limit: Int = 1000) throws(OrchestraError) -> [TaskRecord] {
        let s = try db.prepare(Journal.deadSQL)
        try s.bind(1, max(limit, 0))
        return try readTasks(s, what: "read dead letters")
    }

    /// Puts a dead task back in the queue: attempt 0, no agent, rejectedBy [], result and error
    /// cleared, no longer dead. Returns false (writing nothing) when the task is not dead.
    public func requeue(id: String, nowMs: Int64) throws(OrchestraError) -> Bool {
        let s = try db.prepare(Journal.requeueSQL)
        try s.bind(1, id)
        try s.bind(2, nowMs)
        return try s.run(what: "requeue task \"\(id)\"") == 1
    }

    /// Ids of the queued tasks updated at or after `updatedSinceMs`, oldest first: how a running
    /// hub notices tasks requeued by a CLI.
    public func queuedTaskIds(updatedSinceMs: Int64) throws(OrchestraError) -> [String] {
        let s = try db.prepare("SELECT id FROM tasks WHERE state = 'queued' AND updated_ms >= ?1 ORDER BY created_ms, rowid")
        defer { s.reset() }
        try s.bind(1, updatedSinceMs)
        var ids: [String] = []
        while try s.step(what: "read queued task ids") {
            guard let id = s.text(0) else { throw badRow("a task", "id", "is NULL") }
            ids.append(id)
        }
        return ids
    }

    /// `PRAGMA data_version`: changes when another connection (another `Journal`, a CLI) has
    /// committed since the last call; this journal's own commits leave it unchanged.
    public func dataVersion() throws(OrchestraError) -> Int64 {
        let s = try db.prepare("PRAGMA data_version")
        defer { s.reset() }
        guard try s.step(what: "read data_version") else {
            throw OrchestraError(.io, "journal \(path): read data_version failed: no row")
        }
        return s.int64(0)
    }

    private func bindTask(_ s: Statement, _ t: TaskRecord) throws(OrchestraError) {
        guard (0...3).contains(t.priority) else {
            throw OrchestraError(.invalidArgument, "journal \(path): task \"\(t.id)\": priority \(t.priority) is not in 0...3")
        }
        guard t.attempt >= 0, t.maxAttempts >= 0 else {
            throw OrchestraError(.invalidArgument, "journal \(path): task \"\(t.id)\": attempt \(t.attempt) and maxAttempts \(t.maxAttempts) must not be negative")
        }
        try s.bind(1, t.id)
        try s.bind(2, t.state.rawValue)
        try s.bind(3, t.spec.jsonText)
        try s.bind(4, t.sessionId)
        try s.bind(5, t.submitter)
        try s.bind(6, t.traceId)
        try s.bind(7, t.priority)
        try s.bind(8, t.strategy)
        try s.bind(9, t.pinnedAgent)
        try s.bind(10, t.attempt)
        try s.bind(11, t.maxAttempts)
        try s.bind(12, t.agentId)
        try s.bind(13, JSONValue.array(t.rejectedBy.map { .string($0) }).jsonText)
        try s.bind(14, t.result?.jsonText)
        try s.bind(15, t.error)
        try s.bind(16, t.errorCode)
        try s.bind(17, t.dead ? 1 : 0)
        try s.bind(18, t.createdMs)
        try s.bind(19, t.updatedMs)
        try s.bind(20, t.hubId)
        try s.bind(21, t.submitHub)
    }

    func readTasks(_ s: Statement, what: String) throws(OrchestraError) -> [TaskRecord] {
        defer { s.reset() }
        var out: [TaskRecord] = []
        while try s.step(what: what) { out.append(try readTask(s)) }
        return out
    }

    /// Reads and checks the current row (columns in `taskColumns` order).
    func readTask(_ s: Statement) throws(OrchestraError) -> TaskRecord {
        var r = RowReader(s: s, journal: self, row: "a task")
        let id = try r.text(0, "id")
        r.row = "task \"\(id)\""
        let stateName = try r.text(1, "state")
        guard let state = TaskState(rawValue: stateName) else { throw badRow(r.row, "state", "has the unknown value \"\(stateName)\"") }
        var t = TaskRecord(id: id, spec: try r.json(2, "spec"), sessionId: try r.optionalText(3, "session_id"),
                           submitter: try r.optionalText(4, "submitter"), traceId: try r.text(5, "trace_id"),
                           priority: try r.int(6, "priority", in: 0...3), strategy: try r.optionalText(7, "strategy"),
                           pinnedAgent: try r.optionalText(8, "pinned_agent"),
                           maxAttempts: try r.int(10, "max_attempts", in: 0...Int.max), nowMs: 0)
        t.state = state
        t.attempt = try r.int(9, "attempt", in: 0...Int.max)
        t.agentId = try r.optionalText(11, "agent_id")
        let rejected = try r.json(12, "rejected_by")
        guard let list = rejected.array else { throw badRow(r.row, "rejected_by", "is not a JSON array") }
        t.rejectedBy = []
        for v in list {
            guard let name = v.string else { throw badRow(r.row, "rejected_by", "holds a non-string \(v.jsonText)") }
            t.rejectedBy.append(name)
        }
        // Not a ternary: JSONValue is ExpressibleByNilLiteral, so `? nil :` would read back .null.
        if !s.isNull(13) { t.result = try r.json(13, "result") }
        t.error = try r.optionalText(14, "error")
        t.errorCode = try r.optionalText(15, "error_code")
        t.dead = try r.int(16, "dead", in: 0...1) == 1
        t.createdMs = try r.int64(17, "created_ms")
        t.updatedMs = try r.int64(18, "updated_ms")
        t.hubId = try r.optionalText(19, "hub_id")
        t.submitHub = try r.optionalText(20, "submit_hub")
        return t
    }

    func badRow(_ row: String, _ column: String, _ problem: String) -> OrchestraError {
        OrchestraError(.io, "journal \(path): \(row) is unreadable: column \(column) \(problem)")
    }

    /// Typed, checked column reads for one row.
    struct RowReader {
        let s: Statement
        let journal: Journal
        var row: String

        func text(_ c: Int32, _ name: String) throws(OrchestraError) -> String {
            guard s.columnType(c) == .text, let v = s.text(c) else { throw journal.badRow(row, name, "is \(typeName(c)), not text") }
            return v
        }

        func optionalText(_ c: Int32, _ name: String) throws(OrchestraError) -> String? {
            if s.isNull(c) { return nil }
            return try text(c, name)
        }

        func int64(_ c: Int32, _ name: String) throws(OrchestraError) -> Int64 {
            guard s.columnType(c) == .integer else { throw journal.badRow(row, name, "is \(typeName(c)), not an integer") }
            return s.int64(c)
        }

        func int(_ c: Int32, _ name: String, in range: ClosedRange<Int>) throws(OrchestraError) -> Int {
            let v = try int64(c, name)
            guard let i = Int(exactly: v), range.contains(i) else {
                throw journal.badRow(row, name, "is \(v), outside \(range.lowerBound)...\(range.upperBound == Int.max ? "" : "\(range.upperBound)")")
            }
            return i
        }

        func json(_ c: Int32, _ name: String) throws(OrchestraError) -> JSONValue {
            guard s.columnType(c) == .text else { throw journal.badRow(row, name, "is \(typeName(c)), not JSON text") }
            let row = self.row
            let journal = self.journal
            return try s.withTextBytes(c) { (bytes) throws(OrchestraError) -> JSONValue in
                do throws(OrchestraError) {
                    return try JSONValue.parse(bytes ?? UnsafeRawBufferPointer(start: nil, count: 0), limits: Journal.jsonLimits)
                } catch {
                    throw journal.badRow(row, name, "is not valid JSON (\(error.message))")
                }
            }
        }

        func typeName(_ c: Int32) -> String {
            switch s.columnType(c) {
            case .integer: return "an integer"
            case .float: return "a real"
            case .text: return "text"
            case .blob: return "a blob"
            case .null: return "NULL"
            }
        }
    }

    // MARK: nonces

    /// Remembers the nonce of an agent registration. False when (keyId, nonce) was seen within
    /// the last 10 minutes (a replay). A nonce is kept 10 minutes past the later of `nowMs` and
    /// its `timestampMs`, so it outlives the 300 s timestamp window on either side; expired
    /// ones are deleted at most once a minute.
    public func rememberNonce(keyId: String, nonce: String, timestampMs: Int64, nowMs: Int64) throws(OrchestraError) -> Bool {
        if lastNoncePruneMs.map({ nowMs < $0 || nowMs - $0 >= Journal.noncePruneIntervalMs }) ?? true {
            let p = try db.prepare("DELETE FROM nonces WHERE expires_ms <= ?1")
            try p.bind(1, nowMs)
            try p.run(what: "prune nonces")
            lastNoncePruneMs = nowMs
        }
        let (expires, overflow) = max(nowMs, timestampMs).addingReportingOverflow(Journal.nonceRetentionMs)
        // An expired row not yet pruned is taken over, so it never counts as a replay.
        let s = try db.prepare("""
            INSERT INTO nonces (key_id, nonce, timestamp_ms, expires_ms) VALUES (?1, ?2, ?3, ?4)
            ON CONFLICT (key_id, nonce) DO UPDATE SET timestamp_ms = excluded.timestamp_ms, expires_ms = excluded.expires_ms
            WHERE nonces.expires_ms <= ?5
            """)
        try s.bind(1, keyId)
        try s.bind(2, nonce)
        try s.bind(3, timestampMs)
        try s.bind(4, overflow ? Int64.max : expires)
        try s.bind(5, nowMs)
        return try s.run(what: "remember nonce") == 1
    }

    // MARK: settings

    public func setting(_ key: String) throws(OrchestraError) -> String? {
        let s = try db.prepare("SELECT value FROM settings WHERE key = ?1")
        defer { s.reset() }
        try s.bind(1, key)
        guard try s.step(what: "read setting \"\(key)\"") else { return nil }
        return try RowReader(s: s, journal: self, row: "setting \"\(key)\"").text(0, "value")
    }

    /// The setting `key`, or `value` after writing it when there is none (one statement, so
    /// two processes that race both get the first one written).
    public func setting(_ key: String, insertingIfAbsent value: String) throws(OrchestraError) -> String {
        let s = try db.prepare("INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO NOTHING")
        try s.bind(1, key)
        try s.bind(2, value)
        try s.run(what: "write setting \"\(key)\"")
        return try setting(key) ?? value
    }

    public func setSetting(_ key: String, _ value: String) throws(OrchestraError) {
        let s = try db.prepare("INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
        try s.bind(1, key)
        try s.bind(2, value)
        try s.run(what: "write setting \"\(key)\"")
    }
}
