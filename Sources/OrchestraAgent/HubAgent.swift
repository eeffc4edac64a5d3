import CSSL
import Glibc
import OrchestraCore
import OrchestraNet
import OrchestraWire
import Synchronization

/// Settings of a `HubAgent`.
public struct HubAgentOptions: Sendable {
    /// The hubs' URLs (ws://host:port/agent or wss://...), tried round robin: the agent starts
    /// with the first; when its connection is lost or an attempt fails it reconnects (with the
    /// backoff below) to the next one, and after the last to the first again. It stays with a
    /// hub while the connection lives. One URL: it reconnects to that hub.
    public var urls: [String]
    /// The first URL; setting it makes the agent one of a single hub.
    public var url: String {
        get { urls.first ?? "" }
        set { urls = [newValue] }
    }
    public var agentId: String
    /// Defaults to the agent id.
    public var name: String? = nil
    public var version = "0.0.0"
    public var capabilities: [String] = []
    /// A JSON object, sent as `metadata`.
    public var metadata: JSONValue = .object([])
    public var maxConcurrency = 1
    public var keyId: String
    public var secret: [UInt8]
    /// No agent.registered within this after connecting: drop the connection (CONN_002) and
    /// reconnect.
    public var requestTimeoutMs: UInt64 = 30_000
    public var connectTimeoutMs: UInt64 = 10_000
    public var reconnectInitialDelayMs: UInt64 = 100
    public var reconnectMaxDelayMs: UInt64 = 30_000
    /// For wss:// URLs; nil: the system's CAs, certificate and host name verified.
    public var tls: TLSContext? = nil
    public var websocket = WebSocketOptions()
    /// Limits of what waits for agent.registered.
    public var outboxMaxMessages = 65_536
    public var outboxMaxBytes = 64 << 20

    public init(url: String, agentId: String, keyId: String, secret: [UInt8]) {
        self.init(urls: [url], agentId: agentId, keyId: keyId, secret: secret)
    }

    public init(urls: [String], agentId: String, keyId: String, secret: [UInt8]) {
        self.urls = urls
        self.agentId = agentId
        self.keyId = keyId
        self.secret = secret
    }

    /// Throws `.invalidArgument` naming the first bad setting.
    public func validate() throws(OrchestraError) {
        func bad(_ m: String) -> OrchestraError { OrchestraError(.invalidArgument, m) }
        if urls.isEmpty { throw bad("url is required (an empty list of hub URLs)") }
        if agentId.isEmpty { throw bad("agent_id is required") }
        if keyId.isEmpty { throw bad("key_id is required") }
        if secret.isEmpty { throw bad("secret is required (secret_len 0)") }
        if name?.isEmpty == true { throw bad("name is empty") }
        if capabilities.contains(where: { $0.isEmpty }) { throw bad("a capability is empty") }
        guard case .object = metadata else { throw bad("metadata must be a JSON object") }
        if maxConcurrency < 1 { throw bad("max_concurrency must be at least 1") }
        if requestTimeoutMs == 0 { throw bad("request_timeout_ms must be positive") }
        if connectTimeoutMs == 0 { throw bad("connect_timeout_ms must be positive") }
        if reconnectInitialDelayMs == 0 || reconnectMaxDelayMs < reconnectInitialDelayMs {
            throw bad("reconnect delays: initial must be positive and at most max")
        }
        if outboxMaxMessages < 1 || outboxMaxBytes < 1 { throw bad("outbox limits must be positive") }
    }
}

/// The agent side of the hub protocol (docs/protocol.md, Agents and Tasks) over a
/// reconnecting WebSocket `Client`: registration signed with the agent's secret on every
/// (re)connect, an outbox for what is sent while not registered, heartbeats, the in-flight
/// task set, stream numbering and result durations.
///
/// Failover: with several hub URLs the client moves round robin to the next one whenever a
/// connection is lost or cannot be made (a FAILOVER event says where to and why). Each new
/// connection registers with the tasks in flight (`inFlight`); the hub's `assignedTasks` are
/// kept, and what waits in the outbox for them goes out after `agent.registered`, in order,
/// once; the other tasks are cancelled and their waiting messages dropped.
///
/// Events reach the user through a queue (`nextEvent`, `eventFD`) or, when `onEvent` is given,
/// on the runtime's I/O thread. Every method may be called from any thread.
public final class HubAgent: @unchecked Sendable {
    public let options: HubAgentOptions
    public let runtime: Runtime
    let client: Client
    private let link: AgentLink
    /// The agent id as the messages' source.
    private let sourceBytes: [UInt8]
    private let events: AgentEventQueue?
    private let onEvent: ((AgentEvent) -> Void)?

    private struct TaskRecord {
        let order: UInt64
        let assignedAtNs: UInt64
        /// The assign's traceId header as text (a JSON value as its JSON text), sent back as a
        /// string header on every message about the task.
        let traceId: [UInt8]?
        /// What the user attached (AgentEvent.attach), shared with the events about the attempt.
        let task = TaskSlot()
        var nextSeq: UInt64 = 0
    }

    // Shared state, under `lock`.
    private let lock = PthreadMutex()
    private var stateValue = AgentState.connecting
    /// Closed or failed: nothing is sent any more, actions fail with `.closed`.
    private var stopped = false
    /// The last event (STATE failed or closed) was emitted.
    private var finished = false
    private var started = false
    private var registered = false
    private var tasks: [TaskKey: TaskRecord] = [:]
    private var taskSerial: UInt64 = 0
    private var outbox: AgentOutbox
    private var registerTimer: UInt64? = nil
    private var heartbeatTimer: UInt64? = nil
    private let stateShared = Atomic<Int32>(AgentState.connecting.rawValue)

    // I/O thread state.
    private var connection: Connection? = nil
    private var generation: UInt64 = 0
    private var registerId = ""
    private var lossReason: (reason: String, code: String)? = nil
    private var sampler = SystemInfoSampler()
    private var delivering = false
    private var pending: [AgentEvent] = []

    // Callback delivery: held while on_event runs, so `detachCallbacks` can wait for it.
    private let deliverLock = PthreadMutex()
    private let detached = Atomic<Bool>(false)

    /// Makes an agent (not connected: see `start`). `onEvent` nil: events go to the queue.
    public init(runtime: Runtime, options: HubAgentOptions, onEvent: ((AgentEvent) -> Void)? = nil) throws(OrchestraError) {
        try options.validate()
        var co = ClientOptions()
        co.reconnect = true
        co.connectTimeoutMs = options.connectTimeoutMs
        co.reconnectInitialDelayMs = options.reconnectInitialDelayMs
        co.reconnectMaxDelayMs = options.reconnectMaxDelayMs
        // The agent keeps its own outbox: nothing may overtake agent.register.
        co.offlineBufferMessages = 0
        co.websocket = options.websocket
        co.tls = options.tls
        let link = AgentLink()
        self.client = try Client(runtime: runtime, urls: options.urls, options: co, handler: link)
        self.link = link
        self.sourceBytes = Array(options.agentId.utf8)
        self.options = options
        self.runtime = runtime
        self.onEvent = onEvent
        self.events = onEvent == nil ? AgentEventQueue() : nil
        self.outbox = AgentOutbox(maxMessages: options.outboxMaxMessages, maxBytes: options.outboxMaxBytes)
        link.agent = self
    }

    deinit {
        events?.close()
    }

    public var state: AgentState { AgentState(rawValue: stateShared.load(ordering: .acquiring)) ?? .closed }

    /// The index into `options.urls` of the hub the agent is connected to (connecting, after
    /// the connection opened, or registered), or that it is connecting to or will try next.
    public var urlIndex: Int { client.urlIndex }

    /// `options.urls[urlIndex]`.
    public var url: String { options.urls[client.urlIndex] }

    /// Task attempts in flight now (none once the agent is closed or failed).
    public var inFlight: [TaskKey] {
        lock.withLock { tasks.sorted { $0.value.order < $1.value.order }.map(\.key) }
    }

    /// Starts connecting and registering (returns at once). Idempotent.
    public func start() throws(OrchestraError) {
        let first = try lock.withLock { () throws(OrchestraError) -> Bool in
            guard !stopped else { throw OrchestraError(.closed, "the agent is \(stateValue)") }
            defer { started = true }
            return !started
        }
        if first { try client.connect() }
    }

    /// Closes for good: nothing more is sent (the outbox is dropped) and `state` is closed at
    /// once; the connection runs its closing handshake, and once it is closed a STATE closed
    /// event is the last event. Idempotent.
    public func close() {
        guard stop(as: .closed) else { return }
        do {
            // The client reports closed (clientStateChanged) when its connection is gone.
            try client.close(code: 1000, reason: "agent closed")
        } catch {
            finish(AgentEvent(kind: .state, state: .closed, reason: "closed by the user", url: url))
        }
    }

    /// Callback mode: after this returns `onEvent` is not called again (from another thread
    /// it waits for a call in progress).
    public func detachCallbacks() {
        if runtime.isIOThread {
            detached.store(true, ordering: .releasing)
        } else {
            deliverLock.withLock { detached.store(true, ordering: .releasing) }
        }
    }

    // MARK: Events

    /// Pops the next event (queue mode): timeoutMs 0 no wait, < 0 forever, > 0 that long.
    /// Throws `.wouldBlock`, `.timedOut`, `.closed` (closed or failed, and drained), `.state`
    /// (callback mode).
    public func nextEvent(timeoutMs: Int64) throws(OrchestraError) -> AgentEvent {
        guard let q = events else { throw OrchestraError(.state, "the agent delivers its events to on_event") }
        return try q.pop(timeoutMs: timeoutMs)
    }

    /// The queue's readiness eventfd (owned by the agent).
    public func eventFD() throws(OrchestraError) -> Int32 {
        guard let q = events else { throw OrchestraError(.state, "the agent delivers its events to on_event") }
        return try q.fd()
    }

    /// Events waiting in the queue (0 in callback mode).
    public var pendingEvents: Int { events?.count ?? 0 }

    private func emit(_ e: AgentEvent) {
        if let q = events { q.push(e); return }
        if runtime.isIOThread { deliver(e) } else { try? runtime.post { [self] in deliver(e) } }
    }

    /// The last event (once): queue mode closes the queue after it.
    private func finish(_ e: AgentEvent) {
        let first: Bool = lock.withLock {
            defer { finished = true }
            return !finished
        }
        guard first else { return }
        if let q = events { q.close(after: e); return }
        if runtime.isIOThread { deliver(e) } else { try? runtime.post { [self] in deliver(e) } }
    }

    /// I/O thread: calls on_event for `e` after any event being delivered (a callback that
    /// causes an event, e.g. by closing the agent, gets it after it returns).
    private func deliver(_ e: AgentEvent) {
        pending.append(e)
        guard !delivering else { return }
        delivering = true
        while !pending.isEmpty {
            let ev = pending.removeFirst()
            deliverLock.withLock {
                if !detached.load(ordering: .acquiring) { onEvent?(ev) }
            }
        }
        delivering = false
    }

    /// Sets a non-terminal state; terminal states (failed, closed) stay. Emits on change.
    private func setState(_ s: AgentState, reason: String, code: String? = nil) {
        let changed: Bool = lock.withLock {
            guard !stopped, stateValue != s else { return false }
            stateValue = s
            stateShared.store(s.rawValue, ordering: .releasing)
            return true
        }
        if changed { emit(AgentEvent(kind: .state, state: s, reason: reason, code: code, url: url)) }
    }

    /// Stops for good in `state` (closed or failed): nothing more is sent, the outbox is
    /// dropped, the timers stop. False when it had stopped already.
    private func stop(as state: AgentState) -> Bool {
        var dropped: [TaskKey: TaskRecord] = [:]   // let go of after the lock (see stopAll)
        let first: Bool = lock.withLock {
            guard !stopped else { return false }
            dropped = stopAll(as: state)
            return true
        }
        withExtendedLifetime(dropped) {}
        if first { stopTimers() }
        return first
    }

    /// Under the lock: nothing more is sent; the outbox and the in-flight set go (the data
    /// users attached to the attempts stays with the events that still carry it). Returns the
    /// in-flight records for the caller to let go of once the lock is released: their slots may
    /// be the last holders of users' data, whose release (a C data_free) must not run under it.
    private func stopAll(as state: AgentState) -> [TaskKey: TaskRecord] {
        stopped = true
        registered = false
        outbox.removeAll()
        let dropped = tasks
        tasks = [:]
        stateValue = state
        stateShared.store(state.rawValue, ordering: .releasing)
        return dropped
    }

    /// The hub refused the registration: stop for good (no reconnect loop with the same
    /// credentials).
    private func fail(reason: String, code: String) {
        guard stop(as: .failed) else { return }
        try? client.close(code: 1000, reason: "registration refused")
        finish(AgentEvent(kind: .state, state: .failed, reason: reason, code: code, url: url))
    }

    private func stopTimers() {
        let ids: [UInt64] = lock.withLock {
            defer { registerTimer = nil; heartbeatTimer = nil }
            return [registerTimer, heartbeatTimer].compactMap { $0 }
        }
        for id in ids { try? runtime.stopTimer(id) }
    }

    // MARK: Connection events (I/O thread)

    fileprivate func didOpen(_ c: Connection) {
        let inFlight: [TaskKey]? = lock.withLock {
            guard !stopped else { return nil }
            registered = false
            var keys = tasks.sorted { $0.value.order < $1.value.order }.map(\.key)
            // Finished tasks whose last messages still wait are still ours to report.
            for k in outbox.tasks where tasks[k] == nil { keys.append(k) }
            return keys
        }
        guard let inFlight else {
            try? c.close(code: 1000, reason: "agent closed")
            return
        }
        connection = c
        generation &+= 1
        lossReason = nil
        setState(.connecting, reason: "connected to \(url); registering")
        let now = wallClockMillis()
        let nonce = HubAgent.nonce()
        var payload: JSONValue = [
            "agentId": .string(options.agentId),
            "name": .string(options.name ?? options.agentId),
            "capabilities": .array(options.capabilities.map { .string($0) }),
            "version": .string(options.version),
            "metadata": options.metadata,
            "maxConcurrency": .int(Int64(options.maxConcurrency)),
            "keyId": .string(options.keyId),
            "timestamp": .int(now),
            "nonce": .string(nonce),
        ]
        payload.set("signature", .string(AgentSignature.sign(secret: options.secret, agentId: options.agentId, timestamp: now, nonce: nonce)))
        payload.set("inFlight", .array(inFlight.map { ["taskId": .string($0.taskId), "attempt": .int(Int64($0.attempt))] }))
        do throws(OrchestraError) {
            let (id, bytes) = try envelope(.agentRegister, payload)
            registerId = id
            try HubAgent.send(bytes, c.send)
        } catch {
            lossReason = ("cannot send agent.register: \(error.message)", HubErrorCode.connectionFailed.rawValue)
            try? c.close(code: 1011, reason: "cannot register")
            return
        }
        let gen = generation
        let timeout = options.requestTimeoutMs
        if let id = try? runtime.startTimer(delayMs: timeout, repeatMs: 0, fire: { [weak self] in self?.registerTimedOut(gen) }) {
            let old: UInt64? = lock.withLock { defer { registerTimer = id }; return registerTimer }
            if let old { try? runtime.stopTimer(old) }
        }
    }

    private func registerTimedOut(_ gen: UInt64) {
        guard gen == generation, let c = connection, !lock.withLock({ registered }) else { return }
        let code = HubErrorCode.connectionTimeout.rawValue
        lossReason = ("\(code): no agent.registered within \(options.requestTimeoutMs) ms", code)
        try? c.close(code: 1000, reason: code)
    }

    fileprivate func didClose(_ c: Connection, code: UInt16, reason: String) {
        guard connection === c else { return }
        connection = nil
        lock.withLock { registered = false }
        stopTimers()
        if let l = lossReason {
            setState(.disconnected, reason: l.reason, code: l.code)
        } else {
            setState(.disconnected, reason: reason.isEmpty ? "connection closed with \(code)" : "connection closed with \(code): \(reason)")
        }
        lossReason = nil
    }

    fileprivate func clientStateChanged(_ s: ClientState, reason: String) {
        switch s {
        case .reconnecting:
            setState(.disconnected, reason: reason)
        case .closed:
            // After close (the closing handshake is over), after fail (already finished), or
            // the client gave up by itself.
            var dropped: [TaskKey: TaskRecord] = [:]   // let go of after the lock (see stopAll)
            let byUser: Bool = lock.withLock {
                if stopped { return stateValue == .closed }
                dropped = stopAll(as: .closed)
                return false
            }
            withExtendedLifetime(dropped) {}
            stopTimers()
            finish(AgentEvent(kind: .state, state: .closed,
                              reason: byUser ? "closed by the user" : (reason.isEmpty ? "the connection closed" : reason), url: url))
        default:
            break
        }
    }

    /// The client moves to the next hub URL: a FAILOVER event (not once the agent stopped).
    fileprivate func urlChanged(from: Int, to: Int, reason: String) {
        guard !lock.withLock({ stopped }) else { return }
        let next = options.urls[to]
        emit(AgentEvent(kind: .failover, reason: "\(options.urls[from]): \(reason); next: \(next)", url: next))
    }

    fileprivate func didReceive(_ c: Connection, opcode: Opcode, bytes: UnsafeRawBufferPointer) {
        guard connection === c else { return }
        let m: Message
        do {
            m = try EnvelopeCodec.decode(bytes, format: opcode == .binary ? .msgpack : .json)
        } catch {
            emit(AgentEvent(kind: .error, reason: "undecodable message from the hub: \(error.message)"))
            return
        }
        let text = m.contentType == .json ? (m.payload ?? []) : []
        if m.typeBytes == HubAgent.assignType, assignReceivedFast(m, text) { return }
        let payload = (try? JSONValue.parse(text)) ?? .object([])
        let payloadJSON = String(decoding: text.isEmpty ? Array("{}".utf8) : text, as: UTF8.self)
        switch WireEvent(rawValue: m.type) {
        case .agentRegistered?: registeredReceived(c, m, payload)
        case .error?: errorReceived(c, m, payload, payloadJSON)
        case .taskAssign?: assignReceived(m, payload, payloadJSON)
        case .taskCancel?: cancelReceived(payload, payloadJSON)
        case .workerInput?: inputReceived(payload, payloadJSON)
        default: break   // forward compatible: unknown events are ignored
        }
    }

    private func registeredReceived(_ c: Connection, _ m: Message, _ p: JSONValue) {
        if let corr = m.correlationId, corr != registerId { return }   // an answer to an older register
        if p["success"]?.bool == false {
            fail(reason: "registration refused: \(p["message"]?.string ?? "success false")", code: p["code"]?.string ?? HubErrorCode.authenticationFailed.rawValue)
            return
        }
        let assigned = Set(p["assignedTasks"]?.array?.compactMap(\.string) ?? [])
        let interval = UInt64(clamping: Swift.min(Swift.max(p["heartbeatIntervalMs"]?.int ?? 5000, 100), 3_600_000))
        var dropped: [(key: TaskKey, value: TaskRecord)] = []
        let ok: Bool = lock.withLock {
            guard !stopped, !registered else { return false }
            dropped = tasks.filter { !assigned.contains($0.key.taskId) }.sorted { $0.value.order < $1.value.order }
            for (k, _) in dropped { tasks[k] = nil }
            let entries = outbox.release(assigned: assigned).send
            for (i, e) in entries.enumerated() {
                do {
                    try HubAgent.send(e.bytes, c.send)
                } catch {
                    // The connection broke under us: keep the rest for the next registration.
                    for r in entries[i...] { try? outbox.append(r.bytes, task: r.task) }
                    return false
                }
            }
            registered = true
            return true
        }
        guard ok else { return }
        let gen = generation
        let hb = try? runtime.startTimer(delayMs: interval, repeatMs: interval, fire: { [weak self] in self?.heartbeat(gen) })
        let old: [UInt64] = lock.withLock {
            defer { registerTimer = nil; heartbeatTimer = hb }
            return [registerTimer, heartbeatTimer].compactMap { $0 }
        }
        for id in old { try? runtime.stopTimer(id) }
        setState(.registered, reason: "registered with the hub")
        for (k, rec) in dropped {
            emit(AgentEvent(kind: .cancel, taskId: k.taskId, attempt: k.attempt, reason: "re-assigned by the hub", task: rec.task))
        }
    }

    private func errorReceived(_ c: Connection, _ m: Message, _ p: JSONValue, _ json: String) {
        let code = p["code"]?.string ?? HubErrorCode.internalError.rawValue
        let message = p["message"]?.string ?? ""
        let isRegister = !lock.withLock({ registered }) && (m.correlationId == nil || m.correlationId == registerId)
        if isRegister {
            let why = message.isEmpty ? code : "\(code): \(message)"
            switch HubErrorCode(rawValue: code) {
            case .authenticationFailed?, .invalidParameters?:
                fail(reason: why, code: code)
            default:
                // Transient (SYS_001, DB_001, RES_001): try again on a new connection.
                lossReason = (why, code)
                try? c.close(code: 1000, reason: "registration failed")
            }
            return
        }
        let details = p["details"]
        let attempt = details?["attempt"]?.int.map { UInt32(clamping: $0) } ?? 0
        let taskId = details?["taskId"]?.string
        let task = taskId.flatMap { id in lock.withLock { tasks[TaskKey(id, attempt)]?.task } }
        emit(AgentEvent(kind: .error, taskId: taskId, attempt: attempt, reason: message, code: code, payloadJSON: json, task: task))
    }

    private func assignReceived(_ m: Message, _ p: JSONValue, _ json: String) {
        guard let taskId = p["taskId"]?.string, !taskId.isEmpty else {
            emit(AgentEvent(kind: .error, reason: "task.assign without a taskId", code: HubAgent.invalidParameters, payloadJSON: json))
            return
        }
        let a = p["attempt"]?.int ?? 1
        guard a >= 1 && a <= Int64(UInt32.max) else {
            emit(AgentEvent(kind: .error, taskId: taskId, reason: "task.assign with attempt \(a)", code: HubAgent.invalidParameters, payloadJSON: json))
            return
        }
        let key = TaskKey(taskId, UInt32(a))
        let task = p["task"] ?? .object([])
        let params = task["parameters"] ?? .object([])
        guard let slot = admit(key, traceId: HubAgent.traceId(of: m)) else { return }   // a duplicate
        emit(AgentEvent(kind: .task, taskId: taskId, attempt: key.attempt, taskJSON: task.jsonText,
                        parametersJSON: params.jsonText, payloadJSON: json, task: slot))
    }

    private static let assignType = WireEvent.taskAssign.bytes
    private static let invalidParameters = HubErrorCode.invalidParameters.rawValue

    /// task.assign without a JSONValue tree: taskId and attempt read from the payload's text,
    /// the task and its parameters as compact slices of it (the bytes the tree would write).
    /// Handles the usual assign: a valid JSON object, keys without escapes, a taskId string
    /// without escapes, attempt absent or an integer in 1...UInt32.max. False for anything
    /// else, before any effect: `assignReceived` then handles it from the tree, errors included.
    private func assignReceivedFast(_ m: Message, _ text: [UInt8]) -> Bool {
        var taskIdRange: Range<Int>? = nil, attemptRange: Range<Int>? = nil, taskRange: Range<Int>? = nil
        var paramsRange: Range<Int>? = nil
        let ok: Bool = text.withUnsafeBytes { b in
            var plain = true
            let valid = JSONText.forEachMember(of: b) { k, escaped, v in
                if escaped { plain = false; return }
                if taskIdRange == nil && HubAgent.equals(k, "taskId") { taskIdRange = v }
                else if attemptRange == nil && HubAgent.equals(k, "attempt") { attemptRange = v }
                else if taskRange == nil && HubAgent.equals(k, "task") { taskRange = v }
            }
            guard valid, plain else { return false }
            guard let t = taskRange, b[t.lowerBound] == 0x7B else { return true }
            let taskBytes = UnsafeRawBufferPointer(rebasing: b[t])
            let validTask = JSONText.forEachMember(of: taskBytes) { k, escaped, v in
                if escaped { plain = false; return }
                if paramsRange == nil && HubAgent.equals(k, "parameters") { paramsRange = (v.lowerBound + t.lowerBound)..<(v.upperBound + t.lowerBound) }
            }
            return validTask && plain
        }
        guard ok, let idRange = taskIdRange else { return false }
        // The taskId: a non-empty string without escapes (its raw bytes are its value).
        let taskId: String? = text.withUnsafeBytes { b in
            guard idRange.count > 2, b[idRange.lowerBound] == 0x22 else { return nil }
            let raw = UnsafeRawBufferPointer(rebasing: b[(idRange.lowerBound + 1)..<(idRange.upperBound - 1)])
            if raw.contains(0x5C) { return nil }
            return String(decoding: raw, as: UTF8.self)
        }
        guard let taskId else { return false }
        var attempt: Int64 = 1
        if let r = attemptRange {
            guard let a = text.withUnsafeBytes({ b -> Int64? in
                let lexeme = UnsafeRawBufferPointer(rebasing: b[r])
                guard lexeme.allSatisfy({ $0 == 0x2D || ($0 >= 0x30 && $0 <= 0x39) }) else { return nil }
                return JSONText.parseInteger(lexeme)
            }), a >= 1 && a <= Int64(UInt32.max) else { return false }
            attempt = a
        }
        let key = TaskKey(taskId, UInt32(attempt))
        guard let slot = admit(key, traceId: HubAgent.traceId(of: m)) else { return true }   // a duplicate
        let (taskJSON, parametersJSON): (String, String) = text.withUnsafeBytes { b in
            (taskRange.map { JSONText.compactString(UnsafeRawBufferPointer(rebasing: b[$0])) } ?? "{}",
             paramsRange.map { JSONText.compactString(UnsafeRawBufferPointer(rebasing: b[$0])) } ?? "{}")
        }
        emit(AgentEvent(kind: .task, taskId: taskId, attempt: key.attempt, taskJSON: taskJSON,
                        parametersJSON: parametersJSON, payloadJSON: String(decoding: text, as: UTF8.self), task: slot))
        return true
    }

    /// Takes an assigned attempt into the in-flight set and returns its slot; nil for a
    /// duplicate (or when the agent is stopped or not registered).
    private func admit(_ key: TaskKey, traceId: [UInt8]?) -> TaskSlot? {
        lock.withLock {
            guard !stopped, registered, tasks[key] == nil else { return nil }
            taskSerial &+= 1
            let rec = TaskRecord(order: taskSerial, assignedAtNs: monotonicNanos(), traceId: traceId)
            tasks[key] = rec
            return rec.task
        }
    }

    private static let traceKey = Array("traceId".utf8)

    private static func traceId(of m: Message) -> [UInt8]? {
        switch m.header(traceKey) {
        case .string(let v)?, .json(let v)?: return v
        case nil: return nil
        }
    }

    private static func equals(_ k: UnsafeRawBufferPointer, _ s: StaticString) -> Bool {
        k.count == s.utf8CodeUnitCount && memcmp(k.baseAddress!, s.utf8Start, k.count) == 0
    }


    private func cancelReceived(_ p: JSONValue, _ json: String) {
        guard let taskId = p["taskId"]?.string else { return }
        let attempt = p["attempt"]?.int
        let removed: [(key: TaskKey, value: TaskRecord)] = lock.withLock {
            let found = tasks.filter { $0.key.taskId == taskId && (attempt == nil || Int64($0.key.attempt) == attempt) }
            for (k, _) in found { tasks[k] = nil }
            return found.sorted { $0.key.attempt < $1.key.attempt }
        }
        let reason = p["reason"]?.string ?? "cancelled by the hub"
        for (k, rec) in removed {
            emit(AgentEvent(kind: .cancel, taskId: k.taskId, attempt: k.attempt, reason: reason, payloadJSON: json, task: rec.task))
        }
    }

    private func inputReceived(_ p: JSONValue, _ json: String) {
        guard let taskId = p["taskId"]?.string else { return }
        let input: String
        switch p["input"] {
        case .string(let s)?: input = s
        case let v?: input = v.jsonText
        case nil: input = ""
        }
        // The latest attempt of the task in flight here (0 and no slot when none is).
        let latest = lock.withLock { tasks.filter { $0.key.taskId == taskId }.max { $0.key.attempt < $1.key.attempt } }
        emit(AgentEvent(kind: .input, taskId: taskId, attempt: latest?.key.attempt ?? 0, input: input, payloadJSON: json,
                        task: latest?.value.task))
    }

    private func heartbeat(_ gen: UInt64) {
        guard gen == generation else { return }
        let s = sampler.sample()
        let load = lock.withLock { tasks.count }
        let payload: JSONValue = [
            "agentId": .string(options.agentId),
            "timestamp": .int(wallClockMillis()),
            "systemInfo": ["cpu": .double(s.cpu), "memory": .double(s.memory), "disk": .double(s.disk)],
            "load": .int(Int64(load)),
        ]
        guard let (_, bytes) = try? envelope(.agentHeartbeat, payload) else { return }
        lock.withLock {
            guard registered, !stopped else { return }
            try? HubAgent.send(bytes, client.send)
        }
    }

    // MARK: Actions (any thread)

    /// Sends task.accepted.
    public func accept(_ key: TaskKey) throws(OrchestraError) {
        try submit(key, HubAgent.acceptedType, finishes: false) { _, p in
            p.string("taskId", key.taskId)
            p.int("attempt", Int64(key.attempt))
        }
    }

    /// Sends task.rejected; the task leaves the in-flight set.
    public func reject(_ key: TaskKey, reason: String = "rejected") throws(OrchestraError) {
        try submit(key, HubAgent.rejectedType, finishes: true) { _, p in
            p.string("taskId", key.taskId)
            p.int("attempt", Int64(key.attempt))
            p.string("reason", reason)
        }
    }

    /// Sends task.progress; percent in 0...100.
    public func progress(_ key: TaskKey, percent: Double, step: String? = nil) throws(OrchestraError) {
        guard percent >= 0 && percent <= 100 else {
            throw OrchestraError(.invalidArgument, "progress \(percent) is outside 0...100")
        }
        try submit(key, HubAgent.progressType, finishes: false) { _, p in
            p.string("taskId", key.taskId)
            p.int("attempt", Int64(key.attempt))
            p.double("progress", percent)
            if let step { p.string("currentStep", step) }
        }
    }

    /// The stream types of task.stream.
    public static let streamTypes: Set<String> = ["stdout", "stderr", "log"]

    /// Sends task.stream with the next seq of the task attempt; `data` must be UTF-8.
    public func stream(_ key: TaskKey, type: String, data: UnsafeRawBufferPointer) throws(OrchestraError) {
        guard HubAgent.streamTypes.contains(type) else {
            throw OrchestraError(.invalidArgument, "stream type \"\(type)\" is not stdout, stderr or log")
        }
        if let bad = UTF8Validator.firstInvalidOffset(data) {
            throw OrchestraError(.invalidArgument, "stream data is not valid UTF-8 (byte \(bad))")
        }
        try submit(key, HubAgent.streamType, finishes: false, capacity: data.count + 160) { rec, p in
            p.string("taskId", key.taskId)
            p.int("attempt", Int64(key.attempt))
            p.int("seq", Int64(rec.nextSeq))
            p.string("type", type)
            p.string("data", validUTF8: data)
            p.int("timestamp", wallClockMillis())
            rec.nextSeq += 1
        }
    }

    /// Sends task.result with the time since the assign as duration; the task leaves the
    /// in-flight set. `resultJSON` is one JSON value (`.parse` naming the byte otherwise); it
    /// is sent in compact form (whitespace dropped, as a JSON value would write it).
    public func result(_ key: TaskKey, success: Bool, resultJSON: String? = nil, error: String? = nil) throws(OrchestraError) {
        let result = resultJSON.map { Array($0.utf8) }
        let recheck = try result.map { (r) throws(OrchestraError) in try HubAgent.checkEmbeddedJSON(r) } ?? false
        try submit(key, HubAgent.resultType, finishes: true, capacity: (result?.count ?? 0) + 160, recheck: recheck) { rec, p in
            p.string("taskId", key.taskId)
            p.int("attempt", Int64(key.attempt))
            p.bool("success", success)
            if let result { result.withUnsafeBytes { p.compactJSON("result", $0) } }
            if let error { p.string("error", error) }
            p.int("duration", Int64((monotonicNanos() &- rec.assignedAtNs) / 1_000_000))
        }
    }

    public static let workerOutputTypes: Set<String> = ["user", "assistant", "tool", "tool-result", "system"]
    public static let workerStatuses: Set<String> = ["starting", "running", "paused", "completed", "error"]

    /// Sends worker.output; `detailsJSON` must be a JSON object.
    public func workerOutput(_ key: TaskKey, type: String, content: String, detailsJSON: String? = nil) throws(OrchestraError) {
        guard HubAgent.workerOutputTypes.contains(type) else {
            throw OrchestraError(.invalidArgument, "worker output type \"\(type)\" is not user, assistant, tool, tool-result or system")
        }
        let details = detailsJSON.map { Array($0.utf8) }
        let recheck = try details.map { (d) throws(OrchestraError) in try HubAgent.checkEmbeddedJSON(d) } ?? false
        if let details, details.first(where: { !HubAgent.isJSONWhitespace($0) }) != 0x7B {
            throw OrchestraError(.invalidArgument, "details_json must be a JSON object")
        }
        try submit(key, HubAgent.outputType, finishes: false, capacity: (details?.count ?? 0) + content.utf8.count + 200,
                   recheck: recheck) { _, p in
            p.string("agentId", options.agentId)
            p.string("taskId", key.taskId)
            p.int("attempt", Int64(key.attempt))
            p.string("type", type)
            p.string("content", content)
            p.int("timestamp", wallClockMillis())
            if let details { details.withUnsafeBytes { p.compactJSON("details", $0) } }
        }
    }

    /// Sends worker.status.
    public func workerStatus(_ key: TaskKey, status: String, message: String? = nil) throws(OrchestraError) {
        guard HubAgent.workerStatuses.contains(status) else {
            throw OrchestraError(.invalidArgument, "worker status \"\(status)\" is not starting, running, paused, completed or error")
        }
        try submit(key, HubAgent.statusType, finishes: false) { _, p in
            p.string("agentId", options.agentId)
            p.string("taskId", key.taskId)
            p.int("attempt", Int64(key.attempt))
            p.string("status", status)
            if let message { p.string("message", message) }
        }
    }

    /// Checks JSON text a caller gives to embed in a payload (result, details) with the errors
    /// `JSONValue.parse` gives. True when it is nested exactly as deep as the limit allows: the
    /// payload holding it is then one level too deep, which `submit` reports (`recheck`) as
    /// the payload check always has.
    private static func checkEmbeddedJSON(_ text: [UInt8]) throws(OrchestraError) -> Bool {
        let limits = DecodeLimits.default
        do throws(OrchestraError) {
            try JSONValidator.validate(text, limits: DecodeLimits(maxSize: limits.maxSize, maxDepth: limits.maxDepth - 1))
            return false
        } catch {
            guard error.code == .tooBig else { throw error }
            try JSONValidator.validate(text, limits: limits)
            return true
        }
    }

    private static let acceptedType = WireEvent.taskAccepted.bytes, rejectedType = WireEvent.taskRejected.bytes,
        progressType = WireEvent.taskProgress.bytes, streamType = WireEvent.taskStream.bytes, resultType = WireEvent.taskResult.bytes,
        outputType = WireEvent.workerOutput.bytes, statusType = WireEvent.workerStatus.bytes
    private static let version = Array("1.0".utf8)

    private static func isJSONWhitespace(_ c: UInt8) -> Bool { c == 0x20 || c == 0x0A || c == 0x0D || c == 0x09 }

    /// Sends (registered) or queues (not registered) one message about a task attempt in
    /// flight, in call order. The record is updated only when the message was taken.
    /// `write` writes the payload's members; the payload is not checked again (this agent
    /// wrote it), except for the size limit and, with `recheck`, the depth limit, which
    /// `setPayload(json:)` enforced when payloads were built as trees.
    private func submit(_ key: TaskKey, _ type: [UInt8], finishes: Bool, capacity: Int = 160, recheck: Bool = false,
                        _ write: (inout TaskRecord, inout JSONObjectWriter) -> Void) throws(OrchestraError) {
        var done: TaskRecord? = nil   // a finished record, let go of after the lock (see stopAll)
        defer { withExtendedLifetime(done) {} }
        try lock.withLock { () throws(OrchestraError) in
            guard !stopped else { throw OrchestraError(.closed, "the agent is \(stateValue)") }
            // One lookup: the record is read and written back (or removed) through its index.
            guard let index = tasks.index(forKey: key) else { throw OrchestraError(.notFound, "\(key) is not in flight") }
            var rec = tasks.values[index]
            var p = JSONObjectWriter(capacity: capacity)
            write(&rec, &p)
            let payload = p.finish()
            if recheck || payload.count > DecodeLimits.default.maxSize {
                try JSONValidator.validate(payload, limits: .default)
            }
            let m = Message(type: type, timestamp: wallClockMillis(), version: HubAgent.version, source: sourceBytes)
            if let traceId = rec.traceId { try? m.setHeader(HubAgent.traceKey, .string(traceId)) }
            m.setPayload(checkedJSON: payload)
            var w = ByteWriter(capacity: EnvelopeCodec.estimatedSize(m))
            try EnvelopeCodec.encode(m, format: .json, into: &w)
            if registered {
                do throws(OrchestraError) {
                    try HubAgent.send(w.bytes, client.send)
                } catch {
                    // Lost under us: the next registration sends it if the task is still ours.
                    guard error.code == .closed else { throw error }
                    try outbox.append(Array(w.bytes), task: key)
                }
            } else {
                try outbox.append(Array(w.bytes), task: key)
            }
            if finishes { done = tasks.remove(at: index).value } else { tasks.values[index] = rec }
        }
    }

    // MARK: Encoding

    /// Sends `bytes` as one text message through `send` (a connection's or the client's).
    private static func send(_ bytes: [UInt8], _ send: (Opcode, UnsafeRawBufferPointer) throws(OrchestraError) -> SendStatus) throws(OrchestraError) {
        var failure: OrchestraError? = nil
        bytes.withUnsafeBytes { b in
            do throws(OrchestraError) { _ = try send(.text, b) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    private static func send(_ bytes: UnsafeRawBufferPointer, _ send: (Opcode, UnsafeRawBufferPointer) throws(OrchestraError) -> SendStatus) throws(OrchestraError) {
        _ = try send(.text, bytes)
    }

    /// A JSON envelope of `type` with `payload` (agent.register, agent.heartbeat); returns its
    /// id and bytes. The payload is checked (metadata comes from the user and may be too deep).
    private func envelope(_ type: WireEvent, _ payload: JSONValue) throws(OrchestraError) -> (String, [UInt8]) {
        let m = Message(type: type.rawValue, source: options.agentId)
        try m.setPayload(json: payload.jsonBytes)
        return (m.id, try EnvelopeCodec.encode(m, format: .json))
    }

    /// 16 random bytes as 32 hex digits.
    static func nonce() -> String {
        var b = [UInt8](repeating: 0, count: 16)
        let ok = b.withUnsafeMutableBufferPointer { RAND_bytes($0.baseAddress, 16) == 1 }
        if !ok {
            // Never expected: OpenSSL's DRBG failed. A nonce must still never repeat.
            let t = monotonicNanos() ^ UInt64(bitPattern: wallClockMillis())
            for i in 0..<8 { b[i] = UInt8(truncatingIfNeeded: t >> (8 * UInt64(i))) }
        }
        return HMACSHA256.hex(b)
    }
}

/// The client's handler: forwards to the agent without keeping it alive (the agent owns the
/// client, the client owns its handler).
final class AgentLink: ClientHandler, @unchecked Sendable {
    weak var agent: HubAgent?

    func didOpen(_ c: Connection) { agent?.didOpen(c) }
    func didReceive(_ c: Connection, opcode: Opcode, bytes: UnsafeRawBufferPointer) {
        agent?.didReceive(c, opcode: opcode, bytes: bytes)
    }
    func didClose(_ c: Connection, code: UInt16, reason: String, clean: Bool) {
        agent?.didClose(c, code: code, reason: reason)
    }
    func stateChanged(_ client: Client, _ state: ClientState, reason: String) {
        agent?.clientStateChanged(state, reason: reason)
    }
    func urlChanged(_ client: Client, from: Int, to: Int, reason: String) {
        agent?.urlChanged(from: from, to: to, reason: reason)
    }
}
