import OrchestraCore

/// A completion of a `HubStore` call: the value, or why the journal could not give it.
public typealias StoreDone<T> = (Result<T, OrchestraError>) -> Void

/// What a running hub asks of its journal, on its I/O thread. Two backends implement it: SQLite
/// (`SQLiteStore`, the embedded default for one hub) and PostgreSQL (several hubs on one
/// database).
///
/// Writes join the batch the hub opened for the current loop turn (`beginBatch`), which
/// `commitBatch` ends: one transaction, all of its writes or none (group commit). Reads are
/// not part of a batch, but a read sees every write the hub made before it asked (SQLite: the
/// open transaction's; PostgreSQL: the read is sent after the batches opened before it).
///
/// Every completion is called exactly once, on the I/O thread, and the hub's code must not
/// assume when: SQLite runs the statement at once and calls it before the method returns
/// (its writes are then visible to the reads that follow, and still uncommitted); PostgreSQL
/// sends the batch's statements together when the batch is committed and calls the
/// completions of its writes once the transaction has committed, or with its error when it
/// failed. A completion that sends must therefore leave what it sends to the hub's ordering
/// of output (sent once the batch is committed), never assume the batch is still open.
public protocol HubStore: AnyObject {
    /// For logs and /health: `sqlite:/path` or the PostgreSQL URL without its password.
    var label: String { get }
    /// Whether a write's completion runs once its batch has committed (PostgreSQL), rather
    /// than when the statement ran, before the commit (SQLite).
    var completesAfterCommit: Bool { get }

    /// Since when (this process's clock, ms) the journal answers; nil while it is unreachable
    /// (PostgreSQL away: every call fails at once and the store reconnects). The reaper waits
    /// a hub timeout after it to judge other hubs, whose heartbeats could not be written either.
    var connectedSinceMs: Int64? { get }
    /// Whether the store reconnects after losing its database (a write that failed for that
    /// reason may be tried again once `onConnectionChange` says it is back).
    var reconnects: Bool { get }
    /// Told, on the I/O thread, when the database becomes unreachable (why) and when it
    /// answers again (nil). SQLite never calls it.
    var onConnectionChange: ((String?) -> Void)? { get set }
    /// Told the time of each round trip to the database (a commit, a read), microseconds.
    var onRoundTrip: ((UInt64) -> Void)? { get set }

    // MARK: batches (group commit)

    /// Opens the turn's batch (no effect when one is open).
    func beginBatch() throws(OrchestraError)
    /// Ends the batch: `done` with nil once committed, or the error (nothing of it happened).
    func commitBatch(_ done: @escaping (OrchestraError?) -> Void)

    // MARK: writes (inside a batch)

    /// Writes a new task; false when a task with its id exists (nothing written).
    func insertTask(_ t: TaskRecord, _ done: @escaping StoreDone<Bool>)
    /// Writes what assigning or re-queueing changes (state, attempt, agent, rejections, time).
    func updatePlacement(_ t: TaskRecord, _ done: @escaping StoreDone<Void>)
    /// Records a final outcome when `attempt` is the task's current one and it is unfinished;
    /// false (nothing written) otherwise.
    func finishTask(id: String, attempt: Int, state: TaskState, result: JSONValue?, error: String?, errorCode: String?,
                    dead: Bool, nowMs: Int64, _ done: @escaping StoreDone<Bool>)
    /// Puts a dead letter back in the queue; its record afterwards, or nil when it was not dead.
    func requeueDead(id: String, nowMs: Int64, _ done: @escaping StoreDone<TaskRecord?>)
    /// Remembers an agent registration's nonce; false when it was seen (a replay).
    func rememberNonce(keyId: String, nonce: String, timestampMs: Int64, nowMs: Int64, _ done: @escaping StoreDone<Bool>)
    /// Binds an agent id to a key unless bound; the key it is bound to afterwards.
    func bindAgent(agentId: String, keyId: String, nowMs: Int64, _ done: @escaping StoreDone<String>)
    /// Creates a session; false when it exists.
    func insertSession(id: String, owner: String, nowMs: Int64, _ done: @escaping StoreDone<Bool>)
    func setSessionHead(id: String, head: Int64, nowMs: Int64, _ done: @escaping StoreDone<Void>)
    func setSessionShares(id: String, users: [String], _ done: @escaping StoreDone<Void>)
    func appendSessionEvent(sessionId: String, offset: Int64, atMs: Int64, kind: SessionEventKind, frame: [UInt8],
                            _ done: @escaping StoreDone<Void>)
    func deleteSessionEvents(sessionId: String, _ range: ClosedRange<Int64>, kind: SessionEventKind?, _ done: @escaping StoreDone<Void>)

    // MARK: reads

    /// The setting `key`; when it has none, `value` is written (outside any batch) and given.
    /// Two hubs starting together both get the one that was written first.
    func setting(_ key: String, insertingIfAbsent value: String, _ done: @escaping StoreDone<String>)
    /// The sessions that have events in their replay log, and those of `sessions`, each with
    /// the index of its replay log.
    func replayLogs(including sessions: Set<String>, _ done: @escaping StoreDone<[(SessionRecord, [SessionEventEntry])]>)

    func task(id: String, _ done: @escaping StoreDone<TaskRecord?>)
    func deadLetters(limit: Int, _ done: @escaping StoreDone<[TaskRecord]>)
    func unfinishedTasks(_ done: @escaping StoreDone<[TaskRecord]>)
    /// The secret of an enabled key, nil for an unknown or disabled one.
    func keySecret(id: String, _ done: @escaping StoreDone<[UInt8]?>)
    func keyAccount(id: String, _ done: @escaping StoreDone<KeyAccount?>)
    func agentBinding(agentId: String, _ done: @escaping StoreDone<String?>)
    func user(name: String, _ done: @escaping StoreDone<UserAccount?>)
    func accounts(_ done: @escaping StoreDone<(users: [UserAccount], keys: [KeyAccount])>)
    func session(id: String, _ done: @escaping StoreDone<SessionRecord?>)
    func sessionEventIndex(sessionId: String?, _ done: @escaping StoreDone<[SessionEventEntry]>)
    func sessionEvents(sessionId: String, after offset: Int64, _ done: @escaping StoreDone<[(offset: Int64, frame: [UInt8])]>)
    /// Tasks by state and the dead letters (for /health; may be a recent reading).
    func taskCounts(_ done: @escaping StoreDone<(byState: [TaskState: Int], dead: Int)>)
    /// One page of the task list, newest first (`TaskQuery`, keyset paging).
    func tasks(_ q: TaskQuery, _ done: @escaping StoreDone<TaskPage>)
    /// A user and their password hash (POST /auth/login), nil when there is none.
    func login(name: String, _ done: @escaping StoreDone<(account: UserAccount, passwordHash: String)?>)

    // MARK: others' changes

    /// Whether another process (a CLI, another hub) changed the journal since the last call.
    /// Called by the hub's timer; cheap.
    func changedElsewhere() -> Bool
    /// Told at once, on the I/O thread, what another hub or command changed (PostgreSQL's
    /// notifications; SQLite has no other hub and never calls it).
    var onChange: ((StoreChanges) -> Void)? { get set }
    /// This hub's id (for the notifications meant for it).
    var hubId: String { get set }
    /// Tells the other hubs, with the open batch, what this batch changed (one notification
    /// per transaction; nothing on SQLite).
    func notify(_ what: Set<String>)

    // MARK: several hubs (Journal+Cluster.swift says what each does)

    func heartbeat(hubId: String, startedMs: Int64, nowMs: Int64, info: JSONValue, _ done: @escaping StoreDone<Void>)
    func stopHub(hubId: String, nowMs: Int64, _ done: @escaping StoreDone<Void>)
    /// The hubs, and the time to compare their heartbeats with.
    func hubs(_ done: @escaping StoreDone<(hubs: [HubRecord], nowMs: Int64)>)
    func claimTask(_ t: TaskRecord, expectedAttempt: Int, hubId: String, _ done: @escaping StoreDone<Bool>)
    func releaseTask(_ t: TaskRecord, attempt: Int, hubId: String, _ done: @escaping StoreDone<Bool>)
    func reserveQueued(hubId: String, capabilities: [String], agents: [String], limit: Int, nowMs: Int64, _ done: @escaping StoreDone<[TaskRecord]>)
    func unreserve(ids: [String], hubId: String, _ done: @escaping StoreDone<Void>)
    func adoptTasks(agentId: String, claims: [(taskId: String, attempt: Int64)], hubId: String, nowMs: Int64, _ done: @escaping StoreDone<[TaskRecord]>)
    func appendNumberedEvent(sessionId: String, atMs: Int64, kind: SessionEventKind, frame: [UInt8], hubId: String, _ done: @escaping StoreDone<Int64>)
    func sessionEvents(after cursors: [(sessionId: String, offset: Int64)], _ done: @escaping StoreDone<[(sessionId: String, offset: Int64, frame: [UInt8])]>)
    func sessionSnapshot(sessionId: String, after offset: Int64, _ done: @escaping StoreDone<SessionSnapshot?>)
    func deleteOwnEvents(sessionId: String, offsets: [Int64], _ done: @escaping StoreDone<Void>)
    func deleteEvents(before cutoffMs: Int64, _ done: @escaping StoreDone<Int>)
    /// Deletes at most `limit` finished tasks (succeeded, failed; not dead letters) whose last
    /// change is older than `cutoffMs`; how many.
    func deleteFinishedTasks(before cutoffMs: Int64, limit: Int, _ done: @escaping StoreDone<Int>)
    func post(toHub hubId: String, body: [UInt8], nowMs: Int64, _ done: @escaping StoreDone<Void>)
    func inbox(hubId: String, after seq: Int64, _ done: @escaping StoreDone<[(seq: Int64, body: [UInt8])]>)
    func trimInbox(hubId: String, upTo seq: Int64, _ done: @escaping StoreDone<Void>)
    func inboxHead(hubId: String, _ done: @escaping StoreDone<Int64>)
    func setPresence(agentId: String, hubId: String, online: Bool, info: JSONValue, nowMs: Int64, _ done: @escaping StoreDone<Void>)
    func presence(_ done: @escaping StoreDone<[AgentPresence]>)
    func reap(hubId: String, nowMs: Int64, timeoutMs: Int64, graceMs: Int64, _ done: @escaping StoreDone<ReapOutcome>)
    /// The outcomes a dead hub recorded but may not have published: tasks it finished in its
    /// last `windowMs` before its last heartbeat or after it, whose session holds no
    /// task.result for them. Claimed once in the cluster (the first hub to ask gets them; the
    /// claim lapses when the hub heartbeats again). SQLite has no other hub: always empty.
    func claimUnpublishedOutcomes(deadHubId: String, timeoutMs: Int64, windowMs: Int64, _ done: @escaping StoreDone<[TaskRecord]>)
}

/// Kinds of change another process made (`HubStore.onChange`).
public struct StoreChanges: OptionSet, Sendable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    /// Users or keys.
    public static let accounts = StoreChanges(rawValue: 1)
    /// Tasks queued (submitted, requeued).
    public static let tasks = StoreChanges(rawValue: 2)
    /// Session events.
    public static let events = StoreChanges(rawValue: 4)
    /// This hub's inbox.
    public static let inbox = StoreChanges(rawValue: 8)
    /// Agents came or went.
    public static let agents = StoreChanges(rawValue: 16)
    public static let all: StoreChanges = [.accounts, .tasks, .events, .inbox, .agents]
}
