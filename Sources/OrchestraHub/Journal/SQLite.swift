import CSQLite
import Glibc
import OrchestraCore

/// One sqlite3 connection: open (creating the parent directory), `exec`, prepared statements
/// cached by their SQL text, and a `transaction` helper.
///
/// Not thread-safe: use a database and its statements from one thread at a time (the
/// connection is opened with `SQLITE_OPEN_NOMUTEX`). Several `SQLiteDatabase` objects, in one
/// process or many, may use the same file; SQLite's locks and the busy timeout (5 s) order them.
///
/// Every failure is an `OrchestraError(.io, "<label> <path>: <what> failed: <sqlite message>
/// (SQLITE_BUSY, code 5)")`; a use after `close()` is `.closed`.
public final class SQLiteDatabase {
    public let path: String
    /// Names the database in error messages ("journal").
    public let label: String
    private var handle: OpaquePointer?
    private var cache: [String: Statement] = [:]
    private let busyWait: BusyWait

    /// Opens (creating if missing) the database file at `path`; missing parent directories are
    /// created (mode 0700, like `mkdir -p -m 700`). A new database file is created 0600 before
    /// SQLite opens it, and SQLite gives its -wal and -shm files the database file's mode, so
    /// nothing the hub writes is readable by other users. `":memory:"` opens a private
    /// in-memory database.
    public init(path: String, label: String = "journal", busyTimeoutMs: Int32 = 5000) throws(OrchestraError) {
        self.path = path
        self.label = label
        busyWait = BusyWait(timeoutMs: busyTimeoutMs)
        guard !path.isEmpty else {
            throw OrchestraError(.invalidArgument, "\(label): the database path is empty")
        }
        guard !path.utf8.contains(0) else {
            throw OrchestraError(.invalidArgument, "\(label) \(path): the database path contains a NUL byte")
        }
        if path != ":memory:" {
            try SQLiteDatabase.makeParentDirectories(of: path, label: label)
            try SQLiteDatabase.createPrivateFile(path, label: label)
        }
        _ = SQLiteDatabase.configured
        var h: OpaquePointer?
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX
        let rc = sqlite3_open_v2(path, &h, flags, nil)
        guard rc == SQLITE_OK, let db = h else {
            let message = h.map { String(cString: sqlite3_errmsg($0)) } ?? String(cString: sqlite3_errstr(rc))
            let errnoNote = h.map { SQLiteDatabase.errnoNote(sqlite3_system_errno($0)) } ?? ""
            if let h { sqlite3_close_v2(h) }
            throw OrchestraError(.io, "\(label) \(path): open failed: \(message)\(errnoNote) (\(SQLiteDatabase.codeName(rc)))")
        }
        handle = db
        sqlite3_extended_result_codes(db, 1)
        installBusyHandler(db)
    }

    /// How long a statement waits for another connection's lock before it fails with
    /// SQLITE_BUSY (milliseconds; 0 fails at once).
    public var busyTimeoutMs: Int32 {
        get { busyWait.timeoutMs }
        set { busyWait.timeoutMs = max(0, newValue) }
    }

    /// SQLite's own busy timeout sleeps 1, 2, 5, 10, 15... ms between tries, so a writer that
    /// waits out a lock held for one millisecond (the checkpointer's WAL restart) sleeps eight.
    /// This handler tries again every 100 µs for the first 10 ms, then every millisecond, until
    /// `busyTimeoutMs` has passed since the first try.
    private func installBusyHandler(_ db: OpaquePointer) {
        sqlite3_busy_handler(db, { ctx, count in
            guard let ctx else { return 0 }
            let wait = Unmanaged<BusyWait>.fromOpaque(ctx).takeUnretainedValue()
            let now = monotonicNanos()
            if count == 0 { wait.startNs = now }
            let waited = now &- wait.startNs
            if waited >= UInt64(wait.timeoutMs) * 1_000_000 { return 0 }
            usleep(waited < 10_000_000 ? 100 : 1000)
            return 1
        }, Unmanaged.passUnretained(busyWait).toOpaque())   // busyWait lives as long as self
    }

    deinit { close() }

    /// Process-wide settings, made once before the first connection initializes SQLite: no
    /// memory statistics (they take a global mutex on every allocation of every connection).
    private static let configured: Bool = {
        _ = orc_sqlite_disable_memstatus()
        return true
    }()

    /// SQLite's count of the memory it holds: 0 while memory statistics are off, as they are
    /// once a connection was opened here.
    static var memoryStatisticsBytes: Int64 { sqlite3_memory_used() }

    public var isClosed: Bool { handle == nil }

    /// Finalizes every cached statement and closes the connection. Idempotent.
    public func close() {
        guard let db = handle else { return }
        for (_, s) in cache { s.finalize() }
        cache.removeAll()
        sqlite3_close_v2(db)
        handle = nil
    }

    // MARK: statements

    /// Runs one or more SQL statements that return no rows of interest (not cached: for schema
    /// and one-off pragmas).
    public func exec(_ sql: String, what: String? = nil) throws(OrchestraError) {
        let db = try open()
        let rc = sqlite3_exec(db, sql, nil, nil, nil)
        if rc != SQLITE_OK { throw error(what ?? "exec \"\(SQLiteDatabase.shorten(sql))\"", rc) }
    }

    /// The prepared statement for `sql`, prepared on first use and cached by its text, reset and
    /// with its bindings cleared. Reset it (`reset()`, or `run`/`rows` do it) when done, so no
    /// read transaction is left open. Do not hold a statement across another `prepare` of the
    /// same text.
    public func prepare(_ sql: String) throws(OrchestraError) -> Statement {
        if let s = cache[sql] {
            s.reset()
            return s
        }
        let db = try open()
        var stmt: OpaquePointer?
        var tail: UnsafePointer<CChar>?
        let rc = sql.withCString { text in
            let r = sqlite3_prepare_v3(db, text, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &stmt, &tail)
            // Anything but whitespace after the first statement would silently be ignored.
            if r == SQLITE_OK, var t = tail {
                while t.pointee == 0x20 || t.pointee == 0x0A || t.pointee == 0x09 || t.pointee == 0x0D || t.pointee == 0x3B { t += 1 }
                tail = t.pointee == 0 ? nil : t
            }
            return r
        }
        if rc != SQLITE_OK { throw error("prepare \"\(SQLiteDatabase.shorten(sql))\"", rc) }
        guard let h = stmt else {
            throw OrchestraError(.invalidArgument, "\(label) \(path): prepare \"\(SQLiteDatabase.shorten(sql))\" failed: no statement in the text")
        }
        if tail != nil {
            sqlite3_finalize(h)
            throw OrchestraError(.invalidArgument, "\(label) \(path): prepare \"\(SQLiteDatabase.shorten(sql))\" failed: more than one statement (use exec)")
        }
        let s = Statement(sql: sql, handle: h, database: self)
        cache[sql] = s
        return s
    }

    /// Runs `body` in a write transaction: `BEGIN IMMEDIATE` (the write lock is taken first, so
    /// the transaction never fails half way with SQLITE_BUSY), `COMMIT`, or `ROLLBACK` when
    /// `body` or the commit throws. Inside another transaction `body` simply joins it.
    public func transaction<R>(_ body: () throws(OrchestraError) -> R) throws(OrchestraError) -> R {
        let db = try open()
        if sqlite3_get_autocommit(db) == 0 { return try body() }
        try prepare("BEGIN IMMEDIATE").run(what: "begin transaction")
        do throws(OrchestraError) {
            let r = try body()
            try prepare("COMMIT").run(what: "commit")
            return r
        } catch {
            rollback()
            throw error
        }
    }

    /// Rolls back the open transaction, if any (errors ignored: SQLite may have rolled back already).
    public func rollback() {
        guard let db = handle, sqlite3_get_autocommit(db) == 0 else { return }
        if let s = try? prepare("ROLLBACK") { _ = try? s.run(what: "rollback") }
    }

    /// Rows changed by the last INSERT/UPDATE/DELETE.
    public var changes: Int { handle.map { Int(sqlite3_changes64($0)) } ?? 0 }

    /// True when no transaction is open.
    public var isAutocommit: Bool { handle.map { sqlite3_get_autocommit($0) != 0 } ?? true }

    /// What a WAL checkpoint did: frames in the WAL, frames copied into the database, and
    /// whether it had to stop early because another connection held a lock (SQLITE_BUSY).
    public struct CheckpointResult: Sendable, Equatable {
        public var walFrames: Int
        public var checkpointedFrames: Int
        public var busy: Bool
    }

    /// The modes of `sqlite3_wal_checkpoint_v2`.
    public enum CheckpointMode: Sendable { case passive, full, restart, truncate }

    /// `sqlite3_wal_checkpoint_v2` of the main database; SQLITE_BUSY is a result (`busy`), not
    /// an error.
    public func walCheckpoint(mode: CheckpointMode) throws(OrchestraError) -> CheckpointResult {
        let db = try open()
        var log: Int32 = 0
        var done: Int32 = 0
        let m: Int32 = switch mode {
        case .passive: SQLITE_CHECKPOINT_PASSIVE
        case .full: SQLITE_CHECKPOINT_FULL
        case .restart: SQLITE_CHECKPOINT_RESTART
        case .truncate: SQLITE_CHECKPOINT_TRUNCATE
        }
        let rc = sqlite3_wal_checkpoint_v2(db, nil, m, &log, &done)
        if rc != SQLITE_OK && rc != SQLITE_BUSY { throw error("checkpoint", rc) }
        return CheckpointResult(walFrames: Int(max(0, log)), checkpointedFrames: Int(max(0, done)), busy: rc == SQLITE_BUSY)
    }

    // MARK: errors

    func open() throws(OrchestraError) -> OpaquePointer {
        guard let db = handle else { throw OrchestraError(.closed, "\(label) \(path): closed") }
        return db
    }

    /// "<label> <path>: <what> failed: <errmsg> (SQLITE_X, code N)".
    func error(_ what: String, _ rc: Int32) -> OrchestraError {
        var message = String(cString: sqlite3_errstr(rc))
        var errnoNote = ""
        if let db = handle {
            message = String(cString: sqlite3_errmsg(db))
            let primary = rc & 0xFF
            if primary == SQLITE_IOERR || primary == SQLITE_CANTOPEN || primary == SQLITE_FULL {
                errnoNote = SQLiteDatabase.errnoNote(sqlite3_system_errno(db))
            }
        }
        return OrchestraError(.io, "\(label) \(path): \(what) failed: \(message)\(errnoNote) (\(SQLiteDatabase.codeName(rc)))")
    }

    static func errnoNote(_ e: Int32) -> String {
        e == 0 ? "" : " [errno \(e): \(String(cString: strerror(e)))]"
    }

    /// "SQLITE_BUSY, code 5"; an extended code keeps its number ("SQLITE_IOERR, code 522").
    static func codeName(_ rc: Int32) -> String {
        let names: [Int32: String] = [
            0: "SQLITE_OK", 1: "SQLITE_ERROR", 2: "SQLITE_INTERNAL", 3: "SQLITE_PERM", 4: "SQLITE_ABORT",
            5: "SQLITE_BUSY", 6: "SQLITE_LOCKED", 7: "SQLITE_NOMEM", 8: "SQLITE_READONLY",
            9: "SQLITE_INTERRUPT", 10: "SQLITE_IOERR", 11: "SQLITE_CORRUPT", 12: "SQLITE_NOTFOUND",
            13: "SQLITE_FULL", 14: "SQLITE_CANTOPEN", 15: "SQLITE_PROTOCOL", 16: "SQLITE_EMPTY",
            17: "SQLITE_SCHEMA", 18: "SQLITE_TOOBIG", 19: "SQLITE_CONSTRAINT", 20: "SQLITE_MISMATCH",
            21: "SQLITE_MISUSE", 22: "SQLITE_NOLFS", 23: "SQLITE_AUTH", 24: "SQLITE_FORMAT",
            25: "SQLITE_RANGE", 26: "SQLITE_NOTADB", 27: "SQLITE_NOTICE", 28: "SQLITE_WARNING",
            100: "SQLITE_ROW", 101: "SQLITE_DONE",
        ]
        return "\(names[rc & 0xFF] ?? "SQLITE_\(rc & 0xFF)"), code \(rc)"
    }

    static func shorten(_ sql: String) -> String {
        let oneLine = String(sql.map { $0.isNewline ? " " : $0 })
        return oneLine.count <= 60 ? oneLine : String(oneLine.prefix(57)) + "..."
    }

    /// Creates `path` empty with mode 0600 when it does not exist (an existing file is left as
    /// it is: the hub warns about its mode, see `Journal.exposure()`).
    static func createPrivateFile(_ path: String, label: String) throws(OrchestraError) {
        let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        if fd >= 0 { Glibc.close(fd); return }
        let e = errno
        if e == EEXIST { return }
        throw OrchestraError(.io, "\(label) \(path): create failed: \(String(cString: strerror(e)))")
    }

    /// `mkdir -p` of the directory part of `path` (new directories 0700).
    static func makeParentDirectories(of path: String, label: String) throws(OrchestraError) {
        let bytes = Array(path.utf8)
        // Every prefix that ends just before a '/' (not the root, not inside a run of slashes).
        for i in bytes.indices where bytes[i] == 0x2F && i > 0 && bytes[i - 1] != 0x2F {
            let dir = String(decoding: bytes[0..<i], as: UTF8.self)
            if mkdir(dir, 0o700) == 0 { continue }
            let e = errno
            var st = stat()
            if stat(dir, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR { continue }  // EEXIST, or EACCES on an existing one
            let why = e == EEXIST ? "it exists and is not a directory" : String(cString: strerror(e))
            throw OrchestraError(.io, "\(label) \(path): create directory \(dir) failed: \(why)")
        }
    }
}

/// The state of one connection's busy handler (`SQLiteDatabase.installBusyHandler`).
private final class BusyWait {
    var timeoutMs: Int32
    var startNs: UInt64 = 0
    init(timeoutMs: Int32) { self.timeoutMs = max(0, timeoutMs) }
}

/// A prepared statement of an `SQLiteDatabase` (from `prepare`). Parameters are numbered from 1,
/// columns from 0. Same threading rule as its database.
public final class Statement {
    public let sql: String
    private var handle: OpaquePointer?
    private weak var database: SQLiteDatabase?

    init(sql: String, handle: OpaquePointer, database: SQLiteDatabase) {
        self.sql = sql
        self.handle = handle
        self.database = database
    }

    deinit { finalize() }

    func finalize() {
        if let h = handle { sqlite3_finalize(h) }
        handle = nil
    }

    /// Resets the statement (ending its read, if any) and clears its bindings.
    public func reset() {
        guard let h = handle else { return }
        sqlite3_reset(h)
        sqlite3_clear_bindings(h)
    }

    /// The statement's handle. Closing the database finalizes every statement it prepared
    /// (they are all in its cache), so a handle means an open database; the weak reference is
    /// loaded only for the error (a weak load per bind was a few percent of the hub's CPU).
    private func live() throws(OrchestraError) -> OpaquePointer {
        guard let h = handle else {
            throw OrchestraError(.closed, "\(database?.label ?? "database") \(database?.path ?? ""): closed")
        }
        return h
    }

    private func fail(_ what: String, _ rc: Int32) -> OrchestraError {
        database?.error(what, rc) ?? OrchestraError(.io, "\(what) failed: \(String(cString: sqlite3_errstr(rc)))")
    }

    // MARK: bind

    public func bind(_ index: Int32, _ value: Int64) throws(OrchestraError) {
        let rc = sqlite3_bind_int64(try live(), index, value)
        if rc != SQLITE_OK { throw fail("bind parameter \(index)", rc) }
    }

    public func bind(_ index: Int32, _ value: Int) throws(OrchestraError) {
        try bind(index, Int64(value))
    }

    /// Binds text (`nil` binds NULL). The bytes are copied.
    public func bind(_ index: Int32, _ value: String?) throws(OrchestraError) {
        let h = try live()
        guard var s = value else { return try bindNull(index) }
        let rc = s.withUTF8 { u -> Int32 in
            // An empty buffer may have no address, and a NULL pointer would bind NULL.
            guard let p = u.baseAddress, u.count > 0 else { return sqlite3_bind_text(h, index, "", 0, orc_sqlite_transient()) }
            return p.withMemoryRebound(to: CChar.self, capacity: u.count) {
                sqlite3_bind_text64(h, index, $0, UInt64(u.count), orc_sqlite_transient(), UInt8(SQLITE_UTF8))
            }
        }
        if rc != SQLITE_OK { throw fail("bind parameter \(index)", rc) }
    }

    /// Binds a blob (`nil` binds NULL). The bytes are copied.
    public func bind(_ index: Int32, _ value: [UInt8]?) throws(OrchestraError) {
        guard let b = value else { return try bindNull(index) }
        var failure: OrchestraError? = nil
        b.withUnsafeBytes { u in
            do throws(OrchestraError) { try bind(index, u) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    /// Binds the bytes as a blob (copied).
    public func bind(_ index: Int32, _ u: UnsafeRawBufferPointer) throws(OrchestraError) {
        let h = try live()
        let rc: Int32
        if let p = u.baseAddress, u.count > 0 {
            rc = sqlite3_bind_blob64(h, index, p, UInt64(u.count), orc_sqlite_transient())
        } else {
            rc = sqlite3_bind_zeroblob(h, index, 0)
        }
        if rc != SQLITE_OK { throw fail("bind parameter \(index)", rc) }
    }

    public func bindNull(_ index: Int32) throws(OrchestraError) {
        let rc = sqlite3_bind_null(try live(), index)
        if rc != SQLITE_OK { throw fail("bind parameter \(index)", rc) }
    }

    // MARK: step

    /// Steps once: true when a row is ready, false when done. On an error the statement is
    /// reset and the error thrown (`what` names the operation in it).
    public func step(what: String? = nil) throws(OrchestraError) -> Bool {
        let h = try live()
        let rc = sqlite3_step(h)
        if rc == SQLITE_ROW { return true }
        if rc == SQLITE_DONE { return false }
        let e = fail(what ?? "\"\(SQLiteDatabase.shorten(sql))\"", rc)
        sqlite3_reset(h)
        throw e
    }

    /// Steps to the end, resets, and returns the rows changed.
    @discardableResult
    public func run(what: String? = nil) throws(OrchestraError) -> Int {
        defer { reset() }
        while try step(what: what) {}
        guard let h = handle, let db = sqlite3_db_handle(h) else { return 0 }
        return Int(sqlite3_changes64(db))
    }

    // MARK: columns

    public enum ColumnType: Sendable { case integer, float, text, blob, null }

    public var columnCount: Int32 { handle.map { sqlite3_column_count($0) } ?? 0 }

    public func columnType(_ column: Int32) -> ColumnType {
        guard let h = handle else { return .null }
        switch sqlite3_column_type(h, column) {
        case SQLITE_INTEGER: return .integer
        case SQLITE_FLOAT: return .float
        case SQLITE_TEXT: return .text
        case SQLITE_BLOB: return .blob
        default: return .null
        }
    }

    public func isNull(_ column: Int32) -> Bool { columnType(column) == .null }

    public func int64(_ column: Int32) -> Int64 {
        guard let h = handle else { return 0 }
        return sqlite3_column_int64(h, column)
    }

    /// The column as text (nil for NULL). Invalid UTF-8 is repaired with U+FFFD.
    public func text(_ column: Int32) -> String? {
        guard let h = handle, sqlite3_column_type(h, column) != SQLITE_NULL else { return nil }
        guard let p = sqlite3_column_text(h, column) else { return "" }
        let n = Int(sqlite3_column_bytes(h, column))
        return String(decoding: UnsafeBufferPointer(start: p, count: n), as: UTF8.self)
    }

    /// The column's bytes (text or blob; nil for NULL).
    public func blob(_ column: Int32) -> [UInt8]? {
        guard let h = handle, sqlite3_column_type(h, column) != SQLITE_NULL else { return nil }
        guard let p = sqlite3_column_blob(h, column) else { return [] }
        let n = Int(sqlite3_column_bytes(h, column))
        return Array(UnsafeRawBufferPointer(start: p, count: n))
    }

    /// The text column's raw UTF-8 bytes passed to `body` without a copy (nil for NULL).
    public func withTextBytes<R>(_ column: Int32, _ body: (UnsafeRawBufferPointer?) throws(OrchestraError) -> R) throws(OrchestraError) -> R {
        guard let h = handle, sqlite3_column_type(h, column) != SQLITE_NULL else { return try body(nil) }
        guard let p = sqlite3_column_text(h, column) else { return try body(UnsafeRawBufferPointer(start: nil, count: 0)) }
        let n = Int(sqlite3_column_bytes(h, column))
        return try body(UnsafeRawBufferPointer(start: p, count: n))
    }
}
