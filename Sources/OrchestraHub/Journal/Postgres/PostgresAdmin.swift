import OrchestraCore
import OrchestraNet

/// `AdminJournal` on PostgreSQL, for `orchestra-hub`'s commands: a runtime of its own runs a
/// `PostgresStore`, and each call waits for its answer. Changes to users and keys are followed
/// by `NOTIFY orchestra, 'accounts'`, a requeue by `'tasks'`, so running hubs act on them.
public final class PostgresAdmin: AdminJournal, @unchecked Sendable {
    private let runtime: Runtime
    private let store: PostgresStore
    public let migratedFrom: Int64?

    public init(url: String) throws(OrchestraError) {
        runtime = try Runtime(name: "orchestra-admin")
        store = PostgresStore(runtime: runtime, url: url)
        do { migratedFrom = try store.open() } catch {
            runtime.shutdown()
            throw error
        }
    }

    public func close() {
        let done = Rendezvous<Bool>()
        do { try runtime.post { [store] in store.close { done.put(true) } } } catch { return }
        _ = done.take()
        runtime.shutdown()
    }

    /// Runs `statements` as one transaction and waits for their results.
    private func run(_ statements: [PostgresStatement]) throws(OrchestraError) -> [PostgresResult] {
        let r = Rendezvous<Result<[PostgresResult], OrchestraError>>()
        store.client.transaction(statements) { rs in
            if let e = PostgresStore.firstError(rs) { r.put(.failure(OrchestraError(e.code, "journal \(self.store.label): \(e.message)"))); return }
            r.put(.success(rs.compactMap { try? $0.get() }))
        }
        return try r.take().get()
    }

    private func run(_ sql: String, _ params: [PostgresValue] = []) throws(OrchestraError) -> PostgresResult {
        try run([PostgresStatement(sql, params)])[0]
    }

    /// `sql` then a notification on the channel, in one transaction (delivered at its commit).
    private func change(_ sql: String, _ params: [PostgresValue], notify what: String) throws(OrchestraError) -> Int {
        try run([PostgresStatement(sql, params),
                 PostgresStatement("SELECT pg_notify($1, $2)", [.text(PostgresStore.channel), .text(what)])])[0].affectedRows
    }

    /// Waits for a `HubStore` call of the store.
    private func wait<T>(_ call: @escaping (@escaping StoreDone<T>) -> Void) throws(OrchestraError) -> T {
        let r = Rendezvous<Result<T, OrchestraError>>()
        try runtime.post { call { r.put($0) } }   // the store lives on the I/O thread
        return try r.take().get()
    }

    // MARK: keys

    public func addKey(id: String, secret: [UInt8], agents: AgentIdScope?, nowMs: Int64) throws(OrchestraError) -> Bool {
        guard !secret.isEmpty else { throw OrchestraError(.invalidArgument, "journal \(store.label): add key \"\(id)\": the secret is empty") }
        return try change("INSERT INTO agent_keys (id, secret, created_ms, agents) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
                          [.text(id), .bytea(secret), .int64(nowMs), agents.map { .text($0.text) } ?? .null], notify: "accounts") == 1
    }

    public func keyAccounts() throws(OrchestraError) -> [KeyAccount] { try wait { [store] in store.accounts($0) }.keys }

    public func removeKey(id: String) throws(OrchestraError) -> Bool {
        try change("DELETE FROM agent_keys WHERE id = $1", [.text(id)], notify: "accounts") == 1
    }

    public func setKeyDisabled(id: String, _ disabled: Bool) throws(OrchestraError) -> Bool {
        try change("UPDATE agent_keys SET disabled = $2 WHERE id = $1", [.text(id), .bool(disabled)], notify: "accounts") == 1
    }

    public func setKeyAgents(id: String, _ agents: AgentIdScope?) throws(OrchestraError) -> Bool {
        try change("UPDATE agent_keys SET agents = $2 WHERE id = $1", [.text(id), agents.map { .text($0.text) } ?? .null], notify: "accounts") == 1
    }

    public func agentBindings() throws(OrchestraError) -> [(agentId: String, keyId: String, createdMs: Int64)] {
        let r = try run("SELECT agent_id, key_id, created_ms FROM agent_bindings ORDER BY agent_id")
        var out: [(agentId: String, keyId: String, createdMs: Int64)] = []
        for i in 0..<r.rowCount {
            out.append((try r.text(i, 0) ?? "", try r.text(i, 1) ?? "", try r.int64(i, 2) ?? 0))
        }
        return out
    }

    public func unbindAgent(agentId: String) throws(OrchestraError) -> Bool {
        try change("DELETE FROM agent_bindings WHERE agent_id = $1", [.text(agentId)], notify: "accounts") == 1
    }

    // MARK: users

    public func addUser(name: String, passwordHash: String, role: UserRole, nowMs: Int64) throws(OrchestraError) -> Bool {
        try change("""
            INSERT INTO users (name, password_hash, role, created_ms, token_generation) VALUES ($1, $2, $3, $4, $4)
            ON CONFLICT (name) DO NOTHING
            """, [.text(name), .text(passwordHash), .text(role.rawValue), .int64(nowMs)], notify: "accounts") == 1
    }

    public func userAccounts() throws(OrchestraError) -> [UserAccount] { try wait { [store] in store.accounts($0) }.users }

    public func user(name: String) throws(OrchestraError) -> (account: UserAccount, passwordHash: String)? {
        guard let account = try wait({ [store] in store.user(name: name, $0) }) else { return nil }
        let r = try run("SELECT password_hash FROM users WHERE name = $1", [.text(name)])
        guard r.rowCount == 1, let hash = try r.text(0, 0) else { return nil }
        return (account, hash)
    }

    public func removeUser(name: String) throws(OrchestraError) -> Bool {
        try change("DELETE FROM users WHERE name = $1", [.text(name)], notify: "accounts") == 1
    }

    public func setUserDisabled(name: String, _ disabled: Bool) throws(OrchestraError) -> Bool {
        try change("UPDATE users SET disabled = $2 WHERE name = $1", [.text(name), .bool(disabled)], notify: "accounts") == 1
    }

    public func setUserRole(name: String, _ role: UserRole) throws(OrchestraError) -> Bool {
        try change("UPDATE users SET role = $2 WHERE name = $1", [.text(name), .text(role.rawValue)], notify: "accounts") == 1
    }

    public func revokeTokens(name: String, nowMs: Int64) throws(OrchestraError) -> Int64? {
        let rs = try run([PostgresStatement("UPDATE users SET token_generation = greatest(token_generation + 1, $2) WHERE name = $1 RETURNING token_generation",
                                            [.text(name), .int64(nowMs)]),
                          PostgresStatement("SELECT pg_notify($1, 'accounts')", [.text(PostgresStore.channel)])])
        return rs[0].rowCount == 1 ? try rs[0].int64(0, 0) : nil
    }

    // MARK: the rest

    public func setting(_ key: String, insertingIfAbsent value: String) throws(OrchestraError) -> String {
        try wait { [store] in store.setting(key, insertingIfAbsent: value, $0) }
    }

    public func deadLetters(limit: Int) throws(OrchestraError) -> [TaskRecord] { try wait { [store] in store.deadLetters(limit: limit, $0) } }

    public func requeue(id: String, nowMs: Int64) throws(OrchestraError) -> Bool {
        let rs = try run([PostgresStatement("""
            UPDATE tasks SET state = 'queued', attempt = 0, agent_id = NULL, rejected_by = '[]', result = NULL,
            error = NULL, error_code = NULL, dead = false, updated_ms = $2, hub_id = NULL WHERE id = $1 AND dead
            """, [.text(id), .int64(nowMs)]), PostgresStatement("SELECT pg_notify($1, 'tasks')", [.text(PostgresStore.channel)])])
        return rs[0].affectedRows == 1
    }

    public func task(id: String) throws(OrchestraError) -> TaskRecord? { try wait { [store] in store.task(id: id, $0) } }
}
