import Glibc
import OrchestraCore
@testable import OrchestraNet
import Synchronization
import Testing
import OrchestraTestSupport

/// A counter and a log shared with the I/O thread, behind a pthread mutex (visible to TSan).
private final class Log: @unchecked Sendable {
    private let lock = PthreadMutex()
    private var items: [Int] = []
    func add(_ v: Int) { lock.withLock { items.append(v) } }
    var all: [Int] { lock.withLock { items } }
}

@Suite struct RuntimeTests {
    @Test func postsRunOnTheIOThreadInOrder() throws {
        let rt = try Runtime(name: "t")
        let log = Log()
        let offThread = Atomic<Int>(0)
        for i in 0..<1000 {
            try rt.post {
                if !rt.isIOThread { offThread.add(1, ordering: .relaxed) }
                log.add(i)
            }
        }
        #expect(!rt.isIOThread)
        rt.shutdown()   // runs everything accepted first
        #expect(log.all == Array(0..<1000))
        #expect(offThread.load(ordering: .relaxed) == 0)
        do { try rt.post {}; Issue.record("expected .closed") } catch { #expect(error.code == .closed) }
    }

    @Test func postsFromManyThreadsAllRunOnce() throws {
        let rt = try Runtime()
        let ran = Atomic<Int>(0)
        let threads = 4, per = 2000
        var tids: [pthread_t] = []
        let box = Log()
        for _ in 0..<threads {
            var tid = pthread_t()
            let ctx = Unmanaged.passRetained(PostJob(rt: rt, n: per, log: box)).toOpaque()
            pthread_create(&tid, nil, { p in
                let job = Unmanaged<PostJob>.fromOpaque(p!).takeRetainedValue()
                for i in 0..<job.n { try? job.rt.post { job.log.add(i) } }
                return nil
            }, ctx)
            tids.append(tid)
        }
        for t in tids { pthread_join(t, nil) }
        rt.shutdown()
        ran.store(box.all.count, ordering: .relaxed)
        #expect(ran.load(ordering: .relaxed) == threads * per)
    }

    /// A job that stops a repeating timer while the runtime is shutting down (so no more posts
    /// are taken): the timer is still closed and the loop ends. It used to stay armed, and
    /// shutdown() waited forever (the hub's SIGTERM path hit this).
    @Test func timerStoppedDuringShutdownDoesNotKeepTheLoopAlive() throws {
        let rt = try Runtime(name: "t")
        let released = Atomic<Int>(0)
        let id = try rt.startTimer(delayMs: 5, repeatMs: 5, fire: {}, release: { released.add(1, ordering: .relaxed) })
        let idBox = Atomic<UInt64>(id)
        let inJob = Atomic<Int>(0)
        try rt.post {
            inJob.store(1, ordering: .releasing)
            // Wait until shutdown() has closed posting, then stop the timer from the job.
            usleep(100_000)
            try? rt.stopTimer(idBox.load(ordering: .relaxed))
        }
        #expect(eventually { inJob.load(ordering: .acquiring) == 1 })
        rt.shutdown()
        #expect(released.load(ordering: .relaxed) == 1)
    }

    @Test func timersFireRepeatStopAndRelease() throws {
        let rt = try Runtime()
        let once = Atomic<Int>(0), rep = Atomic<Int>(0), never = Atomic<Int>(0), released = Atomic<Int>(0)
        _ = try rt.startTimer(delayMs: 1, repeatMs: 0, fire: { once.add(1, ordering: .relaxed) },
                              release: { released.add(1, ordering: .relaxed) })
        let r = try rt.startTimer(delayMs: 1, repeatMs: 1, fire: { rep.add(1, ordering: .relaxed) },
                                  release: { released.add(1, ordering: .relaxed) })
        let n = try rt.startTimer(delayMs: 60_000, repeatMs: 0, fire: { never.add(1, ordering: .relaxed) },
                                  release: { released.add(1, ordering: .relaxed) })
        #expect(eventually { once.load(ordering: .relaxed) == 1 && rep.load(ordering: .relaxed) >= 3 })
        try rt.stopTimer(r)
        let afterStop = rep.load(ordering: .relaxed)
        usleep(20_000)
        #expect(rep.load(ordering: .relaxed) <= afterStop + 1)   // at most a call already running
        do { try rt.stopTimer(r); Issue.record("expected .notFound") } catch { #expect(error.code == .notFound) }
        _ = n
        rt.shutdown()
        #expect(never.load(ordering: .relaxed) == 0)
        #expect(released.load(ordering: .relaxed) == 3)
    }
}

private final class PostJob: @unchecked Sendable {
    let rt: Runtime
    let n: Int
    let log: Log
    init(rt: Runtime, n: Int, log: Log) { self.rt = rt; self.n = n; self.log = log }
}
