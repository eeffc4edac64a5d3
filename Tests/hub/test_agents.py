"""Agents in three languages (examples/c, examples/python, examples/node: each runs the task's
shell command and streams its stdout) served by one hub: load balancing, failures of agents
and of the hub itself, and the dead-letter list."""
import asyncio
import collections
import json
import time

import pytest

from conftest import Web, wait_agents, wait_until

LANGS = ("c", "python", "node")


def assigned_agents(hub):
    """taskId -> [agentId of each attempt], from the hub's log."""
    out = collections.defaultdict(list)
    for e in hub.events("task.assigned"):
        out[e["taskId"]].append(e["agentId"])
    return out


async def start_three(hub, agents, strategy, caps=None, max_concurrency=64):
    hub.start("--strategy", strategy, "--rate-limit", "0", "--max-load-per-agent", "1000")
    secret = hub.add_key("k1")
    for lang in LANGS:
        agents.start(lang, f"{lang}-agent", "k1", secret, capabilities=(caps or {}).get(lang, ("shell",)),
                     max_concurrency=max_concurrency)
    web = await Web.open(hub, hub.token())
    await wait_agents(web, [f"{lang}-agent" for lang in LANGS])
    return web, secret


async def test_three_languages_serve_300_tasks_round_robin(hub, agents):
    web, _ = await start_three(hub, agents, "round-robin")
    # In waves of 30, so no agent reaches its concurrency limit (a full agent is skipped, which
    # would make the split uneven for a reason that is not the strategy's).
    ids, results = [], []
    for wave in range(10):
        batch = [await web.submit(f"echo task-{30 * wave + i}") for i in range(30)]
        results += [await web.result(t, timeout=120) for t in batch]
        ids += batch
    assert all(r["success"] for r in results), [r for r in results if not r["success"]][:3]
    # Each result came with the task's own output, streamed before it.
    for i, t in enumerate(ids[:30]):
        assert "".join(c["payload"]["data"] for c in web.of("task.stream", t)).strip() == f"task-{i}"
    per_agent = collections.Counter(a[-1] for a in assigned_agents(hub).values())
    assert per_agent == {"c-agent": 100, "python-agent": 100, "node-agent": 100}
    with hub.db() as db:
        assert db.execute("select count(*) from tasks where state = 'succeeded'").fetchone()[0] == 300
    await web.close()


async def test_least_connections_under_uneven_task_lengths(hub, agents):
    web, _ = await start_three(hub, agents, "least-connections")
    # Two long tasks occupy two agents; every short task then goes to the third, the one with
    # the fewest tasks in flight (round-robin would send two of every three to busy agents).
    long1 = await web.submit("sleep 3; echo long")
    long2 = await web.submit("sleep 3; echo long")
    wait_until(lambda: len(assigned_agents(hub)) == 2, what="the long tasks to be assigned")
    busy = {assigned_agents(hub)[long1][0], assigned_agents(hub)[long2][0]}
    assert len(busy) == 2
    shorts = []
    for i in range(9):
        t = await web.submit(f"echo short-{i}")
        assert (await web.result(t))["success"]
        shorts.append(t)
    free = {f"{lang}-agent" for lang in LANGS} - busy
    assert {assigned_agents(hub)[t][0] for t in shorts} == free
    assert (await web.result(long1))["success"] and (await web.result(long2))["success"]
    await web.close()


async def test_capability_filter(hub, agents):
    caps = {"c": ("shell",), "python": ("shell", "python"), "node": ("shell", "node")}
    web, _ = await start_three(hub, agents, "round-robin", caps=caps)
    py = [await web.submit("echo py", capabilities=["python"]) for _ in range(10)]
    nd = [await web.submit("echo nd", capabilities=["node", "shell"]) for _ in range(10)]
    gpu = await web.submit("echo gpu", capabilities=["gpu"])
    for t in py + nd:
        assert (await web.result(t))["success"]
    a = assigned_agents(hub)
    assert {a[t][0] for t in py} == {"python-agent"}
    assert {a[t][0] for t in nd} == {"node-agent"}
    # Nobody has "gpu": the task waits in the queue.
    r = await web.request("task.get", {"taskId": gpu})
    assert r["payload"]["state"] == "queued" and gpu not in a
    assert hub.health()["queues"]["pending"] == 1
    await web.close()


@pytest.mark.parametrize("victim", LANGS)
async def test_agent_killed_mid_task_is_reassigned_and_completes_once(hub, agents, victim):
    web, _ = await start_three(hub, agents, "round-robin")
    await web.request("session.join", {"sessionId": "s"})
    # Pin the first attempt to the victim; the second may go anywhere else.
    tasks = [await web.submit("sleep 1.5; echo finished", sessionId="s", capabilities=["shell"]) for _ in range(3)]
    wait_until(lambda: all(t in assigned_agents(hub) for t in tasks), what="assignment")
    target = next(t for t in tasks if assigned_agents(hub)[t][0] == f"{victim}-agent")
    await web.wait(lambda: [e for e in web.of("task.accepted", target)], what="the victim to accept")
    agents.kill9(f"{victim}-agent")
    res = await web.result(target, timeout=60)
    assert res["success"] and res["attempt"] == 2
    assert assigned_agents(hub)[target][0] == f"{victim}-agent" and assigned_agents(hub)[target][1] != f"{victim}-agent"
    for t in tasks:
        assert (await web.result(t, timeout=60))["success"]
    finished = collections.Counter(e["taskId"] for e in hub.events("task.finished"))
    assert all(finished[t] == 1 for t in tasks)
    assert len(web.of("task.result", target)) == 1
    await web.close()


async def test_hub_killed_with_tasks_in_flight_loses_none_and_records_none_twice(hub, agents):
    web, _ = await start_three(hub, agents, "round-robin", max_concurrency=4)
    ids = [await web.submit(f"sleep 0.3; echo t{i}") for i in range(60)]
    # Some finish, some run, some wait; then the hub dies without warning.
    wait_until(lambda: 5 <= len(hub.events("task.finished")) < 60, what="some tasks to finish")
    hub.kill9()
    killed_ms = int(time.time() * 1000)
    await web.close()
    hub.start("--strategy", "round-robin", "--rate-limit", "0", "--max-load-per-agent", "1000")
    # The agents reconnect by themselves and claim what they were running.
    def all_done():
        with hub.db() as db:
            return db.execute("select count(*) from tasks where state in ('succeeded', 'failed')").fetchone()[0] == 60
    wait_until(all_done, 120, "every task to finish after the restart")
    with hub.db() as db:
        rows = dict(db.execute("select id, state from tasks").fetchall())
        finished_ms = dict(db.execute("select id, updated_ms from tasks").fetchall())
    assert set(rows) == set(ids) and set(rows.values()) == {"succeeded"}
    finished = collections.Counter(e["taskId"] for e in hub.events("task.finished"))
    assert set(finished.values()) == {1}
    # A task.finished line follows its commit: the line of an outcome committed in the instant
    # before the kill can die with the hub (the journal has the outcome; the restarted hub
    # ignores the agent's copy as already recorded). Every other task has its line.
    unlogged = set(ids) - set(finished)
    assert all(finished_ms[t] <= killed_ms for t in unlogged), {t: finished_ms[t] - killed_ms for t in unlogged}
    assert len(unlogged) <= 12, unlogged   # at most what was in flight (3 agents x 4)
    # Each task's recorded output is its own.
    web = await Web.open(hub, hub.token())
    for i in (0, 30, 59):
        r = await web.request("task.get", {"taskId": ids[i]})
        assert r["payload"]["state"] == "succeeded"
    await web.close()


async def test_dead_letters_can_be_inspected_and_requeued(hub, agents):
    hub.start("--rate-limit", "0", "--lease-ms", "1000")
    secret = hub.add_key("k1")
    agents.start("python", "py", "k1", secret)
    web = await Web.open(hub, hub.token())
    await wait_agents(web, ["py"])
    # One attempt allowed, and the agent dies during it: the task is dead.
    t = await web.submit("sleep 30", maxAttempts=1)
    await web.wait(lambda: web.of("task.accepted", t) or web.of("task.stream", t) or assigned_agents(hub).get(t), what="assignment")
    agents.kill9("py")
    res = await web.result(t, timeout=30)
    assert not res["success"] and res["errorCode"] == "TASK_001"
    dead = [json.loads(line) for line in hub.cli("dead", "list").stdout.splitlines()]
    assert [d["taskId"] for d in dead] == [t]
    # Requeued by the operator while the hub runs; a new agent runs it.
    hub.cli("dead", "requeue", t)
    agents.start("python", "py2", "k1", secret)
    wait_until(lambda: hub.events("task.requeued") and assigned_agents(hub).get(t, [None])[-1] == "py2", 30, "the requeued task to be assigned")
    assert json.loads(hub.cli("task", t).stdout)["dead"] is False
    await web.close()
