"""orchestra.Agent and orchestra.SyncAgent against a hub played by python `websockets` on
127.0.0.1: the peer checks the agent.register signature as docs/protocol.md defines it, answers
agent.registered (or AUTH_001), assigns tasks and reads what the agent sends back."""
import asyncio
import gc
import hashlib
import hmac
import json
import threading
import time
import uuid
import weakref

import pytest
import websockets
from websockets.asyncio.server import serve

import orchestra
from orchestra import Agent, AgentState, AuthError, HubError, SyncAgent

SECRET = bytes(range(1, 33))
SECRET_HEX = SECRET.hex()


def run(coro, timeout=30):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def envelope(type_, payload, correlation_id=None):
    env = {"id": str(uuid.uuid4()), "type": type_, "version": "1.0",
           "timestamp": int(time.time() * 1000), "payload": payload}
    if correlation_id:
        env["correlationId"] = correlation_id
    return json.dumps(env)


class FakeHub:
    """The hub side of /agent, just enough: one agent connection at a time."""

    def __init__(self, keys, heartbeat_ms=60000):
        self.keys = keys
        self.heartbeat_ms = heartbeat_ms
        self.registrations = []         # agent.register payloads, verified or not
        self.inbox = asyncio.Queue()    # envelopes after the registration (heartbeats apart)
        self.heartbeats = []
        self.registered = asyncio.Event()
        self.closed = asyncio.Queue()   # close codes of the agent connections, in order
        self.ws = None
        self.assigned_on_register = None   # None: every inFlight task stays the agent's
        self.gate = None                   # an asyncio.Event: agent.registered waits for it
        self.path = None

    async def __aenter__(self):
        self.server = await serve(self.handler, "127.0.0.1", 0)
        self.url = f"ws://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/agent"
        return self

    async def __aexit__(self, *exc):
        self.server.close()
        await self.server.wait_closed()

    def check_signature(self, p):
        key = self.keys.get(p.get("keyId"))
        if key is None:
            return "unknown key"
        signed = f"{p['agentId']}\n{p['timestamp']}\n{p['nonce']}".encode()
        expected = hmac.new(key, signed, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, p.get("signature", "")):
            return "bad signature"
        if abs(p["timestamp"] - time.time() * 1000) > 300_000:
            return "stale timestamp"
        return None

    async def handler(self, ws):
        self.path = ws.request.path
        try:
            first = json.loads(await ws.recv())
            assert first["type"] == "agent.register", first
            p = first["payload"]
            self.registrations.append(p)
            problem = self.check_signature(p)
            if problem:
                await ws.send(envelope("error", {"code": "AUTH_001", "message": problem,
                                                 "timestamp": int(time.time() * 1000)}, first["id"]))
                await ws.close(1008, "AUTH_001")
                return
            in_flight = [t["taskId"] for t in p.get("inFlight", [])]
            assigned = in_flight if self.assigned_on_register is None else self.assigned_on_register
            if self.gate is not None:
                await self.gate.wait()
            await ws.send(envelope("agent.registered", {
                "success": True, "agentId": p["agentId"], "protocol": 1,
                "heartbeatIntervalMs": self.heartbeat_ms, "leaseMs": 15000, "assignedTasks": assigned},
                first["id"]))
            self.ws = ws
            self.registered.set()
            async for raw in ws:
                env = json.loads(raw)
                if env["type"] == "agent.heartbeat":
                    self.heartbeats.append(env["payload"])
                else:
                    await self.inbox.put(env)
        except websockets.ConnectionClosed:
            pass
        finally:
            await self.closed.put(ws.close_code)

    async def send(self, type_, payload, correlation_id=None):
        await self.ws.send(envelope(type_, payload, correlation_id))

    async def assign(self, task_id, attempt=1, parameters=None, **task):
        task.setdefault("type", "shell")
        task["parameters"] = parameters if parameters is not None else {"command": "echo hi"}
        await self.send("task.assign", {"taskId": task_id, "attempt": attempt, "agentId": "a1", "task": task})

    async def next(self, type_=None):
        env = await self.inbox.get()
        if type_ is not None:
            assert env["type"] == type_, env
        return env


def runtime_for(io):
    """None (the shared runtime's I/O thread) or, inside a running loop, the embedded runtime
    the loop itself runs (orchestra.Runtime.for_loop())."""
    return orchestra.Runtime.for_loop() if io == "loop" else None


def make_agent(url, cls=Agent, **kw):
    args = dict(capabilities=["shell", "python"], name="builder-1", version="1.2.0",
                metadata={"zone": "eu"}, max_concurrency=4, reconnect_initial_delay=0.02,
                reconnect_max_delay=0.1)
    args.update(kw)
    return cls(url, "a1", "k1", args.pop("secret", SECRET_HEX), **args)


@pytest.mark.parametrize("io", ["thread", "loop"])
def test_registers_with_a_valid_signature_and_runs_a_task(io):
    async def main():
        errors, got_error = [], asyncio.Event()

        def on_error(e):
            errors.append(e)
            got_error.set()

        async with FakeHub({"k1": SECRET}) as hub:
            agent = make_agent(hub.url, on_error=on_error, runtime=runtime_for(io))
            assert agent.state == AgentState.CONNECTING
            await agent.start()
            assert agent.state == AgentState.REGISTERED
            assert hub.path == "/agent"
            reg = hub.registrations[0]
            assert hub.check_signature(reg) is None   # the hub's own check passed too
            assert (reg["agentId"], reg["keyId"], reg["name"], reg["version"]) == ("a1", "k1", "builder-1", "1.2.0")
            assert reg["capabilities"] == ["shell", "python"]
            assert reg["metadata"] == {"zone": "eu"} and reg["maxConcurrency"] == 4
            assert len(reg["nonce"]) >= 16 and int(reg["nonce"], 16) >= 0
            assert reg.get("inFlight", []) == []

            await hub.assign("t1", 1, {"command": "echo hi", "env": {"A": "1"}}, tool="custom")
            tasks = agent.tasks()
            task = await tasks.__anext__()
            assert (task.id, task.attempt) == ("t1", 1)
            assert task.params == {"command": "echo hi", "env": {"A": "1"}}
            assert task.task["tool"] == "custom" and task.task["type"] == "shell"
            assert task.payload["agentId"] == "a1"
            assert not task.cancelled.is_set()

            task.accept()
            accepted = await hub.next("task.accepted")
            assert accepted["payload"]["taskId"] == "t1" and accepted["payload"]["attempt"] == 1

            chunks = ["line 1\n", "é✓🎵\n", b"bytes line\n", ""]
            for c in chunks:
                task.stream(c)
            task.stream("warning\n", type="stderr")
            task.progress(50, "half way")
            task.progress(100)
            # Argument errors reach Python as exceptions naming the problem; nothing is sent.
            with pytest.raises(orchestra.InvalidArgument):
                task.progress(150)
            with pytest.raises(orchestra.InvalidArgument):
                task.stream("x", type="video")
            with pytest.raises(orchestra.InvalidArgument):
                task.stream(b"\xff\xfe")
            with pytest.raises(TypeError):
                task.result(True, {"not json": object()})
            task.result(True, {"exitCode": 0, "lines": 3})
            assert task.done

            got = [await hub.next() for _ in range(8)]
            streams = [e["payload"] for e in got[:5]]
            assert [e["type"] for e in got] == ["task.stream"] * 5 + ["task.progress"] * 2 + ["task.result"]
            assert [s["seq"] for s in streams] == [0, 1, 2, 3, 4]
            assert [s["data"] for s in streams] == ["line 1\n", "é✓🎵\n", "bytes line\n", "", "warning\n"]
            assert [s["type"] for s in streams] == ["stdout"] * 4 + ["stderr"]
            assert all(s["taskId"] == "t1" and s["attempt"] == 1 for s in streams)
            assert got[5]["payload"]["progress"] == 50 and got[5]["payload"]["currentStep"] == "half way"
            assert got[6]["payload"]["progress"] == 100 and "currentStep" not in got[6]["payload"]
            result = got[7]["payload"]
            assert result["success"] is True and result["result"] == {"exitCode": 0, "lines": 3}
            assert result["taskId"] == "t1" and isinstance(result["duration"], int) and result["duration"] >= 0

            # The attempt is no longer in flight.
            with pytest.raises(orchestra.NotFound):
                task.stream("late")

            # An error the hub answers to one of the agent's messages reaches on_error.
            await hub.assign("t2", 1)
            t2 = await tasks.__anext__()
            t2.progress(10)
            prog = await hub.next("task.progress")
            await hub.send("error", {"code": "PARAM_001", "message": "task.progress: no",
                                     "details": {"field": "progress", "taskId": "t2", "attempt": 1},
                                     "timestamp": int(time.time() * 1000)}, prog["id"])
            await asyncio.wait_for(got_error.wait(), 10)
            assert errors[0].code == "PARAM_001" and errors[0].message == "task.progress: no"
            # The library names the task from the error's details.
            assert (errors[0].task_id, errors[0].attempt) == ("t2", 1)
            assert errors[0].payload["details"]["field"] == "progress"

            await agent.close()
            assert agent.state == AgentState.CLOSED
            assert await hub.closed.get() == 1000
            # The iterator ends once the agent is closed.
            assert [t async for t in tasks] == []
            with pytest.raises(orchestra.Closed):
                t2.accept()
    run(main())


def test_cancel_and_input_reach_the_task():
    async def main():
        async with FakeHub({"k1": SECRET}) as hub:
            async with make_agent(hub.url) as agent:
                await hub.assign("t9", 2)
                tasks = agent.tasks()
                task = await tasks.__anext__()
                task.accept()
                await hub.next("task.accepted")
                await hub.send("worker.input", {"agentId": "a1", "taskId": "t9", "input": "yes"})
                await hub.send("worker.input", {"agentId": "a1", "taskId": "t9", "input": {"k": [1]}})
                inputs = task.inputs()
                assert await inputs.__anext__() == "yes"
                assert json.loads(await inputs.__anext__()) == {"k": [1]}
                await hub.send("task.cancel", {"taskId": "t9", "attempt": 2})
                await asyncio.wait_for(task.cancelled.wait(), 10)
                assert task.cancel_reason and task.done
                assert [i async for i in inputs] == []       # ended with the task
                with pytest.raises(orchestra.NotFound):
                    task.result(False, error="too late")
                await hub.assign("t10", 1)
                t10 = await tasks.__anext__()
                t10.reject("busy")
                assert (await hub.next("task.rejected"))["payload"] == {"taskId": "t10", "attempt": 1, "reason": "busy"}
                # A cancel for another attempt is not this task's.
                await hub.assign("t9", 3)
                t3 = await tasks.__anext__()
                await hub.send("task.cancel", {"taskId": "t9", "attempt": 2})
                t3.result(False, error="exit 2")
                res = await hub.next("task.result")
                assert res["payload"]["attempt"] == 3 and res["payload"]["success"] is False
                assert res["payload"]["error"] == "exit 2" and not t3.cancelled.is_set()
            assert await hub.closed.get() == 1000
    run(main())


def _weakrefs():
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) is weakref.ReferenceType)


def test_the_library_carries_the_tasks_in_flight():
    """The agent keeps no map of its tasks: the library carries a weak reference to each task
    object (orc_agent_event_set_task_data) and lets go of it once the attempt is over. A task's
    inputs() end when the agent closes; a dropped agent with a task in flight is collected."""
    async def main():
        async with FakeHub({"k1": SECRET}) as hub:
            agent = make_agent(hub.url)
            await agent.start()
            tasks = agent.tasks()
            # Finished attempts leave nothing behind (the library dropped its references).
            await hub.assign("warm", 1)
            (await tasks.__anext__()).result(True)
            await hub.next("task.result")
            before = _weakrefs()
            for i in range(200):
                await hub.assign(f"r{i}", 1)
                (await tasks.__anext__()).result(True)
                await hub.next("task.result")
            assert _weakrefs() - before < 20        # one kept per task would be 200
            # A task in flight: its inputs() end with the agent.
            await hub.assign("open", 1)
            task = await tasks.__anext__()
            inputs = task.inputs()
            waiting = asyncio.ensure_future(inputs.__anext__())
            await asyncio.sleep(0)
            await agent.close()
            with pytest.raises(StopAsyncIteration):
                await asyncio.wait_for(waiting, 10)
            assert await hub.closed.get() == 1000

    run(main())

    def dropped(hub_url):
        agent = make_agent(hub_url, cls=SyncAgent, secret=SECRET)
        agent.start(timeout=20)
        task = next(agent.tasks(timeout=20))
        assert task.id == "held"
        return weakref.ref(agent), weakref.ref(task)

    async def main2():
        async with FakeHub({"k1": SECRET}) as hub:
            async def assign():
                await asyncio.wait_for(hub.registered.wait(), 10)
                await hub.assign("held", 1)
            sender = asyncio.ensure_future(assign())
            agent_ref, task_ref = await asyncio.to_thread(dropped, hub.url)
            await sender
            gc.collect()
            assert agent_ref() is None and task_ref() is None   # nothing in C keeps them
            assert await asyncio.wait_for(hub.closed.get(), 10) == 1000   # and it was closed

    run(main2())


@pytest.mark.parametrize("io", ["thread", "loop"])
def test_reconnect_lists_in_flight_and_a_reassigned_task_is_cancelled(io):
    async def main():
        # Heartbeats every 50 ms: with io="loop" they are timers the asyncio loop runs.
        async with FakeHub({"k1": SECRET}, heartbeat_ms=50) as hub:
            async with make_agent(hub.url, runtime=runtime_for(io)) as agent:
                await hub.assign("keep", 1)
                await hub.assign("lose", 1)
                tasks = agent.tasks()
                keep, lose = await tasks.__anext__(), await tasks.__anext__()
                hub.assigned_on_register = ["keep"]
                hub.registered.clear()
                await hub.ws.close(1001, "hub restarting")
                assert await hub.closed.get() == 1001
                await asyncio.wait_for(hub.registered.wait(), 10)
                reg = hub.registrations[-1]
                assert sorted(t["taskId"] for t in reg["inFlight"]) == ["keep", "lose"]
                assert hub.check_signature(reg) is None
                assert reg["nonce"] != hub.registrations[0]["nonce"]
                await asyncio.wait_for(lose.cancelled.wait(), 10)
                assert "re-assigned" in lose.cancel_reason
                assert not keep.cancelled.is_set()
                keep.result(True)
                res = await hub.next("task.result")
                assert res["payload"]["taskId"] == "keep"
                assert agent.state == AgentState.REGISTERED
                n = len(hub.heartbeats)
                await asyncio.sleep(0.3)
                assert len(hub.heartbeats) >= n + 2     # heartbeats go on by themselves
    run(main())


async def until(pred, what, timeout=10):
    """Polls pred() on the loop (bounded); fails naming `what`."""
    for _ in range(int(timeout / 0.01)):
        if pred():
            return
        await asyncio.sleep(0.01)
    pytest.fail(f"timed out waiting for {what}")


@pytest.mark.parametrize("io", ["thread", "loop"])
def test_fails_over_to_the_next_hub_which_keeps_its_task(io):
    """Two hubs: A drops the agent, which moves on to B (not back to A, still listening). B
    holds its agent.registered while the agent sends: t1's chunks and result wait in the
    outbox and reach B after the registration, in order, once; B keeps t1 and not t2, whose
    chunk is dropped and which is cancelled. Then B goes away and the agent is back with A."""
    async def main():
        async with FakeHub({"k1": SECRET}) as a, FakeHub({"k1": SECRET}) as b:
            moves = []
            agent = make_agent([a.url, b.url], runtime=runtime_for(io), on_failover=lambda u, r: moves.append((u, r)))
            assert agent.urls == (a.url, b.url) and agent.url == a.url
            await agent.start()
            assert (agent.url, agent.url_index) == (a.url, 0)
            await a.assign("t1", 1)
            await a.assign("t2", 4)
            tasks = agent.tasks()
            t1, t2 = await tasks.__anext__(), await tasks.__anext__()
            t1.stream("c0\n")
            assert (await a.next("task.stream"))["payload"]["seq"] == 0

            b.gate = asyncio.Event()
            b.assigned_on_register = ["t1"]
            await a.ws.close(1001, "hub going away")
            await until(lambda: b.registrations, "the registration on B")
            await until(lambda: moves, "the FAILOVER event")   # routed when the loop pumps
            assert [m[0] for m in moves] == [b.url]
            assert moves[0][1].startswith(a.url) and "1001" in moves[0][1] and moves[0][1].endswith("next: " + b.url)
            assert (agent.url, agent.url_index) == (b.url, 1)
            assert agent.state == AgentState.CONNECTING
            reg = b.registrations[0]
            assert reg["inFlight"] == [{"taskId": "t1", "attempt": 1}, {"taskId": "t2", "attempt": 4}]
            assert b.check_signature(reg) is None
            t1.stream("c1\n")
            t2.stream("lost\n")
            t1.stream("c2\n", type="stderr")
            t1.result(True, {"exitCode": 0})
            b.gate.set()
            await asyncio.wait_for(t2.cancelled.wait(), 10)
            assert "re-assigned" in t2.cancel_reason and not t1.cancelled.is_set()
            got = [await b.next() for _ in range(3)]
            assert [(e["type"], e["payload"]["taskId"]) for e in got] == [("task.stream", "t1")] * 2 + [("task.result", "t1")]
            assert [(e["payload"]["seq"], e["payload"]["data"]) for e in got[:2]] == [(1, "c1\n"), (2, "c2\n")]
            assert got[2]["payload"]["result"] == {"exitCode": 0}
            # Nothing more of t1 or t2: the next message is about a new task.
            await b.assign("t3", 1)
            t3 = await tasks.__anext__()
            t3.accept()
            assert (await b.next("task.accepted"))["payload"]["taskId"] == "t3"
            assert agent.state == AgentState.REGISTERED
            assert len(a.registrations) == 1

            # B goes away too: round robin brings the agent back to A, the first.
            a.registered.clear()
            await b.ws.close(1011, "hub crashed")
            await asyncio.wait_for(a.registered.wait(), 10)
            assert a.registrations[1]["inFlight"] == [{"taskId": "t3", "attempt": 1}]
            await until(lambda: len(moves) == 2, "the FAILOVER event back to A")
            assert [m[0] for m in moves] == [b.url, a.url]
            await until(lambda: agent.state == AgentState.REGISTERED, "the registration on A")
            assert (agent.url, agent.url_index) == (a.url, 0)
            t3.result(True)
            assert (await a.next("task.result"))["payload"]["taskId"] == "t3"
            await agent.close()
    run(main())


def test_several_urls_arguments():
    with pytest.raises(orchestra.InvalidArgument, match="empty"):
        Agent([], "a1", "k1", SECRET)
    with pytest.raises(TypeError):
        Agent(["ws://127.0.0.1:1/agent", 7], "a1", "k1", SECRET)
    with pytest.raises(TypeError):
        Agent({"ws://127.0.0.1:1/agent"}, "a1", "k1", SECRET)
    with pytest.raises(orchestra.InvalidArgument, match="http://127.0.0.1:2/agent"):
        Agent(["ws://127.0.0.1:1/agent", "http://127.0.0.1:2/agent"], "a1", "k1", SECRET)
    agent = SyncAgent(("ws://127.0.0.1:1/agent", "ws://127.0.0.1:2/agent"), "a1", "k1", SECRET)
    assert agent.urls == ("ws://127.0.0.1:1/agent", "ws://127.0.0.1:2/agent")
    assert (agent.url, agent.url_index) == ("ws://127.0.0.1:1/agent", 0)
    agent.close()


def test_refused_registration_raises_auth_error():
    async def main():
        async with FakeHub({"k1": b"another secret"}) as hub:
            agent = make_agent(hub.url)
            with pytest.raises(AuthError) as ei:
                await agent.start()
            assert ei.value.code == "AUTH_001" and "bad signature" in str(ei.value)
            assert agent.state == AgentState.FAILED
            await hub.closed.get()       # the connection is over
            with pytest.raises(AuthError):
                async for _ in agent.tasks():
                    pass
            assert len(hub.registrations) == 1     # a refused agent does not try again
            await agent.close()
    run(main())


def test_sync_agent():
    async def main():
        async with FakeHub({"k1": SECRET}) as hub:
            seen = {}

            def script():
                with make_agent(hub.url, cls=SyncAgent, secret=SECRET) as agent:
                    seen["state"] = agent.state
                    for task in agent.tasks(timeout=20):
                        task.accept()
                        if task.id == "s1":
                            task.stream("from a thread\n")
                            seen["input"] = task.next_input(timeout=20)
                            task.result(True, {"exitCode": 0})
                        else:
                            # The cancel arrives while the body runs; waiting routes it.
                            assert task.wait_cancelled(timeout=20)
                            assert task.cancelled
                            seen["cancel"] = task.cancel_reason
                            break

            runner = asyncio.create_task(asyncio.to_thread(script))
            await asyncio.wait_for(hub.registered.wait(), 10)
            await hub.assign("s1", 1)
            assert (await hub.next("task.accepted"))["payload"]["taskId"] == "s1"
            assert (await hub.next("task.stream"))["payload"]["data"] == "from a thread\n"
            await hub.send("worker.input", {"agentId": "a1", "taskId": "s1", "input": "go"})
            assert (await hub.next("task.result"))["payload"]["result"] == {"exitCode": 0}
            await hub.assign("s2", 1)
            await hub.next("task.accepted")
            await hub.send("task.cancel", {"taskId": "s2", "attempt": 1})
            await runner
            assert (seen["state"], seen["input"]) == (AgentState.REGISTERED, "go")
            assert seen["cancel"]
            assert await hub.closed.get() == 1000
    run(main())


def test_sync_agent_refuses_an_embedded_runtime():
    async def main():
        with pytest.raises(orchestra.StateError, match="embedded"):
            SyncAgent("ws://127.0.0.1:1/agent", "a1", "k1", SECRET_HEX, runtime=orchestra.Runtime.for_loop())
    run(main())


def test_sync_agent_refused_and_timeouts():
    async def main():
        async with FakeHub({"k1": b"other"}) as hub:
            def refused():
                agent = make_agent(hub.url, cls=SyncAgent)
                with pytest.raises(AuthError):
                    agent.start(timeout=20)
                agent.close()
            await asyncio.to_thread(refused)
        # Nothing listens on this port: start(timeout) gives up with Timeout, the agent keeps
        # its state (it would retry) until closed.
        async with FakeHub({}) as hub:
            url = hub.url
        def unreachable():
            agent = make_agent(url, cls=SyncAgent)
            with pytest.raises(orchestra.Timeout):
                agent.start(timeout=0.3)
            assert agent.state in (AgentState.CONNECTING, AgentState.DISCONNECTED)
            agent.close()
            assert agent.state == AgentState.CLOSED
            assert list(agent.tasks()) == []
        await asyncio.to_thread(unreachable)
    run(main())


def test_argument_errors():
    url = "ws://127.0.0.1:1/agent"
    with pytest.raises(orchestra.InvalidArgument, match="hex"):
        Agent(url, "a1", "k1", "not hex")
    with pytest.raises(orchestra.InvalidArgument, match="empty"):
        Agent(url, "a1", "k1", b"")
    with pytest.raises(TypeError):
        Agent(url, "a1", "k1", 12345)
    with pytest.raises(TypeError, match="capabilities"):
        Agent(url, "a1", "k1", SECRET, capabilities="shell")
    with pytest.raises(orchestra.InvalidArgument, match="max_concurrency"):
        Agent(url, "a1", "k1", SECRET, max_concurrency=0)
    with pytest.raises(orchestra.InvalidArgument):
        Agent("http://127.0.0.1:1/agent", "a1", "k1", SECRET)
    with pytest.raises(orchestra.InvalidArgument):
        Agent(url, "", "k1", SECRET)
    with pytest.raises(orchestra.InvalidArgument):
        Agent(url, "a1", "k1", SECRET, metadata={"x": 1}, connect_timeout=0)
    with pytest.raises(orchestra.IOFailure):
        Agent("wss://127.0.0.1:1/agent", "a1", "k1", SECRET, tls_ca_file="/nonexistent/ca.pem")
    # A hex str and the same bytes are the same secret.
    assert Agent(url, "a1", "k1", "0A0b").state == AgentState.CONNECTING


def test_result_json_is_compact_stdlib_json():
    """The agent encodes results with an encoder built once: the same text as
    json.dumps(separators=(",", ":")), and a ValueError (not a crash) for a cycle or an object
    JSON cannot hold."""
    from orchestra.agent import _dumps
    values = [{"exitCode": 0}, [], {}, "t\u00e9xt\n\"q\"", 1.5, -0.0, float("inf"), None, True,
              {"a": [1, {"b": None}], 2: "int key"}, ["\U0001f600", "\x00"], 10 ** 30]
    for v in values:
        assert _dumps(v) == json.dumps(v, separators=(",", ":"))
    cyc = []
    cyc.append(cyc)
    with pytest.raises(ValueError):
        _dumps(cyc)
    with pytest.raises(TypeError):
        _dumps({"x": object()})
