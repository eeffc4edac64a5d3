import Testing
import Glibc
import OrchestraCore
@testable import OrchestraHub
import OrchestraTestSupport

private func b64(_ s: String) -> String { Base64URL.encode(Array(s.utf8)) }

private func failure<T, E: Error>(_ r: Result<T, E>) -> E? {
    if case .failure(let e) = r { return e }
    return nil
}

private func jwtReason(_ r: Result<JSONValue, JWTError>) -> String? { failure(r)?.reason }

/// A token with any header and claims text, signed (HS256) with `secret`.
private func handmade(header: String, claims: String, secret: [UInt8]) -> String {
    let input = b64(header) + "." + b64(claims)
    return input + "." + Base64URL.encode(HMACSHA256.mac(key: secret, data: Array(input.utf8)))
}

@Suite struct Base64URLTests {
    /// RFC 4648 section 10, without padding.
    @Test func rfc4648Vectors() {
        let vectors = [("", ""), ("f", "Zg"), ("fo", "Zm8"), ("foo", "Zm9v"), ("foob", "Zm9vYg"),
                       ("fooba", "Zm9vYmE"), ("foobar", "Zm9vYmFy")]
        for (plain, coded) in vectors {
            #expect(Base64URL.encode(Array(plain.utf8)) == coded)
            #expect(Base64URL.decode(coded) == Array(plain.utf8))
        }
        // Padded input is accepted too.
        #expect(Base64URL.decode("Zg==") == Array("f".utf8))
        #expect(Base64URL.decode("Zm8=") == Array("fo".utf8))
        #expect(Base64URL.decode("Zm9vYg==") == Array("foob".utf8))
    }

    @Test func urlSafeAlphabet() {
        #expect(Base64URL.encode([0xFB, 0xFF, 0xBF]) == "-_-_")
        #expect(Base64URL.decode("-_-_") == [0xFB, 0xFF, 0xBF])
        #expect(Base64URL.encode([0xFF]) == "_w")
        #expect(Base64URL.decode("+/+/") == nil)  // the standard alphabet's 62 and 63
    }

    @Test func rejectsBadInput() {
        for bad in ["Z", "Zh", "Zm9", "Zg=", "Zg===", "Zm9v====", "=Zg", "Z=g=", "Zm 9v", "Zm9v\n", "Zm9v=",
                    "é", "Zm9v\u{0}", "===="] {
            #expect(Base64URL.decode(bad) == nil, "\(bad)")
        }
    }

    @Test func roundTripsEveryLength() {
        for n in 0..<70 {
            let bytes = Secrets.random(n)
            let text = Base64URL.encode(bytes)
            #expect(!text.contains("=") && !text.contains("+") && !text.contains("/"))
            #expect(Base64URL.decode(text) == bytes)
        }
    }
}

@Suite struct SecretsTests {
    @Test func randomBytes() {
        #expect(Secrets.random(0).isEmpty)
        #expect(Secrets.random(-3).isEmpty)
        #expect(Secrets.random(32).count == 32)
        #expect(Secrets.random(32) != Secrets.random(32))
        let hex = Secrets.randomHex(16)
        #expect(hex.utf8.count == 32)
        #expect(Secrets.fromHex(hex)?.count == 16)
    }

    @Test func hexDecoding() {
        #expect(Secrets.fromHex("00ff10") == [0x00, 0xFF, 0x10])
        #expect(Secrets.fromHex("ABcd") == [0xAB, 0xCD])
        #expect(Secrets.fromHex("") == [])
        for bad in ["abc", "zz", " 00", "0x00", "00 ", "0g"] {
            #expect(Secrets.fromHex(bad) == nil, "\(bad)")
        }
    }
}

@Suite struct JWTTests {
    let secret = Array("orchestra-test-secret".utf8)
    let claims: JSONValue = ["sub": "u1", "role": "admin", "iat": 1_700_000_000, "exp": 1_700_003_600]

    /// The expected token was made with python3's hmac and base64 modules:
    /// b64(header) + "." + b64(compact claims) + "." + b64(HMAC-SHA256(secret, first two parts)).
    @Test func signMatchesAnIndependentImplementation() {
        let token = JWT.sign(claims: claims, secret: secret)
        #expect(token == "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1MSIsInJvbGUiOiJhZG1pbiIsImlhdCI6MTcwMDAwMDAwMCwiZXhwIjoxNzAwMDAzNjAwfQ.WltW1aFWyI_bCSshyoPKZwZLIM0gjq1YG2u8tk5ml5c")
        #expect((try? JWT.verify(token, secret: secret, nowSeconds: 1_700_000_000).get()) == claims)
    }

    /// A token python made with its own JSON layout (spaces, typ before alg, nbf, an array claim).
    @Test func verifiesAForeignToken() throws {
        let token = "eyJ0eXAiOiAiSldUIiwgImFsZyI6ICJIUzI1NiJ9.eyJzdWIiOiAicHkiLCAiZXhwIjogMjAwMDAwMDAwMCwgIm5iZiI6IDE2MDAwMDAwMDAsICJzY29wZXMiOiBbImEiLCAiYiJdfQ.rXMFZ--9Z43oOX5k9BaEbCMCOCJJAEhvHRO7GdEMIQ0"
        let got = try JWT.verify(token, secret: secret, nowSeconds: 1_700_000_000).get()
        #expect(got["sub"] == "py")
        #expect(got["scopes"] == ["a", "b"])
        #expect(jwtReason(JWT.verify(token, secret: Array("other".utf8), nowSeconds: 1_700_000_000)) == "bad signature")
    }

    @Test func expiry() {
        let token = JWT.sign(claims: claims, secret: secret)
        #expect(jwtReason(JWT.verify(token, secret: secret, nowSeconds: 1_700_003_599)) == nil)
        #expect(jwtReason(JWT.verify(token, secret: secret, nowSeconds: 1_700_003_600)) == "token expired at 1700003600")
        #expect(jwtReason(JWT.verify(token, secret: secret, nowSeconds: 1_800_000_000)) == "token expired at 1700003600")
        #expect(jwtReason(JWT.verify(token, secret: secret, nowSeconds: 1_700_003_605, leewaySeconds: 10)) == nil)
        #expect(jwtReason(JWT.verify(token, secret: secret, nowSeconds: 1_700_003_610, leewaySeconds: 10)) == "token expired at 1700003600")
    }

    @Test func notBefore() {
        var c = claims
        c.set("nbf", 1_700_000_100)
        let token = JWT.sign(claims: c, secret: secret)
        #expect(jwtReason(JWT.verify(token, secret: secret, nowSeconds: 1_700_000_000)) == "token not valid before 1700000100")
        #expect(jwtReason(JWT.verify(token, secret: secret, nowSeconds: 1_700_000_099)) == "token not valid before 1700000100")
        #expect(jwtReason(JWT.verify(token, secret: secret, nowSeconds: 1_700_000_100)) == nil)
        #expect(jwtReason(JWT.verify(token, secret: secret, nowSeconds: 1_700_000_000, leewaySeconds: 100)) == nil)
        c.set("nbf", "soon")
        #expect(jwtReason(JWT.verify(JWT.sign(claims: c, secret: secret), secret: secret, nowSeconds: 1_700_000_000)) == "claim 'nbf' must be a number")
    }

    @Test func expIsRequiredAndNumeric() {
        let noExp: JSONValue = ["sub": "u1"]
        #expect(jwtReason(JWT.verify(JWT.sign(claims: noExp, secret: secret), secret: secret, nowSeconds: 0)) == "missing claim 'exp'")
        let textExp: JSONValue = ["sub": "u1", "exp": "1700003600"]
        #expect(jwtReason(JWT.verify(JWT.sign(claims: textExp, secret: secret), secret: secret, nowSeconds: 0)) == "claim 'exp' must be a number")
        let fractional: JSONValue = ["exp": 100.5]
        let t = JWT.sign(claims: fractional, secret: secret)
        #expect(jwtReason(JWT.verify(t, secret: secret, nowSeconds: 100)) == nil)
        #expect(jwtReason(JWT.verify(t, secret: secret, nowSeconds: 101)) == "token expired at 100.5")
        let notObject: JSONValue = ["exp", 2_000_000_000]
        #expect(jwtReason(JWT.verify(JWT.sign(claims: notObject, secret: secret), secret: secret, nowSeconds: 0)) == "malformed token")
    }

    @Test func refusesOtherAlgorithms() {
        let body = #"{"sub":"u1","role":"admin","exp":2000000000}"#
        // alg none, unsigned (empty third segment) and signed anyway.
        let unsigned = b64(#"{"alg":"none","typ":"JWT"}"#) + "." + b64(body) + "."
        #expect(jwtReason(JWT.verify(unsigned, secret: secret, nowSeconds: 0)) == "unsupported alg 'none'")
        let noneSigned = handmade(header: #"{"alg":"none","typ":"JWT"}"#, claims: body, secret: secret)
        #expect(jwtReason(JWT.verify(noneSigned, secret: secret, nowSeconds: 0)) == "unsupported alg 'none'")
        for alg in ["RS256", "HS512", "hs256", "HS256 ", "ES256"] {
            let t = handmade(header: #"{"alg":"\#(alg)","typ":"JWT"}"#, claims: body, secret: secret)
            #expect(jwtReason(JWT.verify(t, secret: secret, nowSeconds: 0)) == "unsupported alg '\(alg)'")
        }
        let noAlg = handmade(header: #"{"typ":"JWT"}"#, claims: body, secret: secret)
        #expect(jwtReason(JWT.verify(noAlg, secret: secret, nowSeconds: 0))?.hasPrefix("malformed token") == true)
        let numericAlg = handmade(header: #"{"alg":256}"#, claims: body, secret: secret)
        #expect(jwtReason(JWT.verify(numericAlg, secret: secret, nowSeconds: 0))?.hasPrefix("malformed token") == true)
        // Two algs: a parser that keeps the last one would read "none".
        let twoAlgs = handmade(header: #"{"alg":"HS256","alg":"none"}"#, claims: body, secret: secret)
        #expect(jwtReason(JWT.verify(twoAlgs, secret: secret, nowSeconds: 0)) == "malformed token")
        let crit = handmade(header: #"{"alg":"HS256","crit":["exp"]}"#, claims: body, secret: secret)
        #expect(jwtReason(JWT.verify(crit, secret: secret, nowSeconds: 0)) == "unsupported header 'crit'")
        let otherTyp = handmade(header: #"{"alg":"HS256","typ":"at+jwt"}"#, claims: body, secret: secret)
        #expect(jwtReason(JWT.verify(otherTyp, secret: secret, nowSeconds: 0)) == "unsupported typ (expected 'JWT')")
        // The same handmade construction with a good header verifies, so the refusals above are the header's.
        let good = handmade(header: #"{"alg":"HS256"}"#, claims: body, secret: secret)
        #expect(jwtReason(JWT.verify(good, secret: secret, nowSeconds: 0)) == nil)
    }

    @Test func tamperingIsDetected() {
        let token = JWT.sign(claims: claims, secret: secret)
        let parts = token.split(separator: ".").map(String.init)
        // Another payload under the original signature.
        let forged = parts[0] + "." + b64(#"{"sub":"u1","role":"root","iat":1700000000,"exp":1700003600}"#) + "." + parts[2]
        #expect(jwtReason(JWT.verify(forged, secret: secret, nowSeconds: 1_700_000_000)) == "bad signature")
        // One flipped character in the signature.
        var sig = Array(parts[2].utf8)
        sig[5] = sig[5] == UInt8(ascii: "A") ? UInt8(ascii: "B") : UInt8(ascii: "A")
        let flipped = parts[0] + "." + parts[1] + "." + String(decoding: sig, as: UTF8.self)
        #expect(jwtReason(JWT.verify(flipped, secret: secret, nowSeconds: 1_700_000_000)) == "bad signature")
        // Another key.
        #expect(jwtReason(JWT.verify(token, secret: Array("orchestra-test-secreT".utf8), nowSeconds: 1_700_000_000)) == "bad signature")
        // An empty secret refuses even a token signed with it.
        #expect(jwtReason(JWT.verify(JWT.sign(claims: claims, secret: []), secret: [], nowSeconds: 1_700_000_000))?.hasPrefix("bad signature") == true)
    }

    @Test func everyTruncationIsRefused() {
        let token = Array(JWT.sign(claims: claims, secret: secret).utf8)
        for n in 0..<token.count {
            let cut = String(decoding: token[0..<n], as: UTF8.self)
            #expect(jwtReason(JWT.verify(cut, secret: secret, nowSeconds: 1_700_000_000)) != nil, "\(n)")
        }
    }

    @Test func garbageIsMalformed() {
        let valid = JWT.sign(claims: claims, secret: secret)
        let garbage = ["", ".", "..", "...", "a.b.c", "not a token", "😀.😀.😀", valid + ".x", valid + ".",
                       b64("[1]") + "." + b64("{}") + ".AAAA", b64("{") + "." + b64("{}") + ".AAAA",
                       b64("{\"alg\":\"HS256\"}") + "==." + b64("{}") + ".AAAA",
                       "eyJhbGciOiJIUzI1NiJ9..AAAA", String(repeating: ".", count: 5000)]
        for g in garbage {
            #expect(jwtReason(JWT.verify(g, secret: secret, nowSeconds: 1_700_000_000)) == "malformed token", "\(g.prefix(40))")
        }
        // A body that is not JSON, correctly signed: refused after the signature, still malformed.
        let notJSON = handmade(header: #"{"alg":"HS256"}"#, claims: "exp=1", secret: secret)
        #expect(jwtReason(JWT.verify(notJSON, secret: secret, nowSeconds: 0)) == "malformed token")
    }

    @Test func sizeLimit() {
        func token(padding: Int) -> String {
            var c = claims
            c.set("pad", .string(String(repeating: "x", count: padding)))
            return JWT.sign(claims: c, secret: secret)
        }
        // Find the largest padding that fits in 8 KiB.
        var pad = max(0, (JWT.maxTokenBytes - token(padding: 0).utf8.count) * 3 / 4 - 16)
        #expect(token(padding: pad).utf8.count <= JWT.maxTokenBytes)
        while token(padding: pad + 1).utf8.count <= JWT.maxTokenBytes { pad += 1 }
        let fits = token(padding: pad), over = token(padding: pad + 1)
        #expect(fits.utf8.count <= 8192 && over.utf8.count > 8192)
        #expect(jwtReason(JWT.verify(fits, secret: secret, nowSeconds: 1_700_000_000)) == nil)
        #expect(jwtReason(JWT.verify(over, secret: secret, nowSeconds: 1_700_000_000))?.hasPrefix("token too large") == true)
        #expect(jwtReason(JWT.verify(String(repeating: "A", count: 1 << 20), secret: secret, nowSeconds: 0))?.hasPrefix("token too large") == true)
    }

    @Test func issueMakesVerifiableTokens() throws {
        let t1 = JWT.issue(subject: "alice", role: "operator", ttlSeconds: 900, secret: secret, nowSeconds: 1_700_000_000)
        let c = try JWT.verify(t1, secret: secret, nowSeconds: 1_700_000_000).get()
        #expect(c["sub"] == "alice")
        #expect(c["role"] == "operator")
        #expect(c["iat"] == 1_700_000_000)
        #expect(c["exp"] == 1_700_000_900)
        #expect(c["typ"] == "access")
        let jti = try #require(c["jti"]?.string)
        #expect(jti.utf8.count == 32 && Secrets.fromHex(jti) != nil)
        #expect(jwtReason(JWT.verify(t1, secret: secret, nowSeconds: 1_700_000_900)) == "token expired at 1700000900")

        let t2 = JWT.issue(subject: "alice", role: "operator", ttlSeconds: 900, secret: secret, nowSeconds: 1_700_000_000, type: "refresh")
        let c2 = try JWT.verify(t2, secret: secret, nowSeconds: 1_700_000_000).get()
        #expect(c2["typ"] == "refresh")
        #expect(c2["jti"] != c["jti"])
    }
}

@Suite struct PasswordHashTests {
    /// Expected hashes from python3: hashlib.pbkdf2_hmac('sha256', password, salt, iterations, 32).
    @Test func matchesPythonHashlib() {
        let encoded = "pbkdf2-sha256$1000$000102030405060708090a0b0c0d0e0f$a69b179e3add3c1e0aaf227a0eb3aa2aa8645ab86fecf6ca00c17512697c719e"
        #expect(PasswordHash.verify("correct horse battery staple", encoded: encoded))
        #expect(!PasswordHash.verify("correct horse battery stapl", encoded: encoded))
        #expect(!PasswordHash.verify("", encoded: encoded))
        // Non-ASCII passwords are hashed as UTF-8.
        #expect(PasswordHash.verify("pässwörd", encoded: "pbkdf2-sha256$2$73616c74$516c4cfbf60066dc5769ae6ce3c06aae67841d34869ff951588a1f3f8847d652"))
        // RFC 7914 section 11: PBKDF2-HMAC-SHA256("passwd", "salt", 1, 64).
        #expect(PasswordHash.derive(password: Array("passwd".utf8), salt: Array("salt".utf8), iterations: 1, length: 64).map(HMACSHA256.hex)
                == "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783")
    }

    @Test func hashRoundTrip() throws {
        let a = PasswordHash.hash("s3cret pass", iterations: 1000)
        let b = PasswordHash.hash("s3cret pass", iterations: 1000)
        #expect(a != b)  // fresh salt
        let parts = a.split(separator: "$").map(String.init)
        #expect(parts.count == 4)
        #expect(parts[0] == "pbkdf2-sha256" && parts[1] == "1000")
        #expect(parts[2].utf8.count == 32 && parts[3].utf8.count == 64)
        #expect(PasswordHash.verify("s3cret pass", encoded: a))
        #expect(PasswordHash.verify("s3cret pass", encoded: b))
        #expect(!PasswordHash.verify("s3cret pasS", encoded: a))
        // The default work factor.
        let d = PasswordHash.hash("x")
        #expect(d.hasPrefix("pbkdf2-sha256$100000$"))
        #expect(PasswordHash.verify("x", encoded: d))
        #expect(PasswordHash.hash("x", iterations: 0).hasPrefix("pbkdf2-sha256$1$"))
    }

    @Test func malformedEncodingsAreFalse() {
        let good = "pbkdf2-sha256$1000$000102030405060708090a0b0c0d0e0f$a69b179e3add3c1e0aaf227a0eb3aa2aa8645ab86fecf6ca00c17512697c719e"
        let pw = "correct horse battery staple"
        #expect(PasswordHash.verify(pw, encoded: good))
        let bad = [
            "", "$$$", good + "$", "pbkdf2-sha1$1000$00010203$" + String(repeating: "00", count: 32),
            good.replacingFirst("$1000$", with: "$0$"), good.replacingFirst("$1000$", with: "$-1000$"),
            good.replacingFirst("$1000$", with: "$+1000$"), good.replacingFirst("$1000$", with: "$99999999999$"),
            good.replacingFirst("$1000$", with: "$$"), good.replacingFirst("$1000$", with: "$1e3$"),
            good.replacingFirst("000102030405060708090a0b0c0d0e0f", with: ""),
            good.replacingFirst("000102030405060708090a0b0c0d0e0f", with: "zz"),
            good.replacingFirst("000102030405060708090a0b0c0d0e0f", with: "0001020"),
            "pbkdf2-sha256$1000$000102030405060708090a0b0c0d0e0f$a69b",  // hash too short
            "pbkdf2-sha256$1000$000102030405060708090a0b0c0d0e0f$a69b179e3add3c1e0aaf227a0eb3aa2aa8645ab86fecf6ca00c17512697c719f",
            String(good.dropLast(2)),
        ]
        for e in bad { #expect(!PasswordHash.verify(pw, encoded: e), "\(e)") }
    }
}

private extension String {
    func replacingFirst(_ a: String, with b: String) -> String {
        replacing(a, with: b, maxReplacements: 1)
    }
}

@Suite struct NonceCacheTests {
    @Test func replayInsideTheWindow() {
        let c = NonceCache(windowMs: 1000, capacity: 10)
        #expect(c.insert(keyId: "k1", nonce: "n", nowMs: 10_000))
        #expect(!c.insert(keyId: "k1", nonce: "n", nowMs: 10_000))
        #expect(!c.insert(keyId: "k1", nonce: "n", nowMs: 10_999))
        #expect(c.insert(keyId: "k2", nonce: "n", nowMs: 10_500))  // another key's nonces are separate
        #expect(c.insert(keyId: "k1", nonce: "n", nowMs: 11_000))  // the window has passed
        #expect(!c.insert(keyId: "k1", nonce: "n", nowMs: 11_001))
        #expect(!c.insert(keyId: "k1", nonce: "n", nowMs: 5_000))  // the clock went back: still a replay
        // The key and the nonce cannot be shifted into each other.
        #expect(c.insert(keyId: "a", nonce: "bc", nowMs: 10_000))
        #expect(c.insert(keyId: "ab", nonce: "c", nowMs: 10_000))
    }

    @Test func expiredNoncesArePruned() {
        let c = NonceCache(windowMs: 1000, capacity: 100)
        for i in 0..<5 { #expect(c.insert(keyId: "k", nonce: "n\(i)", nowMs: 1000 + Int64(i))) }
        #expect(c.count == 5)
        #expect(c.insert(keyId: "k", nonce: "x", nowMs: 2002))  // n0..n2 expired
        #expect(c.count == 3)
        c.prune(nowMs: 10_000)
        #expect(c.count == 0)
    }

    @Test func fullCacheRefusesRatherThanForgets() {
        let c = NonceCache(windowMs: 1000, capacity: 3)
        for n in ["a", "b", "c"] { #expect(c.record(keyId: "k", nonce: n, nowMs: 100) == .fresh) }
        #expect(c.record(keyId: "k", nonce: "d", nowMs: 200) == .full)
        #expect(!c.insert(keyId: "k", nonce: "d", nowMs: 200))
        #expect(c.record(keyId: "k", nonce: "a", nowMs: 200) == .replayed)  // nothing was forgotten
        #expect(c.count == 3)
        #expect(c.record(keyId: "k", nonce: "d", nowMs: 1100) == .fresh)  // a..c expired
        #expect(c.count == 1)
    }

    @Test func fullCacheAfterTheClockWentBackSweeps() {
        let c = NonceCache(windowMs: 500, capacity: 2)
        #expect(c.insert(keyId: "k", nonce: "a", nowMs: 1000))
        #expect(c.insert(keyId: "k", nonce: "b", nowMs: 100))  // clock back
        // At 700, "b" (100 + 500) has expired, but it sits behind "a", which has not.
        #expect(c.insert(keyId: "k", nonce: "c", nowMs: 700))
        #expect(!c.insert(keyId: "k", nonce: "a", nowMs: 700))
        #expect(c.record(keyId: "k", nonce: "d", nowMs: 700) == .full)
    }

    @Test func threadsAgreeOnWhoWasFirst() {
        let c = NonceCache(windowMs: 600_000, capacity: 100_000)
        let wins = (0..<4).map { _ in SharedCounter() }
        let threads = (0..<4).map { t in
            TestThread {
                for i in 0..<1000 where c.insert(keyId: "k", nonce: "nonce-\(i)", nowMs: 1_000) { wins[t].add() }
            }
        }
        for t in threads { t.join() }
        #expect(wins.reduce(0) { $0 + $1.value } == 1000)
        #expect(c.count == 1000)
    }
}

final class SharedCounter: @unchecked Sendable {
    private let m = PthreadMutex()
    private var n = 0
    func add() { m.withLock { n += 1 } }
    var value: Int { m.withLock { n } }
}

@Suite struct RegistrationAuthTests {
    static let secret = Array("k1-secret".utf8)
    static let ts: Int64 = 1_700_000_000_000
    static let nonce = "abcdefghijklmnop"
    /// hmac.new(b"k1-secret", b"a1\n1700000000000\nabcdefghijklmnop", hashlib.sha256).hexdigest() (python3)
    static let signature = "288278e6d40886a6e8574452ab722bc7b9c2577b34acb1be7b8a5704f117855b"

    static func payload(_ changes: [(String, JSONValue?)] = []) -> JSONValue {
        var p: JSONValue = ["agentId": "a1", "name": "builder-1", "capabilities": ["shell"], "keyId": "k1",
                            "timestamp": .int(ts), "nonce": .string(nonce), "signature": .string(signature)]
        for (k, v) in changes {
            if let v { p.set(k, v) } else { p.remove(k) }
        }
        return p
    }

    /// Runs verify with key k1 known and counts the nonce store's calls.
    final class Harness {
        let nonces = NonceCache()
        var remembered = 0
        func verify(_ p: JSONValue, nowMs: Int64 = RegistrationAuthTests.ts) -> Result<RegistrationClaims, AuthFailure> {
            RegistrationAuth.verify(p, nowMs: nowMs, secretFor: { $0 == "k1" ? RegistrationAuthTests.secret : nil },
                                    rememberNonce: { k, n, now in self.remembered += 1; return self.nonces.insert(keyId: k, nonce: n, nowMs: now) })
        }
        func reason(_ p: JSONValue, nowMs: Int64 = RegistrationAuthTests.ts) -> String? { failure(verify(p, nowMs: nowMs))?.reason }
    }

    @Test func successThenReplay() throws {
        let h = Harness()
        let claims = try h.verify(Self.payload()).get()
        #expect(claims == RegistrationClaims(agentId: "a1", keyId: "k1", timestampMs: Self.ts, nonce: Self.nonce))
        #expect(h.remembered == 1)
        // Upper-case hex is the same signature.
        #expect(Harness().reason(Self.payload([("signature", .string(Self.signature.uppercased()))])) == nil)
        #expect(h.reason(Self.payload()) == "nonce already used")
        #expect(h.reason(Self.payload(), nowMs: Self.ts + 299_000) == "nonce already used")
    }

    @Test func missingAndMistypedFields() {
        let h = Harness()
        #expect(h.reason(["agentId", "a1"]) == "payload must be an object")
        for f in ["agentId", "keyId", "timestamp", "nonce", "signature"] {
            #expect(h.reason(Self.payload([(f, nil)])) == "missing field '\(f)'")
        }
        #expect(h.reason(Self.payload([("agentId", 7)])) == "field 'agentId' must be a string")
        #expect(h.reason(Self.payload([("agentId", "")]))?.hasPrefix("field 'agentId' must be 1..128") == true)
        #expect(h.reason(Self.payload([("agentId", .string(String(repeating: "a", count: 257)))]))?.hasPrefix("field 'agentId'") == true)
        #expect(h.reason(Self.payload([("keyId", nil), ("keyId", .null)])) == "field 'keyId' must be a string")
        #expect(h.reason(Self.payload([("timestamp", "1700000000000")]))?.hasPrefix("field 'timestamp' must be an integer") == true)
        #expect(h.reason(Self.payload([("timestamp", 1_700_000_000_000.5)]))?.hasPrefix("field 'timestamp' must be an integer") == true)
        let nonceRule = "field 'nonce' must be 16..128 characters of [A-Za-z0-9_-]"
        #expect(h.reason(Self.payload([("nonce", 12345)])) == "field 'nonce' must be a string")
        #expect(h.reason(Self.payload([("nonce", "abcdefghijklmno")])) == nonceRule)  // 15
        #expect(h.reason(Self.payload([("nonce", .string(String(repeating: "a", count: 129)))])) == nonceRule)
        #expect(h.reason(Self.payload([("nonce", "abcdefghijklmno!")])) == nonceRule)
        #expect(h.reason(Self.payload([("nonce", "abcdefghijklmnoé")])) == nonceRule)
        #expect(h.reason(Self.payload([("signature", ["x"])])) == "field 'signature' must be a string")
        #expect(h.reason(Self.payload([("signature", "xyz")])) == "field 'signature' must be hex")
        #expect(h.reason(Self.payload([("signature", "")])) == "field 'signature' must be hex")
        #expect(failure(h.verify(Self.payload([("signature", nil)])))?.isMalformed == true)
        #expect(h.remembered == 0)
    }

    @Test func credentialFailures() {
        let h = Harness()
        #expect(h.reason(Self.payload([("keyId", "k9")])) == "unknown key 'k9'")
        #expect(failure(h.verify(Self.payload([("keyId", "k9")])))?.isMalformed == false)
        #expect(h.reason(Self.payload(), nowMs: Self.ts + 412_000) == "timestamp 1700000000000 is 412 s from the hub's clock (limit 300 s)")
        #expect(h.reason(Self.payload(), nowMs: Self.ts - 300_001) == "timestamp 1700000000000 is 301 s from the hub's clock (limit 300 s)")
        #expect(h.reason(Self.payload([("timestamp", .int(Int64.min))]))?.hasPrefix("timestamp -9223372036854775808 is ") == true)
        #expect(h.reason(Self.payload([("agentId", "a2")])) == "bad signature")
        #expect(h.reason(Self.payload([("timestamp", .int(Self.ts + 1))])) == "bad signature")
        #expect(h.reason(Self.payload([("nonce", "abcdefghijklmnoq")])) == "bad signature")
        #expect(h.reason(Self.payload([("signature", .string(String(Self.signature.dropLast(2))))])) == "bad signature")
        // Nothing above reached the nonce store.
        #expect(h.remembered == 0)
        // The skew limit itself is allowed, either way.
        #expect(h.reason(Self.payload(), nowMs: Self.ts + 300_000) == nil)
        #expect(h.remembered == 1)
    }

    @Test func checksRunInTheDocumentedOrder() {
        let h = Harness()
        // Unknown key before the clock, the clock before the signature.
        #expect(h.reason(Self.payload([("keyId", "k9"), ("signature", "00")]), nowMs: 0) == "unknown key 'k9'")
        #expect(h.reason(Self.payload([("signature", "00")]), nowMs: 0)?.hasPrefix("timestamp ") == true)
        // A malformed field before an unknown key.
        #expect(h.reason(Self.payload([("keyId", "k9"), ("nonce", "short")])) == "field 'nonce' must be 16..128 characters of [A-Za-z0-9_-]")
        #expect(h.remembered == 0)
    }
}
