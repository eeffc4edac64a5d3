import Glibc
import Synchronization

/// The h2A message queue (include/orchestra.h, section QUEUE): non-blocking push with direct
/// hand-off to a waiting reader, four priority lanes (FIFO within a lane), a bound with a
/// backpressure policy, per-message TTL, close (drain, then `.closed`) and fail (`.failed` for
/// everyone), batch operations, a readiness eventfd and statistics.
///
/// Two mutexes, so that pushes and pops do not wait for each other. Producers append to an
/// intake ring under the producer mutex and publish its tail; whoever next takes the queue
/// mutex (pops, and every other operation) sorts the published entries into the lanes first.
/// Producers check room against a snapshot of the consumer side that can only overstate how
/// full the queue is, and fall back to taking both mutexes (producer, then queue: the only
/// order) when the snapshot says full, when a reader sleeps waiting (it is handed messages
/// under the queue mutex), when the readiness fd is in use, and after close or fail. The
/// handshakes are described at `PublishedTail` below.
///
/// A reader that finds the queue empty first polls for up to `spinNanos` (without any lock,
/// watching the published tail), then sleeps on its own condition variable; a message pushed
/// while it sleeps is handed to it directly. The poll time adapts: halved (down to 1/16) after a
/// poll that found nothing, doubled back after one that did, so polling fades out when writers
/// are slow or the CPUs are oversubscribed.
///
/// Thread-safe. Messages are stored as `Unmanaged<Message>` (+1) in rings on manually managed
/// memory, so push and pop do no ARC traffic and no allocation in steady state. A blocked
/// reader waits on its own condition variable (on its stack); blocked writers share one
/// condition variable that is signalled only when someone waits on it.
///
/// Drop handlers and async continuations are called after the mutexes are released.
public final class MessageQueue: @unchecked Sendable {
    public let capacity: Int
    public let policy: QueuePolicy
    public let pushTimeoutMs: Int64
    public let name: String
    /// How long a reader that finds the queue empty polls before it sleeps (0: never polls).
    public let spinNanos: UInt64

    /// What producers publish and consumers read without a lock, and the reverse, each in an
    /// object of its own (see `Intake`).
    private let published = PublishedTail()
    private let consumed = PublishedHead()
    private let gate = Gate()

    /// A blocked synchronous reader. Lives on the reader's stack while it waits.
    struct SyncWaiter {
        var cond: UnsafeMutablePointer<pthread_cond_t>
        var next: UnsafeMutablePointer<SyncWaiter>? = nil
        var prev: UnsafeMutablePointer<SyncWaiter>? = nil
        var entry: QueueEntry? = nil
        /// 0 waiting, 1 handed a message, 2 woken by close/fail, 3 timed out, 4 found a message
        /// before sleeping (take it).
        var state: UInt8 = 0
    }

    struct AsyncWaiter {
        var id: UInt64
        var cont: UnsafeContinuation<Message?, any Error>
    }

    /// All mutable state, behind the mutex, in one 64-byte-aligned allocation (so accesses need
    /// no dynamic exclusivity checks). The mutex and what every push and pop touches come first
    /// and share one cache line: producer and consumer threads pass it back and forth, and
    /// each extra line they both write costs another transfer per operation.
    struct State {
        var mutex = pthread_mutex_t()          // 40 bytes
        var depth = 0
        /// closed || failure != nil: one load for the fast paths.
        var shut = false
        var fdReadable = false
        var efd: Int32 = -1
        var blockedWriters: Int32 = 0
        /// Intake entries taken so far (the consumer's index; see `drainLocked`).
        var head = 0
        // -- end of the first cache line
        var syncHead: UnsafeMutablePointer<SyncWaiter>? = nil
        /// The other counters (the hot ones live in `ProducerSide` and `ConsumerSide`).
        var stats = QueueStats()
        var closed = false
        var failure: OrchestraError? = nil
        var failureCode: Int32 = 0
        var syncTail: UnsafeMutablePointer<SyncWaiter>? = nil
        var asyncWaiters: [AsyncWaiter] = []
        var nextWaiterId: UInt64 = 0
        /// Synchronous readers inside a pop that found the queue empty and wait (polling or
        /// asleep); see `waitingReaders`.
        var waitingReaders = 0
        /// How long the next reader polls (ns): halved after a poll that found nothing (the
        /// writer is slow, or not running because the CPUs are busy), doubled back up to
        /// `spinNanos` after one that did.
        var pollBudget: UInt64 = 0
        var dropHandler: (@Sendable (Message, DropReason) -> Void)? = nil
        var wait = Histogram()
    }

    /// The producers' state, behind the producer mutex (its first field), on cache lines of its
    /// own.
    struct ProducerSide {
        var mutex = pthread_mutex_t()
        /// Intake entries published so far.
        var tail = 0
        /// The consumer's (head, lanes depth) as last read: a snapshot that can only overstate
        /// how full the queue is, refreshed when it says there is no room.
        var seenHead = 0
        var seenDepth = 0
        var pushed: UInt64 = 0
        var handedOff: UInt64 = 0
    }

    struct ConsumerSide {
        var popped: UInt64 = 0
        /// Measured when the intake is sorted into the lanes: the queue only grows between two
        /// sortings, so the depth right after one is the largest since the one before.
        var depthHighWater: UInt64 = 0
        var wait = Histogram()
    }

    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let pmutex: UnsafeMutablePointer<pthread_mutex_t>
    /// The intake ring: producers append here under the producer mutex; consumers (under the
    /// queue mutex) move entries into the lanes. Power-of-two size.
    private let intake: UnsafeMutablePointer<QueueEntry>
    private let intakeMask: Int
    /// The four priority lanes (index = priority); these pointers never change, and the object
    /// that holds them is only read after init, so reaching them costs no shared-line traffic.
    private let lanes: UnsafeMutablePointer<LaneRing>
    private let prod: UnsafeMutablePointer<ProducerSide>
    private let cons: UnsafeMutablePointer<ConsumerSide>
    private let notFull: UnsafeMutablePointer<pthread_cond_t>
    private let condAttr: UnsafeMutablePointer<pthread_condattr_t>
    private let s: UnsafeMutablePointer<State>

    /// Makes a queue. Throws `.invalidArgument` for a negative capacity or a spin time outside
    /// 0...`QueueOptions.maxSpinMicroseconds`.
    public init(_ options: QueueOptions = QueueOptions()) throws(OrchestraError) {
        guard options.capacity >= 0 else {
            throw OrchestraError(.invalidArgument, "queue capacity \(options.capacity) is negative (0 means unbounded)")
        }
        guard (0...QueueOptions.maxSpinMicroseconds).contains(options.spinMicroseconds) else {
            throw OrchestraError(.invalidArgument, "spin time \(options.spinMicroseconds) us is outside 0...\(QueueOptions.maxSpinMicroseconds)")
        }
        capacity = options.capacity
        policy = options.policy
        pushTimeoutMs = options.pushTimeoutMs
        name = options.name
        spinNanos = MessageQueue.cpuCount > 1 ? UInt64(options.spinMicroseconds) &* 1000 : 0
        let raw = UnsafeMutableRawPointer.allocate(byteCount: MemoryLayout<State>.stride, alignment: 64)
        s = raw.bindMemory(to: State.self, capacity: 1)
        s.initialize(to: State())
        lanes = MessageQueue.allocateLines(LaneRing.self, count: 4)
        for l in 0..<4 { (lanes + l).initialize(to: LaneRing()) }
        prod = MessageQueue.allocateLines(ProducerSide.self, count: 1)
        prod.initialize(to: ProducerSide())
        pmutex = (UnsafeMutableRawPointer(prod) + MemoryLayout<ProducerSide>.offset(of: \ProducerSide.mutex)!)
            .assumingMemoryBound(to: pthread_mutex_t.self)
        var intakeSize = 16
        while intakeSize < Swift.min(options.capacity == 0 ? 1024 : options.capacity, 1024) { intakeSize <<= 1 }
        intake = MessageQueue.allocateLines(QueueEntry.self, count: intakeSize)
        intakeMask = intakeSize - 1
        cons = MessageQueue.allocateLines(ConsumerSide.self, count: 1)
        cons.initialize(to: ConsumerSide())
        s.pointee.pollBudget = spinNanos
        mutex = (UnsafeMutableRawPointer(s) + MemoryLayout<State>.offset(of: \State.mutex)!)
            .assumingMemoryBound(to: pthread_mutex_t.self)
        // Adaptive: a thread that finds the lock taken spins briefly before it sleeps. Critical
        // sections are short, and a batch holds the lock for a few microseconds at most, so a
        // contended push or pop usually gets the lock without a futex sleep and wake-up
        // (measured: batches of 256 went from 0.9x to 2.3x the C ring with it).
        var mattr = pthread_mutexattr_t()
        pthread_mutexattr_init(&mattr)
        pthread_mutexattr_settype(&mattr, Int32(PTHREAD_MUTEX_ADAPTIVE_NP))
        pthread_mutex_init(mutex, &mattr)
        pthread_mutex_init(pmutex, &mattr)
        pthread_mutexattr_destroy(&mattr)
        condAttr = .allocate(capacity: 1)
        condAttr.initialize(to: pthread_condattr_t())
        pthread_condattr_init(condAttr)
        pthread_condattr_setclock(condAttr, CLOCK_MONOTONIC)
        notFull = .allocate(capacity: 1)
        notFull.initialize(to: pthread_cond_t())
        pthread_cond_init(notFull, condAttr)
    }

    deinit {
        // No waiter can exist: every waiter holds a reference to the queue.
        drainLocked()
        var leftovers: [Unmanaged<Message>] = []
        for l in 0..<4 {
            let ring = lanes + l
            while ring.pointee.count > 0 { leftovers.append(ring.pointee.removeFirst().msg) }
            ring.pointee.deallocate()
        }
        lanes.deinitialize(count: 4)
        UnsafeMutableRawPointer(lanes).deallocate()
        pthread_mutex_destroy(pmutex)
        prod.deinitialize(count: 1)
        UnsafeMutableRawPointer(prod).deallocate()
        UnsafeMutableRawPointer(intake).deallocate()
        cons.deinitialize(count: 1)
        UnsafeMutableRawPointer(cons).deallocate()
        let handler = s.pointee.dropHandler
        if s.pointee.efd >= 0 { _ = Glibc.close(s.pointee.efd) }
        pthread_mutex_destroy(mutex)
        s.deinitialize(count: 1)
        UnsafeMutableRawPointer(s).deallocate()
        pthread_cond_destroy(notFull)
        notFull.deallocate()
        pthread_condattr_destroy(condAttr)
        condAttr.deallocate()
        for m in leftovers {
            handler?(m.takeUnretainedValue(), .closedOnFree)
            m.release()
        }
    }

    /// `count` values on whole cache lines of their own (64-byte aligned, size rounded up).
    static func allocateLines<T>(_: T.Type, count: Int) -> UnsafeMutablePointer<T> {
        let bytes = (MemoryLayout<T>.stride * count + 63) & ~63
        return UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64).bindMemory(to: T.self, capacity: count)
    }

    // MARK: Locking helpers

    /// The queue mutex: lanes, waiters, consumer side. Taking it also sorts what producers
    /// published into the lanes, so everything under it sees every published message.
    @inline(__always) private func lock() {
        pthread_mutex_lock(mutex)
        drainLocked()
    }

    /// Publishes the consumer's (lanes depth, head) for producers, then unlocks.
    @inline(__always) private func unlock() {
        consumed.depth.store(s.pointee.depth, ordering: .relaxed)
        consumed.head.store(s.pointee.head, ordering: .releasing)
        pthread_mutex_unlock(mutex)
    }

    /// The producer mutex. Lock order: producer mutex, then queue mutex.
    @inline(__always) private func plock() { pthread_mutex_lock(pmutex) }
    @inline(__always) private func punlock() { pthread_mutex_unlock(pmutex) }

    /// Moves what producers published into the lanes, in order (under the queue mutex).
    @inline(__always)
    private func drainLocked() {
        let t = published.tail.load(ordering: .acquiring)
        var h = s.pointee.head
        guard h != t else { return }
        let n = t &- h
        while h != t {
            let e = intake[h & intakeMask]
            lane(e.lane).pointee.append(e)
            h &+= 1
        }
        s.pointee.head = h
        s.pointee.depth &+= n
        if UInt64(s.pointee.depth) > cons.pointee.depthHighWater {
            cons.pointee.depthHighWater = UInt64(s.pointee.depth)
        }
    }

    /// Producer side, under the producer mutex: room for `want` more messages (0...want), from
    /// the intake's free slots and the capacity, using the consumer snapshot and refreshing it
    /// when it says there is none. The snapshot (head, lanes depth) overstates the occupancy
    /// `tail - head + depth`: consumers only move entries from the intake to the lanes (no
    /// change) or pop (smaller). A producer that adds to the lanes directly, holding both
    /// mutexes, sets the snapshot to the exact values.
    @inline(__always)
    private func roomP(_ want: Int) -> Int {
        var r = roomFromSnapshotP(want)
        if r < want {
            prod.pointee.seenHead = consumed.head.load(ordering: .acquiring)
            prod.pointee.seenDepth = consumed.depth.load(ordering: .relaxed)
            r = roomFromSnapshotP(want)
        }
        return r
    }

    @inline(__always)
    private func roomFromSnapshotP(_ want: Int) -> Int {
        let inIntake = prod.pointee.tail &- prod.pointee.seenHead
        var r = Swift.min(want, intakeMask &+ 1 &- inIntake)
        if capacity > 0 { r = Swift.min(r, capacity &- inIntake &- prod.pointee.seenDepth) }
        return Swift.max(r, 0)
    }

    /// Producer side: writes an entry into the intake (not yet visible to consumers).
    @inline(__always)
    private func stageP(_ m: Unmanaged<Message>, lane: Int, now: UInt64, hasTTL: Bool) {
        intake[prod.pointee.tail & intakeMask] = QueueEntry(msg: m, pushedAt: now, hasTTL: hasTTL, lane: lane)
        prod.pointee.tail &+= 1
    }

    /// Producer side: makes `k` staged entries visible and counts them; returns whether a reader
    /// may be asleep waiting for them (then the caller must `serveWaiters()`).
    @inline(__always)
    private func publishP(_ k: Int) -> Bool {
        published.tail.store(prod.pointee.tail, ordering: .releasing)
        prod.pointee.pushed &+= UInt64(k)
        // A reader registers as a sleeper, then looks at the tail; we store the tail, then look
        // for sleepers: with a full fence on both sides one of us sees the other.
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        return gate.sleepers.load(ordering: .relaxed) != 0
    }

    /// Hands published messages to sleeping readers (after a publish that saw some).
    private func serveWaiters() {
        var pending = Pending()
        lock()
        serveWaitersLocked(now: monotonicNanos(), pending: &pending)
        updateFD()
        unlock()
        if !pending.isEmpty { pending.run() }
    }

    /// Gives queued messages, oldest first, to waiting readers while there are both.
    private func serveWaitersLocked(now: UInt64, pending: inout Pending) {
        while s.pointee.depth > 0 && (s.pointee.syncHead != nil || !s.pointee.asyncWaiters.isEmpty) {
            guard let e = takeLocked(now: now, pending: &pending, record: false) else { break }
            if let w = s.pointee.syncHead {
                unlinkSync(w)
                w.pointee.entry = e
                w.pointee.state = 1
                pthread_cond_signal(w.pointee.cond)
            } else {
                let a = s.pointee.asyncWaiters.removeFirst()
                gate.sleepers.subtract(1, ordering: .sequentiallyConsistent)
                cons.pointee.popped &+= 1
                cons.pointee.wait.record(now > e.pushedAt ? now &- e.pushedAt : 0)
                pending.resume(.message(a.cont, e.msg))
            }
        }
    }

    /// Lane `l` (0...3, the priority).
    @inline(__always)
    private func lane(_ l: Int) -> UnsafeMutablePointer<LaneRing> { lanes + l }

    @inline(__always)
    private func laneCount(_ l: Int) -> Int { lanes[l].count }

    /// Work to do once the mutex is released: drop-handler calls and async resumptions.
    struct Pending {
        enum Resume {
            case message(UnsafeContinuation<Message?, any Error>, Unmanaged<Message>)
            case end(UnsafeContinuation<Message?, any Error>)
            case error(UnsafeContinuation<Message?, any Error>, any Error)
        }
        var drop0: (Unmanaged<Message>, DropReason)? = nil
        var moreDrops: [(Unmanaged<Message>, DropReason)] = []
        var handler: (@Sendable (Message, DropReason) -> Void)? = nil
        var resume0: Resume? = nil
        var moreResumes: [Resume] = []

        @inline(__always) var isEmpty: Bool { drop0 == nil && resume0 == nil }

        mutating func drop(_ m: Unmanaged<Message>, _ r: DropReason, _ h: (@Sendable (Message, DropReason) -> Void)?) {
            if drop0 == nil { drop0 = (m, r); handler = h } else { moreDrops.append((m, r)) }
        }

        mutating func resume(_ r: Resume) {
            if resume0 == nil { resume0 = r } else { moreResumes.append(r) }
        }

        /// Runs the work. Drop handlers get the message borrowed; the queue's reference is
        /// released afterwards.
        func run() {
            if let r = resume0 {
                Pending.perform(r)
                for r in moreResumes { Pending.perform(r) }
            }
            if let (m, r) = drop0 {
                handler?(m.takeUnretainedValue(), r)
                m.release()
                for (m, r) in moreDrops {
                    handler?(m.takeUnretainedValue(), r)
                    m.release()
                }
            }
        }

        private static func perform(_ r: Resume) {
            switch r {
            case .message(let c, let m): c.resume(returning: m.takeRetainedValue())
            case .end(let c): c.resume(returning: nil)
            case .error(let c, let e): c.resume(throwing: e)
            }
        }
    }

    /// Makes the eventfd readable iff the queue is non-empty, closed or failed.
    @inline(__always)
    private func updateFD() {
        if s.pointee.efd >= 0 { syncFD() }
    }

    private func syncFD() {
        let want = s.pointee.depth > 0 || s.pointee.closed || s.pointee.failure != nil
        guard want != s.pointee.fdReadable else { return }
        s.pointee.fdReadable = want
        var v: UInt64 = want ? 1 : 0
        if want {
            _ = write(s.pointee.efd, &v, 8)
        } else {
            _ = read(s.pointee.efd, &v, 8)
        }
    }

    /// CPUs online; polling is pointless on one.
    static let cpuCount = Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))

    /// Polls (without any lock) until producers publish past `t`, the queue is closed or
    /// failed, or `limitNs` passes. Returns whether something happened.
    private func pollForChange(from t: Int, limitNs: UInt64) -> Bool {
        let start = monotonicNanos()
        while true {
            for _ in 0..<64 where published.tail.load(ordering: .relaxed) != t
                || consumed.depth.load(ordering: .relaxed) != 0
                || gate.flags.load(ordering: .relaxed) & Gate.shut != 0 { return true }
            if monotonicNanos() &- start >= limitNs { return false }
        }
    }

    private var label: String { name.isEmpty ? "queue" : "queue \"\(name)\"" }

    // MARK: Push

    /// Pushes one message (the queue retains it). Throws `.closed`, `.failed`, or `.full`
    /// (reject policy, or block policy timed out). A message dropped by a drop policy counts as
    /// pushed (no error).
    public func push(_ msg: Message) throws(OrchestraError) {
        let m = Unmanaged.passRetained(msg)
        do {
            try push(unmanaged: m)
        } catch {
            m.release()
            throw error
        }
    }

    /// Pushes a +1 reference: on success (or a policy drop) the queue owns it; on error the
    /// caller still does.
    public func push(unmanaged m: Unmanaged<Message>) throws(OrchestraError) {
        try push(unmanaged: m, mayWait: true)
    }

    /// Pushes without ever waiting: a full queue with the block policy throws `.wouldBlock`
    /// (not counted as a rejection) instead of blocking. For producers that must not block,
    /// such as an I/O thread that holds the connection's reading and retries.
    public func tryPush(_ msg: Message) throws(OrchestraError) {
        let m = Unmanaged.passRetained(msg)
        do {
            try push(unmanaged: m, mayWait: false)
        } catch {
            m.release()
            throw error
        }
    }

    private func push(unmanaged m: Unmanaged<Message>, mayWait: Bool) throws(OrchestraError) {
        let now = monotonicNanos()
        let (lane, hasTTL) = MessageQueue.placement(m, now: now)
        plock()
        if gateOpen && roomP(1) == 1 {
            // Fast path: only the producer mutex; consumers sort it into the lanes.
            stageP(m, lane: lane, now: now, hasTTL: hasTTL)
            let wake = publishP(1)
            punlock()
            if wake { serveWaiters() }
            return
        }
        lock()
        var pending = Pending()
        serveWaitersLocked(now: now, pending: &pending)
        do {
            try pushLocked(m, now: now, pending: &pending, mayWait: mayWait)
        } catch {
            updateFD()
            unlock()
            punlock()
            if !pending.isEmpty { pending.run() }
            throw error
        }
        updateFD()
        unlock()
        punlock()
        if !pending.isEmpty { pending.run() }
    }

    /// Producer fast paths are allowed: open, no readiness fd, nobody asleep waiting.
    @inline(__always)
    private var gateOpen: Bool {
        gate.flags.load(ordering: .relaxed) == 0 && gate.sleepers.load(ordering: .relaxed) == 0
    }

    /// Pushes `n` messages taking the lock once; `at(i)` gives the i-th +1 reference (nil is an
    /// invalid argument). Returns how many were taken; stops at the first failure, reporting it
    /// (the failed message and those after it stay with the caller).
    public func pushBatch(count n: Int, _ at: (Int) -> Unmanaged<Message>?) -> (accepted: Int, error: OrchestraError?) {
        guard n > 0 else { return (0, nil) }
        let now = monotonicNanos()
        var accepted = 0
        plock()
        if gateOpen && pthread_mutex_trylock(mutex) == 0 {
            // The queue mutex is free: append straight to the lanes (no intake copy), exact
            // room.
            drainLocked()
            if gate.flags.load(ordering: .relaxed) == 0 && s.pointee.syncHead == nil && s.pointee.asyncWaiters.isEmpty {
                let room = capacity == 0 ? n : Swift.min(n, capacity &- s.pointee.depth)
                var k = 0
                while k < room {
                    guard let mk = at(k) else { break }
                    let (l, hasTTL) = MessageQueue.placement(mk, now: now)
                    lane(l).pointee.append(QueueEntry(msg: mk, pushedAt: now, hasTTL: hasTTL))
                    k &+= 1
                }
                accepted = k
                s.pointee.depth &+= k
                prod.pointee.pushed &+= UInt64(k)
                if UInt64(s.pointee.depth) > cons.pointee.depthHighWater {
                    cons.pointee.depthHighWater = UInt64(s.pointee.depth)
                }
                // The lanes grew without the intake: the producers' snapshot must count it
                // (holding both mutexes, the exact values).
                prod.pointee.seenHead = s.pointee.head
                prod.pointee.seenDepth = s.pointee.depth
                if k == n { unlock(); punlock(); return (n, nil) }
            }
            unlock()
        }
        if accepted == 0 && gateOpen {
            // Fast path: stage what fits, publish once.
            let room = roomP(n)
            var k = 0
            while k < room {
                guard let mk = at(k) else { break }
                let (l, hasTTL) = MessageQueue.placement(mk, now: now)
                stageP(mk, lane: l, now: now, hasTTL: hasTTL)
                k &+= 1
            }
            accepted = k
            if k > 0 && publishP(k) {
                punlock()
                serveWaiters()
                plock()
            }
            if k == n { punlock(); return (n, nil) }
        }
        var pending = Pending()
        var err: OrchestraError? = nil
        lock()
        serveWaitersLocked(now: now, pending: &pending)
        while accepted < n {
            if gate.flags.load(ordering: .relaxed) == 0 && s.pointee.syncHead == nil && s.pointee.asyncWaiters.isEmpty {
                // Holding both mutexes with the intake just drained: the snapshot is exact; stage
                // what fits in bulk and sort it into the lanes at once.
                prod.pointee.seenHead = s.pointee.head
                prod.pointee.seenDepth = s.pointee.depth
                let room = roomFromSnapshotP(n &- accepted)
                if room > 0 {
                    var k = 0
                    var bad = false
                    while k < room {
                        guard let mk = at(accepted &+ k) else { bad = true; break }
                        let (l, hasTTL) = MessageQueue.placement(mk, now: now)
                        stageP(mk, lane: l, now: now, hasTTL: hasTTL)
                        k &+= 1
                    }
                    published.tail.store(prod.pointee.tail, ordering: .releasing)
                    drainLocked()
                    prod.pointee.pushed &+= UInt64(k)
                    accepted &+= k
                    if bad {
                        err = OrchestraError(.invalidArgument, "message \(accepted) of the batch is NULL")
                        break
                    }
                    continue
                }
            }
            guard let m = at(accepted) else {
                err = OrchestraError(.invalidArgument, "message \(accepted) of the batch is NULL")
                break
            }
            do {
                try pushLocked(m, now: now, pending: &pending)
            } catch {
                err = error
                break
            }
            accepted += 1
        }
        updateFD()
        unlock()
        punlock()
        if !pending.isEmpty { pending.run() }
        return (accepted, err)
    }

    /// Pushes messages (retained by the queue); returns how many were taken and the error that
    /// stopped the batch, if any.
    public func pushBatch(_ msgs: [Message]) -> (accepted: Int, error: OrchestraError?) {
        let r = pushBatch(count: msgs.count) { i in Unmanaged.passRetained(msgs[i]) }
        // The reference made for the message that failed was not taken.
        if r.error != nil, r.accepted < msgs.count {
            Unmanaged.passUnretained(msgs[r.accepted]).release()
        }
        return r
    }

    /// The lane of a message and whether it has a TTL (read from the message without the lock:
    /// a message is not mutated while it is pushed or queued).
    @inline(__always)
    static func placement(_ m: Unmanaged<Message>, now: UInt64) -> (lane: Int, hasTTL: Bool) {
        m._withUnsafeGuaranteedRef { (Int($0.effectivePriority.rawValue), $0.ttl != nil) }
    }

    /// Queues a message with both mutexes held (the slow path; the caller checked that there is
    /// room): through the intake like the fast path, so polling readers see it, then sorted into
    /// its lane at once.
    private func enqueueLocked(_ m: Unmanaged<Message>, lane: Int, now: UInt64, hasTTL: Bool) {
        stageP(m, lane: lane, now: now, hasTTL: hasTTL)
        published.tail.store(prod.pointee.tail, ordering: .releasing)
        drainLocked()
        prod.pointee.pushed &+= 1
    }

    private func checkOpen() throws(OrchestraError) {
        if let f = s.pointee.failure { throw f }
        if s.pointee.closed { throw OrchestraError(.closed, "\(label) is closed") }
    }

    /// Under the lock. May wait on notFull (block policy), releasing the lock meanwhile.
    private func pushLocked(_ m: Unmanaged<Message>, now: UInt64, pending: inout Pending, mayWait: Bool = true) throws(OrchestraError) {
        var waited = false
        var deadline: timespec? = nil
        while true {
            try checkOpen()
            // Direct hand-off to a waiting reader (readers wait only while the queue is empty).
            if let w = s.pointee.syncHead {
                unlinkSync(w)
                w.pointee.entry = QueueEntry(msg: m, pushedAt: now, hasTTL: false)
                w.pointee.state = 1
                pthread_cond_signal(w.pointee.cond)
                prod.pointee.pushed &+= 1
                prod.pointee.handedOff &+= 1
                return
            }
            if !s.pointee.asyncWaiters.isEmpty {
                let a = s.pointee.asyncWaiters.removeFirst()
                gate.sleepers.subtract(1, ordering: .sequentiallyConsistent)
                prod.pointee.pushed &+= 1
                prod.pointee.handedOff &+= 1
                cons.pointee.popped &+= 1
                cons.pointee.wait.record(0)
                pending.resume(.message(a.cont, m))
                return
            }
            if capacity == 0 || s.pointee.depth < capacity { break }
            switch policy {
            case .reject:
                s.pointee.stats.rejected &+= 1
                throw OrchestraError(.full, "\(label) is full (capacity \(capacity), policy reject)")
            case .dropNewest:
                prod.pointee.pushed &+= 1
                s.pointee.stats.droppedOverflow &+= 1
                pending.drop(m, .overflow, s.pointee.dropHandler)
                return
            case .dropOldest:
                let prio = Int(m._withUnsafeGuaranteedRef { $0.effectivePriority.rawValue })
                var victimLane = -1
                for l in 0...prio where laneCount(l) > 0 { victimLane = l; break }
                s.pointee.stats.droppedOverflow &+= 1
                if victimLane < 0 {
                    prod.pointee.pushed &+= 1
                    pending.drop(m, .overflow, s.pointee.dropHandler)
                    return
                }
                let victim = lane(victimLane).pointee.removeFirst()
                s.pointee.depth -= 1
                pending.drop(victim.msg, .overflow, s.pointee.dropHandler)
            case .block:
                if !mayWait {
                    throw OrchestraError(.wouldBlock, "\(label) is full (capacity \(capacity)); not waiting")
                }
                if pushTimeoutMs == 0 {
                    s.pointee.stats.rejected &+= 1
                    throw OrchestraError(.full, "\(label) is full (capacity \(capacity), policy block, push timeout 0)")
                }
                if !waited {
                    waited = true
                    s.pointee.stats.blockedPushes &+= 1
                    if pushTimeoutMs > 0 { deadline = MessageQueue.deadline(afterMs: pushTimeoutMs) }
                }
                s.pointee.blockedWriters += 1
                var timedOut = false
                // Let other producers (and close) in while we wait; take both mutexes again in
                // order afterwards.
                punlock()
                if var d = deadline {
                    timedOut = pthread_cond_timedwait(notFull, mutex, &d) == ETIMEDOUT
                } else {
                    pthread_cond_wait(notFull, mutex)
                }
                s.pointee.blockedWriters -= 1
                unlock()
                plock()
                lock()
                serveWaitersLocked(now: now, pending: &pending)
                if timedOut && s.pointee.failure == nil && !s.pointee.closed
                    && s.pointee.syncHead == nil && s.pointee.asyncWaiters.isEmpty
                    && s.pointee.depth >= capacity {
                    s.pointee.stats.rejected &+= 1
                    throw OrchestraError(.full, "\(label) stayed full for \(pushTimeoutMs) ms (capacity \(capacity), policy block)")
                }
                continue
            }
            if s.pointee.depth < capacity { break }
        }
        let (lane, hasTTL) = MessageQueue.placement(m, now: now)
        enqueueLocked(m, lane: lane, now: now, hasTTL: hasTTL)
    }

    // MARK: Pop

    /// The highest non-empty lane; the queue must not be empty.
    @inline(__always)
    private func topLane() -> Int {
        var l = 3
        while l > 0 && laneCount(l) == 0 { l -= 1 }
        return l
    }

    /// The fast path of pop: takes up to `max` messages, in order, while the next one is live
    /// (not expired: expiry needs the slow path's drop handling). Not for a failed queue.
    /// Works a lane at a time: no higher lane can fill while the lock is held.
    @inline(__always)
    private func takeLiveLocked(max: Int, now: UInt64, _ sink: (Int, Unmanaged<Message>) -> Void) -> Int {
        var n = 0
        cons.pointee.wait.withRecorder { rec in
            // Messages pushed together share a push time: record each run of equal waits once.
            var runPushedAt = UInt64.max
            var run: UInt64 = 0
            while n < max && s.pointee.depth > 0 {
                let ring = lane(topLane())
                let start = n
                while n < max && ring.pointee.count > 0 {
                    let head = ring.pointee.first
                    guard head.deadline > now else { break }
                    ring.pointee.dropFirst()
                    if head.pushedAt == runPushedAt {
                        run &+= 1
                    } else {
                        if run > 0 { rec.record(now > runPushedAt ? now &- runPushedAt : 0, count: run) }
                        runPushedAt = head.pushedAt
                        run = 1
                    }
                    sink(n, head.msg)
                    n &+= 1
                }
                if n == start { break }   // an expired message at the head
                s.pointee.depth &-= n &- start
            }
            if run > 0 { rec.record(now > runPushedAt ? now &- runPushedAt : 0, count: run) }
        }
        cons.pointee.popped &+= UInt64(n)
        return n
    }

    /// Wakes blocked writers after `n` pops made room.
    @inline(__always)
    private func madeRoomLocked(_ n: Int) {
        if s.pointee.blockedWriters > 0 {
            if n == 1 { pthread_cond_signal(notFull) } else { pthread_cond_broadcast(notFull) }
        }
    }

    /// Takes the next live message under the lock (highest lane first), skipping expired ones.
    @inline(__always)
    private func takeLocked(now: UInt64, pending: inout Pending, record: Bool = true) -> QueueEntry? {
        while s.pointee.depth > 0 {
            let l = topLane()
            let e = lane(l).pointee.removeFirst()
            s.pointee.depth -= 1
            if e.deadline <= now {
                s.pointee.stats.expired &+= 1
                pending.drop(e.msg, .expired, s.pointee.dropHandler)
                continue
            }
            if record {
                cons.pointee.popped &+= 1
                cons.pointee.wait.record(now > e.pushedAt ? now &- e.pushedAt : 0)
            }
            return e
        }
        return nil
    }

    private func unlinkSync(_ w: UnsafeMutablePointer<SyncWaiter>) {
        gate.sleepers.subtract(1, ordering: .sequentiallyConsistent)
        let p = w.pointee.prev, n = w.pointee.next
        if let p { p.pointee.next = n } else { s.pointee.syncHead = n }
        if let n { n.pointee.prev = p } else { s.pointee.syncTail = p }
        w.pointee.next = nil
        w.pointee.prev = nil
    }

    static func deadline(afterMs ms: Int64) -> timespec? {
        // More than ~30 years is forever.
        guard ms < 1_000_000_000_000 else { return nil }
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        let total = Int(ts.tv_nsec) + Int(ms % 1000) * 1_000_000
        ts.tv_sec += Int(ms / 1000) + total / 1_000_000_000
        ts.tv_nsec = total % 1_000_000_000
        return ts
    }

    /// Pops up to `max` messages, waiting (per `timeoutMs`) only for the first; `sink(i, m)`
    /// receives each +1 reference, in order, under the queue lock (it must only store it).
    /// Timeout: 0 = try (`.wouldBlock` when empty), < 0 = forever, > 0 = ms (`.timedOut`).
    /// Throws `.closed` once a closed queue is drained, `.failed` after `fail`.
    public func popBatch(max: Int, timeoutMs: Int64, _ sink: (Int, Unmanaged<Message>) -> Void) throws(OrchestraError) -> Int {
        guard max > 0 else { throw OrchestraError(.invalidArgument, "pop batch size must be at least 1") }
        var now = monotonicNanos()
        lock()
        var n = 0
        if s.pointee.depth > 0 && (!s.pointee.shut || s.pointee.failure == nil) {
            n = takeLiveLocked(max: max, now: now, sink)
            if n > 0 && (n == max || s.pointee.depth == 0) {
                madeRoomLocked(n)
                if s.pointee.efd >= 0 { syncFD() }
                unlock()
                return n
            }
        }
        // Slow path: expired messages, waiting, close and fail.
        var pending = Pending()
        var err: OrchestraError? = nil
        var deadline: timespec? = nil
        var deadlineSet = false
        var polled = false
        outer: while true {
            if let f = s.pointee.failure { err = f; break }
            while n < max, let e = takeLocked(now: now, pending: &pending) {
                sink(n, e.msg)
                n += 1
            }
            if n > 0 { break }
            if s.pointee.closed { err = OrchestraError(.closed, "\(label) is closed and drained"); break }
            if timeoutMs == 0 { err = OrchestraError(.wouldBlock, "\(label) is empty"); break }
            if !deadlineSet {
                deadlineSet = true
                s.pointee.waitingReaders += 1
                if timeoutMs > 0 { deadline = MessageQueue.deadline(afterMs: timeoutMs) }
            }
            if !polled && s.pointee.pollBudget > 0 {
                // Poll for a short while before sleeping: on a busy queue the next message
                // usually arrives sooner than a sleep and wake-up would take.
                polled = true
                var limit = s.pointee.pollBudget
                if timeoutMs > 0 { limit = Swift.min(limit, UInt64(timeoutMs) &* 1_000_000) }
                let t = s.pointee.head   // everything published up to here is in the lanes
                unlock()
                let found = pollForChange(from: t, limitNs: limit)
                now = monotonicNanos()
                lock()
                let b = s.pointee.pollBudget
                s.pointee.pollBudget = found ? Swift.min(spinNanos, b &* 2) : Swift.max(b / 2, spinNanos / 16)
                continue outer
            }
            // Wait as a synchronous waiter with our own condition variable.
            let (state, entry) = withUnsafeTemporaryAllocation(of: pthread_cond_t.self, capacity: 1) { cb -> (UInt8, QueueEntry?) in
                withUnsafeTemporaryAllocation(of: SyncWaiter.self, capacity: 1) { wb -> (UInt8, QueueEntry?) in
                    guard let cond = cb.baseAddress, let w = wb.baseAddress else { return (3, nil) }
                    cond.initialize(to: pthread_cond_t())
                    pthread_cond_init(cond, condAttr)
                    w.initialize(to: SyncWaiter(cond: cond))
                    w.pointee.prev = s.pointee.syncTail
                    if let t = s.pointee.syncTail { t.pointee.next = w } else { s.pointee.syncHead = w }
                    s.pointee.syncTail = w
                    // Registered as a sleeper: a producer publishing from now on will come to
                    // serve us. Look once more for one that published before (full fence on
                    // both sides, see publishP).
                    gate.sleepers.add(1, ordering: .sequentiallyConsistent)
                    atomicMemoryFence(ordering: .sequentiallyConsistent)
                    drainLocked()
                    if s.pointee.depth > 0 {
                        unlinkSync(w)
                        w.pointee.state = 4
                    }
                    while w.pointee.state == 0 {
                        if var d = deadline {
                            if pthread_cond_timedwait(cond, mutex, &d) == ETIMEDOUT && w.pointee.state == 0 {
                                unlinkSync(w)
                                // A message published just now is still ours to take.
                                drainLocked()
                                w.pointee.state = s.pointee.depth > 0 ? 4 : 3
                                break
                            }
                        } else {
                            pthread_cond_wait(cond, mutex)
                        }
                    }
                    let r = (w.pointee.state, w.pointee.entry)
                    w.deinitialize(count: 1)
                    pthread_cond_destroy(cond)
                    cond.deinitialize(count: 1)
                    return r
                }
            }
            switch state {
            case 1:
                guard let e = entry else { continue outer }
                now = monotonicNanos()
                cons.pointee.popped &+= 1
                cons.pointee.wait.record(now > e.pushedAt ? now &- e.pushedAt : 0)
                sink(0, e.msg)
                n = 1
                continue outer   // take more from the ring if any arrived meanwhile
            case 2, 4:
                continue outer   // closed or failed: report it; or a message to take
            default:
                err = OrchestraError(.timedOut, "no message in \(label) within \(timeoutMs) ms")
                break outer
            }
        }
        if deadlineSet { s.pointee.waitingReaders -= 1 }
        if n > 0 && s.pointee.blockedWriters > 0 {
            madeRoomLocked(n)
        } else if !pending.isEmpty && s.pointee.blockedWriters > 0 {
            pthread_cond_broadcast(notFull)   // expired messages made room
        }
        updateFD()
        unlock()
        if !pending.isEmpty { pending.run() }
        if let err, n == 0 { throw err }
        return n
    }

    /// Pops one message as a +1 reference (the caller releases it). See `popBatch`.
    public func popUnmanaged(timeoutMs: Int64 = -1) throws(OrchestraError) -> Unmanaged<Message> {
        let now = monotonicNanos()
        var out: Unmanaged<Message>? = nil
        lock()
        if s.pointee.depth > 0 && (!s.pointee.shut || s.pointee.failure == nil)
            && takeLiveLocked(max: 1, now: now, { _, m in out = m }) == 1, let out {
            madeRoomLocked(1)
            if s.pointee.efd >= 0 { syncFD() }
            unlock()
            return out
        }
        unlock()
        _ = try popBatch(max: 1, timeoutMs: timeoutMs) { _, m in out = m }
        guard let out else { throw OrchestraError(.internal, "pop returned no message") }
        return out
    }

    /// Pops one message. Timeout: 0 = try (`.wouldBlock`), < 0 = forever, > 0 = ms
    /// (`.timedOut`). Throws `.closed` once a closed queue is drained, `.failed` after `fail`.
    public func pop(timeoutMs: Int64 = -1) throws(OrchestraError) -> Message {
        try popUnmanaged(timeoutMs: timeoutMs).takeRetainedValue()
    }

    /// Pops up to `max` messages, waiting only for the first.
    public func popBatch(max: Int, timeoutMs: Int64 = -1) throws(OrchestraError) -> [Message] {
        var out: [Message] = []
        out.reserveCapacity(Swift.min(max, 1024))
        _ = try popBatch(max: max, timeoutMs: timeoutMs) { _, m in out.append(m.takeRetainedValue()) }
        return out
    }

    // MARK: Close and fail

    /// No more pushes (`.closed`); readers drain what is left, then get `.closed`. Wakes every
    /// blocked reader and writer. Idempotent.
    public func close() {
        var pending = Pending()
        plock()
        lock()
        if !s.pointee.closed {
            s.pointee.closed = true
            s.pointee.shut = true
            gate.flags.bitwiseOr(Gate.shut, ordering: .sequentiallyConsistent)
            wakeAllLocked(&pending, error: nil)
        }
        updateFD()
        unlock()
        punlock()
        pending.run()
    }

    /// Puts the queue into an error state: pushes and pops throw `.failed` with `message`.
    /// Wakes every blocked reader and writer. The first failure wins. `code` is kept for the
    /// caller (`failureCode`).
    public func fail(code: Int32 = ErrorCode.failed.rawValue, message: String) {
        var pending = Pending()
        plock()
        lock()
        if s.pointee.failure == nil {
            let e = OrchestraError(.failed, message)
            s.pointee.failure = e
            s.pointee.failureCode = code
            s.pointee.shut = true
            gate.flags.bitwiseOr(Gate.shut, ordering: .sequentiallyConsistent)
            wakeAllLocked(&pending, error: e)
        }
        updateFD()
        unlock()
        punlock()
        pending.run()
    }

    private func wakeAllLocked(_ pending: inout Pending, error: OrchestraError?) {
        while let w = s.pointee.syncHead {
            unlinkSync(w)
            w.pointee.state = 2
            pthread_cond_signal(w.pointee.cond)
        }
        for a in s.pointee.asyncWaiters {
            if let error { pending.resume(.error(a.cont, error)) } else { pending.resume(.end(a.cont)) }
        }
        gate.sleepers.subtract(s.pointee.asyncWaiters.count, ordering: .sequentiallyConsistent)
        s.pointee.asyncWaiters.removeAll()
        if s.pointee.blockedWriters > 0 { pthread_cond_broadcast(notFull) }
    }

    /// Whether `close()` was called.
    public var isClosed: Bool { lock(); defer { unlock() }; return s.pointee.closed }

    /// The failure set by `fail`, with its code, or nil.
    public var failure: (code: Int32, error: OrchestraError)? {
        lock(); defer { unlock() }
        guard let f = s.pointee.failure else { return nil }
        return (s.pointee.failureCode, f)
    }

    // MARK: Drop handler, fd, stats

    /// Sets (or clears) the handler called for every dropped message (overflow, expired,
    /// closed-on-free), outside the queue lock, with the message borrowed for the call.
    public func setDropHandler(_ handler: (@Sendable (Message, DropReason) -> Void)?) {
        lock()
        let old = s.pointee.dropHandler
        s.pointee.dropHandler = handler
        unlock()
        _ = old   // released here, outside the lock
    }

    /// The readiness eventfd (created on first call, owned by the queue): readable while the
    /// queue is non-empty, closed or failed. Do not read it yourself: pop.
    public func readinessFD() throws(OrchestraError) -> Int32 {
        // With the fd in use every push takes both mutexes, so the fd follows each change.
        plock()
        lock()
        defer { unlock(); punlock() }
        if s.pointee.efd < 0 {
            guard let f = eventfdFunction else {
                throw OrchestraError(.unsupported, "eventfd is not available on this system")
            }
            let fd = f(0, Int32(O_NONBLOCK | O_CLOEXEC))
            if fd < 0 {
                let e = errno
                throw OrchestraError(.io, "eventfd failed: \(String(cString: strerror(e)))")
            }
            s.pointee.efd = fd
            s.pointee.fdReadable = false
            gate.flags.bitwiseOr(Gate.fd, ordering: .sequentiallyConsistent)
            syncFD()
        }
        return s.pointee.efd
    }

    /// Readers waiting now in a pop because the queue was empty: synchronous ones polling or
    /// asleep, and asynchronous ones (for tests and diagnostics: a test can tell that a reader
    /// blocked instead of sleeping and hoping).
    public var waitingReaders: Int {
        lock(); defer { unlock() }
        return s.pointee.waitingReaders + s.pointee.asyncWaiters.count
    }

    /// How many readers wait now (for tests and diagnostics).
    var waiterCounts: (sync: Int, async: Int) {
        lock(); defer { unlock() }
        var n = 0
        var w = s.pointee.syncHead
        while let x = w { n += 1; w = x.pointee.next }
        return (n, s.pointee.asyncWaiters.count)
    }

    /// Messages queued now.
    public var depth: Int { lock(); defer { unlock() }; return s.pointee.depth }

    /// A consistent snapshot of the counters and the wait-time quantiles.
    public var stats: QueueStats {
        plock()
        lock()
        defer { unlock(); punlock() }
        var st = s.pointee.stats
        st.depth = UInt64(s.pointee.depth)
        st.pushed = prod.pointee.pushed
        st.handedOff = prod.pointee.handedOff
        st.depthHighWater = cons.pointee.depthHighWater
        st.popped = cons.pointee.popped
        let h = cons.pointee.wait
        st.waitCount = h.count
        st.waitSumNs = h.sum
        st.waitMaxNs = h.max
        st.waitP50Ns = h.quantile(0.5)
        st.waitP95Ns = h.quantile(0.95)
        st.waitP99Ns = h.quantile(0.99)
        return st
    }

    // MARK: Async

    /// The next message for an async reader: never blocks a thread. Returns nil once the queue
    /// is closed and drained; throws `.failed` after `fail`, `CancellationError` on cancellation.
    public func next() async throws -> Message? {
        let now = monotonicNanos()
        var pending = Pending()
        lock()
        if let f = s.pointee.failure { unlock(); throw f }
        if let e = takeLocked(now: now, pending: &pending) {
            if s.pointee.blockedWriters > 0 { pthread_cond_signal(notFull) }
            updateFD()
            unlock()
            if !pending.isEmpty { pending.run() }
            return e.msg.takeRetainedValue()
        }
        let closed = s.pointee.closed
        s.pointee.nextWaiterId &+= 1
        let id = s.pointee.nextWaiterId
        updateFD()
        unlock()
        if !pending.isEmpty { pending.run() }
        if closed { return nil }
        return try await withTaskCancellationHandler {
            try await withUnsafeThrowingContinuation { (c: UnsafeContinuation<Message?, any Error>) in
                self.registerAsync(id: id, c)
            }
        } onCancel: {
            self.cancelAsync(id: id)
        }
    }

    private func registerAsync(id: UInt64, _ c: UnsafeContinuation<Message?, any Error>) {
        let now = monotonicNanos()
        var pending = Pending()
        lock()
        if let f = s.pointee.failure {
            pending.resume(.error(c, f))
        } else if let e = takeLocked(now: now, pending: &pending) {
            if s.pointee.blockedWriters > 0 { pthread_cond_signal(notFull) }
            pending.resume(.message(c, e.msg))
        } else if s.pointee.closed {
            pending.resume(.end(c))
        } else if Task.isCancelled {
            pending.resume(.error(c, CancellationError()))
        } else {
            // Register as a sleeper, then look once more (see publishP).
            gate.sleepers.add(1, ordering: .sequentiallyConsistent)
            atomicMemoryFence(ordering: .sequentiallyConsistent)
            drainLocked()
            if let e = takeLocked(now: now, pending: &pending) {
                gate.sleepers.subtract(1, ordering: .sequentiallyConsistent)
                if s.pointee.blockedWriters > 0 { pthread_cond_signal(notFull) }
                pending.resume(.message(c, e.msg))
            } else {
                s.pointee.asyncWaiters.append(AsyncWaiter(id: id, cont: c))
            }
        }
        updateFD()
        unlock()
        pending.run()
    }

    private func cancelAsync(id: UInt64) {
        var pending = Pending()
        lock()
        if let i = s.pointee.asyncWaiters.firstIndex(where: { $0.id == id }) {
            let a = s.pointee.asyncWaiters.remove(at: i)
            gate.sleepers.subtract(1, ordering: .sequentiallyConsistent)
            pending.resume(.error(a.cont, CancellationError()))
        }
        unlock()
        pending.run()
    }
}

extension MessageQueue: AsyncSequence {
    public typealias Element = Message

    public struct AsyncIterator: AsyncIteratorProtocol {
        let queue: MessageQueue
        public mutating func next() async throws -> Message? {
            try await queue.next()
        }
    }

    /// Iterating pops: several iterators (or tasks) share the messages, each gets different ones.
    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(queue: self) }
}

// The queue's lock-free handshakes, each in an object of its own, padded so that what one side
// writes often does not share a cache line with what the other side reads:
//
// - Producers append to the intake under the producer mutex and publish `PublishedTail.tail`
//   (release). Consumers, under the queue mutex, read it (acquire) and sort the new entries into
//   the lanes (`drainLocked`). So a push never waits for a pop, nor a pop for a push.
// - Consumers publish (lanes depth, then head: release) on unlock; producers read head
//   (acquire), then depth, and get a snapshot that can only overstate how full the queue is.
// - `Gate.flags` turns producer fast paths off (closed or failed, readiness fd in use: then every
//   push takes both mutexes); `Gate.sleepers` counts readers asleep waiting, who must be served
//   under the queue mutex (a reader adds itself, fences, and looks again; a producer publishes,
//   fences, and looks at the count).

final class PublishedTail: Sendable {
    let tail = Atomic<Int>(0)
    private let padding: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0)
}

final class PublishedHead: Sendable {
    let head = Atomic<Int>(0)
    let depth = Atomic<Int>(0)
    private let padding: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0)
}

final class Gate: Sendable {
    static let shut: UInt32 = 1
    static let fd: UInt32 = 2
    let flags = Atomic<UInt32>(0)
    let sleepers = Atomic<Int>(0)
    private let padding: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0)
}

/// glibc's eventfd(2), looked up once (the Glibc module does not export sys/eventfd.h).
private let eventfdFunction: (@convention(c) (UInt32, Int32) -> Int32)? = {
    guard let sym = dlsym(nil, "eventfd") else { return nil }
    return unsafeBitCast(sym, to: (@convention(c) (UInt32, Int32) -> Int32).self)
}()
