/// One queued message: an owned (+1) reference plus its push time and TTL deadline.
struct QueueEntry {
    var msg: Unmanaged<Message>
    /// Monotonic push time in ns.
    var pushedAt: UInt64
    /// Monotonic expiry time in ns; UInt64.max when the message has no TTL.
    var deadline: UInt64
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
