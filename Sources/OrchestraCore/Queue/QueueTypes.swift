/// What a bounded queue does with a push when it holds `capacity` messages.
public enum QueuePolicy: Int32, Sendable, CaseIterable {
    /// The producer waits up to `pushTimeoutMs` for room; `.full` when it stays full.
    case block = 0
    /// The push fails with `.full`; the message stays with the caller.
    case reject = 1
    /// The oldest message of the lowest non-empty lane whose priority is <= the incoming
    /// message's is dropped to make room; if there is none, the incoming message is dropped.
    case dropOldest = 2
    /// The incoming message is dropped (the push still succeeds: the queue took it).
    case dropNewest = 3
}

/// Why the queue let go of a message without delivering it. Every drop is counted and passed
/// to the drop handler.
public enum DropReason: Int32, Sendable, CaseIterable {
    /// The queue was full and the policy dropped a message.
    case overflow = 1
    /// The message's TTL ran out before anyone popped it.
    case expired = 2
    /// The message was still queued when the queue was freed.
    case closedOnFree = 3
}

/// Options of a `MessageQueue`.
public struct QueueOptions: Sendable {
    /// Maximum number of queued messages (all lanes together); 0 means unbounded.
    public var capacity: Int = 65536
    public var policy: QueuePolicy = .block
    /// How long a push waits for room under `.block`: < 0 forever, 0 not at all, > 0 ms.
    public var pushTimeoutMs: Int64 = -1
    /// A name for diagnostics and metrics.
    public var name: String = ""
    /// How long a reader that finds the queue empty polls for a message before it sleeps, in
    /// microseconds; 0 never polls. Polling is skipped on a single-CPU machine.
    public var spinMicroseconds: Int = QueueOptions.defaultSpinMicroseconds

    /// The default poll time: about what a sleep plus wake-up costs, so a reader never spends
    /// more than twice the best possible time on one wait.
    public static let defaultSpinMicroseconds = 20
    /// The largest accepted poll time (one second).
    public static let maxSpinMicroseconds = 1_000_000

    public init(capacity: Int = 65536, policy: QueuePolicy = .block, pushTimeoutMs: Int64 = -1,
                name: String = "", spinMicroseconds: Int = QueueOptions.defaultSpinMicroseconds) {
        self.capacity = capacity
        self.policy = policy
        self.pushTimeoutMs = pushTimeoutMs
        self.name = name
        self.spinMicroseconds = spinMicroseconds
    }
}

/// A consistent snapshot of a queue's counters.
public struct QueueStats: Sendable, Equatable {
    /// Messages accepted by push (including those handed off and those later dropped).
    public var pushed: UInt64 = 0
    /// Messages delivered to readers (including hand-offs).
    public var popped: UInt64 = 0
    /// Messages handed directly to a waiting reader without being queued.
    public var handedOff: UInt64 = 0
    /// Messages dropped because the queue was full (dropOldest / dropNewest).
    public var droppedOverflow: UInt64 = 0
    /// Messages dropped because their TTL ran out.
    public var expired: UInt64 = 0
    /// Messages released at free while still queued.
    public var droppedOnFree: UInt64 = 0
    /// Pushes refused with `.full` (reject policy, or block timed out).
    public var rejected: UInt64 = 0
    /// Pushes that had to wait for room (block policy).
    public var blockedPushes: UInt64 = 0
    public var depth: UInt64 = 0
    public var depthHighWater: UInt64 = 0
    /// Time from push to pop, in nanoseconds.
    public var waitP50Ns: UInt64 = 0
    public var waitP95Ns: UInt64 = 0
    public var waitP99Ns: UInt64 = 0
    public var waitMaxNs: UInt64 = 0
    public var waitCount: UInt64 = 0
    public var waitSumNs: UInt64 = 0

    public init() {}
}
