import OrchestraCore

/// An alert the hub raised: a rule whose condition holds now. `id` names the rule and what it
/// is about (`agent.offline:a1`), so one agent's alert is raised and resolved on its own.
struct Alert {
    let id: String
    let rule: String
    /// The agent an `agent.offline` alert is about.
    let subject: String?
    var message: String
    var value: Double
    let threshold: Double
    var raisedAtMs: Int64 = 0

    /// As `alerts.list` and the `alert.*` events carry it.
    var json: JSONValue {
        var o: JSONValue = ["id": .string(id), "rule": .string(rule), "message": .string(message), "value": .double(value),
                            "threshold": .double(threshold), "raisedAt": .int(raisedAtMs)]
        if let subject { o.set("subject", .string(subject)) }
        return o
    }

    /// As the public /health lists it: the rule and the figures, no names.
    var healthJSON: JSONValue {
        ["rule": .string(rule), "value": .double(value), "threshold": .double(threshold), "raisedAt": .int(raisedAtMs)]
    }
}

/// The alert rules and their thresholds (`--alert-*` flags; 0 turns a rule off).
struct AlertRules: Equatable {
    static let names = ["agent.offline", "task.latency", "task.error-rate"]
    /// Fewer finished tasks in the window than this never raise `task.error-rate`.
    static let minFinished: UInt64 = 5

    var agentOfflineSeconds: Int64
    var latencyP99Ms: Int64
    var errorRatePercent: Double
    var windowSeconds: Int64

    init(_ c: HubConfig) {
        agentOfflineSeconds = c.alertAgentOfflineSeconds
        latencyP99Ms = c.alertLatencyP99Ms
        errorRatePercent = c.alertErrorRatePercent
        windowSeconds = c.alertWindowSeconds
    }

    var json: JSONValue {
        ["agentOfflineSeconds": .int(agentOfflineSeconds), "latencyP99Ms": .int(latencyP99Ms),
         "errorRatePercent": .double(errorRatePercent), "windowSeconds": .int(windowSeconds)]
    }

    /// The alerts whose conditions hold now: agents offline (no heartbeat) for longer than the
    /// limit, the p99 of task latency over the window above its limit, the share of failed
    /// tasks over the window above its limit.
    func conditions(agents: [AgentEntry], stats: StatsRecorder, nowMs: Int64) -> [Alert] {
        var out: [Alert] = []
        if agentOfflineSeconds > 0 {
            for a in agents where !a.online && nowMs - a.lastSeenMs > agentOfflineSeconds * 1000 {
                let s = (nowMs - a.lastSeenMs) / 1000
                out.append(Alert(id: "agent.offline:\(a.id)", rule: "agent.offline", subject: a.id,
                                 message: "agent \(a.id) has been offline for \(s) s (limit \(agentOfflineSeconds) s)",
                                 value: Double(s), threshold: Double(agentOfflineSeconds)))
            }
        }
        let window = stats.window(windowSeconds * 1000, nowMs: nowMs)
        if latencyP99Ms > 0, let p99 = StatsRecorder.quantile(0.99, window), Double(p99) / 1000 > Double(latencyP99Ms) {
            let ms = Double(p99) / 1000
            out.append(Alert(id: "task.latency", rule: "task.latency", subject: nil,
                             message: "task latency p99 is \(Int64(ms)) ms over the last \(windowSeconds) s (limit \(latencyP99Ms) ms)",
                             value: ms, threshold: Double(latencyP99Ms)))
        }
        if errorRatePercent > 0 {
            let failed = window.reduce(UInt64(0)) { $0 + $1.failed }
            let finished = failed + window.reduce(UInt64(0)) { $0 + $1.succeeded }
            if finished >= AlertRules.minFinished {
                let rate = Double(failed) * 100 / Double(finished)
                if rate > errorRatePercent {
                    out.append(Alert(id: "task.error-rate", rule: "task.error-rate", subject: nil,
                                     message: "\(failed) of \(finished) tasks failed over the last \(windowSeconds) s (\(Int(rate)) %, limit \(errorRatePercent) %)",
                                     value: rate, threshold: errorRatePercent))
                }
            }
        }
        return out
    }
}

/// The alerts raised and not resolved yet.
struct AlertBook {
    private(set) var active: [String: Alert] = [:]

    /// Makes `conditions` the active alerts: those new are raised, those gone are resolved;
    /// those still holding keep their raise time and take the new figures.
    mutating func update(_ conditions: [Alert], nowMs: Int64) -> (raised: [Alert], resolved: [Alert]) {
        var raised: [Alert] = [], resolved: [Alert] = []
        var next: [String: Alert] = [:]
        for var a in conditions {
            if let old = active[a.id] {
                a.raisedAtMs = old.raisedAtMs
            } else {
                a.raisedAtMs = nowMs
                raised.append(a)
            }
            next[a.id] = a
        }
        for (id, a) in active where next[id] == nil { resolved.append(a) }
        active = next
        return (raised.sorted { $0.id < $1.id }, resolved.sorted { $0.id < $1.id })
    }

    var sorted: [Alert] { active.values.sorted { ($0.raisedAtMs, $0.id) < ($1.raisedAtMs, $1.id) } }
}
