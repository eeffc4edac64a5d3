import Glibc
import OrchestraCore
import OrchestraNet
import Testing
@testable import OrchestraAgent
import OrchestraWire
import OrchestraTestSupport

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
        // The user's object for the attempt: held while the attempt is in flight or an event
        // about it is alive, then let go.
        final class Job {}
        weak var job: Job?
        do {
            let j = Job()
            job = j
            #expect(e.taskData == nil)
            try e.attach(j)
            #expect(e.taskData === j)
            #expect(throws: OrchestraError(.state, "task t1 attempt 1 has its data already")) { try e.attach(Job()) }
        }
        e = AgentEvent(kind: .state)   // the TASK event goes; the in-flight record still holds the job
        #expect(job != nil)
        let key = TaskKey("t1", 1)
        try agent.accept(key)
        for line in ["a", "b", "c"] {
            try Array(line.utf8).withUnsafeBytes { try agent.stream(key, type: "stdout", data: $0) }
        }
        try agent.result(key, success: true, resultJSON: #"{"exitCode":0}"#)
        #expect(agent.inFlight.isEmpty)
        #expect(throws: OrchestraError.self) { try e.attach(Job()) }   // not a TASK event
        #expect(eventually { peer.types().count >= 6 && peer.heartbeats() >= 2 })
        #expect(peer.types() == ["agent.register", "task.accepted", "task.stream", "task.stream", "task.stream", "task.result"])
        let seqs = peer.lock.withLock { peer.received.filter { $0.type == "task.stream" }.compactMap { $0.payload["seq"]?.int } }
        #expect(seqs == [0, 1, 2])
        agent.close()
        e = try agent.nextEvent(timeoutMs: 10_000)
        #expect(e.kind == .state && e.state == .closed)
        // Out of flight and no event left (the I/O thread made the CLOSED event after it let go
        // of the TASK event): the job is gone.
        #expect(job == nil)
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

/// A hub peer that answers agent.register, then sends the given assigns (payload texts, each
/// with a traceId header) and records every message's type and raw payload text.
private final class ScriptedPeer: ServerHandler, @unchecked Sendable {
    let lock = PthreadMutex()
    var received: [(type: String, payload: [UInt8], traceId: String?)] = []
    let assigns: [String]
    init(assigns: [String]) { self.assigns = assigns }

    func shouldAccept(_ request: HTTPRequestInfo) -> HTTPResponse? { nil }
    func handleHTTP(_ request: HTTPRequestInfo) -> HTTPResponse? { nil }

    func didReceive(_ c: Connection, opcode: Opcode, bytes: UnsafeRawBufferPointer) {
        // Deeper than the hub decodes: what the agent sends is what is checked here.
        guard let m = try? EnvelopeCodec.decode(bytes, format: .json, limits: DecodeLimits(maxSize: 32 << 20, maxDepth: 128)) else { return }
        lock.withLock { received.append((m.type, m.payload ?? [], m.header("traceId"))) }
        guard m.type == "agent.register" else { return }
        var texts = [#"{"id":"r","type":"agent.registered","correlationId":"\#(m.id)","payload":{"success":true,"heartbeatIntervalMs":60000,"assignedTasks":[]}}"#]
        for (i, a) in assigns.enumerated() {
            texts.append(#"{"id":"a\#(i)","type":"task.assign","headers":{"traceId":"tr\#(i)"},"payload":\#(a)}"#)
        }
        for text in texts { _ = Array(text.utf8).withUnsafeBytes { try? c.send(.text, $0) } }
    }

    func sent(_ type: String) -> [(payload: [UInt8], traceId: String?)] {
        lock.withLock { received.filter { $0.type == type }.map { ($0.payload, $0.traceId) } }
    }
}

extension HubAgentTests {
    private func start(_ assigns: [String]) throws -> (Runtime, Server, ScriptedPeer, HubAgent) {
        let rt = try Runtime(name: "agent-payloads")
        let peer = ScriptedPeer(assigns: assigns)
        let server = try Server(runtime: rt, options: ServerOptions(), handler: peer)
        try server.start()
        let o = HubAgentOptions(url: "ws://127.0.0.1:\(server.port)/agent", agentId: "a\"1é", keyId: "k1", secret: [1])
        let agent = try HubAgent(runtime: rt, options: o)
        try agent.start()
        let e = try agent.nextEvent(timeoutMs: 10_000)
        #expect(e.kind == .state && e.state == .registered)
        return (rt, server, peer, agent)
    }

    /// Tricky text: quotes, backslashes, every kind of control character, DEL, non-ASCII, emoji.
    static let tricky = "q\"b\\s/\n\r\t\u{8}\u{c}\u{1}\u{1f}\u{7f} é 😀 \u{2028}"

    /// Each action's payload is, byte for byte, what the JSONValue tree it was built from
    /// before wrote (the clock's fields taken from what was sent).
    @Test func actionPayloadsAreWhatTheTreeWrote() throws {
        let (rt, server, peer, agent) = try start([
            #"{"taskId":"plain","attempt":3,"task":{"parameters":{}}}"#,
            #"{"taskId":"t\"\\é😀\u0001","attempt":1}"#,
        ])
        defer { agent.close(); try? server.close(); rt.shutdown() }
        let t = HubAgentTests.tricky
        var keys: [TaskKey] = []
        for _ in 0..<2 {
            let e = try agent.nextEvent(timeoutMs: 10_000)
            #expect(e.kind == .task)
            keys.append(TaskKey(e.taskId ?? "", e.attempt))
        }
        #expect(keys == [TaskKey("plain", 3), TaskKey("t\"\\é😀\u{1}", 1)])
        let resultText = " { \"a\" : [1, 2.50, -0, 1E2, \"\\u00e9\\/\\n\"], \"b\": {\"c\": null} } "
        let detailsText = "{\"x\": \"\\ud83d\\ude00\", \"y\": [true, false]}"
        for key in keys {
            try agent.accept(key)
            try agent.progress(key, percent: 42.5, step: t)
            try agent.progress(key, percent: 100)
            try Array(t.utf8).withUnsafeBytes { try agent.stream(key, type: "stdout", data: $0) }
            try Array("".utf8).withUnsafeBytes { try agent.stream(key, type: "log", data: $0) }
            try agent.workerOutput(key, type: "assistant", content: t, detailsJSON: detailsText)
            try agent.workerOutput(key, type: "tool", content: "")
            try agent.workerStatus(key, status: "running", message: t)
            try agent.workerStatus(key, status: "paused")
        }
        try agent.result(keys[0], success: true, resultJSON: resultText, error: t)
        try agent.reject(keys[1], reason: t)
        #expect(eventually { peer.sent("task.result").count == 1 && peer.sent("task.rejected").count == 1 })

        func id(_ k: TaskKey) -> [(String, JSONValue)] { [("taskId", .string(k.taskId)), ("attempt", .int(Int64(k.attempt)))] }
        func check(_ type: String, _ expected: [JSONValue]) throws {
            let sent = peer.sent(type)
            #expect(sent.count == expected.count, "\(type)")
            for (s, e) in zip(sent, expected) {
                #expect(s.payload == e.jsonBytes, "\(type): \(String(decoding: s.payload, as: UTF8.self))")
            }
        }
        func field(_ type: String, _ i: Int, _ name: String) throws -> JSONValue {
            try #require(try JSONValue.parse(peer.sent(type)[i].payload)[name])
        }
        try check("task.accepted", keys.map { .object(id($0)) })
        try check("task.progress", keys.flatMap { k in
            [.object(id(k) + [("progress", .double(42.5)), ("currentStep", .string(t))]), .object(id(k) + [("progress", .double(100))])]
        })
        try check("task.stream", try keys.enumerated().flatMap { (i, k) in
            [.object(id(k) + [("seq", 0), ("type", "stdout"), ("data", .string(t)), ("timestamp", try field("task.stream", 2 * i, "timestamp"))]),
             .object(id(k) + [("seq", 1), ("type", "log"), ("data", ""), ("timestamp", try field("task.stream", 2 * i + 1, "timestamp"))])]
        })
        let agentId: [(String, JSONValue)] = [("agentId", .string("a\"1é"))]
        let details = try JSONValue.parse(detailsText)
        var outputs: [JSONValue] = []
        var statuses: [JSONValue] = []
        for (i, k) in keys.enumerated() {
            let ts0 = try field("worker.output", 2 * i, "timestamp"), ts1 = try field("worker.output", 2 * i + 1, "timestamp")
            var o0: [(String, JSONValue)] = agentId + id(k)
            o0 += [("type", .string("assistant")), ("content", .string(t)), ("timestamp", ts0), ("details", details)]
            var o1: [(String, JSONValue)] = agentId + id(k)
            o1 += [("type", .string("tool")), ("content", .string("")), ("timestamp", ts1)]
            outputs += [.object(o0), .object(o1)]
            var s0: [(String, JSONValue)] = agentId + id(k)
            s0 += [("status", .string("running")), ("message", .string(t))]
            var s1: [(String, JSONValue)] = agentId + id(k)
            s1 += [("status", .string("paused"))]
            statuses += [.object(s0), .object(s1)]
        }
        try check("worker.output", outputs)
        try check("worker.status", statuses)
        try check("task.result", [.object(id(keys[0]) + [("success", true), ("result", try JSONValue.parse(resultText)),
                                                          ("error", .string(t)), ("duration", try field("task.result", 0, "duration"))])])
        try check("task.rejected", [.object(id(keys[1]) + [("reason", .string(t))])])
        // Every message about a task carries the assign's traceId.
        #expect(peer.lock.withLock { peer.received.filter { $0.type.hasPrefix("task.") || $0.type.hasPrefix("worker.") }.allSatisfy { $0.traceId == "tr0" || $0.traceId == "tr1" } })
        #expect(agent.inFlight.isEmpty)
    }

    /// result_json and details_json are refused as JSONValue.parse refuses them; a result one
    /// level short of the depth limit makes the payload too deep, as when it was a tree.
    @Test func embeddedJSONIsChecked() throws {
        let (rt, server, peer, agent) = try start([#"{"taskId":"t","attempt":1}"#])
        defer { agent.close(); try? server.close(); rt.shutdown() }
        _ = try agent.nextEvent(timeoutMs: 10_000)
        let key = TaskKey("t", 1)
        for bad in ["", "{", #"{"a":1,}"#, "[1] x", #""\ud800""#, String(repeating: "[", count: 65) + String(repeating: "]", count: 65)] {
            var expected: OrchestraError? = nil
            do { _ = try JSONValue.parse(bad) } catch { expected = error }
            #expect(expected != nil)
            #expect(throws: expected!) { try agent.result(key, success: true, resultJSON: bad) }
            #expect(throws: expected!) { try agent.workerOutput(key, type: "tool", content: "", detailsJSON: bad) }
        }
        #expect(throws: OrchestraError(.invalidArgument, "details_json must be a JSON object")) {
            try agent.workerOutput(key, type: "tool", content: "", detailsJSON: " [1]")
        }
        let deep = String(repeating: "[", count: 64) + String(repeating: "]", count: 64)
        #expect((try? JSONValue.parse(deep)) != nil)
        #expect(throws: OrchestraError.self) { try agent.result(key, success: true, resultJSON: deep) }
        do { try agent.result(key, success: true, resultJSON: deep) } catch { #expect(error.code == .tooBig && error.message.contains("depth limit of 64")) }
        let deepObject = "{\"a\":" + String(repeating: "[", count: 63) + String(repeating: "]", count: 63) + "}"
        do { try agent.workerOutput(key, type: "tool", content: "", detailsJSON: deepObject) } catch { #expect(error.code == .tooBig) }
        // A payload over the size limit is refused whole, and the stream's seq does not move.
        let big = [UInt8](repeating: 0x61, count: DecodeLimits.default.maxSize)
        #expect(throws: OrchestraError.self) { try big.withUnsafeBytes { try agent.stream(key, type: "stdout", data: $0) } }
        #expect(agent.inFlight == [key])
        try Array("x".utf8).withUnsafeBytes { try agent.stream(key, type: "stdout", data: $0) }
        let fits = String(repeating: "[", count: 63) + String(repeating: "]", count: 63)
        try agent.result(key, success: false, resultJSON: fits)
        #expect(eventually { peer.sent("task.result").count == 1 })
        let sent = try #require(peer.sent("task.result").first?.payload)
        let tree: JSONValue = ["taskId": "t", "attempt": 1, "success": false, "result": try JSONValue.parse(fits),
                               "duration": try #require(try JSONValue.parse(sent)["duration"])]
        #expect(sent == tree.jsonBytes)
        #expect(try JSONValue.parse(peer.sent("task.stream")[0].payload)["seq"] == 0)
        #expect(peer.sent("worker.output").isEmpty)
        #expect(agent.inFlight.isEmpty)
    }

    /// Assigns of every shape give the events the tree gave: taskJSON and parametersJSON in
    /// the tree's compact form, payloadJSON as received, errors for bad ones, duplicates
    /// ignored.
    @Test func assignsGiveTheTreesEvents() throws {
        let assigns = [
            #"{"taskId":"f1","attempt":2,"agentId":"a1","task":{"type":"shell","parameters":{"n":1,"s":"x"},"priority":5}}"#,
            #"{ "taskId" : "f2", "task" : { "parameters" : { "cmd" : "echo \"hi\"\n", "t": 1.50, "big": 12345678901234567890, "u":"\u00e9\/" }, "x": [1, -0] } }"#,
            #"{"taskId":"f1","attempt":2,"task":{"parameters":{"other":true}}}"#,
            #"{"attempt":1,"task":{}}"#,
            #"{"taskId":"","attempt":1}"#,
            #"{"taskId":"f5","attempt":0}"#,
            #"{"taskId":"f6","attempt":4294967296}"#,
            #"{"taskId":"f7","attempt":"3","task":{"parameters":[1]}}"#,
            #"{"task\u0049d":"f8","taskId":"not this one"}"#,
            #"{"taskId":"f9","task":5}"#,
            #"{"taskId":"f10","attempt":2.0,"task":{"parameters":{"a":1},"parameters":{"a":2}}}"#,
            #"{"taskId":"f11","attempt":1,"task":{"param\u0065ters":{"z":"\u00e9"}}}"#,
            #"{"taskId":"f12","taskId":"f13","attempt":1,"attempt":2}"#,
            #"{"taskId":"f14","attempt":-1}"#,
            #"{"taskId":"f15","attempt":1,"task":{"parameters":{"deep":[[[{"a":"\u0000"}]]]}}}"#,
        ]
        let (rt, server, _, agent) = try start(assigns)
        defer { agent.close(); try? server.close(); rt.shutdown() }
        var expected: [(AgentEventKind, String?, UInt32, String?, String?, String?, String)] = []
        var seen = Set<String>()
        for a in assigns {
            let p = try JSONValue.parse(a)
            guard let id = p["taskId"]?.string, !id.isEmpty else {
                expected.append((.error, nil, 0, nil, nil, "task.assign without a taskId", a)); continue
            }
            let n = p["attempt"]?.int ?? 1
            guard n >= 1 && n <= Int64(UInt32.max) else {
                expected.append((.error, id, 0, nil, nil, "task.assign with attempt \(n)", a)); continue
            }
            guard seen.insert("\(id)/\(n)").inserted else { continue }
            let task = p["task"] ?? .object([])
            expected.append((.task, id, UInt32(n), task.jsonText, (task["parameters"] ?? .object([])).jsonText, nil, a))
        }
        #expect(expected.count == assigns.count - 1)   // one duplicate
        for x in expected {
            let e = try agent.nextEvent(timeoutMs: 10_000)
            #expect(e.kind == x.0 && e.taskId == x.1 && e.attempt == x.2, "\(x.6)")
            #expect(e.taskJSON == x.3 && e.parametersJSON == x.4, "\(x.6): \(e.taskJSON ?? "nil") \(e.parametersJSON ?? "nil")")
            #expect(e.reason == x.5 && e.payloadJSON == x.6, "\(x.6)")
            if x.0 == .error { #expect(e.code == "PARAM_001") }
        }
        #expect(throws: OrchestraError.self) { try agent.nextEvent(timeoutMs: 0) }   // nothing for the duplicate
        #expect(agent.inFlight.count == expected.filter { $0.0 == .task }.count)
    }
}
