import OrchestraCore

/// A web user as the journal keeps it (the password hash is read only by `user(name:)`).
public struct UserAccount: Sendable, Equatable {
    public var name: String
    public var role: UserRole
    public var disabled: Bool
    /// Tokens carry the generation they were issued under (claim `gen`); a token of an older
    /// generation is refused. `token revoke` raises it.
    public var tokenGeneration: Int64
    public var createdMs: Int64
}

/// An agent key as the journal keeps it, without its secret.
public struct KeyAccount: Sendable, Equatable {
    public var id: String
    public var disabled: Bool
    /// The agent ids the key may register (nil: any).
    public var agents: AgentIdScope?
    public var createdMs: Int64
}

/// Users, agent keys and the binding of agent ids to keys.
extension Journal {
    // MARK: agent keys

    /// Adds an agent key (the HMAC secret of `keyId`), limited to `agents` when given. False
    /// when the id exists.
    public func addKey(id: String, secret: [UInt8], agents: AgentIdScope? = nil, nowMs: Int64) throws(OrchestraError) -> Bool {
        guard !secret.isEmpty else {
            throw OrchestraError(.invalidArgument, "journal \(path): add key \"\(id)\": the secret is empty")
        }
        let s = try db.prepare("INSERT INTO agent_keys (id, secret, created_ms, agents) VALUES (?1, ?2, ?3, ?4) ON CONFLICT (id) DO NOTHING")
        try s.bind(1, id)
        try s.bind(2, secret)
        try s.bind(3, nowMs)
        try s.bind(4, agents?.text)
        return try s.run(what: "add key \"\(id)\"") == 1
    }

    /// The secret of an enabled key; nil for an unknown or disabled one.
    public func keySecret(id: String) throws(OrchestraError) -> [UInt8]? {
        let s = try db.prepare("SELECT secret FROM agent_keys WHERE id = ?1 AND disabled = 0")
        defer { s.reset() }
        try s.bind(1, id)
        guard try s.step(what: "read key \"\(id)\"") else { return nil }
        guard s.columnType(0) == .blob, let secret = s.blob(0) else {
            throw badRow("key \"\(id)\"", "secret", "is not a blob")
        }
        return secret
    }

    /// Every key (no secrets), by id.
    public func keyAccounts() throws(OrchestraError) -> [KeyAccount] {
        let s = try db.prepare("SELECT \(Journal.keyColumns) FROM agent_keys ORDER BY id")
        defer { s.reset() }
        var out: [KeyAccount] = []
        while try s.step(what: "list keys") { out.append(try readKey(s)) }
        return out
    }

    /// One key (no secret), disabled or not; nil when there is none.
    public func keyAccount(id: String) throws(OrchestraError) -> KeyAccount? {
        let s = try db.prepare("SELECT \(Journal.keyColumns) FROM agent_keys WHERE id = ?1")
        defer { s.reset() }
        try s.bind(1, id)
        guard try s.step(what: "read key \"\(id)\"") else { return nil }
        return try readKey(s)
    }

    private static let keyColumns = "id, disabled, agents, created_ms"

    private func readKey(_ s: Statement) throws(OrchestraError) -> KeyAccount {
        var r = RowReader(s: s, journal: self, row: "a key")
        let id = try r.text(0, "id")
        r.row = "key \"\(id)\""
        var scope: AgentIdScope? = nil
        if let text = try r.optionalText(2, "agents") {
            guard let sc = AgentIdScope(text) else { throw badRow(r.row, "agents", "holds the bad pattern list \"\(text)\"") }
            scope = sc
        }
        return KeyAccount(id: id, disabled: try r.int(1, "disabled", in: 0...1) == 1, agents: scope, createdMs: try r.int64(3, "created_ms"))
    }

    /// Every key id with its creation time, by id.
    public func listKeys() throws(OrchestraError) -> [(id: String, createdMs: Int64)] {
        try keyAccounts().map { ($0.id, $0.createdMs) }
    }

    public func removeKey(id: String) throws(OrchestraError) -> Bool {
        let s = try db.prepare("DELETE FROM agent_keys WHERE id = ?1")
        try s.bind(1, id)
        return try s.run(what: "remove key \"\(id)\"") == 1
    }

    /// Disables (refused from now on, its agents closed by a running hub) or enables a key.
    /// False when there is no such key.
    public func setKeyDisabled(id: String, _ disabled: Bool) throws(OrchestraError) -> Bool {
        let s = try db.prepare("UPDATE agent_keys SET disabled = ?2 WHERE id = ?1")
        try s.bind(1, id)
        try s.bind(2, disabled ? 1 : 0)
        return try s.run(what: "update key \"\(id)\"") == 1
    }

    /// Limits a key to `agents` (nil: any agent id). False when there is no such key.
    public func setKeyAgents(id: String, _ agents: AgentIdScope?) throws(OrchestraError) -> Bool {
        let s = try db.prepare("UPDATE agent_keys SET agents = ?2 WHERE id = ?1")
        try s.bind(1, id)
        try s.bind(2, agents?.text)
        return try s.run(what: "update key \"\(id)\"") == 1
    }

    // MARK: agent ids bound to keys

    /// The key an agent id is bound to, or nil when it never registered.
    public func agentBinding(agentId: String) throws(OrchestraError) -> String? {
        let s = try db.prepare("SELECT key_id FROM agent_bindings WHERE agent_id = ?1")
        defer { s.reset() }
        try s.bind(1, agentId)
        guard try s.step(what: "read the binding of agent \"\(agentId)\"") else { return nil }
        return try RowReader(s: s, journal: self, row: "agent binding \"\(agentId)\"").text(0, "key_id")
    }

    /// Binds `agentId` to `keyId` unless it is bound already. Returns the key it is bound to
    /// afterwards (`keyId`, or the key that registered it first).
    public func bindAgent(agentId: String, keyId: String, nowMs: Int64) throws(OrchestraError) -> String {
        let s = try db.prepare("INSERT INTO agent_bindings (agent_id, key_id, created_ms) VALUES (?1, ?2, ?3) ON CONFLICT (agent_id) DO NOTHING")
        try s.bind(1, agentId)
        try s.bind(2, keyId)
        try s.bind(3, nowMs)
        if try s.run(what: "bind agent \"\(agentId)\"") == 1 { return keyId }
        return try agentBinding(agentId: agentId) ?? keyId
    }

    /// Every binding, by agent id.
    public func agentBindings() throws(OrchestraError) -> [(agentId: String, keyId: String, createdMs: Int64)] {
        let s = try db.prepare("SELECT agent_id, key_id, created_ms FROM agent_bindings ORDER BY agent_id")
        defer { s.reset() }
        var out: [(agentId: String, keyId: String, createdMs: Int64)] = []
        while try s.step(what: "list agent bindings") {
            var r = RowReader(s: s, journal: self, row: "an agent binding")
            let id = try r.text(0, "agent_id")
            r.row = "agent binding \"\(id)\""
            out.append((id, try r.text(1, "key_id"), try r.int64(2, "created_ms")))
        }
        return out
    }

    /// Forgets the binding of `agentId` (its next registration binds it anew). False when it
    /// had none.
    public func unbindAgent(agentId: String) throws(OrchestraError) -> Bool {
        let s = try db.prepare("DELETE FROM agent_bindings WHERE agent_id = ?1")
        try s.bind(1, agentId)
        return try s.run(what: "unbind agent \"\(agentId)\"") == 1
    }

    // MARK: users

    /// Adds a web user. False when the name exists. Its token generation starts at `nowMs`, so
    /// the tokens of an earlier user of the same name (removed since) never become valid again.
    public func addUser(name: String, passwordHash: String, role: UserRole, nowMs: Int64) throws(OrchestraError) -> Bool {
        let s = try db.prepare("""
            INSERT INTO users (name, password_hash, role, created_ms, token_generation) VALUES (?1, ?2, ?3, ?4, ?4)
            ON CONFLICT (name) DO NOTHING
            """)
        try s.bind(1, name)
        try s.bind(2, passwordHash)
        try s.bind(3, role.rawValue)
        try s.bind(4, nowMs)
        return try s.run(what: "add user \"\(name)\"") == 1
    }

    private static let userColumns = "name, role, disabled, token_generation, created_ms"

    private func readUser(_ s: Statement) throws(OrchestraError) -> UserAccount {
        var r = RowReader(s: s, journal: self, row: "a user")
        let name = try r.text(0, "name")
        r.row = "user \"\(name)\""
        let roleName = try r.text(1, "role")
        guard let role = UserRole(rawValue: roleName) else { throw badRow(r.row, "role", "has the unknown value \"\(roleName)\"") }
        return UserAccount(name: name, role: role, disabled: try r.int(2, "disabled", in: 0...1) == 1,
                           tokenGeneration: try r.int64(3, "token_generation"), createdMs: try r.int64(4, "created_ms"))
    }

    /// A user and their password hash, or nil.
    public func user(name: String) throws(OrchestraError) -> (account: UserAccount, passwordHash: String)? {
        let s = try db.prepare("SELECT \(Journal.userColumns), password_hash FROM users WHERE name = ?1")
        defer { s.reset() }
        try s.bind(1, name)
        guard try s.step(what: "read user \"\(name)\"") else { return nil }
        let account = try readUser(s)
        return (account, try RowReader(s: s, journal: self, row: "user \"\(name)\"").text(5, "password_hash"))
    }

    /// Every user, by name.
    public func userAccounts() throws(OrchestraError) -> [UserAccount] {
        let s = try db.prepare("SELECT \(Journal.userColumns) FROM users ORDER BY name")
        defer { s.reset() }
        var out: [UserAccount] = []
        while try s.step(what: "list users") { out.append(try readUser(s)) }
        return out
    }

    public func removeUser(name: String) throws(OrchestraError) -> Bool {
        let s = try db.prepare("DELETE FROM users WHERE name = ?1")
        try s.bind(1, name)
        return try s.run(what: "remove user \"\(name)\"") == 1
    }

    /// False when there is no such user.
    public func setUserRole(name: String, _ role: UserRole) throws(OrchestraError) -> Bool {
        let s = try db.prepare("UPDATE users SET role = ?2 WHERE name = ?1")
        try s.bind(1, name)
        try s.bind(2, role.rawValue)
        return try s.run(what: "set the role of user \"\(name)\"") == 1
    }

    /// A disabled user's tokens are refused and a running hub closes their connections.
    /// False when there is no such user.
    public func setUserDisabled(name: String, _ disabled: Bool) throws(OrchestraError) -> Bool {
        let s = try db.prepare("UPDATE users SET disabled = ?2 WHERE name = ?1")
        try s.bind(1, name)
        try s.bind(2, disabled ? 1 : 0)
        return try s.run(what: "update user \"\(name)\"") == 1
    }

    /// Revokes every token issued to the user so far (raises the token generation to at least
    /// `nowMs`); returns the new generation, or nil when there is no such user.
    public func revokeTokens(name: String, nowMs: Int64) throws(OrchestraError) -> Int64? {
        try db.transaction { () throws(OrchestraError) -> Int64? in
            let s = try db.prepare("UPDATE users SET token_generation = max(token_generation + 1, ?2) WHERE name = ?1")
            try s.bind(1, name)
            try s.bind(2, nowMs)
            guard try s.run(what: "revoke the tokens of user \"\(name)\"") == 1 else { return nil }
            return try user(name: name)?.account.tokenGeneration
        }
    }
}
