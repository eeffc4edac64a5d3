import Glibc
import OrchestraCore
import Synchronization

/// Checkpoints a journal's WAL on a thread of its own, with a connection of its own, every
/// `intervalMs`, so the hub's I/O thread never runs a checkpoint (and its fdatasync) inside a
/// commit. The hub turns the automatic checkpoint of its own connection off.
public final class JournalCheckpointer: @unchecked Sendable {
    private let journal: Journal
    private let intervalMs: UInt32
    private let stopping = Atomic<Bool>(false)
    private var thread = pthread_t()
    private var started = false
    private let onError: @Sendable (OrchestraError) -> Void

    /// Opens the second connection (errors as `Journal.init`) and starts the thread.
    public init(path: String, durability: Durability, intervalMs: UInt32 = 500,
                onError: @escaping @Sendable (OrchestraError) -> Void) throws(OrchestraError) {
        journal = try Journal(path: path, durability: durability)
        self.intervalMs = max(intervalMs, 10)
        self.onError = onError
        let ctx = Unmanaged.passRetained(self).toOpaque()
        let rc = pthread_create(&thread, nil, { arg in
            let me = Unmanaged<JournalCheckpointer>.fromOpaque(arg!).takeRetainedValue()
            me.run()
            return nil
        }, ctx)
        guard rc == 0 else {
            Unmanaged<JournalCheckpointer>.fromOpaque(ctx).release()
            journal.close()
            throw OrchestraError(.io, "cannot start the checkpoint thread: \(String(cString: strerror(rc)))")
        }
        started = true
    }

    private func run() {
        var lastError = ""
        outer: while true {
            // Sleep in steps of at most 20 ms, so stop() returns soon.
            var slept: UInt32 = 0
            while slept < intervalMs {
                if stopping.load(ordering: .acquiring) { break outer }
                let step = min(20, intervalMs - slept)
                usleep(step * 1000)
                slept += step
            }
            do throws(OrchestraError) {
                try journal.checkpoint()
                lastError = ""
            } catch {
                if error.message != lastError { onError(error) }   // once per distinct failure
                lastError = error.message
            }
        }
        journal.close()
    }

    /// Stops the thread and closes its connection. Idempotent; the thread that made it.
    public func stop() {
        guard started else { return }
        stopping.store(true, ordering: .releasing)
        pthread_join(thread, nil)
        started = false
    }
}
