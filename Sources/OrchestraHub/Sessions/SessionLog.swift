import OrchestraCore

/// A web session's events, numbered 1, 2, 3… and kept for the recovery window, so a client
/// that reconnects resumes from its last offset without gaps. Touched on the I/O thread only.
final class SessionLog {
    let id: String
    private(set) var nextOffset: Int64 = 1
    /// (offset, time, event), oldest first.
    private var events: [(offset: Int64, atMs: Int64, message: Message)] = []
    private var head = 0
    /// Connection ids watching this session, and their users.
    var watchers: [UInt64: String] = [:]
    var lastActivityMs: Int64

    init(id: String, nowMs: Int64) {
        self.id = id
        self.lastActivityMs = nowMs
    }

    var count: Int { events.count - head }

    /// The oldest offset still kept (nextOffset when none is).
    var oldestOffset: Int64 { head < events.count ? events[head].offset : nextOffset }

    /// Numbers and keeps `m` (its `offset` header is set); returns the offset.
    func append(_ m: Message, nowMs: Int64, windowMs: Int64, maxEvents: Int) -> Int64 {
        let offset = nextOffset
        nextOffset += 1
        HubEnvelope.setHeader(m, "offset", .int(offset))
        events.append((offset, nowMs, m))
        lastActivityMs = nowMs
        prune(nowMs: nowMs, windowMs: windowMs, maxEvents: maxEvents)
        return offset
    }

    /// Drops events older than the window or beyond the count limit.
    func prune(nowMs: Int64, windowMs: Int64, maxEvents: Int) {
        while head < events.count && (count > maxEvents || nowMs - events[head].atMs > windowMs) {
            head += 1
        }
        if head > 1024 && head * 2 > events.count {
            events.removeFirst(head)
            head = 0
        }
    }

    /// Events after `offset`, in order; nil when some of them are no longer kept.
    func events(after offset: Int64) -> [Message]? {
        if offset + 1 < oldestOffset { return nil }
        var out: [Message] = []
        for i in head..<events.count where events[i].offset > offset { out.append(events[i].message) }
        return out
    }
}
