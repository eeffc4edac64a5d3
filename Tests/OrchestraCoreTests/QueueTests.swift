import Testing
import Glibc
import Synchronization
@testable import OrchestraCore
import OrchestraTestSupport

/// A message whose id is "n" (for order checks).
private func msg(_ n: Int, _ p: Priority? = nil, ttl: Int64? = nil) -> Message {
    let m = Message(type: Array("test.msg".utf8), id: Array(String(n).utf8))
    m.priority = p
    m.ttl = ttl
    return m
}

private func ids(_ ms: [Message]) -> [String] { ms.map(\.id) }

/// A value shared by test threads, behind a pthread mutex. (ThreadSanitizer does not see the
/// futex that `Synchronization.Mutex` uses on Linux, and reports the accesses it orders as
/// races; it does see pthread mutexes.)
private final class Shared<T>: @unchecked Sendable {
    private var value: T
    private let m = PthreadMutex()
    init(_ value: T) { self.value = value }
    func withLock<R>(_ body: (inout T) -> R) -> R { m.withLock { body(&value) } }
}

/// Collects drops from the handler.
private final class DropLog: @unchecked Sendable {
    private let m = Shared<[(String, DropReason)]>([])
    var entries: [(String, DropReason)] { m.withLock { $0 } }
    func add(_ msg: Message, _ r: DropReason) { m.withLock { $0.append((msg.id, r)) } }
}

private func readable(_ fd: Int32) -> Bool {
    var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
    return poll(&p, 1, 0) == 1 && (p.revents & Int16(POLLIN)) != 0
}

@Suite struct QueueTests {
    @Test func fifoWithinLaneAndLanesByPriority() throws {
        let q = try MessageQueue()
        try q.push(msg(1, .low))
        try q.push(msg(2))
        try q.push(msg(3, .critical))
        try q.push(msg(4, .normal))
        try q.push(msg(5, .high))
        try q.push(msg(6, .critical))
        var out: [String] = []
        for _ in 0..<6 { out.append(try q.pop(timeoutMs: 0).id) }
        #expect(out == ["3", "6", "5", "2", "4", "1"])
        #expect(throws: OrchestraError(.wouldBlock, "queue is empty")) { try q.pop(timeoutMs: 0) }
        let st = q.stats
        #expect(st.pushed == 6 && st.popped == 6 && st.depth == 0 && st.depthHighWater == 6)
        #expect(st.waitCount == 6)
    }

    @Test func rejectPolicyKeepsMessageWithCaller() throws {
        let q = try MessageQueue(QueueOptions(capacity: 2, policy: .reject, name: "r"))
        try q.push(msg(1)); try q.push(msg(2))
        let m3 = msg(3)
        do {
            try q.push(m3)
            Issue.record("push into a full reject queue succeeded")
        } catch {
            #expect(error.code == .full)
            #expect(error.message.contains("capacity 2"))
        }
        #expect(q.stats.rejected == 1)
        #expect(ids(try q.popBatch(max: 10, timeoutMs: 0)) == ["1", "2"])
    }

    @Test func dropNewestDropsIncoming() throws {
        let q = try MessageQueue(QueueOptions(capacity: 2, policy: .dropNewest))
        let log = DropLog()
        q.setDropHandler { m, r in log.add(m, r) }
        for i in 1...4 { try q.push(msg(i)) }
        #expect(ids(try q.popBatch(max: 10, timeoutMs: 0)) == ["1", "2"])
        #expect(log.entries.map(\.0) == ["3", "4"])
        #expect(log.entries.allSatisfy { $0.1 == .overflow })
        #expect(q.stats.droppedOverflow == 2)
    }

    @Test func dropOldestDropsOldestOfLowestEligibleLane() throws {
        let q = try MessageQueue(QueueOptions(capacity: 3, policy: .dropOldest))
        let log = DropLog()
        q.setDropHandler { m, r in log.add(m, r) }
        try q.push(msg(1, .high))
        try q.push(msg(2, .normal))
        try q.push(msg(3, .normal))
        try q.push(msg(4, .high))      // drops 2 (oldest of the lowest lane <= high)
        try q.push(msg(5, .low))       // no lane <= low is non-empty: 5 itself is dropped
        #expect(log.entries.map(\.0) == ["2", "5"])
        #expect(ids(try q.popBatch(max: 10, timeoutMs: 0)) == ["1", "4", "3"])
        let st = q.stats
        #expect(st.droppedOverflow == 2)
        #expect(st.pushed == st.popped + st.droppedOverflow + st.expired + st.depth)
    }

    @Test func blockPolicyTimesOutWithFull() throws {
        let q = try MessageQueue(QueueOptions(capacity: 1, policy: .block, pushTimeoutMs: 20))
        try q.push(msg(1))
        #expect(throws: OrchestraError.self) { try q.push(msg(2)) }
        do { try q.push(msg(3)) } catch { #expect(error.code == .full && error.message.contains("stayed full")) }
        let st = q.stats
        #expect(st.rejected == 2 && st.blockedPushes == 2)
        let q0 = try MessageQueue(QueueOptions(capacity: 1, policy: .block, pushTimeoutMs: 0))
        try q0.push(msg(1))
        do { try q0.push(msg(2)); Issue.record("expected .full") } catch { #expect(error.code == .full) }
    }

    @Test func blockedProducerIsWokenByConsumer() throws {
        let q = try MessageQueue(QueueOptions(capacity: 1, policy: .block, pushTimeoutMs: -1))
        try q.push(msg(1))
        let done = Atomic<Int>(0)
        let t = TestThread {
            do { try q.push(msg(2)); done.store(1, ordering: .sequentiallyConsistent) }
            catch { done.store(-1, ordering: .sequentiallyConsistent) }
        }
        #expect(eventually { q.stats.blockedPushes == 1 })
        #expect(done.load(ordering: .sequentiallyConsistent) == 0)
        #expect(try q.pop(timeoutMs: 0).id == "1")
        t.join()
        #expect(done.load(ordering: .sequentiallyConsistent) == 1)
        #expect(try q.pop(timeoutMs: 0).id == "2")
    }

    @Test func closeWakesEveryBlockedReaderAndWriter() throws {
        // Readers on an empty queue.
        let q = try MessageQueue()
        let readerCodes = Shared<[ErrorCode]>([])
        let readers = (0..<3).map { (_: Int) -> TestThread in
            TestThread {
                do { _ = try q.pop(timeoutMs: -1) } catch { readerCodes.withLock { $0.append((error as? OrchestraError)?.code ?? .internal) } }
            }
        }
        // Writers on a full queue.
        let w = try MessageQueue(QueueOptions(capacity: 1, policy: .block, pushTimeoutMs: -1))
        try w.push(msg(0))
        let writerCodes = Shared<[ErrorCode]>([])
        let writers = (1...3).map { (i: Int) -> TestThread in
            TestThread {
                do { try w.push(msg(i)) } catch { writerCodes.withLock { $0.append((error as? OrchestraError)?.code ?? .internal) } }
            }
        }
        #expect(eventually { w.stats.blockedPushes == 3 })
        #expect(eventually { q.waiterCounts.sync == 3 })
        q.close()
        w.close()
        for t in readers + writers { t.join() }
        #expect(readerCodes.withLock { $0 } == [.closed, .closed, .closed])
        #expect(writerCodes.withLock { $0 } == [.closed, .closed, .closed])
        // The closed writer queue still drains, then reports closed.
        #expect(try w.pop(timeoutMs: 0).id == "0")
        do { _ = try w.pop(timeoutMs: -1); Issue.record("expected .closed") } catch { #expect(error.code == .closed) }
        do { try w.push(msg(9)); Issue.record("expected .closed") } catch { #expect(error.code == .closed) }
    }

    @Test func failPropagatesToReadersAndWriters() throws {
        let q = try MessageQueue()
        try q.push(msg(1))
        let blocked = try MessageQueue()
        let code = Shared<OrchestraError?>(nil)
        let t = TestThread {
            do { _ = try blocked.pop(timeoutMs: -1) } catch { code.withLock { $0 = error as? OrchestraError } }
        }
        #expect(eventually { blocked.waiterCounts.sync == 1 })
        blocked.fail(code: 42, message: "upstream went away")
        t.join()
        #expect(code.withLock { $0 } == OrchestraError(.failed, "upstream went away"))
        q.fail(message: "boom")
        #expect(throws: OrchestraError(.failed, "boom")) { try q.pop(timeoutMs: 0) }
        #expect(throws: OrchestraError(.failed, "boom")) { try q.push(msg(2)) }
        #expect(blocked.failure?.code == 42)
    }

    @Test func ttlExpiredMessagesAreSkippedAndReported() throws {
        let q = try MessageQueue()
        let log = DropLog()
        q.setDropHandler { m, r in log.add(m, r) }
        try q.push(msg(1, ttl: 0))
        try q.push(msg(2, ttl: 60_000))
        try q.push(msg(3, ttl: 1))
        usleep(5_000)
        #expect(ids(try q.popBatch(max: 10, timeoutMs: 0)) == ["2"])
        #expect(log.entries.map(\.0) == ["1", "3"])
        #expect(log.entries.allSatisfy { $0.1 == .expired })
        #expect(q.stats.expired == 2)
    }

    @Test func batchOperations() throws {
        let q = try MessageQueue(QueueOptions(capacity: 5, policy: .reject))
        let r = q.pushBatch((0..<8).map { msg($0) })
        #expect(r.accepted == 5)
        #expect(r.error?.code == .full)
        #expect(ids(try q.popBatch(max: 3, timeoutMs: 0)) == ["0", "1", "2"])
        #expect(ids(try q.popBatch(max: 100, timeoutMs: -1)) == ["3", "4"])
        #expect(throws: OrchestraError.self) { try q.popBatch(max: 0, timeoutMs: 0) }
        do { _ = try q.popBatch(max: 4, timeoutMs: 10); Issue.record("expected timeout") } catch { #expect(error.code == .timedOut) }
    }

    @Test func releasesLeftoversOnFree() throws {
        let log = DropLog()
        weak var weakMsg: Message?
        do {
            let q = try MessageQueue()
            q.setDropHandler { m, r in log.add(m, r) }
            let m = msg(7)
            weakMsg = m
            try q.push(m)
        }
        #expect(weakMsg == nil)
        #expect(log.entries.map(\.0) == ["7"])
        #expect(log.entries.first?.1 == .closedOnFree)
    }

    @Test func readinessFDTransitions() throws {
        let q = try MessageQueue()
        let fd = try q.readinessFD()
        #expect(fd >= 0)
        #expect(try q.readinessFD() == fd)
        #expect(!readable(fd))
        try q.push(msg(1))
        #expect(readable(fd))
        try q.push(msg(2))
        #expect(readable(fd))
        _ = try q.pop(timeoutMs: 0)
        #expect(readable(fd))
        _ = try q.pop(timeoutMs: 0)
        #expect(!readable(fd))
        // Made readable by close even when empty.
        q.close()
        #expect(readable(fd))
        // An fd requested while messages are queued starts readable.
        let q2 = try MessageQueue()
        try q2.push(msg(1))
        #expect(readable(try q2.readinessFD()))
    }

    @Test func blockedPopIsHandedTheMessage() throws {
        let q = try MessageQueue()
        let got = Shared<String?>(nil)
        let t = TestThread {
            if let m = try? q.pop(timeoutMs: -1) { got.withLock { $0 = m.id } }
        }
        #expect(eventually { q.waiterCounts.sync == 1 })
        try q.push(msg(11))
        t.join()
        #expect(got.withLock { $0 } == "11")
        #expect(q.stats.popped == 1)
        #expect(q.stats.handedOff == 1)
        #expect(q.waiterCounts.sync == 0)
    }

    @Test func asyncSequenceEndsOnClose() async throws {
        let q = try MessageQueue()
        let consumer = Task { () -> [String] in
            var seen: [String] = []
            for try await m in q { seen.append(m.id) }
            return seen
        }
        for i in 0..<50 { try q.push(msg(i)) }
        q.close()
        let seen = try await consumer.value
        #expect(seen == (0..<50).map(String.init))
    }

    @Test func asyncReaderIsHandedOffAndThrowsOnFail() async throws {
        let q = try MessageQueue()
        let first = Task { try await q.next()?.id }
        #expect(await eventuallyAsync { q.waiterCounts.async == 1 })
        try q.push(msg(5))
        #expect(try await first.value == "5")
        let failing = Task { () -> ErrorCode? in
            do { _ = try await q.next(); return nil } catch let e as OrchestraError { return e.code } catch { return nil }
        }
        #expect(await eventuallyAsync { q.waiterCounts.async == 1 })
        q.fail(message: "gone")
        #expect(await failing.value == .failed)
    }

    @Test func asyncCancellationRemovesWaiter() async throws {
        let q = try MessageQueue()
        let t = Task { try await q.next() }
        #expect(await eventuallyAsync { q.waiterCounts.async == 1 })
        t.cancel()
        do { _ = try await t.value; Issue.record("expected cancellation") } catch { #expect(error is CancellationError) }
        // The waiter is gone: a push is queued, not handed to the cancelled task.
        try q.push(msg(1))
        #expect(q.depth == 1)
        #expect(q.stats.handedOff == 0)
        #expect(q.waiterCounts.async == 0)
    }

    @Test func manyProducersManyConsumersLoseNothing() throws {
        let producers = 4, consumers = 4, perProducer = 50_000
        let q = try MessageQueue(QueueOptions(capacity: 1024, policy: .block, pushTimeoutMs: -1))
        let popped = Atomic<Int>(0)
        let sum = Atomic<Int>(0)
        let xor = Atomic<Int>(0)
        var threads: [TestThread] = []
        for c in 0..<consumers {
            threads.append(TestThread {
                var localN = 0, localSum = 0, localXor = 0
                while true {
                    do {
                        let batch = try q.popBatch(max: c % 2 == 0 ? 1 : 64, timeoutMs: -1)
                        for m in batch {
                            let v = Int(m.id) ?? -1_000_000_000
                            localN += 1; localSum &+= v; localXor ^= v &* 2654435761
                        }
                    } catch {
                        break
                    }
                }
                popped.add(localN, ordering: .relaxed)
                sum.add(localSum, ordering: .relaxed)
                xor.bitwiseXor(localXor, ordering: .relaxed)
            })
        }
        var prods: [TestThread] = []
        for p in 0..<producers {
            prods.append(TestThread {
                var i = 0
                while i < perProducer {
                    if p % 2 == 0 {
                        try? q.push(msg(p * perProducer + i))
                        i += 1
                    } else {
                        let n = min(128, perProducer - i)
                        let batch = (0..<n).map { msg(p * perProducer + i + $0) }
                        let r = q.pushBatch(batch)
                        i += r.accepted
                        if r.error != nil { break }
                    }
                }
            })
        }
        for t in prods { t.join() }
        q.close()
        for t in threads { t.join() }
        let total = producers * perProducer
        var expectXor = 0
        for v in 0..<total { expectXor ^= v &* 2654435761 }
        #expect(popped.load(ordering: .relaxed) == total)
        #expect(sum.load(ordering: .relaxed) == total * (total - 1) / 2)
        #expect(xor.load(ordering: .relaxed) == expectXor)
        let st = q.stats
        #expect(st.pushed == UInt64(total) && st.popped == UInt64(total) && st.depth == 0)
        #expect(st.depthHighWater <= 1024)
    }

    // Producers append to an intake under their own mutex and consumers sort it into the lanes
    // (see MessageQueue.swift): the tests below aim at the hand-overs between the two sides.

    @Test func sleepingReadersAreWokenByFastPathPushes() throws {
        // Readers sleep at once (no polling), producers push one by one with pauses so readers
        // fall asleep between messages: a lost wake-up leaves a message behind.
        let q = try MessageQueue(QueueOptions(capacity: 0, spinMicroseconds: 0))
        let got = Atomic<Int>(0)
        let readers = (0..<2).map { _ in
            TestThread {
                while (try? q.pop(timeoutMs: -1)) != nil { got.add(1, ordering: .relaxed) }
            }
        }
        let n = 3_000
        let producers = (0..<2).map { p in
            TestThread {
                for i in 0..<(n / 2) {
                    try? q.push(msg(p * n + i))
                    if i % 7 == 0 { usleep(50) }
                }
            }
        }
        for t in producers { t.join() }
        // Everything pushed is delivered without another push to shake it loose.
        #expect(eventually { got.load(ordering: .relaxed) == n })
        q.close()
        for t in readers { t.join() }
        #expect(q.stats.popped == UInt64(n))
    }

    @Test func capacityHoldsUnderConcurrentPushes() throws {
        // No reader: exactly `capacity` of the concurrent pushes are taken, the rest rejected.
        let q = try MessageQueue(QueueOptions(capacity: 37, policy: .reject))
        let accepted = Atomic<Int>(0)
        let threads = (0..<4).map { p in
            TestThread {
                for i in 0..<200 {
                    if p % 2 == 0 {
                        if (try? q.push(msg(p * 1000 + i))) != nil { accepted.add(1, ordering: .relaxed) }
                    } else {
                        let r = q.pushBatch([msg(p * 1000 + i), msg(p * 1000 + 500 + i)])
                        accepted.add(r.accepted, ordering: .relaxed)
                    }
                }
            }
        }
        for t in threads { t.join() }
        #expect(accepted.load(ordering: .relaxed) == 37)
        #expect(q.depth == 37)
        let st = q.stats
        #expect(st.pushed == 37 && st.depthHighWater == 37)
    }

    @Test func capacityCountsBatchAndSinglePushesAlike() throws {
        // A batch may go straight to the lanes and single pushes through the intake: the room
        // a push sees must count both.
        let q = try MessageQueue(QueueOptions(capacity: 5, policy: .reject))
        #expect(q.pushBatch([msg(0), msg(1), msg(2)]).accepted == 3)
        var accepted = 0, full = 0
        for i in 3..<8 {
            do { try q.push(msg(i)); accepted += 1 } catch { #expect(error.code == .full); full += 1 }
        }
        #expect(accepted == 2 && full == 3)
        #expect(q.depth == 5)
        #expect(q.pushBatch([msg(8)]).error?.code == .full)
        _ = try q.pop(timeoutMs: 0)
        try q.push(msg(9))
        #expect(q.depth == 5 && q.stats.depthHighWater == 5)
    }

    @Test func depthHighWaterIsExact() throws {
        let q = try MessageQueue()
        for i in 0..<5 { try q.push(msg(i)) }
        for _ in 0..<5 { _ = try q.pop(timeoutMs: 0) }
        try q.push(msg(9))
        #expect(q.stats.depthHighWater == 5)
        _ = try q.pushBatch((10..<17).map { msg($0) })
        #expect(q.stats.depthHighWater == 8)
    }

    @Test func closeLosesNoPushThatSucceeded() throws {
        // Producers push as fast as they can while the queue is closed under them: every push
        // that returned without error is delivered before readers see .closed.
        for round in 0..<5 {
            let q = try MessageQueue(QueueOptions(capacity: 0))
            let ok = Atomic<Int>(0)
            let popped = Atomic<Int>(0)
            let producers = (0..<3).map { p in
                TestThread {
                    var i = 0
                    while true {
                        if p == 2 {
                            let r = q.pushBatch([msg(i), msg(i + 1), msg(i + 2)])
                            ok.add(r.accepted, ordering: .relaxed)
                            if r.error != nil { break }
                        } else {
                            do { try q.push(msg(i)) } catch { break }
                            ok.add(1, ordering: .relaxed)
                        }
                        i += 3
                    }
                }
            }
            let readers = (0..<2).map { _ in
                TestThread {
                    while (try? q.pop(timeoutMs: -1)) != nil { popped.add(1, ordering: .relaxed) }
                }
            }
            // Close while they are pushing (not before the first push, on a loaded machine).
            #expect(eventually { ok.load(ordering: .relaxed) >= 100 * (round + 1) })
            q.close()
            for t in producers + readers { t.join() }
            #expect(ok.load(ordering: .relaxed) > 0)
            #expect(popped.load(ordering: .relaxed) == ok.load(ordering: .relaxed))
            #expect(q.depth == 0)
        }
    }
}

