import OrchestraCore

/// A task attempt: the unit the hub assigns, leases and re-assigns.
public struct TaskKey: Hashable, Sendable, CustomStringConvertible {
    public let taskId: String
    public let attempt: UInt32
    public init(_ taskId: String, _ attempt: UInt32) { self.taskId = taskId; self.attempt = attempt }
    public var description: String { "task \(taskId) attempt \(attempt)" }
}

/// What an agent sends while it is not registered (connecting, waiting for agent.registered,
/// or reconnecting): encoded envelopes in send order, each tagged with the task attempt it is
/// about. After the next agent.registered the entries for tasks the hub still gives this agent
/// go out in order; the others are dropped (the hub re-assigned those tasks). Pure: no I/O,
/// not thread-safe (its owner locks).
public struct AgentOutbox: Sendable {
    public struct Entry: Sendable {
        public let task: TaskKey?
        public let bytes: [UInt8]
    }

    public let maxMessages: Int
    public let maxBytes: Int
    public private(set) var entries: [Entry] = []
    public private(set) var byteCount = 0

    public init(maxMessages: Int = 65_536, maxBytes: Int = 64 << 20) {
        self.maxMessages = maxMessages
        self.maxBytes = maxBytes
    }

    public var isEmpty: Bool { entries.isEmpty }
    public var count: Int { entries.count }

    /// Appends an envelope; throws `.full` past either limit (the outbox is unchanged).
    public mutating func append(_ bytes: [UInt8], task: TaskKey?) throws(OrchestraError) {
        guard entries.count < maxMessages, byteCount + bytes.count <= maxBytes else {
            throw OrchestraError(.full, "the agent's outbox is full (\(entries.count) messages, \(byteCount) bytes wait for agent.registered)")
        }
        entries.append(Entry(task: task, bytes: bytes))
        byteCount += bytes.count
    }

    /// The task attempts with messages waiting, in order of first appearance.
    public var tasks: [TaskKey] {
        var seen = Set<TaskKey>()
        var out: [TaskKey] = []
        for e in entries { if let t = e.task, seen.insert(t).inserted { out.append(t) } }
        return out
    }

    /// Empties the outbox and returns what may go out after agent.registered: every entry not
    /// about a task, and the entries of tasks whose id the hub listed in assignedTasks, in
    /// order. `dropped` counts the others.
    public mutating func release(assigned: Set<String>) -> (send: [Entry], dropped: Int) {
        var send: [Entry] = []
        var dropped = 0
        for e in entries {
            if let t = e.task, !assigned.contains(t.taskId) { dropped += 1 } else { send.append(e) }
        }
        removeAll()
        return (send, dropped)
    }

    public mutating func removeAll() {
        entries.removeAll()
        byteCount = 0
    }
}
