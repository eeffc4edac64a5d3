import Glibc

/// A plain pthread mutex for state that holds non-Sendable values (the router's tree and
/// closures, the runtime's timers). `Synchronization.Mutex` would demand `sending` values in
/// and out of the critical section, and ThreadSanitizer does not see the futex it uses on Linux.
public final class PthreadMutex: @unchecked Sendable {
    private let m: UnsafeMutablePointer<pthread_mutex_t>

    public init() {
        m = .allocate(capacity: 1)
        m.initialize(to: pthread_mutex_t())
        pthread_mutex_init(m, nil)
    }

    deinit {
        pthread_mutex_destroy(m)
        m.deinitialize(count: 1)
        m.deallocate()
    }

    @inline(__always)
    public func withLock<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R {
        pthread_mutex_lock(m)
        defer { pthread_mutex_unlock(m) }
        return try body()
    }

    /// Runs `body` under the lock if it is free now; nil (without running it) when another
    /// thread holds it.
    @inline(__always)
    public func withLockIfFree<R, E: Error>(_ body: () throws(E) -> R) throws(E) -> R? {
        guard pthread_mutex_trylock(m) == 0 else { return nil }
        defer { pthread_mutex_unlock(m) }
        return try body()
    }
}
