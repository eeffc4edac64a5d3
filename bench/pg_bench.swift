// pg_bench: round trips through the hub's PostgreSQL client (OrchestraHub's PostgresClient on
// a Runtime's I/O thread) against a real server. bench/pg_bench.py runs it beside the same
// work done with psycopg (bench/pg_anchor.py) on the same server and prints the ratios.
//
//   build/pg_bench URL single COUNT            COUNT statements one at a time (each issued
//                                              from the completion of the one before)
//   build/pg_bench URL pipelined COUNT BATCH   COUNT statements in batches of BATCH in flight,
//                                              each its own transaction (one sync each)
//   build/pg_bench URL transaction COUNT BATCH COUNT statements in transactions of BATCH
//                                              statements (one sync per transaction)
//
// The statement is `SELECT $1::int8` (prepared on first use); every result is checked. The main
// thread sleeps on a semaphore meanwhile. Prints one line: {"mode": ..., "statements": N,
// "seconds": S, "per_second": R, "cpu_us_per_statement": C} (C: the process's CPU time, every
// thread, over the timed part, per statement).
import Glibc
import OrchestraCore
import OrchestraHub
import OrchestraNet

let args = CommandLine.arguments
guard args.count >= 4, let count = Int(args[3]), count > 0 else {
    print("usage: pg_bench URL single|pipelined|transaction COUNT [BATCH]")
    exit(2)
}
let url = args[1], mode = args[2]
let batch = args.count > 4 ? Int(args[4]) ?? 1 : 1

final class Run: @unchecked Sendable {
    let client: PostgresClient
    let total: Int
    let batch: Int
    var issued = 0
    var completed = 0
    var failures = 0
    var pendingInBatch = 0
    var onFinish: () -> Void = {}

    init(client: PostgresClient, total: Int, batch: Int) {
        self.client = client
        self.total = total
        self.batch = batch
    }

    func check(_ r: Result<PostgresResult, PostgresError>, expect: Int) {
        switch r {
        case .success(let res):
            if (try? res.int64(0, 0)) != Int64(expect) { failures += 1 }
        case .failure(let e):
            failures += 1
            if failures == 1 { fputs("pg_bench: \(e)\n", stderr) }
        }
        completed += 1
    }

    // One at a time: the next statement goes out from the completion of the last.
    func single() {
        if issued == total { onFinish(); return }
        let i = issued
        issued += 1
        client.query("SELECT $1::int8", [.int64(Int64(i))]) { [self] r in
            check(r, expect: i)
            single()
        }
    }

    // BATCH statements in flight, each its own sync; the next batch when all came back.
    func pipelined() {
        if issued == total { onFinish(); return }
        let n = min(batch, total - issued)
        pendingInBatch = n
        for _ in 0..<n {
            let i = issued
            issued += 1
            client.query("SELECT $1::int8", [.int64(Int64(i))]) { [self] r in
                check(r, expect: i)
                pendingInBatch -= 1
                if pendingInBatch == 0 { pipelined() }
            }
        }
    }

    // Transactions of BATCH statements, one at a time.
    func transactions() {
        if issued == total { onFinish(); return }
        let n = min(batch, total - issued)
        let first = issued
        let statements = (0..<n).map { PostgresStatement("SELECT $1::int8", [.int64(Int64(first + $0))]) }
        issued += n
        client.transaction(statements) { [self] results in
            for (k, r) in results.enumerated() { check(r, expect: first + k) }
            transactions()
        }
    }
}

/// A semaphore the I/O thread posts and the main thread waits on (no polling).
final class Signal: @unchecked Sendable {
    private var sem = sem_t()
    init() { sem_init(&sem, 0, 0) }
    deinit { sem_destroy(&sem) }
    func post() { sem_post(&sem) }
    func wait() { while sem_wait(&sem) != 0 {} }
}

func cpuNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

do {
    let rt = try Runtime(name: "pg-bench")
    var options = PostgresClient.Options(url)
    options.maxInFlight = max(1024, batch)
    let client = PostgresClient(runtime: rt, options: options)
    let signal = Signal()
    var connectResult: Result<Void, PostgresError>? = nil
    client.connect { r in connectResult = r; signal.post() }
    signal.wait()
    if case .failure(let e)? = connectResult {
        fputs("pg_bench: \(e)\n", stderr)
        exit(1)
    }
    // Warm up (prepares the statement; the server's plan cache and buffers).
    let warm = Run(client: client, total: 200, batch: 1)
    warm.onFinish = { signal.post() }
    try rt.post { warm.single() }
    signal.wait()
    warm.onFinish = {}

    let run = Run(client: client, total: count, batch: batch)
    var endNs: UInt64 = 0, endCPU: UInt64 = 0
    run.onFinish = { endNs = monotonicNanos(); endCPU = cpuNanos(); signal.post() }
    let start = monotonicNanos(), startCPU = cpuNanos()
    try rt.post {
        switch mode {
        case "single": run.single()
        case "pipelined": run.pipelined()
        case "transaction": run.transactions()
        default:
            fputs("pg_bench: unknown mode \(mode)\n", stderr)
            exit(2)
        }
    }
    signal.wait()
    run.onFinish = {}
    let seconds = Double(endNs - start) / 1e9
    let cpu = Double(endCPU - startCPU) / 1e3 / Double(count)
    client.close { signal.post() }
    signal.wait()
    rt.shutdown()
    if run.failures > 0 || warm.failures > 0 {
        fputs("pg_bench: \(run.failures) statements failed or returned a wrong value\n", stderr)
        exit(1)
    }
    print("{\"mode\": \"\(mode)\", \"statements\": \(count), \"batch\": \(batch), \"seconds\": \(seconds), \"per_second\": \(Double(count) / seconds), \"cpu_us_per_statement\": \(cpu)}")
} catch {
    fputs("pg_bench: \(error)\n", stderr)
    exit(1)
}
