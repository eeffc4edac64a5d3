import Glibc
import OrchestraCore
import OrchestraNet
import OrchestraTestSupport
import Synchronization
import Testing
@testable import OrchestraHub

/// The URL of the throw-away server scripts/pg started (scripts/test exports it), or nil.
private let pgURL: String? = getenv("ORC_TEST_PG_URL").map { String(cString: $0) }.flatMap { $0.isEmpty ? nil : $0 }
private let skipNote: Comment = "ORC_TEST_PG_URL is not set: no PostgreSQL for these tests (scripts/test starts one with scripts/pg; or export ORC_TEST_PG_URL=$(scripts/pg start))"

/// CI always has a server: there, a missing one fails instead of skipping.
@Suite struct PostgresAvailability {
    @Test func aServerIsGivenWhereCIRequiresOne() {
        let ci = getenv("CI").map { String(cString: $0) } == "true"
        if ci && pgURL == nil {
            Issue.record("CI=true but ORC_TEST_PG_URL is not set: scripts/test must start PostgreSQL (scripts/pg start)")
        }
    }
}

/// A value another thread sets once; `wait` polls for it (bounded: a broken test fails
/// instead of hanging; not a timing assertion).
final class Promise<T>: @unchecked Sendable {
    private let lock = PthreadMutex()
    private var value: T? = nil
    func fulfil(_ v: T) { lock.withLock { if value == nil { value = v } } }
    var peek: T? { lock.withLock { value } }
    func wait(_ seconds: Double = 30) -> T? {
        _ = eventually(seconds) { peek != nil }
        return peek
    }
}

/// Values appended from the I/O thread, read from the test's thread.
final class Collected<T>: @unchecked Sendable {
    private let lock = PthreadMutex()
    private var items: [T] = []
    func append(_ v: T) { lock.withLock { items.append(v) } }
    var all: [T] { lock.withLock { items } }
    var count: Int { lock.withLock { items.count } }
}

/// The PostgreSQL client against a real server (scripts/pg): every test makes its own runtime
/// and connections and closes them.
@Suite(.serialized, .enabled(if: pgURL != nil, skipNote))
struct PostgresClientTests {
    let url = pgURL ?? ""

    func makeRuntime() throws -> Runtime { try Runtime(name: "pg-test") }

    func connected(_ rt: Runtime, _ configure: (inout PostgresClient.Options) -> Void = { _ in }) throws -> PostgresClient {
        var o = PostgresClient.Options(url)
        configure(&o)
        let c = PostgresClient(runtime: rt, options: o)
        let p = Promise<Result<Void, PostgresError>>()
        c.connect { p.fulfil($0) }
        let r = try #require(p.wait())
        if case .failure(let e) = r { Issue.record("connect failed: \(e)") }
        try r.get()
        #expect(c.currentState == .connected)
        return c
    }

    /// Runs one statement and waits for its completion.
    func run(_ c: PostgresClient, _ sql: String, _ params: [PostgresValue] = []) throws -> Result<PostgresResult, PostgresError> {
        let p = Promise<Result<PostgresResult, PostgresError>>()
        c.query(sql, params) { p.fulfil($0) }
        return try #require(p.wait())
    }

    func rows(_ c: PostgresClient, _ sql: String, _ params: [PostgresValue] = []) throws -> PostgresResult {
        try run(c, sql, params).get()
    }

    func close(_ c: PostgresClient) {
        let p = Promise<Bool>()
        c.close { p.fulfil(true) }
        #expect(p.wait() == true)
        #expect(c.currentState == .closed)
    }

    func backendPID(_ c: PostgresClient) throws -> Int64 {
        try #require(try rows(c, "SELECT pg_backend_pid()").int64(0, 0))
    }

    // MARK: Connecting and values

    @Test func connectsAndRunsAStatementWithParameters() throws {
        let rt = try makeRuntime()
        defer { rt.shutdown() }
        let c = try connected(rt)
        let r = try rows(c, "SELECT $1::int8 + 1 AS n, current_user AS who", [41])
        #expect(r.rowCount == 1 && r.columnCount == 2)
        #expect(try r.int64(0, 0) == 42)
        #expect(try r.text(0, 1) == "orchestra")
        #expect(try r.columnName(0) == "n")
        #expect(r.columnIndex("who") == 1)
        #expect(r.commandTag == "SELECT 1")
        close(c)
    }

    @Test func everyParameterTypeRoundTrips() throws {
        let rt = try makeRuntime()
        defer { rt.shutdown() }
        let c = try connected(rt)
        var allBytes = [UInt8](0...255)
        allBytes += allBytes.reversed()
        var large = [UInt8](repeating: 0, count: 4 << 20)
        for i in large.indices { large[i] = UInt8(truncatingIfNeeded: i &* 2654435761 >> 13) }
        let texts = ["", "plain", "héllo wörld — 🎼 音楽 \u{1F600}", "quote ' and \" and \\ and $1", String(repeating: "x", count: 100_000)]
        let ints: [Int64] = [0, 1, -1, Int64.max, Int64.min, 1 << 40]
        let doubles: [Double] = [0, -0.5, 0.1, 1e308, -1e-308, .infinity, -.infinity, .pi]
        for t in texts {
            let r = try rows(c, "SELECT $1::text", [.text(t)])
            #expect(try r.text(0, 0) == t)
        }
        for i in ints { #expect(try rows(c, "SELECT $1::int8", [.int64(i)]).int64(0, 0) == i) }
        for d in doubles { #expect(try rows(c, "SELECT $1::float8", [.double(d)]).double(0, 0) == d) }
        #expect(try rows(c, "SELECT $1::float8", [.double(.nan)]).double(0, 0)?.isNaN == true)
        for b in [true, false] { #expect(try rows(c, "SELECT $1::bool", [.bool(b)]).bool(0, 0) == b) }
        for b in [[], allBytes, large] {
            let r = try rows(c, "SELECT $1::bytea, length($1::bytea)", [.bytea(b)])
            #expect(try r.bytes(0, 0) == b)
            #expect(try r.int64(0, 1) == Int64(b.count))
        }
        // NULL of every type, as a parameter and as a result.
        let n = try rows(c, "SELECT $1::text, $2::int8, $3::float8, $4::bool, $5::bytea, $6::text IS NULL",
                         [.null, .null, .null, .null, .null, .null])
        #expect(try n.text(0, 0) == nil)
        #expect(try n.int64(0, 1) == nil)
        #expect(try n.double(0, 2) == nil)
        #expect(try n.bool(0, 3) == nil)
        #expect(try n.bytes(0, 4) == nil)
        #expect(try n.bool(0, 5) == true)
        #expect(try n.isNull(0, 0) && !(try n.isNull(0, 5)))
        // The empty string is not NULL.
        #expect(try rows(c, "SELECT $1::text IS NULL, length($1::text)", [""]).bool(0, 0) == false)
        // Through a table: the values are stored as sent.
        #expect(try rows(c, "CREATE TEMP TABLE v (t text, i int8, d float8, b bool, y bytea)").commandTag == "CREATE TABLE")
        let ins = try rows(c, "INSERT INTO v VALUES ($1, $2, $3, $4, $5), ($6, $7, $8, $9, $10)",
                           [.text(texts[2]), .int64(Int64.min), .double(0.1), .bool(true), .bytea(allBytes),
                            .null, .null, .null, .null, .null])
        #expect(ins.affectedRows == 2)
        let back = try rows(c, "SELECT t, i, d, b, y FROM v ORDER BY t NULLS LAST")
        #expect(back.rowCount == 2)
        #expect(try back.value(0, 0) == .text(texts[2]))
        #expect(try back.value(0, 1) == .int64(Int64.min))
        #expect(try back.value(0, 2) == .double(0.1))
        #expect(try back.value(0, 3) == .bool(true))
        #expect(try back.value(0, 4) == .bytea(allBytes))
        for col in 0..<5 { #expect(try back.value(1, col) == .null) }
        // Other integer widths read as int64; a type the accessor cannot read names the cast.
        let w = try rows(c, "SELECT 7::int2, 8::int4, 9.5::float4, '{\"a\": 1}'::jsonb, 1.5::numeric")
        #expect(try w.int64(0, 0) == 7 && (try w.int64(0, 1)) == 8 && (try w.double(0, 2)) == 9.5)
        #expect(try w.text(0, 3) == "{\"a\": 1}")
        do {
            _ = try w.int64(0, 4)
            Issue.record("numeric read as int64")
        } catch {
            #expect(error.code == .invalidArgument && error.message.contains("::int8"))
        }
        #expect(throws: OrchestraError.self) { try w.int64(1, 0) }   // no such row
        #expect(throws: OrchestraError.self) { try w.int64(0, 9) }   // no such column
        close(c)
    }

    @Test func aServerErrorNamesTheStatementAndItsSQLSTATE() throws {
        let rt = try makeRuntime()
        defer { rt.shutdown() }
        let c = try connected(rt)
        guard case .failure(let e) = try run(c, "SELECT * FROM no_such_table_here") else {
            Issue.record("a missing table succeeded"); return
        }
        #expect(e.kind == .server && e.sqlstate == "42P01" && e.code == .failed)
        #expect(e.message.contains("no_such_table_here") && e.message.contains("42P01"), "\(e)")
        guard case .failure(let s) = try run(c, "SELEC 1") else { Issue.record("bad syntax succeeded"); return }
        #expect(s.sqlstate == "42601" && s.message.contains("SELEC 1"), "\(s)")
        // Still usable, and the same text fails the same way again (it was not cached).
        guard case .failure(let s2) = try run(c, "SELEC 1") else { Issue.record("bad syntax succeeded"); return }
        #expect(s2.sqlstate == "42601")
        #expect(try rows(c, "SELECT 1").int64(0, 0) == 1)
        close(c)
    }

    // MARK: Pipelining

    @Test func manyStatementsInFlightCompleteInOrder() throws {
        let rt = try makeRuntime()
        defer { rt.shutdown() }
        let c = try connected(rt) { $0.maxInFlight = 64 }
        let n = 3000
        let got = Collected<Int64>()
        let queuedAtOnce = Promise<Int>()
        try rt.post {
            for i in 0..<n {
                // Half prepared by text, half new texts (unprepared after the cache is full).
                let sql = i % 2 == 0 ? "SELECT $1::int8" : "SELECT $1::int8 + \(i % 7) - \(i % 7)"
                c.query(sql, [.int64(Int64(i))]) { r in
                    got.append((try? r.get().int64(0, 0)).flatMap { $0 } ?? -1)
                }
            }
            queuedAtOnce.fulfil(c.queuedCount)
        }
        #expect(eventually(60) { got.count == n })
        #expect(got.all == (0..<n).map { Int64($0) })
        #expect(c.inFlightHighWater == 64)           // pipelined, and never more than the bound
        #expect(queuedAtOnce.wait() == n - 64)       // the rest waited in order
        #expect(c.inFlightCount == 0 && c.queuedCount == 0)
        close(c)
    }

    /// Statements issued from completions are held until the completions of that read were
    /// delivered, then go out together: still in the order issued, before later ones.
    @Test func statementsIssuedByCompletionsKeepTheirOrder() throws {
        let rt = try makeRuntime()
        defer { rt.shutdown() }
        let c = try connected(rt)
        let got = Collected<Int64>()
        try rt.post {
            for batch in 0..<3 {
                c.query("SELECT $1::int8", [.int64(Int64(batch))]) { r in
                    got.append((try? r.get().int64(0, 0)).flatMap { $0 } ?? -1)
                    for k in 1...20 {
                        let v = Int64(batch * 100 + k)
                        c.query("SELECT $1::int8", [.int64(v)]) { r in
                            got.append((try? r.get().int64(0, 0)).flatMap { $0 } ?? -1)
                        }
                    }
                }
            }
        }
        #expect(eventually(30) { got.count == 63 })
        // The three first, in order (pipelined together), then each one's twenty in order.
        let expected: [Int64] = [0, 1, 2] + (0..<3).flatMap { b in (1...20).map { Int64(b * 100 + $0) } }
        #expect(got.all == expected)
        close(c)
    }

    // MARK: Transactions

    @Test func aTransactionWithAnErrorCommitsNothingAndAbortsTheRest() throws {
        let rt = try makeRuntime()
        defer { rt.shutdown() }
        let c = try connected(rt)
        _ = try rows(c, "CREATE TEMP TABLE tx (id int8 PRIMARY KEY)")
        let failed = Promise<[Result<PostgresResult, PostgresError>]>()
        let after = Promise<Result<PostgresResult, PostgresError>>()
        try rt.post {
            c.transaction([PostgresStatement("INSERT INTO tx VALUES ($1)", [1]),
                           PostgresStatement("INSERT INTO tx VALUES ($1)", [2]),
                           PostgresStatement("INSERT INTO tx VALUES ($1)", [1]),   // duplicate key
                           PostgresStatement("INSERT INTO tx VALUES ($1)", [3])]) { failed.fulfil($0) }
            // Pipelined right behind it: its own transaction, untouched by the failure.
            c.query("INSERT INTO tx VALUES ($1)", [10]) { after.fulfil($0) }
        }
        let results = try #require(failed.wait())
        #expect(results.count == 4)
        func error(_ i: Int) -> PostgresError? {
            if case .failure(let e) = results[i] { return e }
            return nil
        }
        #expect(error(2)?.kind == .server && error(2)?.sqlstate == "23505")
        #expect(error(2)?.message.contains("statement 3 of 4") == true, "\(String(describing: error(2)))")
        for i in [0, 1] { #expect(error(i)?.kind == .aborted && error(i)?.message.contains("rolled back") == true) }
        #expect(error(3)?.kind == .aborted && error(3)?.message.contains("not run") == true)
        #expect((try after.wait()?.get().affectedRows) == 1)
        #expect(try rows(c, "SELECT array_agg(id ORDER BY id)::text FROM tx").text(0, 0) == "{10}")
        // A transaction without an error commits all of it.
        let ok = Promise<[Result<PostgresResult, PostgresError>]>()
        c.transaction([PostgresStatement("INSERT INTO tx VALUES (20)"),
                       PostgresStatement("INSERT INTO tx SELECT id + 1 FROM tx WHERE id = 20"),
                       PostgresStatement("SELECT count(*) FROM tx")]) { ok.fulfil($0) }
        let okResults = try #require(ok.wait())
        #expect(try okResults[2].get().int64(0, 0) == 3)
        #expect(try rows(c, "SELECT count(*) FROM tx").int64(0, 0) == 3)
        close(c)
    }

    // MARK: LISTEN / NOTIFY

    @Test func notificationsReachTheHandler() throws {
        let rt = try makeRuntime()
        defer { rt.shutdown() }
        let listener = try connected(rt)
        let sender = try connected(rt)
        let got = Collected<PostgresNotification>()
        try rt.post { listener.onNotification = { got.append($0) } }
        _ = try run(listener, "SELECT 1")   // (the handler is set: posted before this)
        let l = Promise<Result<PostgresResult, PostgresError>>()
        listener.listen("orc_test_wakeup") { l.fulfil($0) }
        _ = try #require(l.wait()).get()
        let senderPID = try backendPID(sender)
        _ = try rows(sender, "SELECT pg_notify($1, $2)", ["orc_test_wakeup", "ids 1,2,3"])
        _ = try rows(sender, "SELECT pg_notify($1, $2)", ["orc_test_other", "not listened to"])
        let tx = Promise<[Result<PostgresResult, PostgresError>]>()
        sender.transaction([PostgresStatement("SELECT pg_notify('orc_test_wakeup', $1)", ["é 🎼"])]) { tx.fulfil($0) }
        _ = tx.wait()
        #expect(eventually(20) { got.count == 2 })
        #expect(got.all == [PostgresNotification(channel: "orc_test_wakeup", payload: "ids 1,2,3", senderPID: Int32(senderPID)),
                            PostgresNotification(channel: "orc_test_wakeup", payload: "é 🎼", senderPID: Int32(senderPID))])
        // A channel that is not a plain identifier is refused before anything is sent.
        let bad = Promise<Result<PostgresResult, PostgresError>>()
        listener.listen("x; DROP TABLE y") { bad.fulfil($0) }
        if case .failure(let e)? = bad.wait() { #expect(e.kind == .invalidArgument) } else { Issue.record("bad channel accepted") }
        close(listener)
        close(sender)
    }

    // MARK: Losing the connection

    @Test func aKilledBackendFailsTheStatementsInFlightAndReconnects() throws {
        let rt = try makeRuntime()
        defer { rt.shutdown() }
        let c = try connected(rt) { $0.maxInFlight = 2; $0.reconnectInitialDelayMs = 10 }
        let admin = try connected(rt)
        let lost = Promise<PostgresError>()
        let notes = Collected<PostgresNotification>()
        try rt.post {
            c.onConnectionLost = { lost.fulfil($0) }
            c.onNotification = { notes.append($0) }
        }
        let l = Promise<Result<PostgresResult, PostgresError>>()
        c.listen("orc_test_again") { l.fulfil($0) }
        _ = try #require(l.wait()).get()
        let pid = try backendPID(c)
        let results = Collected<Result<PostgresResult, PostgresError>>()
        c.query("SELECT pg_sleep(60)") { results.append($0) }
        c.query("SELECT 1") { results.append($0) }
        c.query("SELECT 2") { results.append($0) }     // beyond maxInFlight: queued
        #expect(eventually(20) { c.queuedCount == 1 })
        // Wait until the server runs the sleep, then end that backend from the other connection.
        #expect(eventually(20) {
            (try? rows(admin, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND query LIKE 'SELECT pg_sleep%' AND state = 'active'", [.int64(pid)]).int64(0, 0)) == 1
        })
        #expect(try rows(admin, "SELECT pg_terminate_backend($1::int4)", [.int64(pid)]).bool(0, 0) == true)
        #expect(eventually(30) { results.count == 3 })
        let all = results.all
        for r in all[0..<2] {
            guard case .failure(let e) = r else { Issue.record("an in-flight statement succeeded"); continue }
            #expect(e.kind == .connectionLost && e.code == .io)
            #expect(e.message.contains("terminating connection"), "\(e)")
        }
        if case .failure(let e) = all[0] { #expect(e.message.contains("pg_sleep"), "names the statement: \(e)") }
        guard case .failure(let q) = all[2] else { Issue.record("the queued statement succeeded"); return }
        #expect(q.kind == .notConnected && q.message.contains("not sent"))
        let le = try #require(lost.wait())
        #expect(le.kind == .connectionLost && le.sqlstate == "57P01", "\(le)")
        #expect(c.currentState == .disconnected)
        // Disconnected: new statements fail at once.
        guard case .failure(let nc) = try run(c, "SELECT 1") else { Issue.record("ran while disconnected"); return }
        #expect(nc.kind == .notConnected)
        // Reconnect: a new backend, the channel listened to again.
        let re = Promise<Result<Void, PostgresError>>()
        c.reconnect { re.fulfil($0) }
        _ = try #require(re.wait()).get()
        #expect(try backendPID(c) != pid)
        _ = try rows(admin, "SELECT pg_notify('orc_test_again', 'after')")
        #expect(eventually(20) { notes.count == 1 })
        #expect(notes.all.first?.payload == "after")
        close(c)
        close(admin)
    }

    @Test func aWrongPasswordFailsClearly() throws {
        let rt = try makeRuntime()
        defer { rt.shutdown() }
        let wrong = url.replacingPassword(with: "not-the-password")
        let c = PostgresClient(runtime: rt, options: .init(wrong))
        let p = Promise<Result<Void, PostgresError>>()
        c.connect { p.fulfil($0) }
        guard case .failure(let e)? = p.wait() else { Issue.record("connected with a wrong password"); return }
        #expect(e.kind == .connectFailed && e.code == .io)
        #expect(e.message.contains("password authentication failed"), "\(e)")
        #expect(!e.message.contains("not-the-password"))
        #expect(c.currentState == .disconnected)
        close(c)
    }

    @Test func aClosedPortFailsAndReconnectGivesUpAfterItsAttempts() throws {
        let rt = try makeRuntime()
        defer { rt.shutdown() }
        let port = try closedPort()
        var o = PostgresClient.Options("postgresql://orchestra@127.0.0.1:\(port)/orchestra")
        o.reconnectInitialDelayMs = 5
        let c = PostgresClient(runtime: rt, options: o)
        let p = Promise<Result<Void, PostgresError>>()
        let queued = Promise<Result<PostgresResult, PostgresError>>()
        c.connect { p.fulfil($0) }
        c.query("SELECT 1") { queued.fulfil($0) }   // waits for the connection, fails with it
        guard case .failure(let e)? = p.wait() else { Issue.record("connected to a closed port"); return }
        #expect(e.kind == .connectFailed && e.message.contains("Connection refused"), "\(e)")
        guard case .failure(let qe)? = queued.wait() else { Issue.record("ran without a server"); return }
        #expect(qe.kind == .connectFailed && qe.message.contains("not sent"))
        let r = Promise<Result<Void, PostgresError>>()
        c.reconnect(maxAttempts: 3) { r.fulfil($0) }
        guard case .failure(let re)? = r.wait() else { Issue.record("reconnected to a closed port"); return }
        #expect(re.kind == .connectFailed)
        close(c)
    }

    @Test func aServerThatNeverAnswersTimesOut() throws {
        let rt = try makeRuntime()
        defer { rt.shutdown() }
        // A listening socket nobody accepts on: the TCP connection is made, the startup
        // message is never answered.
        let (fd, port) = try silentListener()
        defer { Glibc.close(fd) }
        var o = PostgresClient.Options("postgresql://orchestra@127.0.0.1:\(port)/orchestra")
        o.connectTimeoutMs = 300
        let c = PostgresClient(runtime: rt, options: o)
        let p = Promise<Result<Void, PostgresError>>()
        c.connect { p.fulfil($0) }
        guard case .failure(let e)? = p.wait() else { Issue.record("connected to a silent server"); return }
        #expect(e.kind == .timedOut && e.code == .timedOut && e.message.contains("300 ms"), "\(e)")
        close(c)
    }

    @Test func aHostNameIsResolvedOffTheLoop() throws {
        let rt = try makeRuntime()
        defer { rt.shutdown() }
        let byName = url.replacingHost(with: "localhost")
        #expect(try PostgresClient.hostInfo(byName).nameToResolve == "localhost")
        #expect(try PostgresClient.hostInfo(url).nameToResolve == nil)
        #expect(try PostgresClient.hostInfo("host=/var/run/postgresql dbname=x").nameToResolve == nil)
        #expect(throws: PostgresError.self) { try PostgresClient.hostInfo("postgresql://[bad") }
        let c = PostgresClient(runtime: rt, options: .init(byName))
        let p = Promise<Result<Void, PostgresError>>()
        c.connect { p.fulfil($0) }
        _ = try #require(p.wait()).get()
        #expect(try rows(c, "SELECT 5").int64(0, 0) == 5)
        close(c)
    }

    // MARK: Closing

    @Test func closeFailsWhatIsPendingAndClosesTheHandles() throws {
        let rt = try makeRuntime()
        let c = try connected(rt) { $0.maxInFlight = 1 }
        let results = Collected<Result<PostgresResult, PostgresError>>()
        c.query("SELECT pg_sleep(60)") { results.append($0) }
        c.query("SELECT 1") { results.append($0) }
        #expect(eventually(20) { c.inFlightCount == 1 && c.queuedCount == 1 })
        close(c)
        #expect(results.count == 2)
        for r in results.all {
            guard case .failure(let e) = r else { Issue.record("a pending statement succeeded"); continue }
            #expect(e.kind == .closed && e.code == .closed)
        }
        guard case .failure(let after) = try run(c, "SELECT 1") else { Issue.record("ran after close"); return }
        #expect(after.kind == .closed)
        // A client left open is closed by its runtime's shutdown, which then ends.
        let open = try connected(rt)
        let pending = Promise<Result<PostgresResult, PostgresError>>()
        open.query("SELECT pg_sleep(60)") { pending.fulfil($0) }
        rt.shutdown()
        guard case .failure(let se)? = pending.wait() else { Issue.record("survived the shutdown"); return }
        #expect(se.kind == .closed && se.message.contains("shut down"))
        #expect(open.currentState == .closed)
        // After the shutdown, calls complete at once on the caller's thread.
        guard case .failure(let late) = try run(open, "SELECT 1") else { Issue.record("ran after shutdown"); return }
        #expect(late.kind == .closed)
    }

    // MARK: The I/O thread

    /// A slow statement does not hold the loop: a timer keeps firing while it runs, and it is
    /// the timer's third tick that ends the statement (by cancelling it from another
    /// connection). A blocked loop could not get there; the sleep would finish instead.
    @Test func theLoopKeepsRunningDuringASlowStatement() throws {
        let rt = try makeRuntime()
        defer { rt.shutdown() }
        let slow = try connected(rt)
        let admin = try connected(rt)
        let pid = try backendPID(slow)
        let ticks = Atomic<Int>(0)
        let outcome = Promise<Result<PostgresResult, PostgresError>>()
        let started = Promise<Bool>()
        slow.query("SELECT pg_sleep(60)") { outcome.fulfil($0) }
        #expect(eventually(20) {
            (try? rows(admin, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND state = 'active' AND query LIKE 'SELECT pg_sleep%'", [.int64(pid)]).int64(0, 0)) == 1
        })
        let timer = try rt.startTimer(delayMs: 5, repeatMs: 5, fire: {
            let n = ticks.add(1, ordering: .relaxed).newValue
            if n == 3 {
                #expect(outcome.peek == nil)   // still running at the third tick
                started.fulfil(true)
                admin.query("SELECT pg_cancel_backend($1::int4)", [.int64(pid)]) { _ in }
            }
        })
        guard case .failure(let e)? = outcome.wait(90) else { Issue.record("the sleep was not cancelled"); return }
        try rt.stopTimer(timer)
        #expect(started.peek == true)
        #expect(e.kind == .server && e.sqlstate == "57014", "\(e)")   // query_canceled
        #expect(try rows(slow, "SELECT 1").int64(0, 0) == 1)
        close(slow)
        close(admin)
    }

    @Test func badCallsFailBeforeAnythingIsSent() throws {
        let rt = try makeRuntime()
        defer { rt.shutdown() }
        let idle = PostgresClient(runtime: rt, options: .init(url))
        guard case .failure(let nc) = try run(idle, "SELECT 1") else { Issue.record("ran unconnected"); return }
        #expect(nc.kind == .notConnected)
        let c = try connected(rt)
        guard case .failure(let nul) = try run(c, "SELECT 1\u{0}; DROP TABLE x") else { Issue.record("NUL accepted"); return }
        #expect(nul.kind == .invalidArgument)
        let empty = Promise<[Result<PostgresResult, PostgresError>]>()
        c.transaction([]) { empty.fulfil($0) }
        #expect(empty.wait()?.isEmpty == true)
        let bad = PostgresClient(runtime: rt, options: .init("postgresql://[oops"))
        let p = Promise<Result<Void, PostgresError>>()
        bad.connect { p.fulfil($0) }
        guard case .failure(let be)? = p.wait() else { Issue.record("a bad URL connected"); return }
        #expect(be.kind == .invalidArgument)
        close(c)
        close(idle)
        close(bad)
    }
}

// MARK: Helpers

extension String {
    /// The URL with another password (postgresql://user:password@host...).
    func replacingPassword(with pw: String) -> String {
        guard let at = lastIndex(of: "@"), let colon = self[..<at].lastIndex(of: ":"),
              self[index(after: colon)] != "/" else { return self }
        return String(self[...colon]) + pw + String(self[at...])
    }

    /// The URL with another host (postgresql://user:password@host:port/...).
    func replacingHost(with host: String) -> String {
        guard let at = lastIndex(of: "@") else { return self }
        let rest = self[index(after: at)...]
        guard let colon = rest.firstIndex(of: ":") else { return self }
        return String(self[...at]) + host + String(rest[colon...])
    }
}

/// A loopback port nothing listens on (bound, then closed).
private func closedPort() throws -> UInt16 {
    let (fd, port) = try boundSocket(listen: false)
    Glibc.close(fd)
    return port
}

/// A socket listening on a loopback port that never accepts.
private func silentListener() throws -> (Int32, UInt16) { try boundSocket(listen: true) }

private func boundSocket(listen: Bool) throws -> (Int32, UInt16) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw OrchestraError(.io, "socket failed") }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = 0
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    let ok = withUnsafeMutablePointer(to: &addr) { p in
        p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
            bind(fd, sa, len) == 0 && getsockname(fd, sa, &len) == 0
        }
    }
    guard ok, !listen || Glibc.listen(fd, 1) == 0 else {
        Glibc.close(fd)
        throw OrchestraError(.io, "bind/listen failed")
    }
    return (fd, UInt16(bigEndian: addr.sin_port))
}
