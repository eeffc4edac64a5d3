import OrchestraCore

/// A web session: its owner and the users it is shared with, its watchers, the feed that hands
/// them its events in order, and the index of the events this hub wrote to its replay log.
/// Events are numbered 1, 2, 3… by the journal (the session's head moves with every event, in
/// the transaction that writes it), so numbering continues after a restart and is one sequence
/// for every hub; their bytes live in the journal's `session_events`. Touched on the hub's I/O
/// thread only.
final class SessionLog {
    /// One kept event of the index.
    struct Entry {
        let offset: Int64
        let atMs: Int64
        /// Its cost against the byte budgets (`SessionLog.cost`).
        let cost: Int
    }

    let id: String
    var owner: String
    var sharedWith: Set<String>
    /// The last offset given (0: none yet).
    var head: Int64
    /// Connection ids watching this session, and their users.
    var watchers: [UInt64: String] = [:]
    /// The feed: every event up to `delivered` has been handed to the watchers (each gets
    /// those after the offset it joined at, `from`); `ready` holds later events until the ones
    /// before them are known (written by another hub, they are read from the journal).
    var delivered: Int64
    var ready: [Int64: Message] = [:]
    var from: [UInt64: Int64] = [:]
    var fetching = false
    var fetchAgain = false
    /// Kept events by kind, each oldest first (`first` is the oldest still kept).
    private var states = Ring()
    private var chunks = Ring()
    /// What the kept events cost, together.
    private(set) var keptCost = 0

    /// The journal's cost of one event beyond its bytes (row, index entry): budgets count it,
    /// so a flood of tiny chunks is bounded as well as a few large ones.
    static let overheadPerEvent = 128

    static func cost(bytes: Int) -> Int { bytes + overheadPerEvent }

    init(id: String, owner: String, sharedWith: Set<String>, head: Int64) {
        self.id = id
        self.owner = owner
        self.sharedWith = sharedWith
        self.head = head
        self.delivered = head
    }

    /// The oldest offset still kept (head + 1 when none is).
    var oldestOffset: Int64 {
        switch (states.first?.offset, chunks.first?.offset) {
        case let (a?, b?): return min(a, b)
        case let (a?, nil): return a
        case let (nil, b?): return b
        case (nil, nil): return head + 1
        }
    }

    var keptEvents: Int { states.count + chunks.count }

    /// Adds a journaled event to the index.
    func kept(offset: Int64, atMs: Int64, bytes: Int, kind: SessionEventKind) {
        let e = Entry(offset: offset, atMs: atMs, cost: SessionLog.cost(bytes: bytes))
        keptCost += e.cost
        if kind == .state { states.append(e) } else { chunks.append(e) }
    }

    /// Drops the oldest chunks until the kept cost is at most `target` or no chunk is left.
    /// Returns the offsets dropped and what they cost; nil when nothing was dropped.
    func dropOldestChunks(downTo target: Int) -> (offsets: [Int64], cost: Int)? {
        guard keptCost > target, chunks.first != nil else { return nil }
        var offsets: [Int64] = [], freed = 0
        while keptCost > target, let e = chunks.popFirst() {
            keptCost -= e.cost
            freed += e.cost
            offsets.append(e.offset)
        }
        return (offsets, freed)
    }

    /// Drops every event made before `cutoffMs`. Returns, per kind, the offsets dropped
    /// (oldest..newest: every event of that kind between them is gone) and what they cost.
    func dropOlder(thanMs cutoffMs: Int64) -> (ranges: [(ClosedRange<Int64>, SessionEventKind)], cost: Int) {
        var ranges: [(ClosedRange<Int64>, SessionEventKind)] = []
        var freed = 0
        func drop(_ ring: inout Ring, _ kind: SessionEventKind) {
            guard let first = ring.first, first.atMs < cutoffMs else { return }
            var last = first.offset
            while let e = ring.first, e.atMs < cutoffMs {
                _ = ring.popFirst()
                keptCost -= e.cost
                freed += e.cost
                last = e.offset
            }
            ranges.append((first.offset...last, kind))
        }
        drop(&states, .state)
        drop(&chunks, .chunk)
        return (ranges, freed)
    }

    /// A deque of entries (array with a moving head, compacted when half is dead).
    private struct Ring {
        private var items: [Entry] = []
        private var start = 0

        var count: Int { items.count - start }
        var first: Entry? { start < items.count ? items[start] : nil }

        mutating func append(_ e: Entry) { items.append(e) }

        mutating func popFirst() -> Entry? {
            guard start < items.count else { return nil }
            let e = items[start]
            start += 1
            if start == items.count {
                items.removeAll(keepingCapacity: items.count <= 1024)
                start = 0
            } else if start > 1024 && start * 2 > items.count {
                items.removeFirst(start)
                start = 0
            }
            return e
        }
    }
}
