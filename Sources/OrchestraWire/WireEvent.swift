/// The version of the hub protocol (docs/protocol.md) the hub and the agent SDK speak.
public let hubProtocolVersion: Int64 = 1

/// The event types of the agent endpoint (`/agent`), both directions (docs/protocol.md,
/// sections Agents and Tasks): what the agent SDK sends and reads, and the hub answers.
public enum WireEvent: String, Sendable, CaseIterable {
    // agent -> hub
    case agentRegister = "agent.register"
    case agentHeartbeat = "agent.heartbeat"
    case taskAccepted = "task.accepted"
    case taskRejected = "task.rejected"
    case taskProgress = "task.progress"
    case taskStream = "task.stream"
    case taskResult = "task.result"
    case workerOutput = "worker.output"
    case workerStatus = "worker.status"
    // hub -> agent
    case agentRegistered = "agent.registered"
    case taskAssign = "task.assign"
    case taskCancel = "task.cancel"
    case workerInput = "worker.input"
    case error = "error"

    /// The type as the bytes of an envelope's `type` field.
    public var bytes: [UInt8] { Array(rawValue.utf8) }
}
