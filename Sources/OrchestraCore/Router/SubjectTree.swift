// The subject tree the router matches on: one node per pattern prefix. Matching a subject of
// n tokens visits at most the nodes on the paths its tokens select (literal child, `*` child)
// and collects the `>` subscriptions on the way, so its cost depends on the subject and on how
// many patterns overlap it, not on how many routes the tree holds.
//
// Not synchronised: Router guards it with its lock.

/// A literal token as a dictionary key. Stored keys own their bytes; lookups use a borrowed
/// view of the subject's bytes, so looking a token up allocates nothing.
enum TokenKey: Hashable {
    case owned([UInt8])
    case borrowed(UnsafeRawBufferPointer)

    func hash(into h: inout Hasher) {
        switch self {
        case .owned(let a): a.withUnsafeBytes { h.combine(bytes: $0) }
        case .borrowed(let b): h.combine(bytes: b)
        }
    }

    static func == (l: TokenKey, r: TokenKey) -> Bool {
        switch (l, r) {
        case (.owned(let a), .owned(let b)): return a == b
        case (.owned(let a), .borrowed(let b)), (.borrowed(let b), .owned(let a)):
            return a.withUnsafeBytes { Subject.equal($0, b) }
        case (.borrowed(let a), .borrowed(let b)): return Subject.equal(a, b)
        }
    }
}

final class SubjectNode {
    var literals: [TokenKey: SubjectNode] = [:]
    var star: SubjectNode?
    /// Subscriptions whose pattern ends at this node.
    var exact: [Subscription] = []
    /// Subscriptions whose pattern is this node's path followed by `>`.
    var tail: [Subscription] = []

    var isEmpty: Bool { literals.isEmpty && star == nil && exact.isEmpty && tail.isEmpty }
}

struct SubjectTree {
    let root = SubjectNode()
    /// Live nodes, root excluded (for inspection and tests).
    private(set) var nodeCount = 0

    mutating func insert(_ sub: Subscription, _ p: Subject.Tokens) {
        var node = root
        for i in 0 ..< p.count {
            switch p.kind(i) {
            case .tail:
                node.tail.append(sub)       // `>` is always last
                return
            case .one:
                if let next = node.star { node = next } else {
                    let next = SubjectNode()
                    node.star = next
                    nodeCount += 1
                    node = next
                }
            case .literal:
                let t = p[i]
                if let next = node.literals[.borrowed(t)] { node = next } else {
                    let next = SubjectNode()
                    node.literals[.owned(Array(t))] = next
                    nodeCount += 1
                    node = next
                }
            }
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
            if let next = node.star, remove(sub, p, i + 1, next, &pruned) {
                node.star = nil
                pruned += 1
            }
        case .literal:
            let t = p[i]
            if let next = node.literals[.borrowed(t)], remove(sub, p, i + 1, next, &pruned) {
                node.literals.removeValue(forKey: .borrowed(t))
                pruned += 1
            }
        }
        return node.isEmpty
    }

    /// Appends every subscription matching subject `s` to `out`; returns the nodes visited.
    func collect(_ s: Subject.Tokens, into out: inout [Subscription]) -> Int {
        var visits = 0
        Self.collect(root, s, 0, &out, &visits)
        return visits
    }

    private static func collect(_ node: SubjectNode, _ s: Subject.Tokens, _ i: Int, _ out: inout [Subscription], _ visits: inout Int) {
        visits += 1
        if i == s.count {
            out.append(contentsOf: node.exact)
            return
        }
        out.append(contentsOf: node.tail)          // `>` here takes tokens i..<count (>= 1)
        if !node.literals.isEmpty, let next = node.literals[.borrowed(s[i])] {
            collect(next, s, i + 1, &out, &visits)
        }
        if let next = node.star {
            collect(next, s, i + 1, &out, &visits)
        }
    }
}
