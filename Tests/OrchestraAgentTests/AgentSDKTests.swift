import Glibc
import OrchestraCore
import Testing
@testable import OrchestraAgent
import OrchestraWire

/// The pure parts of the agent SDK: systemInfo parsing, the outbox, the event queue, options.
@Suite struct AgentSDKTests {
    // MARK: systemInfo

    static let stat1 = """
        cpu  4705 356 584 3699 23 23 0 0 0 0
        cpu0 1393 280 297 1699 12 19 0 0 0 0
        intr 114930548 113199788 3 0 5 263 0 4 [... lots more numbers ...]
        ctxt 1990473
        """
    static let stat2 = """
        cpu  4805 356 684 4499 23 23 0 0 0 0
        cpu0 1493 280 397 2299 12 19 0 0 0 0
        """

    @Test func cpuLineIsParsed() {
        let t = SystemInfo.parseCPU(AgentSDKTests.stat1)
        #expect(t == SystemInfo.CPUTimes(idle: 3699 + 23, total: 4705 + 356 + 584 + 3699 + 23 + 23))
        #expect(SystemInfo.parseCPU("cpu0 1 2 3 4\n") == nil)           // no aggregate line
        #expect(SystemInfo.parseCPU("cpu  1 2 x 4\n") == nil)           // not a number
        #expect(SystemInfo.parseCPU("cpu  1 2 3\n") == nil)             // too short
        #expect(SystemInfo.parseCPU("") == nil)
        // Old kernels: four numbers only.
        #expect(SystemInfo.parseCPU("cpu 10 0 10 80\n") == SystemInfo.CPUTimes(idle: 80, total: 100))
    }

    @Test func cpuPercentIsTheBusyShareBetweenSamples() throws {
        let a = try #require(SystemInfo.parseCPU(AgentSDKTests.stat1))
        let b = try #require(SystemInfo.parseCPU(AgentSDKTests.stat2))
        // 100 user + 100 system + 800 idle ticks between the samples: 20 %.
        #expect(SystemInfo.cpuPercent(previous: a, current: b) == 20.0)
        // Without a previous sample: since boot.
        #expect(SystemInfo.cpuPercent(previous: nil, current: SystemInfo.CPUTimes(idle: 75, total: 100)) == 25.0)
        // A counter that went backwards (a restored snapshot) falls back to since boot.
        #expect(SystemInfo.cpuPercent(previous: b, current: a) == SystemInfo.cpuPercent(previous: nil, current: a))
        #expect(SystemInfo.cpuPercent(previous: nil, current: SystemInfo.CPUTimes(idle: 0, total: 0)) == 0)
    }

    @Test func memoryUsesMemAvailable() {
        let info = """
            MemTotal:       16000000 kB
            MemFree:         1000000 kB
            MemAvailable:   12000000 kB
            Buffers:          500000 kB
            Cached:          3000000 kB
            """
        #expect(SystemInfo.memoryPercent(info) == 25.0)
        let old = """
            MemTotal:       1000 kB
            MemFree:         100 kB
            Buffers:          50 kB
            Cached:          250 kB
            """
        #expect(SystemInfo.memoryPercent(old) == 60.0)
        #expect(SystemInfo.memoryPercent("MemFree: 1 kB\n") == nil)
        #expect(SystemInfo.memoryPercent("MemTotal: 0 kB\n") == nil)
        #expect(SystemInfo.memoryPercent("MemTotal: 10 kB\nMemAvailable: 20 kB\n") == 0)
    }

    @Test func diskCountsLikeDf() {
        // 1000 blocks, 400 free of which 300 available to users: used 600 / (600 + 300).
        #expect(SystemInfo.diskPercent(blocks: 1000, free: 400, available: 300) == 66.7)
        #expect(SystemInfo.diskPercent(blocks: 0, free: 0, available: 0) == 0)
        #expect(SystemInfo.diskPercent(blocks: 10, free: 20, available: 20) == 0)
    }

    @Test func samplerReadsThisMachine() {
        var s = SystemInfoSampler()
        _ = s.sample()
        let v = s.sample()
        for x in [v.cpu, v.memory, v.disk] { #expect(x >= 0 && x <= 100) }
        #expect(v.memory > 0)   // /proc/meminfo is there on Linux
    }

    // MARK: outbox

    @Test func outboxReleasesAssignedTasksInOrder() throws {
        var o = AgentOutbox()
        let t1 = TaskKey("t1", 1), t2 = TaskKey("t2", 3), t3 = TaskKey("t3", 1)
        try o.append([1], task: t1)
        try o.append([2], task: t2)
        try o.append([3], task: nil)
        try o.append([4], task: t1)
        try o.append([5], task: t3)
        #expect(o.tasks == [t1, t2, t3])
        #expect(o.count == 5 && o.byteCount == 5)
        let r = o.release(assigned: ["t1", "t3"])
        #expect(r.send.map(\.bytes) == [[1], [3], [4], [5]])
        #expect(r.dropped == 1)
        #expect(o.isEmpty && o.byteCount == 0)
        #expect(o.release(assigned: []).send.isEmpty)
    }

    @Test func outboxIsBounded() throws {
        var o = AgentOutbox(maxMessages: 2, maxBytes: 10)
        try o.append([UInt8](repeating: 0, count: 6), task: nil)
        #expect(throws: OrchestraError.self) { try o.append([UInt8](repeating: 0, count: 5), task: nil) }
        try o.append([UInt8](repeating: 0, count: 4), task: nil)
        do {
            try o.append([], task: nil)
            Issue.record("a third message was taken")
        } catch {
            #expect(error.code == .full)
        }
        #expect(o.count == 2 && o.byteCount == 10)
        o.removeAll()
        #expect(o.isEmpty)
    }

    // MARK: event queue

    @Test func eventQueueOrderTimeoutsAndFD() throws {
        let q = AgentEventQueue()
        #expect(throws: OrchestraError(.wouldBlock, "no event waiting")) { try q.pop(timeoutMs: 0) }
        #expect(throws: OrchestraError(.timedOut, "no event within 20 ms")) { try q.pop(timeoutMs: 20) }
        let fd = try q.fd()
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        #expect(poll(&p, 1, 0) == 0)
        q.push(AgentEvent(kind: .task, taskId: "a", attempt: 1))
        q.push(AgentEvent(kind: .task, taskId: "b", attempt: 1))
        #expect(poll(&p, 1, 0) == 1)
        #expect(try q.pop(timeoutMs: 0).taskId == "a")
        #expect(poll(&p, 1, 0) == 1)
        #expect(try q.pop(timeoutMs: -1).taskId == "b")
        #expect(poll(&p, 1, 0) == 0)
        q.close(after: AgentEvent(kind: .state, state: .closed))
        #expect(!q.push(AgentEvent(kind: .input)))
        #expect(poll(&p, 1, 0) == 1)
        #expect(try q.pop(timeoutMs: 0).state == .closed)
        #expect(throws: OrchestraError.self) { try q.pop(timeoutMs: -1) }
        #expect(poll(&p, 1, 0) == 1)   // closed stays readable
    }

    @Test func eventQueueWakesABlockedReader() async throws {
        let q = AgentEventQueue()
        let t = Task.detached { try q.pop(timeoutMs: 10_000) }
        q.push(AgentEvent(kind: .input, taskId: "x"))
        #expect(try await t.value.taskId == "x")
    }

    // MARK: options

    @Test func optionsAreChecked() {
        var o = HubAgentOptions(url: "ws://127.0.0.1:1/agent", agentId: "a1", keyId: "k1", secret: [1])
        #expect(throws: Never.self) { try o.validate() }
        func invalid(_ change: (inout HubAgentOptions) -> Void, _ words: String) {
            var c = o
            change(&c)
            do {
                try c.validate()
                Issue.record("accepted: \(words)")
            } catch {
                #expect(error.code == .invalidArgument && error.message.contains(words))
            }
        }
        invalid({ $0.agentId = "" }, "agent_id")
        invalid({ $0.keyId = "" }, "key_id")
        invalid({ $0.secret = [] }, "secret")
        invalid({ $0.metadata = .array([]) }, "metadata")
        invalid({ $0.maxConcurrency = 0 }, "max_concurrency")
        invalid({ $0.capabilities = ["shell", ""] }, "capability")
        invalid({ $0.requestTimeoutMs = 0 }, "request_timeout_ms")
        invalid({ $0.reconnectMaxDelayMs = 1 }, "reconnect")
        o.name = "n"
        #expect(throws: Never.self) { try o.validate() }
    }

    @Test func noncesAreFreshHex() {
        let a = HubAgent.nonce(), b = HubAgent.nonce()
        #expect(a.utf8.count == 32 && b.utf8.count == 32 && a != b)
        #expect(a.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) })
    }
}
