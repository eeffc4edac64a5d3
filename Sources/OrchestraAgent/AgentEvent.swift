import Glibc
import OrchestraCore
import Synchronization

/// The states of a `HubAgent` (values as the C ABI's orc_agent_state_t).
public enum AgentState: Int32, Sendable {
    /// Connecting, or connected and waiting for `agent.registered`.
    case connecting = 0
    case registered = 1
    /// The connection was lost; reconnecting with backoff.
    case disconnected = 2
    /// The hub refused the registration (AUTH_001, PARAM_001): stopped for good.
    case failed = 3
    /// Closed by the user.
    case closed = 4
}

/// What an event reports (values as the C ABI's orc_agent_event_kind_t).
public enum AgentEventKind: Int32, Sendable {
    case task = 1, cancel = 2, input = 3, state = 4, error = 5
    /// An agent of several hub URLs moves to the next one (`url`) because the connection to
    /// the previous one was lost or could not be made (`reason`). Never for one URL.
    case failover = 6
}

/// One event of a `HubAgent`; immutable.
public final class AgentEvent: @unchecked Sendable {
    public let kind: AgentEventKind
    public let taskId: String?
    /// The task attempt; 0 when the event has none.
    public let attempt: UInt32
    /// TASK: the assign's `task` object as JSON text.
    public let taskJSON: String?
    /// TASK: `task.parameters` as JSON text ("{}" when absent).
    public let parametersJSON: String?
    /// INPUT: the input text.
    public let input: String?
    /// STATE: the new state.
    public let state: AgentState
    /// STATE, CANCEL, ERROR: why.
    public let reason: String?
    /// The hub's error code ("AUTH_001"), when there is one.
    public let code: String?
    /// The payload of the hub's envelope as JSON text (nil for events the agent made).
    public let payloadJSON: String?
    /// STATE: the hub URL the new state is about (the connection's hub for connecting and
    /// registered, the hub lost or not reached for disconnected, the last one tried for failed
    /// and closed); FAILOVER: the URL the next attempt goes to. nil for the other kinds.
    public let url: String?
    /// The slot of the task attempt the event is about, while the attempt was in flight when
    /// the event was made (TASK, CANCEL, INPUT, ERROR); nil otherwise.
    let task: TaskSlot?

    public convenience init(kind: AgentEventKind, taskId: String? = nil, attempt: UInt32 = 0, taskJSON: String? = nil,
                            parametersJSON: String? = nil, input: String? = nil, state: AgentState = .closed,
                            reason: String? = nil, code: String? = nil, payloadJSON: String? = nil, url: String? = nil) {
        self.init(kind: kind, taskId: taskId, attempt: attempt, taskJSON: taskJSON, parametersJSON: parametersJSON,
                  input: input, state: state, reason: reason, code: code, payloadJSON: payloadJSON, url: url, task: nil)
    }

    init(kind: AgentEventKind, taskId: String? = nil, attempt: UInt32 = 0, taskJSON: String? = nil,
         parametersJSON: String? = nil, input: String? = nil, state: AgentState = .closed,
         reason: String? = nil, code: String? = nil, payloadJSON: String? = nil, url: String? = nil, task: TaskSlot?) {
        self.kind = kind
        self.taskId = taskId
        self.attempt = attempt
        self.taskJSON = taskJSON
        self.parametersJSON = parametersJSON
        self.input = input
        self.state = state
        self.reason = reason
        self.code = code
        self.payloadJSON = payloadJSON
        self.url = url
        self.task = task
    }

    /// What the user attached to the event's task attempt (`attach`), nil when nothing was
    /// or the event is about no attempt in flight.
    public var taskData: AnyObject? { task?.data }

    /// TASK events: attaches `data` to the task attempt, as libuv's `handle->data`: every later
    /// event about the attempt (CANCEL, INPUT, ERROR) carries it in `taskData`, so the user
    /// routes them to its own task object without a map of its own. The agent holds `data`
    /// while the attempt is in flight or an event about it is alive. Once per attempt: throws
    /// `.state` when something was attached already, `.invalidArgument` for another kind.
    public func attach(_ data: AnyObject) throws(OrchestraError) {
        guard kind == .task, let task else {
            throw OrchestraError(.invalidArgument, "data is attached to a task attempt through its TASK event")
        }
        guard task.set(data) else {
            throw OrchestraError(.state, "task \(taskId ?? "") attempt \(attempt) has its data already")
        }
    }
}

/// The user's data of one task attempt: made when the attempt is admitted, held by its
/// in-flight record and by every event about it; the data goes when the last of them does.
/// Set once (a compare-exchange), read from any thread.
final class TaskSlot: Sendable {
    /// An `Unmanaged` +1 reference to the data; 0 while none is set.
    private let bits = Atomic<UInt>(0)

    init() {}

    deinit {
        let b = bits.load(ordering: .acquiring)
        if b != 0 { Unmanaged<AnyObject>.fromOpaque(UnsafeRawPointer(bitPattern: b)!).release() }
    }

    /// False when data was set already (`data` is not kept).
    func set(_ data: AnyObject) -> Bool {
        let u = Unmanaged.passRetained(data)
        let b = UInt(bitPattern: u.toOpaque())
        guard bits.compareExchange(expected: 0, desired: b, ordering: .acquiringAndReleasing).exchanged else {
            u.release()
            return false
        }
        return true
    }

    var data: AnyObject? {
        let b = bits.load(ordering: .acquiring)
        guard b != 0 else { return nil }
        // The slot holds its reference until deinit, and the caller holds the slot.
        return Unmanaged<AnyObject>.fromOpaque(UnsafeRawPointer(bitPattern: b)!).takeUnretainedValue()
    }
}

/// The events of an agent in queue mode: a lock-protected FIFO with a blocking pop and a
/// readiness eventfd (readable while an event waits or the queue is closed), for event loops
/// such as Python's asyncio (add_reader).
final class AgentEventQueue: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let cond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var items: [AgentEvent] = []
    private var head = 0
    private var closed = false
    private var efd: Int32 = -1
    private var fdReadable = false

    init() {
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
        var attr = pthread_condattr_t()
        pthread_condattr_init(&attr)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        cond.initialize(to: pthread_cond_t())
        pthread_cond_init(cond, &attr)
        pthread_condattr_destroy(&attr)
    }

    deinit {
        if efd >= 0 { Glibc.close(efd) }
        pthread_cond_destroy(cond)
        pthread_mutex_destroy(mutex)
        cond.deallocate()
        mutex.deallocate()
    }

    private func withLock<R>(_ body: () throws(OrchestraError) -> R) throws(OrchestraError) -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }

    var count: Int { (try? withLock { items.count - head }) ?? 0 }

    /// Appends an event; false when the queue is closed (the event is dropped).
    @discardableResult
    func push(_ e: AgentEvent) -> Bool {
        let ok: Bool = (try? withLock {
            guard !closed else { return false }
            items.append(e)
            syncFD()
            pthread_cond_signal(cond)
            return true
        }) ?? false
        return ok
    }

    /// Pushes `e` (when given) and closes: readers get what is left, then `.closed`.
    func close(after e: AgentEvent? = nil) {
        try? withLock {
            guard !closed else { return }
            if let e { items.append(e) }
            closed = true
            syncFD()
            pthread_cond_broadcast(cond)
        }
    }

    /// Pops the oldest event. timeoutMs: 0 no wait (`.wouldBlock`), < 0 forever, > 0 that
    /// long (`.timedOut`). `.closed` once closed and drained.
    func pop(timeoutMs: Int64) throws(OrchestraError) -> AgentEvent {
        try withLock { () throws(OrchestraError) -> AgentEvent in
            var deadline = timespec()
            if timeoutMs > 0 {
                clock_gettime(CLOCK_MONOTONIC, &deadline)
                let ns = Int64(deadline.tv_nsec) + (timeoutMs % 1000) * 1_000_000
                deadline.tv_sec += Int(timeoutMs / 1000) + Int(ns / 1_000_000_000)
                deadline.tv_nsec = Int(ns % 1_000_000_000)
            }
            while head == items.count {
                if closed { throw OrchestraError(.closed, "the agent is closed and every event was popped") }
                if timeoutMs == 0 { throw OrchestraError(.wouldBlock, "no event waiting") }
                if timeoutMs < 0 {
                    pthread_cond_wait(cond, mutex)
                } else if pthread_cond_timedwait(cond, mutex, &deadline) == ETIMEDOUT, head == items.count, !closed {
                    throw OrchestraError(.timedOut, "no event within \(timeoutMs) ms")
                }
            }
            let e = items[head]
            head += 1
            if head == items.count {
                items.removeAll(keepingCapacity: true)
                head = 0
            } else if head >= 64 && head * 2 >= items.count {
                items.removeFirst(head)
                head = 0
            }
            syncFD()
            return e
        }
    }

    /// The readiness eventfd, made on first call and owned by the queue.
    func fd() throws(OrchestraError) -> Int32 {
        try withLock { () throws(OrchestraError) -> Int32 in
            if efd < 0 {
                guard let f = eventfdFunction else { throw OrchestraError(.unsupported, "eventfd is not available on this system") }
                let fd = f(0, Int32(O_NONBLOCK | O_CLOEXEC))
                if fd < 0 { throw OrchestraError(.io, "eventfd failed: \(String(cString: strerror(errno)))") }
                efd = fd
                fdReadable = false
                syncFD()
            }
            return efd
        }
    }

    /// Under the lock: the fd is readable iff an event waits or the queue is closed.
    private func syncFD() {
        guard efd >= 0 else { return }
        let want = head < items.count || closed
        guard want != fdReadable else { return }
        fdReadable = want
        var v: UInt64 = want ? 1 : 0
        if want { _ = write(efd, &v, 8) } else { _ = read(efd, &v, 8) }
    }
}

/// glibc's eventfd(2), looked up once (the Glibc module does not export sys/eventfd.h).
private let eventfdFunction: (@convention(c) (UInt32, Int32) -> Int32)? = {
    guard let sym = dlsym(nil, "eventfd") else { return nil }
    return unsafeBitCast(sym, to: (@convention(c) (UInt32, Int32) -> Int32).self)
}()
