/// One queued message: an owned (+1) reference plus its push time, in 16 bytes (four to a
/// cache line: producer and consumer threads pass these lines back and forth).
struct QueueEntry {
    var msg: Unmanaged<Message>
    /// Push time, lane and a TTL flag (top bit).
    private var stamp: UInt64

    private static let ttlBit: UInt64 = 1 << 63
    /// Bits 61-62: the lane (priority), so an entry can wait in the intake before it is sorted.
    private static let laneShift: UInt64 = 61
    private static let timeMask: UInt64 = (1 << 61) - 1

    @inline(__always)
    init(msg: Unmanaged<Message>, pushedAt: UInt64, hasTTL: Bool, lane: Int = 0) {
        self.msg = msg
        stamp = (pushedAt & QueueEntry.timeMask) | (hasTTL ? QueueEntry.ttlBit : 0)
            | (UInt64(truncatingIfNeeded: lane & 3) << QueueEntry.laneShift)
    }

    /// Monotonic push time in ns (2^61 ns is 73 years of uptime).
    @inline(__always)
    var pushedAt: UInt64 { stamp & QueueEntry.timeMask }

    @inline(__always)
    var lane: Int { Int(truncatingIfNeeded: (stamp >> QueueEntry.laneShift) & 3) }

    /// When the message expires: its push time plus its TTL (read from the message, which is
    /// not mutated while queued), saturating; UInt64.max when it has no TTL.
    @inline(__always)
    var deadline: UInt64 {
        if stamp & QueueEntry.ttlBit == 0 { return .max }
        guard let ttl = msg._withUnsafeGuaranteedRef({ $0.ttl }) else { return .max }
        let ms = UInt64(clamping: Swift.max(ttl, 0))
        let (ns, o1) = ms.multipliedReportingOverflow(by: 1_000_000)
        let (d, o2) = pushedAt.addingReportingOverflow(ns)
        return (o1 || o2) ? .max - 1 : d
    }
}

/// A FIFO ring of entries on manually managed memory (entries are trivial: no ARC). It grows by
/// doubling; the queue's capacity check keeps it at most the next power of two above capacity.
/// Not synchronised: the queue's mutex protects it.
struct LaneRing {
    private(set) var buf: UnsafeMutablePointer<QueueEntry>
    private(set) var cap: Int
    private var head = 0
    private(set) var count = 0

    static let initialCapacity = 16

    init() {
        cap = LaneRing.initialCapacity
        buf = UnsafeMutablePointer<QueueEntry>.allocate(capacity: cap)
    }

    @inline(__always)
    mutating func append(_ e: QueueEntry) {
        if count == cap { grow() }
        (buf + ((head &+ count) & (cap &- 1))).initialize(to: e)
        count &+= 1
    }

    /// The oldest entry, left in place; the ring must not be empty.
    @inline(__always)
    var first: QueueEntry { buf[head] }

    /// The oldest entry; the ring must not be empty.
    @inline(__always)
    mutating func removeFirst() -> QueueEntry {
        let e = (buf + head).move()
        head = (head &+ 1) & (cap &- 1)
        count &-= 1
        return e
    }

    private mutating func grow() {
        let newCap = cap * 2
        let nb = UnsafeMutablePointer<QueueEntry>.allocate(capacity: newCap)
        let firstPart = Swift.min(count, cap - head)
        nb.moveInitialize(from: buf + head, count: firstPart)
        if firstPart < count {
            (nb + firstPart).moveInitialize(from: buf, count: count - firstPart)
        }
        buf.deallocate()
        buf = nb
        cap = newCap
        head = 0
    }

    /// Removes the oldest entry (read it with `first`); the ring must not be empty.
    @inline(__always)
    mutating func dropFirst() {
        head = (head &+ 1) & (cap &- 1)
        count &-= 1
    }

    /// Frees the storage; the ring must be empty (the queue drains it first).
    func deallocate() {
        buf.deallocate()
    }
}
