import Glibc
import OrchestraCore
import OrchestraHub
import OrchestraNet

let serveFlags: Set<String> = [
    "host", "port", "journal", "durability", "log-level", "strategy", "max-load-per-agent", "lease-ms", "heartbeat-ms",
    "max-attempts", "rate-limit", "max-connections", "max-message-size", "allow-origin", "recovery-window-ms", "task-retention-ms",
    "replay-session-bytes", "replay-hub-bytes", "jwt-key-file", "tls-cert", "tls-key", "port-file",
    "hub-id", "hub-id-file", "hub-timeout-ms",
    "web-root", "no-web", "alert-agent-offline-s", "alert-latency-p99-ms", "alert-error-rate", "alert-window-s",
]

/// This hub's id: `--hub-id`; else the one kept in `--hub-id-file` (default: `hub-id` beside a
/// SQLite journal, ./var/hub-id with PostgreSQL), made there on first start ("hub-" and 12
/// random hex digits, the file 0600).
func hubId(_ args: Arguments, journal: JournalLocation) throws(UsageError) -> String {
    if let id = args.get("hub-id") {
        guard !id.isEmpty, id.utf8.count <= Fields.maxIdBytes, id.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            throw UsageError("--hub-id: 1 to \(Fields.maxIdBytes) printable characters without spaces")
        }
        return id
    }
    var path = args.get("hub-id-file") ?? "./var/hub-id"
    if args.get("hub-id-file") == nil, case .sqlite(let db) = journal {
        path = (db.lastIndex(of: "/").map { String(db[..<$0]) } ?? ".") + "/hub-id"
    }
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    if fd >= 0 {
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 256)
        let n = read(fd, &buf, buf.count)
        var text = n > 0 ? String(decoding: buf[0..<n], as: UTF8.self) : ""
        while let last = text.last, last == "\n" || last == " " { text.removeLast() }
        if !text.isEmpty { return text }
    }
    let id = "hub-" + Secrets.randomHex(6)
    if let slash = path.lastIndex(of: "/") { _ = mkdir(String(path[..<slash]), 0o700) }
    let out = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
    guard out >= 0 else { throw UsageError("--hub-id-file \(path): \(String(cString: strerror(errno))) (or give --hub-id)") }
    _ = (id + "\n").withCString { write(out, $0, strlen($0)) }
    close(out)
    return id
}

/// The token key an operator keeps outside the journal: `--jwt-key-file PATH` (or
/// ORC_HUB_JWT_KEY_FILE), or ORC_HUB_JWT_KEY; hex, at least 32 bytes. Nil: the journal's.
func jwtKey(_ args: Arguments) throws(OrchestraError) -> [UInt8]? {
    var text: String
    var source: String
    if let path = args.get("jwt-key-file") {
        source = path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw OrchestraError(.io, "--jwt-key-file \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        if fstat(fd, &st) == 0, st.st_mode & 0o077 != 0 {
            printErr("orchestra-hub: warning: --jwt-key-file \(path) has mode \(String(st.st_mode & 0o777, radix: 8)): other users can read the token key; chmod 600 it")
        }
        var buf = [UInt8](repeating: 0, count: 4096)
        let n = read(fd, &buf, buf.count)
        guard n >= 0 else { throw OrchestraError(.io, "--jwt-key-file \(path): \(String(cString: strerror(errno)))") }
        text = String(decoding: buf[0..<n], as: UTF8.self)
    } else if let env = getenv("ORC_HUB_JWT_KEY") {
        source = "ORC_HUB_JWT_KEY"
        text = String(cString: env)
    } else {
        return nil
    }
    while let last = text.last, last == "\n" || last == "\r" || last == " " { text.removeLast() }
    guard let key = Secrets.fromHex(text), key.count >= 32 else {
        throw OrchestraError(.invalidArgument, "\(source): the token key must be hex, at least 64 digits (32 bytes): openssl rand -hex 32")
    }
    return key
}

func config(from args: Arguments) throws(UsageError) -> HubConfig {
    try args.check(known: serveFlags)
    var c = HubConfig()
    if let v = args.get("host") { c.host = v }
    if let v = try args.int("port", 0...65535) { c.port = UInt16(v) }
    c.journalPath = journalPath
    if let v = args.get("durability") {
        guard let d = Durability(rawValue: v) else { throw UsageError("--durability normal|full") }
        c.durability = d
    }
    if let v = args.get("log-level") {
        guard let l = LogLevel(name: v) else { throw UsageError("--log-level debug|info|warn|error") }
        c.logLevel = l
    }
    if let v = args.get("strategy") {
        guard let s = BalanceStrategy(rawValue: v) else {
            throw UsageError("--strategy: one of \(BalanceStrategy.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        c.strategy = s
    }
    if let v = try args.int("max-load-per-agent", 1...100_000) { c.maxLoadPerAgent = Int(v) }
    if let v = try args.int("lease-ms", 100...86_400_000) { c.leaseMs = v }
    if let v = try args.int("heartbeat-ms", 50...3_600_000) { c.heartbeatIntervalMs = v }
    if let v = try args.int("max-attempts", 1...100) { c.maxAttempts = Int(v) }
    if let v = try args.int("rate-limit", 0...100_000_000) { c.rateLimitPerMinute = Int(v) }
    if let v = try args.int("max-connections", 1...1_000_000) { c.maxConnections = Int(v) }
    if let v = try args.int("max-message-size", 1024...(256 << 20)) { c.maxMessageSize = Int(v) }
    if let v = try args.int("recovery-window-ms", 0...86_400_000) { c.recoveryWindowMs = v }
    if let v = try args.int("task-retention-ms", 0...Int64(Int32.max) * 1000) { c.taskRetentionMs = v }
    if let v = try args.int("hub-timeout-ms", 1000...3_600_000) { c.hubTimeoutMs = v }
    if let v = try args.int("replay-session-bytes", 65_536...(1 << 30)) { c.replaySessionBytes = Int(v) }
    if let v = try args.int("replay-hub-bytes", 65_536...(1 << 40)) { c.replayHubBytes = Int(v) }
    if c.replayHubBytes < c.replaySessionBytes { throw UsageError("--replay-hub-bytes must be at least --replay-session-bytes") }
    c.allowedOrigins = args.all("allow-origin")
    c.tlsCertFile = args.get("tls-cert")
    c.tlsKeyFile = args.get("tls-key")
    if (c.tlsCertFile == nil) != (c.tlsKeyFile == nil) { throw UsageError("--tls-cert and --tls-key go together") }
    c.webRoot = args.bool("no-web") ? nil : (args.get("web-root") ?? defaultWebRoot())
    if let v = try args.int("alert-agent-offline-s", 0...86_400) { c.alertAgentOfflineSeconds = v }
    if let v = try args.int("alert-latency-p99-ms", 0...86_400_000) { c.alertLatencyP99Ms = v }
    if let v = try args.int("alert-error-rate", 0...100) { c.alertErrorRatePercent = Double(v) }
    if let v = try args.int("alert-window-s", 1...3600) { c.alertWindowSeconds = v }
    return c
}

/// The dashboard's files beside the executable: `web/` in its directory (a build tree, where
/// the build copies them), or `../share/orchestra/web` (an installed hub). Nil when neither has
/// an index.html.
func defaultWebRoot() -> String? {
    var buf = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buf, buf.count - 1)
    guard n > 0 else { return nil }
    let exe = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    guard let slash = exe.lastIndex(of: "/") else { return nil }
    let dir = String(exe[..<slash])
    for candidate in [dir + "/web", dir + "/../share/orchestra/web"] where access(candidate + "/index.html", R_OK) == 0 {
        return candidate
    }
    return nil
}

func serve(_ args: Arguments) throws(UsageError) {
    var c = try config(from: args)
    do { c.jwtKey = try jwtKey(args) } catch { throw UsageError(error.message) }
    // After every check of the arguments: it may make the file that keeps the id.
    c.hubId = try hubId(args, journal: JournalLocation(c.journalPath))
    let log = Logger(level: c.logLevel)
    // SIGINT and SIGTERM are taken by sigwait below: block them before any thread starts, so
    // every thread inherits the mask and none is interrupted.
    var set = sigset_t()
    sigemptyset(&set)
    sigaddset(&set, SIGINT)
    sigaddset(&set, SIGTERM)
    pthread_sigmask(SIG_BLOCK, &set, nil)
    signal(SIGPIPE, SIG_IGN)

    let location = JournalLocation(c.journalPath)
    var journal: Journal? = nil
    var checkpointer: JournalCheckpointer? = nil
    var pg: PostgresStore? = nil
    let runtime: Runtime
    let hub: Hub
    do {
        runtime = try Runtime(name: "orchestra-hub")
        let store: HubStore
        switch location {
        case .sqlite(let path):
            let j = try Journal(path: path, durability: c.durability)
            journal = j
            // Checkpoints run on a thread of their own, never inside the I/O thread's commits.
            try j.setAutoCheckpoint(pages: 0)
            checkpointer = try JournalCheckpointer(path: path, durability: c.durability) { e in
                log.warn("journal.checkpoint_failed", ["reason": .string(e.message)])
            }
            for problem in j.exposure() {
                log.warn("journal.permissions", ["reason": .string(problem), "journal": .string(j.path)])
            }
            store = try SQLiteStore(j)
        case .postgres(let url):
            let p = PostgresStore(runtime: runtime, url: url, durability: c.durability)
            if let from = try p.open() {
                log.info("journal.migrated", ["journal": .string(p.label), "from": .int(from), "to": .int(Journal.schemaVersion)])
            }
            pg = p
            store = p
        }
        hub = try Hub(config: c, runtime: runtime, store: store, logger: log)
        try hub.start()
    } catch {
        log.error("hub.start_failed", ["reason": .string(error.message), "journal": .string(location.label)])
        exit(1)
    }
    if let path = args.get("port-file") {
        let text = "\(hub.port)\n"
        let fd = open(path + ".tmp", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        if fd >= 0 {
            _ = text.withCString { write(fd, $0, strlen($0)) }
            close(fd)
            rename(path + ".tmp", path)
        }
    }
    var sig: Int32 = 0
    sigwait(&set, &sig)
    log.info("hub.signal", ["signal": .string(sig == SIGINT ? "SIGINT" : "SIGTERM")])
    hub.beginShutdown()
    // Peers get close 1001; wait for their close frames (at most 3 s), then stop.
    let deadline = monotonicNanos() + 3_000_000_000
    while hub.connectionCount > 0 && monotonicNanos() < deadline { usleep(10_000) }
    // The last writes (this hub marked stopped, the last batch), then the connection's
    // close, on the I/O thread.
    let finished = Rendezvous<Bool>()
    hub.finishShutdown { [pg] in
        guard let pg else { finished.put(true); return }
        pg.close { finished.put(true) }
    }
    _ = finished.take()
    runtime.shutdown()
    checkpointer?.stop()
    journal?.close()
    log.info("hub.stopped", ["journal": .string(location.label)])
}
