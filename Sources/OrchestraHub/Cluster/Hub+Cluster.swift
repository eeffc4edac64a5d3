import OrchestraCore
import OrchestraNet

/// Several hubs on one database (docs/operations.md, "Running several hubs"): heartbeats and
/// the reaping of dead hubs, each hub's inbox (what another hub needs done to a connection of
/// this one), agent presence, and the reservation of queued tasks for this hub's agents. On
/// SQLite there is one hub and all of this runs against its own journal: no other hub ever
/// writes to its inbox, and a reservation finds only what a command put back in the queue.
extension Hub {
    // MARK: the timer's share

    /// Runs from `tick`: the heartbeat and the reaper once a second, the presence of this
    /// hub's agents every two seconds, a look at the inbox, at the queue and (several hubs) at
    /// the watched sessions as a fallback for missed notifications.
    func clusterTick(_ now: Int64) {
        guard now - lastHeartbeatMs >= 1000 else { return }
        lastHeartbeatMs = now
        let info: JSONValue = ["agents": .int(Int64(agents.values.filter { $0.online }.count)), "web": .int(Int64(webPeers.count)),
                               "tasks": .int(Int64(live.count))]
        journaled("heartbeat") { store.heartbeat(hubId: hubId, startedMs: startedMs, nowMs: now, info: info, logFailure("heartbeat")) }
        // Right after the journal came back, every heartbeat is old (none could be written): the
        // reaper waits one hub timeout before it judges the others.
        if let up = store.connectedSinceMs, now - up >= config.hubTimeoutMs {
            reap(now)
        }
        store.hubs { [self] r in
            guard case .success(let (hubs, dbNow)) = r else { return }
            clusterHubs = (hubs, dbNow)
            liveHubs = hubs.filter { !$0.stopped && dbNow - $0.heartbeatMs <= config.hubTimeoutMs }.map(\.id)
            if liveHubs.count > 1 || hubs.count > 1 {
                store.presence { [self] r in if case .success(let rows) = r { clusterPresence = rows } }
            }
        }
        if now - lastPresenceMs >= 2000 {
            lastPresenceMs = now
            for a in agents.values where a.online { writePresence(a) }
        }
        readInbox()
        reserveQueued()
        // Other hubs' session events come with a notification; one that was missed (the
        // connection was being re-made, say) is caught up here.
        if liveHubs.count > 1 { fetchEvents(sessions.values.filter { !$0.watchers.isEmpty }) }
    }

    private func reap(_ now: Int64) {
        journaled("reap dead hubs") {
            store.reap(hubId: hubId, nowMs: now, timeoutMs: config.hubTimeoutMs, graceMs: config.leaseMs) { [self] r in
                guard case .success(let outcome) = r else { return }
                reaped(outcome)
            }
        }
    }

    // MARK: the database away and back

    /// The store lost its database (`why`) or has it back (nil).
    func journalConnection(_ why: String?) {
        let now = wallClockMillis()
        if let why {
            if journalTrouble == nil { journalTrouble = (now, why) }
            log.error("journal.unreachable", ["reason": .string(why), "hint": "requests that write answer DB_001 until it is back"])
            return
        }
        log.info("journal.reconnected", ["downMs": .int(journalTrouble.map { now - $0.since } ?? 0),
                                         "heldEvents": .int(Int64(heldEvents.count)), "heldOutcomes": .int(Int64(heldOutcomes.count))])
        // What could not be written meanwhile, in the order it happened: the sessions' events,
        // then the outcomes (a result after its task's chunks).
        let events = heldEvents
        heldEvents = []
        heldEventBytes = 0
        for (s, m) in events { record(m, in: s) }
        let outcomes = heldOutcomes
        heldOutcomes = []
        for retry in outcomes { retry() }
        dispatch()
    }

    /// Whether a failed write may be tried again once the database is back: the store
    /// reconnects and the failure was the connection's, not the statement's.
    func retriable(_ e: OrchestraError) -> Bool {
        store.reconnects && (e.code == .io || e.code == .closed || e.code == .timedOut)
    }

    /// /health's view of the journal.
    func journalHealthJSON() -> JSONValue {
        var j: JSONValue = ["store": .string(store.label), "status": .string(store.connectedSinceMs == nil ? "unreachable" : "ok")]
        if let t = journalTrouble {
            j.set("troubleSinceMs", .int(t.since))
            j.set("reason", .string(t.reason))
        }
        return j
    }

    /// /health's view of the cluster: every hub the journal knows, alive or not, with what it
    /// said at its last heartbeat (agents, web clients, live tasks).
    func clusterHealthJSON() -> JSONValue {
        let (hubs, dbNow) = clusterHubs
        let list: [JSONValue] = hubs.map { h in
            let age = max(0, dbNow - h.heartbeatMs)
            var o: JSONValue = ["hubId": .string(h.id), "alive": .bool(!h.stopped && age <= config.hubTimeoutMs),
                                "stopped": .bool(h.stopped), "heartbeatAgeMs": .int(age), "startedMs": .int(h.startedMs)]
            for k in ["agents", "web", "tasks"] { if let v = h.info[k] { o.set(k, v) } }
            return o
        }
        return ["hubs": .array(list), "alive": .int(Int64(liveHubs.count))]
    }

    /// What the reaper did: dead hubs logged once, their agents' disconnection told to web
    /// clients, their tasks queued here too.
    func reaped(_ o: ReapOutcome) {
        for id in o.deadHubs where !reportedDead.contains(id) {
            reportedDead.insert(id)
            log.warn("hub.dead", ["hubId": .string(id)])
            publishOutcomes(of: id)
        }
        reportedDead.formIntersection(o.deadHubs)
        for id in o.offlineAgents where agents[id]?.online != true {
            broadcastWeb(HubEnvelope.make("agent.disconnected", ["agentId": .string(id), "reason": "its hub stopped answering"]))
        }
        if !o.requeued.isEmpty || !o.failed.isEmpty {
            log.info("hub.reaped", ["requeued": .array(o.requeued.map { .string($0) }), "failed": .array(o.failed.map { .string($0) })])
            notifyOthers.insert("tasks")
            reserveQueued()
        }
    }

    /// A hub that dies between the commit of an outcome and the commit of its task.result
    /// (the session event, the delivery to the submitter's hub: the next batch) leaves an
    /// outcome nobody heard of. One surviving hub publishes those (the first to claim them).
    func publishOutcomes(of deadHub: String) {
        store.claimUnpublishedOutcomes(deadHubId: deadHub, timeoutMs: config.hubTimeoutMs, windowMs: config.hubTimeoutMs) { [self] r in
            guard case .success(let recs) = r, !recs.isEmpty else {
                if case .failure(let e) = r { log.error("journal.read_failed", ["what": .string("outcomes of hub \(deadHub)"), "reason": .string(e.message)]) }
                return
            }
            for rec in recs {
                let t = live[rec.id] ?? LiveTask(rec)
                t.rec = rec
                if rec.submitHub == deadHub { t.rec.submitHub = nil }   // its web clients went with it
                if rec.submitHub == hubId, let conn = remoteSubmits.removeValue(forKey: rec.id) { t.submitter = conn }
                if live[rec.id] === t { live.removeValue(forKey: rec.id) }
                publish(t, resultEvent(rec))
            }
            log.warn("hub.outcomes_published", ["hubId": .string(deadHub), "tasks": .array(recs.map { .string($0.id) })])
        }
    }

    /// A notification from another hub or command (PostgreSQL).
    func storeChanged(_ c: StoreChanges) {
        if c.contains(.accounts) {
            reloadAccounts { [self] e in
                if let e { log.error("journal.read_failed", ["what": "users and keys", "reason": .string(e.message)]) }
                enforceRevocations()
            }
        }
        if c.contains(.inbox) { readInbox() }
        if c.contains(.events) { fetchEvents(Array(sessions.values)) }
        if c.contains(.tasks) { reserveQueued() }
    }

    // MARK: the queue

    /// Reserves queued tasks this hub's agents can take (capabilities, pins), as many as they
    /// have room for beyond what is already queued here, and dispatches them; the ones no agent
    /// here takes are given back.
    func reserveQueued() {
        guard !shuttingDown else { return }
        guard !reserving else { reserveAgain = true; return }
        reserveAgain = false
        var room = 0, caps = Set<String>(), ids: [String] = []
        for a in agents.values where a.online {
            let free = limit(a) - a.inFlight.count
            guard free > 0 else { continue }
            room += free
            caps.formUnion(a.capabilities)
            ids.append(a.id)
        }
        room -= pendingCount
        guard room > 0 else { return }
        reserving = true
        let now = wallClockMillis()
        let opened = journaled("reserve queued tasks") {
            store.reserveQueued(hubId: hubId, capabilities: caps.sorted(), agents: ids.sorted(), limit: min(room, 512), nowMs: now) { [self] r in
                reserving = false
                // Asked again while this one was under way (a task queued since, an agent with
                // room since): look again.
                defer { if reserveAgain { reserveQueued() } }
                guard case .success(let tasks) = r, !tasks.isEmpty else { return }
                var mine: [LiveTask] = []
                for rec in tasks where live[rec.id] == nil {
                    if rec.attempt == 0 && rec.updatedMs > rec.createdMs {
                        // Put back in the queue by a command (dead requeue), or by a hub.
                        log.info("task.requeued", ["taskId": .string(rec.id), "by": "journal"])
                    }
                    let t = liveTask(rec)
                    live[rec.id] = t
                    pending[rec.priority].append(rec.id)
                    mine.append(t)
                }
                dispatch()
                // What no agent here took goes back for other hubs.
                let unused = mine.filter { $0.rec.state == .queued && live[$0.rec.id] === $0 }
                guard !unused.isEmpty else { return }
                for t in unused {
                    live.removeValue(forKey: t.rec.id)
                    pending[t.rec.priority].removeAll { $0 == t.rec.id }
                }
                journaled("give back reservations") {
                    store.unreserve(ids: unused.map(\.rec.id), hubId: hubId, logFailure("give back reservations"))
                }
            }
        }
        if !opened { reserving = false }
    }

    // MARK: inboxes

    /// What one hub asks of another, through the journal (`hub_inbox`), as JSON.
    enum InboxKind: String {
        /// Deliver `frame` (a task event) to the task's submitter, unless it watches the
        /// task's session (the session's feed brings it).
        case deliver
        /// Cancel the task's attempt on its agent (finished already by the sender).
        case cancel
        /// Forward `payload` as worker.input to the task's agent.
        case input
        /// The agent registered on another hub: close its connection here (4000), leaving its
        /// tasks to the new hub.
        case replace
        /// Send `frame` to every web client.
        case broadcast
        /// The task's submitter is now on the sender's hub.
        case resubmit
    }

    /// Posts to another hub's inbox with the open batch (and notifies it at the commit).
    func post(to hub: String, _ kind: InboxKind, _ body: JSONValue) {
        guard hub != hubId, !hub.isEmpty else { return }
        var o = body
        o.set("kind", .string(kind.rawValue))
        let bytes = o.jsonBytes
        log.debug("hub.posted", ["to": .string(hub), "kind": .string(kind.rawValue), "taskId": body["taskId"] ?? .null])
        journaled("post to hub \(hub)") {
            notifyOthers.insert("inbox:\(hub)")
            store.post(toHub: hub, body: bytes, nowMs: wallClockMillis(), logFailure("post to hub \(hub)"))
        }
    }

    /// Reads what other hubs posted here since the last time, handles it in order and trims.
    func readInbox() {
        guard !readingInbox else { inboxAgain = true; return }
        readingInbox = true
        inboxAgain = false
        store.inbox(hubId: hubId, after: inboxSeq) { [self] r in
            readingInbox = false
            // Asked again while this read was under way: what was posted since may have
            // committed after the read's snapshot.
            defer { if inboxAgain { readInbox() } }
            guard case .success(let messages) = r, !messages.isEmpty else { return }
            for (seq, body) in messages {
                inboxSeq = max(inboxSeq, seq)
                guard let v = try? JSONValue.parse(body), let kind = v["kind"]?.string.flatMap(InboxKind.init(rawValue:)) else { continue }
                handleInbox(kind, v)
            }
            let upTo = inboxSeq
            journaled("trim the inbox") { store.trimInbox(hubId: hubId, upTo: upTo, logFailure("trim the inbox")) }
            if messages.count >= 10_000 { inboxAgain = true }
        }
    }

    func handleInbox(_ kind: InboxKind, _ v: JSONValue) {
        let taskId = v["taskId"]?.string ?? ""
        log.debug("hub.inbox", ["kind": .string(kind.rawValue), "taskId": .string(taskId)])
        switch kind {
        case .deliver:
            // Submitted here and run by another hub (this hub may still hold it as queued, or
            // be claiming it: the claim will be refused).
            let conn = remoteSubmits[taskId] ?? live[taskId]?.submitter ?? 0
            if let t = live[taskId], t.rec.state == .queued {
                // No longer ours to place.
                live.removeValue(forKey: taskId)
                pending[t.rec.priority].removeAll { $0 == taskId }
            }
            guard let text = v["frame"]?.string, let m = try? EnvelopeCodec.decode(Array(text.utf8), format: .json) else { return }
            if m.type == "task.result" {
                // Its outcome is recorded: a claim of ours still under way will be refused, and
                // has nothing left to deliver.
                remoteSubmits.removeValue(forKey: taskId)
                live[taskId]?.submitter = 0
            } else if conn != 0 {
                remoteSubmits[taskId] = conn
            }
            guard conn != 0, let p = webPeers[conn] else { return }
            if let sid = v["sessionId"]?.string, p.sessions.contains(sid) { return }   // its session's feed brings it
            send(p, m)
        case .cancel:
            guard let t = live[taskId], Int64(t.rec.attempt) == v["attempt"]?.int else { return }
            if let agentId = t.rec.agentId, let a = agents[agentId] {
                a.inFlight.remove(taskId)
                if let c = a.connection {
                    send(c, HubEnvelope.make("task.cancel", ["taskId": .string(taskId), "attempt": .int(Int64(t.rec.attempt)),
                                                             "reason": .string(v["reason"]?.string ?? "cancelled")]),
                         format: (c.attachment as? Peer)?.format ?? .json)
                }
            }
            live.removeValue(forKey: taskId)
            dispatch()
        case .input:
            guard let t = live[taskId], let agentId = t.rec.agentId, let a = agents[agentId], let c = a.connection, var payload = v["payload"] else { return }
            payload.set("attempt", .int(Int64(t.rec.attempt)))
            send(c, HubEnvelope.make("worker.input", payload), format: (c.attachment as? Peer)?.format ?? .json)
        case .replace:
            guard let id = v["agentId"]?.string, let a = agents[id], let c = a.connection, let p = c.attachment as? Peer else { return }
            // Its tasks moved with it: nothing to requeue here.
            for tid in a.inFlight { live.removeValue(forKey: tid) }
            a.inFlight.removeAll()
            a.online = false
            a.connection = nil
            p.agentId = nil
            p.closing = true
            close(c, code: 4000, reason: "replaced by a new connection of this agent")
            log.info("agent.replaced", ["agentId": .string(id), "by": .string(v["hubId"]?.string ?? "")])
        case .broadcast:
            guard let text = v["frame"]?.string, let m = try? EnvelopeCodec.decode(Array(text.utf8), format: .json) else { return }
            broadcastWeb(m, local: true)
        case .resubmit:
            guard let t = live[taskId], let hub = v["hubId"]?.string else { return }
            t.rec.submitHub = hub
            t.submitter = 0
        }
    }

    // MARK: presence

    /// Writes an agent's entry for the cluster (agents.list on every hub).
    func writePresence(_ a: AgentEntry) {
        let info = a.json(maxLoad: config.maxLoadPerAgent)
        let (id, online) = (a.id, a.online)
        journaled("write the presence of agent \(id)") {
            store.setPresence(agentId: id, hubId: hubId, online: online, info: info, nowMs: wallClockMillis(),
                              logFailure("write the presence of agent \(id)"))
        }
    }

    /// The cluster's agents: this hub's from memory, the others' from the journal.
    func clusterAgents(_ done: @escaping ([JSONValue]) -> Void) {
        let local = agents.values.sorted { $0.id < $1.id }.map { a -> (String, Bool, JSONValue) in
            var j = a.json(maxLoad: config.maxLoadPerAgent)
            j.set("hubId", .string(hubId))
            return (a.id, a.online, j)
        }
        store.presence { [self] r in
            var rows: [AgentPresence] = []
            if case .success(let all) = r { rows = all }
            // An agent offline here that went on to another hub that is alive is listed as
            // that hub says.
            let elsewhere = Set(rows.filter { $0.online && $0.hubId != hubId && liveHubs.contains($0.hubId) }.map(\.agentId))
            var out = local.filter { $0.1 || !elsewhere.contains($0.0) }.map(\.2)
            let listed = Set(out.compactMap { $0["id"]?.string })
            for row in rows where !listed.contains(row.agentId) {
                var j = row.info
                if !row.online || !liveHubs.contains(row.hubId) && row.hubId != hubId { j.set("status", "offline") }
                j.set("hubId", .string(row.hubId))
                out.append(j)
            }
            done(out.sorted { ($0["id"]?.string ?? "") < ($1["id"]?.string ?? "") })
        }
    }
}
