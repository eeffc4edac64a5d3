import OrchestraCore

/// A session as the journal keeps it.
public struct SessionRecord: Sendable, Equatable {
    public var id: String
    public var owner: String
    /// The last offset given to one of its events (0: none yet).
    public var head: Int64
    public var sharedWith: [String]
    public var createdMs: Int64
}

/// The kinds of session events, by how long the replay log keeps them.
public enum SessionEventKind: Int, Sendable {
    /// A task's state (task.assign, task.accepted, task.rejected, task.result): kept for the
    /// whole recovery window, whatever the byte budget.
    case state = 0
    /// Output (task.stream, task.progress, worker.output, worker.status): kept within the
    /// replay log's byte budget, oldest dropped first.
    case chunk = 1
}

/// One entry of the replay log's index (the event's bytes stay in the journal).
public struct SessionEventEntry: Sendable, Equatable {
    public var sessionId: String
    public var offset: Int64
    public var atMs: Int64
    public var bytes: Int
    public var kind: SessionEventKind
}

/// Sessions: owners, shares, head offsets and the replay log (`session_events`).
extension Journal {
    /// Every session with its shares, by id.
    public func sessions() throws(OrchestraError) -> [SessionRecord] {
        var shares: [String: [String]] = [:]
        let q = try db.prepare("SELECT session_id, user_name FROM session_shares ORDER BY session_id, user_name")
        defer { q.reset() }
        while try q.step(what: "read session shares") {
            let r = RowReader(s: q, journal: self, row: "a session share")
            shares[try r.text(0, "session_id"), default: []].append(try r.text(1, "user_name"))
        }
        let s = try db.prepare("SELECT id, owner, head, created_ms FROM sessions ORDER BY id")
        defer { s.reset() }
        var out: [SessionRecord] = []
        while try s.step(what: "read sessions") {
            var r = RowReader(s: s, journal: self, row: "a session")
            let id = try r.text(0, "id")
            r.row = "session \"\(id)\""
            out.append(SessionRecord(id: id, owner: try r.text(1, "owner"), head: try r.int64(2, "head"),
                                     sharedWith: shares[id] ?? [], createdMs: try r.int64(3, "created_ms")))
        }
        return out
    }

    /// One session with its shares, or nil.
    public func session(id: String) throws(OrchestraError) -> SessionRecord? {
        let s = try db.prepare("SELECT owner, head, created_ms FROM sessions WHERE id = ?1")
        defer { s.reset() }
        try s.bind(1, id)
        guard try s.step(what: "read session \"\(id)\"") else { return nil }
        let r = RowReader(s: s, journal: self, row: "session \"\(id)\"")
        var rec = SessionRecord(id: id, owner: try r.text(0, "owner"), head: try r.int64(1, "head"), sharedWith: [],
                                createdMs: try r.int64(2, "created_ms"))
        s.reset()
        let q = try db.prepare("SELECT user_name FROM session_shares WHERE session_id = ?1 ORDER BY user_name")
        defer { q.reset() }
        try q.bind(1, id)
        while try q.step(what: "read the shares of session \"\(id)\"") {
            rec.sharedWith.append(try RowReader(s: q, journal: self, row: "a share of session \"\(id)\"").text(0, "user_name"))
        }
        return rec
    }

    /// Creates a session owned by `owner`, head 0. False when it exists.
    public func insertSession(id: String, owner: String, nowMs: Int64) throws(OrchestraError) -> Bool {
        let s = try db.prepare("INSERT INTO sessions (id, owner, head, created_ms, updated_ms) VALUES (?1, ?2, 0, ?3, ?3) ON CONFLICT (id) DO NOTHING")
        try s.bind(1, id)
        try s.bind(2, owner)
        try s.bind(3, nowMs)
        return try s.run(what: "create session \"\(id)\"") == 1
    }

    /// Records the session's head offset. `.notFound` when there is no such session.
    public func setSessionHead(id: String, head: Int64, nowMs: Int64) throws(OrchestraError) {
        let s = try db.prepare("UPDATE sessions SET head = ?2, updated_ms = ?3 WHERE id = ?1")
        try s.bind(1, id)
        try s.bind(2, head)
        try s.bind(3, nowMs)
        if try s.run(what: "update session \"\(id)\"") != 1 {
            throw OrchestraError(.notFound, "journal \(path): update session \"\(id)\" failed: no such session")
        }
    }

    /// Replaces the users the session is shared with.
    public func setSessionShares(id: String, users: [String]) throws(OrchestraError) {
        try db.transaction { () throws(OrchestraError) in
            let d = try db.prepare("DELETE FROM session_shares WHERE session_id = ?1")
            try d.bind(1, id)
            try d.run(what: "update the shares of session \"\(id)\"")
            let s = try db.prepare("INSERT INTO session_shares (session_id, user_name) VALUES (?1, ?2) ON CONFLICT DO NOTHING")
            for u in users {
                try s.bind(1, id)
                try s.bind(2, u)
                try s.run(what: "share session \"\(id)\"")
            }
        }
    }

    /// Adds an event (its encoded envelope) to the session's replay log.
    public func appendSessionEvent(sessionId: String, offset: Int64, atMs: Int64, kind: SessionEventKind,
                                   frame: [UInt8]) throws(OrchestraError) {
        let s = try db.prepare("INSERT INTO session_events (session_id, event_offset, at_ms, kind, frame) VALUES (?1, ?2, ?3, ?4, ?5)")
        try s.bind(1, sessionId)
        try s.bind(2, offset)
        try s.bind(3, atMs)
        try s.bind(4, kind.rawValue)
        try s.bind(5, frame)
        try s.run(what: "append event \(offset) of session \"\(sessionId)\"")
    }

    /// The replay log's index: every kept event without its bytes, by session and offset
    /// (of one session when `sessionId` is given).
    public func sessionEventIndex(sessionId: String? = nil) throws(OrchestraError) -> [SessionEventEntry] {
        let columns = "SELECT session_id, event_offset, at_ms, kind, length(frame) FROM session_events"
        let s = try db.prepare(sessionId == nil ? "\(columns) ORDER BY session_id, event_offset"
                                                : "\(columns) WHERE session_id = ?1 ORDER BY event_offset")
        defer { s.reset() }
        if let sessionId { try s.bind(1, sessionId) }
        var out: [SessionEventEntry] = []
        while try s.step(what: "read the session events") {
            var r = RowReader(s: s, journal: self, row: "a session event")
            let sid = try r.text(0, "session_id")
            r.row = "an event of session \"\(sid)\""
            out.append(SessionEventEntry(sessionId: sid, offset: try r.int64(1, "event_offset"), atMs: try r.int64(2, "at_ms"),
                                         bytes: try r.int(4, "frame", in: 0...Int.max),
                                         kind: SessionEventKind(rawValue: try r.int(3, "kind", in: 0...1))!))
        }
        return out
    }

    /// The session's kept events after `offset`, in order, as (offset, encoded envelope).
    public func sessionEvents(sessionId: String, after offset: Int64) throws(OrchestraError) -> [(offset: Int64, frame: [UInt8])] {
        let s = try db.prepare("SELECT event_offset, frame FROM session_events WHERE session_id = ?1 AND event_offset > ?2 ORDER BY event_offset")
        defer { s.reset() }
        try s.bind(1, sessionId)
        try s.bind(2, offset)
        var out: [(offset: Int64, frame: [UInt8])] = []
        while try s.step(what: "replay session \"\(sessionId)\"") {
            guard s.columnType(1) == .blob || s.columnType(1) == .text, let frame = s.blob(1) else {
                throw badRow("an event of session \"\(sessionId)\"", "frame", "is not a blob")
            }
            out.append((s.int64(0), frame))
        }
        return out
    }

    /// Drops the session's events with offsets in `range`: every kind, or only `kind`.
    public func deleteSessionEvents(sessionId: String, _ range: ClosedRange<Int64>, kind: SessionEventKind? = nil) throws(OrchestraError) {
        let sql = kind == nil
            ? "DELETE FROM session_events WHERE session_id = ?1 AND event_offset BETWEEN ?2 AND ?3"
            : "DELETE FROM session_events WHERE session_id = ?1 AND event_offset BETWEEN ?2 AND ?3 AND kind = ?4"
        let s = try db.prepare(sql)
        try s.bind(1, sessionId)
        try s.bind(2, range.lowerBound)
        try s.bind(3, range.upperBound)
        if let kind { try s.bind(4, kind.rawValue) }
        try s.run(what: "drop events of session \"\(sessionId)\"")
    }
}
