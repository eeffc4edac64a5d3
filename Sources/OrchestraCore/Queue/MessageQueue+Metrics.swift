extension MessageQueue {
    /// Exposes this queue's stats in `registry` as `orchestra_queue_*{queue="name"}` samples.
    /// The registry holds the queue weakly: a freed queue stops reporting and its registration
    /// is dropped. `unregister(from:)` stops the reporting of a live queue.
    public func register(in registry: MetricsRegistry, name: String) {
        registry.register(owner: self) { $0.metricSamples(queueName: name) }
    }

    /// Removes every registration of this queue in `registry`; returns how many there were.
    @discardableResult
    public func unregister(from registry: MetricsRegistry) -> Int {
        registry.unregister(owner: self)
    }

    /// The samples `register(in:name:)` reports.
    public func metricSamples(queueName: String) -> [MetricSample] {
        let st = stats
        let l = ["queue": queueName]
        func c(_ n: String, _ h: String, _ v: UInt64, _ labels: [String: String]? = nil) -> MetricSample {
            MetricSample(name: "orchestra_queue_" + n, help: h, kind: .counter, labels: labels ?? l, value: Double(v))
        }
        func g(_ n: String, _ h: String, _ v: UInt64, _ labels: [String: String]? = nil) -> MetricSample {
            MetricSample(name: "orchestra_queue_" + n, help: h, kind: .gauge, labels: labels ?? l, value: Double(v))
        }
        let waitHelp = "Time from push to pop in nanoseconds (quantile 1 is the maximum)"
        return [
            c("pushed_total", "Messages accepted by push", st.pushed),
            c("popped_total", "Messages delivered to readers", st.popped),
            c("handed_off_total", "Messages handed directly to a waiting reader", st.handedOff),
            c("dropped_total", "Messages dropped, by reason", st.droppedOverflow, ["queue": queueName, "reason": "overflow"]),
            c("dropped_total", "Messages dropped, by reason", st.expired, ["queue": queueName, "reason": "expired"]),
            c("rejected_total", "Pushes refused because the queue was full", st.rejected),
            c("blocked_pushes_total", "Pushes that waited for room", st.blockedPushes),
            g("depth", "Messages queued now", st.depth),
            g("depth_high_water", "Largest depth seen", st.depthHighWater),
            g("wait_ns", waitHelp, st.waitP50Ns, ["queue": queueName, "quantile": "0.5"]),
            g("wait_ns", waitHelp, st.waitP95Ns, ["queue": queueName, "quantile": "0.95"]),
            g("wait_ns", waitHelp, st.waitP99Ns, ["queue": queueName, "quantile": "0.99"]),
            g("wait_ns", waitHelp, st.waitMaxNs, ["queue": queueName, "quantile": "1"]),
            c("waits_total", "Messages whose wait time was measured", st.waitCount),
        ]
    }
}
