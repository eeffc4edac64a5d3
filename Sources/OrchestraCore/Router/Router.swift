// The subject router: subscriptions with wildcards, ordered middleware, isolated handler
// failures and a dead-letter hook (include/orchestra.h, section ROUTER). See Subject.swift
// for the grammar.
import Synchronization

/// Identifies one subscription of a router. Never 0; never reused by the same router.
public typealias SubscriptionID = UInt64

/// What a middleware decides for the message.
public enum MiddlewareResult: Sendable {
    /// Pass the (possibly rewritten) message to the next middleware, then to the handlers.
    case `continue`
    /// Drop the message: no handler and no unhandled hook sees it.
    case stop
}

/// The outcome of one `Router.publish`.
public struct PublishResult: Sendable, Equatable {
    /// Handlers invoked (a subscription removed by a concurrent or earlier handler's
    /// unsubscribe is skipped and not counted).
    public var matched: Int = 0
    /// Invoked handlers that threw.
    public var failed: Int = 0
    /// A middleware stopped the message (by returning `.stop` or by failing).
    public var stopped: Bool = false
    /// The stop was a middleware failure (it threw, or rewrote the subject into an invalid one).
    public var middlewareFailed: Bool = false
    /// No handler was invoked: the unhandled hook (if any) received the message.
    public var unhandled: Bool = false

    public init() {}
}

/// Counters since the router was made.
public struct RouterStats: Sendable, Equatable {
    /// Valid messages passed to publish.
    public var published: UInt64
    /// Handler invocations that returned normally.
    public var delivered: UInt64
    /// Handler invocations that threw.
    public var handlerFailures: UInt64
    /// Messages stopped by middleware (`.stop` or a failure).
    public var middlewareStops: UInt64
    /// Messages stopped because a middleware failed (included in middlewareStops).
    public var middlewareFailures: UInt64
    /// Messages no handler received.
    public var unhandled: UInt64
    /// Live subscriptions.
    public var subscriptions: UInt64
}

/// The last handler or middleware failure, kept for inspection.
public struct RouterFailure: Sendable {
    public enum Stage: Sendable, Equatable {
        case handler(SubscriptionID)
        /// The index of the middleware in registration order.
        case middleware(Int)
    }
    public let stage: Stage
    /// The subject of the message at the time of the failure.
    public let subject: [UInt8]
    public let error: any Error
}

/// One subscription. Its `onRelease` runs exactly once, from deinit: after it has been
/// unsubscribed (or the router is gone) and after every publish that captured it has finished.
final class Subscription: @unchecked Sendable {
    let id: SubscriptionID
    let pattern: [UInt8]
    let handler: (Message) throws -> Void
    let active = Atomic<Bool>(true)
    private let onRelease: (() -> Void)?

    init(id: SubscriptionID, pattern: [UInt8], handler: @escaping (Message) throws -> Void, onRelease: (() -> Void)?) {
        self.id = id
        self.pattern = pattern
        self.handler = handler
        self.onRelease = onRelease
    }

    deinit { onRelease?() }
}

/// A registered middleware or unhandled hook, released like a subscription.
final class Hook<F>: @unchecked Sendable {
    let body: F
    private let onRelease: (() -> Void)?

    init(_ body: F, onRelease: (() -> Void)?) {
        self.body = body
        self.onRelease = onRelease
    }

    deinit { onRelease?() }
}

/// Routes messages by subject (`Message.typeBytes`) to subscribed handlers.
///
/// Thread-safe: subscribe, unsubscribe, use, onUnhandled and publish may be called from any
/// thread, including from inside a handler, middleware or hook (no lock is held while user
/// code runs). Handlers run on the publishing thread, in subscription order. A handler that
/// publishes re-enters the router; unbounded recursion is the handler's responsibility.
public final class Router: @unchecked Sendable {
    typealias Middleware = Hook<(inout Message) throws -> MiddlewareResult>
    typealias Unhandled = Hook<(Message) -> Void>

    struct State {
        var tree = SubjectTree()
        var subscriptions: [SubscriptionID: Subscription] = [:]
        var nextID: SubscriptionID = 1
        var middleware: [Middleware] = []
        var unhandled: Unhandled?
        var lastFailure: RouterFailure?
    }

    private let lock = PthreadMutex()
    /// Guarded by `lock` (which is why it skips the dynamic exclusivity checks: they could
    /// only catch an unlocked access, which would already be a data race).
    @exclusivity(unchecked) private var s = State()
    private let published = Atomic<UInt64>(0)
    private let delivered = Atomic<UInt64>(0)
    private let handlerFailures = Atomic<UInt64>(0)
    private let middlewareStops = Atomic<UInt64>(0)
    private let middlewareFailures = Atomic<UInt64>(0)
    private let unhandledCount = Atomic<UInt64>(0)

    public init() {}

    // MARK: Subscriptions

    /// Subscribes `handler` to subjects matching `pattern`. `onRelease` runs exactly once, when
    /// the subscription is gone (unsubscribed or router deallocated) and no publish is still
    /// using it; it is not called when subscribe throws.
    /// Throws `.invalidArgument`/`.tooBig` for an invalid pattern (see `Subject`).
    @discardableResult
    public func subscribe(
        _ pattern: UnsafeRawBufferPointer, onRelease: (() -> Void)? = nil,
        handler: @escaping (Message) throws -> Void
    ) throws(OrchestraError) -> SubscriptionID {
        try Subject.withTokens(pattern, isPattern: true) { tokens in
            // Validation passed: from here on the subscription exists and owns onRelease.
            let copy = Array(pattern)
            return lock.withLock { () -> SubscriptionID in
                let id = s.nextID
                s.nextID &+= 1
                let sub = Subscription(id: id, pattern: copy, handler: handler, onRelease: onRelease)
                s.tree.insert(sub, tokens)
                s.subscriptions[id] = sub
                return id
            }
        }
    }

    @discardableResult
    public func subscribe(
        _ pattern: [UInt8], onRelease: (() -> Void)? = nil,
        handler: @escaping (Message) throws -> Void
    ) throws(OrchestraError) -> SubscriptionID {
        try Subject.withBytes(pattern) { (bytes) throws(OrchestraError) -> SubscriptionID in
            try subscribe(bytes, onRelease: onRelease, handler: handler)
        }
    }

    @discardableResult
    public func subscribe(
        _ pattern: String, onRelease: (() -> Void)? = nil,
        handler: @escaping (Message) throws -> Void
    ) throws(OrchestraError) -> SubscriptionID {
        try subscribe(Array(pattern.utf8), onRelease: onRelease, handler: handler)
    }

    /// Removes a subscription; false if `id` is unknown (or already removed). After it returns,
    /// no publish that starts later calls the handler; a publish already running on another
    /// thread may still be inside it.
    @discardableResult
    public func unsubscribe(_ id: SubscriptionID) -> Bool {
        let removed: Subscription? = lock.withLock { () -> Subscription? in
            guard let sub = s.subscriptions.removeValue(forKey: id) else { return nil }
            sub.active.store(false, ordering: .releasing)
            // The pattern was validated when subscribing, so tokenising cannot fail.
            _ = try? Subject.withBytes(sub.pattern) { (b) throws(OrchestraError) in
                try Subject.withTokens(b, isPattern: true) { t in s.tree.remove(sub, t) }
            }
            return sub
        }
        // The last reference (and onRelease) goes here, outside the lock, unless a publish
        // still holds it.
        return withExtendedLifetime(removed) { removed != nil }
    }

    // MARK: Middleware and hooks

    /// Appends a middleware; middleware runs in registration order before any handler. It may
    /// mutate the message or replace it (assign a new one); returning `.stop` or throwing drops
    /// the message. `onRelease` runs once when the router is deallocated (after in-flight
    /// publishes).
    public func use(
        onRelease: (() -> Void)? = nil,
        middleware: @escaping (inout Message) throws -> MiddlewareResult
    ) {
        let m = Middleware(middleware, onRelease: onRelease)
        lock.withLock { s.middleware.append(m) }
    }

    /// Sets (or with nil clears) the dead-letter hook, called with every message that no
    /// handler received. A replaced hook's `onRelease` runs once no publish is using it.
    public func onUnhandled(onRelease: (() -> Void)? = nil, _ hook: ((Message) -> Void)?) {
        let h = hook.map { Unhandled($0, onRelease: onRelease) }
        let old = lock.withLock { () -> Unhandled? in
            let old = s.unhandled
            s.unhandled = h
            return old
        }
        withExtendedLifetime(old) {}
    }

    // MARK: Publishing

    /// Runs the middleware, then every handler whose pattern matches the message's subject,
    /// on the calling thread. Handler failures are counted, not thrown.
    /// Throws `.invalidArgument`/`.tooBig` if the subject is invalid or contains a wildcard
    /// token; then no middleware or handler runs.
    @discardableResult
    public func publish(_ message: Message) throws(OrchestraError) -> PublishResult {
        var result = PublishResult()
        // Without middleware (the common case) this one call validates the subject, matches it
        // under one lock acquisition and runs the handlers.
        guard let middleware = try route(message, middlewareFirst: true, &result) else { return result }

        // The subject was valid when `route` tokenised it; now run the middleware in order.
        published.add(1, ordering: .relaxed)
        var m = message
        for (index, mw) in middleware.enumerated() {
            let action: MiddlewareResult
            do {
                action = try mw.body(&m)
            } catch {
                stopForFailure(&result, .middleware(index), m.typeBytes, error)
                return result
            }
            if action == .stop {
                result.stopped = true
                middlewareStops.add(1, ordering: .relaxed)
                return result
            }
        }
        do {
            _ = try route(m, middlewareFirst: false, &result)
        } catch {
            // The subject was valid before the middleware: one of them rewrote it.
            stopForFailure(&result, .middleware(middleware.count - 1), m.typeBytes,
                           OrchestraError(error.code, "after middleware: \(error.message)"))
        }
        return result
    }

    /// Most matches a publish keeps on its stack; more spill to an array.
    static let inlineMatches = 16

    /// Tokenises `m`'s subject (throwing if it is invalid, before any callback runs), collects
    /// the matching subscriptions under the lock and runs their handlers (or the unhandled
    /// hook) with the lock released. With `middlewareFirst`, if the router has middleware it
    /// collects nothing and returns a copy of the middleware list instead; otherwise nil.
    private func route(_ m: Message, middlewareFirst: Bool, _ result: inout PublishResult) throws(OrchestraError) -> [Middleware]? {
        // The subject's bytes stay alive even if a handler changes the message's type.
        let subject = m.holdingText(.type)
        defer { withExtendedLifetime(subject) {} }
        return try Subject.withBytes(subject.bytes) { (bytes) throws(OrchestraError) -> [Middleware]? in
            try Subject.withTokens(bytes, isPattern: false) { tokens -> [Middleware]? in
                withUnsafeTemporaryAllocation(of: Unmanaged<Subscription>.self, capacity: Self.inlineMatches) { buf -> [Middleware]? in
                    var matches = MatchList(inline: buf)
                    let (middleware, hook) = lock.withLock { () -> ([Middleware]?, Unhandled?) in
                        if middlewareFirst && !s.middleware.isEmpty { return (s.middleware, nil) }
                        _ = s.tree.collect(tokens, into: &matches)
                        return (nil, s.unhandled)
                    }
                    if let middleware { return middleware }
                    if middlewareFirst { published.add(1, ordering: .relaxed) }
                    matches.sortByID()
                    matches.forEach { sub in deliver(sub, m, &result) }
                    matches.releaseAll()
                    if result.matched == 0 {
                        result.unhandled = true
                        unhandledCount.add(1, ordering: .relaxed)
                        hook?.body(m)
                    }
                    return nil
                }
            }
        }
    }

    /// Calls one matched subscription's handler unless it was unsubscribed meanwhile.
    @inline(__always)
    private func deliver(_ sub: Subscription, _ m: Message, _ result: inout PublishResult) {
        guard sub.active.load(ordering: .acquiring) else { return }
        result.matched += 1
        do {
            try sub.handler(m)
            delivered.add(1, ordering: .relaxed)
        } catch {
            result.failed += 1
            handlerFailures.add(1, ordering: .relaxed)
            let f = RouterFailure(stage: .handler(sub.id), subject: m.typeBytes, error: error)
            lock.withLock { s.lastFailure = f }
        }
    }

    private func stopForFailure(_ result: inout PublishResult, _ stage: RouterFailure.Stage, _ subject: [UInt8], _ error: any Error) {
        result.stopped = true
        result.middlewareFailed = true
        middlewareStops.add(1, ordering: .relaxed)
        middlewareFailures.add(1, ordering: .relaxed)
        let f = RouterFailure(stage: stage, subject: subject, error: error)
        lock.withLock { s.lastFailure = f }
    }

    // MARK: Inspection

    /// The ids of the subscriptions a message with this subject would reach, in order.
    public func match(_ subject: [UInt8]) throws(OrchestraError) -> [SubscriptionID] {
        try matchWithVisits(subject).ids
    }

    public func match(_ subject: String) throws(OrchestraError) -> [SubscriptionID] {
        try match(Array(subject.utf8))
    }

    /// Matching ids plus the number of tree nodes the walk visited (for tests of the cost).
    func matchWithVisits(_ subject: [UInt8]) throws(OrchestraError) -> (ids: [SubscriptionID], visits: Int) {
        try Subject.withBytes(subject) { (bytes) throws(OrchestraError) in
            try Subject.withTokens(bytes, isPattern: false) { tokens in
                var sink = ArraySink()
                let visits = lock.withLock { s.tree.collect(tokens, into: &sink) }
                return (sink.subs.map(\.id).sorted(), visits)
            }
        }
    }

    /// Tree nodes currently allocated (root excluded).
    var nodeCount: Int { lock.withLock { s.tree.nodeCount } }

    /// The most recent handler or middleware failure.
    public var lastFailure: RouterFailure? { lock.withLock { s.lastFailure } }

    public var stats: RouterStats {
        let subs = lock.withLock { UInt64(s.subscriptions.count) }
        return RouterStats(
            published: published.load(ordering: .relaxed),
            delivered: delivered.load(ordering: .relaxed),
            handlerFailures: handlerFailures.load(ordering: .relaxed),
            middlewareStops: middlewareStops.load(ordering: .relaxed),
            middlewareFailures: middlewareFailures.load(ordering: .relaxed),
            unhandled: unhandledCount.load(ordering: .relaxed),
            subscriptions: subs)
    }
}

/// The subscriptions one publish matched, each retained so that a concurrent unsubscribe
/// cannot free one whose handler is about to run. The first `inline.count` live in a buffer
/// on the publisher's stack (no allocation per publish); any further ones spill to an array.
/// The owner calls `releaseAll()` once it is done with them.
struct MatchList: SubscriptionSink {
    let inline: UnsafeMutableBufferPointer<Unmanaged<Subscription>>
    private(set) var count = 0
    private var spill: [Subscription] = []

    init(inline: UnsafeMutableBufferPointer<Unmanaged<Subscription>>) {
        self.inline = inline
    }

    mutating func add(_ subs: [Subscription]) {
        for sub in subs {
            if count < inline.count {
                inline[count] = .passRetained(sub)
                count += 1
            } else {
                spill.append(sub)
            }
        }
    }

    /// Puts the matches in subscription order (ids only grow).
    mutating func sortByID() {
        if !spill.isEmpty {
            // Rare: move everything into the array and sort it there.
            var all = [Subscription]()
            all.reserveCapacity(count + spill.count)
            for k in 0 ..< count { all.append(inline[k].takeRetainedValue()) }
            count = 0
            all.append(contentsOf: spill)
            all.sort { $0.id < $1.id }
            spill = all
            return
        }
        guard count > 1 else { return }
        // Insertion sort: a handful of entries, usually already nearly in order.
        for k in 1 ..< count {
            let x = inline[k]
            let id = x._withUnsafeGuaranteedRef { $0.id }
            var j = k
            while j > 0 && inline[j - 1]._withUnsafeGuaranteedRef({ $0.id }) > id {
                inline[j] = inline[j - 1]
                j -= 1
            }
            inline[j] = x
        }
    }

    /// Calls `body` with each match, in order (after `sortByID`).
    func forEach(_ body: (Subscription) -> Void) {
        for k in 0 ..< count { inline[k]._withUnsafeGuaranteedRef(body) }
        for sub in spill { body(sub) }
    }

    mutating func releaseAll() {
        for k in 0 ..< count { inline[k].release() }
        count = 0
        spill = []
    }
}

/// Collects matches into an array (inspection and tests).
struct ArraySink: SubscriptionSink {
    var subs: [Subscription] = []
    mutating func add(_ s: [Subscription]) { subs.append(contentsOf: s) }
}
