import Glibc
import OrchestraCore
import Synchronization

/// Checkpoints a journal's WAL on a thread of its own, with a connection of its own, every
/// `intervalMs`, so the hub's I/O thread never runs a checkpoint (and its fdatasync) inside a
/// commit. The hub turns the automatic checkpoint of its own connection off.
///
/// Each round is a PASSIVE checkpoint, which never blocks the writer. When the WAL has reached
/// `restartFrames` frames, a RESTART follows it (`Journal.restartWAL`): it copies only what was
/// committed during the PASSIVE round, holding the write lock for about a millisecond, and the
/// next commit then starts the WAL over. Under a steady stream of commits the WAL would
/// otherwise never start over and would grow without bound.
public final class JournalCheckpointer: @unchecked Sendable {
    private let journal: Journal
    private let intervalMs: UInt32
    private let restartFrames: Int
    private let restartWaitMs: Int32
    private let stopping = Atomic<Bool>(false)
    private let restartCount = Atomic<Int>(0)
    private var thread = pthread_t()
    private var started = false
    private let onError: @Sendable (OrchestraError) -> Void

    /// Opens the second connection (errors as `Journal.init`) and starts the thread.
    /// `restartFrames`: the WAL size (in frames of one page each) from which a round restarts
    /// the WAL; `restartWaitMs`: how long a restart waits for the writer's transaction or a
    /// reader to end before it gives up until the next round.
    public init(path: String, durability: Durability, intervalMs: UInt32 = 500,
                restartFrames: Int = 4096, restartWaitMs: Int32 = 100,
                onError: @escaping @Sendable (OrchestraError) -> Void) throws(OrchestraError) {
        journal = try Journal(path: path, durability: durability)
        self.intervalMs = max(intervalMs, 10)
        self.restartFrames = max(1, restartFrames)
        self.restartWaitMs = max(0, restartWaitMs)
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

    /// The WAL restarts done so far.
    public var restarts: Int { restartCount.load(ordering: .relaxed) }

    private func run() {
        var lastError = ""
        var framesAtRestart = -1   // the WAL's size when this thread last restarted it
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
                let r = try journal.checkpoint()
                // Unchanged since the last restart: no commit since, nothing to restart.
                if r.walFrames >= restartFrames && r.walFrames != framesAtRestart {
                    let restart = try journal.restartWAL(busyTimeoutMs: restartWaitMs)
                    if !restart.busy {
                        framesAtRestart = restart.walFrames
                        restartCount.add(1, ordering: .relaxed)
                    }
                }
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
