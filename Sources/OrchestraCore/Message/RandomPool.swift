import CSSL
import Glibc
import Synchronization

/// Random bytes for message ids, drawn from OpenSSL's CSPRNG 4 KiB at a time into a
/// per-thread pool. RAND_bytes itself calls getpid() on every call (OpenSSL's fork check),
/// a syscall that cost more than the rest of making a message on this VM; from the pool, 256
/// ids cost one RAND_bytes. A child process never hands out its parent's bytes: a fork bumps a
/// generation (pthread_atfork) and every pool refills when it sees a new one.
final class RandomPool {
    static let size = 4096
    let buf = UnsafeMutablePointer<UInt8>.allocate(capacity: RandomPool.size)
    var pos = RandomPool.size
    var generation: UInt64 = .max

    deinit {
        memset(buf, 0, RandomPool.size)
        buf.deallocate()
    }

    /// Copies `count` (at most 64) random bytes to `out`.
    @inline(__always)
    static func fill(_ out: UnsafeMutableRawPointer, _ count: Int) {
        let pool = current()
        let gen = forkGeneration.load(ordering: .relaxed)
        if pool.pos + count > size || pool.generation != gen {
            if RAND_bytes(pool.buf, Int32(size)) != 1 {
                var g = SystemRandomNumberGenerator()
                for i in stride(from: 0, to: size, by: 8) {
                    var v = g.next()
                    memcpy(pool.buf + i, &v, 8)
                }
            }
            pool.pos = 0
            pool.generation = gen
        }
        memcpy(out, pool.buf + pool.pos, count)
        memset(pool.buf + pool.pos, 0, count)   // each byte is handed out once
        pool.pos += count
    }

    private static func current() -> RandomPool {
        _ = atforkInstalled
        if let p = pthread_getspecific(poolKey) {
            return Unmanaged<RandomPool>.fromOpaque(UnsafeRawPointer(p)).takeUnretainedValue()
        }
        let pool = RandomPool()
        pthread_setspecific(poolKey, Unmanaged.passRetained(pool).toOpaque())
        return pool
    }
}

/// Bumped in every child process after fork(), so pools refill there.
private let forkGeneration = Atomic<UInt64>(0)

private let atforkInstalled: Bool = {
    pthread_atfork(nil, nil, { forkGeneration.add(1, ordering: .relaxed) })
    return true
}()

private let poolKey: pthread_key_t = {
    var key = pthread_key_t()
    pthread_key_create(&key) { p in
        if let p { Unmanaged<RandomPool>.fromOpaque(UnsafeRawPointer(p)).release() }
    }
    return key
}()
