#!/usr/bin/env python3
"""Submits a shell command to an orchestra hub as a web client and prints its output.

    ORC_HUB_TOKEN=<jwt> python3 examples/python/submit.py 'ls -l /tmp'

Joins a session, sends task.submit {parameters: {command}}, prints each task.stream chunk as
it arrives (stderr chunks to stderr) and the result, and exits with the command's exit code
(1 when the task failed without one, 2 when the hub refused the request).
Environment: ORC_HUB_URL (default ws://127.0.0.1:7420), ORC_HUB_TOKEN (a JWT the hub accepts).
"""
import asyncio
import json
import os
import sys
import time
import uuid
from urllib.parse import quote

import orchestra


def envelope(type_, payload):
    return {"id": str(uuid.uuid4()), "type": type_, "version": "1.0",
            "timestamp": int(time.time() * 1000), "payload": payload}


async def main(command: str) -> int:
    base = os.environ.get("ORC_HUB_URL", "ws://127.0.0.1:7420").rstrip("/")
    url = f"{base}/web?token={quote(os.environ['ORC_HUB_TOKEN'])}"
    session_id = f"submit-{uuid.uuid4()}"
    task_id = str(uuid.uuid4())            # ours, so no event of the task can be missed
    async with orchestra.Client(url) as ws:
        join = envelope("session.join", {"sessionId": session_id})
        submit = envelope("task.submit", {"taskId": task_id, "type": "shell", "capabilities": ["shell"],
                                          "parameters": {"command": command}, "sessionId": session_id})
        requests = {join["id"]: join, submit["id"]: submit}
        await ws.send(json.dumps(join))
        await ws.send(json.dumps(submit))
        async for text in ws:
            env = json.loads(text)
            p = env.get("payload") or {}
            if env["type"] == "error" and env.get("correlationId") in requests:
                print(f"{requests[env['correlationId']]['type']}: {p.get('code')}: {p.get('message')}", file=sys.stderr)
                return 2
            if p.get("taskId") != task_id:
                continue
            if env["type"] == "task.stream":
                out = sys.stderr if p.get("type") == "stderr" else sys.stdout
                out.write(p.get("data", ""))
                out.flush()
            elif env["type"] == "task.result":
                print(f"result: {json.dumps(p)}", file=sys.stderr)
                code = (p.get("result") or {}).get("exitCode")
                return code if isinstance(code, int) else (0 if p.get("success") else 1)
    print("the hub closed the connection before the result", file=sys.stderr)
    return 1


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} COMMAND")
    sys.exit(asyncio.run(main(sys.argv[1])))
