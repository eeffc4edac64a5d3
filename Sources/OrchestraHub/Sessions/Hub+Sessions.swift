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
    /// in the replay log, no head to write, no unfinished task (the journal has them;
    /// `sessionLog` loads them again).
    func evictIdleSessions() {
        var busy = Set<String>()
        for t in live.values { if let sid = t.rec.sessionId { busy.insert(sid) } }
        for (id, s) in sessions where s.watchers.isEmpty && s.keptEvents == 0 && !s.headDirty && !busy.contains(id) {
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

    /// Numbers `m` (its `offset` header), journals it in the session's replay log with the
    /// open batch (so no watcher sees an offset the journal does not have) and keeps the log
    /// within its budgets. Returns its JSON encoding, which watchers speaking JSON get as is.
    func record(_ m: Message, in s: SessionLog) -> [UInt8] {
        let now = wallClockMillis()
        if !s.headDirty { dirtyHeads.append(s) }
        let offset = s.nextOffset()
        HubEnvelope.setHeader(m, "offset", .int(offset))
        let bytes = (try? EnvelopeCodec.encode(m, format: .json)) ?? []
        let kind = Hub.eventKind(m.type)
        let sid = s.id
        // A failed write fails the batch's commit too: what it sends is dropped with it.
        guard journaled("append event \(offset) of session \(sid)", {
            store.appendSessionEvent(sessionId: sid, offset: offset, atMs: now, kind: kind, frame: bytes,
                                     logFailure("append event \(offset) of session \(sid)"))
        }) else { return bytes }
        let before = s.keptCost
        s.kept(offset: offset, atMs: now, bytes: bytes.count, kind: kind)
        replayCost += s.keptCost - before
        if s.keptCost > config.replaySessionBytes { dropChunks(of: s, downTo: config.replaySessionBytes) }
        if replayCost > config.replayHubBytes { trimHubBudget() }
        return bytes
    }

    /// Drops the session's oldest chunks from the replay log until it costs at most `target`.
    func dropChunks(of s: SessionLog, downTo target: Int) {
        guard let (range, freed) = s.dropOldestChunks(downTo: target) else { return }
        replayCost -= freed
        replayDropped.add(UInt64(freed))
        let sid = s.id
        journaled("drop chunks of session \(sid)") {
            store.deleteSessionEvents(sessionId: sid, range, kind: .chunk, logFailure("drop chunks of session \(sid)"))
        }
        log.debug("session.replay_dropped", ["sessionId": .string(s.id), "from": .int(range.lowerBound), "to": .int(range.upperBound),
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

    /// Drops the events past the recovery window from every replay log.
    func pruneReplayWindow(nowMs: Int64) {
        let cutoff = nowMs - config.recoveryWindowMs
        defer { evictIdleSessions() }
        for s in sessions.values where s.keptEvents > 0 {
            let (ranges, freed) = s.dropOlder(thanMs: cutoff)
            guard freed > 0 else { continue }
            replayCost -= freed
            let sid = s.id
            journaled("drop old events of session \(sid)") {
                for (range, kind) in ranges {
                    store.deleteSessionEvents(sessionId: sid, range, kind: kind, logFailure("drop old events of session \(sid)"))
                }
            }
        }
    }

    /// Writes the head offsets that moved in this batch (into it, before it commits).
    func writeSessionHeads() {
        guard !dirtyHeads.isEmpty else { return }
        let now = wallClockMillis()
        for s in dirtyHeads {
            store.setSessionHead(id: s.id, head: s.head, nowMs: now, logFailure("write the head of session \(s.id)"))
            s.headDirty = false
        }
        dirtyHeads.removeAll(keepingCapacity: true)
    }

    /// Sends an event kept in the journal (its JSON encoding) to a watcher in its format.
    func sendStored(_ p: Peer, _ frame: [UInt8]) {
        if p.format == .json {
            deliver(p.conn, .json, frame)
        } else if let m = try? frame.withUnsafeBytes({ (b) throws(OrchestraError) in try EnvelopeCodec.decode(b, format: .json) }) {
            send(p, m)
        }
    }
}
