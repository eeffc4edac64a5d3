import OrchestraCore
import OrchestraNet

/// The web side of the protocol: tasks, sessions, the registry, tokens, dead letters.
extension Hub {
    /// What a web request names, resolved before the authorization check (and given to the
    /// handler after it).
    struct WebFacts {
        var live: LiveTask? = nil
        var record: TaskRecord? = nil
        var session: SessionLog? = nil
    }

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
        // The ids the request names (PARAM_001 for a bad one), then what they are.
        var taskId: String? = nil, sessionId: String? = nil, readTask = false
        switch type {
        case "task.submit", "worker.start":
            taskId = try f.optionalId("taskId")
            sessionId = try f.optionalId("sessionId")
        case "task.cancel", "worker.input":
            taskId = try f.id("taskId")
            readTask = true   // it may run on another hub
        case "task.get":
            taskId = try f.id("taskId")
            readTask = true
        case "session.join", "session.share":
            sessionId = try f.id("sessionId")
        case "tasks.list":
            sessionId = try f.optionalId("sessionId")
        default:
            break
        }
        let reqId = m.id
        resolve(taskId: taskId, readingJournal: readTask, sessionId: sessionId) { [self] r in
            answer(p, reqId, type: type) { () throws(HubError) in
                let facts: WebFacts
                switch r {
                case .failure(let e): throw e
                case .success(let x): facts = x
                }
                var req = AccessRequest(type: type)
                dashboardFacts(&req, f)
                if let rec = facts.record {
                    req.task = TaskFacts(owner: rec.submitter, sessionId: rec.sessionId, leasedTo: nil)
                    req.target = "task \(rec.id)"
                }
                if let s = facts.session {
                    req.session = SessionFacts(owner: s.owner, sharedWith: s.sharedWith)
                    if req.target.isEmpty { req.target = "session \(s.id)" }
                }
                try authorize(p, Access.web, req)
                try perform(p, m, f, facts)
            }
        }
    }

    /// Finds the task (in memory; in the journal too with `readingJournal`) and the session
    /// (the one named, or the task's) a request names.
    func resolve(taskId: String?, readingJournal: Bool, sessionId: String?, _ done: @escaping (Result<WebFacts, HubError>) -> Void) {
        var facts = WebFacts()
        func withSession(_ sid: String?) {
            guard let sid else { done(.success(facts)); return }
            sessionLog(sid) { r in
                switch r {
                case .failure(let e): done(.failure(e))
                case .success(let s):
                    facts.session = s
                    done(.success(facts))
                }
            }
        }
        guard let taskId else { withSession(sessionId); return }
        if let t = live[taskId] {
            facts.live = t
            facts.record = t.rec
            withSession(sessionId ?? t.rec.sessionId)
            return
        }
        guard readingJournal else { withSession(sessionId); return }
        store.task(id: taskId) { r in
            switch r {
            case .failure(let e): done(.failure(HubError.database(e)))
            case .success(let rec):
                facts.record = rec
                withSession(sessionId ?? rec?.sessionId)
            }
        }
    }

    /// A web request that passed the check.
    func perform(_ p: Peer, _ m: Message, _ f: Fields, _ facts: WebFacts) throws(HubError) {
        let now = wallClockMillis()
        switch m.type {
        case "task.submit", "worker.start":
            var pinned: String? = nil
            if m.type == "worker.start" { pinned = try f.id("agentId") }
            try submitFromWeb(p, m, f, facts, pinned: pinned)
        case "task.cancel":
            let taskId = try f.id("taskId")
            if facts.live == nil, let rec = facts.record, !rec.state.isFinished {
                try cancelElsewhere(p, m, rec)
                return
            }
            guard let t = facts.live, !t.finishing else {
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
            guard let record = facts.record else { throw HubError(.invalidParameters, "task.get: no task '\(taskId)'", details: ["taskId": .string(taskId)]) }
            send(p, HubEnvelope.make("task.state", taskJSON(record), correlationId: m.id))
        case "session.join":
            try join(p, m, f, facts.session)
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
            try share(p, m, f, facts.session)
        case "agents.list":
            let reqId = m.id
            clusterAgents { [self] list in send(p, HubEnvelope.make("agents.updated", ["agents": .array(list)], correlationId: reqId)) }
        case "worker.input":
            let taskId = try f.id("taskId")
            if facts.live == nil, let rec = facts.record, rec.state == .assigned, let hub = rec.hubId, hub != hubId, liveHubs.contains(hub) {
                post(to: hub, .input, ["taskId": .string(taskId), "payload": f.v])
                send(p, HubEnvelope.make("worker.input.ok", ["taskId": .string(taskId)], correlationId: m.id))
                return
            }
            guard let t = facts.live, let agentId = t.rec.agentId, let a = agents[agentId], let c = a.connection else {
                throw HubError(.agentNotAvailable, "worker.input: task '\(taskId)' is not running on a connected agent")
            }
            var payload = f.v
            payload.set("attempt", .int(Int64(t.rec.attempt)))
            send(c, HubEnvelope.make("worker.input", payload), format: (c.attachment as? Peer)?.format ?? .json)
            send(p, HubEnvelope.make("worker.input.ok", ["taskId": .string(taskId)], correlationId: m.id))
        case "auth.refresh":
            // The user as the journal has them now: a removed, disabled or revoked user gets no
            // new token, whatever the open connection's token says.
            let reqId = m.id
            store.user(name: p.user) { [self] r in
                answer(p, reqId, type: "auth.refresh") { () throws(HubError) in
                    let account: UserAccount?
                    switch r {
                    case .failure(let e): throw HubError.database(e)
                    case .success(let a): account = a
                    }
                    if let why = revocation(of: account, generation: p.tokenGeneration) {
                        throw HubError(.authenticationFailed, "auth.refresh: \(why)", details: ["rule": "revocation"])
                    }
                    let token = Hub.issueToken(account!, ttlSeconds: config.tokenTTLSeconds, secret: jwtSecret, nowSeconds: now / 1000)
                    p.tokenExpiry = now / 1000 + config.tokenTTLSeconds
                    p.userRole = account!.role
                    send(p, HubEnvelope.make("auth.token", ["token": .string(token), "expiresAt": .int(p.tokenExpiry)], correlationId: reqId))
                }
            }
        case "dead.list":
            let limit = Int(try f.optionalInt("limit", in: 1...10_000) ?? 1000)
            let reqId = m.id
            store.deadLetters(limit: limit) { [self] r in
                answer(p, reqId, type: "dead.list") { () throws(HubError) in
                    switch r {
                    case .failure(let e): throw HubError.database(e)
                    case .success(let dead):
                        send(p, HubEnvelope.make("dead.letters", ["tasks": .array(dead.map(taskJSON))], correlationId: reqId))
                    }
                }
            }
        case "tasks.list", "stats.get", "alerts.list":
            try performDashboard(p, m, f, facts)
        case "dead.requeue":
            let taskId = try f.id("taskId")
            let reqId = m.id
            try openBatch()
            store.requeueDead(id: taskId, nowMs: now) { [self] r in
                answer(p, reqId, type: "dead.requeue") { () throws(HubError) in
                    let rec: TaskRecord
                    switch r {
                    case .failure(let e): throw HubError.database(e)
                    case .success(nil):
                        throw HubError(.invalidParameters, "dead.requeue: '\(taskId)' is not in the dead-letter list", details: ["taskId": .string(taskId)])
                    case .success(let x?): rec = x
                    }
                    live[rec.id] = LiveTask(rec)
                    pending[rec.priority].append(rec.id)
                    log.info("task.requeued", ["taskId": .string(rec.id), "by": .string(p.user)])
                    send(p, HubEnvelope.make("dead.requeued", ["taskId": .string(rec.id), "state": "queued"], correlationId: reqId))
                    dispatch()
                }
            }
        default:
            throw HubError(.invalidParameters, "unknown event type '\(m.type)' for a web client")
        }
    }

    /// task.submit and worker.start, after the check: a new task, or a retried submit of the
    /// caller's own task (its state, and the caller now receives its result).
    func submitFromWeb(_ p: Peer, _ m: Message, _ f: Fields, _ facts: WebFacts, pinned: String?) throws(HubError) {
        let reqId = m.id
        if let t = facts.live {
            t.submitter = p.conn.id   // the reconnected submitter gets the result
            send(p, submitted(t.rec, correlationId: reqId))
            return
        }
        let taskId = try f.optionalId("taskId") ?? String(decoding: Message.newId(), as: UTF8.self)
        let rec = try taskRecord(f, taskId: taskId, submitter: p, pinnedAgent: pinned, traceId: m.header("traceId"))
        if let sid = rec.sessionId, facts.session == nil { _ = try createSession(sid, owner: p.user) }
        try insert(rec, submitter: p, requestId: reqId) { [self] r in
            answer(p, reqId, type: m.type) { () throws(HubError) in
                switch r {
                case .failure(let e): throw e
                case .success(true):
                    send(p, submitted(rec, correlationId: reqId))
                    dispatch()
                    if let t = live[rec.id] { offerToOthers(t) }
                case .success(false):
                    // The id is an existing task's the check could not see (finished, or live on
                    // another hub): the same rule, with what the journal says of it.
                    store.task(id: taskId) { [self] r in
                        answer(p, reqId, type: m.type) { () throws(HubError) in
                            guard case .success(let found) = r else {
                                if case .failure(let e) = r { throw HubError.database(e) }
                                return
                            }
                            let existing = found ?? rec
                            var req = AccessRequest(type: m.type, target: "task \(existing.id)")
                            req.task = TaskFacts(owner: existing.submitter, sessionId: existing.sessionId, leasedTo: nil)
                            try authorize(p, Access.web, req)
                            send(p, submitted(existing, correlationId: reqId))
                            if let t = live[existing.id] {
                                t.submitter = p.conn.id
                            } else if existing.state.isFinished {
                                send(p, resultEvent(existing))
                            } else {
                                // Queued, or running on another hub: its events come here.
                                remoteSubmits[existing.id] = p.conn.id
                                if let hub = existing.hubId { post(to: hub, .resubmit, ["taskId": .string(existing.id), "hubId": .string(hubId)]) }
                            }
                        }
                    }
                }
            }
        }
    }

    /// task.cancel of a task this hub does not hold (queued, or running on another hub): the
    /// outcome is journaled here (fenced by attempt, so a result racing with it loses or wins
    /// cleanly), its hub tells the agent.
    func cancelElsewhere(_ p: Peer, _ m: Message, _ rec: TaskRecord) throws(HubError) {
        let t = liveTask(rec)
        send(p, HubEnvelope.make("task.cancelled", ["taskId": .string(rec.id)], correlationId: m.id))
        finish(t, success: false, result: nil, error: "cancelled by \(p.user)", errorCode: .taskExecutionFailed, dead: false, event: nil)
        if rec.state == .assigned, let hub = rec.hubId {
            post(to: hub, .cancel, ["taskId": .string(rec.id), "attempt": .int(Int64(rec.attempt)), "reason": .string("cancelled by \(p.user)")])
        }
    }

    /// The task.submitted answer for a task's record.
    func submitted(_ rec: TaskRecord, correlationId: String) -> Message {
        let live = live[rec.id]
        return HubEnvelope.make("task.submitted", ["taskId": .string(rec.id), "state": .string(live?.state ?? rec.state.rawValue),
                                                   "attempt": .int(Int64(live?.rec.attempt ?? rec.attempt))], correlationId: correlationId)
    }

    /// session.join after the check: a new session is made (owned by the caller); the watcher
    /// is one from now on (live events reach it, held while its replay is read), then gets
    /// `session.updated`, the replay of what came after `lastOffset`, and what came meanwhile.
    /// The journal says where the log starts and ends, for every hub's events.
    func join(_ p: Peer, _ m: Message, _ f: Fields, _ existing: SessionLog?) throws(HubError) {
        let sid = try f.id("sessionId")
        let last = try f.optionalInt("lastOffset", in: 0...Int64.max)
        if existing == nil && p.userRole == .viewer {
            throw HubError(.invalidParameters, "session.join: no session '\(sid)' (viewers watch sessions that exist)",
                           details: ["sessionId": .string(sid)])
        }
        if existing == nil, let last, last > 0 {
            throw HubError(.invalidParameters, "session.join: lastOffset \(last) is past the session's last event (0)",
                           details: ["sessionId": .string(sid), "oldestOffset": 1, "headOffset": 0])
        }
        let s: SessionLog
        if let existing { s = existing } else { s = try createSession(sid, owner: p.user) }
        let reqId = m.id
        // Events from here on reach the watcher after its replay.
        let resume = Resume()
        p.resuming[sid] = resume
        if s.watchers.isEmpty && s.ready.isEmpty { s.delivered = s.head }
        s.from[p.conn.id] = last ?? s.delivered
        watch(p, s)
        store.sessionSnapshot(sessionId: sid, after: last ?? Int64.max) { [self] r in
            guard p.resuming[sid] === resume else { return }
            p.resuming.removeValue(forKey: sid)
            answer(p, reqId, type: "session.join") { () throws(HubError) in
                let head: Int64, oldest: Int64, replay: [(offset: Int64, frame: [UInt8])]
                switch r {
                case .failure(let e):
                    unwatch(p, s)
                    throw HubError.database(e)
                case .success(nil):
                    (head, oldest, replay) = (0, 1, [])
                case .success(let snap?):
                    (head, oldest, replay) = (snap.head, snap.oldest, snap.events)
                }
                s.head = max(s.head, head)
                if let last {
                    if last > head || last < oldest - 1 {
                        unwatch(p, s)
                        let why = last > head ? "is past the session's last event (\(head))"
                            : "is older than the replay log, which starts at \(oldest) (recovery window and byte budget)"
                        throw HubError(.invalidParameters, "session.join: lastOffset \(last) \(why)",
                                       details: ["sessionId": .string(sid), "oldestOffset": .int(oldest), "headOffset": .int(head)])
                    }
                }
                let extra: [(String, JSONValue)] = last.map { [("replayed", .int(Int64(replay.count))), ("dropped", .int(head - $0 - Int64(replay.count)))] } ?? []
                send(p, sessionUpdated(s, correlationId: reqId, extra: extra, head: head, oldest: oldest))
                for e in replay { sendStored(p, e.frame, offset: e.offset) }
                var sent = replay.last?.offset ?? last ?? 0
                for (o, bytes) in resume.held where o > sent {
                    deliver(p.conn, p.format, bytes)
                    sent = o
                }
                // What the feed hands out from here on starts after what the watcher has (the
                // feed may be behind the replay: events of other hubs not fetched yet).
                s.from[p.conn.id] = max(s.from[p.conn.id] ?? 0, sent)
                // Events the journal has that this hub's feed has not handed out yet.
                if head > s.delivered { fetchEvents([s]) }
                log.info("session.joined", ["sessionId": .string(sid), "user": .string(p.user), "replayed": .int(Int64(replay.count))])
            }
        }
    }

    func watch(_ p: Peer, _ s: SessionLog) {
        s.watchers[p.conn.id] = p.user
        p.sessions.insert(s.id)
    }

    func unwatch(_ p: Peer, _ s: SessionLog) {
        s.watchers.removeValue(forKey: p.conn.id)
        s.from.removeValue(forKey: p.conn.id)
        p.sessions.remove(s.id)
        p.resuming.removeValue(forKey: s.id)
    }

    /// session.share after the check: the users the session is shared with become exactly
    /// `users`; watchers who lost access stop watching.
    func share(_ p: Peer, _ m: Message, _ f: Fields, _ s: SessionLog?) throws(HubError) {
        let sid = try f.id("sessionId")
        guard let s else { throw HubError(.invalidParameters, "session.share: no session '\(sid)'", details: ["sessionId": .string(sid)]) }
        guard f.v["users"] != nil else { throw f.bad("users", "is required (the full list; [] shares with nobody)") }
        let names = Set(try f.strings("users", maxCount: 1000)).sorted()
        let reqId = m.id
        store.accounts { [self] r in
            answer(p, reqId, type: "session.share") { () throws(HubError) in
                let known: Set<String>
                switch r {
                case .failure(let e): throw HubError.database(e)
                case .success(let (users, _)): known = Set(users.map(\.name))
                }
                if let n = names.first(where: { !known.contains($0) }) {
                    throw HubError(.invalidParameters, "session.share: no user '\(n)'", details: ["field": "users", "user": .string(n)])
                }
                try openBatch()
                store.setSessionShares(id: sid, users: names, logFailure("share session \(sid)"))
                s.sharedWith = Set(names)
                for connId in s.watchers.keys { if let w = webPeers[connId] { recheckWatches(w) } }
                log.info("session.shared", ["sessionId": .string(sid), "by": .string(p.user), "users": .array(names.map { .string($0) })])
                send(p, sessionUpdated(s, correlationId: reqId))
            }
        }
    }

    /// Ends the watches the peer may no longer have (the session was unshared, its role
    /// changed): the session.join rules, asked again.
    func recheckWatches(_ p: Peer) {
        for sid in p.sessions.sorted() {
            guard let s = sessions[sid], let rules = Access.web["session.join"] else { continue }
            let req = AccessRequest(type: "session.join", session: SessionFacts(owner: s.owner, sharedWith: s.sharedWith),
                                    target: "session \(sid)")
            do { try Access.check(rules, p.caller, req) } catch {
                unwatch(p, s)
                log.info("session.watch_ended", ["sessionId": .string(sid), "user": .string(p.user), "rule": .string(error.rule.rawValue)])
                send(p, HubEnvelope.make("session.updated", ["sessionId": .string(sid), "status": "left", "reason": .string(error.reason)]))
            }
        }
    }

    func sessionUpdated(_ s: SessionLog, correlationId: String?, extra: [(String, JSONValue)] = [], head: Int64? = nil, oldest: Int64? = nil) -> Message {
        let h = max(head ?? s.head, s.head)
        var o: JSONValue = [
            "sessionId": .string(s.id), "status": "active",
            "participants": .array(Array(Set(s.watchers.values)).sorted().map { .string($0) }),
            "owner": .string(s.owner), "sharedWith": .array(s.sharedWith.sorted().map { .string($0) }),
            "offset": .int(h), "headOffset": .int(h), "oldestOffset": .int(oldest ?? min(s.oldestOffset, h + 1)),
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

/// A watcher's resume in progress: the events its session's feed handed out while the replay
/// was read (with their offsets), which it gets after the replay.
final class Resume {
    var held: [(Int64, [UInt8])] = []
}
