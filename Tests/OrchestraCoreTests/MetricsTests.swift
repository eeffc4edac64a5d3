import Testing
@testable import OrchestraCore

private func text(_ b: [UInt8]) -> String { String(decoding: b, as: UTF8.self) }

@Suite struct MetricsTests {
    /// Exact nearest-rank quantile of sorted values.
    private func exact(_ sorted: [UInt64], _ p: Double) -> UInt64 {
        let rank = max(1, min(sorted.count, Int((p * Double(sorted.count)).rounded(.up))))
        return sorted[rank - 1]
    }

    @Test func histogramQuantilesWithinDocumentedBound() {
        var rng = SystemRandomNumberGenerator()
        // Several shapes: uniform small, log-uniform wide, constant-ish.
        let shapes: [() -> UInt64] = [
            { UInt64.random(in: 0..<100, using: &rng) },
            { UInt64.random(in: 0..<1_000_000, using: &rng) },
            { 1 << UInt64.random(in: 0..<50, using: &rng) + UInt64.random(in: 0..<1000, using: &rng) },
        ]
        for gen in shapes {
            var h = Histogram()
            var values: [UInt64] = []
            for _ in 0..<20_000 {
                let v = gen()
                values.append(v)
                h.record(v)
            }
            values.sort()
            #expect(h.count == 20_000)
            #expect(h.min == values.first)
            #expect(h.max == values.last)
            #expect(h.sum == values.reduce(0, &+))
            for p in [0.0, 0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0] {
                let e = exact(values, p)
                let got = h.quantile(p)
                let err = got > e ? got - e : e - got
                #expect(Double(err) <= Double(e) * Histogram.maxRelativeError, "p=\(p) exact=\(e) got=\(got)")
            }
        }
    }

    @Test func histogramEdgesAndMerge() {
        var h = Histogram()
        #expect(h.quantile(0.5) == 0 && h.count == 0 && h.min == 0 && h.max == 0)
        h.record(UInt64.max)
        h.record(0)
        #expect(h.max == UInt64.max && h.min == 0)
        #expect(h.sum == UInt64.max)     // saturates
        #expect(h.quantile(1) == UInt64.max)
        #expect(h.quantile(.nan) == 0)
        var a = Histogram(), b = Histogram()
        for v in 0..<1000 as Range<UInt64> { a.record(v) }
        for v in 1000..<2000 as Range<UInt64> { b.record(v) }
        a.merge(b)
        #expect(a.count == 2000 && a.min == 0 && a.max == 1999)
        let p50 = a.quantile(0.5)
        #expect(p50 >= 999 - 16 && p50 <= 999 + 16)
        // Every bucket index is in range and bucket ranges contain their values.
        for v: UInt64 in [0, 1, 31, 32, 33, 63, 64, 1000, 1 << 40, (1 << 40) + 12345, UInt64.max] {
            let i = Histogram.bucketIndex(v)
            #expect(i >= 0 && i < Histogram.bucketCount)
            let (lo, w) = Histogram.bucketRange(i)
            #expect(v >= lo && v - lo < w)
        }
    }

    @Test func recordedSinceIsTheRecentPartOfACumulativeHistogram() {
        var h = Histogram()
        for v: UInt64 in [5, 5, 1000, 70_000] { h.record(v) }
        let earlier = h
        #expect(h.recordedSince(earlier).isEmpty)
        for v: UInt64 in [5, 1000, 1001, 2_000_000] { h.record(v) }
        let recent = h.recordedSince(earlier)
        #expect(recent.map(\.count) == [1, 2, 1])
        #expect(recent[0].value == 5)
        #expect(abs(Double(recent[1].value) - 1000) <= 1000 * Histogram.maxRelativeError)
        #expect(abs(Double(recent[2].value) - 2_000_000) <= 2_000_000 * Histogram.maxRelativeError)
        #expect(recent.map(\.value) == recent.map(\.value).sorted())
    }

    @Test func registryReturnsSameObjectAndRejectsBadNames() throws {
        let r = MetricsRegistry()
        let c1 = try r.counter("requests_total", help: "Requests", labels: ["route": "a"])
        let c2 = try r.counter("requests_total", labels: ["route": "a"])
        let c3 = try r.counter("requests_total", labels: ["route": "b"])
        #expect(c1 === c2)
        #expect(c1 !== c3)
        for bad in ["", "1abc", "a-b", "a b", "é"] {
            do { _ = try r.counter(bad); Issue.record("accepted \(bad)") } catch {
                #expect(error.code == .invalidArgument)
                #expect(error.message.contains("name"))
            }
        }
        #expect(throws: OrchestraError.self) { try r.gauge("requests_total") }   // kind clash
        #expect(throws: OrchestraError.self) { try r.counter("ok", labels: ["__x": "1"]) }
        #expect(throws: OrchestraError.self) { try r.counter("ok", labels: ["a-b": "1"]) }
        _ = try r.counter("ns:sub_total")   // colons are allowed
    }

    @Test func prometheusFormat() throws {
        let r = MetricsRegistry()
        let c = try r.counter("requests_total", help: "Requests\nserved \\ total", labels: ["path": "/a\"b\\c\nd"])
        c.add(3)
        c.add()
        let g = try r.gauge("temperature", help: "Degrees")
        g.set(21.5)
        g.add(-1.0)
        let h = try r.histogram("latency_ns", help: "Latency")
        for v in 1...100 as ClosedRange<UInt64> { h.record(v * 1000) }
        let out = text(r.renderPrometheus())
        let expected = """
        # HELP requests_total Requests\\nserved \\\\ total
        # TYPE requests_total counter
        requests_total{path="/a\\"b\\\\c\\nd"} 4
        # HELP temperature Degrees
        # TYPE temperature gauge
        temperature 20.5
        # HELP latency_ns Latency
        # TYPE latency_ns summary
        latency_ns{quantile="0.5"} \(h.snapshot().quantile(0.5))
        latency_ns{quantile="0.95"} \(h.snapshot().quantile(0.95))
        latency_ns{quantile="0.99"} \(h.snapshot().quantile(0.99))
        latency_ns_sum 5050000
        latency_ns_count 100
        # HELP latency_ns_max Largest value recorded in latency_ns
        # TYPE latency_ns_max gauge
        latency_ns_max 100000

        """
        #expect(out == expected)
        let p50 = h.snapshot().quantile(0.5)
        #expect(p50 >= 50_000 - 50_000 / 64 && p50 <= 50_000 + 50_000 / 64)
    }

    @Test func jsonSnapshotAndQueueCollector() throws {
        let r = MetricsRegistry()
        try r.counter("a_total").add(2)
        try r.histogram("lat").record(10)
        let q = try MessageQueue(QueueOptions(capacity: 1, policy: .dropNewest))
        q.register(in: r, name: "in\"box")
        try q.push(Message(type: "x.y"))
        try q.push(Message(type: "x.y"))   // dropped (overflow)
        _ = try q.pop(timeoutMs: 0)
        let json = text(r.renderJSON())
        #expect(json.hasPrefix("{\"a_total\":2,\"lat\":{\"count\":1,\"sum\":10,\"p50\":10,\"p95\":10,\"p99\":10,\"max\":10}"))
        #expect(json.contains(#""orchestra_queue_pushed_total{queue=\"in\\\"box\"}":2"#))
        let prom = text(r.renderPrometheus())
        #expect(prom.contains("# TYPE orchestra_queue_dropped_total counter\n"))
        #expect(prom.contains(#"orchestra_queue_dropped_total{queue="in\"box",reason="overflow"} 1"#))
        #expect(prom.contains(#"orchestra_queue_popped_total{queue="in\"box"} 1"#))
        #expect(prom.split(separator: "\n").filter { $0 == "# TYPE orchestra_queue_wait_ns gauge" }.count == 1)
        // A freed queue stops reporting.
        _ = consume q
        #expect(!text(r.renderPrometheus()).contains("orchestra_queue_"))
    }

    @Test func helpIsOptionalAndCanBeSetLater() throws {
        let r = MetricsRegistry()
        try r.counter("plain_total").add()
        #expect(text(r.renderPrometheus()) == "# TYPE plain_total counter\nplain_total 1\n")
        // A later registration with help fills in a missing one; an explicit help wins.
        _ = try r.counter("plain_total", help: "Plain")
        #expect(text(r.renderPrometheus()).hasPrefix("# HELP plain_total Plain\n"))
        try r.setHelp("plain_total", "Explicit")
        try r.setHelp("future_g", "Set before the gauge exists")
        try r.gauge("future_g").set(2.0)
        let out = text(r.renderPrometheus())
        #expect(out.hasPrefix("# HELP plain_total Explicit\n"))
        #expect(out.contains("# HELP future_g Set before the gauge exists\n# TYPE future_g gauge\nfuture_g 2\n"))
        #expect(throws: OrchestraError(.invalidArgument, "help for metric \"plain_total\" is empty; a metric without help is rendered without a # HELP line")) {
            try r.setHelp("plain_total", "")
        }
        #expect(throws: OrchestraError.self) { try r.setHelp("bad name", "x") }
        #expect(throws: OrchestraError.self) { try r.setHelp("x", String(repeating: "h", count: MetricsRegistry.maxHelpLength + 1)) }
        #expect(!text(r.renderPrometheus()).split(separator: "\n").contains { $0.hasPrefix("# HELP") && $0.split(separator: " ").count < 4 })
    }

    @Test func collectorsCanBeUnregisteredAndDieWithTheirOwner() throws {
        let r = MetricsRegistry()
        try r.counter("own_total").add(1)
        let q = try MessageQueue(QueueOptions())
        let router = Router()
        q.register(in: r, name: "a")
        q.register(in: r, name: "b")
        router.register(in: r, name: "main")
        #expect(r.collectorCount == 3)
        #expect(text(r.renderPrometheus()).contains("orchestra_queue_depth{queue=\"b\"} 0"))
        #expect(q.unregister(from: r) == 2)
        #expect(q.unregister(from: r) == 0)
        #expect(MetricsRegistry().unregister(owner: router) == 0)
        let prom = text(r.renderPrometheus())
        #expect(!prom.contains("orchestra_queue_"))
        #expect(prom.contains("orchestra_router_subscriptions{router=\"main\"} 0"))
        #expect(prom.contains("own_total 1"))
        #expect(r.collectorCount == 1)
        #expect(router.unregister(from: r) == 1)
        #expect(r.storedCollectorCount == 0)

        // Registrations of objects that were freed are dropped, not kept forever: a process
        // that makes and frees many queues does not grow the registry.
        for n in 0 ..< 100 {
            let t = try MessageQueue(QueueOptions())
            t.register(in: r, name: "tmp\(n)")
        }
        #expect(r.collectorCount == 0)
        q.register(in: r, name: "again")
        #expect(r.storedCollectorCount == 1)
        #expect(text(r.renderPrometheus()).contains("orchestra_queue_depth{queue=\"again\"} 0"))
        // A free-standing collector stays.
        r.register { [MetricSample(name: "free_gauge", help: "x", kind: .gauge, value: 7)] }
        #expect(q.unregister(from: r) == 1)
        #expect(r.collectorCount == 1)
        #expect(text(r.renderPrometheus()).contains("free_gauge 7"))
    }

    @Test func gaugeAddIsAtomicAcrossTasks() async throws {
        let r = MetricsRegistry()
        let g = try r.gauge("g")
        let c = try r.counter("c_total")
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<4 {
                group.addTask { for _ in 0..<1000 { g.add(Int64(1)); c.add() } }
            }
        }
        #expect(g.value == 4000)
        #expect(c.value == 4000)
    }
}
