// C ABI of the agent SDK (header section AGENTS): option, handle, string and event
// conversion only; the protocol lives in OrchestraAgent.
import COrchestra
import Glibc
import OrchestraCore
import OrchestraAgent
import OrchestraNet

typealias AgentEventFn = @convention(c) (UnsafeMutableRawPointer?, OpaquePointer?, OpaquePointer?) -> Void

/// What an orc_agent_t points at: the agent, the user's data, and the hub URLs as C strings
/// (orc_agent_url hands them out; they live as long as the agent).
private final class CAgent {
    let agent: HubAgent
    let userData: UnsafeMutableRawPointer?
    let userDataFree: (@convention(c) (UnsafeMutableRawPointer?) -> Void)?
    let urls: [UnsafePointer<CChar>]
    init(_ agent: HubAgent, _ userData: UnsafeMutableRawPointer?, _ free: (@convention(c) (UnsafeMutableRawPointer?) -> Void)?) throws(OrchestraError) {
        var copies: [UnsafePointer<CChar>] = []
        for u in agent.options.urls {
            guard let c = strdup(u) else {
                for c in copies { Glibc.free(UnsafeMutablePointer(mutating: c)) }
                throw OrchestraError(.noMemory, "out of memory copying the hub URLs")
            }
            copies.append(UnsafePointer(c))
        }
        self.agent = agent
        self.userData = userData
        self.userDataFree = free
        urls = copies
    }
    deinit { for u in urls { Glibc.free(UnsafeMutablePointer(mutating: u)) } }
}

/// The C callback; its `handle` (the orc_agent_t) is set once the handle exists.
private final class CAgentCallback: @unchecked Sendable {
    let fn: AgentEventFn
    let userData: UnsafeMutableRawPointer?
    var handle: OpaquePointer? = nil
    init(_ fn: @escaping AgentEventFn, _ userData: UnsafeMutableRawPointer?) { self.fn = fn; self.userData = userData }
}

/// What an orc_agent_event_t points at: the event, and each string field as a malloc'd
/// NUL-terminated copy made on the first call of its getter (most callers read two or three of
/// the eight, and a task event's payload is the largest). Getters may be called from several
/// threads at once: the copies are made under a lock. A block holds the length (8 bytes)
/// before the text.
private final class CAgentEvent {
    enum Field: Int, CaseIterable { case taskId, taskJSON, paramsJSON, input, reason, code, payloadJSON, url }

    let event: AgentEvent
    private let lock = PthreadMutex()
    private let copies: UnsafeMutablePointer<UnsafeMutableRawPointer?>   // by Field, nil: not made yet

    init(_ e: AgentEvent) {
        event = e
        copies = .allocate(capacity: Field.allCases.count)
        copies.initialize(repeating: nil, count: Field.allCases.count)
    }

    deinit {
        for i in 0..<Field.allCases.count { free(copies[i]) }
        copies.deallocate()
    }

    private func value(_ f: Field) -> String? {
        switch f {
        case .taskId: return event.taskId
        case .taskJSON: return event.taskJSON
        case .paramsJSON: return event.parametersJSON
        case .input: return event.input
        case .reason: return event.reason
        case .code: return event.code
        case .payloadJSON: return event.payloadJSON
        case .url: return event.url
        }
    }

    /// Whether the event has the field.
    func has(_ f: Field) -> Bool { value(f) != nil }

    /// The field's text and length; nil for an absent field (or when out of memory).
    func text(_ f: Field) -> (UnsafePointer<CChar>, Int)? {
        let block: UnsafeMutableRawPointer? = lock.withLock {
            if let b = copies[f.rawValue] { return b }
            guard var s = value(f) else { return nil }
            let made: UnsafeMutableRawPointer? = s.withUTF8 { u in
                guard let b = malloc(8 + u.count + 1) else { return nil }
                b.storeBytes(of: u.count, as: Int.self)
                let t = (b + 8).assumingMemoryBound(to: CChar.self)
                if u.count > 0 { memcpy(t, u.baseAddress!, u.count) }
                t[u.count] = 0
                return b
            }
            copies[f.rawValue] = made
            return made
        }
        guard let block else { return nil }
        return (UnsafePointer((block + 8).assumingMemoryBound(to: CChar.self)), block.load(as: Int.self))
    }
}

/// The longest text argument of an action (a stream chunk's length is its own).
private let maxText = 64 << 20
/// The longest id, name or version.
private let maxName = 65_536

private func taskKey(_ id: UnsafePointer<CChar>?, _ attempt: UInt32) throws(OrchestraError) -> TaskKey {
    let s = try text(id, "task_id", max: maxName)
    guard !s.isEmpty else { throw OrchestraError(.invalidArgument, "task_id is empty") }
    return TaskKey(s, attempt)
}

@inline(__always)
private func withAgent<R>(_ a: OpaquePointer?, _ empty: R, _ body: (HubAgent) -> R) -> R {
    guard let a else { return empty }
    return (unmanaged(a) as Unmanaged<CAgent>)._withUnsafeGuaranteedRef { body($0.agent) }
}

@inline(__always)
private func withEvent<R>(_ e: OpaquePointer?, _ empty: R, _ body: (CAgentEvent) -> R) -> R {
    guard let e else { return empty }
    return (unmanaged(e) as Unmanaged<CAgentEvent>)._withUnsafeGuaranteedRef(body)
}

// MARK: Options and life

@_cdecl("orc_agent_options_init_sized")
public func orc_agent_options_init_sized(_ opts: UnsafeMutablePointer<orc_agent_options_t>?, _ structSize: Int) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let d = HubAgentOptions(url: "", agentId: "", keyId: "", secret: [])
        try structToInit(opts, structSize, "orc_agent_options_t", oldest: agentOptionsOldest) { o in
            o.pointee.max_concurrency = UInt32(d.maxConcurrency)
            o.pointee.request_timeout_ms = UInt32(d.requestTimeoutMs)
            o.pointee.connect_timeout_ms = UInt32(d.connectTimeoutMs)
            o.pointee.reconnect_initial_delay_ms = UInt32(d.reconnectInitialDelayMs)
            o.pointee.reconnect_max_delay_ms = UInt32(d.reconnectMaxDelayMs)
            o.pointee.tls_verify = 1
        }
    }
}

/// orc_agent_options_t of 0.1 ended before `urls` (appended after it, with url_count).
private let agentOptionsOldest = MemoryLayout<orc_agent_options_t>.offset(of: \.urls)!

/// The hub URLs of agent options: `url`, or the `url_count` strings of `urls` (not both).
private func agentURLs(_ o: orc_agent_options_t) throws(OrchestraError) -> [String] {
    let count = try cSize(o.url_count, "url_count")
    guard count > 0 else {
        guard o.url != nil else { throw OrchestraError(.invalidArgument, "url is required (or urls with url_count)") }
        return [try text(o.url, "url", max: 8192)]
    }
    guard o.url == nil else { throw OrchestraError(.invalidArgument, "set url or urls, not both") }
    let list = try required(o.urls, "urls")
    var urls: [String] = []
    for i in 0..<count {
        guard let u = list[i] else { throw OrchestraError(.invalidArgument, "urls[\(i)] is NULL") }
        urls.append(try text(u, "urls[]", max: 8192))
    }
    return urls
}

@_cdecl("orc_agent_new")
public func orc_agent_new(_ rt: OpaquePointer?, _ opts: UnsafePointer<orc_agent_options_t>?, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let out = try required(out, "out")
        out.pointee = nil
        let runtime = try handle(rt, Runtime.self, "rt")
        let o = try initialisedOptions(try required(opts, "opts"), "orc_agent_options_t", oldest: agentOptionsOldest)
        let urls = try agentURLs(o)
        guard o.agent_id != nil else { throw OrchestraError(.invalidArgument, "agent_id is required") }
        guard o.key_id != nil else { throw OrchestraError(.invalidArgument, "key_id is required") }
        let secret = try cBytes(o.secret, o.secret_len, "secret")
        var ao = HubAgentOptions(urls: urls, agentId: try text(o.agent_id, "agent_id", max: maxName),
                                 keyId: try text(o.key_id, "key_id", max: maxName), secret: Array(secret))
        ao.name = try optionalText(o.name, "name", max: maxName)
        if let v = try optionalText(o.version, "version", max: maxName) { ao.version = v }
        let capabilities = try cSize(o.capabilities_count, "capabilities_count")
        if capabilities > 0 {
            let list = try required(o.capabilities, "capabilities")
            for i in 0..<capabilities {
                guard let c = list[i] else { throw OrchestraError(.invalidArgument, "capabilities[\(i)] is NULL") }
                ao.capabilities.append(try text(c, "capability", max: maxName))
            }
        }
        if let m = try optionalText(o.metadata_json, "metadata_json", max: maxText) {
            let v: JSONValue
            do throws(OrchestraError) { v = try JSONValue.parse(m) } catch {
                throw OrchestraError(.invalidArgument, "metadata_json: \(error.message)")
            }
            guard v.object != nil else { throw OrchestraError(.invalidArgument, "metadata_json must be a JSON object") }
            ao.metadata = v
        }
        ao.maxConcurrency = Int(o.max_concurrency)
        ao.requestTimeoutMs = UInt64(o.request_timeout_ms)
        ao.connectTimeoutMs = UInt64(o.connect_timeout_ms)
        ao.reconnectInitialDelayMs = UInt64(o.reconnect_initial_delay_ms)
        ao.reconnectMaxDelayMs = UInt64(o.reconnect_max_delay_ms)
        // One TLS context for every wss:// URL of the list.
        ao.tls = try TLSContext.client(forURL: urls.first(where: WebSocketURL.isSecure) ?? urls[0]) { () throws(OrchestraError) in
            ClientTLSSettings(caFile: try optionalText(o.tls_ca_file, "tls_ca_file", max: 4096), verifyPeer: o.tls_verify != 0)
        }
        var callback: CAgentCallback? = nil
        var onEvent: ((AgentEvent) -> Void)? = nil
        if let fn = o.on_event {
            let cb = CAgentCallback(fn, o.user_data)
            callback = cb
            onEvent = { e in
                let box = CAgentEvent(e)
                withExtendedLifetime(box) {
                    cb.fn(cb.userData, cb.handle, OpaquePointer(Unmanaged.passUnretained(box).toOpaque()))
                }
            }
        }
        let agent = try HubAgent(runtime: runtime, options: ao, onEvent: onEvent)
        let h = retainedHandle(try CAgent(agent, o.user_data, o.user_data_free))
        callback?.handle = h
        out.pointee = h
    }
}

@_cdecl("orc_agent_start")
public func orc_agent_start(_ a: OpaquePointer?) -> Int32 {
    abiCall { () throws(OrchestraError) in try handle(a, CAgent.self, "agent").agent.start() }
}

@_cdecl("orc_agent_state")
public func orc_agent_state(_ a: OpaquePointer?) -> orc_agent_state_t {
    orc_agent_state_t(UInt32(withAgent(a, AgentState.closed) { $0.state }.rawValue))
}

@_cdecl("orc_agent_url")
public func orc_agent_url(_ a: OpaquePointer?, _ index: UnsafeMutablePointer<Int>?) -> UnsafePointer<CChar>? {
    index?.pointee = 0
    guard let a else { return nil }
    return (unmanaged(a) as Unmanaged<CAgent>)._withUnsafeGuaranteedRef { c in
        let i = c.agent.urlIndex
        index?.pointee = i
        return c.urls[i]
    }
}

@_cdecl("orc_agent_close")
public func orc_agent_close(_ a: OpaquePointer?) -> Int32 {
    abiCall { () throws(OrchestraError) in try handle(a, CAgent.self, "agent").agent.close() }
}

@_cdecl("orc_agent_free")
public func orc_agent_free(_ a: OpaquePointer?) {
    guard let a else { return }
    let u = unmanaged(a) as Unmanaged<CAgent>
    u._withUnsafeGuaranteedRef { c in
        c.agent.detachCallbacks()
        c.agent.close()
        c.userDataFree?(c.userData)
    }
    u.release()
}

// MARK: Events

@_cdecl("orc_agent_next_event")
public func orc_agent_next_event(_ a: OpaquePointer?, _ timeoutMs: Int64, _ out: UnsafeMutablePointer<OpaquePointer?>?) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let out = try required(out, "out")
        out.pointee = nil
        let e = try handle(a, CAgent.self, "agent").agent.nextEvent(timeoutMs: timeoutMs)
        out.pointee = retainedHandle(CAgentEvent(e))
    }
}

@_cdecl("orc_agent_fd")
public func orc_agent_fd(_ a: OpaquePointer?, _ fd: UnsafeMutablePointer<Int32>?) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let out = try required(fd, "fd")
        out.pointee = try handle(a, CAgent.self, "agent").agent.eventFD()
    }
}

@_cdecl("orc_agent_event_free")
public func orc_agent_event_free(_ e: OpaquePointer?) {
    guard let e else { return }
    (unmanaged(e) as Unmanaged<CAgentEvent>).release()
}

@_cdecl("orc_agent_event_get_kind")
public func orc_agent_event_get_kind(_ e: OpaquePointer?, _ out: UnsafeMutablePointer<orc_agent_event_kind_t>?) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let c = try handle(e, CAgentEvent.self, "ev")
        try required(out, "out").pointee = orc_agent_event_kind_t(UInt32(c.event.kind.rawValue))
    }
}

@_cdecl("orc_agent_event_kind")
public func orc_agent_event_kind(_ e: OpaquePointer?) -> Int32 {
    withEvent(e, ORC_EINVAL.rawValue) { $0.event.kind.rawValue }
}

@_cdecl("orc_agent_event_attempt")
public func orc_agent_event_attempt(_ e: OpaquePointer?) -> UInt32 {
    withEvent(e, 0) { $0.event.attempt }
}

@_cdecl("orc_agent_event_state")
public func orc_agent_event_state(_ e: OpaquePointer?) -> orc_agent_state_t {
    let s = withEvent(e, AgentState.closed) { $0.event.kind == .state ? $0.event.state : .closed }
    return orc_agent_state_t(UInt32(s.rawValue))
}

@_cdecl("orc_agent_event_view")
public func orc_agent_event_view(_ e: OpaquePointer?, _ view: UnsafeMutablePointer<orc_agent_event_view_t>?) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let c = try handle(e, CAgentEvent.self, "ev")
        let view = try required(view, "view")
        let size = try callerSized(view, "view", "orc_agent_event_view_t")
        let ev = c.event
        // A present field whose copy could not be made (out of memory) is an error, not absent.
        func string(_ f: CAgentEvent.Field) throws(OrchestraError) -> (UnsafePointer<CChar>?, Int) {
            if let t = c.text(f) { return (t.0, t.1) }
            if c.has(f) { throw OrchestraError(.noMemory, "out of memory copying an event field") }
            return (nil, 0)
        }
        let id = try string(.taskId), payload = try string(.payloadJSON), input = try string(.input)
        let reason = try string(.reason), code = try string(.code)
        view.pointee = orc_agent_event_view_t(
            struct_size: size, kind: ev.kind.rawValue,
            state: orc_agent_state_t(UInt32((ev.kind == .state ? ev.state : .closed).rawValue)),
            attempt: ev.attempt, task_id: id.0, task_id_len: id.1, payload_json: payload.0,
            payload_json_len: payload.1, input: input.0, input_len: input.1, reason: reason.0,
            reason_len: reason.1, code: code.0, code_len: code.1)
    }
}

/// What orc_agent_event_set_task_data attaches: the caller's pointer, and the function that
/// frees it, called once when the agent and every event let go of it (its deinit).
private final class CTaskData {
    let pointer: UnsafeMutableRawPointer
    /// nil once the attach failed: the caller still owns the pointer.
    var free: (@convention(c) (UnsafeMutableRawPointer?) -> Void)?
    init(_ pointer: UnsafeMutableRawPointer, _ free: (@convention(c) (UnsafeMutableRawPointer?) -> Void)?) {
        self.pointer = pointer
        self.free = free
    }
    deinit { free?(pointer) }
}

@_cdecl("orc_agent_event_set_task_data")
public func orc_agent_event_set_task_data(_ e: OpaquePointer?, _ data: UnsafeMutableRawPointer?,
                                          _ dataFree: (@convention(c) (UnsafeMutableRawPointer?) -> Void)?) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let c = try handle(e, CAgentEvent.self, "ev")
        let d = CTaskData(try required(data, "data"), dataFree)
        do throws(OrchestraError) { try c.event.attach(d) } catch {
            d.free = nil
            throw error
        }
    }
}

@_cdecl("orc_agent_event_task_data")
public func orc_agent_event_task_data(_ e: OpaquePointer?) -> UnsafeMutableRawPointer? {
    withEvent(e, nil) { ($0.event.taskData as? CTaskData)?.pointer }
}

@inline(__always)
private func field(_ e: OpaquePointer?, _ f: CAgentEvent.Field, _ len: UnsafeMutablePointer<Int>?) -> UnsafePointer<CChar>? {
    let t = withEvent(e, nil) { $0.text(f) }
    len?.pointee = t?.1 ?? 0
    return t?.0
}

@_cdecl("orc_agent_event_task_id")
public func orc_agent_event_task_id(_ e: OpaquePointer?, _ len: UnsafeMutablePointer<Int>?) -> UnsafePointer<CChar>? {
    field(e, .taskId, len)
}

@_cdecl("orc_agent_event_task_json")
public func orc_agent_event_task_json(_ e: OpaquePointer?, _ len: UnsafeMutablePointer<Int>?) -> UnsafePointer<CChar>? {
    field(e, .taskJSON, len)
}

@_cdecl("orc_agent_event_params_json")
public func orc_agent_event_params_json(_ e: OpaquePointer?, _ len: UnsafeMutablePointer<Int>?) -> UnsafePointer<CChar>? {
    field(e, .paramsJSON, len)
}

@_cdecl("orc_agent_event_input")
public func orc_agent_event_input(_ e: OpaquePointer?, _ len: UnsafeMutablePointer<Int>?) -> UnsafePointer<CChar>? {
    field(e, .input, len)
}

@_cdecl("orc_agent_event_reason")
public func orc_agent_event_reason(_ e: OpaquePointer?, _ len: UnsafeMutablePointer<Int>?) -> UnsafePointer<CChar>? {
    field(e, .reason, len)
}

@_cdecl("orc_agent_event_code")
public func orc_agent_event_code(_ e: OpaquePointer?, _ len: UnsafeMutablePointer<Int>?) -> UnsafePointer<CChar>? {
    field(e, .code, len)
}

@_cdecl("orc_agent_event_payload_json")
public func orc_agent_event_payload_json(_ e: OpaquePointer?, _ len: UnsafeMutablePointer<Int>?) -> UnsafePointer<CChar>? {
    field(e, .payloadJSON, len)
}

@_cdecl("orc_agent_event_url")
public func orc_agent_event_url(_ e: OpaquePointer?, _ len: UnsafeMutablePointer<Int>?) -> UnsafePointer<CChar>? {
    field(e, .url, len)
}

// MARK: Actions

@_cdecl("orc_agent_accept")
public func orc_agent_accept(_ a: OpaquePointer?, _ taskId: UnsafePointer<CChar>?, _ attempt: UInt32) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let agent = try handle(a, CAgent.self, "agent").agent
        try agent.accept(try taskKey(taskId, attempt))
    }
}

@_cdecl("orc_agent_reject")
public func orc_agent_reject(_ a: OpaquePointer?, _ taskId: UnsafePointer<CChar>?, _ attempt: UInt32, _ reason: UnsafePointer<CChar>?) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let agent = try handle(a, CAgent.self, "agent").agent
        let key = try taskKey(taskId, attempt)
        try agent.reject(key, reason: try optionalText(reason, "reason", max: maxText) ?? "rejected")
    }
}

@_cdecl("orc_agent_progress")
public func orc_agent_progress(_ a: OpaquePointer?, _ taskId: UnsafePointer<CChar>?, _ attempt: UInt32, _ percent: Double,
                               _ step: UnsafePointer<CChar>?) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let agent = try handle(a, CAgent.self, "agent").agent
        let key = try taskKey(taskId, attempt)
        try agent.progress(key, percent: percent, step: try optionalText(step, "step", max: maxText))
    }
}

@_cdecl("orc_agent_stream")
public func orc_agent_stream(_ a: OpaquePointer?, _ taskId: UnsafePointer<CChar>?, _ attempt: UInt32, _ type: UnsafePointer<CChar>?,
                             _ data: UnsafePointer<UInt8>?, _ len: Int) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let agent = try handle(a, CAgent.self, "agent").agent
        let key = try taskKey(taskId, attempt)
        let t = try text(type, "type", max: 64)
        try agent.stream(key, type: t, data: try cBytes(data, len, "data"))
    }
}

@_cdecl("orc_agent_result")
public func orc_agent_result(_ a: OpaquePointer?, _ taskId: UnsafePointer<CChar>?, _ attempt: UInt32, _ success: Int32,
                             _ resultJSON: UnsafePointer<CChar>?, _ error: UnsafePointer<CChar>?) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let agent = try handle(a, CAgent.self, "agent").agent
        let key = try taskKey(taskId, attempt)
        try agent.result(key, success: success != 0, resultJSON: try optionalText(resultJSON, "result_json", max: maxText),
                         error: try optionalText(error, "error", max: maxText))
    }
}

@_cdecl("orc_agent_worker_output")
public func orc_agent_worker_output(_ a: OpaquePointer?, _ taskId: UnsafePointer<CChar>?, _ attempt: UInt32, _ type: UnsafePointer<CChar>?,
                                    _ content: UnsafePointer<CChar>?, _ details: UnsafePointer<CChar>?) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let agent = try handle(a, CAgent.self, "agent").agent
        let key = try taskKey(taskId, attempt)
        try agent.workerOutput(key, type: try text(type, "type", max: 64), content: try text(content, "content", max: maxText),
                               detailsJSON: try optionalText(details, "details_json", max: maxText))
    }
}

@_cdecl("orc_agent_worker_status")
public func orc_agent_worker_status(_ a: OpaquePointer?, _ taskId: UnsafePointer<CChar>?, _ attempt: UInt32, _ status: UnsafePointer<CChar>?,
                                    _ message: UnsafePointer<CChar>?) -> Int32 {
    abiCall { () throws(OrchestraError) in
        let agent = try handle(a, CAgent.self, "agent").agent
        let key = try taskKey(taskId, attempt)
        try agent.workerStatus(key, status: try text(status, "status", max: 64), message: try optionalText(message, "message", max: maxText))
    }
}
