#!/usr/bin/env python3
"""bench/hub_agent.py: the hub benchmark's Python agent on our SDK (orchestra.Agent, asyncio;
bench/hub_bench.py, run_ours with --agent-lang python). It answers every task with
task.accepted, one 64-byte task.stream chunk (seq 0) and task.result {"success": true,
"result": {"exitCode": 0}}: the same work as the python-socketio anchor's agents.

    ORCHESTRA_LIBRARY=build/liborchestra.so PYTHONPATH=bindings/python \\
    hub_agent.py --url ws://127.0.0.1:PORT/agent --agent-id ID --key-id KEY --secret HEX
                 [--max-concurrency N] [--loop uvloop|asyncio] [--io loop|thread]

Line protocol (run_stack): prints {"ready": ID} once registered; at EOF of stdin (or any line)
closes the agent and prints {"agent": ID, "tasks": N} (N: tasks answered, warm-up included).
"""
import argparse
import asyncio
import json
import sys

import orchestra

CHUNK = "x" * 64
RESULT = {"exitCode": 0}


def emit_line(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def main_async(a):
    loop = asyncio.get_running_loop()
    runtime = orchestra.Runtime.for_loop() if a.io == "loop" else None
    agent = orchestra.Agent(a.url, a.agent_id, a.key_id, a.secret, capabilities=["shell"],
                            version="1.0.0", max_concurrency=a.max_concurrency, runtime=runtime)
    await asyncio.wait_for(agent.start(), 15)
    done = 0
    errors = []

    async def serve():
        nonlocal done
        async for task in agent.tasks():
            try:
                task.accept()
                task.stream(CHUNK)
                task.result(True, RESULT)
                done += 1
            except orchestra.OrchestraError as e:   # reported, and the run fails on the count
                if len(errors) < 5:
                    errors.append(f"task {task.id}: {e}")

    server = loop.create_task(serve())
    emit_line({"ready": a.agent_id})
    await loop.run_in_executor(None, sys.stdin.readline)   # EOF or any line: stop
    await agent.close()
    try:
        await asyncio.wait_for(server, 10)
    except asyncio.TimeoutError:
        server.cancel()
    for e in errors:
        print(f"hub_agent.py: {e}", file=sys.stderr)
    emit_line({"agent": a.agent_id, "tasks": done})


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True)
    ap.add_argument("--agent-id", required=True)
    ap.add_argument("--key-id", required=True)
    ap.add_argument("--secret", required=True, help="hex, as orchestra-hub key add prints it")
    ap.add_argument("--max-concurrency", type=int, default=1000)
    ap.add_argument("--loop", choices=["asyncio", "uvloop"], default="uvloop")
    ap.add_argument("--io", choices=["thread", "loop"], default="loop",
                    help="the library's runtime: loop (embedded, run by the asyncio loop: "
                         "orchestra.Runtime.for_loop()) or thread (the shared runtime's I/O thread)")
    a = ap.parse_args()
    if a.loop == "uvloop":
        import uvloop
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(main_async(a))


if __name__ == "__main__":
    main()
