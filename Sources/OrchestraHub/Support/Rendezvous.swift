import Glibc

/// One value handed from one thread to another that waits for it (`put` once, `take` once).
public final class Rendezvous<T>: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let cond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var value: T? = nil

    public init() {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(cond, nil)
    }

    deinit {
        pthread_cond_destroy(cond)
        pthread_mutex_destroy(mutex)
        cond.deallocate()
        mutex.deallocate()
    }

    public func put(_ v: T) {
        pthread_mutex_lock(mutex)
        value = v
        pthread_cond_signal(cond)
        pthread_mutex_unlock(mutex)
    }

    /// Waits for `put`.
    public func take() -> T {
        pthread_mutex_lock(mutex)
        while value == nil { pthread_cond_wait(cond, mutex) }
        let v = value!
        pthread_mutex_unlock(mutex)
        return v
    }
}
