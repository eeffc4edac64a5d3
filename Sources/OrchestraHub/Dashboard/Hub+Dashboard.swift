import OrchestraCore
import OrchestraNet

/// What the dashboard keeps in the hub: the recent stats, the active alerts, failed logins,
/// the page's files. Touched on the I/O thread only.
final class Dashboard {
    var stats: StatsRecorder
    var alerts = AlertBook()
    let rules: AlertRules
    var logins = LoginThrottle()
    var loginsInFlight = 0
    var files: StaticFiles? = nil
    var timerId: UInt64 = 0

    init(_ config: HubConfig) {
        rules = AlertRules(config)
        stats = StatsRecorder(keepSeconds: max(600, Int(config.alertWindowSeconds)))
    }
}

/// The dashboard's side of the hub (docs/protocol.md, "Dashboard"): `tasks.list`, `stats.get`,
/// `alerts.list`, the alert rules and their events, `POST /auth/login` and the page's files.
extension Hub {
    /// Loads the page's files and starts the once-a-second sampling of stats and alerts. On the
    /// caller's thread, from `start`.
    func startDashboard() throws(OrchestraError) {
        if let root = config.webRoot {
            do {
                dashboard.files = try StaticFiles(root: root)
                log.info("web.root", ["path": .string(root), "files": .int(Int64(dashboard.files!.files.count))])
            } catch {
                log.warn("web.root_unusable", ["path": .string(root), "reason": .string(error.message)])
            }
        }
        metrics.register(owner: self) { hub in hub.alertSamples() }
        dashboard.timerId = try runtime.startTimer(delayMs: 1000, repeatMs: 1000, fire: { [self] in dashboardTick() })
    }

    /// Once a second: a stats sample, then the alert rules against it.
    func dashboardTick() {
        guard !shuttingDown else { return }
        let now = wallClockMillis()
        dashboard.stats.sample(nowMs: now, submitted: submitted.value, succeeded: succeeded.value, failed: failedCount.value,
                               latency: taskLatency.snapshot(), queued: pendingCount,
                               inFlight: live.values.reduce(0) { $0 + ($1.rec.state == .assigned ? 1 : 0) })
        let conditions = dashboard.rules.conditions(agents: Array(agents.values), stats: dashboard.stats, nowMs: now)
        let (raised, resolved) = dashboard.alerts.update(conditions, nowMs: now)
        for a in raised {
            log.warn("alert.raised", ["id": .string(a.id), "rule": .string(a.rule), "message": .string(a.message)])
            broadcastWeb(HubEnvelope.make("alert.raised", a.json))
        }
        for a in resolved {
            var o = a.json
            o.set("resolvedAt", .int(now))
            log.info("alert.resolved", ["id": .string(a.id), "rule": .string(a.rule)])
            broadcastWeb(HubEnvelope.make("alert.resolved", o))
        }
    }

    /// `orchestra_hub_alerts{rule}`: the alerts active now, per rule (0 when none).
    func alertSamples() -> [MetricSample] {
        var byRule: [String: Int] = [:]
        for a in dashboard.alerts.active.values { byRule[a.rule, default: 0] += 1 }
        return AlertRules.names.map {
            MetricSample(name: "orchestra_hub_alerts", help: "Alerts active now, by rule", kind: .gauge, labels: ["rule": $0],
                         value: Double(byRule[$0] ?? 0))
        }
    }

    /// The active alerts as the public /health lists them (rules and figures, no names).
    func alertsHealthJSON() -> JSONValue { .array(dashboard.alerts.sorted.map(\.healthJSON)) }

    /// What the authorization check needs of a dashboard request beyond the ids it names.
    func dashboardFacts(_ req: inout AccessRequest, _ f: Fields) {
        if f.event == "tasks.list" { req.listSubmitter = f.v["submitter"]?.string }
    }

    /// `tasks.list`, `stats.get`, `alerts.list`, after their rules.
    func performDashboard(_ p: Peer, _ m: Message, _ f: Fields, _ facts: WebFacts) throws(HubError) {
        let reqId = m.id
        switch m.type {
        case "tasks.list":
            let q = try taskQuery(p, f)
            store.tasks(q) { [self] r in
                answer(p, reqId, type: "tasks.list") { () throws(HubError) in
                    let page: TaskPage
                    switch r {
                    case .failure(let e): throw HubError.database(e)
                    case .success(let x): page = x
                    }
                    var o: JSONValue = ["tasks": .array(page.tasks.map(taskRow))]
                    o.set("next", page.next.map { .string($0.text) } ?? .null)
                    send(p, HubEnvelope.make("tasks.page", o, correlationId: reqId))
                }
            }
        case "stats.get":
            let minutes = try f.optionalInt("minutes", in: 1...60) ?? 10
            let now = wallClockMillis()
            let (step, points) = dashboard.stats.series(seconds: Int(minutes) * 60, points: 60, nowMs: now)
            // The counts are the journal's (every hub's tasks), read now.
            store.taskCounts { [self] r in
                answer(p, reqId, type: "stats.get") { () throws(HubError) in
                    let counts: (byState: [TaskState: Int], dead: Int)
                    switch r {
                    case .failure(let e): throw HubError.database(e)
                    case .success(let c): counts = c
                    }
                    let online = agents.values.filter { $0.online }.count
                    send(p, HubEnvelope.make("stats", [
                        "now": .int(now), "stepSeconds": .int(Int64(step)), "points": .array(points),
                        "tasks": countsJSON(counts), "queued": .int(Int64(pendingCount)),
                        "agents": ["total": .int(Int64(agents.count)), "online": .int(Int64(online))],
                        "heartbeatMs": .int(config.heartbeatIntervalMs), "missedHeartbeats": .int(config.missedHeartbeats),
                        "alerts": .int(Int64(dashboard.alerts.active.count)),
                    ], correlationId: reqId))
                }
            }
        case "alerts.list":
            send(p, HubEnvelope.make("alerts", ["alerts": .array(dashboard.alerts.sorted.map(\.json)), "rules": dashboard.rules.json],
                                     correlationId: reqId))
        default:
            throw HubError(.invalidParameters, "unknown event type '\(m.type)' for a web client")
        }
    }

    /// Tasks per state as the journal counts them; the tasks it keeps as `assigned` are told
    /// apart by this hub's own (accepted by their agent: `running`).
    func countsJSON(_ c: (byState: [TaskState: Int], dead: Int)) -> JSONValue {
        let held = (c.byState[.assigned] ?? 0) + (c.byState[.running] ?? 0)
        let running = min(held, live.values.reduce(0) { $0 + ($1.running && $1.rec.state == .assigned ? 1 : 0) })
        return ["queued": .int(Int64(c.byState[.queued] ?? 0)), "assigned": .int(Int64(held - running)), "running": .int(Int64(running)),
                "succeeded": .int(Int64(c.byState[.succeeded] ?? 0)), "failed": .int(Int64(c.byState[.failed] ?? 0)),
                "dead": .int(Int64(c.dead))]
    }

    /// The journal query of a `tasks.list` request. A user (role `user`) who names neither a
    /// session nor a submitter sees their own tasks and their sessions'; the rules have already
    /// refused another submitter and a session they may not read.
    func taskQuery(_ p: Peer, _ f: Fields) throws(HubError) -> TaskQuery {
        var q = TaskQuery()
        q.limit = Int(try f.optionalInt("limit", in: 1...500) ?? 50)
        for name in try f.strings("states", maxCount: 8) {
            guard let s = TaskState(rawValue: name) else {
                throw f.bad("states", "holds '\(name)': states are \(TaskState.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            q.states.append(s)
        }
        if let d = f.v["dead"], !d.isNull {
            guard let b = d.bool else { throw f.bad("dead", "must be true or false") }
            q.deadOnly = b
        }
        q.text = try f.optionalString("search", maxLength: 256)
        q.submitter = try f.optionalString("submitter", maxLength: Fields.maxIdBytes)
        q.sessionId = try f.optionalId("sessionId")
        if let after = try f.optionalString("after", maxLength: 160) {
            guard let c = TaskCursor(after) else { throw f.bad("after", "is not a cursor from a tasks.page 'next'") }
            q.after = c
        }
        if p.userRole == .user && q.sessionId == nil && q.submitter == nil { q.visibleTo = p.user }
        return q
    }

    /// A row of `tasks.page`: the `task.state` payload, plus the task's duration once finished.
    func taskRow(_ rec: TaskRecord) -> JSONValue {
        var o = taskJSON(rec)
        if rec.state.isFinished { o.set("duration", .int(max(0, rec.updatedMs - rec.createdMs))) }
        return o
    }

    // MARK: HTTP

    /// The dashboard's HTTP requests: the page's files (`GET /`, `GET /ui/...`) and
    /// `POST /auth/login`. Nil when the request is none of these (the hub's other paths).
    func dashboardHTTP(_ request: HTTPRequestInfo, respond: @escaping (HTTPResponse) -> Void) -> Bool? {
        let type: String
        if request.path == "/auth/login" {
            guard request.method == "POST" else {
                respond(HTTPResponse.json(405, HubError(.invalidParameters, "POST /auth/login only").info()))
                return true
            }
            type = "POST /auth/login"
        } else if request.path == "/" || request.path == "/index.html" || request.path.hasPrefix("/ui/") {
            let notFound = HTTPResponse(status: 404, headers: [HTTPField("Content-Type", "text/plain")], body: Array("not found\n".utf8))
            guard let files = dashboard.files else { respond(notFound); return true }   // --no-web
            guard request.method == "GET" || request.method == "HEAD" else {
                respond(HTTPResponse.json(405, HubError(.invalidParameters, "only GET").info()))
                return true
            }
            type = request.path.hasPrefix("/ui/") ? "GET /ui/*" : "GET /"
            guard let rules = Access.rules(Access.http, type) else { respond(notFound); return true }
            do throws(AccessDenial) { try Access.check(rules, .anonymous, AccessRequest(type: type)) } catch {
                respond(notFound)
                return true
            }
            respond(files.response(request) ?? notFound)
            return true
        } else {
            return nil
        }
        // POST /auth/login: the body, then the rules (the rate limit), then the password.
        guard (request.header("Content-Type") ?? "").lowercased().hasPrefix("application/json") else {
            respond(HTTPResponse.json(415, HubError(.invalidParameters, "login: send a JSON body (Content-Type: application/json)").info()))
            return true
        }
        let body: JSONValue
        do { body = try JSONValue.parse(request.body, limits: DecodeLimits(maxSize: 16 << 10, maxDepth: 4)) } catch {
            respond(HTTPResponse.json(400, HubError(.invalidParameters, "login: the body is not JSON: \(error.message)").info()))
            return true
        }
        let f = Fields("login", body)
        let user: String, password: String
        do throws(HubError) {
            guard case .object = body else { throw HubError(.invalidParameters, "login: the body must be an object {\"user\",\"password\"}") }
            user = try f.string("user", maxLength: 128)
            password = try f.string("password", maxLength: 1024)
        } catch {
            respond(HTTPResponse.json(400, error.info()))
            return true
        }
        let now = wallClockMillis()
        var req = AccessRequest(type: type, target: "user \(user)")
        req.login = dashboard.logins.counts(user: user, address: Hub.addressOnly(request.remoteAddress), nowMs: now)
        if let rules = Access.rules(Access.http, type) {
            do throws(AccessDenial) { try Access.check(rules, .anonymous, req) } catch {
                let e = denied(who: .anonymous, request: req, error, conn: nil)
                respond(HTTPResponse.json(429, e.info()).retryAfter(req.login!.retryAfterSeconds))
                return true
            }
        }
        login(request, user: user, password: password, respond: respond)
        return true
    }
}
