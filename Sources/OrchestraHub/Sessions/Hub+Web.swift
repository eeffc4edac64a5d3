import OrchestraCore
import OrchestraNet

/// The web side of the protocol: tasks, sessions, the registry, tokens.
extension Hub {
    func handleWeb(_ p: Peer, _ m: Message) throws(HubError) {
        let now = wallClockMillis()
        if p.tokenExpiry > 0 && now / 1000 >= p.tokenExpiry {
            throw HubError(.authenticationFailed, "token expired at \(p.tokenExpiry); send auth.refresh before it expires")
        }
        if config.rateLimitPerMinute > 0 {
            let rate = Double(config.rateLimitPerMinute)
            p.tokens = min(rate, p.tokens + Double(now - p.tokensAtMs) * rate / 60_000)
            p.tokensAtMs = now
            guard p.tokens >= 1 else {
                throw HubError(.resourceExhausted, "rate limit: \(config.rateLimitPerMinute) requests a minute",
                               details: ["limitPerMinute": .int(Int64(config.rateLimitPerMinute))])
            }
            p.tokens -= 1
        }
        if let proto = m.header("protocol"), let v = Int64(proto), v > hubProtocolVersion {
            throw HubError(.invalidParameters, "protocol \(v) is newer than this hub's (\(hubProtocolVersion))")
        }
        let type = m.type
        let f = Fields(type, try HubEnvelope.payload(of: m))
        switch type {
        case "task.submit", "worker.start":
            var pinned: String? = nil
            if type == "worker.start" { pinned = try f.string("agentId", maxLength: 128) }
            let trace = m.header("traceId")
            let (rec, isNew) = try submit(f, submitter: p, pinnedAgent: pinned, traceId: trace)
            if isNew && batchOpen { batchSubmits.append((p.conn.id, m.id, rec.id)) }
            send(p, HubEnvelope.make("task.submitted", ["taskId": .string(rec.id), "state": .string(live[rec.id]?.state ?? rec.state.rawValue),
                                                        "attempt": .int(Int64(rec.attempt))], correlationId: m.id))
            dispatch()
        case "task.cancel":
            let taskId = try f.string("taskId", maxLength: 128)
            guard let t = live[taskId] else {
                throw HubError(.invalidParameters, "task.cancel: no unfinished task '\(taskId)'", details: ["taskId": .string(taskId)])
            }
            if let agentId = t.rec.agentId, let a = agents[agentId], let c = a.connection, t.rec.state == .assigned {
                send(c, HubEnvelope.make("task.cancel", ["taskId": .string(taskId), "attempt": .int(Int64(t.rec.attempt)), "reason": .string("cancelled by \(p.user)")]),
                     format: (c.attachment as? Peer)?.format ?? .json)
            }
            send(p, HubEnvelope.make("task.cancelled", ["taskId": .string(taskId)], correlationId: m.id))
            finish(t, success: false, result: nil, error: "cancelled by \(p.user)", errorCode: .taskExecutionFailed, dead: false, event: nil)
        case "task.get":
            let taskId = try f.string("taskId", maxLength: 128)
            let rec: TaskRecord?
            if let t = live[taskId] { rec = t.rec } else {
                do { rec = try journal.task(id: taskId) } catch { throw HubError.database(error) }
            }
            guard let rec else { throw HubError(.invalidParameters, "task.get: no task '\(taskId)'", details: ["taskId": .string(taskId)]) }
            send(p, HubEnvelope.make("task.state", taskJSON(rec), correlationId: m.id))
        case "session.join":
            let sid = try f.string("sessionId", maxLength: 128)
            let s = session(sid)
            var replay: [Message] = []
            if let last = try f.optionalInt("lastOffset", in: 0...Int64.max) {
                guard let missed = s.events(after: last) else {
                    throw HubError(.invalidParameters, "session.join: offset \(last) is older than the recovery window",
                                   details: ["oldestOffset": .int(s.oldestOffset), "sessionId": .string(sid)])
                }
                replay = missed
            }
            s.watchers[p.conn.id] = p.user
            p.sessions.insert(sid)
            send(p, sessionUpdated(s, correlationId: m.id))
            for e in replay { send(p, e) }
            log.info("session.joined", ["sessionId": .string(sid), "user": .string(p.user), "replayed": .int(Int64(replay.count))])
        case "session.leave":
            let sid = try f.string("sessionId", maxLength: 128)
            p.sessions.remove(sid)
            if let s = sessions[sid] {
                s.watchers.removeValue(forKey: p.conn.id)
                send(p, sessionUpdated(s, correlationId: m.id))
            } else {
                send(p, HubEnvelope.make("session.updated", ["sessionId": .string(sid), "status": "ended", "participants": []], correlationId: m.id))
            }
        case "agents.list":
            send(p, HubEnvelope.make("agents.updated", ["agents": .array(agents.values.sorted { $0.id < $1.id }.map { $0.json(maxLoad: config.maxLoadPerAgent) })],
                                     correlationId: m.id))
        case "worker.input":
            let taskId = try f.string("taskId", maxLength: 128)
            guard let t = live[taskId], let agentId = t.rec.agentId, let a = agents[agentId], let c = a.connection else {
                throw HubError(.agentNotAvailable, "worker.input: task '\(taskId)' is not running on a connected agent")
            }
            var payload = f.v
            payload.set("attempt", .int(Int64(t.rec.attempt)))
            send(c, HubEnvelope.make("worker.input", payload), format: (c.attachment as? Peer)?.format ?? .json)
            send(p, HubEnvelope.make("worker.input.ok", ["taskId": .string(taskId)], correlationId: m.id))
        case "auth.refresh":
            let token = JWT.issue(subject: p.user, role: p.userRole, ttlSeconds: config.tokenTTLSeconds, secret: jwtSecret, nowSeconds: now / 1000)
            p.tokenExpiry = now / 1000 + config.tokenTTLSeconds
            send(p, HubEnvelope.make("auth.token", ["token": .string(token), "expiresAt": .int(p.tokenExpiry)], correlationId: m.id))
        default:
            throw HubError(.invalidParameters, "unknown event type '\(type)' for a web client")
        }
    }

    func sessionUpdated(_ s: SessionLog, correlationId: String?) -> Message {
        HubEnvelope.make("session.updated", [
            "sessionId": .string(s.id), "status": "active",
            "participants": .array(Array(Set(s.watchers.values)).sorted().map { .string($0) }),
            "offset": .int(s.nextOffset - 1), "oldestOffset": .int(s.oldestOffset), "protocol": .int(hubProtocolVersion),
        ], correlationId: correlationId)
    }

    func taskJSON(_ rec: TaskRecord) -> JSONValue {
        var o: JSONValue = [
            "taskId": .string(rec.id), "state": .string(live[rec.id]?.state ?? rec.state.rawValue), "attempt": .int(Int64(rec.attempt)),
            "maxAttempts": .int(Int64(rec.maxAttempts)), "task": rec.spec, "traceId": .string(rec.traceId),
            "dead": .bool(rec.dead), "createdAt": .int(rec.createdMs), "updatedAt": .int(rec.updatedMs),
        ]
        if let a = rec.agentId { o.set("agentId", .string(a)) }
        if let r = rec.result { o.set("result", r) }
        if let e = rec.error { o.set("error", .string(e)) }
        if let c = rec.errorCode { o.set("errorCode", .string(c)) }
        if !rec.rejectedBy.isEmpty { o.set("rejectedBy", .array(rec.rejectedBy.map { .string($0) })) }
        return o
    }
}
