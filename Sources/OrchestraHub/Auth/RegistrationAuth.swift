import OrchestraCore

/// Why an `agent.register` was refused (sent as `AUTH_001`, or `PARAM_001` for a malformed
/// payload if the caller tells those apart by `isMalformed`).
public struct AuthFailure: Error, Sendable, Equatable, CustomStringConvertible {
    public let reason: String
    /// True when the payload itself was malformed (a field missing or of the wrong type), as
    /// opposed to a credential that was checked and refused.
    public let isMalformed: Bool
    public init(reason: String, isMalformed: Bool = false) {
        self.reason = reason
        self.isMalformed = isMalformed
    }
    public var description: String { reason }
    /// Two failures are equal when their reasons are (the reason already says which kind it is).
    public static func == (a: AuthFailure, b: AuthFailure) -> Bool { a.reason == b.reason }
}

/// What a verified `agent.register` proves.
public struct RegistrationClaims: Sendable, Equatable {
    public let agentId: String
    public let keyId: String
    public let timestampMs: Int64
    public let nonce: String
    public init(agentId: String, keyId: String, timestampMs: Int64, nonce: String) {
        self.agentId = agentId
        self.keyId = keyId
        self.timestampMs = timestampMs
        self.nonce = nonce
    }
}

/// The signature check of `agent.register` (docs/protocol.md, "Agents").
public enum RegistrationAuth {
    /// Longest `agentId` and `keyId`, in UTF-8 bytes (every id of the protocol has this limit).
    public static let maxIdBytes = Fields.maxIdBytes

    /// Checks an agent.register payload (docs/protocol.md): fields agentId, keyId, timestamp (ms),
    /// nonce (16..128 chars, [A-Za-z0-9_-]), signature (hex).
    /// Order: fields present and typed, key known (secretFor), timestamp within skew, signature
    /// valid, then nonce fresh (rememberNonce(keyId, nonce, nowMs); called only when the
    /// signature is valid, so a forged request never fills the nonce store).
    ///
    /// `agentId` and `keyId` must be non-empty strings of at most `maxIdBytes` bytes;
    /// `timestamp` an integer. Reasons name what was wrong ("unknown key 'k9'", "bad signature",
    /// "timestamp 1700000000000 is 412 s from the hub's clock (limit 300 s)", "nonce already
    /// used", "missing field 'signature'").
    public static func verify(_ payload: JSONValue, nowMs: Int64, maxSkewMs: Int64 = 300_000,
                              secretFor: (String) -> [UInt8]?, rememberNonce: (String, String, Int64) -> Bool) -> Result<RegistrationClaims, AuthFailure> {
        let claims: RegistrationClaims, signature: String
        switch parse(payload) {
        case .failure(let f): return .failure(f)
        case .success(let (c, sig)): (claims, signature) = (c, sig)
        }
        guard let secret = secretFor(claims.keyId) else { return .failure(unknownKey(claims.keyId)) }
        if let f = check(claims, signature: signature, secret: secret, nowMs: nowMs, maxSkewMs: maxSkewMs) { return .failure(f) }
        guard rememberNonce(claims.keyId, claims.nonce, nowMs) else { return .failure(replayedNonce) }
        return .success(claims)
    }

    /// The first step of `verify`: the fields, present and typed (every failure `isMalformed`).
    /// Gives the claims and the signature to check.
    public static func parse(_ payload: JSONValue) -> Result<(RegistrationClaims, signature: String), AuthFailure> {
        func malformed(_ reason: String) -> Result<(RegistrationClaims, signature: String), AuthFailure> {
            .failure(AuthFailure(reason: reason, isMalformed: true))
        }
        guard payload.object != nil else { return malformed("payload must be an object") }
        for name in ["agentId", "keyId", "timestamp", "nonce", "signature"] where payload[name] == nil {
            return malformed("missing field '\(name)'")
        }
        guard let agentId = payload["agentId"]?.string else { return malformed("field 'agentId' must be a string") }
        guard !agentId.isEmpty, agentId.utf8.count <= maxIdBytes else {
            return malformed("field 'agentId' must be 1..\(maxIdBytes) bytes")
        }
        guard let keyId = payload["keyId"]?.string else { return malformed("field 'keyId' must be a string") }
        guard !keyId.isEmpty, keyId.utf8.count <= maxIdBytes else {
            return malformed("field 'keyId' must be 1..\(maxIdBytes) bytes")
        }
        guard case .int(let timestamp)? = payload["timestamp"] else {
            return malformed("field 'timestamp' must be an integer (milliseconds since the epoch)")
        }
        guard let nonce = payload["nonce"]?.string else { return malformed("field 'nonce' must be a string") }
        guard isValidNonce(nonce) else {
            return malformed("field 'nonce' must be 16..128 characters of [A-Za-z0-9_-]")
        }
        guard let signature = payload["signature"]?.string else { return malformed("field 'signature' must be a string") }
        guard !signature.isEmpty, signature.utf8.count <= 128, Secrets.fromHex(signature) != nil else {
            return malformed("field 'signature' must be hex")
        }
        return .success((RegistrationClaims(agentId: agentId, keyId: keyId, timestampMs: timestamp, nonce: nonce), signature))
    }

    /// The second step of `verify`, once the key's secret is known: the timestamp within the
    /// skew, then the signature. Nil when both hold.
    public static func check(_ c: RegistrationClaims, signature: String, secret: [UInt8], nowMs: Int64, maxSkewMs: Int64) -> AuthFailure? {
        let skew = distance(nowMs, c.timestampMs)
        if skew > UInt64(max(0, maxSkewMs)) {
            let seconds = skew / 1000 + (skew % 1000 == 0 ? 0 : 1)
            return AuthFailure(reason: "timestamp \(c.timestampMs) is \(seconds) s from the hub's clock (limit \(max(0, maxSkewMs) / 1000) s)")
        }
        guard AgentSignature.verify(secret: secret, agentId: c.agentId, timestamp: c.timestampMs, nonce: c.nonce, signature: signature) else {
            return AuthFailure(reason: "bad signature")
        }
        return nil
    }

    /// The refusal of a key the hub does not have (or has disabled).
    public static func unknownKey(_ keyId: String) -> AuthFailure { AuthFailure(reason: "unknown key '\(printable(keyId))'") }

    /// The refusal of a nonce seen within the window.
    public static let replayedNonce = AuthFailure(reason: "nonce already used")

    /// 16..128 characters of [A-Za-z0-9_-].
    public static func isValidNonce(_ s: String) -> Bool {
        let u = s.utf8
        guard u.count >= 16, u.count <= 128 else { return false }
        return u.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x2D || c == 0x5F
        }
    }

    /// |a - b| without overflow.
    private static func distance(_ a: Int64, _ b: Int64) -> UInt64 {
        a >= b ? UInt64(bitPattern: a &- b) : UInt64(bitPattern: b &- a)
    }

    /// At most 64 characters of an untrusted id for a message, control characters as '?'.
    private static func printable(_ s: String) -> String {
        let scalars = s.unicodeScalars
        let cut = scalars.prefix(64).map { $0.properties.generalCategory == .control ? "?" : Character($0) }
        return String(cut) + (scalars.count > 64 ? "…" : "")
    }
}
