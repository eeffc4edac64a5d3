import OrchestraCore

/// One second of the hub's life, as the dashboard draws it and the alert rules read it.
struct StatsSecond {
    var atMs: Int64
    var submitted: UInt64
    var succeeded: UInt64
    var failed: UInt64
    /// Tasks waiting for an agent, tasks held by agents, at the end of the second.
    var queued: Int
    var inFlight: Int
    /// Submit-to-result latencies of the tasks that finished in it: (µs, count), smallest first.
    var latency: [(value: UInt64, count: UInt64)]
}

/// The recent past of the hub's counters, one sample a second (`sample`), kept for
/// `keepSeconds`: tasks/s, queue depth and task latency (p50/p99) over the last minutes.
/// Read from the metrics the hub keeps anyway (the counters of submitted and finished tasks,
/// the latency histogram), so recording costs nothing on the tasks' path.
struct StatsRecorder {
    let keepSeconds: Int
    private(set) var seconds: [StatsSecond] = []
    /// The counters at the last sample: zero when the hub starts, as its metrics are.
    private var last: (atMs: Int64, submitted: UInt64, succeeded: UInt64, failed: UInt64, latency: Histogram)

    init(keepSeconds: Int, nowMs: Int64 = wallClockMillis()) {
        self.keepSeconds = max(60, keepSeconds)
        last = (nowMs, 0, 0, 0, Histogram())
    }

    /// Takes the counters' values now: what changed since the last sample becomes a second.
    mutating func sample(nowMs: Int64, submitted: UInt64, succeeded: UInt64, failed: UInt64, latency: Histogram,
                         queued: Int, inFlight: Int) {
        let l = last
        last = (nowMs, submitted, succeeded, failed, latency)
        seconds.append(StatsSecond(atMs: nowMs, submitted: submitted &- l.submitted, succeeded: succeeded &- l.succeeded,
                                   failed: failed &- l.failed, queued: queued, inFlight: inFlight,
                                   latency: latency.recordedSince(l.latency)))
        if seconds.count > keepSeconds { seconds.removeFirst(seconds.count - keepSeconds) }
    }

    /// The seconds within the last `windowMs` before `nowMs`.
    func window(_ windowMs: Int64, nowMs: Int64) -> ArraySlice<StatsSecond> {
        let start = nowMs - windowMs
        var i = seconds.count
        while i > 0 && seconds[i - 1].atMs > start { i -= 1 }
        return seconds[i...]
    }

    /// The nearest-rank quantile `p` of the latencies of `secs` (µs), nil when none finished.
    static func quantile(_ p: Double, _ secs: ArraySlice<StatsSecond>) -> UInt64? {
        var merged: [UInt64: UInt64] = [:]
        var total: UInt64 = 0
        for s in secs {
            for (v, n) in s.latency { merged[v, default: 0] += n; total += n }
        }
        guard total > 0 else { return nil }
        let rank = UInt64((min(max(p, 0), 1) * Double(total)).rounded(.up))
        var seen: UInt64 = 0
        for v in merged.keys.sorted() {
            seen += merged[v]!
            if seen >= max(rank, 1) { return v }
        }
        return merged.keys.max()
    }

    /// The series of the last `seconds` seconds in at most `points` points (each the sum of
    /// its seconds' counts, the last of its gauges, the quantiles of its latencies), oldest
    /// first, for `stats.get`.
    func series(seconds span: Int, points: Int, nowMs: Int64) -> (stepSeconds: Int, points: [JSONValue]) {
        let secs = window(Int64(span) * 1000, nowMs: nowMs)
        let step = max(1, (span + points - 1) / max(points, 1))
        var out: [JSONValue] = []
        var i = secs.startIndex
        // Groups end on the newest second, so the last point is always complete.
        let first = secs.count % step
        if first > 0 {
            out.append(point(secs[i..<(i + first)]))
            i += first
        }
        while i < secs.endIndex {
            let j = min(i + step, secs.endIndex)
            out.append(point(secs[i..<j]))
            i = j
        }
        return (step, out)
    }

    private func point(_ g: ArraySlice<StatsSecond>) -> JSONValue {
        let n = Double(max(g.count, 1))
        let submitted = g.reduce(UInt64(0)) { $0 + $1.submitted }
        let succeeded = g.reduce(UInt64(0)) { $0 + $1.succeeded }
        let failed = g.reduce(UInt64(0)) { $0 + $1.failed }
        var o: JSONValue = [
            "at": .int(g.last?.atMs ?? 0),
            "submittedPerSecond": .double(Double(submitted) / n),
            "finishedPerSecond": .double(Double(succeeded + failed) / n),
            "succeeded": .int(Int64(succeeded)), "failed": .int(Int64(failed)),
            "queued": .int(Int64(g.last?.queued ?? 0)), "inFlight": .int(Int64(g.last?.inFlight ?? 0)),
        ]
        if let p50 = StatsRecorder.quantile(0.5, g) { o.set("latencyP50Ms", .double(Double(p50) / 1000)) }
        if let p99 = StatsRecorder.quantile(0.99, g) { o.set("latencyP99Ms", .double(Double(p99) / 1000)) }
        return o
    }
}
