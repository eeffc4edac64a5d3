import OrchestraCore
import OrchestraNet

/// Tasks: submit, dispatch, leases, re-assignment, results.
extension Hub {
    /// The record of a new task from a submit's fields (PARAM_001 for a bad one). `taskId`
    /// is the submit's, or a new UUID.
    func taskRecord(_ f: Fields, taskId: String, submitter: Peer, pinnedAgent: String? = nil, traceId: String?) throws(HubError) -> TaskRecord {
        guard let priority = parsePriority(f.v["priority"]) else {
            throw HubError(.invalidParameters, "\(f.event): field 'priority' must be low, normal, high, critical or 0...3")
        }
        let strategy = try f.optionalString("strategy", maxLength: 64)
        if let strategy, BalanceStrategy(rawValue: strategy) == nil {
            throw HubError(.invalidParameters, "\(f.event): unknown strategy '\(strategy)' (one of \(BalanceStrategy.allCases.map(\.rawValue).joined(separator: ", ")))",
                           details: ["field": "strategy"])
        }
        let maxAttempts = Int(try f.optionalInt("maxAttempts", in: 1...100) ?? Int64(config.maxAttempts))
        let sessionId = try f.optionalId("sessionId")
        var pinned = pinnedAgent
        if pinned == nil { pinned = try f.optionalId("agentId") }
        var spec: JSONValue = [
            "type": .string(try f.optionalString("type", maxLength: 128) ?? "custom"),
            "tool": .string(try f.optionalString("tool", maxLength: 128) ?? "custom"),
            "capabilities": .array(try f.strings("capabilities").map { .string($0) }),
            "parameters": try f.object("parameters") ?? .object([]),
            "priority": .int(Int64(priority)),
        ]
        if let sessionId { spec.set("sessionId", .string(sessionId)) }
        for extra in ["workingDirectory", "initialPrompt", "claudeSessionId"] {
            if let v = try f.optionalString(extra) { spec.set(extra, .string(v)) }
        }
        var rec = TaskRecord(id: taskId, spec: spec, sessionId: sessionId, submitter: submitter.user.isEmpty ? nil : submitter.user,
                             traceId: traceId ?? taskId, priority: priority, strategy: strategy, pinnedAgent: pinned,
                             maxAttempts: maxAttempts, nowMs: wallClockMillis())
        rec.submitHub = hubId
        return rec
    }

    /// Journals a new task (with the batch that acknowledges it). `done` gets `true` once it
    /// is written and queued, or `false` when a task with its id exists (nothing written).
    ///
    /// When an agent here can take it at once (nothing of its priority or higher waits before
    /// it), the task is written already leased to that agent: one row written instead of a row
    /// and then its claim (a third of the journal's writes per task). task.assign goes out
    /// after the submit's answer, once the row is committed.
    func insert(_ rec: TaskRecord, submitter: Peer, requestId: String, _ done: @escaping (Result<Bool, HubError>) -> Void) throws(HubError) {
        try openBatch()
        let entry = (submitter.conn.id, requestId, rec.id)
        batchSubmits.append(entry)
        let t = LiveTask(rec)
        var taker: AgentEntry? = nil
        if live[rec.id] == nil, pending[rec.priority...].allSatisfy(\.isEmpty), let a = pick(t) {
            taker = a
            lease(t, to: a, nowMs: rec.createdMs)
        }
        let written = t.rec
        // Other hubs hear of it only if no agent here takes it (`offerToOthers`): told at the
        // insert's commit, they reserved tasks this hub was about to claim (each such task then
        // crossed hubs: a lost claim, a re-read, two inbox messages).
        store.insertTask(written) { [self] r in
            // Still listed: the batch has not been committed (nor failed) yet.
            let listed = batchSubmits.firstIndex { $0 == entry }
            guard case .success(true) = r else {
                if let a = taker, t.rec.attempt == written.attempt { a.inFlight.remove(rec.id) }
                switch r {
                case .failure(let e):
                    // A failed commit answers DB_001 to every submit of its batch; a write that
                    // failed in a batch that goes on is answered here.
                    guard let i = listed else { return }
                    batchSubmits.remove(at: i)
                    done(.failure(HubError.database(e)))
                default:
                    if let i = listed { batchSubmits.remove(at: i) }
                    done(.success(false))
                }
                return
            }
            t.submitter = submitter.conn.id
            live[rec.id] = t
            submitted.add()
            log.debug("task.submitted", ["taskId": .string(rec.id), "traceId": .string(rec.traceId), "user": .string(submitter.user),
                                         "priority": .int(Int64(rec.priority))])
            guard let a = taker else {
                pending[rec.priority].append(rec.id)
                done(.success(true))
                return
            }
            done(.success(true))
            if t.rec.attempt == written.attempt, t.rec.state == .assigned, agents[a.id] === a, a.online, a.inFlight.contains(rec.id) {
                sendAssign(t, a)
            } else if t.rec.attempt == written.attempt, t.rec.state == .assigned {
                // Its agent left while the row was being written (it did not know of the task).
                requeue(t, why: "agent \(a.id) left before the task reached it")
            }
        }
    }

    /// Takes the lease of `t`'s next attempt for `a` here (the journal is written by the
    /// caller: a claim, or the insert of a new task).
    func lease(_ t: LiveTask, to a: AgentEntry, nowMs now: Int64) {
        var rec = t.rec
        rec.attempt += 1
        rec.state = .assigned
        rec.agentId = a.id
        rec.updatedMs = now
        rec.hubId = hubId
        t.rec = rec
        t.running = false
        t.nextSeq = 0
        t.seqKnown = true
        t.early.removeAll()
        t.earlyBytes = 0
        t.orphanUntilMs = 0
        t.leaseDeadlineMs = now + config.leaseMs
        a.inFlight.insert(rec.id)
    }

    /// task.assign to `a`, once the journal holds the lease.
    func sendAssign(_ t: LiveTask, _ a: AgentEntry) {
        let rec = t.rec
        let m = HubEnvelope.make("task.assign", [
            "taskId": .string(rec.id), "attempt": .int(Int64(rec.attempt)), "agentId": .string(a.id), "task": rec.spec,
        ], headers: [("traceId", .string(rec.traceId))])
        if let c = a.connection { send(c, m, format: (c.attachment as? Peer)?.format ?? .json) }
        log.debug("task.assigned", ["taskId": .string(rec.id), "attempt": .int(Int64(rec.attempt)), "agentId": .string(a.id), "traceId": .string(rec.traceId)])
        publish(t, m)
    }

    /// A live copy of a task the journal holds, with its submitter when the task was submitted
    /// here (the connection waits in `remoteSubmits` while another hub runs it).
    func liveTask(_ rec: TaskRecord) -> LiveTask {
        let t = LiveTask(rec)
        if rec.submitHub == hubId, let conn = remoteSubmits[rec.id] { t.submitter = conn }
        return t
    }

    /// Tells the other hubs (one NOTIFY with the next commit) that `t`, new here, is queued
    /// with no agent here to take it: any hub with a capable agent reserves it. (Missed, the
    /// others' once-a-second look finds it.)
    func offerToOthers(_ t: LiveTask) {
        guard store.reconnects, live[t.rec.id] === t, t.rec.state == .queued else { return }   // (SQLite: no other hub)
        journaled("offer task \(t.rec.id) to the other hubs") { notifyOthers.insert("tasks") }
    }

    /// Gives queued tasks to agents, highest priority first, oldest first within a priority.
    /// A dispatch asked for while one runs (from a journal answer inside it) runs after it.
    func dispatch() {
        if shuttingDown { return }
        if dispatching { dispatchAgain = true; return }
        dispatching = true
        defer { dispatching = false }
        repeat {
            dispatchAgain = false
            dispatchOnce()
        } while dispatchAgain
    }

    private func dispatchOnce() {
        var capacity = agents.values.reduce(0) { $0 + ($1.online ? max(0, limit($1) - $1.inFlight.count) : 0) }
        guard capacity > 0 else { return }
        for lane in stride(from: 3, through: 0, by: -1) where !pending[lane].isEmpty {
            var kept: [String] = []
            var i = 0
            let ids = pending[lane]
            while i < ids.count {
                let id = ids[i]
                i += 1
                guard let t = live[id], t.rec.state == .queued else { continue }
                if capacity > 0, let a = pick(t) {
                    if assign(t, a) { capacity -= 1 } else { kept.append(id) }
                } else {
                    kept.append(id)
                }
                if capacity == 0 { kept.append(contentsOf: ids[i...]); break }
            }
            pending[lane] = kept
        }
    }

    func limit(_ a: AgentEntry) -> Int { min(a.maxConcurrency, config.maxLoadPerAgent) }

    /// An online agent with room and every capability the task asks for, chosen by its strategy.
    func pick(_ t: LiveTask) -> AgentEntry? {
        let needs = t.needs
        var candidates: [AgentEntry] = []
        if let pinned = t.rec.pinnedAgent {
            if let a = agents[pinned], eligible(a, needs, t) { candidates.append(a) }
        } else {
            for a in agents.values where eligible(a, needs, t) { candidates.append(a) }
        }
        let strategy = t.rec.strategy.flatMap(BalanceStrategy.init(rawValue:)) ?? config.strategy
        return balancer.choose(candidates, strategy)
    }

    func eligible(_ a: AgentEntry, _ needs: [String], _ t: LiveTask) -> Bool {
        a.online && a.inFlight.count < limit(a) && !t.rec.rejectedBy.contains(a.id) && needs.allSatisfy { a.capabilities.contains($0) }
    }

    /// Leases `t`'s next attempt to `a`: at once here, and in the journal if it still has the
    /// task queued at its attempt (another hub may have taken it); task.assign goes out once
    /// the journal agreed. False when no batch could be opened.
    func assign(_ t: LiveTask, _ a: AgentEntry) -> Bool {
        let old = t.rec
        do { try openBatch() } catch {
            log.error("journal.write_failed", ["what": .string("assign task \(old.id)"), "reason": .string(error.message)])
            return false
        }
        // The lease is taken here first (the claim's answer may come before `claimTask` returns).
        lease(t, to: a, nowMs: wallClockMillis())
        let rec = t.rec
        store.claimTask(rec, expectedAttempt: old.attempt, hubId: hubId) { [self] r in
            // The lease this claim is about may have ended meanwhile (agent gone, cancelled).
            guard t.rec.attempt == rec.attempt, t.rec.agentId == a.id, t.rec.state == .assigned else { return }
            switch r {
            case .success(true):
                sendAssign(t, a)
            case .success(false):
                // Another hub has it (or it changed): it is not ours to run.
                a.inFlight.remove(rec.id)
                if live[rec.id] === t { live.removeValue(forKey: rec.id) }
                if let conn = Optional(t.submitter), conn != 0 { remoteSubmits[rec.id] = conn }
                log.debug("task.claim_lost", ["taskId": .string(rec.id), "attempt": .int(Int64(old.attempt))])
                reclaimInDoubt(rec.id)
                dispatch()
            case .failure:
                // Not written: back to the queue here.
                a.inFlight.remove(rec.id)
                t.rec = old
                t.running = false
                pending[old.priority].append(old.id)
            }
        }
        return true
    }

    /// The attempt is lost (agent gone, lease expired, rejected): back to the queue, or failed
    /// into the dead letters after the retry limit.
    func requeue(_ t: LiveTask, why: String, rejection: Bool = false) {
        let now = wallClockMillis()
        reassigned.add()
        if let agentId = t.rec.agentId { agents[agentId]?.inFlight.remove(t.rec.id) }
        let lost = t.rec.attempt - t.rec.rejectedBy.count
        if !rejection && lost >= t.rec.maxAttempts {
            finish(t, success: false, result: nil, error: "gave up after \(lost) attempts: \(why)", errorCode: .taskExecutionFailed, dead: true, event: nil)
            return
        }
        if rejection && !anyAgentLeft(for: t) {
            // The journal keeps who rejected it (task.get and the dead-letter list show it).
            let rec = t.rec
            journaled("record the rejections of task \(rec.id)") {
                store.releaseTask(rec, attempt: rec.attempt, hubId: hubId, logFailure("record the rejections of task \(rec.id)"))
            }
            finish(t, success: false, result: nil, error: "every capable agent rejected it (\(t.rec.rejectedBy.joined(separator: ", ")))",
                   errorCode: .agentNotAvailable, dead: true, event: nil)
            return
        }
        var rec = t.rec
        rec.state = .queued
        rec.agentId = nil
        rec.updatedMs = now
        rec.hubId = nil
        let held = t.rec.attempt
        t.rec = rec
        t.running = false
        t.orphanUntilMs = 0
        release(t, rec, attempt: held)
        log.info("task.requeued", ["taskId": .string(rec.id), "attempt": .int(Int64(rec.attempt)), "reason": .string(why), "traceId": .string(rec.traceId)])
    }

    /// Writes `t` back to the queue for every hub, unless another hub holds the task now (its
    /// agent took it along there). While the database is away it waits, out of the queue here,
    /// and is written once it is back.
    private func release(_ t: LiveTask, _ rec: TaskRecord, attempt held: Int) {
        journaled("requeue task \(rec.id)") {
            notifyOthers.insert("tasks")
            store.releaseTask(rec, attempt: held, hubId: hubId) { [self] r in
                guard t.rec.state == .queued, t.rec.attempt == held else { return }
                switch r {
                case .success(true):
                    pending[rec.priority].append(rec.id)
                    dispatch()
                case .success(false):
                    if live[rec.id] === t { live.removeValue(forKey: rec.id) }
                    log.info("task.moved", ["taskId": .string(rec.id), "attempt": .int(Int64(held)), "reason": "another hub holds it"])
                case .failure(let e) where retriable(e):
                    heldOutcomes.append { [self] in release(t, rec, attempt: held) }
                case .failure(let e):
                    log.error("journal.write_failed", ["taskId": .string(rec.id), "what": "requeue", "reason": .string(e.message)])
                    pending[rec.priority].append(rec.id)
                }
            }
        }
    }

    /// A claim was refused: the journal says who has the task now. When this hub holds it (an
    /// earlier claim committed although its answer was lost with the connection), the lease is
    /// taken back at once and the task goes back to the queue, rather than waiting for nobody.
    /// When it is still queued for this hub or for nobody (the claim was skipped because
    /// another hub's transaction had the row locked and then did not take it, or this hub's
    /// copy was behind), it is queued here again. Otherwise another hub has it.
    func reclaimInDoubt(_ id: String) {
        guard store.reconnects else { return }
        store.task(id: id) { [self] r in
            guard case .success(let rec?) = r, live[id] == nil, !shuttingDown else { return }
            if rec.state == .assigned, rec.hubId == hubId {
                let t = liveTask(rec)
                t.leaseDeadlineMs = 0   // the next tick finds it expired and requeues it
                live[id] = t
                log.warn("task.claim_in_doubt", ["taskId": .string(id), "attempt": .int(Int64(rec.attempt)), "agentId": .string(rec.agentId ?? "")])
            } else if rec.state == .queued, rec.hubId == nil || rec.hubId == hubId {
                // Tried again a little later: the transaction that had the row locked may not
                // have ended yet.
                let retry = { [self] in
                    guard live[id] == nil, !shuttingDown else { return }
                    let t = liveTask(rec)
                    live[id] = t
                    pending[rec.priority].append(id)
                    log.debug("task.claim_retried", ["taskId": .string(id), "attempt": .int(Int64(rec.attempt))])
                    dispatch()
                }
                if (try? runtime.startTimer(delayMs: 100, repeatMs: 0, fire: retry)) == nil { retry() }
            }
        }
    }

    /// Whether an online agent that has not rejected `t` can run it: here, or (several hubs) on
    /// a hub that is alive, as the cluster's presence last said.
    func anyAgentLeft(for t: LiveTask) -> Bool {
        if agents.values.contains(where: { $0.online && !t.rec.rejectedBy.contains($0.id) && capable($0, t) }) { return true }
        for p in clusterPresence where p.online && p.hubId != hubId && liveHubs.contains(p.hubId) && !t.rec.rejectedBy.contains(p.agentId) {
            let caps = Set(p.info["capabilities"]?.array?.compactMap(\.string) ?? [])
            if t.needs.allSatisfy(caps.contains) && (t.rec.pinnedAgent == nil || t.rec.pinnedAgent == p.agentId) { return true }
        }
        return false
    }

    func capable(_ a: AgentEntry, _ t: LiveTask) -> Bool {
        t.needs.allSatisfy { a.capabilities.contains($0) }
            && (t.rec.pinnedAgent == nil || t.rec.pinnedAgent == a.id)
    }

    /// Records the outcome once (the journal refuses a second one), then tells the session and
    /// the submitter. `event` is the agent's task.result, forwarded as it is; otherwise the hub
    /// writes one. Until the journal has answered, the task is `finishing`: its lease does not
    /// run out and its agent's messages about it are stale.
    func finish(_ t: LiveTask, success: Bool, result: JSONValue?, error: String?, errorCode: HubErrorCode?, dead: Bool, event: Message?,
                retried: Bool = false) {
        let now = wallClockMillis()
        let state: TaskState = success ? .succeeded : .failed
        let (id, attempt) = (t.rec.id, t.rec.attempt)
        t.finishing = true
        let fields: JSONValue = ["taskId": .string(id), "attempt": .int(Int64(attempt)), "agentId": .string(t.rec.agentId ?? ""),
                                 "outcome": .string(state.rawValue), "dead": .bool(dead), "traceId": .string(t.rec.traceId),
                                 "error": error.map { .string($0) } ?? .null]
        // The task.finished line is written once the outcome is committed: at the commit of
        // this batch on SQLite, at once when the answer comes after the commit (PostgreSQL).
        let opened = journaled("finish task \(id)") {
            store.finishTask(id: id, attempt: attempt, state: state, result: result, error: error, errorCode: errorCode?.rawValue,
                             dead: dead, nowMs: now) { [self] r in
                switch r {
                case .failure(let e) where retriable(e):
                    // The database is away: the outcome is written when it is back (the task
                    // stays finishing, its lease does not run out meanwhile).
                    heldOutcomes.append { [self] in
                        finish(t, success: success, result: result, error: error, errorCode: errorCode, dead: dead, event: event, retried: true)
                    }
                case .failure(let e):
                    // The task stays live; the agent's lease runs out and it is tried again.
                    t.finishing = false
                    log.error("journal.write_failed", ["taskId": .string(id), "what": "finish", "reason": .string(e.message)])
                case .success(false) where retried:
                    // The first try may have committed before the connection broke: when the
                    // journal holds this attempt's outcome, it was this one.
                    store.task(id: id) { [self] r in
                        let ours: Bool
                        if case .success(let rec?) = r, rec.attempt == attempt, rec.state == state { ours = true } else { ours = false }
                        if ours { log.info("task.finished", fields) }
                        finished(t, recorded: ours, success: success, error: error, errorCode: errorCode, dead: dead, event: event, nowMs: now)
                    }
                case .success(let recorded):
                    if recorded {
                        if store.completesAfterCommit { log.info("task.finished", fields) } else { afterCommit { [log] in log.info("task.finished", fields) } }
                    }
                    finished(t, recorded: recorded, success: success, error: error, errorCode: errorCode, dead: dead, event: event, nowMs: now)
                }
            }
        }
        if !opened { t.finishing = false }
    }

    /// The outcome of `finish`, once journaled.
    private func finished(_ t: LiveTask, recorded: Bool, success: Bool, error: String?, errorCode: HubErrorCode?, dead: Bool, event: Message?, nowMs now: Int64) {
        if live[t.rec.id] === t { live.removeValue(forKey: t.rec.id) }
        if let agentId = t.rec.agentId, let a = agents[agentId], a.inFlight.remove(t.rec.id) != nil { a.completed += 1 }
        guard recorded else {
            log.warn("task.result_ignored", ["taskId": .string(t.rec.id), "attempt": .int(Int64(t.rec.attempt)), "reason": "already finished"])
            return
        }
        (success ? succeeded : failedCount).add()
        taskLatency.record(UInt64(max(0, now - t.rec.createdMs)) * 1000)
        let m: Message
        if let event {
            m = event
        } else {
            var payload: JSONValue = ["taskId": .string(t.rec.id), "attempt": .int(Int64(t.rec.attempt)), "agentId": .string(t.rec.agentId ?? ""),
                                      "success": .bool(success), "duration": .int(now - t.rec.createdMs)]
            if let error { payload.set("error", .string(error)) }
            if let errorCode { payload.set("errorCode", .string(errorCode.rawValue)) }
            m = HubEnvelope.make("task.result", payload)
        }
        publish(t, m)
        dispatch()
    }

    /// Sends a task event to its session's watchers (numbered and kept in the session's
    /// replay log) and, for task.result, task.stream and task.progress, to the submitter when
    /// it does not watch that session (through its hub's inbox when it is on another hub).
    @discardableResult
    func publish(_ t: LiveTask, _ m: Message) -> Message {
        let forSubmitter = m.type == "task.result" || m.type == "task.stream" || m.type == "task.progress"
        // The common case of an agent's message to a submitter here that watches no session:
        // when it already carries the task's traceId (the SDKs copy it from task.assign), it
        // goes out as the frame it came in.
        if t.rec.sessionId == nil, t.submitter != 0, m === currentMessage, let frame = currentFrame, m.header("traceId") == t.rec.traceId {
            if forSubmitter, let p = webPeers[t.submitter] {
                if p.format == currentFormat { deliver(p.conn, p.format, Array(frame)) } else { send(p, m) }
            }
            return m
        }
        HubEnvelope.setHeader(m, "traceId", .string(t.rec.traceId))
        var watching = false
        if let sid = t.rec.sessionId, let s = sessions[sid] ?? (try? createSession(sid, owner: t.rec.submitter ?? "")) {
            record(m, in: s)
            watching = s.watchers[t.submitter] != nil
        }
        guard forSubmitter else { return m }
        if t.submitter != 0 {
            if !watching, let p = webPeers[t.submitter] { send(p, m) }
        } else if let hub = t.rec.submitHub, hub != hubId, let text = try? EnvelopeCodec.encode(m, format: .json) {
            var body: JSONValue = ["taskId": .string(t.rec.id), "frame": .string(String(decoding: text, as: UTF8.self))]
            if let sid = t.rec.sessionId { body.set("sessionId", .string(sid)) }
            post(to: hub, .deliver, body)
        }
        return m
    }

    /// The task.result event of a finished task, from its record (a retried submit of a task
    /// that finished meanwhile gets it).
    func resultEvent(_ rec: TaskRecord) -> Message {
        var payload: JSONValue = ["taskId": .string(rec.id), "attempt": .int(Int64(rec.attempt)), "agentId": .string(rec.agentId ?? ""),
                                  "success": .bool(rec.state == .succeeded), "duration": .int(rec.updatedMs - rec.createdMs)]
        if let r = rec.result { payload.set("result", r) }
        if let e = rec.error { payload.set("error", .string(e)) }
        if let c = rec.errorCode { payload.set("errorCode", .string(c)) }
        return HubEnvelope.make("task.result", payload, headers: [("traceId", .string(rec.traceId))])
    }
}
