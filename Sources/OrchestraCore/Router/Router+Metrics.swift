extension Router {
    /// Exposes this router's stats in `registry` as `orchestra_router_*{router="name"}` samples.
    /// The registry holds the router weakly: a freed router stops reporting and its registration
    /// is dropped. `unregister(from:)` stops the reporting of a live router.
    public func register(in registry: MetricsRegistry, name: String) {
        registry.register(owner: self) { $0.metricSamples(routerName: name) }
    }

    /// Removes every registration of this router in `registry`; returns how many there were.
    @discardableResult
    public func unregister(from registry: MetricsRegistry) -> Int {
        registry.unregister(owner: self)
    }

    /// The samples `register(in:name:)` reports.
    public func metricSamples(routerName: String) -> [MetricSample] {
        let st = stats
        let l = ["router": routerName]
        func c(_ n: String, _ h: String, _ v: UInt64) -> MetricSample {
            MetricSample(name: "orchestra_router_" + n, help: h, kind: .counter, labels: l, value: Double(v))
        }
        return [
            c("published_total", "Messages published", st.published),
            c("delivered_total", "Handler calls that succeeded", st.delivered),
            c("handler_failures_total", "Handler calls that failed", st.handlerFailures),
            c("middleware_stops_total", "Messages stopped by middleware", st.middlewareStops),
            c("middleware_failures_total", "Messages stopped by a failing middleware", st.middlewareFailures),
            c("unhandled_total", "Messages no handler received", st.unhandled),
            MetricSample(name: "orchestra_router_subscriptions", help: "Live subscriptions", kind: .gauge,
                         labels: l, value: Double(st.subscriptions)),
        ]
    }
}
