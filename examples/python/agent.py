#!/usr/bin/env python3
"""An orchestra agent that runs shell commands.

    ORC_AGENT_ID=a1 ORC_KEY_ID=k1 ORC_AGENT_SECRET=<hex from `orchestra-hub key add`> \
        python3 examples/python/agent.py

For each task it runs task.params["command"] in a shell, streams every stdout and stderr line,
reports progress, and sends the result {"exitCode": N}. A cancelled task's processes (the shell
and whatever it started) are killed.
Environment: ORC_HUB_URL (default ws://127.0.0.1:7420; several hubs separated by commas, tried
round robin when one goes away), ORC_AGENT_ID, ORC_KEY_ID, ORC_AGENT_SECRET;
ORC_MAX_CONCURRENCY (default 4).
"""
import asyncio
import os
import signal

import orchestra


async def pipe(stream, task, kind):
    async for line in stream:
        if not task.done:                   # after a cancel, drain without sending
            task.stream(line.decode("utf-8", "replace"), type=kind)


async def run(task: orchestra.AgentTask) -> None:
    command = task.params.get("command")
    if not isinstance(command, str):
        task.reject("parameters.command must be a string")
        return
    task.accept()
    task.progress(0, f"running {command}")
    # A process group of its own, so that a cancel also kills what the shell started (which
    # would otherwise keep the output pipes open).
    proc = await asyncio.create_subprocess_shell(
        command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True)
    output = asyncio.gather(pipe(proc.stdout, task, "stdout"), pipe(proc.stderr, task, "stderr"))
    cancelled = asyncio.ensure_future(task.cancelled.wait())
    await asyncio.wait([output, cancelled], return_when=asyncio.FIRST_COMPLETED)
    if task.cancelled.is_set():
        try:                                # the hub has already given up on this attempt
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        await asyncio.gather(output, proc.wait())
        print(f"task {task.id}: cancelled ({task.cancel_reason})", flush=True)
        return
    cancelled.cancel()
    code = await proc.wait()
    task.progress(100, "done")
    task.result(success=code == 0, result={"exitCode": code},
                error=None if code == 0 else f"exit code {code}")
    print(f"task {task.id}: exit code {code}", flush=True)


async def main() -> None:
    # The hubs' base URLs; agents connect to their /agent.
    urls = [u.strip().rstrip("/") for u in os.environ.get("ORC_HUB_URL", "ws://127.0.0.1:7420").split(",") if u.strip()]
    urls = [u if u.endswith("/agent") else u + "/agent" for u in urls]
    capabilities = os.environ.get("ORC_AGENT_CAPABILITIES", "shell").split(",")
    agent = orchestra.Agent(
        urls, os.environ["ORC_AGENT_ID"], os.environ["ORC_KEY_ID"], os.environ["ORC_AGENT_SECRET"],
        capabilities=capabilities, max_concurrency=int(os.environ.get("ORC_MAX_CONCURRENCY", "4")),
        on_failover=lambda url, reason: print(f"agent: failing over to {url} ({reason})", flush=True))
    async with agent:
        print(f"agent {agent.agent_id} registered at {agent.url}", flush=True)
        running = set()
        async for task in agent.tasks():
            t = asyncio.create_task(run(task))
            running.add(t)
            t.add_done_callback(running.discard)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
