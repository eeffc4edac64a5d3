import OrchestraCore

/// What `orchestra-hub`'s commands do to a journal (keys, users, tokens, dead letters, one
/// task, migrations), synchronously, on either backend: `Journal` (SQLite) and
/// `PostgresAdmin`. A running hub notices the changes within a quarter of a second (SQLite's
/// data_version; PostgreSQL's NOTIFY on the channel `orchestra`).
public protocol AdminJournal: AnyObject {
    /// The schema version the journal had before opening it migrated it (nil: it was current).
    var migratedFrom: Int64? { get }
    func close()

    func addKey(id: String, secret: [UInt8], agents: AgentIdScope?, nowMs: Int64) throws(OrchestraError) -> Bool
    func keyAccounts() throws(OrchestraError) -> [KeyAccount]
    func removeKey(id: String) throws(OrchestraError) -> Bool
    func setKeyDisabled(id: String, _ disabled: Bool) throws(OrchestraError) -> Bool
    func setKeyAgents(id: String, _ agents: AgentIdScope?) throws(OrchestraError) -> Bool
    func agentBindings() throws(OrchestraError) -> [(agentId: String, keyId: String, createdMs: Int64)]
    func unbindAgent(agentId: String) throws(OrchestraError) -> Bool

    func addUser(name: String, passwordHash: String, role: UserRole, nowMs: Int64) throws(OrchestraError) -> Bool
    func userAccounts() throws(OrchestraError) -> [UserAccount]
    func user(name: String) throws(OrchestraError) -> (account: UserAccount, passwordHash: String)?
    func removeUser(name: String) throws(OrchestraError) -> Bool
    func setUserDisabled(name: String, _ disabled: Bool) throws(OrchestraError) -> Bool
    func setUserRole(name: String, _ role: UserRole) throws(OrchestraError) -> Bool
    func revokeTokens(name: String, nowMs: Int64) throws(OrchestraError) -> Int64?

    func setting(_ key: String, insertingIfAbsent value: String) throws(OrchestraError) -> String
    func deadLetters(limit: Int) throws(OrchestraError) -> [TaskRecord]
    func requeue(id: String, nowMs: Int64) throws(OrchestraError) -> Bool
    func task(id: String) throws(OrchestraError) -> TaskRecord?
}

extension Journal: AdminJournal {}

/// Opens the journal a `--journal` value names: `postgresql://…` or `postgres://…` (PostgreSQL),
/// `sqlite:PATH` or a bare path (SQLite).
public enum JournalLocation: Sendable, Equatable {
    case sqlite(String)
    case postgres(String)

    public init(_ value: String) {
        if value.hasPrefix("postgresql://") || value.hasPrefix("postgres://") {
            self = .postgres(value)
        } else if value.hasPrefix("sqlite:") {
            self = .sqlite(String(value.dropFirst("sqlite:".count)))
        } else {
            self = .sqlite(value)
        }
    }

    /// For logs: the path, or the URL without its password.
    public var label: String {
        switch self {
        case .sqlite(let p): return "sqlite:\(p)"
        case .postgres(let u): return PostgresStore.redact(u)
        }
    }

    /// The journal for a command (migrated on open).
    public func openAdmin(durability: Durability = .normal) throws(OrchestraError) -> AdminJournal {
        switch self {
        case .sqlite(let p): return try Journal(path: p, durability: durability)
        case .postgres(let u): return try PostgresAdmin(url: u)
        }
    }
}
