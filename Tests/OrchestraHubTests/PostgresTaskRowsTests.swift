import Glibc
import OrchestraCore
import OrchestraNet
import OrchestraTestSupport
import Testing
@testable import OrchestraHub

private let pgURL: String? = getenv("ORC_TEST_PG_URL").map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 }

/// The task writes a PostgreSQL batch sends many rows per statement (PostgresStore+TaskRows):
/// each row's answer is its own, and every write of one task keeps the order the hub asked
/// for whatever groups the rows went into. Against the real server of scripts/pg, each test in
/// a schema of its own.
@Suite(.serialized, .enabled(if: pgURL != nil, "ORC_TEST_PG_URL is not set (scripts/pg start)"))
struct PostgresTaskRowsTests {
    /// A store migrated into a fresh schema, on a runtime of its own.
    final class Fixture {
        let rt: Runtime
        let store: PostgresStore
        let schema = "t_rows_\(UInt32.random(in: 0...UInt32.max))"
        let admin: PostgresClient
        let url: String

        init() throws {
            rt = try Runtime(name: "pg-rows-test")
            admin = PostgresClient(runtime: rt, options: PostgresClient.Options(pgURL!))
            let connected = Promise<Result<Void, PostgresError>>()
            admin.connect { connected.fulfil($0) }
            try #require(connected.wait()).get()
            let made = Promise<Result<PostgresResult, PostgresError>>()
            admin.query("CREATE SCHEMA \(schema)") { made.fulfil($0) }
            _ = try #require(made.wait()).get()
            let sep = pgURL!.contains("?") ? "&" : "?"
            url = "\(pgURL!)\(sep)options=-csearch_path%3D\(schema)"
            store = PostgresStore(runtime: rt, url: url)
            try store.open()
        }

        /// Runs `body` on the I/O thread in one batch, commits it and waits for the commit.
        func batch(_ body: @escaping (PostgresStore) -> Void) throws -> OrchestraError? {
            try #require(try start(store, body).wait())
        }

        /// Starts a batch of `s` (on this runtime) without waiting for its commit. The promise
        /// is kept once the rows' own completions ran too: the store tells them right after
        /// the commit's, in the same callback, so a job posted from the commit's runs after them.
        func start(_ s: PostgresStore, _ body: @escaping (PostgresStore) -> Void) throws -> Promise<OrchestraError?> {
            let p = Promise<OrchestraError?>()
            try rt.post { [rt] in
                do throws(OrchestraError) { try s.beginBatch() } catch { p.fulfil(error); return }
                body(s)
                s.commitBatch { e in
                    do { try rt.post { p.fulfil(e) } } catch { p.fulfil(e) }
                }
            }
            return p
        }

        func task(_ id: String) throws -> TaskRecord? {
            let p = Promise<Result<TaskRecord?, OrchestraError>>()
            try rt.post { [store] in store.task(id: id) { p.fulfil($0) } }
            return try #require(p.wait()).get()
        }

        deinit {
            let closed = Promise<Bool>()
            store.close { closed.fulfil(true) }
            _ = closed.wait()
            let dropped = Promise<Bool>()
            admin.query("DROP SCHEMA \(schema) CASCADE") { _ in dropped.fulfil(true) }
            _ = dropped.wait()
            admin.close { }
            rt.shutdown()
        }
    }

    static func record(_ id: String, priority: Int = 1) -> TaskRecord {
        var t = TaskRecord(id: id, spec: ["type": "shell", "parameters": ["command": "echo \"é\\n\" 'x'"]], sessionId: nil, submitter: "u",
                           traceId: id, priority: priority, strategy: nil, pinnedAgent: nil, maxAttempts: 3, nowMs: 1000)
        t.submitHub = "hub-a"
        return t
    }

    static func claimed(_ t: TaskRecord, agent: String = "agent-1") -> TaskRecord {
        var c = t
        c.attempt += 1
        c.state = .assigned
        c.agentId = agent
        c.updatedMs = 2000
        return c
    }

    @Test func eachRowOfAGroupGetsItsOwnAnswer() throws {
        let f = try Fixture()
        let answers = Collected<(String, Bool)>()
        func note(_ label: String) -> StoreDone<Bool> { { r in answers.append((label, (try? r.get()) ?? false)) } }
        #expect(try f.batch { s in
            s.insertTask(Self.record("a"), note("insert a"))
            s.insertTask(Self.record("b"), note("insert b"))
            s.insertTask(Self.record("a"), note("insert a again"))   // the same id: written once
        } == nil)
        #expect(answers.all.map(\.0) == ["insert a", "insert b", "insert a again"])
        #expect(answers.all.map(\.1) == [true, true, false])
        let a = try #require(try f.task("a"))
        #expect(a.state == .queued && a.submitter == "u" && a.submitHub == "hub-a" && a.rejectedBy.isEmpty)
        #expect(a.spec == Self.record("a").spec)   // the spec's text, escapes and all, as written

        let later = Collected<(String, Bool)>()
        func note2(_ label: String) -> StoreDone<Bool> { { r in later.append((label, (try? r.get()) ?? false)) } }
        #expect(try f.batch { s in
            s.claimTask(Self.claimed(a), expectedAttempt: 0, hubId: "hub-a", note2("claim a"))
            s.claimTask(Self.claimed(Self.record("b")), expectedAttempt: 5, hubId: "hub-a", note2("claim b at a wrong attempt"))
            s.claimTask(Self.claimed(Self.record("zz")), expectedAttempt: 0, hubId: "hub-a", note2("claim a task nobody has"))
            s.finishTask(id: "a", attempt: 1, state: .succeeded, result: .null, error: nil, errorCode: nil, dead: false, nowMs: 3000,
                         note2("finish a"))
        } == nil)
        #expect(later.all.map(\.1) == [true, false, false, true], "\(later.all)")
        let done = try #require(try f.task("a"))
        #expect(done.state == .succeeded && done.attempt == 1 && done.agentId == "agent-1" && done.hubId == "hub-a")
        #expect(done.result == .null)   // a JSON null result stays a result, not a missing one
        #expect(try f.task("b")?.state == .queued)
    }

    /// A finish asked for before a claim of the same task must run before it, although a group
    /// of claims sits earlier in the batch: the claim then opens a group of its own.
    @Test func writesOfOneTaskKeepTheirOrderAcrossGroups() throws {
        let f = try Fixture()
        #expect(try f.batch { s in
            s.insertTask(Self.record("c")) { _ in }
            s.insertTask(Self.record("d")) { _ in }
        } == nil)
        let answers = Collected<(String, Bool)>()
        func note(_ label: String) -> StoreDone<Bool> { { r in answers.append((label, (try? r.get()) ?? false)) } }
        #expect(try f.batch { s in
            s.claimTask(Self.claimed(Self.record("c")), expectedAttempt: 0, hubId: "hub-a", note("claim c"))
            // d is queued: its outcome is refused here, and it must still be refused when the
            // claim of d below is sent.
            s.finishTask(id: "d", attempt: 1, state: .succeeded, result: nil, error: nil, errorCode: nil, dead: false, nowMs: 3000,
                         note("finish d before its claim"))
            s.claimTask(Self.claimed(Self.record("d")), expectedAttempt: 0, hubId: "hub-a", note("claim d"))
        } == nil)
        #expect(answers.all.map(\.1) == [true, false, true], "\(answers.all)")
        #expect(try f.task("d")?.state == .assigned)
        #expect(try f.task("c")?.state == .assigned)
    }

    /// A statement that picks tasks by a condition (a reservation) sees exactly the rows
    /// asked for before it: a task inserted after it is not reserved by it.
    @Test func aReservationSeesOnlyTheRowsAskedForBeforeIt() throws {
        let f = try Fixture()
        let reserved = Promise<[String]>()
        #expect(try f.batch { s in
            s.insertTask(Self.record("e")) { _ in }
            s.reserveQueued(hubId: "hub-b", capabilities: [], agents: [], limit: 10, nowMs: 1500) { r in
                reserved.fulfil(((try? r.get()) ?? []).map(\.id))
            }
            s.insertTask(Self.record("f")) { _ in }
        } == nil)
        #expect(reserved.wait() == ["e"])
        #expect(try f.task("e")?.hubId == "hub-b")
        #expect(try f.task("f")?.hubId == nil)
    }

    /// A row the server refuses fails its whole batch: every row's completion gets the error
    /// and nothing of the batch is written.
    @Test func aRefusedRowFailsTheBatchAndEveryRowHearsIt() throws {
        let f = try Fixture()
        let answers = Collected<Result<Bool, OrchestraError>>()
        let e = try f.batch { s in
            s.insertTask(Self.record("g")) { answers.append($0) }
            s.insertTask(Self.record("h", priority: 9)) { answers.append($0) }   // CHECK (priority BETWEEN 0 AND 3)
        }
        let err = try #require(e)
        #expect(err.message.contains("commit failed"), "\(err)")
        #expect(answers.count == 2)
        for a in answers.all {
            guard case .failure(let x) = a else { Issue.record("a row of a failed batch was answered \(a)"); continue }
            #expect(x.message.contains("priority") || x.message.contains("check") || x.message.contains("rolled back"), "\(x)")
        }
        #expect(try f.task("g") == nil)
    }

    /// Two hubs' batches that update the same sessions' heads in opposite orders, each pausing
    /// between them (a slow network would do the same): both commit, one after the other. In
    /// the order the statements came they waited for each other, and PostgreSQL rolled one
    /// back as a deadlock (40P01) with its events and acknowledgements.
    @Test func batchesOfTwoHubsDoNotDeadlockOnSessionHeads() throws {
        let f = try Fixture()
        let other = PostgresStore(runtime: f.rt, url: f.url)
        try other.open()
        defer {
            let closed = Promise<Bool>()
            other.close { closed.fulfil(true) }
            _ = closed.wait()
        }
        #expect(try f.batch { s in
            s.insertSession(id: "s-a", owner: "u", nowMs: 1) { _ in }
            s.insertSession(id: "s-b", owner: "u", nowMs: 1) { _ in }
        } == nil)
        func appendPauseAppend(_ first: String, _ second: String) -> (PostgresStore) -> Void {
            { s in
                s.appendNumberedEvent(sessionId: first, atMs: 2, kind: .state, frame: Array("x".utf8), hubId: "h") { _ in }
                s.write("SELECT pg_sleep(0.3)", [], { (_: Result<Void, OrchestraError>) in }) { _ in () }
                s.appendNumberedEvent(sessionId: second, atMs: 2, kind: .state, frame: Array("y".utf8), hubId: "h") { _ in }
            }
        }
        let one = try f.start(f.store, appendPauseAppend("s-a", "s-b"))
        let two = try f.start(other, appendPauseAppend("s-b", "s-a"))
        let e1 = try #require(one.wait())
        let e2 = try #require(two.wait())
        #expect(e1 == nil, "\(String(describing: e1))")
        #expect(e2 == nil, "\(String(describing: e2))")
        let heads = Promise<Result<[SessionRecord?], OrchestraError>>()
        try f.rt.post { [store = f.store] in
            store.session(id: "s-a") { a in
                store.session(id: "s-b") { b in
                    heads.fulfil(Result { () throws(OrchestraError) in [try a.get(), try b.get()] })
                }
            }
        }
        let got = try #require(heads.wait()).get()
        #expect(got.map { $0?.head } == [2, 2])
    }

    /// The store's connection never compiles a plan with JIT, from its first connection and
    /// again after a reconnect: a cheap statement whose estimated cost passed
    /// `jit_above_cost` spent milliseconds compiling at every run.
    @Test func theStoresConnectionRunsWithoutJIT() throws {
        let f = try Fixture()
        /// The setting, asked on the store's connection once the store says it is connected
        /// (its session settings are then ahead of anything sent on it).
        func setting() throws -> (String, Int32) {
            let p = Promise<Result<(String, Int32), PostgresError>>()
            try f.rt.post { [store = f.store] in
                guard store.connectedSinceMs != nil else { p.fulfil(.failure(PostgresError(.notConnected, "reconnecting"))); return }
                store.client.query("SHOW jit") { r in
                    p.fulfil(r.map { ((try? $0.text(0, 0)) ?? "?", store.client.backendPID) })
                }
            }
            return try #require(p.wait()).get()
        }
        let (first, pid) = try setting()
        #expect(first == "off")
        let killed = Promise<Result<PostgresResult, PostgresError>>()
        f.admin.query("SELECT pg_terminate_backend($1::int4)", [.int64(Int64(pid))]) { killed.fulfil($0) }
        #expect(try #require(killed.wait()).get().bool(0, 0) == true)
        // The store notices at its next statement and reconnects with backoff.
        var again: (String, Int32)? = nil
        #expect(eventually(20) {
            if let r = try? setting(), r.1 != pid, r.1 != 0 { again = r; return true }
            usleep(50_000)
            return false
        })
        #expect(again?.0 == "off")
    }

    /// The plan PostgreSQL keeps for a grouped write once it was made on a small table whose
    /// statistics say most tasks are finished: it must still read only the batch's rows. (The
    /// plain join of the rows with `tasks`, checked first, reads all of `tasks_pkey` there.)
    @Test func theGroupedWritesPlanOnlyTheBatchsRows() throws {
        let f = try Fixture()
        let c = PostgresClient(runtime: f.rt, options: PostgresClient.Options(f.url))
        let connected = Promise<Result<Void, PostgresError>>()
        c.connect { connected.fulfil($0) }
        try #require(connected.wait()).get()
        defer { c.close { } }
        func run(_ statements: [PostgresStatement]) throws -> [PostgresResult] {
            let p = Promise<[Result<PostgresResult, PostgresError>]>()
            c.transaction(statements) { p.fulfil($0) }
            return try #require(p.wait()).map { try $0.get() }
        }
        _ = try run([
            PostgresStatement("""
                INSERT INTO tasks (id, state, spec, trace_id, priority, attempt, max_attempts, rejected_by, dead, created_ms, updated_ms)
                SELECT 'x' || g, CASE WHEN g % 100 = 0 THEN 'assigned' ELSE 'succeeded' END, '{}', 'x', 1, 1, 3, '[]', false, g, g
                FROM generate_series(1, 300) g
                """),
            PostgresStatement("ANALYZE tasks"),
        ])
        /// The generic plan of `sql` under a write batch's settings, one line per row.
        func genericPlan(_ name: String, _ sql: String, _ types: String, _ args: String) throws -> [String] {
            let rs = try run([
                PostgresStore.planSettings,
                PostgresStatement("SELECT set_config('plan_cache_mode', 'force_generic_plan', true)"),
                PostgresStatement("PREPARE \(name)(\(types)) AS \(sql)"),
                PostgresStatement("EXPLAIN EXECUTE \(name)(\(args))"),
                PostgresStatement("DEALLOCATE \(name)"),
            ])
            return try (0..<rs[3].rowCount).map { try rs[3].text($0, 0) ?? "" }
        }
        /// Whether every scan of `tasks` in `plan` is keyed (an index condition, no full scan).
        func keyed(_ plan: [String]) -> Bool {
            for (i, line) in plan.enumerated() where line.contains(" on tasks") {
                if line.contains("Seq Scan") { return false }
                if line.contains("Index Scan"), !(plan.indices.contains(i + 1) && plan[i + 1].contains("Index Cond")) { return false }
            }
            return true
        }
        let plainJoin = """
            UPDATE tasks t SET state = v.state, updated_ms = v.updated_ms
            FROM json_to_recordset($1::json) AS v(id text, attempt int, state text, updated_ms int8)
            WHERE t.id = v.id AND t.attempt = v.attempt AND t.state NOT IN ('succeeded', 'failed') RETURNING t.id
            """
        let hazard = try genericPlan("plain_join", plainJoin, "json", "'[]'")
        #expect(!keyed(hazard), "the hazard this test guards against did not show: \(hazard.joined(separator: "\n"))")
        let finish = try genericPlan("finish_rows", PostgresStore.finishSQL, "json", "'[]'")
        #expect(keyed(finish), "\(finish.joined(separator: "\n"))")
        let claim = try genericPlan("claim_rows", PostgresStore.claimSQL, "json, text", "'[]', 'h'")
        #expect(keyed(claim), "\(claim.joined(separator: "\n"))")
    }
}
