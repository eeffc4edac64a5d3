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
    public var completesAfterCommit: Bool { false }

    /// Runs `body` and hands its result or error to `done`.
    @inline(__always)
    private func run<T>(_ done: StoreDone<T>, _ body: () throws(OrchestraError) -> T) {
        do { done(.success(try body())) } catch { done(.failure(error)) }
    }

    public func beginBatch() throws(OrchestraError) { try journal.beginBatch() }

    public func commitBatch(_ done: @escaping (OrchestraError?) -> Void) {
        let start = monotonicNanos()
        do { try journal.commitBatch() } catch { done(error); return }
        onRoundTrip?((monotonicNanos() &- start) / 1000)
        done(nil)
    }

    /// The file is always there: since the store was made.
    public let connectedSinceMs: Int64? = wallClockMillis()
    public var reconnects: Bool { false }
    public var onConnectionChange: ((String?) -> Void)? = nil
    /// Told each commit's time (the file's write and sync), microseconds.
    public var onRoundTrip: ((UInt64) -> Void)? = nil

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

    /// SQLite has one hub: nobody else to be told by or to tell.
    public var onChange: ((StoreChanges) -> Void)? = nil
    public var hubId = ""
    public func notify(_ what: Set<String>) {}

    public func heartbeat(hubId: String, startedMs: Int64, nowMs: Int64, info: JSONValue, _ done: @escaping StoreDone<Void>) {
        run(done) { () throws(OrchestraError) in try journal.heartbeat(hubId: hubId, startedMs: startedMs, nowMs: nowMs, info: info) }
    }
    public func stopHub(hubId: String, nowMs: Int64, _ done: @escaping StoreDone<Void>) {
        run(done) { () throws(OrchestraError) in try journal.stopHub(hubId: hubId, nowMs: nowMs) }
    }
    public func hubs(_ done: @escaping StoreDone<(hubs: [HubRecord], nowMs: Int64)>) {
        run(done) { () throws(OrchestraError) in (try journal.hubs(), wallClockMillis()) }
    }
    public func claimTask(_ t: TaskRecord, expectedAttempt: Int, hubId: String, _ done: @escaping StoreDone<Bool>) {
        run(done) { () throws(OrchestraError) in try journal.claimTask(t, expectedAttempt: expectedAttempt, hubId: hubId) }
    }
    public func releaseTask(_ t: TaskRecord, attempt: Int, hubId: String, _ done: @escaping StoreDone<Bool>) {
        run(done) { () throws(OrchestraError) in try journal.releaseTask(t, attempt: attempt, hubId: hubId) }
    }
    public func reserveQueued(hubId: String, capabilities: [String], agents: [String], limit: Int, nowMs: Int64, _ done: @escaping StoreDone<[TaskRecord]>) {
        run(done) { () throws(OrchestraError) in
            try journal.reserveQueued(hubId: hubId, capabilities: capabilities, agents: agents, limit: limit, nowMs: nowMs)
        }
    }
    public func unreserve(ids: [String], hubId: String, _ done: @escaping StoreDone<Void>) {
        run(done) { () throws(OrchestraError) in try journal.unreserve(ids: ids, hubId: hubId) }
    }
    public func adoptTasks(agentId: String, claims: [(taskId: String, attempt: Int64)], hubId: String, nowMs: Int64, _ done: @escaping StoreDone<[TaskRecord]>) {
        run(done) { () throws(OrchestraError) in try journal.adoptTasks(agentId: agentId, claims: claims, hubId: hubId, nowMs: nowMs) }
    }
    public func appendNumberedEvent(sessionId: String, atMs: Int64, kind: SessionEventKind, frame: [UInt8], hubId: String, _ done: @escaping StoreDone<Int64>) {
        run(done) { () throws(OrchestraError) in
            try journal.appendNumberedEvent(sessionId: sessionId, atMs: atMs, kind: kind, frame: frame, hubId: hubId)
        }
    }
    public func sessionEvents(after cursors: [(sessionId: String, offset: Int64)], _ done: @escaping StoreDone<[(sessionId: String, offset: Int64, frame: [UInt8])]>) {
        run(done) { () throws(OrchestraError) in try journal.sessionEvents(after: cursors) }
    }
    public func sessionSnapshot(sessionId: String, after offset: Int64, _ done: @escaping StoreDone<SessionSnapshot?>) {
        run(done) { () throws(OrchestraError) in try journal.sessionSnapshot(sessionId: sessionId, after: offset) }
    }
    public func deleteOwnEvents(sessionId: String, offsets: [Int64], _ done: @escaping StoreDone<Void>) {
        run(done) { () throws(OrchestraError) in try journal.deleteOwnEvents(sessionId: sessionId, offsets: offsets) }
    }
    public func deleteEvents(before cutoffMs: Int64, _ done: @escaping StoreDone<Int>) {
        run(done) { () throws(OrchestraError) in try journal.deleteEvents(before: cutoffMs) }
    }
    public func deleteFinishedTasks(before cutoffMs: Int64, limit: Int, _ done: @escaping StoreDone<Int>) {
        run(done) { () throws(OrchestraError) in try journal.deleteFinishedTasks(before: cutoffMs, limit: limit) }
    }
    public func post(toHub hubId: String, body: [UInt8], nowMs: Int64, _ done: @escaping StoreDone<Void>) {
        run(done) { () throws(OrchestraError) in try journal.post(toHub: hubId, body: body, nowMs: nowMs) }
    }
    public func inbox(hubId: String, after seq: Int64, _ done: @escaping StoreDone<[(seq: Int64, body: [UInt8])]>) {
        run(done) { () throws(OrchestraError) in try journal.inbox(hubId: hubId, after: seq) }
    }
    public func trimInbox(hubId: String, upTo seq: Int64, _ done: @escaping StoreDone<Void>) {
        run(done) { () throws(OrchestraError) in try journal.trimInbox(hubId: hubId, upTo: seq) }
    }
    public func inboxHead(hubId: String, _ done: @escaping StoreDone<Int64>) {
        run(done) { () throws(OrchestraError) in try journal.inboxHead(hubId: hubId) }
    }
    public func setPresence(agentId: String, hubId: String, online: Bool, info: JSONValue, nowMs: Int64, _ done: @escaping StoreDone<Void>) {
        run(done) { () throws(OrchestraError) in try journal.setPresence(agentId: agentId, hubId: hubId, online: online, info: info, nowMs: nowMs) }
    }
    public func presence(_ done: @escaping StoreDone<[AgentPresence]>) {
        run(done) { () throws(OrchestraError) in try journal.presence() }
    }
    public func claimUnpublishedOutcomes(deadHubId: String, timeoutMs: Int64, windowMs: Int64, _ done: @escaping StoreDone<[TaskRecord]>) {
        run(done) { () throws(OrchestraError) in [] }   // one hub: none other can die
    }
    public func reap(hubId: String, nowMs: Int64, timeoutMs: Int64, graceMs: Int64, _ done: @escaping StoreDone<ReapOutcome>) {
        run(done) { () throws(OrchestraError) in try journal.reap(hubId: hubId, nowMs: nowMs, timeoutMs: timeoutMs, graceMs: graceMs) }
    }

    public func changedElsewhere() -> Bool {
        guard let v = try? journal.dataVersion(), v != lastDataVersion else { return false }
        lastDataVersion = v
        return true
    }
}
