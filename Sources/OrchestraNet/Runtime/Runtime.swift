import CUV
import Glibc
import OrchestraCore
import Synchronization

/// A libuv loop on an I/O thread of its own (docs/abi.md, Threads), like a ZeroMQ context: all
/// socket work happens on that thread and nothing else touches its libuv handles.
///
/// Any thread may `post` work to it. Posts go through a lock-free multi-producer mailbox (a
/// Treiber stack the loop takes whole and reverses, so jobs run in the order they were posted)
/// and one `uv_async_t`; libuv coalesces wake-ups, so the loop drains the whole mailbox per
/// wake-up. Timers run their callbacks on the I/O thread.
///
/// `shutdown()` (also run by `deinit`) runs every job already accepted, stops every timer,
/// closes every handle, lets the loop finish and joins the thread. A post that races with it
/// either runs or is refused with `.closed`; none is lost.
///
/// An *embedded* runtime (`embedded: true`) has no thread of its own: the host's event loop
/// runs it, calling `runOnce()` whenever `backendFD` is readable or the timeout `runOnce`
/// returned has passed (libuv's `uv_backend_fd`/`uv_backend_timeout`). Whichever thread is
/// inside `runOnce` (or `runAsLoopThread`, or `shutdown`) is "the I/O thread" for that time; a lock
/// lets one thread at a time run the loop. Everything else is the same: other threads post to
/// it and their posts make `backendFD` readable. What it saves is the hand-off between threads
/// (two context switches per batch) for a host that is itself single-threaded, such as a
/// Python asyncio loop; what it costs is that nothing runs (no timers, no pongs) while the host
/// does not call `runOnce`.
public final class Runtime: @unchecked Sendable {
    /// One posted job: a node of the mailbox stack.
    final class Job {
        let run: () -> Void
        var next: Unmanaged<Job>? = nil
        init(_ run: @escaping () -> Void) { self.run = run }
    }

    /// A timer, owned by the I/O thread (created, fired and closed there).
    final class Timer {
        let id: UInt64
        let delayMs: UInt64
        let repeatMs: UInt64
        let fire: () -> Void
        let release: () -> Void
        var handle: UnsafeMutablePointer<uv_timer_t>? = nil
        init(id: UInt64, delayMs: UInt64, repeatMs: UInt64, fire: @escaping () -> Void, release: @escaping () -> Void) {
            self.id = id
            self.delayMs = delayMs
            self.repeatMs = repeatMs
            self.fire = fire
            self.release = release
        }
    }

    public let name: String
    /// The loop: only the I/O thread touches it (the transport creates its handles there, and
    /// so does the hub's PostgreSQL client, hence `package`).
    package let loop: UnsafeMutablePointer<uv_loop_t>
    private let wakeup: UnsafeMutablePointer<uv_async_t>
    private var thread = pthread_t()
    /// Mailbox top: the bit pattern of an `Unmanaged<Job>` (+1), 0 when empty.
    private let mailbox = Atomic<UInt>(0)
    /// Set once shutdown begins; posts are refused from then on.
    private let stopping = Atomic<Bool>(false)
    /// Posts between their `stopping` check and their wake-up call: shutdown waits for them, so
    /// no accepted job is left in the mailbox and no `uv_async_send` follows the handle's close.
    private let posting = Atomic<Int>(0)
    private let joined = Atomic<Bool>(false)
    /// Timers by id. Guarded by `timersLock` (ids are handed out and cancelled from any thread);
    /// the `uv_timer_t` handles themselves are only touched on the I/O thread.
    private let timersLock = PthreadMutex()
    private var timers: [UInt64: Timer] = [:]
    private var nextTimerId: UInt64 = 0
    /// Timers stopped from another thread once posting was closed: closeEverything disarms them.
    private var stoppedWhileStopping: [Timer] = []
    /// The I/O thread's `pthread_t` bits, set by that thread when it starts (embedded: by the
    /// thread running the loop, for that time; 0 otherwise).
    private let ioThread = Atomic<UInt>(0)
    /// No thread of its own: the host runs the loop with `runOnce` (see the type's comment).
    public let embedded: Bool
    /// Embedded: held by the thread running the loop (`runOnce`, `runAsLoopThread`, `shutdown`).
    private let loopLock = PthreadMutex()
    /// Embedded: the loop has ended (after `shutdown`). Guarded by `loopLock`.
    private var loopEnded = false
    /// Embedded: the runtime's reference to itself until its loop ends, as the I/O thread
    /// holds one (so `shutdown()` must be called; a shutdown begun inside a callback ends in a
    /// later `runOnce`, which must not find the runtime freed).
    private var selfRef: Unmanaged<Runtime>? = nil

    // I/O-thread state of the transport (Transport/RuntimeIO.swift): the read buffer shared by
    // every connection, the connections with frames to write this loop turn, and the endpoints
    // (servers, clients) to close at shutdown.
    var readBuffer: UnsafeMutableRawPointer? = nil
    var writeBufs: UnsafeMutablePointer<uv_buf_t>? = nil
    var writeBufsCapacity = 0
    var check: UnsafeMutablePointer<uv_check_t>? = nil
    var dirty: [Connection] = []
    var endpoints: [ObjectIdentifier: () -> Void] = [:]

    /// Starts the loop thread (embedded: sets the loop up for the host to run). Throws `.io`
    /// when libuv or the thread cannot be set up.
    public init(name: String = "orchestra-io", embedded: Bool = false) throws(OrchestraError) {
        self.name = name
        self.embedded = embedded
        loop = .allocate(capacity: 1)
        wakeup = .allocate(capacity: 1)
        var rc = uv_loop_init(loop)
        if rc != 0 {
            loop.deallocate()
            wakeup.deallocate()
            throw OrchestraError(.io, "uv_loop_init failed: \(Runtime.uvError(rc))")
        }
        rc = uv_async_init(loop, wakeup) { handle in
            guard let rt = Runtime.owner(of: handle) else { return }
            rt.drainMailbox()
        }
        if rc != 0 {
            uv_loop_close(loop)
            loop.deallocate()
            wakeup.deallocate()
            throw OrchestraError(.io, "uv_async_init failed: \(Runtime.uvError(rc))")
        }
        // The handles point back at the runtime without a reference: the runtime outlives them
        // (shutdown closes them and joins the thread before deinit frees anything).
        wakeup.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        loop.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        if embedded {
            selfRef = Unmanaged.passRetained(self)
            // One run puts the wake-up's descriptor in the epoll set: until then a post would
            // not make backendFD readable.
            uv_run(loop, UV_RUN_NOWAIT)
            return
        }
        // The I/O thread holds a reference until its loop ends: the runtime cannot go away under
        // a running loop. (So `shutdown()` must be called; the C ABI's orc_runtime_free does.)
        let ctx = Unmanaged.passRetained(self).toOpaque()
        rc = pthread_create(&thread, nil, { arg in
            let rt = Unmanaged<Runtime>.fromOpaque(arg!).takeRetainedValue()
            rt.ioThread.store(UInt(pthread_self()), ordering: .releasing)
            uv_run(rt.loop, UV_RUN_DEFAULT)
            return nil
        }, ctx)
        if rc != 0 {
            Unmanaged<Runtime>.fromOpaque(ctx).release()
            uv_close(UnsafeMutableRawPointer(wakeup).assumingMemoryBound(to: uv_handle_t.self), nil)
            uv_run(loop, UV_RUN_DEFAULT)
            uv_loop_close(loop)
            loop.deallocate()
            wakeup.deallocate()
            throw OrchestraError(.io, "cannot start the I/O thread: \(String(cString: strerror(rc)))")
        }
    }

    deinit {
        // Runs after the loop ended (the I/O thread held a reference until then), possibly on
        // the I/O thread itself when it dropped the last reference: then nobody joins it.
        if embedded {
            // No thread. (Only reached after the loop ended: until then selfRef holds it.)
        } else if pthread_equal(pthread_self(), thread) != 0 {
            pthread_detach(thread)
        } else if !joined.exchange(true, ordering: .acquiringAndReleasing) {
            pthread_join(thread, nil)
        }
        uv_loop_close(loop)
        loop.deallocate()
        wakeup.deallocate()
        readBuffer?.deallocate()
        writeBufs?.deallocate()
    }

    private static func owner(of handle: UnsafeMutablePointer<uv_async_t>?) -> Runtime? {
        guard let data = handle?.pointee.data else { return nil }
        return Unmanaged<Runtime>.fromOpaque(data).takeUnretainedValue()
    }

    static func uvError(_ rc: Int32) -> String {
        String(cString: uv_strerror(rc))
    }

    /// Whether the caller runs on this runtime's I/O thread.
    public var isIOThread: Bool {
        ioThread.load(ordering: .acquiring) == UInt(pthread_self())
    }

    // MARK: Posting

    /// Runs `job` on the I/O thread, after every job posted before it. Any thread. Throws
    /// `.closed` once shutdown has begun.
    public func post(_ job: @escaping () -> Void) throws(OrchestraError) {
        posting.add(1, ordering: .sequentiallyConsistent)
        defer { posting.subtract(1, ordering: .sequentiallyConsistent) }
        if stopping.load(ordering: .sequentiallyConsistent) {
            throw OrchestraError(.closed, "runtime \"\(name)\" is shutting down")
        }
        let node = Unmanaged.passRetained(Job(job))
        let bits = UInt(bitPattern: node.toOpaque())
        var top = mailbox.load(ordering: .relaxed)
        while true {
            node._withUnsafeGuaranteedRef { $0.next = top == 0 ? nil : Unmanaged<Job>.fromOpaque(UnsafeRawPointer(bitPattern: top)!) }
            let (done, seen) = mailbox.compareExchange(expected: top, desired: bits, ordering: .acquiringAndReleasing)
            if done { break }
            top = seen
        }
        uv_async_send(wakeup)
    }

    /// On the I/O thread: takes every posted job and runs them in posting order.
    private func drainMailbox() {
        while true {
            let top = mailbox.exchange(0, ordering: .acquiring)
            if top == 0 { break }
            // The stack is newest first: reverse it.
            var reversed: Unmanaged<Job>? = nil
            var cur: Unmanaged<Job>? = Unmanaged<Job>.fromOpaque(UnsafeRawPointer(bitPattern: top)!)
            while let c = cur {
                let next = c._withUnsafeGuaranteedRef { $0.next }
                c._withUnsafeGuaranteedRef { $0.next = reversed }
                reversed = c
                cur = next
            }
            while let c = reversed {
                let job = c.takeRetainedValue()
                reversed = job.next
                job.next = nil
                job.run()
            }
        }
        if stopping.load(ordering: .acquiring) { closeEverything() }
    }

    // MARK: Timers

    /// Starts a timer: `fire` runs on the I/O thread after `delayMs`, then every `repeatMs`
    /// (0: once). `release` runs on the I/O thread once the timer is gone (fired once, stopped,
    /// or at shutdown). Returns its id. Throws `.closed` once shutdown has begun.
    public func startTimer(delayMs: UInt64, repeatMs: UInt64, fire: @escaping () -> Void,
                           release: @escaping () -> Void = {}) throws(OrchestraError) -> UInt64 {
        let id: UInt64 = timersLock.withLock {
            nextTimerId &+= 1
            let t = Timer(id: nextTimerId, delayMs: delayMs, repeatMs: repeatMs, fire: fire, release: release)
            timers[t.id] = t
            return t.id
        }
        do {
            try post { [self] in self.armTimer(id) }
        } catch {
            _ = timersLock.withLock { timers.removeValue(forKey: id) }
            throw error
        }
        return id
    }

    /// Stops a timer. Its callback does not run after this returns, except a call already
    /// running on the I/O thread (when called from another thread). Throws `.notFound` for an
    /// unknown id or a one-shot timer that already fired.
    public func stopTimer(_ id: UInt64) throws(OrchestraError) {
        let t: Timer? = timersLock.withLock { timers.removeValue(forKey: id) }
        guard let t else { throw OrchestraError(.notFound, "no timer \(id) on runtime \"\(name)\"") }
        if isIOThread {
            disarm(t)
            return
        }
        do {
            try post { [self] in self.disarm(t) }
        } catch {
            // Shutting down: closeEverything disarms it (an armed handle left open would keep
            // the loop, and so shutdown, from ever ending).
            timersLock.withLock { stoppedWhileStopping.append(t) }
        }
    }

    private func armTimer(_ id: UInt64) {
        guard let t = timersLock.withLock({ timers[id] }) else { return }   // stopped meanwhile
        let h = UnsafeMutablePointer<uv_timer_t>.allocate(capacity: 1)
        uv_timer_init(loop, h)
        h.pointee.data = Unmanaged.passRetained(t).toOpaque()
        t.handle = h
        uv_timer_start(h, { h in
            guard let h, let data = h.pointee.data else { return }
            let t = Unmanaged<Runtime.Timer>.fromOpaque(data).takeUnretainedValue()
            let rt = Unmanaged<Runtime>.fromOpaque(h.pointee.loop.pointee.data).takeUnretainedValue()
            if t.repeatMs == 0 {
                // A one-shot timer is gone once it fires.
                let stillThere = rt.timersLock.withLock { rt.timers.removeValue(forKey: t.id) != nil }
                if stillThere { t.fire() }
                rt.disarm(t)
            } else if rt.timersLock.withLock({ rt.timers[t.id] != nil }) {
                t.fire()   // (a stopped timer's pending disarm has not run yet: skip)
            }
        }, t.delayMs, t.repeatMs)
    }

    /// On the I/O thread: stops and closes a timer's handle; `release` runs when it is closed.
    private func disarm(_ t: Timer) {
        guard let h = t.handle else { t.release(); return }
        t.handle = nil
        uv_timer_stop(h)
        uv_close(UnsafeMutableRawPointer(h).assumingMemoryBound(to: uv_handle_t.self)) { hh in
            guard let hh else { return }
            let h = UnsafeMutableRawPointer(hh).assumingMemoryBound(to: uv_timer_t.self)
            if let data = h.pointee.data {
                let t = Unmanaged<Runtime.Timer>.fromOpaque(data).takeRetainedValue()
                t.release()
            }
            h.deallocate()
        }
    }

    // MARK: Embedded runs

    /// Embedded: the descriptor that is readable when the loop has work (I/O, a post); watch it
    /// in the host's loop and call `runOnce` when it is. Throws `.state` for a runtime with a
    /// thread of its own.
    public func backendFD() throws(OrchestraError) -> Int32 {
        guard embedded else { throw OrchestraError(.state, "runtime \"\(name)\" runs on its own I/O thread: it has no descriptor to watch") }
        return uv_backend_fd(loop)
    }

    /// Embedded: runs what is ready now (I/O callbacks, posted jobs, due timers) without
    /// blocking, on the calling thread. Returns the milliseconds until the next timer is due
    /// (-1: none; 0: more is ready, call again soon). Throws `.state` for a runtime with its own
    /// thread or when called from inside one of this runtime's callbacks, `.closed` when the
    /// loop has ended (after `shutdown()`; a shutdown begun inside a callback ends in a later
    /// call, which throws `.closed`: the last call the host may make). Any thread; one at a
    /// time runs the loop, others wait.
    public func runOnce() throws(OrchestraError) -> Int32 {
        guard embedded else { throw OrchestraError(.state, "runtime \"\(name)\" runs on its own I/O thread") }
        let me = UInt(pthread_self())
        if ioThread.load(ordering: .acquiring) == me {
            throw OrchestraError(.state, "runtime \"\(name)\": run_once from inside one of its own callbacks")
        }
        var ended = false
        let timeout: Int32 = try loopLock.withLock { () throws(OrchestraError) -> Int32 in
            if loopEnded { throw OrchestraError(.closed, "runtime \"\(name)\" has shut down") }
            ioThread.store(me, ordering: .releasing)
            var alive = uv_run(loop, UV_RUN_NOWAIT)
            // Descriptors started by this run's callbacks reach the epoll set only in a poll
            // phase: run again (a zero-timeout poll) until there are none, or let the host
            // call again at once.
            var rounds = 0
            while alive != 0 && orc_uv_watchers_pending(loop) != 0 && rounds < 4 {
                alive = uv_run(loop, UV_RUN_NOWAIT)
                rounds += 1
            }
            ioThread.store(0, ordering: .releasing)
            if alive == 0 && stopping.load(ordering: .acquiring) {
                loopEnded = true
                ended = true
                return -1
            }
            return orc_uv_watchers_pending(loop) != 0 ? 0 : uv_backend_timeout(loop)
        }
        if ended {
            releaseSelf()
            throw OrchestraError(.closed, "runtime \"\(name)\" has shut down")
        }
        return timeout
    }

    /// Embedded: drops the runtime's reference to itself once its loop ended (the last thing
    /// done: the runtime may be freed by it).
    private func releaseSelf() {
        let r: Unmanaged<Runtime>? = loopLock.withLock {
            defer { selfRef = nil }
            return selfRef
        }
        r?.release()
    }

    /// Embedded: runs `body` now on the calling thread as the loop's thread (waiting while
    /// another thread runs the loop), for a caller that must wait for the result (a server's
    /// bind); the host is then told to run the loop soon for anything `body` started. At once
    /// when already on the loop's thread. Throws `.state` for a runtime with its own thread,
    /// `.closed` once shutdown has begun.
    func runAsLoopThread(_ body: () -> Void) throws(OrchestraError) {
        guard embedded else { throw OrchestraError(.state, "runtime \"\(name)\" runs on its own I/O thread") }
        if isIOThread { body(); return }
        try loopLock.withLock { () throws(OrchestraError) in
            if loopEnded || stopping.load(ordering: .acquiring) {
                throw OrchestraError(.closed, "runtime \"\(name)\" is shutting down")
            }
            ioThread.store(UInt(pthread_self()), ordering: .releasing)
            body()
            ioThread.store(0, ordering: .releasing)
            uv_async_send(wakeup)   // the host runs the loop soon for what body started
        }
    }

    /// Embedded: runs `body` now as the loop's thread if no thread is running the loop (else
    /// nothing: that run does the work). For work a caller may skip but must never wait for:
    /// the caller may hold locks a callback of the running loop takes (an agent's action
    /// sending under the agent's lock while the host's thread delivers an assign).
    func runAsLoopThreadIfIdle(_ body: () -> Void) {
        guard embedded, !isIOThread else { return }
        _ = loopLock.withLockIfFree {
            if loopEnded || stopping.load(ordering: .acquiring) { return }
            ioThread.store(UInt(pthread_self()), ordering: .releasing)
            body()
            ioThread.store(0, ordering: .releasing)
        }
    }

    // MARK: Shutdown

    /// Runs every accepted job, stops every timer, closes every handle and joins the I/O thread.
    /// Idempotent. From the I/O thread itself (inside a job or a timer) it only begins the
    /// shutdown: the loop ends after the current callback.
    public func shutdown() {
        if !stopping.exchange(true, ordering: .sequentiallyConsistent) {
            // Wait for posts that passed their check before we set the flag.
            while posting.load(ordering: .sequentiallyConsistent) != 0 { sched_yield() }
            uv_async_send(wakeup)
        }
        if isIOThread { return }
        if embedded {
            // Run the loop here until it ends (the jobs, then every close).
            let ranIt: Bool = loopLock.withLock {
                if loopEnded { return false }
                ioThread.store(UInt(pthread_self()), ordering: .releasing)
                uv_run(loop, UV_RUN_DEFAULT)
                ioThread.store(0, ordering: .releasing)
                loopEnded = true
                return true
            }
            if ranIt { releaseSelf() }
            return
        }
        if !joined.exchange(true, ordering: .acquiringAndReleasing) {
            pthread_join(thread, nil)
        }
    }

    /// On the I/O thread, once stopping: every timer and the wake-up handle are closed, so
    /// `uv_run` returns when their close callbacks have run.
    private func closeEverything() {
        let all: [Timer] = timersLock.withLock {
            let v = Array(timers.values) + stoppedWhileStopping
            timers.removeAll()
            stoppedWhileStopping.removeAll()
            return v
        }
        for t in all.sorted(by: { $0.id < $1.id }) { disarm(t) }
        closeTransport()
        let wh = UnsafeMutableRawPointer(wakeup).assumingMemoryBound(to: uv_handle_t.self)
        if uv_is_closing(wh) == 0 { uv_close(wh, nil) }
    }
}
