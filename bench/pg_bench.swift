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
// The statement is `SELECT $1::int8` (prepared on first use); every result is checked. Prints
// one line: {"mode": ..., "statements": N, "seconds": S, "per_second": R}.
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
    let done = PthreadMutex()
    var finished = false
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

do {
    let rt = try Runtime(name: "pg-bench")
    var options = PostgresClient.Options(url)
    options.maxInFlight = max(1024, batch)
    let client = PostgresClient(runtime: rt, options: options)
    let connected = PthreadMutex()
    var connectResult: Result<Void, PostgresError>? = nil
    client.connect { r in connected.withLock { connectResult = r } }
    while connected.withLock({ connectResult == nil }) { usleep(1000) }
    if case .failure(let e)? = connected.withLock({ connectResult }) {
        fputs("pg_bench: \(e)\n", stderr)
        exit(1)
    }
    // Warm up (prepares the statement; the server's plan cache and buffers).
    let warm = Run(client: client, total: 200, batch: 1)
    var warmed = false
    warm.onFinish = { warm.done.withLock { warmed = true } }
    try rt.post { warm.single() }
    while warm.done.withLock({ !warmed }) { usleep(1000) }
    warm.onFinish = {}   // (it captured warm)

    let run = Run(client: client, total: count, batch: batch)
    var endNs: UInt64 = 0
    run.onFinish = { run.done.withLock { endNs = monotonicNanos(); run.finished = true } }
    let start = monotonicNanos()
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
    while run.done.withLock({ !run.finished }) { usleep(200) }
    run.done.withLock { run.onFinish = {} }
    let seconds = Double(endNs - start) / 1e9
    let closed = PthreadMutex()
    var isClosed = false
    client.close { closed.withLock { isClosed = true } }
    while closed.withLock({ !isClosed }) { usleep(1000) }
    rt.shutdown()
    if run.failures > 0 || warm.failures > 0 {
        fputs("pg_bench: \(run.failures) statements failed or returned a wrong value\n", stderr)
        exit(1)
    }
    print("{\"mode\": \"\(mode)\", \"statements\": \(count), \"batch\": \(batch), \"seconds\": \(seconds), \"per_second\": \(Double(count) / seconds)}")
} catch {
    fputs("pg_bench: \(error)\n", stderr)
    exit(1)
}
