"""The agents' failover against real hub processes (the SDK side of several hubs): two
orchestra-hub processes, each with its own SQLite journal (hubs sharing one database come with
the PostgreSQL journal), and the example agent of each language given both URLs in
ORC_HUB_URL. Hub A is killed (kill -9) while the agent runs one of A's tasks: the agent
connects to hub B and registers there with that task in flight; B never leased it, so it
keeps nothing and cancels it, the agent kills the command, and goes on serving B."""
import types

import pytest

from conftest import Agents, Hub, Web, wait_agents, wait_until

B_CANCEL_REASON = "re-assigned while this agent was away"   # the hub's, for inFlight it does not hold


@pytest.mark.parametrize("lang", ["c", "python", "node"])
async def test_agent_fails_over_when_its_hub_is_killed(tmp_path, monkeypatch, lang):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, b = Hub(tmp_path / "a"), Hub(tmp_path / "b")
    # Both hubs know the key, with the same secret (each in its own journal).
    a.start()
    b.start()
    secret = a.add_key("k1")
    b.cli("key", "add", "k1", "--secret", secret)
    monkeypatch.setenv("PYTHONUNBUFFERED", "1")
    agents = Agents(types.SimpleNamespace(url=f"{a.url},{b.url}"), tmp_path)
    webs = []
    try:
        proc = agents.start(lang, "roamer", "k1", secret)
        web_a = await Web.open(a, a.token())
        webs.append(web_a)
        await wait_agents(web_a, ["roamer"])
        task_id = await web_a.submit("echo started; sleep 60; echo never")
        await web_a.wait(lambda: [e for e in web_a.of("task.stream", task_id) if "started" in e["payload"]["data"]],
                         30, "the task's first line")

        a.kill9()
        web_b = await Web.open(b, b.token())
        webs.append(web_b)
        await wait_agents(web_b, ["roamer"])
        # B kept none of the agent's tasks (it never leased A's task) and cancelled it.
        regs = wait_until(lambda: [e for e in b.events("agent.registered") if e.get("agentId") == "roamer"],
                          30, "B to log the registration")
        assert regs[0]["resumed"] == 0
        wait_until(lambda: B_CANCEL_REASON in agents.log("roamer"), 30, "the agent to report B's cancel")
        log = agents.log("roamer")
        assert f"failing over to {b.url}/agent" in log, log
        assert task_id in log.split(B_CANCEL_REASON)[0].splitlines()[-1], log   # that task, cancelled

        # The agent goes on with B: a task submitted there runs, its output streams.
        t2 = await web_b.submit("echo after failover")
        res = await web_b.result(t2, 30)
        assert res["success"] is True and res["result"] == {"exitCode": 0}, res
        assert [e["payload"]["data"] for e in web_b.of("task.stream", t2)] == ["after failover\n"]
        assert proc.poll() is None, agents.log("roamer")   # nothing crashed
        # And it stops when asked (no hang in the failover machinery).
        proc.terminate()
        proc.wait(15)
    finally:
        for w in webs:
            await w.close()
        agents.stop_all()
        a.stop()
        b.stop()
