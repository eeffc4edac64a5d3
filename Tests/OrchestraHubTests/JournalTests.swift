import Glibc
import Testing
import OrchestraCore
@testable import OrchestraHub

/// The journal on real SQLite files, each test in a fresh temporary directory.
@Suite struct JournalTests {
    /// With automatic checkpoints off, the writes stay in the WAL until the checkpointer's
    /// own connection, on its own thread, copies them into the database file; a batch
    /// (group commit) is one transaction.
    @Test func checkpointerMovesTheWALIntoTheDatabase() throws {
        let dir = try TempDir()
        let path = dir.path + "/j.db"
        let j = try Journal(path: path)
        try j.setAutoCheckpoint(pages: 0)
        let before = fileSize(path) ?? 0
        try j.beginBatch()
        #expect(j.inBatch)
        for i in 0..<300 { #expect(try j.insertTask(task("t\(i)", createdMs: Int64(i)))) }
        try j.commitBatch()
        #expect(!j.inBatch)
        #expect(fileSize(path) == before)          // everything is still in the WAL
        #expect((fileSize(path + "-wal") ?? 0) > 0)
        let cp = try JournalCheckpointer(path: path, durability: .normal, intervalMs: 20) { e in
            Issue.record("checkpoint failed: \(e)")
        }
        let end = monotonicMs() + 20_000
        while (fileSize(path) ?? 0) <= before && monotonicMs() < end { usleep(10_000) }
        cp.stop()
        #expect((fileSize(path) ?? 0) > before)
        #expect(try j.taskCounts()[.queued] == 300)
        j.close()
    }

    /// Under a steady stream of commits, a PASSIVE checkpoint on another connection always
    /// finishes behind the writer, so SQLite never starts the WAL over by itself and the file
    /// grows with every commit. The checkpointer's RESTART rounds keep it bounded.
    @Test func checkpointerKeepsTheWALBoundedUnderSteadyCommits() throws {
        let dir = try TempDir()
        let path = dir.path + "/j.db"
        let j = try Journal(path: path)
        try j.setAutoCheckpoint(pages: 0)
        let cp = try JournalCheckpointer(path: path, durability: .normal, intervalMs: 20, restartFrames: 64) { e in
            Issue.record("checkpoint failed: \(e)")
        }
        // Batches of 10 tasks with a short pause between them, like the hub's loop turns,
        // until at least 40,000 tasks and 5 restarts (bounded at 60 s).
        var n = 0
        var maxWAL = 0
        let end = monotonicMs() + 60_000
        while (n < 40_000 || cp.restarts < 5) && monotonicMs() < end {
            try j.beginBatch()
            for _ in 0..<10 {
                #expect(try j.insertTask(task("t\(n)", createdMs: Int64(n))))
                n += 1
            }
            try j.commitBatch()
            maxWAL = max(maxWAL, fileSize(path + "-wal") ?? 0)
            usleep(50)
        }
        cp.stop()
        #expect(cp.restarts >= 5)
        // Without restarts the WAL holds every commit: well over 40 MB for these 40,000 tasks.
        #expect(maxWAL < 12 << 20, "the WAL reached \(maxWAL) bytes over \(n) tasks")
        #expect(try j.taskCounts()[.queued] == n)
        j.close()
    }

    /// SQLite's memory statistics take a process-wide mutex on every allocation of every
    /// connection (6% of the hub's CPU under load): they are turned off before the first
    /// connection, so SQLite counts nothing.
    @Test func sqliteKeepsNoMemoryStatistics() throws {
        let dir = try TempDir()
        let j = try Journal(path: dir.path + "/m.db")
        for i in 0..<50 { #expect(try j.insertTask(task("m\(i)", createdMs: Int64(i)))) }
        #expect(SQLiteDatabase.memoryStatisticsBytes == 0)
        j.close()
    }

    // MARK: tasks

    @Test func taskWithEveryFieldRoundTrips() throws {
        let dir = try TempDir()
        let path = dir.path + "/hub.db"
        var t = TaskRecord(id: "t-1", spec: ["type": "shell", "tool": "custom", "capabilities": ["shell", "python"],
                                              "parameters": ["command": "echo \"hi\"\n\u{e9}😀", "n": 3, "x": 2.5, "none": nil],
                                              "priority": "high", "sessionId": "s1"],
                           sessionId: "s1", submitter: "alice", traceId: "trace-9", priority: 3, strategy: "least-connections",
                           pinnedAgent: "a7", maxAttempts: 5, nowMs: 1_700_000_000_123)
        t.state = .running
        t.attempt = 2
        t.agentId = "a7"
        t.rejectedBy = ["a1", "a\"2", ""]
        t.result = ["exitCode": 0, "output": ["line 1", "line 2"], "ok": true]
        t.error = "partial\u{0}failure"
        t.errorCode = "TASK_001"
        t.dead = true
        t.updatedMs = 1_700_000_009_999

        var bare = TaskRecord(id: "t-2", spec: [:], sessionId: nil, submitter: nil, traceId: "", priority: 0,
                              strategy: nil, pinnedAgent: nil, maxAttempts: 0, nowMs: -5)
        var nullResult = bare
        nullResult.id = "t-3"
        nullResult.result = .null  // JSON null, not "no result"

        let j = try Journal(path: path)
        #expect(try j.insertTask(t))
        #expect(try j.insertTask(bare))
        #expect(try j.insertTask(nullResult))
        #expect(try j.task(id: "t-1") == t)
        #expect(try j.task(id: "t-2") == bare)
        #expect(try j.task(id: "t-3")?.result == .null)
        #expect(try j.task(id: "t-2")?.result == nil)
        #expect(try j.task(id: "missing") == nil)

        // A whole-row update, then the same rows from a fresh connection after close.
        bare.state = .assigned
        bare.attempt = 1
        bare.agentId = "a2"
        bare.rejectedBy = ["a1"]
        bare.updatedMs = 7
        try j.updateTask(bare)
        j.close()
        let again = try Journal(path: path)
        #expect(try again.task(id: "t-1") == t)
        #expect(try again.task(id: "t-2") == bare)
        #expect(try again.task(id: "t-3") == nullResult)
    }

    @Test func insertOfAnExistingIdWritesNothing() throws {
        let dir = try TempDir()
        let j = try Journal(path: dir.path + "/hub.db")
        let t = task("dup", createdMs: 10)
        #expect(try j.insertTask(t))
        var other = task("dup", createdMs: 20)
        other.spec = ["type": "other"]
        other.priority = 3
        #expect(try j.insertTask(other) == false)
        #expect(try j.task(id: "dup") == t)
        #expect(try j.taskCounts()[.queued] == 1)
        // And an insert after the refused one still reports true.
        #expect(try j.insertTask(task("next", createdMs: 30)))
    }

    @Test func badArgumentsAreRefusedNotTrapped() throws {
        let dir = try TempDir()
        let j = try Journal(path: dir.path + "/hub.db")
        var t = task("p", createdMs: 1)
        t.priority = 7
        expectError(.invalidArgument, "priority 7") { () throws(OrchestraError) in _ = try j.insertTask(t) }
        t.priority = 1
        t.attempt = -1
        expectError(.invalidArgument, "must not be negative") { () throws(OrchestraError) in _ = try j.insertTask(t) }
        expectError(.notFound, "no such task") { () throws(OrchestraError) in try j.updateTask(task("ghost", createdMs: 1)) }
        expectError(.invalidArgument, "not a final state") { () throws(OrchestraError) in
            _ = try j.finishTask(id: "p", attempt: 0, state: .running, result: nil, error: nil, errorCode: nil, dead: false, nowMs: 1)
        }
        expectError(.invalidArgument, "secret is empty") { () throws(OrchestraError) in _ = try j.addKey(id: "k", secret: [], nowMs: 1) }
        #expect(try j.taskCounts().values.reduce(0, +) == 0)
    }

    @Test func finishTaskRecordsOneOutcomeOnly() throws {
        let dir = try TempDir()
        let j = try Journal(path: dir.path + "/hub.db")
        var t = task("f", createdMs: 100)
        #expect(try j.insertTask(t))
        t.state = .running
        t.attempt = 2
        t.agentId = "a1"
        try j.updateTask(t)

        // A result for an earlier attempt is stale.
        #expect(try j.finishTask(id: "f", attempt: 1, state: .succeeded, result: ["x": 1], error: nil, errorCode: nil, dead: false, nowMs: 200) == false)
        #expect(try j.task(id: "f") == t)
        #expect(try j.finishTask(id: "nope", attempt: 2, state: .failed, result: nil, error: "e", errorCode: nil, dead: false, nowMs: 200) == false)

        #expect(try j.finishTask(id: "f", attempt: 2, state: .succeeded, result: ["x": 1], error: nil, errorCode: nil, dead: false, nowMs: 300))
        var done = t
        done.state = .succeeded
        done.result = ["x": 1]
        done.updatedMs = 300
        #expect(try j.task(id: "f") == done)

        // The same attempt again, even with another outcome, changes nothing.
        #expect(try j.finishTask(id: "f", attempt: 2, state: .failed, result: nil, error: "late", errorCode: "TASK_001", dead: true, nowMs: 400) == false)
        #expect(try j.task(id: "f") == done)
    }

    @Test func unfinishedDeadLettersRequeueAndCounts() throws {
        let dir = try TempDir()
        let j = try Journal(path: dir.path + "/hub.db")
        // Inserted out of age order; two share a creation time (then insertion order counts).
        for (id, created) in [("c", 30), ("a", 10), ("d", 40), ("b", 20), ("b2", 20), ("e", 50)] {
            #expect(try j.insertTask(task(id, createdMs: Int64(created))))
        }
        var b = try #require(try j.task(id: "b"))
        b.state = .assigned
        b.attempt = 1
        b.agentId = "x"
        var c = try #require(try j.task(id: "c"))
        c.state = .running
        c.attempt = 1
        try j.updateTasks([b, c])
        #expect(try j.finishTask(id: "d", attempt: 0, state: .succeeded, result: nil, error: nil, errorCode: nil, dead: false, nowMs: 41))
        var e = try #require(try j.task(id: "e"))
        e.attempt = 3
        e.rejectedBy = ["x", "y"]
        e.agentId = "y"
        try j.updateTask(e)
        #expect(try j.finishTask(id: "e", attempt: 3, state: .failed, result: ["partial": true], error: "retry limit",
                                 errorCode: "TASK_001", dead: true, nowMs: 60))
        #expect(try j.finishTask(id: "a", attempt: 0, state: .failed, result: nil, error: "cancelled", errorCode: "TASK_001", dead: false, nowMs: 61))

        #expect(try j.unfinishedTasks().map(\.id) == ["b", "b2", "c"])
        #expect(try j.taskCounts() == [.queued: 1, .assigned: 1, .running: 1, .succeeded: 1, .failed: 2])
        #expect(try j.deadLetters().map(\.id) == ["e"])
        #expect(try j.deadLetters(limit: 0).isEmpty)

        // Only a dead task can be requeued.
        #expect(try j.requeue(id: "a", nowMs: 70) == false)
        #expect(try j.requeue(id: "b", nowMs: 70) == false)
        #expect(try j.requeue(id: "missing", nowMs: 70) == false)
        #expect(try j.queuedTaskIds(updatedSinceMs: 70).isEmpty)
        #expect(try j.requeue(id: "e", nowMs: 70))
        let back = try #require(try j.task(id: "e"))
        #expect(back.state == .queued && back.attempt == 0 && back.rejectedBy.isEmpty && !back.dead)
        #expect(back.result == nil && back.error == nil && back.errorCode == nil && back.agentId == nil)
        #expect(back.updatedMs == 70 && back.createdMs == 50 && back.spec == e.spec && back.maxAttempts == e.maxAttempts)
        #expect(try j.requeue(id: "e", nowMs: 71) == false)
        #expect(try j.deadLetters().isEmpty)
        #expect(try j.unfinishedTasks().map(\.id) == ["b", "b2", "c", "e"])
        #expect(try j.queuedTaskIds(updatedSinceMs: 70) == ["e"])
        #expect(try j.queuedTaskIds(updatedSinceMs: 0) == ["b2", "e"])
        #expect(try j.taskCounts() == [.queued: 2, .assigned: 1, .running: 1, .succeeded: 1, .failed: 1])
    }

    @Test func deadLettersAreNewestFirstAndLimited() throws {
        let dir = try TempDir()
        let j = try Journal(path: dir.path + "/hub.db")
        for i in 0..<5 {
            #expect(try j.insertTask(task("d\(i)", createdMs: Int64(i))))
            #expect(try j.finishTask(id: "d\(i)", attempt: 0, state: .failed, result: nil, error: "x", errorCode: "AGENT_001", dead: true, nowMs: Int64(100 + i)))
        }
        #expect(try j.deadLetters().map(\.id) == ["d4", "d3", "d2", "d1", "d0"])
        #expect(try j.deadLetters(limit: 2).map(\.id) == ["d4", "d3"])
    }

    @Test func updateTasksIsAllOrNothing() throws {
        let dir = try TempDir()
        let j = try Journal(path: dir.path + "/hub.db")
        #expect(try j.insertTask(task("u1", createdMs: 1)))
        #expect(try j.insertTask(task("u2", createdMs: 2)))
        var u1 = try #require(try j.task(id: "u1"))
        u1.state = .assigned
        u1.attempt = 1
        var u2 = try #require(try j.task(id: "u2"))
        u2.state = .assigned
        u2.attempt = 1
        expectError(.notFound, "\"ghost\"") { () throws(OrchestraError) in
            try j.updateTasks([u1, u2, task("ghost", createdMs: 3)])
        }
        #expect(try j.task(id: "u1")?.state == .queued)
        #expect(try j.task(id: "u2")?.state == .queued)
        try j.updateTasks([u1, u2])
        #expect(try j.taskCounts()[.assigned] == 2)
    }

    // MARK: two connections, crashes

    @Test func twoJournalsOnOneFileSeeEachOthersCommits() throws {
        let dir = try TempDir()
        let path = dir.path + "/state/hub.db"
        let hub = try Journal(path: path)
        let cli = try Journal(path: path)
        let v0 = try hub.dataVersion()

        // The hub's own commit leaves its data_version alone.
        #expect(try hub.insertTask(task("h1", createdMs: 1)))
        #expect(try hub.dataVersion() == v0)

        // The CLI's commit is visible to the hub, and changes its data_version.
        #expect(try cli.task(id: "h1") != nil)
        #expect(try cli.insertTask(task("c1", createdMs: 2)))
        let v1 = try hub.dataVersion()
        #expect(v1 != v0)
        #expect(try hub.task(id: "c1") != nil)
        #expect(try hub.dataVersion() == v1)

        // A dead task requeued by the CLI shows up in the hub's queued ids.
        #expect(try hub.finishTask(id: "h1", attempt: 0, state: .failed, result: nil, error: "retry limit", errorCode: "TASK_001", dead: true, nowMs: 10))
        #expect(try cli.deadLetters().map(\.id) == ["h1"])
        let v2 = try hub.dataVersion()
        #expect(try cli.requeue(id: "h1", nowMs: 20))
        #expect(try hub.dataVersion() != v2)
        #expect(try hub.queuedTaskIds(updatedSinceMs: 20) == ["h1"])
        #expect(try hub.task(id: "h1")?.state == .queued)

        // Each side's keys, users and settings are the other's too.
        #expect(try cli.addKey(id: "k1", secret: [1, 2, 3], nowMs: 5))
        #expect(try hub.keySecret(id: "k1") == [1, 2, 3])
        try hub.setSetting("jwt", "s")
        #expect(try cli.setting("jwt") == "s")
        cli.close()
        #expect(try hub.taskCounts()[.queued] == 2)
    }

    @Test func anUnclosedWriterLosesNothingAndOtherReadersCanReadTheFile() throws {
        let dir = try TempDir()
        let path = dir.path + "/hub.db"
        let writer = try Journal(path: path)  // never closed before the readers look
        for i in 0..<50 { #expect(try writer.insertTask(task("w\(i)", createdMs: Int64(i)))) }
        #expect(try writer.finishTask(id: "w7", attempt: 0, state: .succeeded, result: ["v": 7], error: nil, errorCode: nil, dead: false, nowMs: 99))
        #expect(fileSize(path + "-wal") ?? 0 > 0)

        let reader = try Journal(path: path)
        #expect(try reader.unfinishedTasks().count == 49)
        #expect(try reader.task(id: "w7")?.result == ["v": 7])

        // The file is plain SQLite: python's sqlite3 module reads it while the writer is open.
        let script = """
            import sqlite3, sys, json
            db = sqlite3.connect(sys.argv[1])
            n = db.execute("select count(*) from tasks").fetchone()[0]
            r = db.execute("select state, result from tasks where id = 'w7'").fetchone()
            print(n, r[0], json.loads(r[1])["v"])
            """
        let out = try run(["python3", "-c", script, path])
        #expect(out.status == 0, "python3 failed: \(out.output)")
        #expect(out.output.hasSuffix("50 succeeded 7\n"), "python3 printed: \(out.output)")
        withExtendedLifetime(writer) {}
    }

    /// The child half of `commitsSurviveAChildKilledWithSIGKILL`: runs only in the child process
    /// that test starts (it sets ORC_JOURNAL_CHILD_DB). It inserts tasks and reports each commit
    /// on fd 3 until it is killed; it stops by itself only after 100,000 tasks or 60 s.
    @Test(.enabled(if: getenv("ORC_JOURNAL_CHILD_DB") != nil, "child process of commitsSurviveAChildKilledWithSIGKILL"))
    func childWriter() throws {
        let path = String(cString: getenv("ORC_JOURNAL_CHILD_DB")!)
        let j = try Journal(path: path)
        let start = monotonicMs()
        for i in 0..<100_000 {
            var t = task("k\(i)", createdMs: Int64(i))
            t.spec = ["type": "shell", "parameters": ["i": .int(Int64(i))]]
            #expect(try j.insertTask(t))
            let line = Array("\(i)\n".utf8)
            if write(3, line, line.count) != line.count { return }
            if monotonicMs() - start > 60_000 { return }
        }
    }

    @Test func commitsSurviveAChildKilledWithSIGKILL() throws {
        let dir = try TempDir()
        let path = dir.path + "/hub.db"
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        // Close-on-exec, so other tests' children do not inherit the pipe; spawn's dup2 hands it to this one.
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        let exe = try selfExecutable()
        let child = try spawn([exe, "--testing-library", "swift-testing", "--filter", "JournalTests/childWriter"],
                              extraEnv: ["ORC_JOURNAL_CHILD_DB=\(path)"], fd3: fds[1], log: dir.path + "/child.log")
        close(fds[1])
        defer { close(fds[0]) }

        // Read the child's commit reports; kill it once 300 commits are reported.
        var lastReported = -1
        var killed = false
        var pending: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        let deadline = monotonicMs() + 120_000
        while monotonicMs() < deadline {
            var p = pollfd(fd: fds[0], events: Int16(POLLIN), revents: 0)
            if poll(&p, 1, 1000) <= 0 { continue }
            let n = read(fds[0], &buf, buf.count)
            if n <= 0 { break }  // EOF: the child is gone
            pending.append(contentsOf: buf[0..<n])
            while let nl = pending.firstIndex(of: 0x0A) {
                if let i = Int(String(decoding: pending[0..<nl], as: UTF8.self)) { lastReported = i }
                pending.removeSubrange(0...nl)
            }
            if !killed && lastReported >= 299 {
                kill(child, SIGKILL)
                killed = true
            }
        }
        if !killed { kill(child, SIGKILL) }
        var status: Int32 = 0
        waitpid(child, &status, 0)
        #expect(killed, "the child reported \(lastReported + 1) commits before the deadline; log: \(readText(dir.path + "/child.log"))")
        #expect(status & 0x7F == SIGKILL, "the child ended with status \(status), not by SIGKILL; log: \(readText(dir.path + "/child.log"))")
        #expect(lastReported >= 299)
        #expect(fileSize(path + "-wal") ?? 0 > 0, "the killed writer left its WAL")

        // Every commit the child reported is there and reads back whole.
        let j = try Journal(path: path)
        let all = try j.unfinishedTasks()
        #expect(all.count >= lastReported + 1)
        #expect(all.count <= lastReported + 2, "at most one commit after the last report")
        for (i, t) in all.enumerated() {
            #expect(t.id == "k\(i)" && t.spec["parameters"]?["i"] == .int(Int64(i)))
        }
        let raw = try SQLiteDatabase(path: path)
        let check = try raw.prepare("PRAGMA integrity_check")
        #expect(try check.step())
        #expect(check.text(0) == "ok")
        check.reset()
    }

    // MARK: schema and bad files

    @Test func aNewerSchemaIsRefused() throws {
        let dir = try TempDir()
        let path = dir.path + "/hub.db"
        try Journal(path: path).close()
        do {
            let raw = try SQLiteDatabase(path: path)
            try raw.exec("PRAGMA user_version=\(Journal.schemaVersion + 1)")
            raw.close()
        }
        expectError(.version, "schema version \(Journal.schemaVersion + 1) is newer") { () throws(OrchestraError) in _ = try Journal(path: path) }
        // Nothing was changed: still the newer version.
        let raw = try SQLiteDatabase(path: path)
        let v = try raw.prepare("PRAGMA user_version")
        #expect(try v.step() && v.int64(0) == Journal.schemaVersion + 1)
        v.reset()
    }

    @Test func anotherApplicationsDatabaseIsRefused() throws {
        let dir = try TempDir()
        let path = dir.path + "/other.db"
        do {
            let raw = try SQLiteDatabase(path: path)
            try raw.exec("CREATE TABLE photos (id INTEGER PRIMARY KEY)")
            raw.close()
        }
        expectError(.io, "not an orchestra journal") { () throws(OrchestraError) in _ = try Journal(path: path) }
    }

    @Test func aFileOfRandomBytesGivesAClearError() throws {
        let dir = try TempDir()
        let path = dir.path + "/hub.db"
        var rng = SystemRandomNumberGenerator()
        writeFile(path, (0..<8192).map { _ in UInt8.random(in: 0...255, using: &rng) })
        expectError(.io, "journal \(path): open failed: file is not a database (SQLITE_NOTADB") { () throws(OrchestraError) in
            _ = try Journal(path: path)
        }
    }

    @Test func aJournalWithSmashedPagesGivesAClearError() throws {
        let dir = try TempDir()
        let path = dir.path + "/hub.db"
        do {
            let j = try Journal(path: path)
            for i in 0..<300 { #expect(try j.insertTask(task("s\(i)", createdMs: Int64(i)))) }
            j.close()
        }
        #expect(fileSize(path + "-wal") ?? 0 == 0, "close checkpointed and truncated the WAL")
        // Keep page 1 (header and schema), overwrite the rest.
        let size = try #require(fileSize(path))
        var bytes = readBytes(path)
        var rng = SystemRandomNumberGenerator()
        for i in 4096..<size { bytes[i] = UInt8.random(in: 0...255, using: &rng) }
        writeFile(path, bytes)
        do {
            let j = try Journal(path: path)
            _ = try j.taskCounts()
            _ = try j.unfinishedTasks()
            Issue.record("a journal with smashed pages read without an error")
        } catch {
            #expect(error.code == .io)
            #expect(error.message.hasPrefix("journal \(path): "), "\(error)")
            #expect(error.message.contains("SQLITE_CORRUPT") || error.message.contains("SQLITE_NOTADB"), "\(error)")
        }
    }

    @Test func rowsThatCannotBeReadBackGiveClearErrors() throws {
        let dir = try TempDir()
        let path = dir.path + "/hub.db"
        let j = try Journal(path: path)
        #expect(try j.insertTask(task("r", createdMs: 1)))
        let raw = try SQLiteDatabase(path: path)
        try raw.exec("PRAGMA ignore_check_constraints=ON")

        // (how the row is damaged, what the error says, whether unfinishedTasks still selects the row)
        let cases: [(String, String, Bool)] = [
            ("UPDATE tasks SET spec = '{\"type\":' WHERE id = 'r'", "column spec is not valid JSON (invalid JSON at byte", true),
            ("UPDATE tasks SET spec = x'00ff' WHERE id = 'r'", "column spec is a blob, not JSON text", true),
            ("UPDATE tasks SET state = 'paused' WHERE id = 'r'", "column state has the unknown value \"paused\"", false),
            ("UPDATE tasks SET priority = 9 WHERE id = 'r'", "column priority is 9, outside 0...3", true),
            ("UPDATE tasks SET priority = 'high' WHERE id = 'r'", "column priority is text, not an integer", true),
            ("UPDATE tasks SET rejected_by = '[1]' WHERE id = 'r'", "column rejected_by holds a non-string 1", true),
            ("UPDATE tasks SET rejected_by = '{}' WHERE id = 'r'", "column rejected_by is not a JSON array", true),
            ("UPDATE tasks SET result = 'not json' WHERE id = 'r'", "column result is not valid JSON", true),
            ("UPDATE tasks SET dead = 2 WHERE id = 'r'", "column dead is 2", true),
            ("UPDATE tasks SET trace_id = x'35' WHERE id = 'r'", "column trace_id is a blob, not text", true),
            ("UPDATE tasks SET attempt = 1.5 WHERE id = 'r'", "column attempt is a real, not an integer", true),
        ]
        let good = try #require(try j.task(id: "r"))
        let prefix = "journal \(path): task \"r\" is unreadable: "
        for (sql, expected, selected) in cases {
            try raw.exec(sql)
            expectError(.io, prefix + expected) { () throws(OrchestraError) in _ = try j.task(id: "r") }
            if selected {
                expectError(.io, prefix + expected) { () throws(OrchestraError) in _ = try j.unfinishedTasks() }
            }
            try j.updateTask(good)  // repaired through the journal
            #expect(try j.task(id: "r") == good)
        }
        try raw.exec("UPDATE tasks SET state = 'paused' WHERE id = 'r'")
        expectError(.io, "unknown state \"paused\"") { () throws(OrchestraError) in _ = try j.taskCounts() }
    }

    // MARK: keys, users, nonces, settings

    @Test func keysUsersAndSettings() throws {
        let dir = try TempDir()
        let j = try Journal(path: dir.path + "/hub.db")
        #expect(try j.addKey(id: "k2", secret: [0, 1, 255], nowMs: 20))
        #expect(try j.addKey(id: "k1", secret: Array("s3cret".utf8), nowMs: 10))
        #expect(try j.addKey(id: "k1", secret: [9], nowMs: 30) == false)
        #expect(try j.keySecret(id: "k1") == Array("s3cret".utf8))
        #expect(try j.keySecret(id: "k2") == [0, 1, 255])
        #expect(try j.keySecret(id: "k3") == nil)
        #expect(try j.listKeys().map { "\($0.id)@\($0.createdMs)" } == ["k1@10", "k2@20"])
        #expect(try j.removeKey(id: "k1"))
        #expect(try j.removeKey(id: "k1") == false)
        #expect(try j.keySecret(id: "k1") == nil)

        #expect(try j.addUser(name: "bob", passwordHash: "$argon2id$b", role: .viewer, nowMs: 1))
        #expect(try j.addUser(name: "alice", passwordHash: "$argon2id$a", role: .admin, nowMs: 2))
        #expect(try j.addUser(name: "alice", passwordHash: "other", role: .viewer, nowMs: 3) == false)
        let alice = try #require(try j.user(name: "alice"))
        #expect(alice.passwordHash == "$argon2id$a" && alice.account.role == .admin)
        #expect(try j.user(name: "carol") == nil)
        #expect(try j.userAccounts().map { "\($0.name):\($0.role.rawValue)" } == ["alice:admin", "bob:viewer"])
        #expect(try j.removeUser(name: "bob"))
        #expect(try j.removeUser(name: "bob") == false)
        #expect(try j.userAccounts().map(\.name) == ["alice"])

        #expect(try j.setting("jwtSecret") == nil)
        try j.setSetting("jwtSecret", "one")
        try j.setSetting("jwtSecret", "two")
        try j.setSetting("empty", "")
        #expect(try j.setting("jwtSecret") == "two")
        #expect(try j.setting("empty") == "")
    }

    @Test func aReplayedNonceIsRefusedAcrossRestartsUntilItExpires() throws {
        let dir = try TempDir()
        let path = dir.path + "/hub.db"
        let now: Int64 = 1_732_381_200_000
        do {
            let j = try Journal(path: path)
            #expect(try j.rememberNonce(keyId: "k1", nonce: "9f1c00aa", timestampMs: now, nowMs: now))
            #expect(try j.rememberNonce(keyId: "k1", nonce: "9f1c00aa", timestampMs: now, nowMs: now + 1) == false)
            #expect(try j.rememberNonce(keyId: "k2", nonce: "9f1c00aa", timestampMs: now, nowMs: now + 2))
            // A timestamp 5 minutes in the future keeps its nonce 10 minutes past that.
            #expect(try j.rememberNonce(keyId: "k1", nonce: "future", timestampMs: now + 300_000, nowMs: now))
            j.close()
        }
        let j = try Journal(path: path)  // the hub restarted
        #expect(try j.rememberNonce(keyId: "k1", nonce: "9f1c00aa", timestampMs: now, nowMs: now + 3) == false)
        #expect(try j.rememberNonce(keyId: "k1", nonce: "9f1c00aa", timestampMs: now, nowMs: now + 599_999) == false)
        #expect(try j.rememberNonce(keyId: "k1", nonce: "future", timestampMs: now + 300_000, nowMs: now + 899_999) == false)
        // Ten minutes later the nonce has expired (and pruning removed the old rows).
        #expect(try j.rememberNonce(keyId: "k1", nonce: "9f1c00aa", timestampMs: now + 600_000, nowMs: now + 600_000))
        #expect(try j.rememberNonce(keyId: "k1", nonce: "9f1c00aa", timestampMs: now + 600_000, nowMs: now + 600_001) == false)
        #expect(try j.rememberNonce(keyId: "k1", nonce: "future", timestampMs: now + 900_000, nowMs: now + 900_000))
        let raw = try SQLiteDatabase(path: path)
        let n = try raw.prepare("SELECT count(*) FROM nonces")
        #expect(try n.step() && n.int64(0) == 2, "the k2 nonce was pruned; k1's two were taken over")
        n.reset()
    }

    // MARK: files and lifecycle

    @Test func parentDirectoriesAreCreatedAndAFileInTheWayIsReported() throws {
        let dir = try TempDir()
        let path = dir.path + "/a/b//c/hub.db"
        let j = try Journal(path: path)
        #expect(try j.insertTask(task("x", createdMs: 1)))
        j.close()
        #expect(fileSize(path) ?? 0 > 0)
        writeFile(dir.path + "/file", [1])
        expectError(.io, "create directory \(dir.path)/file failed: it exists and is not a directory") { () throws(OrchestraError) in
            _ = try Journal(path: dir.path + "/file/hub.db")
        }
        expectError(.invalidArgument, "empty") { () throws(OrchestraError) in _ = try Journal(path: "") }
    }

    @Test func closeIsIdempotentAndLaterCallsThrowClosed() throws {
        let dir = try TempDir()
        let path = dir.path + "/hub.db"
        let j = try Journal(path: path, durability: .full)
        #expect(try j.insertTask(task("c", createdMs: 1)))
        #expect(fileSize(path + "-wal") ?? 0 > 0)
        j.close()
        j.close()
        #expect(fileSize(path + "-wal") ?? 0 == 0, "the WAL was checkpointed and truncated")
        expectError(.closed, "journal \(path): closed") { () throws(OrchestraError) in _ = try j.task(id: "c") }
        expectError(.closed, "closed") { () throws(OrchestraError) in _ = try j.insertTask(task("d", createdMs: 2)) }
        expectError(.closed, "closed") { () throws(OrchestraError) in _ = try j.dataVersion() }
        #expect(try Journal(path: path).task(id: "c") != nil)
    }

    @Test func statementsArePreparedOnceAndReused() throws {
        let db = try SQLiteDatabase(path: ":memory:")
        try db.exec("CREATE TABLE t (a INTEGER, b TEXT, c BLOB)")
        let insert = try db.prepare("INSERT INTO t VALUES (?1, ?2, ?3)")
        #expect(try db.prepare("INSERT INTO t VALUES (?1, ?2, ?3)") === insert)
        for i in 0..<3 {
            let s = try db.prepare("INSERT INTO t VALUES (?1, ?2, ?3)")
            try s.bind(1, Int64(i))
            try s.bind(2, i == 0 ? "" : "v\(i)")
            try s.bind(3, i == 0 ? [] : [UInt8(i)])
            #expect(try s.run() == 1)
        }
        let q = try db.prepare("SELECT a, b, c FROM t ORDER BY a")
        var rows: [String] = []
        while try q.step() { rows.append("\(q.int64(0)):\(q.text(1) ?? "nil"):\(q.blob(2).map { "\($0)" } ?? "nil")") }
        q.reset()
        #expect(rows == ["0::[]", "1:v1:[1]", "2:v2:[2]"])
        expectError(.invalidArgument, "more than one statement") { () throws(OrchestraError) in _ = try db.prepare("SELECT 1; SELECT 2") }
        expectError(.io, "no such table: nope (SQLITE_ERROR, code 1)") { () throws(OrchestraError) in _ = try db.prepare("SELECT * FROM nope") }
        // A failing transaction body rolls back.
        expectError(.io, "boom") { () throws(OrchestraError) in
            try db.transaction { () throws(OrchestraError) in
                try db.exec("INSERT INTO t VALUES (9, 'x', NULL)")
                throw OrchestraError(.io, "boom")
            }
        }
        #expect(db.isAutocommit)
        let count = try db.prepare("SELECT count(*) FROM t")
        #expect(try count.step() && count.int64(0) == 3)
        count.reset()
    }

    /// Not a speed check (no timed assertion): prints what 10,000 single-task commits cost.
    @Test func insertThroughputNote() throws {
        for durability in [Durability.normal, .full] {
            let dir = try TempDir()
            let j = try Journal(path: dir.path + "/hub.db", durability: durability)
            let start = monotonicMs()
            var n = 0
            while n < 10_000 && monotonicMs() - start < 30_000 {
                var t = task("t\(n)", createdMs: Int64(n))
                t.spec = ["type": "shell", "tool": "custom", "capabilities": ["shell"], "parameters": ["command": .string("echo \(n)")], "priority": "normal"]
                #expect(try j.insertTask(t))
                n += 1
            }
            let ms = max(monotonicMs() - start, 1)
            print("journal insertTask, synchronous=\(durability.rawValue): \(n) commits in \(ms) ms = \(Int64(n) * 1000 / ms) tasks/s, \(ms * 1000 / Int64(n)) µs each")
            #expect(try j.taskCounts()[.queued] == n)
        }
    }
}

// MARK: helpers

private func task(_ id: String, createdMs: Int64) -> TaskRecord {
    TaskRecord(id: id, spec: ["type": "shell", "parameters": ["command": "true"]], sessionId: "s", submitter: "u",
               traceId: id, priority: 1, strategy: nil, pinnedAgent: nil, maxAttempts: 3, nowMs: createdMs)
}

private func expectError(_ code: ErrorCode, _ fragment: String, sourceLocation: SourceLocation = #_sourceLocation,
                         _ body: () throws(OrchestraError) -> Void)
{
    do {
        try body()
        Issue.record("expected \(code.name) containing \"\(fragment)\", got no error", sourceLocation: sourceLocation)
    } catch {
        #expect(error.code == code, "\(error)", sourceLocation: sourceLocation)
        #expect(error.message.contains(fragment), "\(error)", sourceLocation: sourceLocation)
    }
}

/// A fresh directory from mkdtemp, removed when the value goes away.
private final class TempDir {
    let path: String
    init() throws {
        var template = Array("/tmp/orc-journal-XXXXXX".utf8CString)
        guard let p = mkdtemp(&template) else { throw OrchestraError(.io, "mkdtemp failed: errno \(errno)") }
        path = String(cString: p)
    }
    deinit { _ = system("rm -rf '\(path)'") }
}

private func monotonicMs() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
}

private func fileSize(_ path: String) -> Int? {
    var st = stat()
    return stat(path, &st) == 0 ? Int(st.st_size) : nil
}

private func readBytes(_ path: String) -> [UInt8] {
    guard let f = fopen(path, "rb") else { return [] }
    defer { fclose(f) }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = fread(&buf, 1, buf.count, f)
        if n == 0 { break }
        out.append(contentsOf: buf[0..<n])
    }
    return out
}

private func readText(_ path: String) -> String { String(decoding: readBytes(path), as: UTF8.self) }

private func writeFile(_ path: String, _ bytes: [UInt8]) {
    guard let f = fopen(path, "wb") else { return }
    _ = fwrite(bytes, 1, bytes.count, f)
    fclose(f)
}

private func selfExecutable() throws -> String {
    var buf = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buf, buf.count - 1)
    guard n > 0 else { throw OrchestraError(.io, "readlink /proc/self/exe failed: errno \(errno)") }
    return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// Starts `argv` (PATH searched) with the environment plus `extraEnv`; `fd3` becomes its fd 3,
/// stdout and stderr go to `log` (or /dev/null).
private func spawn(_ argv: [String], extraEnv: [String] = [], fd3: Int32? = nil, log: String? = nil) throws -> pid_t {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 1, log ?? "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    posix_spawn_file_actions_adddup2(&actions, 1, 2)
    if let fd3 {
        // dup2 onto itself would keep FD_CLOEXEC: move a pipe that landed on fd 3 first.
        let from = fd3 == 3 ? fcntl(fd3, F_DUPFD_CLOEXEC, 4) : fd3
        posix_spawn_file_actions_adddup2(&actions, from, 3)
    }
    var env: [String] = []
    var e = environ
    while let p = e.pointee {
        env.append(String(cString: p))
        e += 1
    }
    env += extraEnv
    let cArgs = argv.map { strdup($0) } + [nil]
    let cEnv = env.map { strdup($0) } + [nil]
    defer { (cArgs + cEnv).forEach { free($0) } }
    var pid: pid_t = 0
    let rc = posix_spawnp(&pid, argv[0], &actions, nil, cArgs, cEnv)
    guard rc == 0 else { throw OrchestraError(.io, "posix_spawnp \(argv[0]) failed: \(String(cString: strerror(rc)))") }
    return pid
}

/// Runs `argv` to the end; its stdout and stderr together.
private func run(_ argv: [String]) throws -> (status: Int32, output: String) {
    let dir = try TempDir()
    let log = dir.path + "/out"
    let pid = try spawn(argv, log: log)
    var status: Int32 = 0
    waitpid(pid, &status, 0)
    return ((status >> 8) & 0xFF, readText(log))
}

/// Schema version 2: users, keys and agent bindings, sessions and their replay log, and the
/// migration of a version 1 journal.
@Suite struct JournalTrustTests {
    @Test func aVersion1JournalIsMigratedKeepingItsRows() throws {
        let dir = try TempDir()
        let path = dir.path + "/v1.db"
        do {
            let raw = try SQLiteDatabase(path: path)
            try raw.exec(Journal.schemaV1)
            try raw.exec("PRAGMA user_version=1")
            try raw.exec("INSERT INTO users (name, password_hash, role, created_ms) VALUES ('old', 'h', 'admin', 1)")
            try raw.exec("INSERT INTO agent_keys (id, secret, created_ms) VALUES ('k1', x'0102', 2)")
            raw.close()
        }
        let j = try Journal(path: path)
        #expect(j.migratedFrom == 1)
        let old = try #require(try j.user(name: "old"))
        // A user from before keeps working: generation 0 (tokens without `gen`), enabled.
        #expect(old.account == UserAccount(name: "old", role: .admin, disabled: false, tokenGeneration: 0, createdMs: 1))
        #expect(try j.keyAccounts() == [KeyAccount(id: "k1", disabled: false, agents: nil, createdMs: 2)])
        #expect(try j.sessions().isEmpty)
        j.close()
        let again = try Journal(path: path)
        #expect(again.migratedFrom == nil)
        again.close()
    }

    @Test func anUnknownRoleInTheJournalIsAnError() throws {
        let j = try Journal(path: ":memory:")
        try j.db.exec("INSERT INTO users (name, password_hash, role, created_ms) VALUES ('x', 'h', 'root', 1)")
        expectError(.io, "user \"x\" is unreadable: column role has the unknown value \"root\"") { () throws(OrchestraError) in _ = try j.userAccounts() }
    }

    @Test func usersAreDisabledAndTheirTokensRevoked() throws {
        let j = try Journal(path: ":memory:")
        #expect(try j.addUser(name: "alice", passwordHash: "h", role: .user, nowMs: 1000))
        #expect(try j.user(name: "alice")?.account.tokenGeneration == 1000)
        #expect(try j.revokeTokens(name: "alice", nowMs: 500) == 1001)     // at least one more
        #expect(try j.revokeTokens(name: "alice", nowMs: 5000) == 5000)    // at least now
        #expect(try j.revokeTokens(name: "nobody", nowMs: 1) == nil)
        #expect(try j.setUserDisabled(name: "alice", true))
        #expect(try j.setUserRole(name: "alice", .viewer))
        #expect(try j.userAccounts() == [UserAccount(name: "alice", role: .viewer, disabled: true, tokenGeneration: 5000, createdMs: 1000)])
        #expect(try j.setUserDisabled(name: "bob", true) == false)
        #expect(try j.setUserRole(name: "bob", .admin) == false)
        // Removed and added again: a new generation, so the old tokens stay refused.
        #expect(try j.removeUser(name: "alice"))
        #expect(try j.addUser(name: "alice", passwordHash: "h2", role: .user, nowMs: 9000))
        #expect(try j.user(name: "alice")?.account.tokenGeneration == 9000)
    }

    @Test func disabledKeysHaveNoSecretAndScopesRoundTrip() throws {
        let j = try Journal(path: ":memory:")
        let scope = try #require(AgentIdScope("build-*,deploy-1"))
        #expect(try j.addKey(id: "ci", secret: [7], agents: scope, nowMs: 3))
        #expect(try j.keyAccount(id: "ci")?.agents == scope)
        #expect(try j.setKeyDisabled(id: "ci", true))
        #expect(try j.keySecret(id: "ci") == nil)
        #expect(try j.keyAccount(id: "ci")?.disabled == true)
        #expect(try j.setKeyDisabled(id: "ci", false))
        #expect(try j.keySecret(id: "ci") == [7])
        #expect(try j.setKeyAgents(id: "ci", nil))
        #expect(try j.keyAccount(id: "ci")?.agents == nil)
        #expect(try j.setKeyAgents(id: "nope", nil) == false)
        #expect(try j.keyAccount(id: "nope") == nil)
    }

    @Test func anAgentIdStaysBoundToItsFirstKey() throws {
        let j = try Journal(path: ":memory:")
        #expect(try j.agentBinding(agentId: "a1") == nil)
        #expect(try j.bindAgent(agentId: "a1", keyId: "k1", nowMs: 1) == "k1")
        #expect(try j.bindAgent(agentId: "a1", keyId: "k2", nowMs: 2) == "k1")
        #expect(try j.agentBindings().map { "\($0.agentId)=\($0.keyId)@\($0.createdMs)" } == ["a1=k1@1"])
        #expect(try j.unbindAgent(agentId: "a1"))
        #expect(try j.unbindAgent(agentId: "a1") == false)
        #expect(try j.bindAgent(agentId: "a1", keyId: "k2", nowMs: 3) == "k2")
    }

    @Test func sessionsKeepOwnersSharesHeadsAndEvents() throws {
        let dir = try TempDir()
        let path = dir.path + "/s.db"
        do {
            let j = try Journal(path: path)
            #expect(try j.insertSession(id: "s", owner: "alice", nowMs: 1))
            #expect(try j.insertSession(id: "s", owner: "bob", nowMs: 2) == false)
            try j.setSessionShares(id: "s", users: ["carol", "bob"])
            for o in 1...6 {
                try j.appendSessionEvent(sessionId: "s", offset: Int64(o), atMs: Int64(o * 10), kind: o % 2 == 0 ? .chunk : .state,
                                         frame: Array("event \(o)".utf8))
            }
            try j.setSessionHead(id: "s", head: 6, nowMs: 60)
            expectError(.notFound, "no such session") { () throws(OrchestraError) in try j.setSessionHead(id: "t", head: 1, nowMs: 1) }
            // Chunks 2 and 4 dropped by the budget; everything up to 1 by the window.
            try j.deleteSessionEvents(sessionId: "s", 2...4, kind: .chunk)
            try j.deleteSessionEvents(sessionId: "s", 1...1)
            j.close()
        }
        let j = try Journal(path: path)
        #expect(try j.sessions() == [SessionRecord(id: "s", owner: "alice", head: 6, sharedWith: ["bob", "carol"], createdMs: 1)])
        #expect(try j.sessionEventIndex().map { "\($0.offset):\($0.kind == .state ? "s" : "c"):\($0.bytes)@\($0.atMs)" } == ["3:s:7@30", "5:s:7@50", "6:c:7@60"])
        #expect(try j.sessionEvents(sessionId: "s", after: 3).map { String(decoding: $0.frame, as: UTF8.self) } == ["event 5", "event 6"])
        #expect(try j.sessionEvents(sessionId: "other", after: 0).isEmpty)
        try j.setSessionShares(id: "s", users: [])
        #expect(try j.sessions()[0].sharedWith == [])
        j.close()
    }

    /// The journal and its -wal and -shm are created 0600 and a new directory 0700, whatever
    /// the umask; a journal others can read is reported.
    @Test func theJournalIsPrivate() throws {
        let dir = try TempDir()
        let old = umask(0o022)
        defer { umask(old) }
        let path = dir.path + "/new/dir/j.db"
        let j = try Journal(path: path)
        #expect(try j.insertTask(task("t1", createdMs: 1)))
        for f in [path, path + "-wal", path + "-shm"] {
            var st = stat()
            #expect(stat(f, &st) == 0 && st.st_mode & 0o777 == 0o600, "\(f)")
        }
        var st = stat()
        #expect(stat(dir.path + "/new/dir", &st) == 0 && st.st_mode & 0o777 == 0o700)
        #expect(j.exposure().isEmpty)
        chmod(path, 0o644)
        #expect(j.exposure().count == 1 && j.exposure()[0].contains("mode 644"))
        j.close()
    }
}
