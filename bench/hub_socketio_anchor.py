#!/usr/bin/env python3
"""bench/hub_socketio_anchor.py: the anchor of the hub benchmark: the hub's dispatch (agents
register, web clients submit tasks, the hub assigns them round-robin, the agent accepts, sends
one stream chunk and a result, the hub forwards both to the submitter) written idiomatically
with python-socketio: socketio.AsyncServer on aiohttp, clients socketio.AsyncClient with
transports=['websocket']. Event names are the design's (agent:register, agent:registered,
task:submit acknowledged with the task id, task:assign, task:accepted, task:stream,
task:result); payloads are those of docs/protocol.md ("The hub protocol"), with a 64-byte
stream chunk and a small result.

One measurement (the server, every agent and every web client in its own process, pinned and
scheduled by bench/hub_bench.py, which also takes medians of several runs):

  hub_socketio_anchor.py --agents 10 --tasks 20000 --concurrency 100    # tasks/s
  hub_socketio_anchor.py --latency --tasks 2000                         # 1 agent, 1 client, 1 in flight

prints one JSON line: {"tasks", "seconds", "tasks_per_s", "p50_ms", "p99_ms", "server_rss_kb", ...}.

The processes it starts run this file with --role server|agent|client; they talk to the
orchestrator (bench/hub_bench.py, run_stack) over stdin/stdout, one JSON object a line:
  agent:  prints {"ready": AGENT_ID} once registered; on EOF of stdin it disconnects and
          prints {"agent": AGENT_ID, "tasks": N} (N: tasks it ran, warm-up included).
  client: connects, runs --warmup tasks, prints {"ready": true}, waits for a line on stdin
          (go), runs --tasks tasks with --concurrency in flight, prints {"tasks", "t_start",
          "t_end" (time.monotonic(), shared by every process), "lat_ms": [...], "errors": [...]}.
  server: listens on 127.0.0.1:--port (the orchestrator waits for the port).

Knobs of the setup (every process of a run uses the same): --loop asyncio|uvloop,
--json std|orjson, --sync-handlers (python-socketio's async_handlers=False on the server).
Their defaults are the fastest setup measured here (see bench/README.md, "Hub").
"""
import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from collections import deque
from pathlib import Path

CHUNK = 64          # bytes of task:stream data, as in our hub's benchmark
DEFAULT_LOOP = "uvloop"
DEFAULT_JSON = "orjson"


class OrjsonModule:
    """The json module python-socketio and python-engineio call (dumps with separators=...,
    loads), backed by orjson."""

    def __init__(self):
        import orjson
        self._o = orjson

    def dumps(self, obj, **_kw):
        return self._o.dumps(obj).decode()

    def loads(self, s, **_kw):
        return self._o.loads(s)


def json_module(name):
    return OrjsonModule() if name == "orjson" else json


def use_loop(name):
    if name == "uvloop":
        import uvloop
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def emit_line(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def read_stdin_line():
    return await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


# ---------------------------------------------------------------------------------------------
# server

class Task:
    __slots__ = ("id", "submitter", "agent", "attempt", "state", "body")

    def __init__(self, tid, submitter, body):
        self.id, self.submitter, self.body = tid, submitter, body
        self.agent, self.attempt, self.state = None, 1, "queued"


def server_main(a):
    import socketio
    from aiohttp import web

    sio = socketio.AsyncServer(async_mode="aiohttp", json=json_module(a.json),
                               async_handlers=not a.sync_handlers, logger=False,
                               engineio_logger=False, max_http_buffer_size=1 << 20)
    app = web.Application()
    sio.attach(app)

    agents = []          # sids of registered agents, in registration order (the round-robin ring)
    agent_ids = {}       # sid -> agentId
    tasks = {}           # taskId -> Task, until its result
    queued = deque()     # tasks waiting for an agent
    rr = [0]

    async def assign(t):
        sid = agents[rr[0] % len(agents)]
        rr[0] += 1
        t.agent, t.state = sid, "assigned"
        await sio.emit("task:assign", {"taskId": t.id, "attempt": t.attempt, "agentId": agent_ids[sid],
                                       "task": t.body}, to=sid)

    @sio.on("agent:register")
    async def agent_register(sid, data):
        if not isinstance(data, dict) or not isinstance(data.get("agentId"), str):
            await sio.emit("error", {"code": "PARAM_001", "message": "agent:register: agentId must be a string"}, to=sid)
            return
        if sid not in agent_ids:
            agents.append(sid)
        agent_ids[sid] = data["agentId"]
        await sio.emit("agent:registered", {"success": True, "agentId": data["agentId"], "protocol": 1,
                                            "heartbeatIntervalMs": 5000, "leaseMs": 15000,
                                            "assignedTasks": []}, to=sid)
        while queued and agents:
            await assign(queued.popleft())

    @sio.on("task:submit")
    async def task_submit(sid, data):
        if not isinstance(data, dict) or not isinstance(data.get("parameters", {}), dict):
            return {"error": {"code": "PARAM_001", "message": "task:submit: payload must be an object"}}
        tid = data.get("taskId")
        if not isinstance(tid, str) or not tid:
            tid = uuid.uuid4().hex
        elif tid in tasks:               # a retried submit answers the task's state
            return {"taskId": tid, "state": tasks[tid].state}
        t = Task(tid, sid, {"type": data.get("type"), "tool": data.get("tool"),
                            "capabilities": data.get("capabilities", []),
                            "parameters": data.get("parameters", {}),
                            "priority": data.get("priority", "normal"),
                            "sessionId": data.get("sessionId")})
        tasks[tid] = t
        if agents:
            await assign(t)
        else:
            queued.append(t)
        return {"taskId": tid, "state": "queued"}

    def own_task(sid, data):
        t = tasks.get(data.get("taskId")) if isinstance(data, dict) else None
        return t if t is not None and t.agent == sid and data.get("attempt") == t.attempt else None

    @sio.on("task:accepted")
    async def task_accepted(sid, data):
        t = own_task(sid, data)
        if t is not None:
            t.state = "running"

    streams = [0]

    @sio.on("task:stream")
    async def task_stream(sid, data):
        t = own_task(sid, data)
        if t is not None:
            streams[0] += 1
            if a.drop_stream_every and streams[0] % a.drop_stream_every == 0:
                return      # a fault for the harness's smoke check: it must notice
            await sio.emit("task:stream", data, to=t.submitter)

    @sio.on("task:result")
    async def task_result(sid, data):
        t = own_task(sid, data)
        if t is not None:
            del tasks[t.id]
            await sio.emit("task:result", data, to=t.submitter)

    @sio.event
    async def disconnect(sid, *_reason):
        if sid in agent_ids:
            del agent_ids[sid]
            agents.remove(sid)
            for t in [t for t in tasks.values() if t.agent == sid]:   # back to the queue
                t.agent, t.state, t.attempt = None, "queued", t.attempt + 1
                if agents:
                    await assign(t)
                else:
                    queued.append(t)

    web.run_app(app, host="127.0.0.1", port=a.port, print=None, access_log=None,
                handle_signals=True)


# ---------------------------------------------------------------------------------------------
# agent

async def agent_main(a):
    import socketio
    sio = socketio.AsyncClient(reconnection=False, json=json_module(a.json))
    registered = asyncio.Event()
    done = [0]
    chunk = "x" * CHUNK

    @sio.on("agent:registered")
    async def on_registered(data):
        registered.set()

    @sio.on("task:assign")
    async def on_assign(data):
        t0 = time.monotonic()
        tid, attempt = data["taskId"], data["attempt"]
        await sio.emit("task:accepted", {"taskId": tid, "attempt": attempt})
        await sio.emit("task:stream", {"taskId": tid, "attempt": attempt, "seq": 0, "type": "stdout",
                                       "data": chunk, "timestamp": int(time.time() * 1000)})
        await sio.emit("task:result", {"taskId": tid, "attempt": attempt, "success": True,
                                       "result": {"exitCode": 0},
                                       "duration": int((time.monotonic() - t0) * 1000)})
        done[0] += 1

    await sio.connect(a.url, transports=["websocket"], wait_timeout=10)
    await sio.emit("agent:register", {"agentId": a.agent_id, "name": a.agent_id, "capabilities": ["shell"],
                                      "version": "1.0.0", "metadata": {}, "maxConcurrency": 1000})
    await asyncio.wait_for(registered.wait(), 10)
    emit_line({"ready": a.agent_id})
    await read_stdin_line()            # EOF or any line: stop
    await sio.disconnect()
    emit_line({"agent": a.agent_id, "tasks": done[0]})


# ---------------------------------------------------------------------------------------------
# web client

async def client_main(a):
    import socketio
    sio = socketio.AsyncClient(reconnection=False, json=json_module(a.json))
    loop = asyncio.get_running_loop()
    waiting = {}      # taskId -> [t0, stream chunks seen, future of the result's arrival time]
    errors = []

    def error(msg):
        if len(errors) < 20:
            errors.append(msg)

    @sio.on("task:stream")
    async def on_stream(data):
        w = waiting.get(data.get("taskId"))
        if w is None:
            error(f"stream for an unknown task {data.get('taskId')!r}")
        elif data.get("seq") != 0 or len(data.get("data", "")) != CHUNK:
            error(f"bad stream chunk {data!r}")
        else:
            w[1] += 1

    @sio.on("task:result")
    async def on_result(data):
        w = waiting.pop(data.get("taskId"), None)
        if w is None:
            error(f"result for an unknown task {data.get('taskId')!r}")
            return
        if w[1] != 1 or data.get("success") is not True:
            error(f"task {data.get('taskId')}: {w[1]} stream chunks before its result {data!r}")
        w[2].set_result(time.perf_counter())

    prefix = f"{a.client_id}-{os.getpid()}-"

    async def run(n, lat):
        ids = iter(range(n))

        async def worker():
            for _ in ids:
                tid = f"{prefix}{next(counter)}"
                fut = loop.create_future()
                t0 = time.perf_counter()
                waiting[tid] = [t0, 0, fut]
                ack = await sio.call("task:submit", {"taskId": tid, "type": "shell", "tool": "custom",
                                                     "capabilities": ["shell"],
                                                     "parameters": {"command": "echo hi"},
                                                     "priority": "normal", "strategy": "round-robin"},
                                     timeout=a.deadline)
                if not isinstance(ack, dict) or ack.get("taskId") != tid:
                    error(f"submit of {tid} acknowledged with {ack!r}")
                t1 = await fut
                if lat is not None:
                    lat.append((t1 - t0) * 1000.0)

        await asyncio.gather(*(worker() for _ in range(max(1, min(a.concurrency, n)))))

    counter = iter(range(1 << 62))
    await sio.connect(a.url, transports=["websocket"], wait_timeout=10)
    if a.warmup:
        await asyncio.wait_for(run(a.warmup, None), a.deadline)
    emit_line({"ready": True})
    if not await read_stdin_line():    # EOF before the go: the orchestrator is gone
        await sio.disconnect()
        return
    lat = []
    t_start = time.monotonic()
    try:
        await asyncio.wait_for(run(a.tasks, lat), a.deadline)
    except asyncio.TimeoutError:
        error(f"deadline of {a.deadline} s passed with {len(lat)} of {a.tasks} tasks done")
    t_end = time.monotonic()
    await sio.disconnect()
    emit_line({"tasks": len(lat), "t_start": t_start, "t_end": t_end, "lat_ms": lat, "errors": errors})


# ---------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--role", choices=["server", "agent", "client"], help="(internal) run one process of the stack")
    ap.add_argument("--port", type=int)
    ap.add_argument("--url")
    ap.add_argument("--agent-id")
    ap.add_argument("--client-id", default="c0")
    ap.add_argument("--latency", action="store_true", help="1 agent, 1 client, one task in flight")
    ap.add_argument("--agents", type=int, default=10)
    ap.add_argument("--clients", type=int, default=1, help="web client processes (the tasks and the concurrency are split)")
    ap.add_argument("--tasks", type=int, default=20000)
    ap.add_argument("--concurrency", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--deadline", type=float, default=120.0, help="seconds a client may take for its tasks")
    ap.add_argument("--loop", choices=["asyncio", "uvloop"], default=DEFAULT_LOOP)
    ap.add_argument("--json", choices=["std", "orjson"], default=DEFAULT_JSON)
    ap.add_argument("--sync-handlers", action="store_true", help="python-socketio async_handlers=False on the server")
    ap.add_argument("--drop-stream-every", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--server-cpu", default="1")
    ap.add_argument("--load-cpu", default="0")
    a = ap.parse_args()

    if a.role:
        use_loop(a.loop)
        if a.role == "server":
            server_main(a)
        elif a.role == "agent":
            asyncio.run(agent_main(a))
        else:
            asyncio.run(client_main(a))
        return

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import hub_bench
    hub_bench.install_signal_handlers()
    if a.latency:
        a.agents, a.clients, a.concurrency = 1, 1, 1
    r = hub_bench.run_socketio(agents=a.agents, tasks=a.tasks, concurrency=a.concurrency, clients=a.clients,
                               warmup=a.warmup, server_cpu=a.server_cpu, load_cpu=a.load_cpu,
                               options=hub_bench.socketio_options(a.loop, a.json, a.sync_handlers))
    print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
