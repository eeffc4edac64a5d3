import Glibc
import OrchestraCore
import Synchronization

/// Severity of a log line; a logger writes the lines at or above its level.
public enum LogLevel: Int, Sendable, Comparable, CaseIterable {
    case debug, info, warn, error

    /// "debug", "info", "warn" (or "warning"), "error", in any case.
    public init?(name: String) {
        switch name.lowercased() {
        case "debug": self = .debug
        case "info": self = .info
        case "warn", "warning": self = .warn
        case "error": self = .error
        default: return nil
        }
    }

    public var name: String {
        switch self {
        case .debug: return "debug"
        case .info: return "info"
        case .warn: return "warn"
        case .error: return "error"
        }
    }

    public static func < (a: LogLevel, b: LogLevel) -> Bool { a.rawValue < b.rawValue }
}

/// Which log fields hold secrets, and masking them.
///
/// A key is cut into lower-case words at `_`, `-`, `.`, spaces, lower→upper case changes
/// (`accessToken` → access, token), the end of an upper-case run (`APIKey` → api, key) and
/// letter/digit changes. It is secret when
/// - one of its words is `secret`, `secrets`, `token`, `password`, `passwd`, `pwd`,
///   `passphrase`, `signature`, `authorization`, `cookie`, `cookies`, `credential`,
///   `credentials`, `jwt`, `bearer`, `apikey`, `privatekey`, `secretkey`, `accesskey`; or
/// - its last word is `key` and the word before is not `public` (`apiKey`, `x-api-key`,
///   `hmacKey`, `key` are secret; `publicKey` is not).
///
/// So ids stay readable: `keyId` (last word `id`), `traceId`, `taskId`, `agentId` and `nonce`
/// are plain fields. When in doubt a field is masked: `tokenId` and `passwordHash` are, as they
/// contain the words `token` and `password`. Counts of language-model tokens (`tokens`,
/// `maxTokens`, `inputTokens`) are not: their word is `tokens`, not `token`.
public enum SecretMask {
    private static let secretWords: Set<String> = [
        "secret", "secrets", "token", "password", "passwd", "pwd", "passphrase", "signature",
        "authorization", "cookie", "cookies", "credential", "credentials", "jwt", "bearer",
        "apikey", "privatekey", "secretkey", "accesskey",
    ]

    public static let placeholder: JSONValue = "***"

    public static func isSecret(_ key: String) -> Bool {
        let w = words(key)
        if w.contains(where: { secretWords.contains($0) }) { return true }
        if w.last == "key" { return !(w.count >= 2 && w[w.count - 2] == "public") }
        return false
    }

    /// `v` with the value of every secret member of every object in it (at any depth, inside
    /// arrays too) replaced by "***".
    public static func mask(_ v: JSONValue) -> JSONValue {
        switch v {
        case .object(let members):
            return .object(members.map { (k, x) in (k, isSecret(k) ? placeholder : mask(x)) })
        case .array(let items):
            return .array(items.map(mask))
        default:
            return v
        }
    }

    /// The key's words, lower-cased (see the type's comment).
    static func words(_ key: String) -> [String] {
        enum Kind { case lower, upper, digit, other }
        func kind(_ c: Unicode.Scalar) -> Kind {
            switch c.value {
            case 0x61...0x7A: return .lower
            case 0x41...0x5A: return .upper
            case 0x30...0x39: return .digit
            default: return c.properties.isAlphabetic ? (c.properties.isUppercase ? .upper : .lower) : .other
            }
        }
        let scalars = Array(key.unicodeScalars)
        var words: [String] = []
        var current = String.UnicodeScalarView()
        func flush() {
            if !current.isEmpty { words.append(String(current).lowercased()) }
            current = String.UnicodeScalarView()
        }
        for i in 0..<scalars.count {
            let c = scalars[i]
            let k = kind(c)
            if k == .other { flush(); continue }
            if i > 0, !current.isEmpty {
                let p = kind(scalars[i - 1])
                let nextIsLower = i + 1 < scalars.count && kind(scalars[i + 1]) == .lower
                if (p == .lower && k == .upper)                      // accessToken
                    || (p == .upper && k == .upper && nextIsLower)   // APIKey: the K starts a word
                    || ((p == .digit) != (k == .digit)) {            // password2
                    flush()
                }
            }
            current.append(c)
        }
        flush()
        return words
    }
}

/// Writes one JSON object per line to a file descriptor:
/// `{"ts":"2026-11-23T17:40:11.281Z","level":"info","event":"agent.registered",...fields}`.
/// Secret fields (`SecretMask`) are masked at any depth. Each line goes out with one write(2)
/// under a lock, so lines from many threads never interleave (and a line of at most PIPE_BUF
/// bytes is atomic against other processes writing to the same pipe too). A field named `ts`,
/// `level` or `event` is written as `_ts`, `_level`, `_event`. Write errors are ignored: a
/// line that cannot be written is lost, the caller never fails because of logging.
/// The logger does not own `fd` and never closes it.
public final class Logger: @unchecked Sendable {
    public let fd: Int32
    private let clock: @Sendable () -> Int64
    private let levelValue: Atomic<Int>
    private let writeLock = PthreadMutex()

    public init(level: LogLevel, fd: Int32 = 2, clock: @escaping @Sendable () -> Int64 = { wallClockMillis() }) {
        self.fd = fd
        self.clock = clock
        self.levelValue = Atomic(level.rawValue)
    }

    /// The lowest level written; any thread may change it.
    public var level: LogLevel {
        get { LogLevel(rawValue: levelValue.load(ordering: .relaxed)) ?? .info }
        set { levelValue.store(newValue.rawValue, ordering: .relaxed) }
    }

    /// Whether a line at `level` would be written (to skip building costly fields).
    public func isEnabled(_ level: LogLevel) -> Bool { level >= self.level }

    public func log(_ level: LogLevel, _ event: String, _ fields: [(String, JSONValue)] = []) {
        guard isEnabled(level) else { return }
        let line = Logger.line(timestampMs: clock(), level: level, event: event, fields: fields)
        write(line)
    }

    public func debug(_ event: String, _ fields: [(String, JSONValue)] = []) { log(.debug, event, fields) }
    public func info(_ event: String, _ fields: [(String, JSONValue)] = []) { log(.info, event, fields) }
    public func warn(_ event: String, _ fields: [(String, JSONValue)] = []) { log(.warn, event, fields) }
    public func error(_ event: String, _ fields: [(String, JSONValue)] = []) { log(.error, event, fields) }

    /// One line (with its newline), masked.
    public static func line(timestampMs: Int64, level: LogLevel, event: String, fields: [(String, JSONValue)]) -> [UInt8] {
        var members: [(String, JSONValue)] = [
            ("ts", .string(iso8601(milliseconds: timestampMs))), ("level", .string(level.name)), ("event", .string(event)),
        ]
        members.reserveCapacity(3 + fields.count)
        for (k, v) in fields {
            let name = (k == "ts" || k == "level" || k == "event") ? "_" + k : k
            members.append((name, SecretMask.isSecret(k) ? SecretMask.placeholder : SecretMask.mask(v)))
        }
        var out: [UInt8] = []
        out.reserveCapacity(128)
        JSONValue.object(members).write(into: &out)
        out.append(0x0A)
        return out
    }

    /// `2026-11-23T17:40:11.281Z` (UTC) for milliseconds since the epoch; the number itself if
    /// the C library cannot break the time down.
    public static func iso8601(milliseconds ms: Int64) -> String {
        var secs = ms / 1000
        var milli = ms % 1000
        if milli < 0 { milli += 1000; secs -= 1 }
        var t = time_t(secs)
        var parts = tm()
        guard gmtime_r(&t, &parts) != nil else { return String(ms) }
        var out: [UInt8] = []
        out.reserveCapacity(24)
        func digits(_ v: Int, _ width: Int) {
            let s = Array(String(v).utf8)
            if s.count < width { out.append(contentsOf: repeatElement(0x30, count: width - s.count)) }
            out.append(contentsOf: s)
        }
        digits(Int(parts.tm_year) + 1900, 4); out.append(0x2D)
        digits(Int(parts.tm_mon) + 1, 2); out.append(0x2D)
        digits(Int(parts.tm_mday), 2); out.append(0x54)
        digits(Int(parts.tm_hour), 2); out.append(0x3A)
        digits(Int(parts.tm_min), 2); out.append(0x3A)
        digits(Int(parts.tm_sec), 2); out.append(0x2E)
        digits(Int(milli), 3); out.append(0x5A)
        return String(decoding: out, as: UTF8.self)
    }

    /// Writes the whole line: one write(2) unless the kernel takes only part of it; retries on
    /// EINTR, waits (boundedly) on a non-blocking descriptor that is full, gives up on other errors.
    private func write(_ line: [UInt8]) {
        writeLock.withLock {
            line.withUnsafeBytes { buf in
                guard let base = buf.baseAddress else { return }
                var done = 0
                var waits = 0
                while done < buf.count {
                    let n = Glibc.write(fd, base + done, buf.count - done)
                    if n > 0 { done += n; continue }
                    let e = errno
                    if n < 0 && e == EINTR { continue }
                    if n < 0 && (e == EAGAIN || e == EWOULDBLOCK) && waits < 20 {
                        waits += 1
                        var p = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                        _ = poll(&p, 1, 50)
                        continue
                    }
                    return
                }
            }
        }
    }
}
