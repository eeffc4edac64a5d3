import OrchestraCore

/// A hub as the journal keeps it (several hubs share one database).
public struct HubRecord: Sendable, Equatable {
    public var id: String
    public var startedMs: Int64
    public var heartbeatMs: Int64
    public var stopped: Bool
    /// What the hub last said of itself (agents, connections...), as JSON.
    public var info: JSONValue
}

/// An agent of the cluster as its hub last described it.
public struct AgentPresence: Sendable, Equatable {
    public var agentId: String
    public var hubId: String
    public var online: Bool
    /// The agent's registry entry (`AgentEntry.json`).
    public var info: JSONValue
    public var updatedMs: Int64
}

/// A session's replay log as the journal has it at one moment.
public struct SessionSnapshot: Sendable {
    /// The last offset given.
    public var head: Int64
    /// The oldest offset kept (head + 1 when none is).
    public var oldest: Int64
    /// The events asked for, in order.
    public var events: [(offset: Int64, frame: [UInt8])]
}

/// What `reap` did to the hubs whose heartbeat stopped.
public struct ReapOutcome: Sendable, Equatable {
    /// The hubs found dead or stopped (every time, until they come back).
    public var deadHubs: [String] = []
    /// Tasks they held that went back to the queue, and those that ran out of attempts.
    public var requeued: [String] = []
    public var failed: [String] = []
    /// Agents of theirs now offline.
    public var offlineAgents: [String] = []
}

/// Several hubs on one journal: hubs and heartbeats, task claims fenced by attempt and hub,
/// session events numbered by the journal, each hub's inbox, agent presence, and the reaping
/// of dead hubs. On SQLite there is one hub, and these answer as one hub's journal would.
extension Journal {
    private static let taskSelect = "SELECT \(taskColumnList) FROM tasks"
    static var taskColumnList: String {
        """
        id, state, spec, session_id, submitter, trace_id, priority, strategy, pinned_agent, attempt, \
        max_attempts, agent_id, rejected_by, result, error, error_code, dead, created_ms, updated_ms, hub_id, submit_hub
        """
    }

    // MARK: hubs

    public func heartbeat(hubId: String, startedMs: Int64, nowMs: Int64, info: JSONValue) throws(OrchestraError) {
        let s = try db.prepare("""
            INSERT INTO hubs (id, started_ms, heartbeat_ms, stopped, info) VALUES (?1, ?2, ?3, 0, ?4)
            ON CONFLICT (id) DO UPDATE SET started_ms = excluded.started_ms, heartbeat_ms = excluded.heartbeat_ms,
            stopped = 0, info = excluded.info
            """)
        try s.bind(1, hubId)
        try s.bind(2, startedMs)
        try s.bind(3, nowMs)
        try s.bind(4, info.jsonText)
        try s.run(what: "write the heartbeat of hub \"\(hubId)\"")
    }

    public func stopHub(hubId: String, nowMs: Int64) throws(OrchestraError) {
        let s = try db.prepare("UPDATE hubs SET stopped = 1, heartbeat_ms = ?2 WHERE id = ?1")
        try s.bind(1, hubId)
        try s.bind(2, nowMs)
        try s.run(what: "stop hub \"\(hubId)\"")
    }

    public func hubs() throws(OrchestraError) -> [HubRecord] {
        let s = try db.prepare("SELECT id, started_ms, heartbeat_ms, stopped, info FROM hubs ORDER BY id")
        defer { s.reset() }
        var out: [HubRecord] = []
        while try s.step(what: "read hubs") {
            var r = RowReader(s: s, journal: self, row: "a hub")
            let id = try r.text(0, "id")
            r.row = "hub \"\(id)\""
            out.append(HubRecord(id: id, startedMs: try r.int64(1, "started_ms"), heartbeatMs: try r.int64(2, "heartbeat_ms"),
                                 stopped: try r.int(3, "stopped", in: 0...1) == 1, info: try r.json(4, "info")))
        }
        return out
    }

    // MARK: claims

    /// Leases the task's next attempt (`t`: state assigned, its new attempt and agent) to
    /// `hubId` when the journal still has it queued at `expectedAttempt` and no other hub
    /// reserved it. True when it did.
    public func claimTask(_ t: TaskRecord, expectedAttempt: Int, hubId: String) throws(OrchestraError) -> Bool {
        let s = try db.prepare("""
            UPDATE tasks SET state = 'assigned', attempt = ?2, agent_id = ?3, rejected_by = ?4, updated_ms = ?5, hub_id = ?6
            WHERE id = ?1 AND state = 'queued' AND attempt = ?7 AND (hub_id IS NULL OR hub_id = ?6)
            """)
        try s.bind(1, t.id)
        try s.bind(2, t.attempt)
        try s.bind(3, t.agentId)
        try s.bind(4, JSONValue.array(t.rejectedBy.map { .string($0) }).jsonText)
        try s.bind(5, t.updatedMs)
        try s.bind(6, hubId)
        try s.bind(7, expectedAttempt)
        return try s.run(what: "claim task \"\(t.id)\"") == 1
    }

    /// Writes a placement (back to the queue, or the rejections) when `hubId` still holds the
    /// task's attempt `attempt` (or nobody does). True when it did.
    public func releaseTask(_ t: TaskRecord, attempt: Int, hubId: String) throws(OrchestraError) -> Bool {
        let s = try db.prepare("""
            UPDATE tasks SET state = ?2, agent_id = ?3, rejected_by = ?4, updated_ms = ?5, hub_id = ?6
            WHERE id = ?1 AND attempt = ?7 AND state IN ('queued', 'assigned', 'running') AND (hub_id IS NULL OR hub_id = ?8)
            """)
        try s.bind(1, t.id)
        try s.bind(2, t.state.rawValue)
        try s.bind(3, t.agentId)
        try s.bind(4, JSONValue.array(t.rejectedBy.map { .string($0) }).jsonText)
        try s.bind(5, t.updatedMs)
        try s.bind(6, t.state == .queued ? nil : hubId)
        try s.bind(7, attempt)
        try s.bind(8, hubId)
        return try s.run(what: "place task \"\(t.id)\"") == 1
    }

    /// Reserves for `hubId` up to `limit` queued tasks no hub holds, highest priority and
    /// oldest first, whose capabilities are all in `capabilities` and that are pinned to no
    /// agent or to one of `agents`. They stay queued, reserved to the hub (`hub_id`).
    public func reserveQueued(hubId: String, capabilities: [String], agents: [String], limit: Int, nowMs: Int64) throws(OrchestraError) -> [TaskRecord] {
        let caps = JSONValue.array(capabilities.map { .string($0) }).jsonText
        let pins = JSONValue.array(agents.map { .string($0) }).jsonText
        let s = try db.prepare("""
            \(Journal.taskSelect) WHERE state = 'queued' AND hub_id IS NULL
            AND NOT EXISTS (SELECT 1 FROM json_each(json_extract(spec, '$.capabilities')) c
                            WHERE c.value NOT IN (SELECT value FROM json_each(?1)))
            AND (pinned_agent IS NULL OR pinned_agent IN (SELECT value FROM json_each(?2)))
            ORDER BY priority DESC, created_ms, rowid LIMIT ?3
            """)
        try s.bind(1, caps)
        try s.bind(2, pins)
        try s.bind(3, max(0, limit))
        var out: [TaskRecord] = []
        do {
            defer { s.reset() }
            while try s.step(what: "reserve queued tasks") { out.append(try readTask(s)) }
        }
        let u = try db.prepare("UPDATE tasks SET hub_id = ?2 WHERE id = ?1 AND state = 'queued' AND hub_id IS NULL")
        var reserved: [TaskRecord] = []
        for var t in out {
            try u.bind(1, t.id)
            try u.bind(2, hubId)
            if try u.run(what: "reserve task \"\(t.id)\"") == 1 {
                t.hubId = hubId
                reserved.append(t)
            }
        }
        return reserved
    }

    /// Gives back reservations `hubId` made and could not use.
    public func unreserve(ids: [String], hubId: String) throws(OrchestraError) {
        let s = try db.prepare("UPDATE tasks SET hub_id = NULL WHERE id = ?1 AND state = 'queued' AND hub_id = ?2")
        for id in ids {
            try s.bind(1, id)
            try s.bind(2, hubId)
            try s.run(what: "unreserve task \"\(id)\"")
        }
    }

    /// An agent that registers with tasks it still runs: each one the journal has assigned to
    /// it at that attempt moves to `hubId` (from whatever hub held it). The tasks it got.
    public func adoptTasks(agentId: String, claims: [(taskId: String, attempt: Int64)], hubId: String, nowMs: Int64) throws(OrchestraError) -> [TaskRecord] {
        let u = try db.prepare("""
            UPDATE tasks SET hub_id = ?4, updated_ms = ?5
            WHERE id = ?1 AND agent_id = ?2 AND attempt = ?3 AND state = 'assigned'
            """)
        let q = try db.prepare("\(Journal.taskSelect) WHERE id = ?1")
        var out: [TaskRecord] = []
        for (id, attempt) in claims {
            try u.bind(1, id)
            try u.bind(2, agentId)
            try u.bind(3, attempt)
            try u.bind(4, hubId)
            try u.bind(5, nowMs)
            guard try u.run(what: "adopt task \"\(id)\"") == 1 else { continue }
            try q.bind(1, id)
            defer { q.reset() }
            if try q.step(what: "read task \"\(id)\"") { out.append(try readTask(q)) }
        }
        return out
    }

    // MARK: session events numbered by the journal

    /// Appends an event to the session's replay log at the next offset (the session's head
    /// moves); the offset. The frame is the event without its `offset` header.
    public func appendNumberedEvent(sessionId: String, atMs: Int64, kind: SessionEventKind, frame: [UInt8], hubId: String) throws(OrchestraError) -> Int64 {
        let h = try db.prepare("UPDATE sessions SET head = head + 1, updated_ms = ?2 WHERE id = ?1 RETURNING head")
        try h.bind(1, sessionId)
        try h.bind(2, atMs)
        let offset: Int64
        do {
            defer { h.reset() }
            guard try h.step(what: "number an event of session \"\(sessionId)\"") else {
                throw OrchestraError(.notFound, "journal \(path): append to session \"\(sessionId)\" failed: no such session")
            }
            offset = h.int64(0)
        }
        let s = try db.prepare("INSERT INTO session_events (session_id, event_offset, at_ms, kind, frame, hub_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
        try s.bind(1, sessionId)
        try s.bind(2, offset)
        try s.bind(3, atMs)
        try s.bind(4, kind.rawValue)
        try s.bind(5, frame)
        try s.bind(6, hubId)
        try s.run(what: "append event \(offset) of session \"\(sessionId)\"")
        return offset
    }

    /// The events after each session's offset, by session and offset.
    public func sessionEvents(after cursors: [(sessionId: String, offset: Int64)]) throws(OrchestraError) -> [(sessionId: String, offset: Int64, frame: [UInt8])] {
        var out: [(sessionId: String, offset: Int64, frame: [UInt8])] = []
        for (sid, off) in cursors {
            for e in try sessionEvents(sessionId: sid, after: off) { out.append((sid, e.offset, e.frame)) }
        }
        return out
    }

    /// The session's head, the oldest event its replay log keeps (head + 1 when none), and
    /// its events after `offset`, read together.
    public func sessionSnapshot(sessionId: String, after offset: Int64) throws(OrchestraError) -> SessionSnapshot? {
        guard let rec = try session(id: sessionId) else { return nil }
        let q = try db.prepare("SELECT min(event_offset) FROM session_events WHERE session_id = ?1")
        try q.bind(1, sessionId)
        var oldest = rec.head + 1
        do {
            defer { q.reset() }
            if try q.step(what: "read the oldest event of session \"\(sessionId)\""), !q.isNull(0) { oldest = q.int64(0) }
        }
        return SessionSnapshot(head: rec.head, oldest: oldest, events: try sessionEvents(sessionId: sessionId, after: offset))
    }

    /// Drops the events a hub wrote with these offsets (the byte budget of what it wrote).
    public func deleteOwnEvents(sessionId: String, offsets: [Int64]) throws(OrchestraError) {
        let s = try db.prepare("DELETE FROM session_events WHERE session_id = ?1 AND event_offset = ?2")
        for o in offsets {
            try s.bind(1, sessionId)
            try s.bind(2, o)
            try s.run(what: "drop event \(o) of session \"\(sessionId)\"")
        }
    }

    /// Drops every session event made before `cutoffMs` (the recovery window).
    public func deleteEvents(before cutoffMs: Int64) throws(OrchestraError) -> Int {
        let s = try db.prepare("DELETE FROM session_events WHERE at_ms < ?1")
        try s.bind(1, cutoffMs)
        return try s.run(what: "drop old session events")
    }

    /// Deletes at most `limit` finished tasks (not dead letters) last changed before `cutoffMs`
    /// (the task retention); how many.
    public func deleteFinishedTasks(before cutoffMs: Int64, limit: Int) throws(OrchestraError) -> Int {
        let s = try db.prepare("""
            DELETE FROM tasks WHERE rowid IN (SELECT rowid FROM tasks
            WHERE state IN ('succeeded', 'failed') AND dead = 0 AND updated_ms < ?1 LIMIT ?2)
            """)
        try s.bind(1, cutoffMs)
        try s.bind(2, Int64(max(0, limit)))
        return try s.run(what: "drop finished tasks past the retention")
    }

    // MARK: inboxes

    /// Puts `body` in `hubId`'s inbox at its next sequence number (one writer at a time per
    /// inbox, so a reader that saw n has seen everything up to n).
    public func post(toHub hubId: String, body: [UInt8], nowMs: Int64) throws(OrchestraError) {
        let h = try db.prepare("UPDATE hubs SET inbox_head = inbox_head + 1 WHERE id = ?1 RETURNING inbox_head")
        try h.bind(1, hubId)
        let seq: Int64
        do {
            defer { h.reset() }
            guard try h.step(what: "number a message to hub \"\(hubId)\"") else { return }   // no such hub: nobody to tell
            seq = h.int64(0)
        }
        let s = try db.prepare("INSERT INTO hub_inbox (hub_id, seq, at_ms, body) VALUES (?1, ?2, ?3, ?4)")
        try s.bind(1, hubId)
        try s.bind(2, seq)
        try s.bind(3, nowMs)
        try s.bind(4, body)
        try s.run(what: "post to hub \"\(hubId)\"")
    }

    public func inbox(hubId: String, after seq: Int64) throws(OrchestraError) -> [(seq: Int64, body: [UInt8])] {
        let s = try db.prepare("SELECT seq, body FROM hub_inbox WHERE hub_id = ?1 AND seq > ?2 ORDER BY seq LIMIT 10000")
        defer { s.reset() }
        try s.bind(1, hubId)
        try s.bind(2, seq)
        var out: [(seq: Int64, body: [UInt8])] = []
        while try s.step(what: "read the inbox of hub \"\(hubId)\"") { out.append((s.int64(0), s.blob(1) ?? [])) }
        return out
    }

    public func trimInbox(hubId: String, upTo seq: Int64) throws(OrchestraError) {
        let s = try db.prepare("DELETE FROM hub_inbox WHERE hub_id = ?1 AND seq <= ?2")
        try s.bind(1, hubId)
        try s.bind(2, seq)
        try s.run(what: "trim the inbox of hub \"\(hubId)\"")
    }

    /// The inbox's last sequence number (where a hub that starts reads from).
    public func inboxHead(hubId: String) throws(OrchestraError) -> Int64 {
        let s = try db.prepare("SELECT inbox_head FROM hubs WHERE id = ?1")
        defer { s.reset() }
        try s.bind(1, hubId)
        return try s.step(what: "read the inbox head of hub \"\(hubId)\"") ? s.int64(0) : 0
    }

    // MARK: presence

    public func setPresence(agentId: String, hubId: String, online: Bool, info: JSONValue, nowMs: Int64) throws(OrchestraError) {
        let s = try db.prepare("""
            INSERT INTO agent_presence (agent_id, hub_id, online, info, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5)
            ON CONFLICT (agent_id) DO UPDATE SET hub_id = excluded.hub_id, online = excluded.online, info = excluded.info,
            updated_ms = excluded.updated_ms
            WHERE excluded.online = 1 OR agent_presence.hub_id = excluded.hub_id
            """)
        try s.bind(1, agentId)
        try s.bind(2, hubId)
        try s.bind(3, online ? 1 : 0)
        try s.bind(4, info.jsonText)
        try s.bind(5, nowMs)
        try s.run(what: "write the presence of agent \"\(agentId)\"")
    }

    public func presence() throws(OrchestraError) -> [AgentPresence] {
        let s = try db.prepare("SELECT agent_id, hub_id, online, info, updated_ms FROM agent_presence ORDER BY agent_id")
        defer { s.reset() }
        var out: [AgentPresence] = []
        while try s.step(what: "read agent presence") {
            var r = RowReader(s: s, journal: self, row: "an agent's presence")
            let id = try r.text(0, "agent_id")
            r.row = "the presence of agent \"\(id)\""
            out.append(AgentPresence(agentId: id, hubId: try r.text(1, "hub_id"), online: try r.int(2, "online", in: 0...1) == 1,
                                     info: try r.json(3, "info"), updatedMs: try r.int64(4, "updated_ms")))
        }
        return out
    }

    // MARK: dead hubs

    /// The hubs whose heartbeat is older than `timeoutMs` (and not stopped cleanly) are dead:
    /// their agents go offline, their inboxes are dropped, their reservations freed, and the
    /// tasks they held go back to the queue (or fail, out of attempts) once they have been dead
    /// `graceMs` more (time for their agents to fail over and take their tasks along).
    public func reap(hubId: String, nowMs: Int64, timeoutMs: Int64, graceMs: Int64) throws(OrchestraError) -> ReapOutcome {
        var out = ReapOutcome()
        let dead = try hubs().filter { $0.id != hubId && ($0.stopped || nowMs - $0.heartbeatMs > timeoutMs) }
        for h in dead {
            out.deadHubs.append(h.id)
            let a = try db.prepare("UPDATE agent_presence SET online = 0, updated_ms = ?2 WHERE hub_id = ?1 AND online = 1 RETURNING agent_id")
            try a.bind(1, h.id)
            try a.bind(2, nowMs)
            do {
                defer { a.reset() }
                while try a.step(what: "mark the agents of hub \"\(h.id)\" offline") { out.offlineAgents.append(a.text(0) ?? "") }
            }
            let r = try db.prepare("UPDATE tasks SET hub_id = NULL WHERE hub_id = ?1 AND state = 'queued'")
            try r.bind(1, h.id)
            try r.run(what: "free the reservations of hub \"\(h.id)\"")
            let i = try db.prepare("DELETE FROM hub_inbox WHERE hub_id = ?1")
            try i.bind(1, h.id)
            try i.run(what: "drop the inbox of hub \"\(h.id)\"")
            // Leased tasks wait one more lease for their agents to fail over (after a stop too).
            guard (h.stopped && nowMs - h.heartbeatMs >= graceMs) || nowMs - h.heartbeatMs > timeoutMs + graceMs else { continue }
            let q = try db.prepare("""
                UPDATE tasks SET state = CASE WHEN attempt >= max_attempts THEN 'failed' ELSE 'queued' END,
                dead = CASE WHEN attempt >= max_attempts THEN 1 ELSE 0 END,
                error = CASE WHEN attempt >= max_attempts THEN 'gave up after ' || attempt || ' attempts: its hub ' || ?1 || ' died' ELSE error END,
                error_code = CASE WHEN attempt >= max_attempts THEN 'TASK_001' ELSE error_code END,
                agent_id = CASE WHEN attempt >= max_attempts THEN agent_id ELSE NULL END,
                hub_id = NULL, updated_ms = ?2
                WHERE hub_id = ?1 AND state IN ('assigned', 'running') RETURNING id, state
                """)
            try q.bind(1, h.id)
            try q.bind(2, nowMs)
            defer { q.reset() }
            while try q.step(what: "requeue the tasks of hub \"\(h.id)\"") {
                let id = q.text(0) ?? ""
                if q.text(1) == "failed" { out.failed.append(id) } else { out.requeued.append(id) }
            }
        }
        return out
    }
}
