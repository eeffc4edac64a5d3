#!/usr/bin/env python3
"""bench/hub_client.py: the hub benchmark's web client for orchestra-hub (bench/hub_bench.py,
run_ours): JSON envelopes (docs/protocol.md) over one WebSocket to the hub's /web endpoint with
a JWT, the same work as the python-socketio anchor's client (bench/hub_socketio_anchor.py):
--concurrency workers each submit a task (task.submit), wait for its result (task.result) and
submit the next; a task's latency is submit -> result seen. Every task must get its
task.submitted acknowledgement (correlationId = the submit's id, the same taskId) and exactly
one 64-byte task.stream chunk (seq 0), both before its task.result with success true.

    hub_client.py --url ws://127.0.0.1:PORT/web --token JWT --tasks N --concurrency C
                  [--warmup W] [--transport orchestra|websockets] [--loop uvloop|asyncio]
                  [--session ID]

--transport: orchestra (default): our binding's client, orchestra.Client
(bindings/python/orchestra/ws.py); websockets: the python `websockets` client (asyncio), for
comparing the two transports under the same work.

--session ID: joins the session ID first (session.join, made if new) and submits every task
into it, so the task's events reach this client through the session's feed (watchers get
them, numbered) instead of directly: bench/cluster_bench.py's cross-hub latency.

Line protocol (run_stack): connects, runs the warm-up, prints {"ready": true}, waits for a
line on stdin (go; EOF: stop), runs --tasks tasks, prints {"tasks", "t_start", "t_end"
(time.monotonic()), "lat_ms": [...], "errors": [...]}.
"""
import argparse
import asyncio
import json
import os
import sys
import time

CHUNK = 64

try:
    import orjson
    _loads = orjson.loads

    def _dumps(obj):
        return orjson.dumps(obj).decode()
except ImportError:   # the standard json, slower
    _loads = json.loads

    def _dumps(obj):
        return json.dumps(obj, separators=(",", ":"))


def emit_line(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def read_stdin_line():
    return await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


class OrchestraTransport:
    """orchestra.Client: sends go to the library at once (send_nowait; the library buffers
    above its watermark); receives are read right after the run that read them (io "loop":
    the loop's embedded runtime) or through the queue's readiness fd (io "thread": the shared
    runtime's I/O thread)."""

    def __init__(self, io="loop"):
        self.io = io

    async def open(self, url, token):
        from orchestra import Client, Runtime
        runtime = Runtime.for_loop() if self.io == "loop" else Runtime.shared()
        self.ws = Client(url, headers={"Authorization": f"Bearer {token}"}, ping_interval=None,
                         runtime=runtime)
        await self.ws.connect()

    def send(self, text):
        """None when sent; an awaitable when the send buffer is above its high watermark
        (the message is queued: wait until it drains, as Client.send does)."""
        return None if self.ws.send_nowait(text) else self._drain()

    async def _drain(self):
        while self.ws.stats()["buffered_amount"] > (256 << 10):
            await asyncio.sleep(0.001)

    async def recv_many(self):
        return await self.ws.recv_many()

    async def close(self):
        await self.ws.close()


class WebsocketsTransport:
    """python websockets (asyncio client), for comparison."""

    async def open(self, url, token):
        from websockets.asyncio.client import connect
        self.ws = await connect(url, additional_headers={"Authorization": f"Bearer {token}"},
                                max_size=None, ping_interval=None, compression=None)

    def send(self, text):
        return self.ws.send(text)

    async def recv_many(self):
        return [await self.ws.recv()]

    async def close(self):
        await self.ws.close()


async def client_main(a):
    loop = asyncio.get_running_loop()
    tr = OrchestraTransport(a.io) if a.transport == "orchestra" else WebsocketsTransport()
    await asyncio.wait_for(tr.open(a.url, a.token), 15)
    waiting = {}      # taskId -> [t0, acked, stream chunks seen, future of the result's arrival time]
    submits = {}      # request id -> taskId, until acknowledged
    errors = []
    closed = loop.create_future()
    joined = loop.create_future()

    def error(msg):
        if len(errors) < 20:
            errors.append(msg)

    async def reader():
        try:
            while True:
                for text in await tr.recv_many():
                    m = _loads(text)
                    t = m.get("type")
                    p = m.get("payload") or {}
                    if t == "task.stream":
                        w = waiting.get(p.get("taskId"))
                        if w is None:
                            error(f"stream for an unknown task {p.get('taskId')!r}")
                        elif p.get("seq") != 0 or len(p.get("data", "")) != CHUNK:
                            error(f"bad stream chunk {p!r}")
                        else:
                            w[2] += 1
                    elif t == "task.result":
                        w = waiting.pop(p.get("taskId"), None)
                        if w is None:
                            error(f"result for an unknown task {p.get('taskId')!r}")
                            continue
                        if not w[1] or w[2] != 1 or p.get("success") is not True:
                            error(f"task {p.get('taskId')}: acknowledged {w[1]}, {w[2]} stream chunks before its result {p!r}")
                        w[3].set_result(time.perf_counter())
                    elif t == "task.submitted":
                        tid = submits.pop(m.get("correlationId"), None)
                        w = waiting.get(tid)
                        if tid is None or p.get("taskId") != tid or w is None:
                            error(f"unexpected acknowledgement {m!r}")
                        else:
                            w[1] = True
                    elif t == "session.updated":
                        if not joined.done():
                            joined.set_result(p)
                    elif t == "error":
                        error(f"the hub answered an error: {m!r}")
                        tid = submits.pop(m.get("correlationId"), None)
                        w = waiting.pop(tid, None) if tid else None
                        if w is not None:
                            w[3].set_result(time.perf_counter())
                    # other events (agent.connected, agents.updated...) are not about tasks
        except Exception as e:   # the connection closed, or a message that is not JSON
            if not closed.done():
                closed.set_result(e)
            for w in waiting.values():
                if not w[3].done():
                    w[3].set_exception(ConnectionError(f"connection lost: {e!r}"))

    rtask = loop.create_task(reader())
    if a.session:
        s = tr.send(_dumps({"id": f"join-{a.client_id}", "type": "session.join", "timestamp": int(time.time() * 1000),
                            "version": "1.0", "payload": {"sessionId": a.session}}))
        if s is not None:
            await s
        await asyncio.wait_for(joined, 15)
    extra = {"sessionId": a.session} if a.session else {}
    prefix = f"{a.client_id}-{os.getpid()}-"
    counter = iter(range(1 << 62))

    async def run(n, lat):
        ids = iter(range(n))

        async def worker():
            for _ in ids:
                i = next(counter)
                tid = f"{prefix}{i}"
                rid = f"r{prefix}{i}"
                fut = loop.create_future()
                t0 = time.perf_counter()
                waiting[tid] = [t0, False, 0, fut]
                submits[rid] = tid
                s = tr.send(_dumps({"id": rid, "type": "task.submit", "timestamp": int(time.time() * 1000),
                                    "version": "1.0",
                                    "payload": {"taskId": tid, "type": "shell", "tool": "custom",
                                                "capabilities": ["shell"], "parameters": {"command": "echo hi"},
                                                "priority": "normal", "strategy": "round-robin", **extra}}))
                if s is not None:
                    await s
                t1 = await fut
                if lat is not None:
                    lat.append((t1 - t0) * 1000.0)

        await asyncio.gather(*(worker() for _ in range(max(1, min(a.concurrency, n)))))

    try:
        if a.warmup:
            await asyncio.wait_for(run(a.warmup, None), a.deadline)
        emit_line({"ready": True})
        if not await read_stdin_line():    # EOF before the go: the orchestrator is gone
            return
        lat = []
        t_start = time.monotonic()
        try:
            await asyncio.wait_for(run(a.tasks, lat), a.deadline)
        except asyncio.TimeoutError:
            error(f"deadline of {a.deadline} s passed with {len(lat)} of {a.tasks} tasks done")
        except ConnectionError as e:
            error(str(e))
        t_end = time.monotonic()
        emit_line({"tasks": len(lat), "t_start": t_start, "t_end": t_end, "lat_ms": lat, "errors": errors})
    finally:
        rtask.cancel()
        try:
            await asyncio.wait_for(tr.close(), 5)
        except Exception:
            pass


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="ws://HOST:PORT/web")
    ap.add_argument("--token", required=True, help="a JWT (orchestra-hub token --user NAME)")
    ap.add_argument("--client-id", default="c0")
    ap.add_argument("--tasks", type=int, required=True)
    ap.add_argument("--concurrency", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=0)
    ap.add_argument("--deadline", type=float, default=120.0, help="seconds the tasks may take")
    ap.add_argument("--transport", choices=["orchestra", "websockets"], default="orchestra")
    ap.add_argument("--loop", choices=["asyncio", "uvloop"], default="uvloop")
    ap.add_argument("--session", help="join this session first and submit every task into it")
    ap.add_argument("--io", choices=["thread", "loop"], default="loop",
                    help="--transport orchestra: the library's runtime, loop (embedded, run by the "
                         "asyncio loop: orchestra.Runtime.for_loop()) or thread (the shared I/O thread)")
    a = ap.parse_args()
    if a.loop == "uvloop":
        import uvloop
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(client_main(a))


if __name__ == "__main__":
    main()
