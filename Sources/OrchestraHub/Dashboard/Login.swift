import Glibc
import OrchestraCore
import OrchestraNet

/// Failed logins, per user name and per address, over a sliding window: after `maxFailures`
/// within `windowMs`, `POST /auth/login` is refused (429, rule `login.rate`) until the oldest
/// failure leaves the window; each failure's answer waits longer than the one before
/// (`delayMs`). A success forgets the user's failures (not the address's).
struct LoginThrottle {
    static let maxFailures = 5
    static let windowMs: Int64 = 10 * 60_000
    /// The wait before a failure is answered: this much per recent failure, at most `maxDelayMs`.
    static let delayStepMs: Int64 = 250
    static let maxDelayMs: Int64 = 2_000
    /// Names and addresses tracked at most (the oldest are forgotten first).
    static let maxKeys = 10_000

    private var failures: [String: [Int64]] = [:]

    static func userKey(_ user: String) -> String { "user:" + user }
    static func addressKey(_ address: String) -> String { "addr:" + address }

    /// The failures of `key` still in the window.
    mutating func recent(_ key: String, nowMs: Int64) -> [Int64] {
        guard let list = failures[key] else { return [] }
        let kept = list.filter { nowMs - $0 < LoginThrottle.windowMs }
        failures[key] = kept.isEmpty ? nil : kept
        return kept
    }

    /// The failures counted against a login of `user` from `address`.
    mutating func counts(user: String, address: String, nowMs: Int64) -> LoginFacts {
        let u = recent(LoginThrottle.userKey(user), nowMs: nowMs)
        let a = recent(LoginThrottle.addressKey(address), nowMs: nowMs)
        let oldest = (u.count >= LoginThrottle.maxFailures ? u.first : nil).map { [$0] } ?? []
        let oldestA = (a.count >= LoginThrottle.maxFailures ? a.first : nil).map { [$0] } ?? []
        let until = (oldest + oldestA).map { $0 + LoginThrottle.windowMs }.max() ?? 0
        return LoginFacts(userFailures: u.count, addressFailures: a.count, retryAfterSeconds: max(1, (until - nowMs + 999) / 1000))
    }

    mutating func failed(user: String, address: String, nowMs: Int64) {
        if failures.count >= LoginThrottle.maxKeys {
            // Forget the keys whose last failure is oldest.
            let drop = failures.sorted { ($0.value.last ?? 0) < ($1.value.last ?? 0) }.prefix(failures.count / 10 + 1)
            for (k, _) in drop { failures.removeValue(forKey: k) }
        }
        for k in [LoginThrottle.userKey(user), LoginThrottle.addressKey(address)] {
            var list = recent(k, nowMs: nowMs)
            list.append(nowMs)
            failures[k] = list
        }
    }

    mutating func succeeded(user: String) { failures.removeValue(forKey: LoginThrottle.userKey(user)) }

    /// How long to wait before answering a failure that makes `n` recent ones.
    static func delayMs(failures n: Int) -> Int64 { min(maxDelayMs, delayStepMs * Int64(max(n, 1))) }
}

/// What the `login.rate` rule knows of a login attempt.
struct LoginFacts {
    let userFailures: Int
    let addressFailures: Int
    let retryAfterSeconds: Int64
}

/// Work done on a thread of its own (a password hash takes tens of milliseconds, which the I/O
/// thread must not spend), its result handed back on the I/O thread.
final class OffThread: @unchecked Sendable {
    private let work: () -> Void

    private init(_ work: @escaping () -> Void) { self.work = work }

    /// Runs `work` on a new detached thread; false when no thread could be started.
    static func run(_ work: @escaping () -> Void) -> Bool {
        let box = Unmanaged.passRetained(OffThread(work)).toOpaque()
        var attr = pthread_attr_t()
        pthread_attr_init(&attr)
        pthread_attr_setdetachstate(&attr, Int32(PTHREAD_CREATE_DETACHED))
        defer { pthread_attr_destroy(&attr) }
        var thread = pthread_t()
        let rc = pthread_create(&thread, &attr, { arg in
            let me = Unmanaged<OffThread>.fromOpaque(arg!).takeRetainedValue()
            me.work()
            return nil
        }, box)
        if rc != 0 { Unmanaged<OffThread>.fromOpaque(box).release() }
        return rc == 0
    }
}

extension Hub {
    /// A hash with the cost of a real one, checked when the user does not exist, so that the
    /// answer takes as long either way.
    static let decoyPasswordHash = PasswordHash.hash("decoy password", iterations: 100_000)
    /// Password checks in flight at most; more logins meanwhile get 503.
    static let maxConcurrentLogins = 4

    /// `POST /auth/login`, after its rules: `{"user","password"}` (JSON) → `{"token","expiresAt",
    /// "user","role"}`, or 401 `AUTH_001` "invalid user or password" (whether the user exists or
    /// not, is disabled or not), sent after a delay that grows with the recent failures.
    func login(_ request: HTTPRequestInfo, user: String, password: String, respond: @escaping (HTTPResponse) -> Void) {
        let address = Hub.addressOnly(request.remoteAddress)
        guard dashboard.loginsInFlight < Hub.maxConcurrentLogins else {
            respond(HTTPResponse.json(503, HubError(.resourceExhausted, "login: busy, try again").info()).retryAfter(1))
            return
        }
        dashboard.loginsInFlight += 1
        store.login(name: user) { [self] r in
            let found: (account: UserAccount, passwordHash: String)?
            switch r {
            case .failure(let e):
                dashboard.loginsInFlight -= 1
                log.error("journal.read_failed", ["what": "user", "reason": .string(e.message)])
                respond(HTTPResponse.json(500, HubError(.databaseError, "login: the journal could not be read").info()))
                return
            case .success(let x): found = x
            }
            let hash = found?.passwordHash ?? Hub.decoyPasswordHash
            let runtime = self.runtime
            let started = OffThread.run { [self] in
                let ok = PasswordHash.verify(password, encoded: hash)
                try? runtime.post { [self] in
                    dashboard.loginsInFlight -= 1
                    loginChecked(ok ? found?.account : nil, user: user, address: address, respond: respond)
                }
            }
            if !started {
                dashboard.loginsInFlight -= 1
                respond(HTTPResponse.json(503, HubError(.resourceExhausted, "login: busy, try again").info()).retryAfter(1))
            }
        }
    }

    private func loginChecked(_ account: UserAccount?, user: String, address: String, respond: @escaping (HTTPResponse) -> Void) {
        let now = wallClockMillis()
        if let account, !account.disabled {
            dashboard.logins.succeeded(user: user)
            let token = Hub.issueToken(account, ttlSeconds: config.tokenTTLSeconds, secret: jwtSecret, nowSeconds: now / 1000)
            log.info("auth.login", ["user": .string(account.name), "role": .string(account.role.rawValue), "remote": .string(address)])
            respond(HTTPResponse.json(200, ["token": .string(token), "expiresAt": .int(now / 1000 + config.tokenTTLSeconds),
                                            "user": .string(account.name), "role": .string(account.role.rawValue)]).noStore())
            return
        }
        dashboard.logins.failed(user: user, address: address, nowMs: now)
        let n = dashboard.logins.counts(user: user, address: address, nowMs: now)
        rejectedAuth.add()
        log.warn("auth.login_failed", ["user": .string(user), "remote": .string(address),
                                       "failures": .int(Int64(max(n.userFailures, n.addressFailures)))])
        let answer = HTTPResponse.json(401, HubError(.authenticationFailed, "login: invalid user or password").info())
        let delay = LoginThrottle.delayMs(failures: max(n.userFailures, n.addressFailures))
        if (try? runtime.startTimer(delayMs: UInt64(delay), repeatMs: 0, fire: { respond(answer) })) == nil { respond(answer) }
    }

    /// "1.2.3.4:5678" → "1.2.3.4"; "[::1]:5678" or "::1:5678"-style forms keep what precedes
    /// the last colon.
    static func addressOnly(_ remote: String) -> String {
        guard let colon = remote.lastIndex(of: ":") else { return remote }
        var host = String(remote[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return host.isEmpty ? remote : host
    }
}

extension HTTPResponse {
    func retryAfter(_ seconds: Int64) -> HTTPResponse {
        var r = self
        r.headers.append(HTTPField("Retry-After", String(seconds)))
        return r
    }

    /// Tokens are not kept by caches.
    func noStore() -> HTTPResponse {
        var r = self
        r.headers.append(HTTPField("Cache-Control", "no-store"))
        return r
    }
}
