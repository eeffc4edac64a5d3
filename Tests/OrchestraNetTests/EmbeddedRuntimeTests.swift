import Glibc
import OrchestraCore
@testable import OrchestraNet
import Synchronization
import Testing

/// Values shared with callbacks, behind a pthread mutex (visible to TSan).
private final class Box<T>: @unchecked Sendable {
    private let lock = PthreadMutex()
    private var v: T
    init(_ v: T) { self.v = v }
    func update(_ f: (inout T) -> Void) { lock.withLock { f(&v) } }
    var value: T { lock.withLock { v } }
}

/// Whether `fd` is readable within `ms` milliseconds.
private func readable(_ fd: Int32, _ ms: Int32) -> Bool {
    var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
    return poll(&p, 1, ms) == 1 && (p.revents & Int16(POLLIN)) != 0
}

/// What a host loop does: waits for the runtime's descriptor (at most its timeout, and at most
/// 20 ms so the condition is checked), runs it, until `cond` holds or `seconds` pass.
@discardableResult
private func drive(_ rt: Runtime, _ seconds: Double = 10, until cond: () -> Bool) throws -> Bool {
    let end = monotonicNanos() + UInt64(seconds * 1e9)
    var timeout: Int32 = 0
    while monotonicNanos() < end {
        if cond() { return true }
        _ = readable(try rt.backendFD(), timeout < 0 ? 20 : min(timeout, 20))
        timeout = try rt.runOnce()
    }
    return cond()
}

private final class EchoHandler: ServerHandler, @unchecked Sendable {
    let closes = Box<[String]>([])
    func didOpen(_ c: Connection) {}
    func didReceive(_ c: Connection, opcode: Opcode, bytes: UnsafeRawBufferPointer) { _ = try? c.send(opcode, bytes) }
    func didClose(_ c: Connection, code: UInt16, reason: String, clean: Bool) { closes.update { $0.append("\(code) \(clean)") } }
}

/// A server counting what it receives, on a runtime with its own thread, and an open client
/// to it on an embedded runtime.
private struct CountingPair {
    let srt: Runtime, rt: Runtime, counter = CountingHandler(), server: Server, client: Client
    init() throws {
        srt = try Runtime(name: "srv")
        server = try Server(runtime: srt, options: ServerOptions(), handler: counter)
        try server.start()
        rt = try Runtime(name: "emb", embedded: true)
        client = try Client(runtime: rt, url: "ws://127.0.0.1:\(server.port)/", options: ClientOptions(), handler: Collector())
        try client.connect()
        let c = client
        #expect(try drive(rt) { c.state == .open })
    }
    func shutdown() { rt.shutdown(); srt.shutdown() }
}

/// A thread that runs an embedded runtime's loop once.
private final class RunnerThread: @unchecked Sendable {
    let rt: Runtime
    private var tid = pthread_t()
    init(_ rt: Runtime) { self.rt = rt }
    func start() {
        let ctx = Unmanaged.passRetained(self).toOpaque()
        pthread_create(&tid, nil, { p in
            let me = Unmanaged<RunnerThread>.fromOpaque(p!).takeRetainedValue()
            _ = try? me.rt.runOnce()
            return nil
        }, ctx)
    }
    func join() { pthread_join(tid, nil) }
}

private final class CountingHandler: ServerHandler, @unchecked Sendable {
    let count = Box<Int>(0)
    func didOpen(_ c: Connection) {}
    func didReceive(_ c: Connection, opcode: Opcode, bytes: UnsafeRawBufferPointer) { count.update { $0 += 1 } }
    func didClose(_ c: Connection, code: UInt16, reason: String, clean: Bool) {}
}

private final class Collector: ClientHandler, @unchecked Sendable {
    let got = Box<[[UInt8]]>([])
    let threads = Box<Set<UInt>>([])
    func didOpen(_ c: Connection) {}
    func didReceive(_ c: Connection, opcode: Opcode, bytes: UnsafeRawBufferPointer) {
        threads.update { $0.insert(UInt(pthread_self())) }
        got.update { $0.append(Array(bytes)) }
    }
    func didClose(_ c: Connection, code: UInt16, reason: String, clean: Bool) {}
    func stateChanged(_ client: Client, _ state: ClientState, reason: String) {}
}

// Nested in TransportTests, whose .serialized trait then covers these too: under
// ThreadSanitizer on 2 cores, the deflate echoes of both suites in parallel took more than their
// one-minute hang guard.
extension TransportTests {
@Suite struct EmbeddedRuntimeTests {
    @Test func postsRunOnlyWhenTheHostRunsTheLoop() throws {
        let rt = try Runtime(name: "emb", embedded: true)
        let fd = try rt.backendFD()
        #expect(!readable(fd, 0))
        let log = Box<[Int]>([])
        let onCaller = Atomic<Int>(0)
        let me = UInt(pthread_self())
        for i in 0..<100 {
            try rt.post {
                if rt.isIOThread && UInt(pthread_self()) == me { onCaller.add(1, ordering: .relaxed) }
                log.update { $0.append(i) }
            }
        }
        #expect(log.value.isEmpty)                // nothing runs by itself
        #expect(readable(fd, 1000))               // but the descriptor says there is work
        _ = try rt.runOnce()
        #expect(log.value == Array(0..<100))       // all of it, in order, on this thread
        #expect(onCaller.load(ordering: .relaxed) == 100)
        #expect(!rt.isIOThread)                    // only while running the loop
        #expect(!readable(fd, 0))

        // A post from another thread wakes the descriptor too.
        var tid = pthread_t()
        let ctx = Unmanaged.passRetained(rt).toOpaque()
        pthread_create(&tid, nil, { p in
            let rt = Unmanaged<Runtime>.fromOpaque(p!).takeRetainedValue()
            try? rt.post {}
            return nil
        }, ctx)
        pthread_join(tid, nil)
        #expect(readable(fd, 1000))
        _ = try rt.runOnce()

        // Running the loop from one of its own callbacks is refused, not a deadlock.
        let nested = Box<ErrorCode?>(nil)
        try rt.post {
            do throws(OrchestraError) { _ = try rt.runOnce() } catch { nested.update { $0 = error.code } }
        }
        _ = try rt.runOnce()
        #expect(nested.value == .state)

        // Shutdown runs what was accepted, then the loop is over.
        try rt.post { log.update { $0.append(100) } }
        rt.shutdown()
        #expect(log.value.last == 100)
        do { _ = try rt.runOnce(); Issue.record("expected .closed") } catch { #expect(error.code == .closed) }
        do { try rt.post {}; Issue.record("expected .closed") } catch { #expect(error.code == .closed) }
    }

    @Test func timersFireWhenTheReturnedTimeoutHasPassed() throws {
        let rt = try Runtime(name: "emb", embedded: true)
        defer { rt.shutdown() }
        let fired = Atomic<Int>(0), released = Atomic<Int>(0)
        _ = try rt.startTimer(delayMs: 30, repeatMs: 0, fire: { fired.add(1, ordering: .relaxed) },
                              release: { released.add(1, ordering: .relaxed) })
        let t0 = monotonicNanos()
        let timeout = try rt.runOnce()            // arms it
        #expect(timeout > 0 && timeout <= 30)
        #expect(fired.load(ordering: .relaxed) == 0)
        #expect(try drive(rt, 5) { fired.load(ordering: .relaxed) == 1 })
        #expect(monotonicNanos() - t0 >= 29_000_000)
        #expect(try drive(rt, 5) { released.load(ordering: .relaxed) == 1 })
        #expect(try rt.runOnce() == -1)           // no timer left
        // A repeating timer left running is stopped and released by shutdown.
        _ = try rt.startTimer(delayMs: 1, repeatMs: 1, fire: {}, release: { released.add(1, ordering: .relaxed) })
        #expect(try drive(rt, 1) { false } == false)
        rt.shutdown()
        #expect(released.load(ordering: .relaxed) == 2)
    }

    @Test func aRuntimeWithItsOwnThreadHasNothingToRun() throws {
        let rt = try Runtime(name: "threaded")
        defer { rt.shutdown() }
        do { _ = try rt.runOnce(); Issue.record("expected .state") } catch { #expect(error.code == .state) }
        do { _ = try rt.backendFD(); Issue.record("expected .state") } catch { #expect(error.code == .state) }
    }

    /// A server and a client on one embedded runtime, run by this thread: the server starts
    /// (it binds on the calling thread: there is no I/O thread to wait for), every size echoes
    /// through, and the callbacks run on this thread.
    @Test(arguments: [false, true]) func serverAndClientOnOneEmbeddedRuntime(deflate: Bool) throws {
        let rt = try Runtime(name: "emb", embedded: true)
        defer { rt.shutdown() }
        var so = ServerOptions()
        if deflate { so.websocket.perMessageDeflate = .init() }
        let sh = EchoHandler()
        let server = try Server(runtime: rt, options: so, handler: sh)
        try server.start()
        #expect(server.port != 0)
        var co = ClientOptions()
        if deflate { co.websocket.perMessageDeflate = .init() }
        let col = Collector()
        let client = try Client(runtime: rt, url: "ws://127.0.0.1:\(server.port)/e", options: co, handler: col)
        try client.connect()
        #expect(try drive(rt) { client.state == .open })
        var sent: [[UInt8]] = []
        // Up to 64 KiB: large messages are TransportTests' (the framing does not depend on the
        // runtime).
        for (i, size) in [0, 1, 125, 126, 65535, 65536].enumerated() {
            let bytes = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ i) }
            sent.append(bytes)
            _ = try bytes.withUnsafeBytes { try client.send(.binary, $0) }
        }
        #expect(try drive(rt, 60) { col.got.value.count == sent.count })
        #expect(col.got.value == sent)
        #expect(col.threads.value == [UInt(pthread_self())])
        try client.close(code: 1000, reason: "bye")
        #expect(try drive(rt) { client.state == .closed && sh.closes.value == ["1000 true"] })
    }

    /// Frames the host sends outside a run wait for its next run, except that past
    /// `embeddedEarlyFlushFrames` the send writes them itself: a burst does not sit in the
    /// outbox while the peer idles.
    @Test func aBurstOfSendsIsWrittenBeforeTheHostRunsTheLoop() throws {
        let pair = try CountingPair()
        defer { pair.shutdown() }
        let (rt, client, counter) = (pair.rt, pair.client, pair.counter)
        let n = Connection.embeddedEarlyFlushFrames
        for i in 0..<(n - 1) {
            _ = try Array("a\(i)".utf8).withUnsafeBytes { try client.send(.text, $0) }
        }
        usleep(100_000)
        #expect(counter.count.value == 0)          // below the threshold: they wait for a run
        _ = try Array("last".utf8).withUnsafeBytes { try client.send(.text, $0) }
        // The n-th send wrote all n without the loop being run.
        let end = monotonicNanos() + 10_000_000_000
        while counter.count.value < n && monotonicNanos() < end { usleep(1000) }
        #expect(counter.count.value == n)
        _ = try Array("more".utf8).withUnsafeBytes { try client.send(.text, $0) }
        #expect(try drive(rt) { counter.count.value == n + 1 })
    }

    /// A send from another thread while the host's thread is inside a run never waits for
    /// that run (the early flush is skipped; the run writes the frames): the sender may hold
    /// a lock one of the run's callbacks needs (an agent's action under the agent's lock).
    @Test func sendsFromAnotherThreadDoNotWaitForARunningLoop() throws {
        let pair = try CountingPair()
        defer { pair.shutdown() }
        let (rt, client, counter) = (pair.rt, pair.client, pair.counter)

        // A job holds the loop (inside a run on another thread) until the sends returned, or
        // for at most 10 s.
        let sendsDone = Atomic<Bool>(false)
        let jobEntered = Atomic<Bool>(false)
        let jobSawSendsDone = Atomic<Bool>(false)
        try rt.post {
            jobEntered.store(true, ordering: .releasing)
            let end = monotonicNanos() + 10_000_000_000
            while !sendsDone.load(ordering: .acquiring) && monotonicNanos() < end { usleep(1000) }
            jobSawSendsDone.store(sendsDone.load(ordering: .acquiring), ordering: .releasing)
        }
        let runner = RunnerThread(rt)
        runner.start()
        let end = monotonicNanos() + 10_000_000_000
        while !jobEntered.load(ordering: .acquiring) && monotonicNanos() < end { usleep(1000) }
        let entered = jobEntered.load(ordering: .acquiring)
        #expect(entered)
        let n = 3 * Connection.embeddedEarlyFlushFrames
        for i in 0..<n {
            _ = try Array("m\(i)".utf8).withUnsafeBytes { try client.send(.text, $0) }
        }
        sendsDone.store(true, ordering: .releasing)
        runner.join()
        let sawDone = jobSawSendsDone.load(ordering: .acquiring)
        #expect(sawDone)   // the sends did not wait for the run
        #expect(try drive(rt) { counter.count.value == n })
    }

    /// An embedded client against a server on a runtime with its own thread.
    @Test func embeddedClientAgainstAThreadedServer() throws {
        let srt = try Runtime(name: "srv")
        defer { srt.shutdown() }
        let server = try Server(runtime: srt, options: ServerOptions(), handler: EchoHandler())
        try server.start()
        let rt = try Runtime(name: "emb", embedded: true)
        let col = Collector()
        let client = try Client(runtime: rt, url: "ws://127.0.0.1:\(server.port)/", options: ClientOptions(), handler: col)
        try client.connect()
        #expect(try drive(rt) { client.state == .open })
        for i in 0..<1000 {
            let b = Array("message \(i)".utf8)
            _ = try b.withUnsafeBytes { try client.send(.text, $0) }
        }
        #expect(try drive(rt) { col.got.value.count == 1000 })
        #expect(col.got.value.enumerated().allSatisfy { $0.element == Array("message \($0.offset)".utf8) })
        // Shutdown with the connection open: the loop runs here until everything is closed.
        rt.shutdown()
        #expect(client.state == .closed)
        #expect(throws: OrchestraError.self) { try Array("late".utf8).withUnsafeBytes { _ = try client.send(.text, $0) } }
    }
}
}
