import Testing
import OrchestraCore
@testable import OrchestraHub

/// The authorization table and its rules, without a hub: every rule refuses someone and admits
/// someone, and every request type of every endpoint has rules.
@Suite struct AccessTests {
    let alice = Caller.user(name: "alice", role: .user)
    let bob = Caller.user(name: "bob", role: .user)
    let vera = Caller.user(name: "vera", role: .viewer)
    let root = Caller.user(name: "root", role: .admin)

    func allows(_ c: Caller, _ type: String, task: TaskFacts? = nil, session: SessionFacts? = nil,
                registration: RegistrationFacts? = nil, table: [String: [AccessRule]] = Access.web) -> AccessRule? {
        let rules = table[type]!
        do {
            try Access.check(rules, c, AccessRequest(type: type, task: task, session: session, registration: registration))
            return nil
        } catch { return error.rule }
    }

    @Test func ownersAdminsAndViewers() {
        let own = TaskFacts(owner: "alice", sessionId: "s", leasedTo: "a1")
        let shared = SessionFacts(owner: "alice", sharedWith: ["bob"])
        #expect(allows(alice, "task.cancel", task: own) == nil)
        #expect(allows(bob, "task.cancel", task: own) == .taskOwner)
        #expect(allows(root, "task.cancel", task: own) == nil)
        #expect(allows(vera, "task.cancel", task: own) == .controlRole)
        #expect(allows(bob, "task.get", task: own) == .taskRead)
        #expect(allows(bob, "task.get", task: own, session: shared) == nil)
        #expect(allows(vera, "task.get", task: own) == nil)
        #expect(allows(bob, "session.join", session: shared) == nil)
        #expect(allows(Caller.user(name: "carol", role: .user), "session.join", session: shared) == .sessionRead)
        #expect(allows(bob, "task.submit", session: shared) == nil)
        #expect(allows(bob, "task.submit", task: own) == .taskOwnerIfExists)
        #expect(allows(bob, "task.submit") == nil)
        #expect(allows(vera, "task.submit") == .submitRole)
        #expect(allows(bob, "session.share", session: shared) == .sessionOwner)
        #expect(allows(alice, "session.share", session: shared) == nil)
        #expect(allows(alice, "dead.list") == .adminRole)
        #expect(allows(root, "dead.requeue") == nil)
        // A task that recorded no submitter (older journals) is an admin's alone.
        let orphan = TaskFacts(owner: nil, sessionId: nil, leasedTo: nil)
        #expect(allows(alice, "task.cancel", task: orphan) == .taskOwner)
        #expect(allows(root, "task.cancel", task: orphan) == nil)
    }

    @Test func agentsAndTheirLeasesKeysAndBindings() {
        let a1 = Caller.agent(id: "a1", keyId: "k1")
        let leased = TaskFacts(owner: "alice", sessionId: nil, leasedTo: "a1")
        #expect(allows(a1, "task.result", task: leased, table: Access.agent) == nil)
        #expect(allows(.agent(id: "a2", keyId: "k2"), "task.result", task: leased, table: Access.agent) == .lease)
        #expect(allows(.unregisteredAgent, "task.result", task: leased, table: Access.agent) == .registered)
        #expect(allows(alice, "task.result", task: leased, table: Access.agent) == .registered)
        let scope = AgentIdScope("build-*")
        let bound = RegistrationFacts(agentId: "build-1", keyId: "k2", boundKey: "k1", scope: nil)
        #expect(allows(.unregisteredAgent, "agent.register", registration: bound, table: Access.agent) == .keyBinding)
        let outOfScope = RegistrationFacts(agentId: "deploy-1", keyId: "k1", boundKey: nil, scope: scope)
        #expect(allows(.unregisteredAgent, "agent.register", registration: outOfScope, table: Access.agent) == .keyScope)
        let fine = RegistrationFacts(agentId: "build-1", keyId: "k1", boundKey: "k1", scope: scope)
        #expect(allows(.unregisteredAgent, "agent.register", registration: fine, table: Access.agent) == nil)
        #expect(allows(a1, "agent.register", registration: fine, table: Access.agent) == .registerOnce)
    }

    @Test func httpPaths() {
        #expect(allows(.anonymous, "GET /health", table: Access.http) == nil)
        #expect(allows(.anonymous, "GET /metrics", table: Access.http) == nil)
        #expect(allows(.anonymous, "GET /health/agents", table: Access.http) == .anyUser)
        #expect(allows(vera, "GET /health/agents", table: Access.http) == nil)
    }

    /// Every rule of every table refuses some caller (no rule is "everyone") but `public`.
    @Test func everyRuleInTheTablesRefusesSomeone() {
        let callers: [Caller] = [alice, vera, root, .agent(id: "x", keyId: "k"), .unregisteredAgent, .anonymous]
        let facts = AccessRequest(type: "", task: TaskFacts(owner: "nobody", sessionId: nil, leasedTo: "other"),
                                  session: SessionFacts(owner: "nobody", sharedWith: []),
                                  registration: RegistrationFacts(agentId: "x", keyId: "k", boundKey: "k0", scope: AgentIdScope("y")),
                                  listSubmitter: "nobody",
                                  login: LoginFacts(userFailures: LoginThrottle.maxFailures, addressFailures: 0, retryAfterSeconds: 1))
        var used = Set<AccessRule>()
        for table in [Access.web, Access.agent, Access.http] { for rules in table.values { used.formUnion(rules) } }
        for rule in used where rule != .publicPath {
            #expect(callers.contains { rule.refusal($0, facts) != nil }, "\(rule.rawValue) refuses nobody")
        }
    }

    @Test func agentIdScopes() {
        #expect(AgentIdScope("build-*")!.admits("build-7"))
        #expect(!AgentIdScope("build-*")!.admits("deploy-1"))
        #expect(AgentIdScope("a,b")!.admits("b") && !AgentIdScope("a,b")!.admits("ab"))
        #expect(AgentIdScope("*")!.admits("anything"))
        for bad in ["", "a,", ",a", "a*b", "**", String(repeating: "x", count: 129)] {
            #expect(AgentIdScope(bad) == nil, "\(bad)")
        }
    }
}
