import OrchestraCore

/// What `NonceCache.record` did with a nonce.
public enum NonceOutcome: Sendable, Equatable {
    /// Not seen inside the window: remembered now.
    case fresh
    /// Seen inside the window: a replay.
    case replayed
    /// The cache holds `capacity` unexpired nonces: refused, nothing forgotten.
    case full
}

/// The nonces of `agent.register` seen in the last `windowMs`, per key id, in memory.
/// A nonce seen at time t is a replay until t + windowMs (also when the clock has gone back
/// before t). Thread-safe.
///
/// The lock is a pthread mutex rather than `Synchronization.Mutex`: ThreadSanitizer does not
/// see the futex the latter uses on Linux (see OrchestraCore's `PthreadMutex`).
public final class NonceCache: @unchecked Sendable {
    public let windowMs: Int64
    public let capacity: Int

    private let lock = PthreadMutex()
    /// key → time it was seen.
    private var seen: [String: Int64] = [:]
    /// Insertion order, for pruning from the front; entries before `head` are gone.
    private var order: [(key: String, at: Int64)] = []
    private var head = 0
    /// Set when an entry was appended with an earlier time than the one before it (the wall
    /// clock went back): `order` is then not sorted and pruning from the front may stop early.
    private var unsorted = false
    private var lastAt = Int64.min

    public init(windowMs: Int64 = 600_000, capacity: Int = 100_000) {
        self.windowMs = max(0, windowMs)
        self.capacity = max(0, capacity)
    }

    /// Remembers the nonce; false when it was seen inside the window, or when the cache is
    /// full of unexpired nonces (it refuses rather than forget one, which would let it be replayed).
    public func insert(keyId: String, nonce: String, nowMs: Int64) -> Bool {
        record(keyId: keyId, nonce: nonce, nowMs: nowMs) == .fresh
    }

    /// As `insert`, telling a replay from a full cache.
    public func record(keyId: String, nonce: String, nowMs: Int64) -> NonceOutcome {
        // Length-prefixed, so ("a:b", "c") and ("a", "b:c") are different keys.
        let key = "\(keyId.utf8.count):\(keyId)\(nonce)"
        return lock.withLock {
            pruneLocked(nowMs)
            if let t = seen[key] {
                if !expired(t, nowMs) { return .replayed }
                // Expired but not pruned yet (unsorted order): seen again, fresh.
            } else if seen.count >= capacity {
                if unsorted { sweepLocked(nowMs) }
                if seen.count >= capacity { return .full }
            }
            seen[key] = nowMs
            order.append((key, nowMs))
            if nowMs < lastAt { unsorted = true }
            lastAt = nowMs
            return .fresh
        }
    }

    /// Number of nonces held (expired ones included until an insert prunes them).
    public var count: Int { lock.withLock { seen.count } }

    /// Forgets the nonces that expired by `nowMs`.
    public func prune(nowMs: Int64) {
        lock.withLock {
            pruneLocked(nowMs)
            if unsorted { sweepLocked(nowMs) }
        }
    }

    private func expired(_ t: Int64, _ now: Int64) -> Bool {
        let (end, overflow) = t.addingReportingOverflow(windowMs)
        return !overflow && now >= end
    }

    private func pruneLocked(_ now: Int64) {
        while head < order.count, expired(order[head].at, now) {
            let (key, at) = order[head]
            if seen[key] == at { seen[key] = nil }
            head += 1
        }
        if head == order.count {
            order.removeAll(keepingCapacity: true)
            head = 0
        } else if head >= 1024, head * 2 >= order.count {
            order.removeFirst(head)
            head = 0
        }
    }

    /// Drops every expired nonce and rebuilds `order` sorted (after the clock went back).
    private func sweepLocked(_ now: Int64) {
        seen = seen.filter { !expired($0.value, now) }
        order = seen.map { (key: $0.key, at: $0.value) }.sorted { $0.at < $1.at }
        head = 0
        unsorted = false
        lastAt = order.last?.at ?? Int64.min
    }
}
