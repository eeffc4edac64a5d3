import OrchestraCore

/// Several hubs on one PostgreSQL: the `HubStore` calls of Journal+Cluster.swift, in SQL that
/// holds when several hubs run it at once (row locks order the writers of one session's
/// offsets or one inbox, `FOR UPDATE SKIP LOCKED` spreads queued tasks over hubs without
/// waiting, every placement is fenced by attempt and hub). Times compared across hubs are the
/// server's (`nowSQL`), so the hubs' clocks need not agree.
extension PostgresStore {
    /// The server's time in milliseconds since the epoch.
    static let nowSQL = "(extract(epoch from statement_timestamp()) * 1000)::int8"

    /// The hubs (not `$1`) whose heartbeat is older than `older` ms by the server's clock, or
    /// that stopped more than `stoppedOlder` ms ago (a stop writes its time as the heartbeat).
    static func deadHubs(older: String, stoppedOlder: String = "0") -> String {
        "SELECT id FROM hubs WHERE id <> $1 AND ((stopped AND heartbeat_ms <= \(nowSQL) - \(stoppedOlder)) OR heartbeat_ms < \(nowSQL) - \(older))"
    }

    public func heartbeat(hubId: String, startedMs: Int64, nowMs: Int64, info: JSONValue, _ done: @escaping StoreDone<Void>) {
        lockFirst(hub: hubId)
        write("""
            INSERT INTO hubs (id, started_ms, heartbeat_ms, stopped, info) VALUES ($1, $2, \(PostgresStore.nowSQL), false, $3)
            ON CONFLICT (id) DO UPDATE SET started_ms = excluded.started_ms, heartbeat_ms = excluded.heartbeat_ms,
            stopped = false, info = excluded.info
            """, [.text(hubId), .int64(startedMs), .text(info.jsonText)], done) { _ in () }
    }

    public func stopHub(hubId: String, nowMs: Int64, _ done: @escaping StoreDone<Void>) {
        lockFirst(hub: hubId)
        write("UPDATE hubs SET stopped = true, heartbeat_ms = \(PostgresStore.nowSQL) WHERE id = $1", [.text(hubId)], done) { _ in () }
    }

    public func hubs(_ done: @escaping StoreDone<(hubs: [HubRecord], nowMs: Int64)>) {
        readMany([PostgresStatement("SELECT id, started_ms, heartbeat_ms, stopped, info FROM hubs ORDER BY id"),
                  PostgresStatement("SELECT \(PostgresStore.nowSQL)")], done) { (rs) throws(OrchestraError) in
            var out: [HubRecord] = []
            for i in 0..<rs[0].rowCount {
                guard let id = try rs[0].text(i, 0) else { continue }
                let info = (try? JSONValue.parse(Array((try rs[0].text(i, 4) ?? "{}").utf8))) ?? .object([])
                out.append(HubRecord(id: id, startedMs: try rs[0].int64(i, 1) ?? 0, heartbeatMs: try rs[0].int64(i, 2) ?? 0,
                                     stopped: try rs[0].bool(i, 3) ?? false, info: info))
            }
            return (out, try rs[1].int64(0, 0) ?? wallClockMillis())
        }
    }

    public func releaseTask(_ t: TaskRecord, attempt: Int, hubId: String, _ done: @escaping StoreDone<Bool>) {
        write("""
            UPDATE tasks SET state = $2, agent_id = $3, rejected_by = $4, updated_ms = $5, hub_id = $6
            WHERE id = $1 AND attempt = $7 AND state IN ('queued', 'assigned', 'running') AND (hub_id IS NULL OR hub_id = $8)
            """, [.text(t.id), .text(t.state.rawValue), t.agentId.map { .text($0) } ?? .null,
                  .text(JSONValue.array(t.rejectedBy.map { .string($0) }).jsonText), .int64(t.updatedMs),
                  t.state == .queued ? .null : .text(hubId), .int64(Int64(attempt)), .text(hubId)], tasks: .one(t.id), done) { $0.affectedRows == 1 }
    }

    public func reserveQueued(hubId: String, capabilities: [String], agents: [String], limit: Int, nowMs: Int64,
                              _ done: @escaping StoreDone<[TaskRecord]>) {
        write("""
            UPDATE tasks SET hub_id = $1 WHERE id IN (
                SELECT id FROM tasks WHERE state = 'queued' AND hub_id IS NULL
                AND coalesce(spec::jsonb -> 'capabilities', '[]'::jsonb) <@ $2::jsonb
                AND (pinned_agent IS NULL OR pinned_agent IN (SELECT jsonb_array_elements_text($3::jsonb)))
                ORDER BY priority DESC, created_ms LIMIT $4 FOR UPDATE SKIP LOCKED)
            RETURNING \(PostgresStore.taskColumns)
            """, [.text(hubId), .text(JSONValue.array(capabilities.map { .string($0) }).jsonText),
                  .text(JSONValue.array(agents.map { .string($0) }).jsonText), .int64(Int64(max(0, limit)))], tasks: .chosen, done) { [self] (r) throws(OrchestraError) in
            try readTasks(r).sorted { ($1.priority, $0.createdMs) < ($0.priority, $1.createdMs) }
        }
    }

    public func unreserve(ids: [String], hubId: String, _ done: @escaping StoreDone<Void>) {
        write("UPDATE tasks SET hub_id = NULL WHERE id IN (SELECT jsonb_array_elements_text($1::jsonb)) AND state = 'queued' AND hub_id = $2",
              [.text(JSONValue.array(ids.map { .string($0) }).jsonText), .text(hubId)], tasks: .chosen, done) { _ in () }
    }

    public func adoptTasks(agentId: String, claims: [(taskId: String, attempt: Int64)], hubId: String, nowMs: Int64,
                           _ done: @escaping StoreDone<[TaskRecord]>) {
        let list = JSONValue.array(claims.map { JSONValue.object([("t", .string($0.taskId)), ("a", .int($0.attempt))]) }).jsonText
        write("""
            UPDATE tasks t SET hub_id = $3, updated_ms = $4
            FROM (SELECT x ->> 't' AS id, (x ->> 'a')::int8 AS attempt FROM jsonb_array_elements($2::jsonb) x) c
            WHERE t.id = c.id AND t.agent_id = $1 AND t.attempt = c.attempt AND t.state = 'assigned'
            RETURNING \(PostgresStore.taskColumns.split(separator: ",").map { "t." + $0.trimmingSpaces }.joined(separator: ", "))
            """, [.text(agentId), .text(list), .text(hubId), .int64(nowMs)], tasks: .chosen, done) { [self] (r) throws(OrchestraError) in try readTasks(r) }
    }

    public func appendNumberedEvent(sessionId: String, atMs: Int64, kind: SessionEventKind, frame: [UInt8], hubId: String,
                                    _ done: @escaping StoreDone<Int64>) {
        lockFirst(session: sessionId)
        write("""
            WITH h AS (UPDATE sessions SET head = head + 1, updated_ms = $3 WHERE id = $1 RETURNING head)
            INSERT INTO session_events (session_id, event_offset, at_ms, kind, frame, hub_id)
            SELECT $1, h.head, $3, $4, $5, $2 FROM h RETURNING event_offset
            """, [.text(sessionId), .text(hubId), .int64(atMs), .int64(Int64(kind.rawValue)), .bytea(frame)], done) { [label] (r) throws(OrchestraError) -> Int64 in
            guard r.rowCount == 1, let o = try r.int64(0, 0) else {
                throw OrchestraError(.notFound, "journal \(label): append to session \"\(sessionId)\" failed: no such session")
            }
            return o
        }
    }

    public func sessionEvents(after cursors: [(sessionId: String, offset: Int64)],
                              _ done: @escaping StoreDone<[(sessionId: String, offset: Int64, frame: [UInt8])]>) {
        let list = JSONValue.array(cursors.map { JSONValue.object([("s", .string($0.sessionId)), ("o", .int($0.offset))]) }).jsonText
        // One range scan of the primary key per session. (A plain join with the cursors read
        // every kept event: the planner cannot see the offsets and chose a sequential scan and
        // a hash join, 2.7 ms a call with five minutes of events. The ORDER BY keeps the
        // LATERAL subquery from being flattened back into that join.)
        read("""
            SELECT c.sid, e.event_offset, e.frame
            FROM (SELECT x ->> 's' AS sid, (x ->> 'o')::int8 AS off FROM jsonb_array_elements($1::jsonb) x) c
            CROSS JOIN LATERAL (SELECT event_offset, frame FROM session_events
                                WHERE session_id = c.sid AND event_offset > c.off ORDER BY event_offset) e
            ORDER BY c.sid, e.event_offset
            """, [.text(list)], done) { (r) throws(OrchestraError) -> [(sessionId: String, offset: Int64, frame: [UInt8])] in
            var out: [(sessionId: String, offset: Int64, frame: [UInt8])] = []
            for i in 0..<r.rowCount {
                guard let s = try r.text(i, 0), let o = try r.int64(i, 1), let f = try r.bytes(i, 2) else { continue }
                out.append((s, o, f))
            }
            return out
        }
    }

    public func sessionSnapshot(sessionId: String, after offset: Int64, _ done: @escaping StoreDone<SessionSnapshot?>) {
        readMany([PostgresStatement("SELECT head, (SELECT min(event_offset) FROM session_events WHERE session_id = $1) FROM sessions WHERE id = $1",
                                    [.text(sessionId)]),
                  PostgresStatement("SELECT event_offset, frame FROM session_events WHERE session_id = $1 AND event_offset > $2 ORDER BY event_offset",
                                    [.text(sessionId), .int64(offset)])], done) { (rs) throws(OrchestraError) -> SessionSnapshot? in
            guard rs[0].rowCount == 1, let head = try rs[0].int64(0, 0) else { return nil }
            var events: [(offset: Int64, frame: [UInt8])] = []
            for i in 0..<rs[1].rowCount {
                guard let o = try rs[1].int64(i, 0), o <= head, let f = try rs[1].bytes(i, 1) else { continue }
                events.append((o, f))
            }
            return SessionSnapshot(head: head, oldest: try rs[0].int64(0, 1) ?? head + 1, events: events)
        }
    }

    public func deleteOwnEvents(sessionId: String, offsets: [Int64], _ done: @escaping StoreDone<Void>) {
        write("DELETE FROM session_events WHERE session_id = $1 AND event_offset IN (SELECT jsonb_array_elements_text($2::jsonb)::int8)",
              [.text(sessionId), .text(JSONValue.array(offsets.map { .int($0) }).jsonText)], done) { _ in () }
    }

    public func deleteEvents(before cutoffMs: Int64, _ done: @escaping StoreDone<Int>) {
        write("DELETE FROM session_events WHERE at_ms < $1", [.int64(cutoffMs)], done) { $0.affectedRows }
    }

    public func deleteFinishedTasks(before cutoffMs: Int64, limit: Int, _ done: @escaping StoreDone<Int>) {
        write("""
            DELETE FROM tasks WHERE id IN (SELECT id FROM tasks
            WHERE state IN ('succeeded', 'failed') AND NOT dead AND updated_ms < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)
            """, [.int64(cutoffMs), .int64(Int64(max(0, limit)))], tasks: .chosen, done) { $0.affectedRows }
    }

    public func post(toHub hubId: String, body: [UInt8], nowMs: Int64, _ done: @escaping StoreDone<Void>) {
        lockFirst(hub: hubId)
        write("""
            WITH h AS (UPDATE hubs SET inbox_head = inbox_head + 1 WHERE id = $1 RETURNING inbox_head)
            INSERT INTO hub_inbox (hub_id, seq, at_ms, body) SELECT $1, h.inbox_head, $2, $3 FROM h
            """, [.text(hubId), .int64(nowMs), .bytea(body)], done) { _ in () }
    }

    public func inbox(hubId: String, after seq: Int64, _ done: @escaping StoreDone<[(seq: Int64, body: [UInt8])]>) {
        read("SELECT seq, body FROM hub_inbox WHERE hub_id = $1 AND seq > $2 ORDER BY seq LIMIT 10000", [.text(hubId), .int64(seq)],
             done) { (r) throws(OrchestraError) -> [(seq: Int64, body: [UInt8])] in
            var out: [(seq: Int64, body: [UInt8])] = []
            for i in 0..<r.rowCount {
                guard let s = try r.int64(i, 0), let b = try r.bytes(i, 1) else { continue }
                out.append((s, b))
            }
            return out
        }
    }

    public func trimInbox(hubId: String, upTo seq: Int64, _ done: @escaping StoreDone<Void>) {
        write("DELETE FROM hub_inbox WHERE hub_id = $1 AND seq <= $2", [.text(hubId), .int64(seq)], done) { _ in () }
    }

    public func inboxHead(hubId: String, _ done: @escaping StoreDone<Int64>) {
        read("SELECT inbox_head FROM hubs WHERE id = $1", [.text(hubId)], done) { (r) throws(OrchestraError) -> Int64 in
            r.rowCount == 0 ? 0 : (try r.int64(0, 0) ?? 0)
        }
    }

    public func setPresence(agentId: String, hubId: String, online: Bool, info: JSONValue, nowMs: Int64, _ done: @escaping StoreDone<Void>) {
        write("""
            INSERT INTO agent_presence (agent_id, hub_id, online, info, updated_ms) VALUES ($1, $2, $3, $4, $5)
            ON CONFLICT (agent_id) DO UPDATE SET hub_id = excluded.hub_id, online = excluded.online, info = excluded.info,
            updated_ms = excluded.updated_ms
            WHERE excluded.online OR agent_presence.hub_id = excluded.hub_id
            """, [.text(agentId), .text(hubId), .bool(online), .text(info.jsonText), .int64(nowMs)], done) { _ in () }
    }

    public func presence(_ done: @escaping StoreDone<[AgentPresence]>) {
        read("SELECT agent_id, hub_id, online, info, updated_ms FROM agent_presence ORDER BY agent_id", [], done) { (r) throws(OrchestraError) -> [AgentPresence] in
            var out: [AgentPresence] = []
            for i in 0..<r.rowCount {
                guard let id = try r.text(i, 0), let hub = try r.text(i, 1) else { continue }
                let info = (try? JSONValue.parse(Array((try r.text(i, 3) ?? "{}").utf8))) ?? .object([])
                out.append(AgentPresence(agentId: id, hubId: hub, online: try r.bool(i, 2) ?? false, info: info, updatedMs: try r.int64(i, 4) ?? 0))
            }
            return out
        }
    }

    public func claimUnpublishedOutcomes(deadHubId: String, timeoutMs: Int64, windowMs: Int64, _ done: @escaping StoreDone<[TaskRecord]>) {
        lockFirst(hub: deadHubId)
        // The claim: a mark in the dead hub's info, which its next heartbeat (if it comes
        // back) overwrites. A task.result event is a state event (kind 0) whose envelope this
        // hub's encoder wrote ("type":"task.result") naming the task.
        write("""
            WITH h AS (UPDATE hubs SET info = jsonb_set(info::jsonb, '{repaired}', 'true')::text
                       WHERE id = $1 AND NOT stopped AND heartbeat_ms < \(PostgresStore.nowSQL) - $2
                       AND (info::jsonb -> 'repaired') IS NULL RETURNING heartbeat_ms)
            SELECT \(PostgresStore.taskColumns) FROM tasks, h
            WHERE tasks.hub_id = $1 AND tasks.state IN ('succeeded', 'failed') AND tasks.updated_ms >= h.heartbeat_ms - $3
            AND NOT EXISTS (SELECT 1 FROM session_events e WHERE e.session_id = tasks.session_id AND e.kind = 0
                            AND position('"type":"task.result"'::bytea IN e.frame) > 0
                            AND position(convert_to('"' || tasks.id || '"', 'UTF8') IN e.frame) > 0)
            """, [.text(deadHubId), .int64(timeoutMs), .int64(windowMs)], tasks: .chosen, done) { [self] (r) throws(OrchestraError) in
            try readTasks(r).sorted { $0.updatedMs < $1.updatedMs }
        }
    }

    public func reap(hubId: String, nowMs: Int64, timeoutMs: Int64, graceMs: Int64, _ done: @escaping StoreDone<ReapOutcome>) {
        let dead = PostgresStore.deadHubs(older: "$2")
        // Their leased tasks wait one more lease (`graceMs`) for their agents to fail over
        // and take them along; after a stop too.
        let gone = PostgresStore.deadHubs(older: "$3", stoppedOlder: "$5")
        write("""
            WITH a AS (UPDATE agent_presence SET online = false, updated_ms = $4 WHERE online AND hub_id IN (\(dead)) RETURNING agent_id),
                 r AS (UPDATE tasks SET hub_id = NULL WHERE state = 'queued' AND hub_id IN (\(dead)) RETURNING id),
                 i AS (DELETE FROM hub_inbox WHERE hub_id IN (\(dead)) RETURNING seq),
                 q AS (UPDATE tasks SET state = CASE WHEN attempt >= max_attempts THEN 'failed' ELSE 'queued' END,
                         dead = attempt >= max_attempts,
                         error = CASE WHEN attempt >= max_attempts THEN 'gave up after ' || attempt || ' attempts: its hub ' || hub_id || ' died' ELSE error END,
                         error_code = CASE WHEN attempt >= max_attempts THEN 'TASK_001' ELSE error_code END,
                         agent_id = CASE WHEN attempt >= max_attempts THEN agent_id ELSE NULL END,
                         hub_id = NULL, updated_ms = $4
                       WHERE state IN ('assigned', 'running') AND hub_id IN (\(gone)) RETURNING id, state)
            SELECT 'a', agent_id FROM a UNION ALL SELECT q.state, q.id FROM q UNION ALL SELECT 'h', id FROM (\(dead)) d
            """, [.text(hubId), .int64(timeoutMs), .int64(timeoutMs + graceMs), .int64(nowMs), .int64(graceMs)], tasks: .chosen, done) { (r) throws(OrchestraError) -> ReapOutcome in
            var out = ReapOutcome()
            for i in 0..<r.rowCount {
                guard let what = try r.text(i, 0), let id = try r.text(i, 1) else { continue }
                switch what {
                case "a": out.offlineAgents.append(id)
                case "h": out.deadHubs.append(id)
                case "failed": out.failed.append(id)
                default: out.requeued.append(id)
                }
            }
            return out
        }
    }

    /// Tells the other hubs, at this batch's commit, what changed (one notification per
    /// transaction, its payload the kinds in `what`, e.g. "tasks events inbox:hub-b").
    public func notify(_ what: Set<String>) {
        guard !what.isEmpty else { return }
        var payload = ""
        for w in what.sorted() {
            if payload.utf8.count + w.utf8.count + 1 > 4000 { payload = "all"; break }
            payload += payload.isEmpty ? w : " " + w
        }
        write("SELECT pg_notify($1, $2)", [.text(PostgresStore.channel), .text(payload)], { (_: Result<Void, OrchestraError>) in }) { _ in () }
    }
}

extension Substring {
    /// Without leading and trailing spaces and newlines.
    var trimmingSpaces: String {
        var s = self
        while let c = s.first, c == " " || c == "\n" { s = s.dropFirst() }
        while let c = s.last, c == " " || c == "\n" { s = s.dropLast() }
        return String(s)
    }
}
