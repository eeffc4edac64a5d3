import OrchestraCore

/// The protocol's error codes (docs/protocol.md, "Request and response"), sent in `error`
/// envelopes as ErrorInfo.code. The hub answers with them; the agent SDK reads them (and
/// reports `CONN_001`/`CONN_002` for what fails on its own side).
public enum HubErrorCode: String, Sendable, CaseIterable {
    case connectionFailed = "CONN_001"
    case connectionTimeout = "CONN_002"
    case authenticationFailed = "AUTH_001"
    case agentNotAvailable = "AGENT_001"
    case taskExecutionFailed = "TASK_001"
    case invalidParameters = "PARAM_001"
    case internalError = "SYS_001"
    case databaseError = "DB_001"
    case resourceExhausted = "RES_001"
}

/// A failure to answer with an `error` envelope.
public struct HubError: Error, Sendable {
    public let code: HubErrorCode
    public let message: String
    public let details: JSONValue?

    public init(_ code: HubErrorCode, _ message: String, details: JSONValue? = nil) {
        self.code = code
        self.message = message
        self.details = details
    }

    /// ErrorInfo {code, message, details, timestamp} of docs/protocol.md.
    public func info(nowMs: Int64 = wallClockMillis()) -> JSONValue {
        var o: JSONValue = ["code": .string(code.rawValue), "message": .string(message)]
        if let details { o.set("details", details) }
        o.set("timestamp", .int(nowMs))
        return o
    }

    /// A journal failure, as DB_001.
    public static func database(_ e: OrchestraError) -> HubError {
        HubError(.databaseError, "journal: \(e.message)")
    }
}
