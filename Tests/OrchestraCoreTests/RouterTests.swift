import Dispatch
import Synchronization
import Testing
@testable import OrchestraCore

/// Counts calls from any thread.
private final class Counter: Sendable {
    private let n = Atomic<Int>(0)
    func bump() { n.add(1, ordering: .relaxed) }
    var value: Int { n.load(ordering: .relaxed) }
}

private struct Boom: Error, Equatable { let tag: Int }

@Suite struct RouterSubjectTests {
    private func error(_ s: String, pattern: Bool) -> OrchestraError? {
        do { try Subject.validate(s, isPattern: pattern); return nil } catch { return error }
    }

    @Test func emptyTokensAreRejectedWithPosition() {
        #expect(error("a..b", pattern: true) == OrchestraError(.invalidArgument, "pattern \"a..b\": empty token at byte 2"))
        #expect(error(".a", pattern: false)?.message == "subject \".a\": empty token at byte 0")
        #expect(error("a.", pattern: true)?.message == "pattern \"a.\": empty token at byte 2")
        #expect(error("", pattern: false)?.message == "subject is empty")
        #expect(error("", pattern: true)?.code == .invalidArgument)
        #expect(error(".", pattern: true)?.code == .invalidArgument)
    }

    @Test func wildcardPlacement() {
        #expect(error(">", pattern: true) == nil)
        #expect(error("a.*.c", pattern: true) == nil)
        #expect(error("*.*.>", pattern: true) == nil)
        #expect(error(">.a", pattern: true)?.message == "pattern \">.a\": '>' at byte 0 must be the last token")
        #expect(error("a.>.b", pattern: true)?.code == .invalidArgument)
        // Publishing a wildcard token is rejected.
        #expect(error("a.*", pattern: false)?.message == "subject \"a.*\": wildcard '*' at byte 2 is not allowed in a published subject")
        #expect(error(">", pattern: false)?.code == .invalidArgument)
        // A token mixing a wildcard character with text is a literal (as in NATS).
        #expect(error("a*.b>", pattern: true) == nil)
        #expect(error("a*.b>", pattern: false) == nil)
        #expect(error("**", pattern: false) == nil)
    }

    @Test func limits() {
        let tooMany = Array(repeating: "a", count: Subject.maxTokens + 1).joined(separator: ".")
        #expect(error(tooMany, pattern: false)?.code == .tooBig)
        let enough = Array(repeating: "a", count: Subject.maxTokens).joined(separator: ".")
        #expect(error(enough, pattern: false) == nil)
        let long = String(repeating: "x", count: Subject.maxLength + 1)
        #expect(error(long, pattern: true)?.code == .tooBig)
        // Hostile bytes are quoted safely in the message.
        #expect(throws: OrchestraError(.invalidArgument, "subject \"\\x00..\\xff\": empty token at byte 2")) {
            try Subject.validate([0, UInt8(ascii: "."), UInt8(ascii: "."), 0xFF], isPattern: false)
        }
    }

    @Test func matchingEdgeCases() throws {
        func m(_ p: String, _ s: String) throws -> Bool { try Subject.matches(pattern: p, subject: s) }
        #expect(try !m("a.*", "a"))
        #expect(try m("a.*", "a.b"))
        #expect(try !m("a.*", "a.b.c"))
        #expect(try m(">", "a"))
        #expect(try m(">", "a.b.c"))
        #expect(try !m("a.>", "a"))
        #expect(try m("a.>", "a.b"))
        #expect(try m("a.>", "a.b.c"))
        #expect(try m("a.*.c", "a.x.c"))
        #expect(try !m("a.*.c", "a.x.d"))
        #expect(try !m("a.*.c", "a.c"))
        #expect(try m("*.*", "x.y"))
        #expect(try !m("a.b", "a.bc"))
        #expect(try !m("a.bc", "a.b"))
        #expect(try m("a*", "a*"))
        #expect(try !m("a*", "ab"))
        #expect(throws: OrchestraError.self) { try m("a.>.b", "a.x.b") }
        #expect(throws: OrchestraError.self) { try m("a.*", "a.*") }
    }
}

@Suite struct RouterTests {
    @Test func routerMatchAgreesWithSubjectMatches() throws {
        let r = Router()
        let patterns = ["a", "a.*", "a.>", ">", "*", "a.*.c", "*.b", "a.b", "a.b.c", "*.*.*", "a*"]
        var ids: [String: SubscriptionID] = [:]
        for p in patterns { ids[p] = try r.subscribe(p) { _ in } }
        for subject in ["a", "a.b", "a.b.c", "a.x.c", "b", "x.b", "a*", "a.b.c.d"] {
            let expected = try patterns.filter { try Subject.matches(pattern: $0, subject: subject) }
                .compactMap { ids[$0] }.sorted()
            #expect(try r.match(subject) == expected, "subject \(subject)")
        }
        #expect(try r.match("a").count == 3)            // a, >, *
        #expect(throws: OrchestraError.self) { try r.match("a.*") }
        #expect(throws: OrchestraError.self) { try r.subscribe("a..b") { _ in } }
        #expect(r.stats.subscriptions == UInt64(patterns.count))
    }

    @Test func overlappingSubscriptionsEachDeliveredOnceInOrder() throws {
        let r = Router()
        let order = Mutex<[Int]>([])
        for (n, p) in ["a.b", "a.*", ">", "a.>", "*.b", "a.b"].enumerated() {
            try r.subscribe(p) { _ in order.withLock { $0.append(n) } }
        }
        try r.subscribe("a.c") { _ in order.withLock { $0.append(99) } }
        let res = try r.publish(Message(type: "a.b"))
        #expect(res.matched == 6 && res.failed == 0 && !res.unhandled && !res.stopped)
        #expect(order.withLock { $0 } == [0, 1, 2, 3, 4, 5])
        #expect(r.stats.delivered == 6)
    }

    /// More matches than a publish keeps on its stack (Router.inlineMatches): still each once,
    /// in subscription order, and every subscription is released afterwards (none leaked).
    @Test func manyMatchesSpillInOrderAndAreReleased() throws {
        let released = Counter()
        let order = Mutex<[Int]>([])
        let kinds = ["a.b", "a.*", ">", "a.>", "*.b", "*.*"]
        let n = Router.inlineMatches * 3 + 1
        do {
            let r = Router()
            for k in 0 ..< n {
                try r.subscribe(kinds[(k * 5) % kinds.count], onRelease: { released.bump() }) { _ in
                    order.withLock { $0.append(k) }
                }
            }
            for expectCount in [n, Router.inlineMatches, 1] {
                order.withLock { $0 = [] }
                // Keep the first expectCount subscriptions (ids 1...n in order).
                for id in SubscriptionID(expectCount + 1) ..< SubscriptionID(n + 1) { _ = r.unsubscribe(id) }
                let res = try r.publish(Message(type: "a.b"))
                #expect(res.matched == expectCount && !res.unhandled)
                #expect(order.withLock { $0 } == Array(0 ..< expectCount))
                #expect(released.value == n - expectCount)
            }
        }
        #expect(released.value == n)
    }

    /// Many literal children under one node (table growth) removed in a scattered order
    /// (backward-shift deletion): every remaining route still matches, removed ones do not.
    @Test func literalChildrenSurviveGrowthAndRemoval() throws {
        let r = Router()
        let count = 600
        func token(_ i: Int) -> String {
            switch i % 3 {
            case 0: return "\(i)"                                   // 1-3 bytes
            case 1: return "tok\(i)"                                // 4-7 bytes
            default: return "agent-\(i)-with-a-longer-name"         // > 8 bytes
            }
        }
        var ids = [Int: SubscriptionID]()
        for i in 0 ..< count { ids[i] = try r.subscribe("n.\(token(i))") { _ in } }
        #expect(r.nodeCount == count + 1)
        var live = Set(0 ..< count)
        for i in stride(from: 0, to: count, by: 1).filter({ ($0 * 7919) % 5 < 3 }) {
            #expect(r.unsubscribe(ids[i]!))
            live.remove(i)
        }
        #expect(r.nodeCount == live.count + 1)
        for i in 0 ..< count {
            let got = try r.match("n.\(token(i))")
            #expect(got == (live.contains(i) ? [ids[i]!] : []), "n.\(token(i))")
        }
        for i in live { #expect(r.unsubscribe(ids[i]!)) }
        #expect(r.nodeCount == 0)
        // A node that lost every child is usable again.
        let again = try r.subscribe("n.\(token(5))") { _ in }
        #expect(try r.match("n.\(token(5))") == [again])
    }

    @Test func tokenHashIsNonZeroAndSeesEveryByte() {
        func h(_ b: [UInt8]) -> UInt64 { b.withUnsafeBytes { TokenHash.hash($0) } }
        var seen = Set<UInt64>()
        for len in 0 ... 40 {
            let base = (0 ..< len).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
            #expect(h(base) != 0)
            #expect(h(base) == h(Array(base)))
            #expect(seen.insert(h(base)).inserted, "length \(len)")
            for k in 0 ..< len {
                var b = base
                b[k] ^= 0x20
                #expect(seen.insert(h(b)).inserted, "length \(len), byte \(k)")
            }
        }
    }

    @Test func publishRejectsWildcardSubjectBeforeMiddleware() throws {
        let r = Router()
        let seen = Counter()
        r.use { _ in seen.bump(); return .continue }
        #expect(throws: OrchestraError.self) { try r.publish(Message(type: "a.*")) }
        #expect(throws: OrchestraError.self) { try r.publish(Message(type: "a..b")) }
        #expect(seen.value == 0)
        #expect(r.stats.published == 0)
    }

    @Test func handlerFailuresAreIsolatedAndCounted() throws {
        let r = Router()
        let after = Counter()
        try r.subscribe("job.*") { _ in throw Boom(tag: 1) }
        let failing = try r.subscribe("job.run") { _ in throw Boom(tag: 2) }
        try r.subscribe("job.>") { _ in after.bump() }
        let res = try r.publish(Message(type: "job.run"))
        #expect(res.matched == 3)
        #expect(res.failed == 2)
        #expect(after.value == 1)
        #expect(!res.unhandled)
        let f = try #require(r.lastFailure)
        #expect(f.stage == .handler(failing))
        #expect(f.error as? Boom == Boom(tag: 2))
        #expect(f.subject == Array("job.run".utf8))
        let st = r.stats
        #expect(st.handlerFailures == 2 && st.delivered == 1 && st.published == 1)
    }

    @Test func middlewareStopRewriteAndFailure() throws {
        let r = Router()
        let got = Mutex<[String]>([])
        try r.subscribe("in.*") { m in got.withLock { $0.append("in:" + m.type + ":" + (m.header("seen") ?? "-")) } }
        try r.subscribe("out.moved") { m in got.withLock { $0.append("out:" + m.type) } }
        let unhandled = Counter()
        r.onUnhandled { _ in unhandled.bump() }
        // 1: mutate in place; 2: drop "in.drop"; 3: replace "in.move" with a new message;
        // 4: fail on "in.fail"; 5: rewrite "in.bad" into an invalid subject.
        r.use { m in m.setHeader("seen", "yes"); return .continue }
        r.use { m in m.type == "in.drop" ? .stop : .continue }
        r.use { m in
            if m.type == "in.move" { m = Message(type: "out.moved") }
            if m.type == "in.bad" { m = Message(type: "in.*") }
            return .continue
        }
        r.use { m in if m.type == "in.fail" { throw Boom(tag: 4) }; return .continue }

        let original = Message(type: "in.keep")
        var res = try r.publish(original)
        #expect(res.matched == 1 && !res.stopped)
        #expect(original.header("seen") == "yes")   // mutated in place

        res = try r.publish(Message(type: "in.drop"))
        #expect(res.stopped && !res.middlewareFailed && res.matched == 0 && !res.unhandled)

        res = try r.publish(Message(type: "in.move"))
        #expect(res.matched == 1 && !res.stopped)

        res = try r.publish(Message(type: "in.fail"))
        #expect(res.stopped && res.middlewareFailed && res.matched == 0)
        let f = try #require(r.lastFailure)
        #expect(f.stage == .middleware(3))
        #expect(f.error as? Boom == Boom(tag: 4))

        res = try r.publish(Message(type: "in.bad"))
        #expect(res.stopped && res.middlewareFailed)
        let f2 = try #require(r.lastFailure)
        #expect((f2.error as? OrchestraError)?.message.hasPrefix("after middleware: subject \"in.*\"") == true)

        #expect(got.withLock { $0 } == ["in:in.keep:yes", "out:out.moved"])
        #expect(unhandled.value == 0)
        let st = r.stats
        #expect(st.published == 5 && st.middlewareStops == 3 && st.middlewareFailures == 2 && st.unhandled == 0)
    }

    @Test func unhandledHookReceivesDeadLetters() throws {
        let r = Router()
        let dead = Mutex<[String]>([])
        let released = Counter()
        r.onUnhandled(onRelease: { released.bump() }) { m in dead.withLock { $0.append(m.type) } }
        try r.subscribe("known") { _ in }
        #expect(try r.publish(Message(type: "known")).unhandled == false)
        #expect(try r.publish(Message(type: "unknown.x")).unhandled == true)
        #expect(dead.withLock { $0 } == ["unknown.x"])
        // Replacing the hook releases the old one exactly once.
        r.onUnhandled(nil)
        #expect(released.value == 1)
        #expect(try r.publish(Message(type: "unknown.y")).unhandled == true)
        #expect(dead.withLock { $0 } == ["unknown.x"])
        #expect(r.stats.unhandled == 2)
        #expect(released.value == 1)
    }

    @Test func unsubscribeDuringPublish() throws {
        let r = Router()
        let calls = Mutex<[String]>([])
        var later: SubscriptionID = 0
        var selfID: SubscriptionID = 0
        selfID = try r.subscribe("t.x") { _ in
            calls.withLock { $0.append("first") }
            #expect(r.unsubscribe(later))         // removes a handler that was already collected
            #expect(r.unsubscribe(selfID))        // and itself
            // A handler may subscribe too (no lock is held while it runs).
            _ = try? r.subscribe("t.y") { _ in }
        }
        later = try r.subscribe("t.*") { _ in calls.withLock { $0.append("second") } }
        let res = try r.publish(Message(type: "t.x"))
        #expect(calls.withLock { $0 } == ["first"])
        #expect(res.matched == 1)
        #expect(!r.unsubscribe(later))
        #expect(try r.publish(Message(type: "t.x")).unhandled)
        #expect(try r.match("t.y").count == 1)
    }

    @Test func releaseRunsExactlyOnceAfterUnsubscribeAndInFlightPublish() throws {
        let released = Counter()
        do {
            let r = Router()
            // Failed subscribe: the hook is not taken, never called.
            #expect(throws: OrchestraError.self) { try r.subscribe("a.>.b", onRelease: { released.bump() }) { _ in } }
            #expect(released.value == 0)

            let id = try r.subscribe("a", onRelease: { released.bump() }) { _ in }
            #expect(r.unsubscribe(id))
            #expect(released.value == 1)
            #expect(!r.unsubscribe(id))
            #expect(released.value == 1)

            // In flight: the handler unsubscribes itself; the release waits for it to return.
            var me: SubscriptionID = 0
            let seenInside = Mutex(-1)
            me = try r.subscribe("b", onRelease: { released.bump() }) { _ in
                _ = r.unsubscribe(me)
                seenInside.withLock { $0 = released.value }
            }
            try r.publish(Message(type: "b"))
            #expect(seenInside.withLock { $0 } == 1)
            #expect(released.value == 2)

            // Still subscribed when the router goes away: released by its deinit.
            try r.subscribe("c", onRelease: { released.bump() }) { _ in }
            r.use(onRelease: { released.bump() }) { _ in .continue }
            r.onUnhandled(onRelease: { released.bump() }) { _ in }
            #expect(released.value == 2)
        }
        #expect(released.value == 5)
    }

    @Test func emptyNodesArePruned() throws {
        let r = Router()
        let a = try r.subscribe("x.y.z") { _ in }
        let b = try r.subscribe("x.*.>") { _ in }
        let c = try r.subscribe("x.y") { _ in }
        #expect(r.nodeCount == 4)       // x, y, z, *
        #expect(r.unsubscribe(a))
        #expect(r.nodeCount == 3)
        #expect(r.unsubscribe(b))
        #expect(r.unsubscribe(c))
        #expect(r.nodeCount == 0)
        #expect(r.stats.subscriptions == 0)
    }

    /// Matching cost is structural: the nodes a publish visits depend on the subject and the
    /// patterns that overlap it, not on how many unrelated routes exist.
    @Test func matchCostDoesNotGrowWithRouteCount() throws {
        func tree(routes: Int) throws -> Router {
            let r = Router()
            for n in 0 ..< routes {
                try r.subscribe("svc.\(n).event") { _ in }
                if n % 10 == 0 { try r.subscribe("tenant\(n).*.>") { _ in } }
            }
            try r.subscribe("svc.*.event") { _ in }
            try r.subscribe("svc.>") { _ in }
            return r
        }
        let small = try tree(routes: 10)
        let large = try tree(routes: 10_000)
        #expect(large.stats.subscriptions > 10_000)
        for subject in ["svc.5.event", "svc.5.other", "nothing.here", "svc.5.event.extra"] {
            let s = try small.matchWithVisits(Array(subject.utf8))
            let l = try large.matchWithVisits(Array(subject.utf8))
            #expect(s.ids.count == l.ids.count, "\(subject)")
            #expect(s.visits == l.visits, "\(subject)")
            #expect(l.visits <= 2 * subject.split(separator: ".").count + 1, "\(subject)")
        }
        #expect(try large.match("svc.5.event").count == 3)
    }

    @Test func concurrentSubscribePublishUnsubscribe() throws {
        let r = Router()
        let released = Counter()
        let delivered = Counter()
        let threads = 4, rounds = 200
        try r.subscribe("load.>") { _ in delivered.bump() }
        r.use { _ in .continue }
        DispatchQueue.concurrentPerform(iterations: threads) { t in
            for i in 0 ..< rounds {
                let pattern = i % 2 == 0 ? "load.\(t).*" : "load.*.\(i)"
                let id = try? r.subscribe(pattern, onRelease: { released.bump() }) { _ in delivered.bump() }
                _ = try? r.publish(Message(type: "load.\(t).\(i)"))
                if i % 3 == 0 { _ = try? r.publish(Message(type: "other.\(i)")) }
                if let id { _ = r.unsubscribe(id) }
            }
        }
        let st = r.stats
        #expect(released.value == threads * rounds)
        #expect(st.subscriptions == 1)
        #expect(st.published == UInt64(threads * (rounds + (rounds + 2) / 3)))
        #expect(st.delivered == UInt64(delivered.value))
        #expect(delivered.value >= threads * rounds * 2)   // load.> plus at least the thread's own
        #expect(r.nodeCount == 1)                        // only "load" remains
    }
}
