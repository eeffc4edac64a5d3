import OrchestraCore
import OrchestraNet

/// One agent the hub knows: what it registered, how it is doing, what it is running.
/// Touched on the hub's I/O thread only.
public final class AgentEntry {
    public let id: String
    public var name: String
    public var capabilities: Set<String>
    public var version: String
    public var metadata: JSONValue
    public var maxConcurrency: Int
    /// The connection while online.
    var connection: Connection?
    public var connectedAtMs: Int64
    /// The last message or heartbeat (for the missed-heartbeat check).
    public var lastSeenMs: Int64
    public var systemInfo: JSONValue?
    public var cpu: Double = 0
    public var memory: Double = 0
    /// WebSocket ping round trip, 0 until measured.
    public var latencyMicros: UInt64 = 0
    public var online: Bool
    /// Task ids leased to this agent.
    public var inFlight: Set<String> = []
    public var completed: UInt64 = 0
    public var keyId: String

    init(id: String, name: String, capabilities: Set<String>, version: String, metadata: JSONValue,
         maxConcurrency: Int, keyId: String, connection: Connection, nowMs: Int64) {
        self.id = id
        self.name = name
        self.capabilities = capabilities
        self.version = version
        self.metadata = metadata
        self.maxConcurrency = maxConcurrency
        self.keyId = keyId
        self.connection = connection
        self.connectedAtMs = nowMs
        self.lastSeenMs = nowMs
        self.online = true
    }

    /// "online", "busy" (at its load limit) or "offline".
    func status(maxLoad: Int) -> String {
        guard online else { return "offline" }
        return inFlight.count >= min(maxConcurrency, maxLoad) ? "busy" : "online"
    }

    /// The registry entry as web clients and /health/agents see it (no secrets).
    func json(maxLoad: Int) -> JSONValue {
        var o: JSONValue = [
            "id": .string(id), "name": .string(name), "status": .string(status(maxLoad: maxLoad)),
            "connectedAt": .int(connectedAtMs), "lastSeen": .int(lastSeenMs),
            "capabilities": .array(capabilities.sorted().map { .string($0) }),
            "version": .string(version), "metadata": metadata,
            "load": .int(Int64(inFlight.count)), "maxConcurrency": .int(Int64(maxConcurrency)),
            "completed": .int(Int64(completed)),
        ]
        if latencyMicros > 0 { o.set("latency", .double(Double(latencyMicros) / 1000)) }
        if let systemInfo { o.set("systemInfo", systemInfo) }
        return o
    }
}

/// How the hub picks an agent for a task (docs/protocol.md, Load balancing).
public enum BalanceStrategy: String, Sendable, CaseIterable {
    case roundRobin = "round-robin"
    case leastConnections = "least-connections"
    case lowestLatency = "lowest-latency"
    case resourceBased = "resource-based"
    case random = "random"
}

/// Chooses among candidates. Round-robin keeps a cursor over agent ids, so the rotation is
/// even whatever order candidates come in and however agents join and leave.
struct LoadBalancer {
    var lastRoundRobin: String = ""
    var rng = SystemRandomNumberGenerator()

    mutating func choose(_ candidates: [AgentEntry], _ strategy: BalanceStrategy) -> AgentEntry? {
        guard !candidates.isEmpty else { return nil }
        switch strategy {
        case .roundRobin:
            // The first agent id after the last one chosen, wrapping around.
            var best: AgentEntry? = nil
            var lowest: AgentEntry? = nil
            for a in candidates {
                if a.id > lastRoundRobin, best == nil || a.id < best!.id { best = a }
                if lowest == nil || a.id < lowest!.id { lowest = a }
            }
            let pick = best ?? lowest!
            lastRoundRobin = pick.id
            return pick
        case .leastConnections:
            return candidates.min { ($0.inFlight.count, $0.id) < ($1.inFlight.count, $1.id) }
        case .lowestLatency:
            // Unmeasured agents (0) sort after measured ones.
            return candidates.min {
                let a = $0.latencyMicros == 0 ? UInt64.max : $0.latencyMicros
                let b = $1.latencyMicros == 0 ? UInt64.max : $1.latencyMicros
                return (a, $0.inFlight.count, $0.id) < (b, $1.inFlight.count, $1.id)
            }
        case .resourceBased:
            return candidates.min { ($0.cpu + $0.memory, $0.inFlight.count, $0.id) < ($1.cpu + $1.memory, $1.inFlight.count, $1.id) }
        case .random:
            return candidates.randomElement(using: &rng)
        }
    }
}
