#!/usr/bin/env python3
"""bench/hub_replay_memory.py: the hub's memory while a task streams a lot of output into a
session that a web client watches: the hub's RSS growth against the bytes streamed, with the
replay log's byte budgets (--replay-session-bytes, --replay-hub-bytes) at their defaults or as
given. The anchor, in the same run, is the same stream to a submitter that watches no session
(nothing goes to a replay log).

One run: a fresh journal, orchestra-hub (build/, or $ORC_BUILD_DIR), a protocol-level agent and
a web client on python websockets in this process. The agent sends --stream-mib MiB of
task.stream chunks of --chunk-kib KiB each, at most --window chunks ahead of what the watcher
has received (so the bytes measured are the hub's, not a socket buffer's), then the result. The
hub's VmRSS is read from /proc after a warm-up (the baseline) and every --sample chunks; the run
reports the largest growth over the baseline at each quarter of the stream, and in the end the
session's replay log as the journal keeps it.

Prints one JSON line per run and mode, then the medians over --runs; --json-out FILE writes
them. Example (the numbers quoted in bench/README.md, section Replay log):
  python3 bench/hub_replay_memory.py --stream-mib 256 --runs 3
"""
import argparse
import asyncio
import hashlib
import hmac
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import websockets
from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parent.parent
BUILD = Path(os.environ.get("ORC_BUILD_DIR", ROOT / "build"))


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def envelope(type_, payload):
    return json.dumps({"id": str(uuid.uuid4()), "type": type_, "timestamp": int(time.time() * 1000),
                       "version": "1.0", "payload": payload})


class Hub:
    def __init__(self, tmp, flags):
        self.tmp = Path(tmp)
        self.journal = str(self.tmp / "hub.db")
        self.exe = str(BUILD / "orchestra-hub")
        portfile = self.tmp / "port"
        self.log = open(self.tmp / "hub.log", "w")
        self.proc = subprocess.Popen([self.exe, "--port", "0", "--port-file", str(portfile), "--journal", self.journal,
                                      "--rate-limit", "0", "--log-level", "warn", *flags],
                                     stdout=subprocess.DEVNULL, stderr=self.log)
        end = time.monotonic() + 20
        while not portfile.exists():
            if self.proc.poll() is not None or time.monotonic() > end:
                raise RuntimeError(f"the hub did not start: {(self.tmp / 'hub.log').read_text()}")
            time.sleep(0.02)
        self.url = f"ws://127.0.0.1:{int(portfile.read_text())}"

    def cli(self, *args):
        return subprocess.run([self.exe, *args, "--journal", self.journal], check=True, capture_output=True, text=True).stdout.strip()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(15)
        self.log.close()


async def one_run(a, with_session):
    flags = ["--max-message-size", str(max(1 << 20, a.chunk_kib * 1024 * 2))]
    if a.session_budget:
        flags += ["--replay-session-bytes", str(a.session_budget)]
    if a.hub_budget:
        flags += ["--replay-hub-bytes", str(a.hub_budget)]
    with tempfile.TemporaryDirectory(prefix="orc-replay-mem-") as tmp:
        hub = Hub(tmp, flags)
        try:
            secret = hub.cli("key", "add", "k1")
            hub.cli("user", "add", "alice", "--password", "pw")
            token = hub.cli("token", "--user", "alice")
            web = await connect(f"{hub.url}/web?token={token}", max_size=None)
            agent = await connect(f"{hub.url}/agent", max_size=None)
            ts, nonce = int(time.time() * 1000), uuid.uuid4().hex
            sig = hmac.new(bytes.fromhex(secret), f"a1\n{ts}\n{nonce}".encode(), hashlib.sha256).hexdigest()
            await agent.send(envelope("agent.register", {"agentId": "a1", "keyId": "k1", "timestamp": ts, "nonce": nonce,
                                                         "signature": sig, "capabilities": ["shell"]}))
            assert json.loads(await agent.recv())["type"] == "agent.registered"
            submit = {"type": "shell", "parameters": {}}
            if with_session:
                await web.send(envelope("session.join", {"sessionId": "mem"}))
                submit["sessionId"] = "mem"
            await web.send(envelope("task.submit", submit))
            while True:
                m = json.loads(await agent.recv())
                if m["type"] == "task.assign":
                    break
            tid, att = m["payload"]["taskId"], m["payload"]["attempt"]
            await agent.send(envelope("task.accepted", {"taskId": tid, "attempt": att}))

            received = {"seq": -1, "bytes": 0, "result": asyncio.get_running_loop().create_future()}
            progress = asyncio.Event()

            async def watch():
                async for raw in web:
                    received["bytes"] += len(raw)
                    m = json.loads(raw)
                    if m["type"] == "task.stream" and m["payload"].get("taskId") == tid:
                        received["seq"] = m["payload"]["seq"]
                        progress.set()
                    elif m["type"] == "task.result" and m["payload"].get("taskId") == tid:
                        received["result"].set_result(m)
                        return
            watcher = asyncio.create_task(watch())

            data = "x" * (a.chunk_kib * 1024)
            chunks = a.stream_mib * 1024 // a.chunk_kib
            warm = min(64, chunks // 8)
            baseline = None
            peak = 0
            quarters = {}
            t0 = time.monotonic()
            for seq in range(chunks):
                while seq - received["seq"] > a.window:
                    progress.clear()
                    await asyncio.wait_for(progress.wait(), 30)
                await agent.send(envelope("task.stream", {"taskId": tid, "attempt": att, "seq": seq, "type": "stdout", "data": data}))
                if seq == warm:
                    while received["seq"] < warm:
                        progress.clear()
                        await asyncio.wait_for(progress.wait(), 30)
                    baseline = rss_kb(hub.proc.pid)
                if baseline is not None and seq % a.sample == 0:
                    peak = max(peak, rss_kb(hub.proc.pid) - baseline)
                for q in (1, 2, 3, 4):
                    if seq + 1 == chunks * q // 4:
                        quarters[f"{a.stream_mib * q // 4}MiB"] = peak
            await agent.send(envelope("task.result", {"taskId": tid, "attempt": att, "success": True}))
            await asyncio.wait_for(received["result"], 60)
            seconds = time.monotonic() - t0
            peak = max(peak, rss_kb(hub.proc.pid) - baseline)
            watcher.cancel()
            await web.close()
            await agent.close()
            with sqlite3.connect(hub.journal) as db:
                try:
                    kept, events = db.execute("SELECT coalesce(sum(length(frame)), 0), count(*) FROM session_events").fetchone()
                except sqlite3.OperationalError:   # a hub from before the journal kept replay logs
                    kept, events = None, None
            return {"mode": "session" if with_session else "no-session", "streamed_mib": a.stream_mib, "chunk_kib": a.chunk_kib,
                    "replay_session_bytes": a.session_budget or 8 << 20, "replay_hub_bytes": a.hub_budget or 256 << 20,
                    "rss_baseline_kb": baseline, "rss_growth_kb": peak, "growth_by_streamed_kb": quarters,
                    "replay_log_bytes": kept, "replay_log_events": events, "seconds": round(seconds, 2),
                    "mib_per_s": round(a.stream_mib / seconds, 1)}
        finally:
            hub.stop()


async def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stream-mib", type=int, default=256)
    ap.add_argument("--chunk-kib", type=int, default=64)
    ap.add_argument("--session-budget", type=int, default=0, help="--replay-session-bytes (default: the hub's)")
    ap.add_argument("--hub-budget", type=int, default=0, help="--replay-hub-bytes (default: the hub's)")
    ap.add_argument("--window", type=int, default=16, help="chunks the agent may be ahead of the watcher")
    ap.add_argument("--sample", type=int, default=16, help="read the hub's RSS every N chunks")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-anchor", action="store_true", help="only the session mode")
    ap.add_argument("--json-out")
    a = ap.parse_args()
    rows = []
    for _ in range(a.runs):
        for with_session in ([True] if a.no_anchor else [True, False]):
            r = await one_run(a, with_session)
            print(json.dumps(r), flush=True)
            rows.append(r)
    summary = {}
    for mode in ("session", "no-session"):
        rs = [r for r in rows if r["mode"] == mode]
        if rs:
            summary[mode] = {"rss_growth_kb_median": statistics.median(r["rss_growth_kb"] for r in rs),
                             "rss_growth_kb_max": max(r["rss_growth_kb"] for r in rs),
                             "mib_per_s_median": statistics.median(r["mib_per_s"] for r in rs),
                             "replay_log_bytes_median": statistics.median(r["replay_log_bytes"] or 0 for r in rs)}
    print(json.dumps({"summary": summary}), flush=True)
    if a.json_out:
        Path(a.json_out).write_text(json.dumps({"runs": rows, "summary": summary}, indent=1) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
