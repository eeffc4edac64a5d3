// orchestra-hub: the Server of the Web -> Server -> Agent design. See `orchestra-hub --help`
// and docs/protocol.md, docs/operations.md.
import Glibc
import OrchestraCore
import OrchestraHub
import OrchestraNet

let usage = """
usage: orchestra-hub [serve] [flags]            run the hub
       orchestra-hub key add ID [--secret HEX] [--agents PATTERNS]   add an agent key (prints the secret once)
       orchestra-hub key list | key remove ID | key disable ID | key enable ID
       orchestra-hub key set-agents ID PATTERNS   limit a key to agent ids ('build-*,ci-1'; '*' = any)
       orchestra-hub agent list | agent unbind ID   agent ids and the keys they are bound to
       orchestra-hub user add NAME [--role admin|user|viewer] [--password P]   (or ORC_HUB_PASSWORD)
       orchestra-hub user list | user remove NAME | user disable NAME | user enable NAME
       orchestra-hub user set-role NAME admin|user|viewer
       orchestra-hub token --user NAME [--ttl SECONDS]   issue a JWT for a web client
       orchestra-hub token revoke --user NAME     refuse every token issued to NAME so far
       orchestra-hub dead list | dead requeue ID   the dead-letter list
       orchestra-hub task ID                      one task as JSON
       orchestra-hub migrate                      bring the journal's schema up to date
       orchestra-hub --version

Every subcommand takes --journal PATH. Every flag can also be set with the environment
variable ORC_HUB_<FLAG> (--max-load-per-agent → ORC_HUB_MAX_LOAD_PER_AGENT); flags win.
Changes to keys and users take effect in a running hub within a second: removed, disabled
or revoked identities have their connections closed (docs/security.md).

serve flags:
  --host ADDR               listen address (127.0.0.1)
  --port N                  port for WebSocket and HTTP (7420; 0 picks one, printed in the log)
  --journal PATH|URL        the journal: a SQLite file, WAL mode, created 0600
                            (./var/orchestra.db; also sqlite:PATH), or postgresql://... for
                            several hubs on one database (also ORC_HUB_JOURNAL)
  --durability normal|full  normal survives a crash of the hub; full also a power loss (normal)
  --log-level debug|info|warn|error   (info)
  --strategy S              default load balancer: round-robin, least-connections,
                            lowest-latency, resource-based, random (round-robin)
  --max-load-per-agent N    tasks in flight per agent at most (16)
  --lease-ms N              task lease, renewed by heartbeats and progress (15000)
  --heartbeat-ms N          agent heartbeat interval; 3 missed = offline (5000)
  --max-attempts N          default retry limit before the dead-letter list (3)
  --rate-limit N            requests a minute per web connection, 0 = none (100)
  --max-connections N       (10000)
  --max-message-size BYTES  larger messages close the connection with 1009 (1048576)
  --allow-origin ORIGIN     allowed Origin of browser upgrades, repeatable (default: any);
                            requests without an Origin (agents, SDKs) are not affected
  --recovery-window-ms N    how long a session's events are kept for resuming (300000)
  --replay-session-bytes N  byte budget of one session's replay log (8388608)
  --replay-hub-bytes N      byte budget of all replay logs together (268435456)
  --jwt-key-file PATH       sign web tokens with the key in PATH (hex, at least 64 digits)
                            instead of the journal's; or ORC_HUB_JWT_KEY=<hex>
  --task-retention-ms N     finished tasks are deleted this long after they finished (dead
                            letters stay until requeued); 0 keeps them (2592000000: 30 days)
  --hub-id ID               this hub's id among the hubs of one database (default: the one
                            kept in --hub-id-file, ./var/hub-id, made on first start)
  --hub-id-file PATH        where the generated id is kept (hub-id beside a SQLite journal)
  --hub-timeout-ms N        a hub whose heartbeat is older is dead: its agents go offline,
                            its tasks return to the queue one lease later (5000)
  --tls-cert FILE --tls-key FILE   serve wss:// and https://
  --port-file PATH          write the port listened on to PATH (for scripts and tests)
  --web-root DIR            serve the dashboard from DIR (default: web/ beside the executable,
                            or ../share/orchestra/web)
  --no-web                  do not serve the dashboard (/ and /ui/ answer 404)
  --alert-agent-offline-s N alert when an agent has been offline longer than N s (60; 0 = off)
  --alert-latency-p99-ms N  alert when task latency p99 over the window exceeds N ms (60000; 0 = off)
  --alert-error-rate PCT    alert when more than PCT % of the tasks finished in the window
                            failed, at least 5 of them (50; 0 = off)
  --alert-window-s N        the window of the latency and error-rate rules (300)
"""

func fail(_ s: String, code: Int32 = 2) -> Never {
    printErr("orchestra-hub: \(s)")
    exit(code)
}

let argv = Array(CommandLine.arguments.dropFirst())
let booleans: Set<String> = ["help", "version", "no-web"]
var command = "serve"
var rest = argv[...]
if let first = argv.first, !first.hasPrefix("-") {
    command = first
    rest = argv.dropFirst()
}
let args: Arguments
do { args = try Arguments(rest, booleans: booleans) } catch { fail(error.message) }
if args.values["help"] != nil || command == "help" { printOut(usage); exit(0) }
if args.values["version"] != nil { printOut("orchestra-hub 0.1.0 (protocol \(hubProtocolVersion))"); exit(0) }

let journalPath = args.get("journal") ?? "./var/orchestra.db"

func openJournal(_ durability: Durability = .normal) -> AdminJournal {
    do { return try JournalLocation(journalPath).openAdmin(durability: durability) } catch { fail(error.message, code: 1) }
}

func now() -> Int64 { wallClockMillis() }

switch command {
case "serve":
    do { try serve(args) } catch { fail(error.message) }
case "key":
    do { try args.check(known: ["journal", "secret", "agents"]) } catch { fail(error.message) }
    let j = openJournal()
    defer { j.close() }
    func id(_ usage: String, count: Int = 2) -> String {
        guard args.positional.count == count else { fail(usage) }
        return args.positional[1]
    }
    func scope(_ text: String) -> AgentIdScope? {
        if text == "*" { return nil }
        guard let s = AgentIdScope(text) else { fail("agent id patterns: comma-separated ids or prefixes ending in '*' ('build-*,ci-1')") }
        return s
    }
    switch args.positional.first {
    case "add":
        let id = id("key add ID")
        let secret: [UInt8]
        if let hex = args.get("secret") {
            guard let s = Secrets.fromHex(hex), s.count >= 16 else { fail("--secret must be at least 32 hex characters") }
            secret = s
        } else {
            secret = Secrets.random(32)
        }
        let agents = args.get("agents").flatMap(scope)
        do {
            guard try j.addKey(id: id, secret: secret, agents: agents, nowMs: now()) else { fail("key '\(id)' exists", code: 1) }
        } catch { fail(error.message, code: 1) }
        printOut(HMACSHA256.hex(secret))
    case "list":
        do {
            for k in try j.keyAccounts() {
                printOut("\(k.id)\t\(k.createdMs)\t\(k.disabled ? "disabled" : "enabled")\t\(k.agents?.text ?? "*")")
            }
        } catch { fail(error.message, code: 1) }
    case "remove":
        let id = id("key remove ID")
        do { guard try j.removeKey(id: id) else { fail("no key '\(id)'", code: 1) } } catch { fail(error.message, code: 1) }
    case "disable", "enable":
        let verb = args.positional.first!
        let id = id("key \(verb) ID")
        do { guard try j.setKeyDisabled(id: id, verb == "disable") else { fail("no key '\(id)'", code: 1) } } catch { fail(error.message, code: 1) }
    case "set-agents":
        let id = id("key set-agents ID PATTERNS", count: 3)
        do { guard try j.setKeyAgents(id: id, scope(args.positional[2])) else { fail("no key '\(id)'", code: 1) } } catch { fail(error.message, code: 1) }
    default: fail("key add|list|remove|disable|enable|set-agents")
    }
case "agent":
    do { try args.check(known: ["journal"]) } catch { fail(error.message) }
    let j = openJournal()
    defer { j.close() }
    switch args.positional.first {
    case "list", nil:
        do { for b in try j.agentBindings() { printOut("\(b.agentId)\t\(b.keyId)\t\(b.createdMs)") } } catch { fail(error.message, code: 1) }
    case "unbind":
        guard args.positional.count == 2 else { fail("agent unbind ID") }
        let id = args.positional[1]
        do { guard try j.unbindAgent(agentId: id) else { fail("agent '\(id)' is not bound to a key", code: 1) } } catch { fail(error.message, code: 1) }
    default: fail("agent list|unbind ID")
    }
case "user":
    do { try args.check(known: ["journal", "role", "password"]) } catch { fail(error.message) }
    let j = openJournal()
    defer { j.close() }
    func role(_ text: String) -> UserRole {
        guard let r = UserRole(rawValue: text) else { fail("roles: admin, user, viewer") }
        return r
    }
    func name(_ usage: String, count: Int = 2) -> String {
        guard args.positional.count == count else { fail(usage) }
        return args.positional[1]
    }
    switch args.positional.first {
    case "add":
        let n = name("user add NAME")
        let r = role(args.get("role") ?? "user")
        let password = args.get("password") ?? Secrets.randomHex(12)
        do {
            guard try j.addUser(name: n, passwordHash: PasswordHash.hash(password), role: r, nowMs: now()) else {
                fail("user '\(n)' exists", code: 1)
            }
        } catch { fail(error.message, code: 1) }
        if args.get("password") == nil { printOut(password) }
    case "list":
        do { for u in try j.userAccounts() { printOut("\(u.name)\t\(u.role.rawValue)\(u.disabled ? "\tdisabled" : "")") } } catch { fail(error.message, code: 1) }
    case "remove":
        let n = name("user remove NAME")
        do { guard try j.removeUser(name: n) else { fail("no user '\(n)'", code: 1) } } catch { fail(error.message, code: 1) }
    case "disable", "enable":
        let verb = args.positional.first!
        let n = name("user \(verb) NAME")
        do { guard try j.setUserDisabled(name: n, verb == "disable") else { fail("no user '\(n)'", code: 1) } } catch { fail(error.message, code: 1) }
    case "set-role":
        let n = name("user set-role NAME admin|user|viewer", count: 3)
        let r = role(args.positional[2])
        do { guard try j.setUserRole(name: n, r) else { fail("no user '\(n)'", code: 1) } } catch { fail(error.message, code: 1) }
    default: fail("user add|list|remove|disable|enable|set-role")
    }
case "token":
    do { try args.check(known: ["journal", "user", "ttl", "jwt-key-file"]) } catch { fail(error.message) }
    guard let user = args.get("user") ?? (args.positional.count == 2 ? args.positional[1] : nil) else {
        fail("token --user NAME | token revoke --user NAME")
    }
    let j = openJournal()
    defer { j.close() }
    if args.positional.first == "revoke" {
        do {
            guard let g = try j.revokeTokens(name: user, nowMs: now()) else { fail("no user '\(user)'", code: 1) }
            printOut("revoked every token of \(user) (generation \(g))")
        } catch { fail(error.message, code: 1) }
        exit(0)
    }
    guard args.positional.isEmpty else { fail("token --user NAME | token revoke --user NAME") }
    let ttl: Int64
    do { ttl = try args.int("ttl", -86_400 * 365...86_400 * 365) ?? 3600 } catch { fail(error.message) }
    do {
        guard let u = try j.user(name: user)?.account else { fail("no user '\(user)' (orchestra-hub user add \(user))", code: 1) }
        if u.disabled { fail("user '\(user)' is disabled (orchestra-hub user enable \(user))", code: 1) }
        var secret = try jwtKey(args)
        if secret == nil { secret = try Hub.jwtSecret(j) }   // the one the hubs use (made if none)
        printOut(Hub.issueToken(u, ttlSeconds: ttl, secret: secret!, nowSeconds: now() / 1000))
    } catch { fail(error.message, code: 1) }
case "migrate":
    do { try args.check(known: ["journal"]) } catch { fail(error.message) }
    let j = openJournal()
    defer { j.close() }
    if let from = j.migratedFrom {
        printOut("migrated \(JournalLocation(journalPath).label) from schema version \(from) to \(Journal.schemaVersion)")
    } else {
        printOut("\(JournalLocation(journalPath).label) is at schema version \(Journal.schemaVersion)")
    }
case "dead":
    do { try args.check(known: ["journal"]) } catch { fail(error.message) }
    let j = openJournal()
    defer { j.close() }
    switch args.positional.first {
    case "list", nil:
        do {
            for t in try j.deadLetters(limit: 1000) {
                let o: JSONValue = ["taskId": .string(t.id), "attempt": .int(Int64(t.attempt)), "errorCode": t.errorCode.map { .string($0) } ?? .null,
                                    "error": t.error.map { .string($0) } ?? .null, "updatedAt": .int(t.updatedMs), "task": t.spec]
                printOut(o.jsonText)
            }
        } catch { fail(error.message, code: 1) }
    case "requeue":
        guard args.positional.count == 2 else { fail("dead requeue ID") }
        do {
            guard try j.requeue(id: args.positional[1], nowMs: now()) else { fail("'\(args.positional[1])' is not in the dead-letter list", code: 1) }
        } catch { fail(error.message, code: 1) }
        printOut("requeued \(args.positional[1])")
    default: fail("dead list|requeue ID")
    }
case "task":
    do { try args.check(known: ["journal"]) } catch { fail(error.message) }
    guard args.positional.count == 1 else { fail("task ID") }
    let j = openJournal()
    defer { j.close() }
    do {
        guard let t = try j.task(id: args.positional[0]) else { fail("no task '\(args.positional[0])'", code: 1) }
        var o: JSONValue = ["taskId": .string(t.id), "state": .string(t.state.rawValue), "attempt": .int(Int64(t.attempt)),
                            "dead": .bool(t.dead), "task": t.spec]
        if let r = t.result { o.set("result", r) }
        if let e = t.error { o.set("error", .string(e)) }
        printOut(o.jsonText)
    } catch { fail(error.message, code: 1) }
default:
    fail("unknown command '\(command)' (see --help)")
}
exit(0)
