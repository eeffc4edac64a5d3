import Glibc
import OrchestraCore
import OrchestraNet
import Testing
@testable import OrchestraHub

/// A hub peer on a real server over 127.0.0.1: answers agent.register, assigns one task and
/// records what the agent sends (for ThreadSanitizer: actions from the test thread and from
/// on_event on the I/O thread, events through the queue and the callback).
private final class Peer: ServerHandler, @unchecked Sendable {
    let lock = PthreadMutex()
    var received: [(type: String, payload: JSONValue)] = []
    let secret: [UInt8]
    init(secret: [UInt8]) { self.secret = secret }

    func shouldAccept(_ request: HTTPRequestInfo) -> HTTPResponse? { nil }
    func handleHTTP(_ request: HTTPRequestInfo) -> HTTPResponse? { nil }

    func didReceive(_ c: Connection, opcode: Opcode, bytes: UnsafeRawBufferPointer) {
        guard let m = try? EnvelopeCodec.decode(bytes, format: .json),
              let p = try? JSONValue.parse(m.payload ?? Array("{}".utf8)) else { return }
        lock.withLock { received.append((m.type, p)) }
        guard m.type == "agent.register" else { return }
        let ok = AgentSignature.verify(secret: secret, agentId: p["agentId"]?.string ?? "", timestamp: p["timestamp"]?.int ?? 0,
                                       nonce: p["nonce"]?.string ?? "", signature: p["signature"]?.string ?? "")
        let answer = ok
            ? #"{"id":"r","type":"agent.registered","correlationId":"\#(m.id)","payload":{"success":true,"heartbeatIntervalMs":50,"assignedTasks":[]}}"#
            : #"{"id":"r","type":"error","correlationId":"\#(m.id)","payload":{"code":"AUTH_001","message":"bad signature"}}"#
        let assign = #"{"id":"a","type":"task.assign","payload":{"taskId":"t1","attempt":1,"task":{"parameters":{"n":1}}}}"#
        for text in ok ? [answer, assign] : [answer] {
            _ = Array(text.utf8).withUnsafeBytes { try? c.send(.text, $0) }
        }
    }

    func types() -> [String] { lock.withLock { received.map(\.type).filter { $0 != "agent.heartbeat" } } }
    func heartbeats() -> Int { lock.withLock { received.filter { $0.type == "agent.heartbeat" }.count } }
}

/// Polls `cond` every millisecond for at most 10 s.
private func eventually(_ cond: () -> Bool) -> Bool {
    for _ in 0..<10_000 {
        if cond() { return true }
        usleep(1000)
    }
    return cond()
}

@Suite(.serialized) struct HubAgentTests {
    private func setUp(secret: [UInt8]) throws -> (Runtime, Server, Peer, HubAgentOptions) {
        let rt = try Runtime(name: "agent-test")
        let peer = Peer(secret: Array("s3cret".utf8))
        let server = try Server(runtime: rt, options: ServerOptions(), handler: peer)
        try server.start()
        var o = HubAgentOptions(url: "ws://127.0.0.1:\(server.port)/agent", agentId: "a1", keyId: "k1", secret: secret)
        o.reconnectInitialDelayMs = 10
        o.reconnectMaxDelayMs = 50
        return (rt, server, peer, o)
    }

    @Test func queueModeRunsATask() throws {
        let (rt, server, peer, o) = try setUp(secret: Array("s3cret".utf8))
        defer { try? server.close(); rt.shutdown() }
        let agent = try HubAgent(runtime: rt, options: o)
        try agent.start()
        var e = try agent.nextEvent(timeoutMs: 10_000)
        #expect(e.kind == .state && e.state == .registered)
        e = try agent.nextEvent(timeoutMs: 10_000)
        #expect(e.kind == .task && e.taskId == "t1" && e.attempt == 1 && e.parametersJSON == #"{"n":1}"#)
        let key = TaskKey("t1", 1)
        try agent.accept(key)
        for line in ["a", "b", "c"] {
            try Array(line.utf8).withUnsafeBytes { try agent.stream(key, type: "stdout", data: $0) }
        }
        try agent.result(key, success: true, resultJSON: #"{"exitCode":0}"#)
        #expect(agent.inFlight.isEmpty)
        #expect(eventually { peer.types().count >= 6 && peer.heartbeats() >= 2 })
        #expect(peer.types() == ["agent.register", "task.accepted", "task.stream", "task.stream", "task.stream", "task.result"])
        let seqs = peer.lock.withLock { peer.received.filter { $0.type == "task.stream" }.compactMap { $0.payload["seq"]?.int } }
        #expect(seqs == [0, 1, 2])
        agent.close()
        e = try agent.nextEvent(timeoutMs: 10_000)
        #expect(e.kind == .state && e.state == .closed)
        #expect(throws: OrchestraError.self) { try agent.nextEvent(timeoutMs: 0) }
    }

    @Test func callbackModeActsOnTheIOThread() throws {
        let (rt, server, peer, o) = try setUp(secret: Array("s3cret".utf8))
        defer { try? server.close(); rt.shutdown() }
        let seen = PthreadMutex()
        nonisolated(unsafe) var kinds: [AgentEventKind] = []
        nonisolated(unsafe) var agentRef: HubAgent? = nil
        let agent = try HubAgent(runtime: rt, options: o) { e in
            #expect(rt.isIOThread)
            seen.withLock { kinds.append(e.kind) }
            if e.kind == .task, let a = seen.withLock({ agentRef }) {
                let key = TaskKey(e.taskId ?? "", e.attempt)
                try? a.accept(key)
                try? a.result(key, success: false, error: "no")
            }
        }
        seen.withLock { agentRef = agent }
        try agent.start()
        #expect(eventually { peer.types().contains("task.result") })
        #expect(peer.types() == ["agent.register", "task.accepted", "task.result"])
        agent.detachCallbacks()
        agent.close()
        let n = seen.withLock { kinds.count }
        usleep(20_000)
        #expect(seen.withLock { kinds.count } == n)   // nothing after detachCallbacks
        #expect(seen.withLock { kinds.prefix(2) } == [.state, .task])
        #expect(throws: OrchestraError(.state, "the agent delivers its events to on_event")) { try agent.nextEvent(timeoutMs: 0) }
        seen.withLock { agentRef = nil }
    }

    @Test func aRefusedRegistrationFailsForGood() throws {
        let (rt, server, peer, o) = try setUp(secret: Array("wrong".utf8))
        defer { try? server.close(); rt.shutdown() }
        let agent = try HubAgent(runtime: rt, options: o)
        try agent.start()
        let e = try agent.nextEvent(timeoutMs: 10_000)
        #expect(e.kind == .state && e.state == .failed && e.code == "AUTH_001" && e.reason == "AUTH_001: bad signature")
        #expect(agent.state == .failed)
        #expect(throws: OrchestraError.self) { try agent.nextEvent(timeoutMs: 10_000) }
        usleep(200_000)   // the backoff is 10..50 ms: a reconnection would have registered again
        #expect(peer.types() == ["agent.register"])
        agent.close()
    }
}
