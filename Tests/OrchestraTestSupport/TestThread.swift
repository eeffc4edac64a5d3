// A plain pthread for tests that need a thread of their own (not a task on the cooperative
// pool, which may not block): producers, consumers, racing readers.
import Glibc

/// Runs `body` on a new pthread; `join` waits for it.
public final class TestThread: @unchecked Sendable {
    private var tid = pthread_t()
    private let body: () -> Void

    public init(_ body: @escaping () -> Void) {
        self.body = body
        let ctx = Unmanaged.passRetained(self).toOpaque()
        pthread_create(&tid, nil, { p in
            let t = Unmanaged<TestThread>.fromOpaque(p!).takeRetainedValue()
            t.body()
            return nil
        }, ctx)
    }

    public func join() { pthread_join(tid, nil) }
}
