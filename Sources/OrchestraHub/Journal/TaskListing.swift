import OrchestraCore

/// Where a page of the task list ends: the last row's creation time and id. The list is in
/// (createdMs, id) order, newest first, so the next page starts strictly below it (keyset paging:
/// a page costs the same wherever it is, and rows added meanwhile never shift it).
public struct TaskCursor: Sendable, Equatable {
    public var createdMs: Int64
    public var id: String

    public init(createdMs: Int64, id: String) {
        self.createdMs = createdMs
        self.id = id
    }

    /// "<createdMs>:<id>" (ids may hold ':'; the first one separates).
    public var text: String { "\(createdMs):\(id)" }

    public init?(_ text: String) {
        guard let colon = text.firstIndex(of: ":"), let ms = Int64(text[..<colon]), ms >= 0 else { return nil }
        let id = String(text[text.index(after: colon)...])
        guard !id.isEmpty, id.utf8.count <= 128 else { return nil }
        self.init(createdMs: ms, id: id)
    }
}

/// A page of the task list as the journal reads it (docs/protocol.md, `tasks.list`).
public struct TaskQuery: Sendable, Equatable {
    /// Journal states to keep (empty: any). `assigned` and `running` are one state in the
    /// journal: either selects both.
    public var states: [TaskState] = []
    /// Only the dead-letter list.
    public var deadOnly = false
    /// A task id, or text found (ASCII case-insensitively) in the task's spec: its type,
    /// tool, capabilities and parameters.
    public var text: String? = nil
    public var submitter: String? = nil
    public var sessionId: String? = nil
    /// A user's view: only tasks they submitted and tasks of sessions they own or that are
    /// shared with them.
    public var visibleTo: String? = nil
    public var after: TaskCursor? = nil
    /// Rows at most (the store reads one more to tell whether a next page exists).
    public var limit = 50

    public init() {}

    /// The journal states the filter selects.
    var journalStates: [String] {
        var out: [String] = []
        for s in states {
            let names = (s == .assigned || s == .running) ? ["assigned", "running"] : [s.rawValue]
            for n in names where !out.contains(n) { out.append(n) }
        }
        return out
    }

    /// `text` as it appears inside the spec's JSON text, as a LIKE pattern (`\` escapes).
    var likePattern: String? {
        guard let text, !text.isEmpty else { return nil }
        var inner = JSONValue.string(text).jsonText
        inner.removeFirst()
        inner.removeLast()
        var p = "%"
        for c in inner {
            if c == "%" || c == "_" || c == "\\" { p.append("\\") }
            p.append(c)
        }
        return p + "%"
    }

    /// The WHERE clause and its parameters, numbered from 1 with `mark` ("?" + n for SQLite,
    /// "$" + n for PostgreSQL); the limit is the last parameter.
    func sql(columns: String, mark: String, deadTrue: String, like: String) -> (sql: String, params: [TaskQueryParam]) {
        var conds: [String] = []
        var params: [TaskQueryParam] = []
        func p(_ v: TaskQueryParam) -> String {
            params.append(v)
            return "\(mark)\(params.count)"
        }
        let states = journalStates
        if !states.isEmpty { conds.append("state IN (\(states.map { p(.text($0)) }.joined(separator: ", ")))") }
        if deadOnly { conds.append("dead = \(deadTrue)") }
        if let submitter { conds.append("submitter = \(p(.text(submitter)))") }
        if let sessionId { conds.append("session_id = \(p(.text(sessionId)))") }
        if let u = visibleTo {
            let n = p(.text(u))
            conds.append("(submitter = \(n) OR session_id IN (SELECT id FROM sessions WHERE owner = \(n) "
                         + "UNION SELECT session_id FROM session_shares WHERE user_name = \(n)))")
        }
        if let pattern = likePattern {
            conds.append("(id = \(p(.text(text!))) OR spec \(like) \(p(.text(pattern))) ESCAPE '\\')")
        }
        if let after {
            conds.append("(created_ms, id) < (\(p(.int(after.createdMs))), \(p(.text(after.id))))")
        }
        let whereSQL = conds.isEmpty ? "" : " WHERE " + conds.joined(separator: " AND ")
        let limitMark = p(.int(Int64(max(0, limit) + 1)))
        return ("SELECT \(columns) FROM tasks\(whereSQL) ORDER BY created_ms DESC, id DESC LIMIT \(limitMark)", params)
    }
}

enum TaskQueryParam: Equatable {
    case text(String)
    case int(Int64)
}

/// A page of tasks and where the next one starts (nil: this was the last).
public struct TaskPage: Sendable {
    public var tasks: [TaskRecord]
    public var next: TaskCursor?

    /// Cuts the one row read beyond `limit` off and makes it the sign of a next page.
    init(rows: [TaskRecord], limit: Int) {
        if rows.count > limit {
            tasks = Array(rows.prefix(limit))
            next = tasks.last.map { TaskCursor(createdMs: $0.createdMs, id: $0.id) }
        } else {
            tasks = rows
            next = nil
        }
    }
}

// MARK: SQLite

extension Journal {
    /// Version 4, the dashboard: the task list in creation order (all, by state, by submitter,
    /// the dead letters), and a user's sessions (owned, shared) for their view of it.
    static let schemaV4 = """
        CREATE INDEX tasks_by_created ON tasks (created_ms, id);
        CREATE INDEX tasks_by_state_created ON tasks (state, created_ms, id);
        CREATE INDEX tasks_by_submitter ON tasks (submitter, created_ms, id) WHERE submitter IS NOT NULL;
        CREATE INDEX tasks_dead_by_created ON tasks (created_ms, id) WHERE dead = 1;
        CREATE INDEX sessions_by_owner ON sessions (owner);
        CREATE INDEX session_shares_by_user ON session_shares (user_name);
        """

    /// One page of the task list, newest first (`TaskQuery`).
    public func tasks(_ q: TaskQuery) throws(OrchestraError) -> TaskPage {
        let (sql, params) = q.sql(columns: Journal.taskColumns, mark: "?", deadTrue: "1", like: "LIKE")
        let s = try db.prepare(sql)
        for (i, v) in params.enumerated() {
            switch v {
            case .text(let t): try s.bind(Int32(i + 1), t)
            case .int(let n): try s.bind(Int32(i + 1), n)
            }
        }
        return TaskPage(rows: try readTasks(s, what: "list tasks"), limit: q.limit)
    }
}

extension SQLiteStore {
    public func tasks(_ q: TaskQuery, _ done: @escaping StoreDone<TaskPage>) {
        do { done(.success(try journal.tasks(q))) } catch { done(.failure(error)) }
    }

    public func login(name: String, _ done: @escaping StoreDone<(account: UserAccount, passwordHash: String)?>) {
        do { done(.success(try journal.user(name: name))) } catch { done(.failure(error)) }
    }
}

// MARK: PostgreSQL

extension PostgresSchema {
    /// Version 4 (as `Journal.schemaV4`).
    static let version4 = [
        "CREATE INDEX tasks_by_created ON tasks (created_ms, id)",
        "CREATE INDEX tasks_by_state_created ON tasks (state, created_ms, id)",
        "CREATE INDEX tasks_by_submitter ON tasks (submitter, created_ms, id) WHERE submitter IS NOT NULL",
        "CREATE INDEX tasks_dead_by_created ON tasks (created_ms, id) WHERE dead",
        "CREATE INDEX sessions_by_owner ON sessions (owner)",
        "CREATE INDEX session_shares_by_user ON session_shares (user_name)",
    ]
}

extension PostgresStore {
    public func tasks(_ q: TaskQuery, _ done: @escaping StoreDone<TaskPage>) {
        let (sql, params) = q.sql(columns: PostgresStore.taskColumns, mark: "$", deadTrue: "true", like: "ILIKE")
        let values: [PostgresValue] = params.map {
            switch $0 {
            case .text(let t): return .text(t)
            case .int(let n): return .int64(n)
            }
        }
        read(sql, values, done) { [self] (r) throws(OrchestraError) -> TaskPage in TaskPage(rows: try readTasks(r), limit: q.limit) }
    }

    public func login(name: String, _ done: @escaping StoreDone<(account: UserAccount, passwordHash: String)?>) {
        read("SELECT \(PostgresStore.userColumns), password_hash FROM users WHERE name = $1", [.text(name)], done) {
            [self] (r) throws(OrchestraError) -> (account: UserAccount, passwordHash: String)? in
            guard r.rowCount > 0 else { return nil }
            return (try readUser(r, 0), try r.text(0, 5) ?? "")
        }
    }
}
