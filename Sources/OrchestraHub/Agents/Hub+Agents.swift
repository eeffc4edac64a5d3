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
        guard let t, t.rec.agentId == a.id, Int64(t.rec.attempt) == attempt, t.rec.state == .assigned else {
            let taskId = f.v["taskId"]?.string ?? ""
            log.info("task.stale_message", ["taskId": .string(taskId), "attempt": .int(attempt), "agentId": .string(a.id), "type": .string(f.event),
                                            "currentAttempt": .int(Int64(t?.rec.attempt ?? -1))])
            return nil
        }
        return t
    }

    func register(_ p: Peer, _ m: Message) throws(HubError) {
        let payload = try HubEnvelope.payload(of: m)
        let now = wallClockMillis()
        var dbError: OrchestraError? = nil
        let verdict = RegistrationAuth.verify(
            payload, nowMs: now, maxSkewMs: config.maxClockSkewMs,
            secretFor: { [journal] keyId in
                do throws(OrchestraError) { return try journal.keySecret(id: keyId) } catch { dbError = error; return nil }
            },
            rememberNonce: { [self, journal] keyId, nonce, ts in
                do throws(OrchestraError) {
                    return try journaled { () throws(OrchestraError) in try journal.rememberNonce(keyId: keyId, nonce: nonce, timestampMs: ts, nowMs: now) }
                } catch { dbError = error; return false }
            })
        if let dbError { throw HubError.database(dbError) }
        let claims: RegistrationClaims
        switch verdict {
        case .failure(let f) where f.isMalformed: throw HubError(.invalidParameters, "agent.register: \(f.reason)")
        case .failure(let f): throw HubError(.authenticationFailed, "agent.register: \(f.reason)", details: ["rule": "agent.signature"])
        case .success(let c): claims = c
        }
        // The key's scope and the id's binding (the first key that registered it keeps it).
        let bound: String?
        let key: KeyAccount?
        do {
            bound = try journal.agentBinding(agentId: claims.agentId)
            key = try journal.keyAccount(id: claims.keyId)
        } catch { throw HubError.database(error) }
        if let key { keyAccounts[key.id] = key }
        try authorize(p, Access.agent, AccessRequest(
            type: "agent.register", registration: RegistrationFacts(agentId: claims.agentId, keyId: claims.keyId, boundKey: bound, scope: key?.agents),
            target: "agent \(claims.agentId) key \(claims.keyId)"))
        if bound == nil {
            do { _ = try journaled { () throws(OrchestraError) in try journal.bindAgent(agentId: claims.agentId, keyId: claims.keyId, nowMs: now) } } catch {
                throw HubError.database(error)
            }
        }
        let f = Fields("agent.register", payload)
        let name = try f.optionalString("name", maxLength: 256) ?? claims.agentId
        let capabilities = Set(try f.strings("capabilities"))
        let version = try f.optionalString("version", maxLength: 64) ?? ""
        let metadata = try f.object("metadata") ?? .object([])
        let maxConcurrency = Int(try f.optionalInt("maxConcurrency", in: 1...100_000) ?? Int64(config.maxLoadPerAgent))
        var claimsInFlight: [(String, Int64)] = []
        if let list = payload["inFlight"]?.array {
            for item in list {
                guard let id = item["taskId"]?.string, let att = item["attempt"]?.int else {
                    throw HubError(.invalidParameters, "agent.register: inFlight items are {taskId, attempt}")
                }
                claimsInFlight.append((id, att))
            }
        }

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

        // Tasks the agent still runs: kept when they are still its own (same attempt).
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
        send(p, HubEnvelope.make("agent.registered", [
            "success": true, "agentId": .string(a.id), "protocol": .int(hubProtocolVersion),
            "heartbeatIntervalMs": .int(config.heartbeatIntervalMs), "leaseMs": .int(config.leaseMs),
            "assignedTasks": .array(kept),
        ], correlationId: m.id))
        log.info("agent.registered", ["agentId": .string(a.id), "keyId": .string(claims.keyId), "name": .string(name),
                                      "capabilities": .array(capabilities.sorted().map { .string($0) }),
                                      "maxConcurrency": .int(Int64(maxConcurrency)), "resumed": .int(Int64(kept.count)),
                                      "remote": .string(p.conn.remoteAddress)])
        broadcastWeb(HubEnvelope.make("agent.connected", ["agentId": .string(a.id), "name": .string(name)]))
        dispatch()
    }
}
