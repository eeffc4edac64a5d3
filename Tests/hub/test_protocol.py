"""The hub protocol at the wire: authentication, bad input, sessions and resumption, health,
shutdown. Agents here are written by hand with python websockets (raw_agent), so each test
controls exactly what goes over the socket."""
import asyncio
import json
import time
import urllib.request
import uuid

import pytest
import websockets
from websockets.asyncio.client import connect

from conftest import Web, envelope, raw_agent, sign, wait_agents


async def expect_auth_refusal(ws, reply):
    assert reply["type"] == "error", reply
    assert reply["payload"]["code"] == "AUTH_001", reply
    assert reply["payload"]["message"]
    with pytest.raises(websockets.ConnectionClosed) as e:
        await asyncio.wait_for(ws.recv(), 10)
    assert e.value.rcvd.code == 1008


async def test_agent_registration_is_refused_for_bad_credentials(hub):
    hub.start()
    secret = hub.add_key("k1")
    other = "00" * 32
    # Wrong signature (signed with another secret).
    ts = int(time.time() * 1000)
    ws, r = await raw_agent(hub, "a1", "k1", secret, signature=sign(other, "a1", ts, "n" * 16), ts=ts, nonce="n" * 16)
    await expect_auth_refusal(ws, r)
    # Unknown key.
    ws, r = await raw_agent(hub, "a1", "k9", secret)
    await expect_auth_refusal(ws, r)
    assert "k9" in r["payload"]["message"]
    # Stale timestamp: 6 minutes old, correctly signed.
    ws, r = await raw_agent(hub, "a1", "k1", secret, ts=int(time.time() * 1000) - 360_000)
    await expect_auth_refusal(ws, r)
    # A good registration, then the same nonce again.
    nonce = uuid.uuid4().hex
    ws, r = await raw_agent(hub, "a1", "k1", secret, nonce=nonce)
    assert r["type"] == "agent.registered" and r["payload"]["success"] is True, r
    ws2, r2 = await raw_agent(hub, "a2", "k1", secret, nonce=nonce)
    await expect_auth_refusal(ws2, r2)
    assert "nonce" in r2["payload"]["message"]
    # Anything before agent.register.
    ws3 = await connect(f"{hub.url}/agent")
    await ws3.send(json.dumps(envelope("task.result", {"taskId": "x", "attempt": 1, "success": True})))
    await expect_auth_refusal(ws3, json.loads(await ws3.recv()))
    # The registered agent was not disturbed by any of it.
    await ws.send(json.dumps(envelope("agent.heartbeat", {"agentId": "a1", "timestamp": int(time.time() * 1000)})))
    assert hub.health()["agents"] == {"total": 1, "healthy": 1}
    assert len(hub.events("auth.refused")) == 5
    await ws.close()


async def test_replayed_nonce_is_refused_after_a_restart(hub):
    hub.start()
    secret = hub.add_key("k1")
    nonce = uuid.uuid4().hex
    ts = int(time.time() * 1000)
    ws, r = await raw_agent(hub, "a1", "k1", secret, ts=ts, nonce=nonce)
    assert r["type"] == "agent.registered"
    await ws.close()
    hub.kill9()
    hub.start()
    ws, r = await raw_agent(hub, "a1", "k1", secret, ts=ts, nonce=nonce)
    await expect_auth_refusal(ws, r)


async def test_web_tokens(hub):
    hub.start()
    # Expired token: refused with AUTH_001, then closed.
    expired = hub.token("alice", ttl=-10)
    ws = await connect(f"{hub.url}/web?token={expired}")
    await expect_auth_refusal(ws, json.loads(await ws.recv()))
    # Tampered token.
    good = hub.token("alice")
    head, body, sig = good.split(".")
    ws = await connect(f"{hub.url}/web?token={head}.{body}.{sig[:-2]}AA")
    await expect_auth_refusal(ws, json.loads(await ws.recv()))
    # No token.
    ws = await connect(f"{hub.url}/web")
    await expect_auth_refusal(ws, json.loads(await ws.recv()))
    # A good token in the Authorization header, and a refresh.
    ws = await connect(f"{hub.url}/web", additional_headers={"Authorization": f"Bearer {good}"})
    web = Web(ws)
    r = await web.request("auth.refresh", {})
    assert r["type"] == "auth.token" and r["payload"]["expiresAt"] > time.time()
    ws2 = await connect(f"{hub.url}/web?token={r['payload']['token']}")
    web2 = Web(ws2)
    assert (await web2.request("agents.list", {}))["type"] == "agents.updated"
    await web.close()
    await web2.close()


async def test_bad_input_gets_param_001_or_1009_and_others_are_served(hub):
    hub.start("--max-message-size", "65536")
    token = hub.token()
    bystander = await Web.open(hub, token)
    web = await Web.open(hub, token)
    for raw in ["{not json", json.dumps({"type": "task.submit"}), json.dumps(envelope("no.such.type", {})),
                json.dumps(envelope("task.submit", {"parameters": "not an object"})),
                json.dumps(envelope("task.submit", {"priority": "urgent"})),
                json.dumps(envelope("task.submit", {"strategy": "fastest"})),
                json.dumps(envelope("session.join", {"sessionId": 5}))]:
        await web.ws.send(raw)
        err = await web.wait(lambda: [e for e in web.events if e["type"] == "error"], what="an error")
        assert err[-1]["payload"]["code"] == "PARAM_001", (raw, err[-1])
        assert err[-1]["payload"]["message"] and err[-1]["payload"]["timestamp"] > 0
        web.events.clear()
    # Still connected and served.
    assert (await web.request("agents.list", {}))["type"] == "agents.updated"
    # Oversized: closed with 1009.
    await web.ws.send(json.dumps(envelope("task.submit", {"parameters": {"blob": "x" * 70000}})))
    code = await asyncio.wait_for(web.closed, 10)
    assert code == 1009
    # Everyone else goes on.
    assert (await bystander.request("agents.list", {}))["type"] == "agents.updated"
    await bystander.close()


async def test_rate_limit_answers_res_001(hub):
    hub.start("--rate-limit", "5")
    web = await Web.open(hub, hub.token())
    for _ in range(5):
        assert (await web.request("agents.list", {}))["type"] == "agents.updated"
    r = await web.request("agents.list", {})
    assert r["type"] == "error" and r["payload"]["code"] == "RES_001"
    await web.close()


async def run_stream_agent(ws, lines, hold=None):
    """Serves one task.assign: accepts, streams `lines` chunks (seq 0..), waits for `hold`, results."""
    assign = json.loads(await asyncio.wait_for(ws.recv(), 20))
    assert assign["type"] == "task.assign", assign
    p = assign["payload"]
    tid, att = p["taskId"], p["attempt"]
    await ws.send(json.dumps(envelope("task.accepted", {"taskId": tid, "attempt": att})))
    for i in range(lines):
        if hold is not None and i == lines // 2:
            await hold.wait()
        await ws.send(json.dumps(envelope("task.stream", {"taskId": tid, "attempt": att, "seq": i, "type": "stdout",
                                                          "data": f"line {i}\n"})))
    await ws.send(json.dumps(envelope("task.result", {"taskId": tid, "attempt": att, "success": True, "result": {"lines": lines}})))
    return tid


async def test_stream_chunks_in_order_and_resume_after_disconnect(hub):
    hub.start()
    secret = hub.add_key("k1")
    token = hub.token()
    ws, r = await raw_agent(hub, "streamer", "k1", secret)
    assert r["type"] == "agent.registered"
    watcher = await Web.open(hub, token)
    joined = await watcher.request("session.join", {"sessionId": "s1"})
    assert joined["type"] == "session.updated" and joined["payload"]["offset"] == 0
    submitter = await Web.open(hub, token)
    hold = asyncio.Event()
    agent = asyncio.create_task(run_stream_agent(ws, 200, hold))
    tid = await submitter.submit("irrelevant", sessionId="s1")
    # The watcher sees the first half, then its connection drops.
    await watcher.wait(lambda: len(watcher.of("task.stream", tid)) >= 100, what="the first 100 chunks")
    seen = watcher.of("task.stream", tid)
    last_offset = max(e["headers"]["offset"] for e in watcher.events if "headers" in e and "offset" in e["headers"])
    watcher.ws.transport.abort()  # no close handshake: a dropped connection
    await asyncio.sleep(0.05)
    hold.set()
    await agent
    await submitter.result(tid)
    # Reconnect and resume from the last offset seen: the missed events come in order, no gaps.
    again = await Web.open(hub, token)
    r = await again.request("session.join", {"sessionId": "s1", "lastOffset": last_offset})
    assert r["type"] == "session.updated"
    await again.wait(lambda: again.of("task.result", tid), what="the replayed result")
    chunks = seen + again.of("task.stream", tid)
    assert [c["payload"]["seq"] for c in chunks] == list(range(200))
    assert "".join(c["payload"]["data"] for c in chunks) == "".join(f"line {i}\n" for i in range(200))
    offsets = [e["headers"]["offset"] for e in again.events if "offset" in e.get("headers", {})]
    assert offsets == list(range(last_offset + 1, last_offset + 1 + len(offsets)))
    # Out-of-order and duplicate chunks from an agent are put in order.
    tid2_task = asyncio.create_task(submitter.submit("again", sessionId="s1"))
    assign = json.loads(await asyncio.wait_for(ws.recv(), 20))
    tid2 = await tid2_task
    att = assign["payload"]["attempt"]
    for seq in [2, 0, 1, 1, 4, 3]:
        await ws.send(json.dumps(envelope("task.stream", {"taskId": tid2, "attempt": att, "seq": seq, "type": "stdout", "data": str(seq)})))
    await ws.send(json.dumps(envelope("task.result", {"taskId": tid2, "attempt": att, "success": True})))
    await again.wait(lambda: again.of("task.result", tid2), what="the second result")
    assert [c["payload"]["seq"] for c in again.of("task.stream", tid2)] == [0, 1, 2, 3, 4]
    await again.close()
    await submitter.close()
    await ws.close()


async def test_health_agents_and_metrics(hub):
    hub.start()
    secret = hub.add_key("k1")
    ws, r = await raw_agent(hub, "a1", "k1", secret, capabilities=("shell", "gpu"))
    assert r["type"] == "agent.registered"
    h = hub.health()
    assert h["status"] == "ok" and h["agents"] == {"total": 1, "healthy": 1} and h["uptimeSeconds"] >= 0
    assert set(h["tasks"]) >= {"queued", "assigned", "running", "succeeded", "failed"}
    assert h["queues"]["pending"] == 0
    # The registry names agents and what they run: a user's token (any role) reads it.
    req = urllib.request.Request(f"http://127.0.0.1:{hub.port}/health/agents",
                                 headers={"Authorization": "Bearer " + hub.token("watcher", role="viewer")})
    with urllib.request.urlopen(req, timeout=5) as resp:
        agents = json.loads(resp.read())["agents"]
    assert agents[0]["id"] == "a1" and agents[0]["capabilities"] == ["gpu", "shell"] and "secret" not in json.dumps(agents)
    with urllib.request.urlopen(f"http://127.0.0.1:{hub.port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    assert 'orchestra_hub_agents{status="online"} 1' in text
    assert "orchestra_hub_tasks_submitted_total 0" in text
    await ws.close()


async def test_sigterm_tells_peers_flushes_and_exits_0(hub):
    hub.start()
    secret = hub.add_key("k1")
    web = await Web.open(hub, hub.token())
    ws, r = await raw_agent(hub, "a1", "k1", secret)
    tid = await web.submit("x")
    assert json.loads(await ws.recv())["type"] == "task.assign"
    assert hub.stop() == 0
    assert await asyncio.wait_for(web.closed, 10) == 1001
    with pytest.raises(websockets.ConnectionClosed) as e:
        await asyncio.wait_for(ws.recv(), 10)
    assert e.value.rcvd.code == 1001
    assert hub.events("hub.stopped")
    # The journal is whole and keeps the task leased to its agent (WAL checkpointed).
    with hub.db() as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    r = hub.cli("task", tid)
    assert json.loads(r.stdout)["state"] == "assigned"
    # Secrets never reach the log.
    text = "".join(p.read_text() for p in hub.log_paths)
    assert secret not in text
