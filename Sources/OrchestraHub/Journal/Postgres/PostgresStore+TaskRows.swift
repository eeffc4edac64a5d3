import OrchestraCore

/// The task writes of the hot path, many tasks per statement: a batch's new tasks go in one
/// INSERT, its claims in one UPDATE (per hub), its outcomes in one UPDATE. Each row travels
/// as a JSON object in one parameter (`json_to_recordset`), so the statement's text is the
/// same whatever the number of rows and stays prepared. Per task this saves the statement's
/// own cost in the server (parse of the message, executor start-up, portal, protocol
/// round) and the hub's work to build and read it: a batch holds about as many tasks as the
/// hub sees in one loop turn, six in the one-hub benchmark at 5,000 tasks/s and more under
/// more load.
///
/// Order within the transaction: a group is sent where its first row was asked for. A row
/// joins an open group only when nothing asked for after that place writes its task (else a
/// new group opens at the end of the batch): every write of one task keeps the order the
/// hub asked for. A statement that writes tasks chosen by a condition rather than by id
/// (reservations, reaping, retention, adoption) closes every open group, so no row asked for
/// after it moves before it.
///
/// Plans: the rows come from a function the planner guesses at 100 rows, and a generic plan
/// made while the table is small is kept as it grows (until an ANALYZE). Such a plan read the
/// whole table for each batch: an index that only holds the queued tasks, filtered by id (a
/// claim that named `state = 'queued'` in its lock query: 725 us of database CPU per task in
/// one benchmark run out of three), or all of `tasks_pkey`, filtered by state, with the rows
/// joined to it (the outcomes: 185 us per task in two runs of five with two hubs). So the
/// tasks are also named by `id = ANY (ARRAY(...))` of the batch's ids, which keeps every plan
/// to the batch's own rows whichever side of the join the planner puts them; a write batch
/// plans without hash joins, merge joins, bitmap or sequential scans (`SET LOCAL` at its
/// start, `planSettings`), so they are primary-key lookups; and the claim locks its rows by
/// id alone and checks their state after the lock. (A disabled sequential scan counts 10^10
/// in a plan's cost, far above `jit_above_cost`: the connection never uses JIT,
/// `setSessionSettings`.)
extension PostgresStore {
    /// What a group of rows writes; its key in the batch's open groups.
    enum TaskRowKind: Hashable {
        case insert
        case claim(hubId: String)
        case finish
    }

    /// The rows of one statement and who waits for each (`true`: the row was written).
    final class TaskRowGroup {
        let kind: TaskRowKind
        /// The statement's place in the batch.
        let position: Int
        var ids: Set<String> = []
        var rows: [JSONValue] = []
        var waiting: [(id: String, done: StoreDone<Bool>)] = []

        init(kind: TaskRowKind, position: Int) {
            self.kind = kind
            self.position = position
        }
    }

    /// Which tasks a statement of the batch writes, for the order of the groups.
    enum TaskWrites {
        /// None (other tables).
        case none
        /// The task with this id.
        case one(String)
        /// Tasks chosen by a condition: any of them.
        case chosen
    }

    /// The first statement of a write batch (see the type's comment).
    static let planSettings = PostgresStatement("""
        SELECT set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true),
        set_config('enable_seqscan', 'off', true), set_config('enable_bitmapscan', 'off', true)
        """)

    static let insertSQL = """
        INSERT INTO tasks (\(taskColumns))
        SELECT id, state, spec::text, session_id, submitter, trace_id, priority, strategy, pinned_agent, attempt, max_attempts,
        agent_id, rejected_by, result, error, error_code, dead, created_ms, updated_ms, hub_id, submit_hub
        FROM json_to_recordset($1::json) AS v(id text, state text, spec json, session_id text, submitter text, trace_id text,
        priority int, strategy text, pinned_agent text, attempt int, max_attempts int, agent_id text, rejected_by text,
        result text, error text, error_code text, dead boolean, created_ms int8, updated_ms int8, hub_id text, submit_hub text)
        ON CONFLICT (id) DO NOTHING RETURNING id
        """

    /// A claim skips a task's row when another transaction has it locked (another hub
    /// reserving or claiming it) instead of waiting for it: two hubs that each claimed their
    /// own submissions while the other's reservation, in the same batch as its claims, held
    /// them waited for each other; PostgreSQL found the deadlock after `deadlock_timeout` (1 s)
    /// and rolled one hub's whole batch back. A skipped claim is reported lost like one another
    /// hub won; the hub then reads the task and queues it again if it is still queued for
    /// nobody or for this hub (`reclaimInDoubt`). The lock reads the row's newest version, so
    /// its state, attempt and hub are checked on what the lock returned.
    static let claimSQL = """
        WITH l AS MATERIALIZED (
            SELECT t.id, t.state, t.attempt AS held, t.hub_id, v.attempt, v.agent_id, v.rejected_by, v.updated_ms, v.expected
            FROM json_to_recordset($1::json) AS v(id text, attempt int, agent_id text, rejected_by text, updated_ms int8, expected int)
            JOIN tasks t ON t.id = v.id
            WHERE t.id = ANY (ARRAY(SELECT x ->> 'id' FROM json_array_elements($1::json) x))
            FOR UPDATE OF t SKIP LOCKED)
        UPDATE tasks t SET state = 'assigned', attempt = l.attempt, agent_id = l.agent_id, rejected_by = l.rejected_by,
        updated_ms = l.updated_ms, hub_id = $2
        FROM l WHERE t.id = ANY (ARRAY(SELECT id FROM l)) AND t.id = l.id
        AND l.state = 'queued' AND l.held = l.expected AND (l.hub_id IS NULL OR l.hub_id = $2)
        RETURNING t.id
        """

    static let finishSQL = """
        UPDATE tasks t SET state = v.state, result = v.result, error = v.error, error_code = v.error_code, dead = v.dead,
        updated_ms = v.updated_ms
        FROM json_to_recordset($1::json) AS v(id text, attempt int, state text, result text, error text, error_code text,
        dead boolean, updated_ms int8)
        WHERE t.id = ANY (ARRAY(SELECT x ->> 'id' FROM json_array_elements($1::json) x))
        AND t.id = v.id AND t.attempt = v.attempt AND t.state NOT IN ('succeeded', 'failed')
        RETURNING t.id
        """

    static func optional(_ s: String?) -> JSONValue { s.map { .string($0) } ?? .null }

    static func rejectedText(_ t: TaskRecord) -> String { JSONValue.array(t.rejectedBy.map { .string($0) }).jsonText }

    public func insertTask(_ t: TaskRecord, _ done: @escaping StoreDone<Bool>) {
        let o = PostgresStore.optional
        addRow(.insert, id: t.id, [
            ("id", .string(t.id)), ("state", .string(t.state.rawValue)), ("spec", t.spec), ("session_id", o(t.sessionId)),
            ("submitter", o(t.submitter)), ("trace_id", .string(t.traceId)), ("priority", .int(Int64(t.priority))),
            ("strategy", o(t.strategy)), ("pinned_agent", o(t.pinnedAgent)), ("attempt", .int(Int64(t.attempt))),
            ("max_attempts", .int(Int64(t.maxAttempts))), ("agent_id", o(t.agentId)), ("rejected_by", .string(PostgresStore.rejectedText(t))),
            ("result", o(t.result?.jsonText)), ("error", o(t.error)), ("error_code", o(t.errorCode)), ("dead", .bool(t.dead)),
            ("created_ms", .int(t.createdMs)), ("updated_ms", .int(t.updatedMs)), ("hub_id", o(t.hubId)), ("submit_hub", o(t.submitHub)),
        ], done)
    }

    public func claimTask(_ t: TaskRecord, expectedAttempt: Int, hubId: String, _ done: @escaping StoreDone<Bool>) {
        addRow(.claim(hubId: hubId), id: t.id, [
            ("id", .string(t.id)), ("attempt", .int(Int64(t.attempt))), ("agent_id", PostgresStore.optional(t.agentId)),
            ("rejected_by", .string(PostgresStore.rejectedText(t))), ("updated_ms", .int(t.updatedMs)),
            ("expected", .int(Int64(expectedAttempt))),
        ], done)
    }

    public func finishTask(id: String, attempt: Int, state: TaskState, result: JSONValue?, error: String?, errorCode: String?,
                           dead: Bool, nowMs: Int64, _ done: @escaping StoreDone<Bool>) {
        let o = PostgresStore.optional
        addRow(.finish, id: id, [
            ("id", .string(id)), ("attempt", .int(Int64(attempt))), ("state", .string(state.rawValue)), ("result", o(result?.jsonText)),
            ("error", o(error)), ("error_code", o(errorCode)), ("dead", .bool(dead)), ("updated_ms", .int(nowMs)),
        ], done)
    }

    /// The statement that writes `g`'s rows, and what to do with its result.
    func statement(for g: TaskRowGroup) -> (PostgresStatement, (Result<PostgresResult, PostgresError>) -> Void) {
        let rows = PostgresValue.text(JSONValue.array(g.rows).jsonText)
        let statement: PostgresStatement
        switch g.kind {
        case .insert: statement = PostgresStatement(PostgresStore.insertSQL, [rows])
        case .claim(let hubId): statement = PostgresStatement(PostgresStore.claimSQL, [rows, .text(hubId)])
        case .finish: statement = PostgresStatement(PostgresStore.finishSQL, [rows])
        }
        let waiting = g.waiting
        return (statement, { [label] r in
            switch r {
            case .failure(let e):
                let err = OrchestraError(e.code, "journal \(label): \(e.message)")
                for w in waiting { w.done(.failure(err)) }
            case .success(let res):
                var written = Set<String>()
                do throws(OrchestraError) {
                    for i in 0..<res.rowCount { if let id = try res.text(i, 0) { written.insert(id) } }
                } catch {
                    for w in waiting { w.done(.failure(error)) }
                    return
                }
                for w in waiting { w.done(.success(written.contains(w.id))) }
            }
        })
    }
}
