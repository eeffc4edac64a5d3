import OrchestraCore
import OrchestraNet

/// Sessions and their replay logs (docs/protocol.md, "Web sessions"): offsets that continue
/// across restarts, events kept in the journal for the recovery window, stream chunks within a
/// byte budget per session and per hub.
extension Hub {
    /// The session `id`, from memory or the journal (loaded with its replay log's index):
    /// nil when there is none. Sessions nobody uses leave memory (`evictIdleSessions`).
    func sessionLog(_ id: String, _ done: @escaping (Result<SessionLog?, HubError>) -> Void) {
        if let s = sessions[id] { done(.success(s)); return }
        store.session(id: id) { [self] r in
            switch r {
            case .failure(let e): done(.failure(HubError.database(e)))
            case .success(nil): done(.success(nil))
            case .success(let rec?):
                store.sessionEventIndex(sessionId: id) { [self] r in
                    switch r {
                    case .failure(let e): done(.failure(HubError.database(e)))
                    case .success(let entries):
                        // Loaded meanwhile by another request: that one is the session.
                        if let s = sessions[id] { done(.success(s)); return }
                        let s = SessionLog(id: id, owner: rec.owner, sharedWith: Set(rec.sharedWith), head: rec.head)
                        for e in entries { s.kept(offset: e.offset, atMs: e.atMs, bytes: e.bytes, kind: e.kind) }
                        sessions[id] = s
                        replayCost += s.keptCost
                        done(.success(s))
                    }
                }
            }
        }
    }

    /// Forgets the sessions that hold nothing in memory worth keeping: no watcher, no event
    /// in the replay log, no unfinished task (the journal has them;
    /// `sessionLog` loads them again).
    func evictIdleSessions() {
        var busy = Set<String>()
        for t in live.values { if let sid = t.rec.sessionId { busy.insert(sid) } }
        for (id, s) in sessions where s.watchers.isEmpty && s.keptEvents == 0 && !busy.contains(id) {
            sessions.removeValue(forKey: id)
        }
    }

    /// Makes a session the journal does not have, owned by `owner` (journaled with the open
    /// batch).
    func createSession(_ id: String, owner: String) throws(HubError) -> SessionLog {
        if let s = sessions[id] { return s }
        try openBatch()
        store.insertSession(id: id, owner: owner, nowMs: wallClockMillis(), logFailure("create session \(id)"))
        let s = SessionLog(id: id, owner: owner, sharedWith: [], head: 0)
        sessions[id] = s
        log.info("session.created", ["sessionId": .string(id), "owner": .string(owner)])
        return s
    }

    /// The kind of a session event: task state events are kept for the whole window, the rest
    /// (output) within the byte budget.
    static func eventKind(_ type: String) -> SessionEventKind {
        switch type {
        case "task.assign", "task.accepted", "task.rejected", "task.result": return .state
        default: return .chunk
        }
    }

    /// Journals `m` in the session's replay log with the open batch: the journal gives it the
    /// session's next offset, and the feed hands it to the watchers once every event before it
    /// was (so no watcher sees an offset the journal does not have, nor one out of order). The
    /// frame kept has no `offset` header (its place in the log is its offset).
    func record(_ m: Message, in s: SessionLog) {
        let now = wallClockMillis()
        let bytes = (try? EnvelopeCodec.encode(m, format: .json)) ?? []
        let kind = Hub.eventKind(m.type)
        let sid = s.id
        // A failed write fails the batch's commit too: what it sends is dropped with it.
        _ = journaled("append an event of session \(sid)") {
            notifyOthers.insert("events")
            store.appendNumberedEvent(sessionId: sid, atMs: now, kind: kind, frame: bytes, hubId: hubId) { [self] r in
                switch r {
                case .failure(let e):
                    // The database is away: kept (in order, within the hub's replay budget)
                    // and written when it is back.
                    if retriable(e), heldEventBytes + bytes.count <= config.replayHubBytes {
                        heldEvents.append((s, m))
                        heldEventBytes += bytes.count
                        return
                    }
                    log.error("journal.write_failed", ["sessionId": .string(sid), "what": "append event", "reason": .string(e.message)])
                case .success(let offset):
                    let before = s.keptCost
                    s.kept(offset: offset, atMs: now, bytes: bytes.count, kind: kind)
                    replayCost += s.keptCost - before
                    if s.keptCost > config.replaySessionBytes { dropChunks(of: s, downTo: config.replaySessionBytes) }
                    if replayCost > config.replayHubBytes { trimHubBudget() }
                    feed(s, offset, m)
                }
            }
        }
    }

    /// The feed of a session (see `SessionLog`): `m` is its event `offset`. Hands every event
    /// that is next in order to the watchers; a gap (events another hub wrote) is read from the
    /// journal first.
    func feed(_ s: SessionLog, _ offset: Int64, _ m: Message) {
        s.head = max(s.head, offset)
        guard offset > s.delivered else { return }   // had it already
        if s.watchers.isEmpty {
            // Nobody here to hand it to: the feed moves on.
            s.delivered = max(s.delivered, offset)
            s.ready.removeAll()
            return
        }
        s.ready[offset] = m
        while let next = s.ready.removeValue(forKey: s.delivered + 1) {
            s.delivered += 1
            handOut(s, s.delivered, next)
        }
        if !s.ready.isEmpty { fetchEvents([s]) }
    }

    /// Sends event `offset` of `s` to its watchers (those that joined before it; a watcher
    /// whose replay is being read holds it).
    func handOut(_ s: SessionLog, _ offset: Int64, _ m: Message) {
        HubEnvelope.setHeader(m, "offset", .int(offset))
        var encoded: [WireFormat: [UInt8]] = [:]
        for connId in s.watchers.keys {
            guard let p = webPeers[connId], offset > (s.from[connId] ?? 0) else { continue }
            if encoded[p.format] == nil { encoded[p.format] = (try? EnvelopeCodec.encode(m, format: p.format)) ?? [] }
            if let r = p.resuming[s.id] { r.held.append((offset, encoded[p.format]!)) } else { deliver(p.conn, p.format, encoded[p.format]!) }
        }
    }

    /// Reads from the journal the events after each session's feed (written by other hubs,
    /// or missed), then feeds them in order.
    func fetchEvents(_ list: [SessionLog]) {
        // A session whose fetch is under way is fetched again after it: what this call was
        // told of may have committed after that fetch's snapshot.
        for s in list where s.fetching { s.fetchAgain = true }
        let wanted = list.filter { !$0.fetching && !$0.watchers.isEmpty }
        guard !wanted.isEmpty else { return }
        for s in wanted { s.fetching = true; s.fetchAgain = false }
        store.sessionEvents(after: wanted.map { ($0.id, $0.delivered) }) { [self] r in
            for s in wanted { s.fetching = false }
            defer {
                let again = wanted.filter(\.fetchAgain)
                if !again.isEmpty { fetchEvents(again) }
            }
            guard case .success(let events) = r else {
                if case .failure(let e) = r { log.error("journal.read_failed", ["what": "session events", "reason": .string(e.message)]) }
                return
            }
            for e in events {
                guard let s = sessions[e.sessionId], e.offset > s.delivered, s.ready[e.offset] == nil,
                      let m = try? e.frame.withUnsafeBytes({ (b) throws(OrchestraError) in try EnvelopeCodec.decode(b, format: .json) }) else { continue }
                s.ready[e.offset] = m
            }
            for s in wanted {
                while let next = s.ready.removeValue(forKey: s.delivered + 1) {
                    s.delivered += 1
                    s.head = max(s.head, s.delivered)
                    handOut(s, s.delivered, next)
                }
            }
        }
    }

    /// Drops the session's oldest chunks (that this hub wrote) from the replay log until they
    /// cost at most `target`.
    func dropChunks(of s: SessionLog, downTo target: Int) {
        guard let (offsets, freed) = s.dropOldestChunks(downTo: target) else { return }
        replayCost -= freed
        replayDropped.add(UInt64(freed))
        let sid = s.id
        journaled("drop chunks of session \(sid)") {
            store.deleteOwnEvents(sessionId: sid, offsets: offsets, logFailure("drop chunks of session \(sid)"))
        }
        log.debug("session.replay_dropped", ["sessionId": .string(s.id), "from": .int(offsets.first ?? 0), "to": .int(offsets.last ?? 0),
                                             "bytes": .int(Int64(freed)), "oldestOffset": .int(s.oldestOffset)])
    }

    /// Over the hub's budget: the sessions that cost most drop their oldest chunks until every
    /// log together costs at most 7/8 of the budget (so the next event does not trim again).
    func trimHubBudget() {
        let target = config.replayHubBytes - config.replayHubBytes / 8
        var byCost = sessions.values.filter { $0.keptCost > 0 }.sorted { $0.keptCost > $1.keptCost }
        while replayCost > target, let s = byCost.first {
            // Take the largest down to the next largest (or to what the budget still needs).
            let next = byCost.count > 1 ? byCost[1].keptCost : 0
            let goal = max(next, s.keptCost - (replayCost - target))
            let before = s.keptCost
            dropChunks(of: s, downTo: goal)
            byCost.removeFirst()
            if s.keptCost == before { continue }   // only state events left in it
            if s.keptCost > 0 {
                let i = byCost.firstIndex { $0.keptCost <= s.keptCost } ?? byCost.count
                byCost.insert(s, at: i)
            }
        }
    }

    /// Deletes the finished tasks (not dead letters) that finished before `cutoffMs`, 10,000 per
    /// statement, one statement after another until none is left (any hub may: the statement
    /// is the same for all).
    func pruneFinishedTasks(before cutoffMs: Int64) {
        journaled("drop finished tasks past the retention") {
            store.deleteFinishedTasks(before: cutoffMs, limit: 10_000) { [self] r in
                switch r {
                case .success(let n) where n > 0:
                    log.info("tasks.pruned", ["tasks": .int(Int64(n)), "finishedBefore": .int(cutoffMs)])
                    if n == 10_000 { pruneFinishedTasks(before: cutoffMs) }
                case .success:
                    break
                case .failure(let e):
                    log.error("journal.write_failed", ["what": "drop finished tasks", "reason": .string(e.message)])
                }
            }
        }
    }

    /// Drops the events past the recovery window from every replay log (in the journal, every
    /// hub's; in this hub's index, its own).
    func pruneReplayWindow(nowMs: Int64) {
        let cutoff = nowMs - config.recoveryWindowMs
        defer { evictIdleSessions() }
        journaled("drop old session events") { store.deleteEvents(before: cutoff, logFailure("drop old session events")) }
        for s in sessions.values where s.keptEvents > 0 {
            let (_, freed) = s.dropOlder(thanMs: cutoff)
            replayCost -= freed
        }
    }

    /// Sends event `offset` of a replay, as the journal keeps it (JSON without its offset), to
    /// a watcher in its format.
    func sendStored(_ p: Peer, _ frame: [UInt8], offset: Int64) {
        guard let m = try? frame.withUnsafeBytes({ (b) throws(OrchestraError) in try EnvelopeCodec.decode(b, format: .json) }) else { return }
        HubEnvelope.setHeader(m, "offset", .int(offset))
        send(p, m)
    }
}
