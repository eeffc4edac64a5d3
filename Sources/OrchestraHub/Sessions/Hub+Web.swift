import OrchestraCore
import OrchestraNet

/// The web side of the protocol: tasks, sessions, the registry, tokens, dead letters.
extension Hub {
    func handleWeb(_ p: Peer, _ m: Message) throws(HubError) {
        let now = wallClockMillis()
        if p.tokenExpiry > 0 && now / 1000 >= p.tokenExpiry {
            throw HubError(.authenticationFailed, "token expired at \(p.tokenExpiry); send auth.refresh before it expires",
                           details: ["rule": "web.token"])
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
        let type = m.type
        let f = Fields(type, try HubEnvelope.payload(of: m))
        // What the request names, for the authorization check (and the handler after it).
        var req = AccessRequest(type: type)
        var live: LiveTask? = nil
        var record: TaskRecord? = nil
        var session: SessionLog? = nil
        switch type {
        case "task.submit", "worker.start":
            if let id = try f.optionalId("taskId") {
                live = self.live[id]
                record = live?.rec
            }
            if let sid = try f.optionalId("sessionId") { session = try sessionLog(sid) }
        case "task.cancel", "worker.input":
            let id = try f.id("taskId")
            live = self.live[id]
            record = live?.rec
        case "task.get":
            let id = try f.id("taskId")
            live = self.live[id]
            if let live { record = live.rec } else {
                do { record = try journal.task(id: id) } catch { throw HubError.database(error) }
            }
            if let sid = record?.sessionId { session = try sessionLog(sid) }
        case "session.join", "session.share":
            session = try sessionLog(try f.id("sessionId"))
        default:
            break
        }
        if let record {
            req.task = TaskFacts(owner: record.submitter, sessionId: record.sessionId, leasedTo: nil)
            req.target = "task \(record.id)"
        }
        if let session {
            req.session = SessionFacts(owner: session.owner, sharedWith: session.sharedWith)
            if req.target.isEmpty { req.target = "session \(session.id)" }
        }
        try authorize(p, Access.web, req)

        switch type {
        case "task.submit", "worker.start":
            var pinned: String? = nil
            if type == "worker.start" { pinned = try f.id("agentId") }
            try submitFromWeb(p, m, f, pinned: pinned)
        case "task.cancel":
            let taskId = try f.id("taskId")
            guard let t = live else {
                throw HubError(.invalidParameters, "task.cancel: no unfinished task '\(taskId)'", details: ["taskId": .string(taskId)])
            }
            if let agentId = t.rec.agentId, let a = agents[agentId], let c = a.connection, t.rec.state == .assigned {
                send(c, HubEnvelope.make("task.cancel", ["taskId": .string(taskId), "attempt": .int(Int64(t.rec.attempt)), "reason": .string("cancelled by \(p.user)")]),
                     format: (c.attachment as? Peer)?.format ?? .json)
            }
            send(p, HubEnvelope.make("task.cancelled", ["taskId": .string(taskId)], correlationId: m.id))
            finish(t, success: false, result: nil, error: "cancelled by \(p.user)", errorCode: .taskExecutionFailed, dead: false, event: nil)
        case "task.get":
            let taskId = try f.id("taskId")
            guard let record else { throw HubError(.invalidParameters, "task.get: no task '\(taskId)'", details: ["taskId": .string(taskId)]) }
            send(p, HubEnvelope.make("task.state", taskJSON(record), correlationId: m.id))
        case "session.join":
            try join(p, m, f, session)
        case "session.leave":
            let sid = try f.id("sessionId")
            p.sessions.remove(sid)
            if let s = sessions[sid] {
                s.watchers.removeValue(forKey: p.conn.id)
                send(p, sessionUpdated(s, correlationId: m.id))
            } else {
                send(p, HubEnvelope.make("session.updated", ["sessionId": .string(sid), "status": "ended", "participants": []], correlationId: m.id))
            }
        case "session.share":
            try share(p, m, f, session)
        case "agents.list":
            send(p, HubEnvelope.make("agents.updated", ["agents": .array(agents.values.sorted { $0.id < $1.id }.map { $0.json(maxLoad: config.maxLoadPerAgent) })],
                                     correlationId: m.id))
        case "worker.input":
            let taskId = try f.id("taskId")
            guard let t = live, let agentId = t.rec.agentId, let a = agents[agentId], let c = a.connection else {
                throw HubError(.agentNotAvailable, "worker.input: task '\(taskId)' is not running on a connected agent")
            }
            var payload = f.v
            payload.set("attempt", .int(Int64(t.rec.attempt)))
            send(c, HubEnvelope.make("worker.input", payload), format: (c.attachment as? Peer)?.format ?? .json)
            send(p, HubEnvelope.make("worker.input.ok", ["taskId": .string(taskId)], correlationId: m.id))
        case "auth.refresh":
            // The user as the journal has them now: a removed, disabled or revoked user gets no
            // new token, whatever the open connection's token says.
            let account: UserAccount?
            do { account = try journal.user(name: p.user)?.account } catch { throw HubError.database(error) }
            if let why = revocation(of: account, generation: p.tokenGeneration) {
                throw HubError(.authenticationFailed, "auth.refresh: \(why)", details: ["rule": "revocation"])
            }
            let token = Hub.issueToken(account!, ttlSeconds: config.tokenTTLSeconds, secret: jwtSecret, nowSeconds: now / 1000)
            p.tokenExpiry = now / 1000 + config.tokenTTLSeconds
            p.userRole = account!.role
            send(p, HubEnvelope.make("auth.token", ["token": .string(token), "expiresAt": .int(p.tokenExpiry)], correlationId: m.id))
        case "dead.list":
            let limit = Int(try f.optionalInt("limit", in: 1...10_000) ?? 1000)
            let dead: [TaskRecord]
            do { dead = try journal.deadLetters(limit: limit) } catch { throw HubError.database(error) }
            send(p, HubEnvelope.make("dead.letters", ["tasks": .array(dead.map(taskJSON))], correlationId: m.id))
        case "dead.requeue":
            let taskId = try f.id("taskId")
            let rec: TaskRecord?
            do {
                rec = try journaled { () throws(OrchestraError) -> TaskRecord? in
                    guard try journal.requeue(id: taskId, nowMs: now) else { return nil }
                    return try journal.task(id: taskId)
                }
            } catch { throw HubError.database(error) }
            guard let rec else {
                throw HubError(.invalidParameters, "dead.requeue: '\(taskId)' is not in the dead-letter list", details: ["taskId": .string(taskId)])
            }
            self.live[rec.id] = LiveTask(rec)
            pending[rec.priority].append(rec.id)
            log.info("task.requeued", ["taskId": .string(rec.id), "by": .string(p.user)])
            send(p, HubEnvelope.make("dead.requeued", ["taskId": .string(rec.id), "state": "queued"], correlationId: m.id))
            dispatch()
        default:
            throw HubError(.invalidParameters, "unknown event type '\(type)' for a web client")
        }
    }

    /// task.submit and worker.start, after the check: a new task, or a retried submit of the
    /// caller's own task (its state, and the caller now receives its result).
    func submitFromWeb(_ p: Peer, _ m: Message, _ f: Fields, pinned: String?) throws(HubError) {
        var (rec, isNew) = try submit(f, submitter: p, pinnedAgent: pinned, traceId: m.header("traceId"))
        if !isNew, live[rec.id] == nil {
            // The id is a finished task's (the check only saw the live ones): the same rule,
            // with what the journal says of it.
            var req = AccessRequest(type: m.type, target: "task \(rec.id)")
            req.task = TaskFacts(owner: rec.submitter, sessionId: rec.sessionId, leasedTo: nil)
            try authorize(p, Access.web, req)
            do { rec = try journal.task(id: rec.id) ?? rec } catch { throw HubError.database(error) }
        }
        if isNew && batchOpen { batchSubmits.append((p.conn.id, m.id, rec.id)) }
        send(p, HubEnvelope.make("task.submitted", ["taskId": .string(rec.id), "state": .string(live[rec.id]?.state ?? rec.state.rawValue),
                                                    "attempt": .int(Int64(rec.attempt))], correlationId: m.id))
        if !isNew {
            if let t = live[rec.id] {
                t.submitter = p.conn.id   // the reconnected submitter gets the result
            } else if rec.state.isFinished {
                send(p, resultEvent(rec))
            }
        }
        dispatch()
    }

    /// session.join after the check: a new session is made (owned by the caller), a resume
    /// checks the offset, then the watcher gets `session.updated` and the replay.
    func join(_ p: Peer, _ m: Message, _ f: Fields, _ existing: SessionLog?) throws(HubError) {
        let sid = try f.id("sessionId")
        let last = try f.optionalInt("lastOffset", in: 0...Int64.max)
        if existing == nil && p.userRole == .viewer {
            throw HubError(.invalidParameters, "session.join: no session '\(sid)' (viewers watch sessions that exist)",
                           details: ["sessionId": .string(sid)])
        }
        // A new session has no event yet: head 0, oldest 1.
        let head = existing?.head ?? 0, oldest = existing?.oldestOffset ?? 1
        if let last, last > head || last < oldest - 1 {
            let why = last > head ? "is past the session's last event (\(head))"
                : "is older than the replay log, which starts at \(oldest) (recovery window and byte budget)"
            throw HubError(.invalidParameters, "session.join: lastOffset \(last) \(why)",
                           details: ["sessionId": .string(sid), "oldestOffset": .int(oldest), "headOffset": .int(head)])
        }
        let s: SessionLog
        if let existing { s = existing } else { s = try createSession(sid, owner: p.user) }
        var replay: [(offset: Int64, frame: [UInt8])] = []
        if let last {
            do { replay = try journal.sessionEvents(sessionId: sid, after: last) } catch { throw HubError.database(error) }
        }
        s.watchers[p.conn.id] = p.user
        p.sessions.insert(sid)
        var extra: [(String, JSONValue)] = []
        if let last {
            extra = [("replayed", .int(Int64(replay.count))), ("dropped", .int(s.head - last - Int64(replay.count)))]
        }
        send(p, sessionUpdated(s, correlationId: m.id, extra: extra))
        for e in replay { sendStored(p, e.frame) }
        log.info("session.joined", ["sessionId": .string(sid), "user": .string(p.user), "replayed": .int(Int64(replay.count))])
    }

    /// session.share after the check: the users the session is shared with become exactly
    /// `users`; watchers who lost access stop watching.
    func share(_ p: Peer, _ m: Message, _ f: Fields, _ s: SessionLog?) throws(HubError) {
        let sid = try f.id("sessionId")
        guard let s else { throw HubError(.invalidParameters, "session.share: no session '\(sid)'", details: ["sessionId": .string(sid)]) }
        guard f.v["users"] != nil else { throw f.bad("users", "is required (the full list; [] shares with nobody)") }
        let names = Set(try f.strings("users", maxCount: 1000))
        for n in names.sorted() {
            let known: Bool
            do { known = try journal.user(name: n) != nil } catch { throw HubError.database(error) }
            guard known else { throw HubError(.invalidParameters, "session.share: no user '\(n)'", details: ["field": "users", "user": .string(n)]) }
        }
        do { try journaled { () throws(OrchestraError) in try journal.setSessionShares(id: sid, users: names.sorted()) } } catch {
            throw HubError.database(error)
        }
        s.sharedWith = names
        for connId in s.watchers.keys { if let w = webPeers[connId] { recheckWatches(w) } }
        log.info("session.shared", ["sessionId": .string(sid), "by": .string(p.user), "users": .array(names.sorted().map { .string($0) })])
        send(p, sessionUpdated(s, correlationId: m.id))
    }

    /// Ends the watches the peer may no longer have (the session was unshared, its role
    /// changed): the session.join rules, asked again.
    func recheckWatches(_ p: Peer) {
        for sid in p.sessions.sorted() {
            guard let s = sessions[sid], let rules = Access.web["session.join"] else { continue }
            let req = AccessRequest(type: "session.join", session: SessionFacts(owner: s.owner, sharedWith: s.sharedWith),
                                    target: "session \(sid)")
            do { try Access.check(rules, p.caller, req) } catch {
                s.watchers.removeValue(forKey: p.conn.id)
                p.sessions.remove(sid)
                log.info("session.watch_ended", ["sessionId": .string(sid), "user": .string(p.user), "rule": .string(error.rule.rawValue)])
                send(p, HubEnvelope.make("session.updated", ["sessionId": .string(sid), "status": "left", "reason": .string(error.reason)]))
            }
        }
    }

    func sessionUpdated(_ s: SessionLog, correlationId: String?, extra: [(String, JSONValue)] = []) -> Message {
        var o: JSONValue = [
            "sessionId": .string(s.id), "status": "active",
            "participants": .array(Array(Set(s.watchers.values)).sorted().map { .string($0) }),
            "owner": .string(s.owner), "sharedWith": .array(s.sharedWith.sorted().map { .string($0) }),
            "offset": .int(s.head), "headOffset": .int(s.head), "oldestOffset": .int(s.oldestOffset),
            "protocol": .int(hubProtocolVersion),
        ]
        for (k, v) in extra { o.set(k, v) }
        return HubEnvelope.make("session.updated", o, correlationId: correlationId)
    }

    func taskJSON(_ rec: TaskRecord) -> JSONValue {
        var o: JSONValue = [
            "taskId": .string(rec.id), "state": .string(live[rec.id]?.state ?? rec.state.rawValue), "attempt": .int(Int64(rec.attempt)),
            "maxAttempts": .int(Int64(rec.maxAttempts)), "task": rec.spec, "traceId": .string(rec.traceId),
            "dead": .bool(rec.dead), "createdAt": .int(rec.createdMs), "updatedAt": .int(rec.updatedMs),
        ]
        if let s = rec.submitter { o.set("submitter", .string(s)) }
        if let a = rec.agentId { o.set("agentId", .string(a)) }
        if let r = rec.result { o.set("result", r) }
        if let e = rec.error { o.set("error", .string(e)) }
        if let c = rec.errorCode { o.set("errorCode", .string(c)) }
        if !rec.rejectedBy.isEmpty { o.set("rejectedBy", .array(rec.rejectedBy.map { .string($0) })) }
        return o
    }
}
