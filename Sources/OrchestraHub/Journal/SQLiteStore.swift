import OrchestraCore

/// The hub's journal on SQLite (`Journal`): every call runs its statement at once on the
/// calling thread and calls its completion before it returns; the batch is one SQLite
/// transaction, committed synchronously.
public final class SQLiteStore: HubStore {
    public let journal: Journal
    private var lastDataVersion: Int64

    public init(_ journal: Journal) throws(OrchestraError) {
        self.journal = journal
        lastDataVersion = try journal.dataVersion()
    }

    public var label: String { "sqlite:\(journal.path)" }

    /// Runs `body` and hands its result or error to `done`.
    @inline(__always)
    private func run<T>(_ done: StoreDone<T>, _ body: () throws(OrchestraError) -> T) {
        do { done(.success(try body())) } catch { done(.failure(error)) }
    }

    public func beginBatch() throws(OrchestraError) { try journal.beginBatch() }

    public func commitBatch(_ done: @escaping (OrchestraError?) -> Void) {
        do { try journal.commitBatch(); done(nil) } catch { done(error) }
    }

    public func insertTask(_ t: TaskRecord, _ done: @escaping StoreDone<Bool>) { run(done) { () throws(OrchestraError) in try journal.insertTask(t) } }
    public func updatePlacement(_ t: TaskRecord, _ done: @escaping StoreDone<Void>) { run(done) { () throws(OrchestraError) in try journal.updatePlacement(t) } }

    public func finishTask(id: String, attempt: Int, state: TaskState, result: JSONValue?, error: String?, errorCode: String?,
                           dead: Bool, nowMs: Int64, _ done: @escaping StoreDone<Bool>) {
        run(done) { () throws(OrchestraError) in
            try journal.finishTask(id: id, attempt: attempt, state: state, result: result, error: error, errorCode: errorCode, dead: dead, nowMs: nowMs)
        }
    }

    public func requeueDead(id: String, nowMs: Int64, _ done: @escaping StoreDone<TaskRecord?>) {
        run(done) { () throws(OrchestraError) -> TaskRecord? in
            guard try journal.requeue(id: id, nowMs: nowMs) else { return nil }
            return try journal.task(id: id)
        }
    }

    public func rememberNonce(keyId: String, nonce: String, timestampMs: Int64, nowMs: Int64, _ done: @escaping StoreDone<Bool>) {
        run(done) { () throws(OrchestraError) in try journal.rememberNonce(keyId: keyId, nonce: nonce, timestampMs: timestampMs, nowMs: nowMs) }
    }

    public func bindAgent(agentId: String, keyId: String, nowMs: Int64, _ done: @escaping StoreDone<String>) {
        run(done) { () throws(OrchestraError) in try journal.bindAgent(agentId: agentId, keyId: keyId, nowMs: nowMs) }
    }

    public func insertSession(id: String, owner: String, nowMs: Int64, _ done: @escaping StoreDone<Bool>) {
        run(done) { () throws(OrchestraError) in try journal.insertSession(id: id, owner: owner, nowMs: nowMs) }
    }

    public func setSessionHead(id: String, head: Int64, nowMs: Int64, _ done: @escaping StoreDone<Void>) {
        run(done) { () throws(OrchestraError) in try journal.setSessionHead(id: id, head: head, nowMs: nowMs) }
    }

    public func setSessionShares(id: String, users: [String], _ done: @escaping StoreDone<Void>) {
        run(done) { () throws(OrchestraError) in try journal.setSessionShares(id: id, users: users) }
    }

    public func appendSessionEvent(sessionId: String, offset: Int64, atMs: Int64, kind: SessionEventKind, frame: [UInt8],
                                   _ done: @escaping StoreDone<Void>) {
        run(done) { () throws(OrchestraError) in
            try journal.appendSessionEvent(sessionId: sessionId, offset: offset, atMs: atMs, kind: kind, frame: frame)
        }
    }

    public func deleteSessionEvents(sessionId: String, _ range: ClosedRange<Int64>, kind: SessionEventKind?, _ done: @escaping StoreDone<Void>) {
        run(done) { () throws(OrchestraError) in try journal.deleteSessionEvents(sessionId: sessionId, range, kind: kind) }
    }

    public func setting(_ key: String, insertingIfAbsent value: String, _ done: @escaping StoreDone<String>) {
        run(done) { () throws(OrchestraError) in try journal.setting(key, insertingIfAbsent: value) }
    }

    public func replayLogs(including sessions: Set<String>, _ done: @escaping StoreDone<[(SessionRecord, [SessionEventEntry])]>) {
        run(done) { () throws(OrchestraError) -> [(SessionRecord, [SessionEventEntry])] in
            var byId: [String: [SessionEventEntry]] = [:]
            for e in try journal.sessionEventIndex() { byId[e.sessionId, default: []].append(e) }
            var out: [(SessionRecord, [SessionEventEntry])] = []
            for id in Set(byId.keys).union(sessions).sorted() {
                guard let r = try journal.session(id: id) else { continue }   // events of a session that is gone
                out.append((r, byId[id] ?? []))
            }
            return out
        }
    }

    public func task(id: String, _ done: @escaping StoreDone<TaskRecord?>) { run(done) { () throws(OrchestraError) in try journal.task(id: id) } }
    public func deadLetters(limit: Int, _ done: @escaping StoreDone<[TaskRecord]>) { run(done) { () throws(OrchestraError) in try journal.deadLetters(limit: limit) } }
    public func unfinishedTasks(_ done: @escaping StoreDone<[TaskRecord]>) { run(done) { () throws(OrchestraError) in try journal.unfinishedTasks() } }
    public func keySecret(id: String, _ done: @escaping StoreDone<[UInt8]?>) { run(done) { () throws(OrchestraError) in try journal.keySecret(id: id) } }
    public func keyAccount(id: String, _ done: @escaping StoreDone<KeyAccount?>) { run(done) { () throws(OrchestraError) in try journal.keyAccount(id: id) } }
    public func agentBinding(agentId: String, _ done: @escaping StoreDone<String?>) {
        run(done) { () throws(OrchestraError) in try journal.agentBinding(agentId: agentId) }
    }
    public func user(name: String, _ done: @escaping StoreDone<UserAccount?>) { run(done) { () throws(OrchestraError) in try journal.user(name: name)?.account } }

    public func accounts(_ done: @escaping StoreDone<(users: [UserAccount], keys: [KeyAccount])>) {
        run(done) { () throws(OrchestraError) in (try journal.userAccounts(), try journal.keyAccounts()) }
    }

    public func session(id: String, _ done: @escaping StoreDone<SessionRecord?>) { run(done) { () throws(OrchestraError) in try journal.session(id: id) } }

    public func sessionEventIndex(sessionId: String?, _ done: @escaping StoreDone<[SessionEventEntry]>) {
        run(done) { () throws(OrchestraError) in try journal.sessionEventIndex(sessionId: sessionId) }
    }

    public func sessionEvents(sessionId: String, after offset: Int64, _ done: @escaping StoreDone<[(offset: Int64, frame: [UInt8])]>) {
        run(done) { () throws(OrchestraError) in try journal.sessionEvents(sessionId: sessionId, after: offset) }
    }

    public func taskCounts(_ done: @escaping StoreDone<(byState: [TaskState: Int], dead: Int)>) {
        run(done) { () throws(OrchestraError) in (try journal.taskCounts(), try journal.deadCount()) }
    }

    public func changedElsewhere() -> Bool {
        guard let v = try? journal.dataVersion(), v != lastDataVersion else { return false }
        lastDataVersion = v
        return true
    }
}
