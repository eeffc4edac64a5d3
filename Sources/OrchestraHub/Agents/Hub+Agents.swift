import OrchestraCore
import OrchestraNet

/// The agent side of the protocol: registration, heartbeats, and what agents say about tasks.
extension Hub {
    func handleAgent(_ p: Peer, _ m: Message) throws(HubError) {
        let type = m.type
        guard let agentId = p.agentId, let a = agents[agentId], a.connection === p.conn else {
            // Before registration only agent.register is heard (and anything else closes).
            guard type == "agent.register" else {
                throw denied(who: p.caller, request: AccessRequest(type: type),
                             AccessDenial(rule: .registerFirst, reason: "\(type) before agent.register: register first"), conn: p.conn)
            }
            try register(p, m)
            return
        }
        let now = wallClockMillis()
        a.lastSeenMs = now
        let f = Fields(type, try HubEnvelope.payload(of: m))
        // The task a task.* or worker.* message is about, for the lease rule.
        var req = AccessRequest(type: type)
        var t: LiveTask? = nil
        if type != "agent.heartbeat" && type != "agent.register", Access.agent[type] != nil {
            let taskId = try f.id("taskId")
            t = live[taskId]
            req.target = "task \(taskId)"
            // The lease of the attempt the message names (its current one when it names none):
            // a late message of an earlier attempt is not a claim on the lease, only stale.
            if let t, t.rec.state == .assigned, f.v["attempt"]?.int.map({ $0 == Int64(t.rec.attempt) }) ?? true {
                req.task = TaskFacts(owner: t.rec.submitter, sessionId: t.rec.sessionId, leasedTo: t.rec.agentId)
            }
        }
        try authorize(p, Access.agent, req)
        switch type {
        case "agent.heartbeat":
            if let info = try f.object("systemInfo") {
                a.systemInfo = info
                a.cpu = info["cpu"]?.double ?? 0
                a.memory = info["memory"]?.double ?? 0
            }
            for id in a.inFlight { live[id]?.leaseDeadlineMs = now + config.leaseMs }
        case "task.accepted":
            guard let t = try current(t, f, a) else { return }
            t.running = true
            t.leaseDeadlineMs = now + config.leaseMs
            log.debug("task.accepted", ["taskId": .string(t.rec.id), "attempt": .int(Int64(t.rec.attempt)), "agentId": .string(a.id), "traceId": .string(t.rec.traceId)])
            publish(t, m)
        case "task.rejected":
            guard let t = try current(t, f, a) else { return }
            let reason = try f.optionalString("reason") ?? ""
            a.inFlight.remove(t.rec.id)
            t.rec.rejectedBy.append(a.id)
            log.info("task.rejected", ["taskId": .string(t.rec.id), "attempt": .int(Int64(t.rec.attempt)), "agentId": .string(a.id),
                                       "reason": .string(reason), "traceId": .string(t.rec.traceId)])
            publish(t, m)
            requeue(t, why: "rejected by \(a.id): \(reason)", rejection: true)
            dispatch()
        case "task.progress":
            guard let t = try current(t, f, a) else { return }
            _ = try f.optionalDouble("progress")
            t.leaseDeadlineMs = now + config.leaseMs
            publish(t, m)
        case "task.stream":
            guard let t = try current(t, f, a) else { return }
            let seq = try f.int("seq")
            t.leaseDeadlineMs = now + config.leaseMs
            if !t.seqKnown {
                t.nextSeq = seq
                t.seqKnown = true
            }
            if seq < t.nextSeq { return }  // a duplicate
            if seq > t.nextSeq {
                let size = m.payload?.count ?? 0
                guard t.early.count < 4096, t.earlyBytes + size <= config.replaySessionBytes else {
                    throw HubError(.resourceExhausted, "task.stream: more than 4096 chunks or \(config.replaySessionBytes) bytes ahead of seq \(t.nextSeq)")
                }
                if t.early.updateValue(m, forKey: seq) == nil { t.earlyBytes += size }
                return
            }
            publish(t, m)
            t.nextSeq += 1
            while let next = t.early.removeValue(forKey: t.nextSeq) {
                t.earlyBytes -= next.payload?.count ?? 0
                publish(t, next)
                t.nextSeq += 1
            }
        case "task.result":
            guard let t = try current(t, f, a) else { return }
            let success = try f.bool("success")
            // Chunks still waiting for a gap go out before the result, in order.
            for seq in t.early.keys.sorted() { publish(t, t.early[seq]!) }
            t.early.removeAll()
            t.earlyBytes = 0
            finish(t, success: success, result: f.v["result"], error: try f.optionalString("error"),
                   errorCode: success ? nil : .taskExecutionFailed, dead: false, event: m)
        case "worker.output", "worker.status":
            if let t, t.rec.agentId == a.id, t.rec.state == .assigned { publish(t, m) }
        default:
            throw HubError(.invalidParameters, "unknown event type '\(type)' for an agent")
        }
    }

    /// `t` when the message is about its current attempt; nil (the message is ignored and
    /// logged) for an old attempt, a finished or unknown task. The lease rule has already
    /// refused messages about a task leased to another agent.
    func current(_ t: LiveTask?, _ f: Fields, _ a: AgentEntry) throws(HubError) -> LiveTask? {
        let attempt = try f.int("attempt")
        guard let t, t.rec.agentId == a.id, Int64(t.rec.attempt) == attempt, t.rec.state == .assigned, !t.finishing else {
            let taskId = f.v["taskId"]?.string ?? ""
            log.info("task.stale_message", ["taskId": .string(taskId), "attempt": .int(attempt), "agentId": .string(a.id), "type": .string(f.event),
                                            "currentAttempt": .int(Int64(t?.rec.attempt ?? -1))])
            return nil
        }
        return t
    }

    /// What an agent.register asks for, once its fields are checked.
    struct Registration {
        let claims: RegistrationClaims
        let signature: String
        let name: String
        let capabilities: Set<String>
        let version: String
        let metadata: JSONValue
        let maxConcurrency: Int
        let inFlight: [(String, Int64)]
    }

    /// agent.register: fields (PARAM_001), then, reading the journal, the key and the
    /// signature, the nonce, the key's scope and the id's binding (AUTH_001), then the agent
    /// is registered. Nothing else the connection sends is read until that is decided.
    func register(_ p: Peer, _ m: Message) throws(HubError) {
        let payload = try HubEnvelope.payload(of: m)
        let claims: RegistrationClaims, signature: String
        switch RegistrationAuth.parse(payload) {
        case .failure(let f): throw HubError(.invalidParameters, "agent.register: \(f.reason)")
        case .success(let (c, sig)): (claims, signature) = (c, sig)
        }
        let f = Fields("agent.register", payload)
        var inFlight: [(String, Int64)] = []
        if let list = payload["inFlight"]?.array {
            for item in list {
                guard let id = item["taskId"]?.string, let att = item["attempt"]?.int else {
                    throw HubError(.invalidParameters, "agent.register: inFlight items are {taskId, attempt}")
                }
                inFlight.append((id, att))
            }
        }
        let reg = Registration(claims: claims, signature: signature, name: try f.optionalString("name", maxLength: 256) ?? claims.agentId,
                               capabilities: Set(try f.strings("capabilities")), version: try f.optionalString("version", maxLength: 64) ?? "",
                               metadata: try f.object("metadata") ?? .object([]),
                               maxConcurrency: Int(try f.optionalInt("maxConcurrency", in: 1...100_000) ?? Int64(config.maxLoadPerAgent)),
                               inFlight: inFlight)
        let reqId = m.id, conn = p.conn
        conn.holdReading()
        /// Runs one step of the registration: a journal failure is DB_001, a refusal AUTH_001;
        /// either ends it (reading resumes so the close handshake can finish).
        func step<T>(_ r: Result<T, OrchestraError>, _ body: (T) throws(HubError) -> Bool) {
            var finished = true
            answer(p, reqId, type: "agent.register") { () throws(HubError) in
                switch r {
                case .failure(let e): throw HubError.database(e)
                case .success(let v): finished = try body(v)
                }
            }
            if finished { conn.resumeReading() }
        }
        store.keySecret(id: claims.keyId) { [self] r in step(r) { (secret) throws(HubError) in
            guard let secret else { throw refusal(RegistrationAuth.unknownKey(claims.keyId)) }
            let now = wallClockMillis()
            if let f = RegistrationAuth.check(claims, signature: reg.signature, secret: secret, nowMs: now, maxSkewMs: config.maxClockSkewMs) {
                throw refusal(f)
            }
            try openBatch()
            store.rememberNonce(keyId: claims.keyId, nonce: claims.nonce, timestampMs: claims.timestampMs, nowMs: now) { [self] r in step(r) { (fresh) throws(HubError) in
                guard fresh else { throw refusal(RegistrationAuth.replayedNonce) }
                store.agentBinding(agentId: claims.agentId) { [self] r in step(r) { (bound) throws(HubError) in
                    store.keyAccount(id: claims.keyId) { [self] r in step(r) { (key) throws(HubError) in
                        if let key { keyAccounts[key.id] = key }
                        try authorize(p, Access.agent, AccessRequest(
                            type: "agent.register",
                            registration: RegistrationFacts(agentId: claims.agentId, keyId: claims.keyId, boundKey: bound, scope: key?.agents),
                            target: "agent \(claims.agentId) key \(claims.keyId)"))
                        guard bound == nil else { admit(p, reg, reqId); return true }
                        try openBatch()
                        store.bindAgent(agentId: claims.agentId, keyId: claims.keyId, nowMs: wallClockMillis()) { [self] r in step(r) { (owner) throws(HubError) in
                            // Another hub bound it to another key meanwhile: the same rule.
                            try authorize(p, Access.agent, AccessRequest(
                                type: "agent.register",
                                registration: RegistrationFacts(agentId: claims.agentId, keyId: claims.keyId, boundKey: owner, scope: key?.agents),
                                target: "agent \(claims.agentId) key \(claims.keyId)"))
                            admit(p, reg, reqId)
                            return true
                        }}
                        return false
                    }}
                    return false
                }}
                return false
            }}
            return false
        }}
    }

    /// AUTH_001 for a registration the credentials do not carry (closes the connection).
    func refusal(_ f: AuthFailure) -> HubError {
        HubError(.authenticationFailed, "agent.register: \(f.reason)", details: ["rule": "agent.signature"])
    }

    /// Registers the agent of an accepted agent.register: the registry entry (taking over an
    /// older connection of the same id), the in-flight tasks it keeps, the answer.
    func admit(_ p: Peer, _ reg: Registration, _ requestId: String) {
        guard !p.closing, p.conn.attachment === p else { return }
        let now = wallClockMillis()
        let claims = reg.claims
        let name = reg.name, capabilities = reg.capabilities, version = reg.version, metadata = reg.metadata
        let maxConcurrency = reg.maxConcurrency, claimsInFlight = reg.inFlight
        // A second connection with the same agent id takes over; the old one is closed.
        let a: AgentEntry
        if let existing = agents[claims.agentId] {
            if let old = existing.connection, old !== p.conn, let oldPeer = old.attachment as? Peer {
                oldPeer.agentId = nil
                oldPeer.closing = true
                close(old, code: 4000, reason: "replaced by a new connection of this agent")
            }
            a = existing
            a.name = name
            a.capabilities = capabilities
            a.version = version
            a.metadata = metadata
            a.maxConcurrency = maxConcurrency
            a.keyId = claims.keyId
            a.connection = p.conn
            a.connectedAtMs = now
            a.lastSeenMs = now
            a.online = true
            a.latencyMicros = 0
        } else {
            a = AgentEntry(id: claims.agentId, name: name, capabilities: capabilities, version: version, metadata: metadata,
                           maxConcurrency: maxConcurrency, keyId: claims.keyId, connection: p.conn, nowMs: now)
            agents[a.id] = a
        }
        p.agentId = a.id
        p.keyId = claims.keyId

        // Another hub may still have its previous connection: that one is closed there, and its
        // tasks come here with it.
        for hub in liveHubs where hub != hubId { post(to: hub, .replace, ["agentId": .string(a.id), "hubId": .string(hubId)]) }

        // Tasks the agent still runs: kept when they are still its own (same attempt), here or
        // in the journal (leased on another hub, which it left).
        var local: [(String, Int64)] = [], elsewhere: [(taskId: String, attempt: Int64)] = []
        for (taskId, attempt) in claimsInFlight {
            if let t = live[taskId], t.rec.state == .assigned, t.rec.agentId == a.id, Int64(t.rec.attempt) == attempt {
                local.append((taskId, attempt))
            } else {
                elsewhere.append((taskId, attempt))
            }
        }
        let finish = { [self] (adopted: [TaskRecord]) in
            guard a.connection === p.conn, !p.closing else { return }
            for rec in adopted {
                // The journal's word is the agent's lease now. A copy here that says otherwise
                // (its submission, still queued here, that another hub placed) gives way,
                // keeping its submitter.
                let old = live[rec.id]
                if let old, old.rec.state == .assigned, old.rec.agentId == rec.agentId, old.rec.attempt == rec.attempt { continue }
                let t = liveTask(rec)
                if let old {
                    if old.submitter != 0 { t.submitter = old.submitter }
                    pending[old.rec.priority].removeAll { $0 == rec.id }
                    if let other = old.rec.agentId, other != a.id { agents[other]?.inFlight.remove(rec.id) }
                }
                live[rec.id] = t
            }
            let now = wallClockMillis()
            var kept: [JSONValue] = []
            for (taskId, attempt) in claimsInFlight {
                if let t = live[taskId], t.rec.state == .assigned, t.rec.agentId == a.id, Int64(t.rec.attempt) == attempt {
                    a.inFlight.insert(taskId)
                    t.leaseDeadlineMs = now + config.leaseMs
                    t.orphanUntilMs = 0
                    kept.append(.string(taskId))
                } else {
                    send(p, HubEnvelope.make("task.cancel", ["taskId": .string(taskId), "attempt": .int(attempt),
                                                             "reason": "re-assigned while this agent was away"]))
                }
            }
            // Tasks the hub thinks this agent holds but it did not claim: back to the queue.
            for id in a.inFlight.sorted() where !kept.contains(.string(id)) {
                a.inFlight.remove(id)
                if let t = live[id] { requeue(t, why: "agent \(a.id) re-registered without it") }
            }
            admitted(p, a, kept: kept, requestId: requestId, keyId: claims.keyId)
        }
        guard !elsewhere.isEmpty else { finish([]); return }
        journaled("adopt the tasks of agent \(a.id)") {
            store.adoptTasks(agentId: a.id, claims: elsewhere, hubId: hubId, nowMs: now) { [self] r in
                if case .failure(let e) = r { log.error("journal.write_failed", ["what": "adopt tasks", "agentId": .string(a.id), "reason": .string(e.message)]) }
                finish((try? r.get()) ?? [])
            }
        }
    }

    /// The end of a registration: the agent's unclaimed tasks go back to the queue, it gets its
    /// answer, and everyone hears of it.
    func admitted(_ p: Peer, _ a: AgentEntry, kept: [JSONValue], requestId: String, keyId: String) {
        let name = a.name, capabilities = a.capabilities, maxConcurrency = a.maxConcurrency
        send(p, HubEnvelope.make("agent.registered", [
            "success": true, "agentId": .string(a.id), "protocol": .int(hubProtocolVersion),
            "heartbeatIntervalMs": .int(config.heartbeatIntervalMs), "leaseMs": .int(config.leaseMs),
            "assignedTasks": .array(kept),
        ], correlationId: requestId))
        log.info("agent.registered", ["agentId": .string(a.id), "keyId": .string(keyId), "name": .string(name),
                                      "capabilities": .array(capabilities.sorted().map { .string($0) }),
                                      "maxConcurrency": .int(Int64(maxConcurrency)), "resumed": .int(Int64(kept.count)),
                                      "remote": .string(p.conn.remoteAddress)])
        broadcastWeb(HubEnvelope.make("agent.connected", ["agentId": .string(a.id), "name": .string(name)]))
        writePresence(a)
        dispatch()
        reserveQueued()
    }
}
