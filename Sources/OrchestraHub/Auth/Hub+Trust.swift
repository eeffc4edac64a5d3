import OrchestraCore
import OrchestraNet

/// A web client's verified identity: the user, their role now (the journal's, not the token's
/// claim), the generation and expiry of their token.
struct WebIdentity {
    let user: String
    let role: UserRole
    let generation: Int64
    let expiry: Int64
}

/// Identities and revocation (docs/security.md): tokens are checked against the user as the
/// journal has them now, and when another process changes users or keys the hub closes the
/// connections that lost their right to be open.
extension Hub {
    /// Issues an access token for `user` (claims sub, role, gen, iat, exp, jti, typ).
    public static func issueToken(_ user: UserAccount, ttlSeconds: Int64, secret: [UInt8], nowSeconds: Int64) -> String {
        JWT.issue(subject: user.name, role: user.role.rawValue, ttlSeconds: ttlSeconds, secret: secret, nowSeconds: nowSeconds,
                  extra: [("gen", .int(user.tokenGeneration))])
    }

    /// The claims of the token of a web handshake or HTTP request (`Authorization: Bearer`,
    /// or `?token=`): signature and expiry checked, an access token with a subject. Whether
    /// its user is still valid is `checkUser`'s question.
    func verifyTokenClaims(_ request: HTTPRequestInfo) -> Result<WebIdentity, AuthFailure> {
        var token: String? = nil
        if let h = request.header("Authorization"), h.hasPrefix("Bearer ") {
            token = String(h.dropFirst(7))
        } else if let q = request.query {
            for part in q.split(separator: "&") where part.hasPrefix("token=") {
                token = String(part.dropFirst(6))
            }
        }
        guard let token, !token.isEmpty else { return .failure(AuthFailure(reason: "no token: send Authorization: Bearer <jwt> or ?token=<jwt>")) }
        let claims: JSONValue
        switch JWT.verify(token, secret: jwtSecret, nowSeconds: wallClockMillis() / 1000) {
        case .failure(let e): return .failure(AuthFailure(reason: e.reason))
        case .success(let c): claims = c
        }
        guard claims["typ"]?.string ?? "access" == "access" else { return .failure(AuthFailure(reason: "a refresh token cannot open a connection")) }
        guard let sub = claims["sub"]?.string, !sub.isEmpty else { return .failure(AuthFailure(reason: "token has no subject")) }
        // The role is the journal's (`checkUser`), not the claim's.
        return .success(WebIdentity(user: sub, role: .viewer, generation: claims["gen"]?.int ?? 0, expiry: claims["exp"]?.int ?? 0))
    }

    /// The user of verified claims as the journal has them now: the identity with the user's
    /// current role, or why it is refused (removed, disabled, revoked). Reads the user, so a
    /// revocation made by another process a moment ago already counts.
    func checkUser(_ claims: WebIdentity, _ done: @escaping (Result<WebIdentity, AuthFailure>) -> Void) {
        store.user(name: claims.user) { [self] r in
            switch r {
            case .failure(let e):
                log.error("journal.read_failed", ["what": "user", "reason": .string(e.message)])
                done(.failure(AuthFailure(reason: "the journal could not be read: try again")))
            case .success(nil):
                done(.failure(AuthFailure(reason: "user '\(claims.user)' does not exist")))
            case .success(let account?):
                if let why = revocation(of: account, generation: claims.generation) { done(.failure(AuthFailure(reason: why))); return }
                userAccounts[account.name] = account
                done(.success(WebIdentity(user: account.name, role: account.role, generation: claims.generation, expiry: claims.expiry)))
            }
        }
    }

    /// Why a token of `generation` for `account` is no longer valid, or nil.
    func revocation(of account: UserAccount?, generation: Int64) -> String? {
        guard let account else { return "the user was removed" }
        if account.disabled { return "user '\(account.name)' is disabled" }
        if generation != account.tokenGeneration { return "the token was revoked (orchestra-hub token revoke)" }
        return nil
    }

    /// Why a registered agent's key no longer admits it, or nil.
    func revocation(ofKey keyId: String, agentId: String) -> String? {
        guard let k = keyAccounts[keyId] else { return "key '\(keyId)' was removed" }
        if k.disabled { return "key '\(keyId)' is disabled" }
        if let scope = k.agents, !scope.admits(agentId) { return "key '\(keyId)' may no longer register agent id '\(agentId)'" }
        return nil
    }

    /// Reads users and keys from the journal.
    func reloadAccounts(_ done: @escaping (OrchestraError?) -> Void) {
        store.accounts { [self] r in
            switch r {
            case .failure(let e): done(e)
            case .success(let (users, keys)):
                var u: [String: UserAccount] = [:]
                for a in users { u[a.name] = a }
                var k: [String: KeyAccount] = [:]
                for a in keys { k[a.id] = a }
                userAccounts = u
                keyAccounts = k
                done(nil)
            }
        }
    }

    /// Closes (AUTH_001, then 1008) the web clients whose user was removed, disabled or had
    /// their tokens revoked, and the agents whose key was removed, disabled or no longer admits
    /// their id (their tasks go back to the queue at once); applies role changes to open
    /// connections. Runs after `reloadAccounts`.
    func enforceRevocations() {
        for p in webPeers.values where !p.closing {
            let account = userAccounts[p.user]
            if let why = revocation(of: account, generation: p.tokenGeneration) {
                log.warn("auth.revoked", ["conn": .int(Int64(p.conn.id)), "user": .string(p.user), "reason": .string(why)])
                revoke(p, why)
            } else if let account, account.role != p.userRole {
                log.info("auth.role_changed", ["conn": .int(Int64(p.conn.id)), "user": .string(p.user),
                                               "from": .string(p.userRole.rawValue), "to": .string(account.role.rawValue)])
                p.userRole = account.role
                recheckWatches(p)
            }
        }
        for a in agents.values {
            guard let c = a.connection, let p = c.attachment as? Peer, !p.closing, p.agentId == a.id else { continue }
            if let why = revocation(ofKey: p.keyId, agentId: a.id) {
                log.warn("auth.revoked", ["conn": .int(Int64(c.id)), "agentId": .string(a.id), "keyId": .string(p.keyId), "reason": .string(why)])
                revoke(p, why)
                agentGone(a, why: "revoked: \(why)")
            }
        }
    }

    /// Ends a connection whose identity was revoked.
    func revoke(_ p: Peer, _ why: String) {
        refuse(p, HubError(.authenticationFailed, "revoked: \(why)", details: ["rule": "revocation"]), correlationId: nil, rule: "revocation")
    }
}
