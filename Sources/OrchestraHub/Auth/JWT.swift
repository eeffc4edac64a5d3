import OrchestraCore

/// Why a token was refused. `reason` is meant for logs and the `AUTH_001` error message.
public struct JWTError: Error, Sendable, Equatable, CustomStringConvertible {
    public let reason: String
    public init(reason: String) { self.reason = reason }
    public var description: String { reason }
}

/// JSON Web Tokens (RFC 7519) signed with HMAC-SHA256 (JWS "HS256", RFC 7515), the web
/// clients' credential. Only HS256 is accepted: `none` and every other algorithm are refused,
/// whatever the header says, so a token can never choose how it is checked.
public enum JWT {
    /// Longest token `verify` reads, in bytes.
    public static let maxTokenBytes = 8192

    /// The header every token this hub makes carries.
    static let headerSegment = Base64URL.encode(Array(#"{"alg":"HS256","typ":"JWT"}"#.utf8))

    /// Limits for the decoded header and claims (their size is bounded by the token's already).
    private static let jsonLimits = DecodeLimits(maxSize: maxTokenBytes, maxDepth: 32)

    /// A token for `claims` (written as compact JSON in their order). `claims` should be an
    /// object with a numeric `exp`, or `verify` will refuse the token.
    public static func sign(claims: JSONValue, secret: [UInt8]) -> String {
        let signingInput = headerSegment + "." + Base64URL.encode(claims.jsonBytes)
        let mac = HMACSHA256.mac(key: secret, data: Array(signingInput.utf8))
        return signingInput + "." + Base64URL.encode(mac)
    }

    /// Checks `token` and gives its claims. In order: size (at most `maxTokenBytes`), shape
    /// (three unpadded base64url segments), header (a JSON object without duplicate keys,
    /// `alg` exactly "HS256", `typ` absent or "JWT", no `crit`), signature (compared in constant
    /// time), claims (a JSON object without duplicate keys; its base64url is checked before the
    /// signature, its JSON only after), `exp` (required, a number; refused
    /// when `nowSeconds >= exp + leeway`), `nbf` (if present, a number; refused when
    /// `nowSeconds + leeway < nbf`). The claims are only parsed once the signature holds.
    /// An empty secret refuses every token (anyone could sign with it).
    public static func verify(_ token: String, secret: [UInt8], nowSeconds: Int64, leewaySeconds: Int64 = 0) -> Result<JSONValue, JWTError> {
        func fail(_ reason: String) -> Result<JSONValue, JWTError> { .failure(JWTError(reason: reason)) }
        let malformed = "malformed token"

        let bytes = Array(token.utf8)
        guard bytes.count <= maxTokenBytes else {
            return fail("token too large (\(bytes.count) bytes, limit \(maxTokenBytes))")
        }
        var dots: [Int] = []
        for (i, c) in bytes.enumerated() where c == 0x2E {
            dots.append(i)
            if dots.count > 2 { return fail(malformed) }
        }
        guard dots.count == 2 else { return fail(malformed) }
        let headerPart = Array(bytes[0..<dots[0]])
        let claimsPart = Array(bytes[(dots[0] + 1)..<dots[1]])
        let signaturePart = Array(bytes[(dots[1] + 1)...])

        guard let headerBytes = segment(headerPart), let header = object(headerBytes) else { return fail(malformed) }
        guard let algValue = header["alg"] else { return fail("malformed token: no 'alg' in the header") }
        guard let alg = algValue.string else { return fail("malformed token: 'alg' must be a string") }
        guard alg == "HS256" else { return fail("unsupported alg '\(printable(alg))'") }
        if let typ = header["typ"] {
            guard let t = typ.string, t.uppercased() == "JWT" else { return fail("unsupported typ (expected 'JWT')") }
        }
        if header["crit"] != nil { return fail("unsupported header 'crit'") }

        guard let claimsBytes = segment(claimsPart), let signature = segment(signaturePart) else { return fail(malformed) }
        guard !secret.isEmpty else { return fail("bad signature (no secret configured)") }
        let expected = HMACSHA256.mac(key: secret, data: Array(bytes[0..<dots[1]]))
        guard HMACSHA256.constantTimeEqual(expected, signature) else { return fail("bad signature") }

        guard let claims = object(claimsBytes) else { return fail(malformed) }
        let now = Double(nowSeconds)
        let leeway = Double(max(0, leewaySeconds))
        guard let expValue = claims["exp"] else { return fail("missing claim 'exp'") }
        guard let exp = expValue.double else { return fail("claim 'exp' must be a number") }
        if now >= exp + leeway { return fail("token expired at \(number(expValue))") }
        if let nbfValue = claims["nbf"] {
            guard let nbf = nbfValue.double else { return fail("claim 'nbf' must be a number") }
            if now + leeway < nbf { return fail("token not valid before \(number(nbfValue))") }
        }
        return .success(claims)
    }

    /// A token for a user or service: claims `sub`, `role`, `extra` (in order), `iat` (now),
    /// `exp` (now + ttl), `jti` (32 random hex characters) and `typ` ("access", or e.g.
    /// "refresh").
    public static func issue(subject: String, role: String, ttlSeconds: Int64, secret: [UInt8], nowSeconds: Int64,
                             type: String = "access", extra: [(String, JSONValue)] = []) -> String {
        let (sum, overflow) = nowSeconds.addingReportingOverflow(ttlSeconds)
        let exp = overflow ? (ttlSeconds > 0 ? Int64.max : Int64.min) : sum
        let claims: JSONValue = .object([("sub", .string(subject)), ("role", .string(role))] + extra + [
            ("iat", .int(nowSeconds)), ("exp", .int(exp)), ("jti", .string(Secrets.randomHex(16))), ("typ", .string(type)),
        ])
        return sign(claims: claims, secret: secret)
    }

    // MARK: helpers

    /// A segment's bytes: unpadded base64url, non-empty.
    private static func segment(_ part: [UInt8]) -> [UInt8]? {
        guard !part.isEmpty, !part.contains(0x3D) else { return nil }
        return Base64URL.decode(utf8: part)
    }

    /// A JSON object with no key twice (a parser that keeps the last of two `alg`s must not
    /// read a different header from ours).
    private static func object(_ bytes: [UInt8]) -> JSONValue? {
        guard let v = try? JSONValue.parse(bytes, limits: jsonLimits), let members = v.object else { return nil }
        var keys = Set<String>()
        for (k, _) in members where !keys.insert(k).inserted { return nil }
        return v
    }

    private static func number(_ v: JSONValue) -> String {
        switch v {
        case .int(let i): return String(i)
        case .double(let d): return d.rounded() == d && abs(d) < 9.2e18 ? String(Int64(d)) : String(d)
        default: return v.jsonText
        }
    }

    /// At most 32 characters of an untrusted string, for an error message.
    private static func printable(_ s: String) -> String {
        let cut = s.unicodeScalars.prefix(32).map { $0.properties.generalCategory == .control ? "?" : Character($0) }
        return String(cut) + (s.unicodeScalars.count > 32 ? "…" : "")
    }
}
