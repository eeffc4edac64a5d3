"""The dashboard's requests at the wire (docs/protocol.md, "Dashboard"), against the real
orchestra-hub on either journal: tasks.list (filters, search, keyset paging, a user's scope),
stats.get, the alert rules and their events, POST /auth/login (its rate limit and refusals that
never tell whether a user exists), the page's files; each with its bad input and the refusals
of its rules (docs/security.md)."""
import asyncio
import json
import socket
import time
import urllib.error
import urllib.request

import pytest

from conftest import Web, envelope, raw_agent, wait_until


def denied(reply, rule):
    assert reply["type"] == "error", reply
    p = reply["payload"]
    assert p["code"] == "AUTH_001" and p["details"]["rule"] == rule, reply
    return p


def param_error(reply, field=None):
    assert reply["type"] == "error" and reply["payload"]["code"] == "PARAM_001", reply
    if field:
        assert reply["payload"]["details"]["field"] == field, reply
    return reply["payload"]


def http(hub, path, *, method="GET", body=None, headers=None):
    req = urllib.request.Request(f"http://127.0.0.1:{hub.port}{path}", data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def login(hub, user, password, **kw):
    body = json.dumps({"user": user, "password": password}).encode()
    return http(hub, "/auth/login", method="POST", body=body, headers={"Content-Type": "application/json", **kw})


def raw_http(hub, data):
    """Sends raw bytes; returns what the hub answers before it closes."""
    with socket.create_connection(("127.0.0.1", hub.port), timeout=10) as s:
        s.sendall(data)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk


async def users(hub, *specs):
    return [await Web.open(hub, hub.token(name, role=role)) for name, role in specs]


async def list_all(web, **query):
    """Every page of tasks.list with `query`, following `next`; the ids in order."""
    ids, after, pages = [], None, 0
    while True:
        q = dict(query, **({"after": after} if after else {}))
        r = await web.request("tasks.list", q)
        assert r["type"] == "tasks.page", r
        ids += [t["taskId"] for t in r["payload"]["tasks"]]
        pages += 1
        after = r["payload"]["next"]
        if after is None:
            return ids, pages
        assert pages < 100


async def test_tasks_list_pages_newest_first_filters_and_searches(hub):
    hub.start()
    alice, vera, root = await users(hub, ("alice", "user"), ("vera", "viewer"), ("root", "admin"))
    ids = []
    for i in range(7):
        ids.append(await alice.submit(f"echo step-{i}", taskId=f"t-{i}", type="shell" if i % 2 else "Build"))
    newest_first = list(reversed(ids))
    for who in (alice, vera, root):
        got, pages = await list_all(who, limit=2)
        assert got == newest_first and pages == 4
    page = (await vera.request("tasks.list", {"limit": 3}))["payload"]
    row = page["tasks"][0]
    assert row["taskId"] == "t-6" and row["state"] == "queued" and row["attempt"] == 0 and row["submitter"] == "alice"
    assert row["task"]["parameters"] == {"command": "echo step-6"} and "createdAt" in row and "duration" not in row
    # Search: a task id, text in the parameters (any case), the type.
    assert (await list_all(vera, search="t-3"))[0] == ["t-3"]
    assert (await list_all(vera, search="STEP-5"))[0] == ["t-5"]
    assert (await list_all(vera, search="build"))[0] == ["t-6", "t-4", "t-2", "t-0"]
    assert (await list_all(vera, search="100%_"))[0] == []   # LIKE's wildcards are plain text
    assert (await list_all(vera, states=["queued"]))[0] == newest_first
    assert (await list_all(vera, states=["running", "succeeded"]))[0] == []
    assert (await list_all(vera, dead=True))[0] == []
    # Bad input: PARAM_001 naming the field; nothing changes.
    param_error(await vera.request("tasks.list", {"states": ["nope"]}), "states")
    param_error(await vera.request("tasks.list", {"states": "queued"}), "states")
    param_error(await vera.request("tasks.list", {"limit": 0}), "limit")
    param_error(await vera.request("tasks.list", {"limit": 501}), "limit")
    param_error(await vera.request("tasks.list", {"after": "not-a-cursor"}), "after")
    param_error(await vera.request("tasks.list", {"search": 5}), "search")
    param_error(await vera.request("tasks.list", {"dead": "yes"}), "dead")
    param_error(await vera.request("tasks.list", {"sessionId": ""}), "sessionId")
    # History is the journal's: after a restart every task is still listed.
    for c in (alice, vera, root):
        await c.close()
    hub.stop()
    hub.start()
    vera = await Web.open(hub, hub.token("vera"))
    assert (await list_all(vera, limit=5))[0] == newest_first
    await vera.close()


async def test_tasks_list_shows_a_user_their_tasks_and_their_sessions(hub):
    hub.start()
    alice, bob, vera, root = await users(hub, ("alice", "user"), ("bob", "user"), ("vera", "viewer"), ("root", "admin"))
    a1 = await alice.submit("a", taskId="a1")
    await bob.request("session.join", {"sessionId": "bob-shared"})
    await bob.request("session.join", {"sessionId": "bob-private"})
    b1 = await bob.submit("b", taskId="b1", sessionId="bob-shared")
    b2 = await bob.submit("b", taskId="b2", sessionId="bob-private")
    b3 = await bob.submit("b", taskId="b3")
    assert (await bob.request("session.share", {"sessionId": "bob-shared", "users": ["alice"]}))["type"] == "session.updated"
    assert (await list_all(alice))[0] == [b1, a1]
    assert (await list_all(bob))[0] == [b3, b2, b1]
    assert (await list_all(alice, sessionId="bob-shared"))[0] == [b1]
    assert (await list_all(alice, submitter="alice"))[0] == [a1]
    # Refusals: another user's tasks, a session not shared with her.
    denied(await alice.request("tasks.list", {"submitter": "bob"}), "task.list-scope")
    denied(await alice.request("tasks.list", {"sessionId": "bob-private"}), "session.read")
    assert [e for e in hub.events("auth.denied") if e.get("rule") == "task.list-scope"]
    # Viewers and admins see everything, and may ask for anyone's.
    for who in (vera, root):
        assert (await list_all(who))[0] == [b3, b2, b1, a1]
        assert (await list_all(who, submitter="bob"))[0] == [b3, b2, b1]
        assert (await list_all(who, sessionId="bob-private"))[0] == [b2]
    for c in (alice, bob, vera, root):
        await c.close()


async def agent_session(hub, agent_id="a1", key="k1"):
    secret = hub.add_key(key)
    ws, r = await raw_agent(hub, agent_id, key, secret)
    assert r["type"] == "agent.registered", r
    return ws


async def next_of(ws, type_, timeout=20):
    end = time.monotonic() + timeout
    while True:
        m = json.loads(await asyncio.wait_for(ws.recv(), max(0.01, end - time.monotonic())))
        if m["type"] == type_:
            return m


async def run_task(ws, web, command, *, success=True, hold=0.0):
    """Submits a task, lets the raw agent take it, hold it and finish it."""
    tid = await web.submit(command)
    a = (await next_of(ws, "task.assign"))["payload"]
    assert a["taskId"] == tid
    await ws.send(json.dumps(envelope("task.accepted", {"taskId": tid, "attempt": a["attempt"]})))
    if hold:
        await asyncio.sleep(hold)
    await ws.send(json.dumps(envelope("task.result", {"taskId": tid, "attempt": a["attempt"], "success": success,
                                                       **({} if success else {"error": "boom"})})))
    await web.result(tid)
    return tid


async def test_finished_tasks_have_durations_and_the_stats_see_them(hub):
    hub.start()
    alice, vera = await users(hub, ("alice", "user"), ("vera", "viewer"))
    ws = await agent_session(hub)
    ok = await run_task(ws, alice, "ok", hold=0.05)
    bad = await run_task(ws, alice, "bad", success=False)
    rows = {t["taskId"]: t for t in (await vera.request("tasks.list", {}))["payload"]["tasks"]}
    assert rows[ok]["state"] == "succeeded" and rows[ok]["duration"] >= 50 and rows[ok]["agentId"] == "a1"
    assert rows[bad]["state"] == "failed" and rows[bad]["error"] == "boom"
    assert (await list_all(vera, states=["failed"]))[0] == [bad]

    def finished(points):
        return sum(p["succeeded"] + p["failed"] for p in points)

    # The stats take a sample a second: both tasks appear in a point within a few seconds.
    end = time.monotonic() + 15
    while True:
        s = (await vera.request("stats.get", {"minutes": 1}))["payload"]
        if finished(s["points"]) == 2 or time.monotonic() > end:
            break
        await asyncio.sleep(0.3)
    assert finished(s["points"]) == 2, s
    assert any("latencyP99Ms" in p for p in s["points"]) and s["tasks"]["succeeded"] == 1 and s["tasks"]["failed"] == 1
    assert s["agents"] == {"total": 1, "online": 1} and s["heartbeatMs"] == 5000 and s["stepSeconds"] == 1
    param_error(await vera.request("stats.get", {"minutes": 0}), "minutes")
    param_error(await vera.request("stats.get", {"minutes": "ten"}), "minutes")
    for c in (alice, vera):
        await c.close()
    await ws.close()


async def test_an_agent_offline_too_long_raises_an_alert_resolved_when_it_returns(hub):
    hub.start("--alert-agent-offline-s", "1", "--heartbeat-ms", "200")
    vera, = await users(hub, ("vera", "viewer"))
    secret = hub.add_key("k1")
    ws, _ = await raw_agent(hub, "a1", "k1", secret)
    await ws.close()
    raised = (await vera.wait(lambda: vera.of("alert.raised"), 20, "alert.raised"))[0]["payload"]
    assert raised["rule"] == "agent.offline" and raised["subject"] == "a1" and raised["id"] == "agent.offline:a1"
    assert raised["threshold"] == 1 and "a1" in raised["message"]
    listed = (await vera.request("alerts.list", {}))["payload"]
    assert [a["id"] for a in listed["alerts"]] == ["agent.offline:a1"] and listed["rules"]["agentOfflineSeconds"] == 1
    health = hub.health()
    assert [a["rule"] for a in health["alerts"]] == ["agent.offline"] and "a1" not in json.dumps(health["alerts"])
    metrics = http(hub, "/metrics")[2].decode()
    assert 'orchestra_hub_alerts{rule="agent.offline"} 1' in metrics
    ws, _ = await raw_agent(hub, "a1", "k1", secret)
    resolved = (await vera.wait(lambda: vera.of("alert.resolved"), 20, "alert.resolved"))[0]["payload"]
    assert resolved["id"] == "agent.offline:a1" and resolved["resolvedAt"] >= resolved["raisedAt"]
    assert (await vera.request("alerts.list", {}))["payload"]["alerts"] == []
    assert hub.health()["alerts"] == []
    assert [e["id"] for e in hub.events("alert.raised")] == ["agent.offline:a1"]
    await vera.close()
    await ws.close()


async def test_error_rate_and_latency_alerts_over_their_window(hub):
    hub.start("--alert-error-rate", "50", "--alert-latency-p99-ms", "150", "--alert-window-s", "3")
    alice, = await users(hub, ("alice", "user"))
    ws = await agent_session(hub)
    for _ in range(5):
        await run_task(ws, alice, "fails", success=False)
    raised = (await alice.wait(lambda: alice.of("alert.raised"), 20, "alert.raised"))[0]["payload"]
    assert raised["id"] == "task.error-rate" and raised["value"] == 100 and "5 of 5" in raised["message"]
    # Out of the window, nothing fails any more: resolved.
    resolved = (await alice.wait(lambda: alice.of("alert.resolved"), 20, "alert.resolved"))[0]["payload"]
    assert resolved["id"] == "task.error-rate"
    await run_task(ws, alice, "slow", hold=0.4)
    slow = (await alice.wait(lambda: [e for e in alice.of("alert.raised") if e["payload"]["id"] == "task.latency"], 20,
                             "the latency alert"))[0]["payload"]
    assert slow["value"] > 150 and slow["threshold"] == 150
    await alice.wait(lambda: [e for e in alice.of("alert.resolved") if e["payload"]["id"] == "task.latency"], 20,
                     "the latency alert resolved")
    await alice.close()
    await ws.close()


async def test_login_gives_a_token_and_refuses_without_telling_who_exists(hub):
    hub.start()
    hub.cli("user", "add", "alice", "--password", "right horse battery", "--role", "viewer")
    hub.cli("user", "add", "dora", "--password", "dora-pw")
    hub.cli("user", "disable", "dora")
    status, headers, body = login(hub, "alice", "right horse battery")
    assert status == 200, body
    got = json.loads(body)
    assert got["user"] == "alice" and got["role"] == "viewer" and got["expiresAt"] > time.time()
    assert headers["Cache-Control"] == "no-store"
    web = await Web.open(hub, got["token"])
    assert (await web.request("agents.list", {}))["type"] == "agents.updated"
    await web.close()
    # Wrong password, unknown user, disabled user: the same answer.
    answers = [login(hub, "alice", "wrong"), login(hub, "nobody", "wrong"), login(hub, "dora", "dora-pw")]
    for status, _, body in answers:
        assert status == 401
        b = json.loads(body)
        assert b["code"] == "AUTH_001" and b["message"] == "login: invalid user or password"
    assert len(hub.events("auth.login_failed")) == 3 and len(hub.events("auth.login")) == 1
    # Bad input.
    assert login(hub, "", "x")[0] == 400
    assert http(hub, "/auth/login", method="POST", body=b"{not json", headers={"Content-Type": "application/json"})[0] == 400
    assert http(hub, "/auth/login", method="POST", body=b"[1,2]", headers={"Content-Type": "application/json"})[0] == 400
    assert http(hub, "/auth/login", method="POST", body=b"user=alice", headers={"Content-Type": "application/x-www-form-urlencoded"})[0] == 415
    assert http(hub, "/auth/login")[0] == 405
    big = raw_http(hub, b"POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 20000\r\n\r\n")
    assert big.startswith(b"HTTP/1.1 413 ")
    chunked = raw_http(hub, b"POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                            b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n")
    assert chunked.startswith(b"HTTP/1.1 400 ") and b"chunked" in chunked


async def test_login_is_rate_limited_per_user_and_per_address(hub):
    hub.start()
    hub.cli("user", "add", "alice", "--password", "alice-pw")
    hub.cli("user", "add", "bob", "--password", "bob-pw")
    for _ in range(5):
        assert login(hub, "alice", "guess")[0] == 401
    # The user is locked, even with the right password; the refusal names the rule.
    status, headers, body = login(hub, "alice", "alice-pw")
    assert status == 429 and int(headers["Retry-After"]) > 0
    b = json.loads(body)
    assert b["code"] == "AUTH_001" and b["details"]["rule"] == "login.rate"
    assert [e for e in hub.events("auth.denied") if e.get("rule") == "login.rate"]
    # The same address has failed five times too: bob, from it, waits as well.
    assert login(hub, "bob", "bob-pw")[0] == 429
    # A user nobody has: the same rules, the same answers.
    assert login(hub, "ghost", "x")[0] == 429
    # Failures are in memory: a restarted hub starts over (the journal holds no login state).
    hub.stop()
    hub.start()
    assert login(hub, "bob", "bob-pw")[0] == 200


async def test_the_page_is_public_holds_no_data_and_its_files_stay_inside_the_root(hub, tmp_path):
    root = tmp_path / "webroot"
    (root / "js").mkdir(parents=True)
    (root / "index.html").write_text("<!doctype html><title>orchestra</title>")
    (root / "js" / "app.js").write_text("export const x = 1;")
    (root / ".secret").write_text("no")
    (tmp_path / "outside.txt").write_text("no")
    hub.start("--web-root", str(root))
    status, headers, body = http(hub, "/")
    assert status == 200 and body.startswith(b"<!doctype html>") and headers["Content-Type"].startswith("text/html")
    assert "script-src 'self'" in headers["Content-Security-Policy"] and headers["X-Content-Type-Options"] == "nosniff"
    status, headers, body = http(hub, "/ui/js/app.js")
    assert status == 200 and headers["Content-Type"].startswith("text/javascript") and body == b"export const x = 1;"
    assert http(hub, "/ui/js/app.js", headers={"If-None-Match": headers["ETag"]})[0] == 304
    for bad in ("/ui/.secret", "/ui/../outside.txt", "/ui/%2e%2e/outside.txt", "/ui/js", "/ui/", "/ui//js/app.js", "/nothing"):
        assert http(hub, bad)[0] == 404, bad
    assert raw_http(hub, b"GET /ui/../../outside.txt HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 404 ")
    assert http(hub, "/", method="POST", body=b"x")[0] == 405
    hub.stop()
    hub.start("--no-web")
    assert http(hub, "/")[0] == 404 and http(hub, "/health")[0] == 200


async def test_finished_tasks_leave_the_journal_after_the_retention_and_dead_letters_stay(hub):
    """--task-retention-ms: finished tasks are deleted once that long has passed since they
    finished; dead letters and tasks not finished are not."""
    hub.start("--max-attempts", "1", "--lease-ms", "300", "--task-retention-ms", "1500")
    root, = await users(hub, ("root", "admin"))
    ws = await agent_session(hub)
    dead = await root.submit("dies")
    await next_of(ws, "task.assign")
    await root.result(dead)   # its lease ran out: dead at its first attempt
    ok = await run_task(ws, root, "ok")
    bad = await run_task(ws, root, "bad", success=False)
    r = await root.request("task.submit", {"type": "shell", "capabilities": ["gpu"], "parameters": {"command": "waits"}})
    assert r["type"] == "task.submitted", r
    held = r["payload"]["taskId"]   # no agent can run it: it stays queued
    assert (await list_all(root))[0] == [held, bad, ok, dead]
    # Kept while younger than the retention, gone after it (looked at once a second here).
    await asyncio.to_thread(wait_until, lambda: hub.events("tasks.pruned"), 10, "tasks.pruned")
    assert (await list_all(root))[0] == [held, dead]
    assert (await list_all(root, dead=True))[0] == [dead]
    with hub.db() as db:
        assert db.execute("SELECT count(*) FROM tasks WHERE id IN (?, ?)", (ok, bad)).fetchone()[0] == 0
    r = await root.request("task.get", {"taskId": ok})
    assert r["type"] == "error" and r["payload"]["code"] == "PARAM_001" and "no task" in r["payload"]["message"], r
    assert sum(e["tasks"] for e in hub.events("tasks.pruned")) == 2


async def test_dead_letters_bad_input_and_refusals(hub):
    hub.start("--max-attempts", "1", "--lease-ms", "300")
    alice, vera, root = await users(hub, ("alice", "user"), ("vera", "viewer"), ("root", "admin"))
    ws = await agent_session(hub)
    tid = await alice.submit("dies")
    await next_of(ws, "task.assign")
    await alice.result(tid)
    for who in (alice, vera):
        denied(await who.request("dead.list", {}), "role.admin")
        denied(await who.request("dead.requeue", {"taskId": tid}), "role.admin")
    param_error(await root.request("dead.list", {"limit": 0}), "limit")
    param_error(await root.request("dead.list", {"limit": "all"}), "limit")
    param_error(await root.request("dead.requeue", {}), "taskId")
    param_error(await root.request("dead.requeue", {"taskId": "x" * 129}), "taskId")
    assert (await list_all(vera, dead=True))[0] == [tid]
    assert [t["taskId"] for t in (await root.request("dead.list", {"limit": 1}))["payload"]["tasks"]] == [tid]
    assert (await root.request("dead.requeue", {"taskId": tid}))["type"] == "dead.requeued"
    assert (await list_all(vera, dead=True))[0] == []
    param_error(await root.request("dead.requeue", {"taskId": tid}))   # not dead any more
    for c in (alice, vera, root):
        await c.close()
    await ws.close()
