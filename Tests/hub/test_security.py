"""The trust model (docs/security.md) at the wire, against the real orchestra-hub: one test per
rule and per attack, each asserting the refusal, its error code and rule, and that the victim's
task, session and journal are untouched; and the positive cases (owner, admin, viewer, shared
session), so that the rules are not simply "refuse everything"."""
import asyncio
import json
import os
import stat
import sys
import time
import urllib.error
import urllib.request
import uuid

import pytest
import websockets
from websockets.asyncio.client import connect

from conftest import BUILD, ROOT, Web, envelope, raw_agent, sign, sqlite_only, wait_agents


async def recv_type(ws, type_, timeout=20):
    """The next message of `type_` on a raw agent socket (others are skipped)."""
    end = time.monotonic() + timeout
    while True:
        m = json.loads(await asyncio.wait_for(ws.recv(), max(0.01, end - time.monotonic())))
        if m["type"] == type_:
            return m


async def send(ws, type_, payload, **extra):
    await ws.send(json.dumps(envelope(type_, payload, **extra)))


def denied(reply, rule):
    """The reply is AUTH_001 naming `rule`."""
    assert reply["type"] == "error", reply
    p = reply["payload"]
    assert p["code"] == "AUTH_001", reply
    assert p["details"]["rule"] == rule, reply
    assert f"'{rule}'" in p["message"], reply
    return p


def param_error(reply):
    assert reply["type"] == "error" and reply["payload"]["code"] == "PARAM_001", reply
    return reply["payload"]


def task_row(hub, tid):
    with hub.db() as db:
        db.row_factory = __import__("sqlite3").Row
        r = db.execute("SELECT * FROM tasks WHERE id = ?", (tid,)).fetchone()
        return dict(r) if r else None


def denials(hub, rule):
    return [e for e in hub.events("auth.denied") if e.get("rule") == rule]


async def users(hub, *specs):
    """Web clients for (name, role) pairs, each with its own token."""
    out = []
    for name, role in specs:
        out.append(await Web.open(hub, hub.token(name, role=role)))
    return out


async def agent_with_task(hub, web, agent_id="a1", key_id="k1", secret=None, **submit):
    """A registered raw agent holding (accepted) a task `web` submitted: (ws, taskId, secret)."""
    secret = secret or hub.add_key(key_id)
    ws, r = await raw_agent(hub, agent_id, key_id, secret)
    assert r["type"] == "agent.registered", r
    tid = await web.submit("work", **submit)
    a = await recv_type(ws, "task.assign")
    assert a["payload"]["taskId"] == tid
    await send(ws, "task.accepted", {"taskId": tid, "attempt": 1})
    return ws, tid, secret


# --- web users: ownership ------------------------------------------------------------------------

async def test_a_user_cannot_read_cancel_or_input_into_anothers_task(hub):
    hub.start()
    alice, bob = await users(hub, ("alice", "user"), ("bob", "user"))
    ws, tid, _ = await agent_with_task(hub, alice, parameters={"command": "secret-build --token=xyz"})
    # Reading its parameters.
    p = denied(await bob.request("task.get", {"taskId": tid}), "task.read")
    assert "secret-build" not in json.dumps(p)
    # Cancelling it.
    denied(await bob.request("task.cancel", {"taskId": tid}), "task.owner")
    # Typing into its worker.
    denied(await bob.request("worker.input", {"agentId": "a1", "taskId": tid, "input": "rm -rf /"}), "task.owner")
    # The victim's task is untouched: still running on its agent, which got no cancel and no input.
    assert task_row(hub, tid)["state"] == "assigned"
    assert (await alice.request("task.get", {"taskId": tid}))["payload"]["state"] == "running"
    await send(ws, "task.result", {"taskId": tid, "attempt": 1, "success": True, "result": {"ok": 1}})
    assert (await alice.result(tid))["success"] is True
    with pytest.raises(asyncio.TimeoutError):
        await recv_type(ws, "worker.input", timeout=0.3)
    # Each refusal is logged: who, what, rule.
    logged = denials(hub, "task.owner")
    assert len(logged) == 2 and all(e["who"] == "bob (user)" and tid in e["what"] for e in logged)
    assert len(denials(hub, "task.read")) == 1
    # A finished task (read from the journal) is as private.
    denied(await bob.request("task.get", {"taskId": tid}), "task.read")
    # The owner reads and controls their own.
    assert (await alice.request("task.get", {"taskId": tid}))["payload"]["result"] == {"ok": 1}
    await alice.close()
    await bob.close()
    await ws.close()


async def test_a_user_cannot_join_anothers_session(hub):
    hub.start()
    alice, bob = await users(hub, ("alice", "user"), ("bob", "user"))
    assert (await alice.request("session.join", {"sessionId": "s-alice"}))["payload"]["owner"] == "alice"
    ws, tid, _ = await agent_with_task(hub, alice, sessionId="s-alice")
    denied(await bob.request("session.join", {"sessionId": "s-alice"}), "session.read")
    denied(await bob.request("session.join", {"sessionId": "s-alice", "lastOffset": 0}), "session.read")
    # Nor slip a task into it, nor share it.
    denied(await bob.request("task.submit", {"sessionId": "s-alice", "parameters": {}}), "session.write")
    denied(await bob.request("session.share", {"sessionId": "s-alice", "users": ["bob"]}), "session.owner")
    await send(ws, "task.stream", {"taskId": tid, "attempt": 1, "seq": 0, "type": "stdout", "data": "private\n"})
    await send(ws, "task.result", {"taskId": tid, "attempt": 1, "success": True})
    await alice.wait(lambda: alice.of("task.result", tid), what="alice's result")
    # Bob saw nothing of it; alice saw all, and nobody else joined.
    assert not [e for e in bob.events if e["payload"].get("taskId") == tid]
    r = await alice.request("session.join", {"sessionId": "s-alice"})
    assert r["payload"]["participants"] == ["alice"] and r["payload"]["sharedWith"] == []
    with hub.db() as db:
        assert db.execute("SELECT owner FROM sessions WHERE id = 's-alice'").fetchone()[0] == "alice"
        assert db.execute("SELECT count(*) FROM tasks WHERE session_id = 's-alice'").fetchone()[0] == 1
    await alice.close()
    await bob.close()
    await ws.close()


async def test_submitting_with_anothers_task_id_is_refused_and_leaks_nothing(hub):
    hub.start()
    alice, bob = await users(hub, ("alice", "user"), ("bob", "user"))
    ws, tid, _ = await agent_with_task(hub, alice, taskId="build-42")
    # A live task.
    p = denied(await bob.request("task.submit", {"taskId": "build-42", "parameters": {}}), "task.id-owner")
    assert "state" not in p and "running" not in p["message"]
    await send(ws, "task.result", {"taskId": tid, "attempt": 1, "success": True, "result": {"v": 1}})
    await alice.result(tid)
    # A finished one (only the journal knows it).
    denied(await bob.request("task.submit", {"taskId": "build-42", "parameters": {}}), "task.id-owner")
    assert not bob.of("task.result")
    row = task_row(hub, "build-42")
    assert row["submitter"] == "alice" and row["state"] == "succeeded" and json.loads(row["result"]) == {"v": 1}
    # The owner's retry of the same id is idempotent and gets the result again.
    r = await alice.request("task.submit", {"taskId": "build-42", "parameters": {}})
    assert r["type"] == "task.submitted" and r["payload"]["state"] == "succeeded"
    await alice.wait(lambda: len(alice.of("task.result", tid)) == 2, what="the result of the retried submit")
    await alice.close()
    await bob.close()
    await ws.close()


async def test_a_reconnected_submitter_retrying_its_submit_gets_the_result(hub):
    hub.start()
    token = hub.token("alice")
    first = await Web.open(hub, token)
    ws, tid, _ = await agent_with_task(hub, first, taskId="t-retry")
    first.ws.transport.abort()   # the client's connection drops before the result
    again = await Web.open(hub, token)
    r = await again.request("task.submit", {"taskId": "t-retry", "parameters": {"command": "work"}})
    assert r["type"] == "task.submitted" and r["payload"]["state"] == "running"
    await send(ws, "task.result", {"taskId": tid, "attempt": 1, "success": True, "result": {"n": 7}})
    res = await again.result(tid)
    assert res["result"] == {"n": 7}
    with hub.db() as db:
        assert db.execute("SELECT count(*) FROM tasks").fetchone()[0] == 1
    await again.close()
    await ws.close()


# --- roles -------------------------------------------------------------------------------------

async def test_viewers_read_everything_and_act_on_nothing(hub):
    hub.start()
    alice, vera = await users(hub, ("alice", "user"), ("vera", "viewer"))
    await alice.request("session.join", {"sessionId": "s1"})
    ws, tid, _ = await agent_with_task(hub, alice, sessionId="s1")
    # Reads: any task, any session, the agents.
    assert (await vera.request("task.get", {"taskId": tid}))["payload"]["state"] == "running"
    assert (await vera.request("session.join", {"sessionId": "s1", "lastOffset": 0}))["type"] == "session.updated"
    await vera.wait(lambda: vera.of("task.assign", tid), what="the replayed task.assign")
    assert [a["id"] for a in (await vera.request("agents.list", {}))["payload"]["agents"]] == ["a1"]
    # Never acts.
    denied(await vera.request("task.submit", {"parameters": {}}), "role.submit")
    denied(await vera.request("worker.start", {"agentId": "a1", "tool": "x"}), "role.submit")
    denied(await vera.request("task.cancel", {"taskId": tid}), "role.control")
    denied(await vera.request("worker.input", {"taskId": tid, "input": "x"}), "role.control")
    denied(await vera.request("session.share", {"sessionId": "s1", "users": ["vera"]}), "role.submit")
    denied(await vera.request("dead.list", {}), "role.admin")
    # A viewer does not create sessions by watching.
    param_error(await vera.request("session.join", {"sessionId": "nobody-made-this"}))
    with hub.db() as db:
        assert db.execute("SELECT count(*) FROM tasks").fetchone()[0] == 1
        assert db.execute("SELECT count(*) FROM sessions").fetchone()[0] == 1
    assert task_row(hub, tid)["state"] == "assigned"
    # Still connected: refusals by a rule keep the connection.
    assert (await vera.request("agents.list", {}))["type"] == "agents.updated"
    await send(ws, "task.result", {"taskId": tid, "attempt": 1, "success": True})
    await vera.wait(lambda: vera.of("task.result", tid), what="the result, watched")
    for c in (alice, vera):
        await c.close()
    await ws.close()


async def test_admins_do_everything_users_are_refused_admin_requests(hub):
    hub.start("--max-attempts", "1", "--lease-ms", "400")
    alice, root = await users(hub, ("alice", "user"), ("root", "admin"))
    await alice.request("session.join", {"sessionId": "s-a"})
    ws, tid, secret = await agent_with_task(hub, alice, sessionId="s-a")
    assert (await root.request("task.get", {"taskId": tid}))["payload"]["submitter"] == "alice"
    assert (await root.request("session.join", {"sessionId": "s-a", "lastOffset": 0}))["type"] == "session.updated"
    assert (await root.request("task.cancel", {"taskId": tid}))["type"] == "task.cancelled"
    assert (await recv_type(ws, "task.cancel"))["payload"]["reason"] == "cancelled by root"
    # A task that dies (the lease runs out, one attempt allowed) is a dead letter.
    t2 = await alice.submit("dies")
    await recv_type(ws, "task.assign")
    await alice.wait(lambda: alice.of("task.result", t2), what="the dead task's result")
    denied(await alice.request("dead.list", {}), "role.admin")
    denied(await alice.request("dead.requeue", {"taskId": t2}), "role.admin")
    assert task_row(hub, t2)["dead"] == 1
    dead = await root.request("dead.list", {})
    assert dead["type"] == "dead.letters" and [t["taskId"] for t in dead["payload"]["tasks"]] == [t2]
    r = await root.request("dead.requeue", {"taskId": t2})
    assert r["type"] == "dead.requeued"
    again = await recv_type(ws, "task.assign")
    assert again["payload"]["taskId"] == t2 and again["payload"]["attempt"] == 1
    param_error(await root.request("dead.requeue", {"taskId": "no-such-task"}))
    for c in (alice, root):
        await c.close()
    await ws.close()


async def test_set_role_applies_to_open_connections(hub):
    hub.start()
    bob, root = await users(hub, ("bob", "user"), ("root", "admin"))
    assert (await bob.request("task.submit", {"parameters": {}, "sessionId": "bobs"}))["type"] == "task.submitted"
    assert (await root.request("session.join", {"sessionId": "bobs"}))["type"] == "session.updated"
    hub.cli("user", "set-role", "bob", "viewer")
    hub.cli("user", "set-role", "root", "user")
    await asyncio.sleep(1.0)   # the hub rereads users within a quarter of a second
    denied(await bob.request("task.submit", {"parameters": {}}), "role.submit")
    assert [e for e in hub.events("auth.role_changed") if e["user"] == "bob" and e["to"] == "viewer"]
    assert not bob.closed.done()
    # The former admin no longer reads bob's session: the watch ends, and it may not join again.
    left = await root.wait(lambda: [e for e in root.events if e["type"] == "session.updated" and e["payload"].get("status") == "left"],
                           what="the end of root's watch")
    assert left[0]["payload"]["sessionId"] == "bobs"
    denied(await root.request("session.join", {"sessionId": "bobs"}), "session.read")
    await bob.close()
    await root.close()


async def test_a_shared_session_admits_named_users_only(hub):
    hub.start()
    alice, bob, carol = await users(hub, ("alice", "user"), ("bob", "user"), ("carol", "user"))
    await alice.request("session.join", {"sessionId": "team"})
    param_error(await alice.request("session.share", {"sessionId": "team", "users": ["bob", "nobody"]}))
    r = await alice.request("session.share", {"sessionId": "team", "users": ["bob"]})
    assert r["type"] == "session.updated" and r["payload"]["sharedWith"] == ["bob"]
    ws, tid, _ = await agent_with_task(hub, alice, sessionId="team")
    # Bob watches (from the start), reads its tasks and may add his own; carol may not.
    assert (await bob.request("session.join", {"sessionId": "team", "lastOffset": 0}))["type"] == "session.updated"
    await bob.wait(lambda: bob.of("task.assign", tid), what="the shared session's events")
    assert (await bob.request("task.get", {"taskId": tid}))["payload"]["taskId"] == tid
    denied(await bob.request("task.cancel", {"taskId": tid}), "task.owner")
    assert (await bob.request("task.submit", {"sessionId": "team", "parameters": {}}))["type"] == "task.submitted"
    denied(await carol.request("session.join", {"sessionId": "team"}), "session.read")
    denied(await carol.request("task.get", {"taskId": tid}), "task.read")
    # Unshared: bob stops watching at once and cannot come back.
    await alice.request("session.share", {"sessionId": "team", "users": []})
    left = await bob.wait(lambda: [e for e in bob.events if e["type"] == "session.updated" and e["payload"].get("status") == "left"],
                          what="the end of bob's watch")
    assert left[0]["payload"]["sessionId"] == "team"
    denied(await bob.request("session.join", {"sessionId": "team"}), "session.read")
    with hub.db() as db:
        assert db.execute("SELECT count(*) FROM session_shares").fetchone()[0] == 0
    for c in (alice, bob, carol):
        await c.close()
    await ws.close()


# --- agent identity ----------------------------------------------------------------------------

async def test_an_agent_id_belongs_to_the_key_that_first_registered_it(hub):
    hub.start()
    web = await Web.open(hub, hub.token("alice"))
    victim, tid, s1 = await agent_with_task(hub, web, "a1", "k1")
    s2 = hub.add_key("k2")
    # The attacker holds another valid key and claims the victim's id and its in-flight task.
    thief, r = await raw_agent(hub, "a1", "k2", s2, inFlight=[{"taskId": tid, "attempt": 1}])
    denied(r, "agent.key-binding")
    with pytest.raises(websockets.ConnectionClosed) as e:
        await asyncio.wait_for(thief.recv(), 10)
    assert e.value.rcvd.code == 1008
    # The victim was not replaced (no 4000), keeps its task, and its result is the one recorded.
    await send(victim, "agent.heartbeat", {"agentId": "a1", "timestamp": int(time.time() * 1000)})
    await send(victim, "task.result", {"taskId": tid, "attempt": 1, "success": True, "result": {"by": "victim"}})
    assert (await web.result(tid))["result"] == {"by": "victim"}
    row = task_row(hub, tid)
    assert row["agent_id"] == "a1" and json.loads(row["result"]) == {"by": "victim"}
    with hub.db() as db:
        assert db.execute("SELECT key_id FROM agent_bindings WHERE agent_id = 'a1'").fetchone()[0] == "k1"
    assert denials(hub, "agent.key-binding")[0]["who"] == "an unregistered agent"
    # The same key reconnects as before (a takeover of its own id).
    again, r = await raw_agent(hub, "a1", "k1", s1)
    assert r["type"] == "agent.registered"
    # An operator can move the id to another key: unbind, then the next registration binds it.
    await again.close()
    hub.cli("agent", "unbind", "a1")
    moved, r = await raw_agent(hub, "a1", "k2", s2)
    assert r["type"] == "agent.registered", r
    assert "a1\tk2" in hub.cli("agent", "list").stdout
    await moved.close()
    await web.close()


async def test_a_key_limited_to_agent_ids_registers_only_those(hub):
    hub.start()
    secret = hub.cli("key", "add", "ci", "--agents", "build-*,deploy-1").stdout.strip()
    ok, r = await raw_agent(hub, "build-7", "ci", secret)
    assert r["type"] == "agent.registered"
    ok2, r = await raw_agent(hub, "deploy-1", "ci", secret)
    assert r["type"] == "agent.registered"
    bad, r = await raw_agent(hub, "deploy-2", "ci", secret)
    denied(r, "agent.key-scope")
    with hub.db() as db:
        assert db.execute("SELECT count(*) FROM agent_bindings WHERE agent_id = 'deploy-2'").fetchone()[0] == 0
    assert hub.cli("key", "add", "bad", "--agents", "a*b", check=False).returncode != 0
    for w in (ok, ok2):
        await w.close()


async def test_only_the_lease_holder_acts_on_a_task_across_keys(hub):
    hub.start()
    web = await Web.open(hub, hub.token("alice"))
    holder, tid, _ = await agent_with_task(hub, web, "a1", "k1")
    other, r = await raw_agent(hub, "a2", "k2", hub.add_key("k2"))
    assert r["type"] == "agent.registered"
    for type_, payload in [("task.result", {"success": True, "result": {"forged": True}}),
                           ("task.stream", {"seq": 0, "type": "stdout", "data": "forged\n"}),
                           ("task.progress", {"progress": 99}), ("task.rejected", {"reason": "mine now"})]:
        m = envelope(type_, {"taskId": tid, "attempt": 1, **payload})
        await other.send(json.dumps(m))
        reply = json.loads(await asyncio.wait_for(other.recv(), 10))
        assert reply["correlationId"] == m["id"]
        denied(reply, "task.lease")
    # The forger stays connected; nothing of it reached the task or its submitter.
    await send(other, "agent.heartbeat", {"agentId": "a2", "timestamp": int(time.time() * 1000)})
    row = task_row(hub, tid)
    assert row["state"] == "assigned" and row["agent_id"] == "a1" and row["result"] is None
    await send(holder, "task.result", {"taskId": tid, "attempt": 1, "success": True, "result": {"real": True}})
    assert (await web.result(tid))["result"] == {"real": True}
    assert not web.of("task.stream", tid) and not web.of("task.progress", tid)
    assert len(denials(hub, "task.lease")) == 4
    await web.close()
    for w in (holder, other):
        await w.close()


async def test_register_once_per_connection(hub):
    hub.start()
    secret = hub.add_key("k1")
    ws, r = await raw_agent(hub, "a1", "k1", secret)
    ts, nonce = int(time.time() * 1000), uuid.uuid4().hex
    m = envelope("agent.register", {"agentId": "a2", "keyId": "k1", "timestamp": ts, "nonce": nonce,
                                    "signature": sign(secret, "a2", ts, nonce)})
    await ws.send(json.dumps(m))
    denied(json.loads(await asyncio.wait_for(ws.recv(), 10)), "agent.register-once")
    assert [a["id"] for a in json.loads(urllib.request.urlopen(urllib.request.Request(
        f"http://127.0.0.1:{hub.port}/health/agents",
        headers={"Authorization": "Bearer " + hub.token("v", role="viewer")}), timeout=5).read())["agents"]] == ["a1"]
    await ws.close()


# --- revocation --------------------------------------------------------------------------------

async def test_a_removed_user_is_closed_within_a_second_and_refused_after_a_restart(hub):
    hub.start()
    token = hub.token("alice")
    alice = await Web.open(hub, token)
    bob = await Web.open(hub, hub.token("bob"))
    assert (await alice.request("agents.list", {}))["type"] == "agents.updated"
    hub.cli("user", "remove", "alice")
    removed_at = time.monotonic()
    code = await asyncio.wait_for(alice.closed, 10)
    elapsed = time.monotonic() - removed_at
    assert code == 1008
    assert elapsed < 1.0, f"closed {elapsed:.3f} s after the removal"
    err = [e for e in alice.events if e["type"] == "error"]
    assert err and err[-1]["payload"]["code"] == "AUTH_001" and "removed" in err[-1]["payload"]["message"]
    assert [e for e in hub.events("auth.revoked") if e.get("user") == "alice"]
    assert [e for e in denials(hub, "revocation") if e["who"] == "alice (user)"]
    # Others are not disturbed.
    assert (await bob.request("agents.list", {}))["type"] == "agents.updated"
    # The token is refused now, and after a restart; a new user of the same name does not revive it.
    for restart in (False, True):
        if restart:
            hub.kill9()
            hub.start()
        ws = await connect(f"{hub.url}/web?token={token}")
        r = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert r["payload"]["code"] == "AUTH_001" and "does not exist" in r["payload"]["message"]
    hub.cli("user", "add", "alice", "--password", "again")
    ws = await connect(f"{hub.url}/web?token={token}")
    r = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert r["payload"]["code"] == "AUTH_001" and "revoked" in r["payload"]["message"]
    await bob.close()


async def test_disable_and_token_revoke(hub):
    hub.start()
    old = hub.token("alice")
    alice = await Web.open(hub, old)
    # token revoke: the open connection closes, old tokens are refused, new ones work.
    hub.cli("token", "revoke", "--user", "alice")
    assert await asyncio.wait_for(alice.closed, 10) == 1008
    ws = await connect(f"{hub.url}/web?token={old}")
    assert "revoked" in json.loads(await asyncio.wait_for(ws.recv(), 10))["payload"]["message"]
    assert [e for e in denials(hub, "web.token") if e["who"] == "unauthenticated" and "revoked" in e["reason"]]
    fresh = hub.cli("token", "--user", "alice").stdout.strip()
    alice = await Web.open(hub, fresh)
    assert (await alice.request("agents.list", {}))["type"] == "agents.updated"
    # disable: closed, refused, and no token is issued; enable: back.
    hub.cli("user", "disable", "alice")
    assert await asyncio.wait_for(alice.closed, 10) == 1008
    ws = await connect(f"{hub.url}/web?token={fresh}")
    assert "disabled" in json.loads(await asyncio.wait_for(ws.recv(), 10))["payload"]["message"]
    assert hub.cli("token", "--user", "alice", check=False).returncode != 0
    hub.cli("user", "enable", "alice")
    alice = await Web.open(hub, fresh)
    assert (await alice.request("agents.list", {}))["type"] == "agents.updated"
    await alice.close()


async def test_auth_refresh_checks_that_the_user_is_still_valid(hub):
    hub.start()
    alice = await Web.open(hub, hub.token("alice"))
    r = await alice.request("auth.refresh", {})
    assert r["type"] == "auth.token"
    # The refreshed token carries the user's current generation: revoking refuses it too.
    refreshed = r["payload"]["token"]
    hub.cli("token", "revoke", "--user", "alice")
    m = envelope("auth.refresh", {})
    try:
        await alice.ws.send(json.dumps(m))
        await asyncio.wait_for(alice.closed, 10)
    except websockets.ConnectionClosed:
        pass
    assert not alice.of("auth.token")[1:], "a revoked user got a new token"
    ws = await connect(f"{hub.url}/web?token={refreshed}")
    assert json.loads(await asyncio.wait_for(ws.recv(), 10))["payload"]["code"] == "AUTH_001"


async def test_a_removed_key_closes_its_agents_and_their_tasks_are_reassigned(hub):
    hub.start()
    web = await Web.open(hub, hub.token("alice"))
    doomed, tid, s1 = await agent_with_task(hub, web, "a1", "k1")
    s2 = hub.add_key("k2")
    spare, r = await raw_agent(hub, "a2", "k2", s2)
    assert r["type"] == "agent.registered"
    hub.cli("key", "remove", "k1")
    removed_at = time.monotonic()
    with pytest.raises(websockets.ConnectionClosed) as e:
        while True:
            await asyncio.wait_for(doomed.recv(), 10)
    elapsed = time.monotonic() - removed_at
    assert e.value.rcvd.code == 1008
    assert elapsed < 1.0, f"closed {elapsed:.3f} s after the removal"
    # Its leased task goes to the agent that remains, as attempt 2.
    a = await recv_type(spare, "task.assign")
    assert a["payload"]["taskId"] == tid and a["payload"]["attempt"] == 2
    assert task_row(hub, tid)["agent_id"] == "a2"
    # The key is refused from now on.
    again, r = await raw_agent(hub, "a1", "k1", s1)
    assert r["payload"]["code"] == "AUTH_001" and "k1" in r["payload"]["message"]
    # A disabled key likewise; enabled again, it works.
    hub.cli("key", "disable", "k2")
    with pytest.raises(websockets.ConnectionClosed) as e:
        while True:
            await asyncio.wait_for(spare.recv(), 10)
    assert e.value.rcvd.code == 1008
    refused, r = await raw_agent(hub, "a2", "k2", s2)
    assert r["payload"]["code"] == "AUTH_001"
    hub.cli("key", "enable", "k2")
    back, r = await raw_agent(hub, "a2", "k2", s2)
    assert r["type"] == "agent.registered"
    # Narrowing a key's agent ids closes the agents it no longer admits.
    hub.cli("key", "set-agents", "k2", "other-*")
    with pytest.raises(websockets.ConnectionClosed) as e:
        while True:
            await asyncio.wait_for(back.recv(), 10)
    assert e.value.rcvd.code == 1008
    await web.close()


# --- secrets at rest ---------------------------------------------------------------------------

def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@sqlite_only
async def test_the_journal_and_its_wal_and_shm_are_private(hub):
    old = os.umask(0o022)   # the usual umask: a file made without care would be 0644
    try:
        hub.start()
        secret = hub.add_key("k1")
        ws, r = await raw_agent(hub, "a1", "k1", secret)   # a write, so the -wal and -shm exist
        assert r["type"] == "agent.registered"
        for suffix in ("", "-wal", "-shm"):
            assert os.path.exists(hub.journal + suffix), suffix
            assert mode(hub.journal + suffix) == 0o600, (suffix, oct(mode(hub.journal + suffix)))
        assert mode(os.path.dirname(hub.journal)) == 0o700
        assert not hub.events("journal.permissions")
        await ws.close()
        # A journal someone made readable: the hub says so at start.
        hub.stop()
        os.chmod(hub.journal, 0o644)
        hub.start()
        warned = hub.events("journal.permissions")
        assert warned and "644" in warned[0]["reason"] and warned[0]["level"] == "warn"
    finally:
        os.umask(old)


async def test_the_token_key_can_live_outside_the_journal(hub, tmp_path):
    keyfile = tmp_path / "jwt.key"
    keyfile.write_text(os.urandom(32).hex() + "\n")
    keyfile.chmod(0o600)
    hub.start("--jwt-key-file", str(keyfile))
    hub.cli("user", "add", "alice", "--password", "pw")
    journal_token = hub.cli("token", "--user", "alice").stdout.strip()          # signed with the journal's key
    file_token = hub.cli("token", "--user", "alice", "--jwt-key-file", str(keyfile)).stdout.strip()
    ws = await connect(f"{hub.url}/web?token={journal_token}")
    r = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert r["payload"]["code"] == "AUTH_001" and "signature" in r["payload"]["message"]
    web = await Web.open(hub, file_token)
    assert (await web.request("agents.list", {}))["type"] == "agents.updated"
    refreshed = (await web.request("auth.refresh", {}))["payload"]["token"]
    assert (await Web.open(hub, refreshed)).ws.state.name == "OPEN"
    # The key never reaches the log; a bad key file stops the hub with a clear message.
    assert keyfile.read_text().strip() not in "".join(p.read_text() for p in hub.log_paths)
    hub.stop()
    keyfile.write_text("not hex")
    r = hub.cli("serve", "--jwt-key-file", str(keyfile), "--port", "0", "--hub-id-file", str(hub.dir / "hub-id"), check=False)
    assert r.returncode != 0 and "hex" in r.stderr
    await web.close()


# --- durable sessions --------------------------------------------------------------------------

async def test_a_watcher_resumes_after_kill_9_and_sees_every_result_exactly_once(hub):
    hub.start()
    secret = hub.add_key("k1")
    token = hub.token("alice")
    watcher = await Web.open(hub, token)
    await watcher.request("session.join", {"sessionId": "s"})
    ws, r = await raw_agent(hub, "a1", "k1", secret)
    tids = [await watcher.submit(f"job {i}", sessionId="s") for i in range(4)]
    for _ in tids:
        a = await recv_type(ws, "task.assign")
        await send(ws, "task.accepted", {"taskId": a["payload"]["taskId"], "attempt": 1})
    for i, tid in enumerate(tids):
        await send(ws, "task.stream", {"taskId": tid, "attempt": 1, "seq": 0, "type": "stdout", "data": f"line of {i}\n"})
    # Two finish before the crash; the watcher sees them.
    for tid in tids[:2]:
        await send(ws, "task.result", {"taskId": tid, "attempt": 1, "success": True, "result": {"id": tid}})
    await watcher.wait(lambda: all(watcher.of("task.result", t) for t in tids[:2]), what="the first two results")
    first = [e for e in watcher.events if "offset" in e.get("headers", {})]
    last = first[-1]["headers"]["offset"]
    hub.kill9()
    await asyncio.wait_for(watcher.closed, 10)
    hub.start()
    # The agent comes back with the two tasks it still runs and finishes them.
    ws, r = await raw_agent(hub, "a1", "k1", secret, inFlight=[{"taskId": t, "attempt": 1} for t in tids[2:]])
    assert sorted(r["payload"]["assignedTasks"]) == sorted(tids[2:])
    again = await Web.open(hub, token)
    r = await again.request("session.join", {"sessionId": "s", "lastOffset": last})
    assert r["type"] == "session.updated" and r["payload"]["headOffset"] >= last and r["payload"]["dropped"] == 0
    for tid in tids[2:]:
        await send(ws, "task.stream", {"taskId": tid, "attempt": 1, "seq": 1, "type": "stdout", "data": "after\n"})
        await send(ws, "task.result", {"taskId": tid, "attempt": 1, "success": True, "result": {"id": tid}})
    await again.wait(lambda: all(again.of("task.result", t) for t in tids[2:]), what="the last two results")
    second = [e for e in again.events if "offset" in e.get("headers", {})]
    offsets = [e["headers"]["offset"] for e in first + second]
    assert offsets == list(range(1, len(offsets) + 1)), offsets   # increasing, no gap, none twice
    results = [e["payload"]["taskId"] for e in first + second if e["type"] == "task.result"]
    assert sorted(results) == sorted(tids)                          # every result exactly once
    await again.close()
    await ws.close()


async def test_a_last_offset_the_hub_does_not_have_is_refused(hub):
    hub.start()
    alice = await Web.open(hub, hub.token("alice"))
    await alice.request("session.join", {"sessionId": "s"})
    ws, tid, _ = await agent_with_task(hub, alice, sessionId="s")
    head = (await alice.request("session.join", {"sessionId": "s"}))["payload"]["headOffset"]
    assert head == 2   # task.assign, task.accepted
    p = param_error(await alice.request("session.join", {"sessionId": "s", "lastOffset": head + 5}))
    assert p["details"] == {"sessionId": "s", "oldestOffset": 1, "headOffset": head}
    assert (await alice.request("session.join", {"sessionId": "s", "lastOffset": head}))["payload"]["replayed"] == 0
    await alice.close()
    await ws.close()
    # Past the recovery window, the old events are gone: a lastOffset before them is refused.
    hub.stop()
    hub.start("--recovery-window-ms", "500")
    alice = await Web.open(hub, hub.token("alice"))
    await asyncio.sleep(1.6)
    r = await alice.request("session.join", {"sessionId": "s", "lastOffset": 0})
    p = param_error(r)
    assert p["details"]["oldestOffset"] == head + 1 and p["details"]["headOffset"] == head
    with hub.db() as db:
        assert db.execute("SELECT count(*) FROM session_events").fetchone()[0] == 0
    await alice.close()


async def test_stream_chunks_beyond_the_byte_budget_leave_the_replay_log_oldest_first(hub):
    hub.start("--replay-session-bytes", "65536", "--max-message-size", "65536")
    alice = await Web.open(hub, hub.token("alice"))
    await alice.request("session.join", {"sessionId": "s"})
    ws, tid, _ = await agent_with_task(hub, alice, sessionId="s")
    chunk = "x" * 8000
    for seq in range(40):   # about 320 KB of output into a 64 KiB log
        await send(ws, "task.stream", {"taskId": tid, "attempt": 1, "seq": seq, "type": "stdout", "data": chunk})
    await send(ws, "task.result", {"taskId": tid, "attempt": 1, "success": True})
    await alice.wait(lambda: alice.of("task.result", tid), what="the result")
    # Live delivery lost nothing.
    assert [e["payload"]["seq"] for e in alice.of("task.stream", tid)] == list(range(40))
    # The replay keeps the state events and the newest chunks, and says how many it dropped.
    late = await Web.open(hub, hub.token("alice"))
    r = await late.request("session.join", {"sessionId": "s", "lastOffset": 0})
    p = r["payload"]
    assert p["oldestOffset"] == 1 and p["headOffset"] == 43 and p["dropped"] > 0
    await late.wait(lambda: late.of("task.result", tid), what="the replayed result")
    seqs = [e["payload"]["seq"] for e in late.of("task.stream", tid)]
    assert seqs == list(range(40 - len(seqs), 40)) and 3 <= len(seqs) < 10
    assert late.of("task.assign", tid) and late.of("task.accepted", tid)
    assert p["replayed"] + p["dropped"] == 43
    with hub.db() as db:
        kept = db.execute("SELECT sum(length(frame)) FROM session_events WHERE session_id = 's'").fetchone()[0]
    assert kept <= 65536
    # A lastOffset inside the dropped chunks is refused only when it is below the oldest kept event.
    await late.close()
    await alice.close()
    await ws.close()


# --- origin, protocol, ids, sizes, HTTP ---------------------------------------------------------

async def test_the_origin_allow_list_applies_to_browsers_only(hub):
    hub.start("--allow-origin", "https://app.example")
    secret = hub.add_key("k1")
    # An agent sends no Origin: served.
    ws, r = await raw_agent(hub, "a1", "k1", secret)
    assert r["type"] == "agent.registered"
    # So is a server-side web client without Origin, and a browser from the allowed origin.
    token = hub.token("alice")
    web = await Web.open(hub, token)
    assert (await web.request("agents.list", {}))["type"] == "agents.updated"
    ok = await connect(f"{hub.url}/web?token={token}", origin="https://app.example")
    # A browser from anywhere else is refused, agents path included.
    for path in ("/web?token=" + token, "/agent"):
        with pytest.raises(websockets.InvalidStatus) as e:
            await connect(f"{hub.url}{path}", origin="https://evil.example")
        assert e.value.response.status_code == 403
    await ok.close()
    await web.close()
    await ws.close()


async def test_the_python_agent_sdk_connects_with_an_origin_allow_list(hub, agents):
    hub.start("--allow-origin", "https://app.example")
    secret = hub.add_key("k1")
    agents.start("python", "py1", "k1", secret)
    web = await Web.open(hub, hub.token("alice"))
    await wait_agents(web, ["py1"])
    tid = await web.submit("echo from-python")
    assert (await web.result(tid))["success"] is True
    await web.close()


BAD_PROTOCOLS = ["1e400", "18446744073709551616", "1.5", "1.0", "0", "2", "-1", '"1"', "true", "null", "{}"]


async def test_headers_protocol_must_be_a_version_this_hub_speaks(hub):
    hub.start()
    web = await Web.open(hub, hub.token("alice"))
    for raw in BAD_PROTOCOLS:
        m = envelope("agents.list", {})
        text = json.dumps(m)[:-1] + f', "headers": {{"protocol": {raw}}}}}'
        await web.ws.send(text)
        r = await web.wait(lambda: web.replies.get(m["id"]), what=f"the reply to protocol {raw}")
        p = param_error(r)
        assert "headers.protocol" in p["message"], (raw, p)
    assert (await web.request("agents.list", {}, headers={"protocol": 1}))["type"] == "agents.updated"
    # Agents likewise, on agent.register and after.
    secret = hub.add_key("k1")
    agent = await connect(f"{hub.url}/agent")
    ts, nonce = int(time.time() * 1000), uuid.uuid4().hex
    reg = envelope("agent.register", {"agentId": "a1", "keyId": "k1", "timestamp": ts, "nonce": nonce,
                                      "signature": sign(secret, "a1", ts, nonce)}, headers={"protocol": 7})
    await agent.send(json.dumps(reg))
    param_error(json.loads(await asyncio.wait_for(agent.recv(), 10)))
    reg["headers"] = {"protocol": 1}
    reg["id"] = str(uuid.uuid4())
    await agent.send(json.dumps(reg))
    assert json.loads(await asyncio.wait_for(agent.recv(), 10))["type"] == "agent.registered"
    await agent.close()
    await web.close()


async def test_empty_and_oversized_ids_are_refused_and_nothing_is_stored(hub):
    hub.start()
    web = await Web.open(hub, hub.token("alice"))
    long_id = "t" * 129
    for payload in [{"taskId": ""}, {"taskId": long_id}, {"sessionId": ""}, {"sessionId": long_id},
                    {"agentId": ""}, {"taskId": 5}]:
        p = param_error(await web.request("task.submit", {"parameters": {}, **payload}))
        assert p["details"]["field"] in payload, p
    for type_ in ("task.get", "task.cancel"):
        param_error(await web.request(type_, {"taskId": ""}))
    param_error(await web.request("session.join", {"sessionId": long_id}))
    assert (await web.request("task.submit", {"taskId": "t" * 128, "parameters": {}}))["type"] == "task.submitted"
    with hub.db() as db:
        assert [r[0] for r in db.execute("SELECT id FROM tasks")] == ["t" * 128]
        assert db.execute("SELECT count(*) FROM sessions").fetchone()[0] == 0
    secret = hub.add_key("k1")
    for agent_id in ("", "a" * 129):
        ws, r = await raw_agent(hub, agent_id, "k1", secret)
        param_error(r)
    with hub.db() as db:
        assert db.execute("SELECT count(*) FROM agent_bindings").fetchone()[0] == 0
    await web.close()


@pytest.mark.parametrize("fragmented", [False, True])
async def test_an_oversized_message_gets_a_1009_close_frame(hub, fragmented):
    hub.start("--max-message-size", "65536")
    web = await Web.open(hub, hub.token("alice"))
    big = json.dumps(envelope("task.submit", {"parameters": {"blob": "x" * 4_000_000}}))   # more than the socket buffers hold
    try:
        if fragmented:
            await web.ws.send([big[i:i + 16384] for i in range(0, len(big), 16384)])
        else:
            await web.ws.send(big)
    except websockets.ConnectionClosed:
        pass   # the hub closed while the rest was still being sent: its close frame is what counts
    assert await asyncio.wait_for(web.closed, 10) == 1009
    assert web.ws.protocol.close_rcvd is not None and web.ws.protocol.close_rcvd.code == 1009   # a close frame, not a reset
    with hub.db() as db:
        assert db.execute("SELECT count(*) FROM tasks").fetchone()[0] == 0


def http(hub, path, token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{hub.port}{path}", headers=headers), timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


async def test_http_paths_and_who_may_read_them(hub):
    hub.start()
    secret = hub.add_key("k1")
    ws, r = await raw_agent(hub, "a1", "k1", secret)
    assert http(hub, "/health")[0] == 200
    assert http(hub, "/metrics")[0] == 200
    status, body = http(hub, "/health/agents")
    assert status == 401 and json.loads(body)["code"] == "AUTH_001" and "a1" not in body.decode()
    assert http(hub, "/health/agents", "not.a.token")[0] == 401
    assert denials(hub, "role.any")
    for role in ("viewer", "user", "admin"):
        status, body = http(hub, "/health/agents", hub.token(f"u-{role}", role=role))
        assert status == 200 and json.loads(body)["agents"][0]["id"] == "a1"
    assert "orchestra_hub_requests_denied_total" in http(hub, "/metrics")[1].decode()
    await ws.close()


# The hub's memory beyond the replay log's budget while output streams (docs/operations.md,
# "Replay log"): SQLite's page caches, read and assembly buffers, the allocator's slack.
RSS_CONSTANT = 16 << 20


@sqlite_only
async def test_streaming_into_a_watched_session_keeps_the_hub_within_its_budget():
    """64 MiB in 64 KiB chunks into a session with a watcher, budgets 1 MiB per session and
    2 MiB for the hub: the hub's RSS grows by less than the budget plus the documented constant
    (bench/hub_replay_memory.py measures it; 256 MiB streamed in bench/README.md)."""
    session_budget, hub_budget = 1 << 20, 2 << 20
    r = await asyncio.create_subprocess_exec(
        sys.executable, os.path.join(ROOT, "bench", "hub_replay_memory.py"), "--stream-mib", "64", "--runs", "1",
        "--no-anchor", "--session-budget", str(session_budget), "--hub-budget", str(hub_budget),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=dict(os.environ, ORC_BUILD_DIR=BUILD))
    out, err = await asyncio.wait_for(r.communicate(), 300)
    assert r.returncode == 0, err.decode()
    run = json.loads(out.decode().splitlines()[0])
    assert run["mode"] == "session" and run["streamed_mib"] == 64
    assert run["replay_log_bytes"] <= session_budget
    assert run["rss_growth_kb"] * 1024 < hub_budget + RSS_CONSTANT, run
