// The subject tree the router matches on: one node per pattern prefix. Matching a subject of
// n tokens visits at most the nodes on the paths its tokens select (literal child, `*` child)
// and collects the `>` subscriptions on the way, so its cost depends on the subject and on how
// many patterns overlap it, not on how many routes the tree holds.
//
// The read path allocates nothing and touches no reference counts except the matched
// subscriptions': a node's literal children live in an open-addressing table it owns (linear
// probing, a seeded multiply-mix hash of the token bytes computed once per subject token), and
// the tree's own links are unmanaged references owned by the parent node.
//
// Not synchronised: Router guards it with its lock. That lock is also why the nodes' stored
// properties are `@exclusivity(unchecked)`: the dynamic checks could only catch an access
// outside the lock, which would already be a data race.
import Glibc

/// Hash of a literal token for the children tables.
///
/// Seeded once per process from the system's random source, so which tokens collide cannot be
/// worked out in advance. It is a fast mixing function, not a keyed PRF like the standard
/// library's SipHash: probe lengths depend only on the stored keys (subscription patterns, which
/// the application chooses), and a hostile published subject only performs lookups.
enum TokenHash {
    static let seed: UInt64 = {
        var g = SystemRandomNumberGenerator()
        return g.next()
    }()

    @inline(__always)
    static func mum(_ a: UInt64, _ b: UInt64) -> UInt64 {
        let r = a.multipliedFullWidth(by: b)
        return r.high ^ r.low
    }

    /// Never 0 (0 marks "not computed yet" in the walk's per-token cache).
    static func hash(_ b: UnsafeRawBufferPointer) -> UInt64 {
        let s = seed
        let n = b.count
        var h = s ^ (UInt64(truncatingIfNeeded: n) &* 0x9E37_79B9_7F4A_7C15)
        if n >= 8 {
            var i = 0
            while n - i > 8 {
                h = mum(b.loadUnaligned(fromByteOffset: i, as: UInt64.self) ^ s ^ 0xA076_1D64_78BD_642F, h ^ 0xE703_7ED1_A0B4_28DB)
                i += 8
            }
            // The last 8 bytes (overlapping the previous word when n is not a multiple of 8;
            // the length is already in h).
            h = mum(b.loadUnaligned(fromByteOffset: n - 8, as: UInt64.self) ^ s ^ 0x8EBC_6AF0_9C88_C6E3, h ^ 0x5899_65CC_7537_4CC3)
        } else if n >= 4 {
            let w = UInt64(b.loadUnaligned(fromByteOffset: 0, as: UInt32.self)) << 32
                | UInt64(b.loadUnaligned(fromByteOffset: n - 4, as: UInt32.self))
            h = mum(w ^ s ^ 0x8EBC_6AF0_9C88_C6E3, h ^ 0x5899_65CC_7537_4CC3)
        } else if n > 0 {
            let w = UInt64(b[0]) << 16 | UInt64(b[n >> 1]) << 8 | UInt64(b[n - 1])
            h = mum(w ^ s ^ 0x8EBC_6AF0_9C88_C6E3, h ^ 0x5899_65CC_7537_4CC3)
        }
        return mum(h, 0x1D8E_4E27_C47D_124F) | 1
    }
}

final class SubjectNode {
    /// One slot of the children table; `node == nil` marks an empty slot.
    struct Slot {
        var hash: UInt64
        var node: Unmanaged<SubjectNode>?
    }

    /// The literal token that leads here from the parent (empty for the root and `*` nodes).
    let token: UnsafeMutableRawBufferPointer
    /// TokenHash.hash(token), 0 for the root and `*` nodes.
    let tokenHash: UInt64

    /// Children by literal token: `slotMask + 1` slots (a power of two), or none.
    @exclusivity(unchecked) private var slots: UnsafeMutablePointer<Slot>?
    @exclusivity(unchecked) private var slotMask = 0
    @exclusivity(unchecked) private(set) var childCount = 0
    /// The `*` child (owned: released in deinit or when pruned).
    @exclusivity(unchecked) private(set) var star: Unmanaged<SubjectNode>?
    /// Subscriptions whose pattern ends at this node.
    @exclusivity(unchecked) var exact: [Subscription] = []
    /// Subscriptions whose pattern is this node's path followed by `>`.
    @exclusivity(unchecked) var tail: [Subscription] = []

    init(token: UnsafeRawBufferPointer, hash: UInt64) {
        self.token = .allocate(byteCount: token.count, alignment: 1)
        if token.count > 0 { self.token.copyMemory(from: token) }
        tokenHash = hash
    }

    convenience init() { self.init(token: UnsafeRawBufferPointer(start: nil, count: 0), hash: 0) }

    deinit {
        if let slots {
            for i in 0 ... slotMask { slots[i].node?.release() }
            slots.deallocate()
        }
        star?.release()
        token.deallocate()
    }

    var isEmpty: Bool { childCount == 0 && star == nil && exact.isEmpty && tail.isEmpty }

    @inline(__always)
    private func holds(_ n: SubjectNode, _ t: UnsafeRawBufferPointer) -> Bool {
        n.token.count == t.count && (t.count == 0 || memcmp(n.token.baseAddress!, t.baseAddress!, t.count) == 0)
    }

    /// The slot holding literal child `t` (hash `h`), or nil.
    @inline(__always)
    private func slotIndex(_ t: UnsafeRawBufferPointer, _ h: UInt64) -> Int? {
        guard let slots else { return nil }
        var i = Int(truncatingIfNeeded: h) & slotMask
        while let n = slots[i].node {
            if slots[i].hash == h && n._withUnsafeGuaranteedRef({ holds($0, t) }) { return i }
            i = (i + 1) & slotMask
        }
        return nil
    }

    /// The literal child for token `t` whose hash is `h`.
    @inline(__always)
    func child(_ t: UnsafeRawBufferPointer, _ h: UInt64) -> Unmanaged<SubjectNode>? {
        guard childCount > 0, let i = slotIndex(t, h) else { return nil }
        return slots![i].node
    }

    /// The literal child for `t`, made if missing; `made` is set when it was.
    func childMaking(_ t: UnsafeRawBufferPointer, _ h: UInt64, made: inout Bool) -> SubjectNode {
        if let i = slotIndex(t, h) { return slots![i].node!.takeUnretainedValue() }
        if (childCount + 1) * 4 > (slots == nil ? 0 : (slotMask + 1) * 3) { grow() }
        let n = SubjectNode(token: t, hash: h)
        var i = Int(truncatingIfNeeded: h) & slotMask
        while slots![i].node != nil { i = (i + 1) & slotMask }
        slots![i] = Slot(hash: h, node: .passRetained(n))
        childCount += 1
        made = true
        return n
    }

    /// Removes (and releases) the literal child for `t`.
    func removeChild(_ t: UnsafeRawBufferPointer, _ h: UInt64) {
        guard let slots, var i = slotIndex(t, h) else { return }
        slots[i].node!.release()
        slots[i].node = nil
        childCount -= 1
        // Backward-shift deletion: move later entries of the probe run into the hole when
        // their home slot is not after the hole, so lookups never need tombstones.
        var j = i
        while true {
            j = (j + 1) & slotMask
            guard slots[j].node != nil else { break }
            let home = Int(truncatingIfNeeded: slots[j].hash) & slotMask
            let stays = i <= j ? (i < home && home <= j) : (i < home || home <= j)
            if !stays {
                slots[i] = slots[j]
                slots[j].node = nil
                i = j
            }
        }
    }

    private func grow() {
        let old = slots, oldCount = old == nil ? 0 : slotMask + 1
        let cap = max(4, oldCount * 2)
        let fresh = UnsafeMutablePointer<Slot>.allocate(capacity: cap)
        fresh.initialize(repeating: Slot(hash: 0, node: nil), count: cap)
        slotMask = cap - 1
        if let old {
            for k in 0 ..< oldCount {
                guard old[k].node != nil else { continue }
                var i = Int(truncatingIfNeeded: old[k].hash) & slotMask
                while fresh[i].node != nil { i = (i + 1) & slotMask }
                fresh[i] = old[k]
            }
            old.deallocate()
        }
        slots = fresh
    }

    func starMaking(made: inout Bool) -> SubjectNode {
        if let star { return star.takeUnretainedValue() }
        let n = SubjectNode()
        star = .passRetained(n)
        made = true
        return n
    }

    func removeStar() {
        star?.release()
        star = nil
    }
}

/// Where a match walk puts the subscriptions it finds.
protocol SubscriptionSink: ~Copyable {
    mutating func add(_ subs: [Subscription])
}

struct SubjectTree {
    let root = SubjectNode()
    /// Live nodes, root excluded (for inspection and tests).
    private(set) var nodeCount = 0

    mutating func insert(_ sub: Subscription, _ p: Subject.Tokens) {
        var node = root
        var made = false
        for i in 0 ..< p.count {
            made = false
            switch p.kind(i) {
            case .tail:
                node.tail.append(sub)       // `>` is always last
                return
            case .one:
                node = node.starMaking(made: &made)
            case .literal:
                let t = p[i]
                node = node.childMaking(t, TokenHash.hash(t), made: &made)
            }
            if made { nodeCount += 1 }
        }
        node.exact.append(sub)
    }

    /// Removes `sub` (inserted with pattern `p`) and prunes nodes left empty.
    mutating func remove(_ sub: Subscription, _ p: Subject.Tokens) {
        var pruned = 0
        _ = Self.remove(sub, p, 0, root, &pruned)
        nodeCount -= pruned
    }

    private static func remove(_ sub: Subscription, _ p: Subject.Tokens, _ i: Int, _ node: SubjectNode, _ pruned: inout Int) -> Bool {
        if i == p.count {
            if let k = node.exact.firstIndex(where: { $0 === sub }) { node.exact.remove(at: k) }
            return node.isEmpty
        }
        switch p.kind(i) {
        case .tail:
            if let k = node.tail.firstIndex(where: { $0 === sub }) { node.tail.remove(at: k) }
        case .one:
            if let next = node.star, remove(sub, p, i + 1, next.takeUnretainedValue(), &pruned) {
                node.removeStar()
                pruned += 1
            }
        case .literal:
            let t = p[i], h = TokenHash.hash(t)
            if let next = node.child(t, h), remove(sub, p, i + 1, next.takeUnretainedValue(), &pruned) {
                node.removeChild(t, h)
                pruned += 1
            }
        }
        return node.isEmpty
    }

    /// Adds every subscription matching subject `s` to `out`; returns the nodes visited.
    func collect<Sink: SubscriptionSink & ~Copyable>(_ s: Subject.Tokens, into out: inout Sink) -> Int {
        var visits = 0
        // Each token's hash is computed at most once per walk (0 = not yet).
        withUnsafeTemporaryAllocation(of: UInt64.self, capacity: s.count) { hashes in
            hashes.initialize(repeating: 0)
            Self.collect(root, s, hashes, 0, &out, &visits)
        }
        return visits
    }

    private static func collect<Sink: SubscriptionSink & ~Copyable>(
        _ node: SubjectNode, _ s: Subject.Tokens, _ hashes: UnsafeMutableBufferPointer<UInt64>, _ i: Int,
        _ out: inout Sink, _ visits: inout Int
    ) {
        visits += 1
        if i == s.count {
            if !node.exact.isEmpty { out.add(node.exact) }
            return
        }
        if !node.tail.isEmpty { out.add(node.tail) }      // `>` here takes tokens i..<count (>= 1)
        if node.childCount > 0 {
            let t = s[i]
            var h = hashes[i]
            if h == 0 {
                h = TokenHash.hash(t)
                hashes[i] = h
            }
            if let next = node.child(t, h) {
                next._withUnsafeGuaranteedRef { collect($0, s, hashes, i + 1, &out, &visits) }
            }
        }
        if let next = node.star {
            next._withUnsafeGuaranteedRef { collect($0, s, hashes, i + 1, &out, &visits) }
        }
    }
}
