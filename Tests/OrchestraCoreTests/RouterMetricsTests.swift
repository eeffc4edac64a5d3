import Testing
@testable import OrchestraCore

@Suite struct RouterMetricsTests {
    @Test func routerStatsAppearInPrometheusText() throws {
        let registry = MetricsRegistry()
        let router = Router()
        try router.subscribe("task.*") { _ in }
        try router.subscribe("task.fail") { _ in throw OrchestraError(.internal, "handler bug") }
        router.register(in: registry, name: "hub")
        try router.publish(Message(type: "task.fail"))
        try router.publish(Message(type: "agent.x"))
        let text = String(decoding: registry.renderPrometheus(), as: UTF8.self)
        #expect(text.contains("orchestra_router_published_total{router=\"hub\"} 2"))
        #expect(text.contains("orchestra_router_delivered_total{router=\"hub\"} 1"))
        #expect(text.contains("orchestra_router_handler_failures_total{router=\"hub\"} 1"))
        #expect(text.contains("orchestra_router_unhandled_total{router=\"hub\"} 1"))
        #expect(text.contains("orchestra_router_subscriptions{router=\"hub\"} 2"))
    }
}
