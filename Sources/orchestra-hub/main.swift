// orchestra-hub: the Server of the Web -> Server -> Agent design. See `orchestra-hub --help`
// and docs/protocol.md, docs/operations.md.
import Glibc
import OrchestraCore
import OrchestraHub
import OrchestraNet

let usage = """
usage: orchestra-hub [serve] [flags]            run the hub
       orchestra-hub key add ID [--secret HEX]  add an agent key (prints the secret once)
       orchestra-hub key list | key remove ID
       orchestra-hub user add NAME [--role user|admin] [--password P]   (or ORC_HUB_PASSWORD)
       orchestra-hub user list | user remove NAME
       orchestra-hub token --user NAME [--ttl SECONDS]   issue a JWT for a web client
       orchestra-hub dead list | dead requeue ID   the dead-letter list
       orchestra-hub task ID                      one task as JSON
       orchestra-hub --version

Every subcommand takes --journal PATH. Every flag can also be set with the environment
variable ORC_HUB_<FLAG> (--max-load-per-agent → ORC_HUB_MAX_LOAD_PER_AGENT); flags win.

serve flags:
  --host ADDR               listen address (127.0.0.1)
  --port N                  port for WebSocket and HTTP (7420; 0 picks one, printed in the log)
  --journal PATH            SQLite journal, WAL mode (./var/orchestra.db)
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
  --allow-origin ORIGIN     allowed Origin of upgrades, repeatable (default: any)
  --recovery-window-ms N    how long a session's events are kept for resuming (300000)
  --tls-cert FILE --tls-key FILE   serve wss:// and https://
  --port-file PATH          write the port listened on to PATH (for scripts and tests)
"""

func fail(_ s: String, code: Int32 = 2) -> Never {
    printErr("orchestra-hub: \(s)")
    exit(code)
}

let argv = Array(CommandLine.arguments.dropFirst())
let booleans: Set<String> = ["help", "version"]
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

func openJournal(_ durability: Durability = .normal) -> Journal {
    do { return try Journal(path: journalPath, durability: durability) } catch { fail(error.message, code: 1) }
}

func now() -> Int64 { wallClockMillis() }

switch command {
case "serve":
    do { try serve(args) } catch { fail(error.message) }
case "key":
    do { try args.check(known: ["journal", "secret"]) } catch { fail(error.message) }
    let j = openJournal()
    defer { j.close() }
    switch args.positional.first {
    case "add":
        guard args.positional.count == 2 else { fail("key add ID") }
        let id = args.positional[1]
        let secret: [UInt8]
        if let hex = args.get("secret") {
            guard let s = Secrets.fromHex(hex), s.count >= 16 else { fail("--secret must be at least 32 hex characters") }
            secret = s
        } else {
            secret = Secrets.random(32)
        }
        do {
            guard try j.addKey(id: id, secret: secret, nowMs: now()) else { fail("key '\(id)' exists", code: 1) }
        } catch { fail(error.message, code: 1) }
        printOut(HMACSHA256.hex(secret))
    case "list":
        do { for k in try j.listKeys() { printOut("\(k.id)\t\(k.createdMs)") } } catch { fail(error.message, code: 1) }
    case "remove":
        guard args.positional.count == 2 else { fail("key remove ID") }
        do { guard try j.removeKey(id: args.positional[1]) else { fail("no key '\(args.positional[1])'", code: 1) } } catch { fail(error.message, code: 1) }
    default: fail("key add|list|remove")
    }
case "user":
    do { try args.check(known: ["journal", "role", "password"]) } catch { fail(error.message) }
    let j = openJournal()
    defer { j.close() }
    switch args.positional.first {
    case "add":
        guard args.positional.count == 2 else { fail("user add NAME") }
        let role = args.get("role") ?? "user"
        guard role == "user" || role == "admin" else { fail("--role user|admin") }
        let password = args.get("password") ?? Secrets.randomHex(12)
        do {
            guard try j.addUser(name: args.positional[1], passwordHash: PasswordHash.hash(password), role: role, nowMs: now()) else {
                fail("user '\(args.positional[1])' exists", code: 1)
            }
        } catch { fail(error.message, code: 1) }
        if args.get("password") == nil { printOut(password) }
    case "list":
        do { for u in try j.listUsers() { printOut("\(u.name)\t\(u.role)") } } catch { fail(error.message, code: 1) }
    case "remove":
        guard args.positional.count == 2 else { fail("user remove NAME") }
        do { guard try j.removeUser(name: args.positional[1]) else { fail("no user '\(args.positional[1])'", code: 1) } } catch { fail(error.message, code: 1) }
    default: fail("user add|list|remove")
    }
case "token":
    do { try args.check(known: ["journal", "user", "ttl"]) } catch { fail(error.message) }
    guard let user = args.get("user") else { fail("token --user NAME") }
    let ttl: Int64
    do { ttl = try args.int("ttl", -86_400 * 365...86_400 * 365) ?? 3600 } catch { fail(error.message) }
    let j = openJournal()
    defer { j.close() }
    do {
        guard let u = try j.user(name: user) else { fail("no user '\(user)' (orchestra-hub user add \(user))", code: 1) }
        let secret = try Hub.jwtSecret(j)
        printOut(JWT.issue(subject: user, role: u.role, ttlSeconds: ttl, secret: secret, nowSeconds: now() / 1000))
    } catch { fail(error.message, code: 1) }
case "dead":
    do { try args.check(known: ["journal"]) } catch { fail(error.message) }
    let j = openJournal()
    defer { j.close() }
    switch args.positional.first {
    case "list", nil:
        do {
            for t in try j.deadLetters() {
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
