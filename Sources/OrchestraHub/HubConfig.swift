import OrchestraCore

/// Everything the hub can be told (flags and environment variables of `orchestra-hub`).
public struct HubConfig: Sendable {
    public var host = "127.0.0.1"
    public var port: UInt16 = 7420
    public var journalPath = "./var/orchestra.db"
    public var durability = Durability.normal
    public var logLevel = LogLevel.info
    public var strategy = BalanceStrategy.roundRobin
    /// Tasks in flight per agent at most (an agent's own maxConcurrency may be lower).
    public var maxLoadPerAgent = 16
    public var leaseMs: Int64 = 15_000
    public var heartbeatIntervalMs: Int64 = 5_000
    /// Intervals without a heartbeat before an agent is offline.
    public var missedHeartbeats: Int64 = 3
    public var maxAttempts = 3
    /// Requests per minute per web connection (0: no limit).
    public var rateLimitPerMinute = 100
    public var maxConnections = 10_000
    public var maxMessageSize = 1 << 20
    /// Origins allowed to upgrade, for requests that carry an `Origin` (browsers); empty: any.
    public var allowedOrigins: [String] = []
    /// How long a session's events are kept for a watcher that resumes (the recovery window).
    public var recoveryWindowMs: Int64 = 300_000
    /// How long finished tasks stay in the journal after they finished (dead letters stay until
    /// they are requeued); 0 keeps them for ever.
    public var taskRetentionMs: Int64 = 30 * 86_400_000
    /// Byte budget of one session's replay log; chunks beyond it are dropped oldest first.
    public var replaySessionBytes = 8 << 20
    /// Byte budget of every session's replay log together.
    public var replayHubBytes = 256 << 20
    public var registerTimeoutMs: UInt64 = 10_000
    /// Lifetime of the tokens `auth.refresh` issues.
    public var tokenTTLSeconds: Int64 = 3600
    public var maxClockSkewMs: Int64 = 300_000
    public var tlsCertFile: String? = nil
    public var tlsKeyFile: String? = nil
    /// The key web tokens are signed with, when the operator keeps it outside the journal
    /// (`--jwt-key-file`, `ORC_HUB_JWT_KEY`); nil: the journal's.
    public var jwtKey: [UInt8]? = nil
    /// This hub's id among the hubs of one database (`--hub-id`; `orchestra-hub` makes one and
    /// keeps it when none is given).
    public var hubId = ""
    /// A hub whose heartbeat (every second) is older than this is dead: its agents are offline,
    /// and the tasks it held go back to the queue one lease later.
    public var hubTimeoutMs: Int64 = 5_000
    /// The dashboard's files (`--web-root`; nil: none found, or `--no-web`): served at `/`.
    public var webRoot: String? = nil
    /// Alert rules (0 turns one off): an agent offline longer than this; task latency p99 over
    /// the window above this; the share of failed tasks over the window above this percentage.
    public var alertAgentOfflineSeconds: Int64 = 60
    public var alertLatencyP99Ms: Int64 = 60_000
    public var alertErrorRatePercent: Double = 50
    public var alertWindowSeconds: Int64 = 300

    public init() {}
}
