import OrchestraCore

/// The roles of web users (docs/security.md, "Roles").
public enum UserRole: String, Sendable, CaseIterable {
    /// Everything, including the dead-letter list.
    case admin
    /// Submits tasks; sees and controls its own tasks and sessions, and sessions shared with it.
    case user
    /// Reads everything (agents, tasks, sessions); never submits, cancels or sends input.
    case viewer
}

/// Who sends a request.
enum Caller {
    /// A web client, authenticated by a token of a user who is still valid.
    case user(name: String, role: UserRole)
    /// An agent connection that has registered.
    case agent(id: String, keyId: String)
    /// An agent connection that has not registered yet.
    case unregisteredAgent
    /// An HTTP request without a valid token.
    case anonymous

    /// For logs: "alice (user)", "agent a1 (key k1)".
    var who: String {
        switch self {
        case .user(let name, let role): return "\(name) (\(role.rawValue))"
        case .agent(let id, let key): return "agent \(id) (key \(key))"
        case .unregisteredAgent: return "an unregistered agent"
        case .anonymous: return "anonymous"
        }
    }
}

/// What the check knows of the task a request names.
struct TaskFacts {
    /// The user who submitted it (nil: submitted before owners were recorded, admin only).
    let owner: String?
    let sessionId: String?
    /// The agent holding the lease of the attempt the request names (nil: no such lease, e.g.
    /// an earlier attempt: the handler ignores such a message as stale).
    let leasedTo: String?
}

/// What the check knows of the session a request names.
struct SessionFacts {
    let owner: String
    let sharedWith: Set<String>
}

/// What the check knows of an agent registration.
struct RegistrationFacts {
    let agentId: String
    let keyId: String
    /// The key the agent id is bound to (nil: never registered).
    let boundKey: String?
    /// The agent ids the key may register (nil: any).
    let scope: AgentIdScope?
}

/// A request as the authorization check sees it: its type (an event type, or `GET /path`) and
/// the facts about what it names, resolved by the hub before the check.
struct AccessRequest {
    let type: String
    var task: TaskFacts? = nil
    var session: SessionFacts? = nil
    var registration: RegistrationFacts? = nil
    /// For the log line: the id the request names ("task t1").
    var target: String = ""
    /// `tasks.list`: the submitter whose tasks it asks for.
    var listSubmitter: String? = nil
    /// `POST /auth/login`: the recent failed logins of the user and of the address.
    var login: LoginFacts? = nil
}

/// A refused request: the rule that refused it and why.
struct AccessDenial: Error {
    let rule: AccessRule
    let reason: String
}

/// Every rule of the trust model, by the name errors and log lines give it (docs/security.md,
/// "Rules"). Each is a question about the caller and the facts of one request.
enum AccessRule: String, CaseIterable {
    case submitRole = "role.submit"
    case controlRole = "role.control"
    case adminRole = "role.admin"
    case anyUser = "role.any"
    case publicPath = "public"
    case taskOwner = "task.owner"
    case taskOwnerIfExists = "task.id-owner"
    case taskRead = "task.read"
    case sessionRead = "session.read"
    case sessionWrite = "session.write"
    case sessionOwner = "session.owner"
    case registerFirst = "agent.register-first"
    case registerOnce = "agent.register-once"
    case keyBinding = "agent.key-binding"
    case keyScope = "agent.key-scope"
    case registered = "agent.registered"
    case lease = "task.lease"
    case listScope = "task.list-scope"
    case loginRate = "login.rate"

    /// Whether a refusal by this rule ends the connection (AUTH_001, then close 1008): the peer
    /// has no identity the hub accepts. Other refusals answer the request and keep it open.
    var closesConnection: Bool {
        switch self {
        case .registerFirst, .registered, .keyBinding, .keyScope: return true
        default: return false
        }
    }

    /// Nil when the rule admits the request; otherwise why not.
    func refusal(_ c: Caller, _ r: AccessRequest) -> String? {
        switch self {
        case .publicPath:
            return nil
        case .anyUser:
            if case .user = c { return nil }
            return "a user's token is required"
        case .submitRole, .controlRole:
            guard case .user(_, let role) = c else { return "a user's token is required" }
            if role == .admin || role == .user { return nil }
            return self == .submitRole ? "viewers cannot submit tasks" : "viewers cannot cancel tasks or send input"
        case .adminRole:
            guard case .user(_, let role) = c, role == .admin else { return "only admins may" }
            return nil
        case .taskOwner, .taskOwnerIfExists:
            guard let t = r.task else { return nil }   // nothing to protect: the handler says it is unknown
            guard case .user(let name, let role) = c else { return "a user's token is required" }
            if role == .admin || (t.owner != nil && t.owner == name) { return nil }
            return self == .taskOwner ? "only the task's submitter or an admin" : "the task id belongs to another user's task"
        case .taskRead:
            guard let t = r.task else { return nil }
            guard case .user(let name, let role) = c else { return "a user's token is required" }
            if role != .user || (t.owner != nil && t.owner == name) { return nil }
            if let s = r.session, s.owner == name || s.sharedWith.contains(name) { return nil }
            return "only the task's submitter, users its session is shared with, viewers and admins"
        case .sessionRead:
            guard let s = r.session else { return nil }
            guard case .user(let name, let role) = c else { return "a user's token is required" }
            if role != .user || s.owner == name || s.sharedWith.contains(name) { return nil }
            return "only the session's owner, users it is shared with, viewers and admins"
        case .sessionWrite:
            guard let s = r.session else { return nil }   // a new session: the submitter will own it
            guard case .user(let name, let role) = c else { return "a user's token is required" }
            if role == .admin || s.owner == name || (role == .user && s.sharedWith.contains(name)) { return nil }
            return "only the session's owner, users it is shared with and admins add tasks to it"
        case .sessionOwner:
            guard let s = r.session else { return nil }
            guard case .user(let name, let role) = c else { return "a user's token is required" }
            if role == .admin || s.owner == name { return nil }
            return "only the session's owner or an admin"
        case .registerFirst:
            if case .unregisteredAgent = c { return nil }
            return "agent.register must come first"
        case .registerOnce:
            if case .unregisteredAgent = c { return nil }
            return "this connection has registered already"
        case .keyBinding:
            guard let g = r.registration, let bound = g.boundKey else { return nil }
            if bound == g.keyId { return nil }
            return "agent id '\(g.agentId)' is bound to another key"
        case .keyScope:
            guard let g = r.registration, let scope = g.scope else { return nil }
            if scope.admits(g.agentId) { return nil }
            return "key '\(g.keyId)' may register only agent ids \(scope.text)"
        case .registered:
            if case .agent = c { return nil }
            return "register first"
        case .lease:
            guard let t = r.task, let holder = t.leasedTo else { return nil }   // stale or unknown: the handler ignores it
            guard case .agent(let id, _) = c else { return "only agents act on leases" }
            if holder == id { return nil }
            return "the task is leased to another agent"
        case .listScope:
            guard let wanted = r.listSubmitter else { return nil }
            guard case .user(let name, let role) = c else { return "a user's token is required" }
            if role != .user || wanted == name { return nil }
            return "users list their own tasks and their sessions', not another user's"
        case .loginRate:
            guard let l = r.login else { return nil }
            if l.userFailures < LoginThrottle.maxFailures && l.addressFailures < LoginThrottle.maxFailures { return nil }
            return "too many failed logins for this user or from this address; retry in \(l.retryAfterSeconds) s"
        }
    }
}

/// The authorization table: every request type the hub accepts, on every endpoint, and the
/// rules it must pass, in order. A type that is not here is refused (`PARAM_001`, unknown
/// type) before any handler runs; a handler never decides access itself.
enum Access {
    static let web: [String: [AccessRule]] = [
        "task.submit": [.submitRole, .taskOwnerIfExists, .sessionWrite],
        "worker.start": [.submitRole, .taskOwnerIfExists, .sessionWrite],
        "task.cancel": [.controlRole, .taskOwner],
        "worker.input": [.controlRole, .taskOwner],
        "task.get": [.anyUser, .taskRead],
        "session.join": [.anyUser, .sessionRead],
        "session.leave": [.anyUser],
        "session.share": [.submitRole, .sessionOwner],
        "agents.list": [.anyUser],
        "auth.refresh": [.anyUser],
        "dead.list": [.adminRole],
        "dead.requeue": [.adminRole],
        "tasks.list": [.anyUser, .sessionRead, .listScope],
        "stats.get": [.anyUser],
        "alerts.list": [.anyUser],
    ]

    static let agent: [String: [AccessRule]] = [
        "agent.register": [.registerOnce, .keyScope, .keyBinding],
        "agent.heartbeat": [.registered],
        "task.accepted": [.registered, .lease],
        "task.rejected": [.registered, .lease],
        "task.progress": [.registered, .lease],
        "task.stream": [.registered, .lease],
        "task.result": [.registered, .lease],
        "worker.output": [.registered, .lease],
        "worker.status": [.registered, .lease],
    ]

    static let http: [String: [AccessRule]] = [
        "GET /health": [.publicPath],
        "GET /metrics": [.publicPath],
        "GET /health/agents": [.anyUser],
        "GET /": [.publicPath],
        "GET /ui/*": [.publicPath],
        "POST /auth/login": [.publicPath, .loginRate],
    ]

    /// The rules of `type` on an endpoint's table; nil for a type the endpoint does not know.
    static func rules(_ table: [String: [AccessRule]], _ type: String) -> [AccessRule]? { table[type] }

    /// Passes `r` through its rules in order; throws the first refusal.
    static func check(_ rules: [AccessRule], _ c: Caller, _ r: AccessRequest) throws(AccessDenial) {
        for rule in rules {
            if let why = rule.refusal(c, r) { throw AccessDenial(rule: rule, reason: why) }
        }
    }
}
