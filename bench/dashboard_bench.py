#!/usr/bin/env python3
"""The dashboard's two costs (bench/README.md, "Dashboard"); not in bench/run.

  list    the hub's cost of tasks.list over 100,000 journaled tasks: the round trip of one page
          (50 rows) from a Python web client, p50/p99 over --requests requests, for the first
          page, deep pages (following `next`), a state filter, a user's own view and a text
          search; anchor: agents.list (answered from memory) in the same run, on the same
          connection.
  follow  the page following a task that streams 10 MB in 200-byte chunks: chunks/s rendered
          by the page (its terminal's count, read in the page) and the page's main-thread busy
          time (Chromium's Performance.getMetrics TaskDuration through the driver); anchor: a
          Python websockets client watching the same session at the same time (the rate the hub
          delivers).

  python3 bench/dashboard_bench.py list [--journal sqlite|postgres] [--tasks 100000] [--runs 5]
  python3 bench/dashboard_bench.py follow [--mb 10] [--chunk 200] [--runs 3]

Medians of --runs runs are printed as a table and as JSON (bench/results/dashboard.json).
PostgreSQL: ORC_TEST_PG_URL (scripts/pg start).
"""
import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "Tests" / "web"))
os.environ.setdefault("ORC_BUILD_DIR", str(ROOT / "build"))

import importlib.util  # noqa: E402

_spec = importlib.util.spec_from_file_location("hub_conftest", ROOT / "Tests" / "hub" / "conftest.py")
hubconf = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(hubconf)
Hub, Web, raw_agent, envelope = hubconf.Hub, hubconf.Web, hubconf.raw_agent, hubconf.envelope


def pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(p * len(s) + 0.5)) - 1))]


# MARK: list

def fill_journal(hub, n):
    """n tasks straight into the journal (schema from `orchestra-hub migrate`): 4 submitters, a
    mix of states, one session per 10 tasks, created 1 ms apart."""
    hub.cli("migrate")
    states = ["succeeded"] * 6 + ["failed", "queued", "assigned", "succeeded"]
    now = int(time.time() * 1000) - n
    rows = []
    for i in range(n):
        state = states[i % len(states)]
        spec = json.dumps({"type": "shell" if i % 3 else "build", "tool": "custom", "capabilities": ["shell"],
                           "parameters": {"command": f"make target-{i}", "n": i}, "priority": 1, "sessionId": f"s-{i // 10}"})
        rows.append((f"task-{i:07d}", state, spec, f"s-{i // 10}", f"user{i % 4}", f"task-{i:07d}", 1, None, None,
                     1, 3, "a1", "[]", '{"exitCode":0}' if state == "succeeded" else None,
                     "boom" if state == "failed" else None, None, 1 if state == "failed" and i % 20 == 6 else 0,
                     now + i, now + i + 50))
    cols = ("id, state, spec, session_id, submitter, trace_id, priority, strategy, pinned_agent, attempt, max_attempts, "
            "agent_id, rejected_by, result, error, error_code, dead, created_ms, updated_ms")
    sessions = [(f"s-{k}", f"user{(k * 10) % 4}", 0, now, now) for k in range((n + 9) // 10)]
    if hubconf.ON_POSTGRES:
        import psycopg
        with psycopg.connect(hub.journal, autocommit=False) as c:
            with c.cursor() as cur:
                with cur.copy(f"COPY tasks ({cols}) FROM STDIN") as cp:
                    for r in rows:
                        cp.write_row(r[:16] + (bool(r[16]),) + r[17:])
                with cur.copy("COPY sessions (id, owner, head, created_ms, updated_ms) FROM STDIN") as cp:
                    for s in sessions:
                        cp.write_row(s)
            c.commit()
            c.execute("ANALYZE tasks")
    else:
        import sqlite3
        with sqlite3.connect(hub.journal) as db:
            db.executemany(f"INSERT INTO tasks ({cols}) VALUES ({','.join('?' * 19)})", rows)
            db.executemany("INSERT INTO sessions (id, owner, head, created_ms, updated_ms) VALUES (?,?,?,?,?)", sessions)
            db.execute("ANALYZE")


async def timed(web, type_, payload, n):
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = await web.request(type_, payload)
        out.append((time.perf_counter() - t0) * 1000)
        assert r["type"] != "error", r
    return out


async def list_once(hub, requests):
    admin = await Web.open(hub, hub.token("bench-admin", role="admin"))
    user = await Web.open(hub, hub.token("user1", role="user"))
    await timed(admin, "tasks.list", {}, 20)   # warm-up
    results = {}
    results["anchor agents.list"] = await timed(admin, "agents.list", {}, requests)
    results["first page"] = await timed(admin, "tasks.list", {"limit": 50}, requests)
    # Deep pages: follow `next` from the top, then keep asking for the page 1,000 pages down.
    after = None
    for _ in range(40):
        r = await admin.request("tasks.list", {"limit": 50, **({"after": after} if after else {})})
        after = r["payload"]["next"]
    results["page 40"] = await timed(admin, "tasks.list", {"limit": 50, "after": after}, requests)
    results["state succeeded"] = await timed(admin, "tasks.list", {"limit": 50, "states": ["succeeded"]}, requests)
    results["dead letters"] = await timed(admin, "tasks.list", {"limit": 50, "dead": True}, requests)
    results["a user's own"] = await timed(user, "tasks.list", {"limit": 50}, requests)
    results["search id"] = await timed(admin, "tasks.list", {"limit": 50, "search": "task-0050000"}, max(10, requests // 10))
    results["search text"] = await timed(admin, "tasks.list", {"limit": 50, "search": "target-99999"}, max(10, requests // 10))
    await admin.close()
    await user.close()
    return results


def bench_list(args):
    runs = []
    with tempfile.TemporaryDirectory() as d:
        hub = Hub(Path(d), "--rate-limit", "0")
        fill_journal(hub, args.tasks)
        hub.start()
        try:
            for _ in range(args.runs):
                runs.append(asyncio.run(list_once(hub, args.requests)))
        finally:
            hub.stop()
    table = []
    for name in runs[0]:
        p50 = statistics.median(pct(r[name], 0.50) for r in runs)
        p99 = statistics.median(pct(r[name], 0.99) for r in runs)
        table.append({"name": f"tasks.list.{name}", "p50_ms": round(p50, 3), "p99_ms": round(p99, 3)})
    anchor = table[0]
    print(f"tasks.list over {args.tasks:,} journaled tasks ({hubconf.JOURNAL}), medians of {args.runs} runs "
          f"of {args.requests} requests (search: {max(10, args.requests // 10)})")
    print(f"| request | p50 ms | p99 ms | p99 / agents.list p99 |\n|---|---:|---:|---:|")
    for row in table:
        print(f"| {row['name']} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {row['p99_ms'] / anchor['p99_ms']:.1f}x |")
    return table


# MARK: follow

async def follow_once(hub, driver, mb, chunk):
    from selenium.webdriver.support.ui import WebDriverWait
    n = mb * 1_000_000 // chunk
    agent_id = f"a-{uuid.uuid4().hex[:6]}"
    key_id = f"k{uuid.uuid4().hex[:6]}"
    secret = hub.add_key(key_id)
    ws, r = await raw_agent(hub, agent_id, key_id, secret)
    assert r["type"] == "agent.registered", r
    sid = tid = f"follow-{uuid.uuid4().hex[:8]}"
    web = await Web.open(hub, hub.token("bench-user", role="user"))
    tid = await web.submit("stream", sessionId=sid, taskId=tid)
    while True:
        m = json.loads(await ws.recv())
        if m["type"] == "task.assign":
            break
    await ws.send(json.dumps(envelope("task.accepted", {"taskId": tid, "attempt": 1})))
    # The anchor: a lean Python watcher that only counts the chunks it receives.
    from websockets.asyncio.client import connect
    anchor = await connect(f"{hub.url}/web?token={hub.token('bench-user')}", max_size=None)
    await anchor.send(json.dumps(envelope("session.join", {"sessionId": sid, "lastOffset": 0})))

    async def count_chunks():
        got = 0
        while got < n:
            if '"task.stream"' in await anchor.recv():
                got += 1
        return time.perf_counter()
    counting = asyncio.create_task(count_chunks())
    # The page, logged in with the same user's token, on the task.
    login = json.dumps({"token": hub.token("bench-user"), "expiresAt": int(time.time()) + 3600, "user": "bench-user", "role": "user"})
    driver.get(f"http://127.0.0.1:{hub.port}/")
    driver.execute_script("sessionStorage.setItem('orchestra.auth', arguments[0])", login)
    driver.get(f"http://127.0.0.1:{hub.port}/?follow#/task/{tid}")   # a new load (not a hash change)
    try:
        WebDriverWait(driver, 30).until(lambda d: d.execute_script(
            "const h = window.orchestra.hub; const s = h && h.sessions.get(arguments[0]); return !!(s && !s.joining && window.orchestra.view.terminal)", sid))
    except Exception:
        print("the page did not start following:", driver.execute_script("return document.body.innerText.slice(0, 500)"))
        raise
    driver.execute_cdp_cmd("Performance.enable", {"timeDomain": "threadTicks"})
    before = {m["name"]: m["value"] for m in driver.execute_cdp_cmd("Performance.getMetrics", {})["metrics"]}
    line = ("y" * (chunk - 1)) + "\n"
    t0 = time.perf_counter()
    for seq in range(n):
        await ws.send(json.dumps(envelope("task.stream", {"taskId": tid, "attempt": 1, "seq": seq, "type": "stdout", "data": line})))
        if seq % 64 == 63:
            await asyncio.sleep(0)   # the anchor shares this loop: let it read
    sent = time.perf_counter() - t0
    anchor_t = await asyncio.wait_for(counting, 300) - t0
    while driver.execute_script("return window.orchestra.view.terminal.rendered") < n:
        await asyncio.sleep(0.02)
    page_t = time.perf_counter() - t0
    after = {m["name"]: m["value"] for m in driver.execute_cdp_cmd("Performance.getMetrics", {})["metrics"]}
    dom_lines = driver.execute_script("return document.querySelectorAll('.term .line').length")
    await ws.send(json.dumps(envelope("task.result", {"taskId": tid, "attempt": 1, "success": True})))
    await web.close()
    await anchor.close()
    await ws.close()
    busy = after["TaskDuration"] - before["TaskDuration"]
    return {"chunks": n, "agent_send_per_s": n / sent, "anchor_per_s": n / anchor_t, "page_per_s": n / page_t,
            "page_busy_s": busy, "page_busy_share": busy / page_t, "script_s": after["ScriptDuration"] - before["ScriptDuration"],
            "layout_s": after["LayoutDuration"] - before["LayoutDuration"], "dom_lines": dom_lines}


def bench_follow(args):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,800"):
        opts.add_argument(a)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    runs = []
    try:
        with tempfile.TemporaryDirectory() as d:
            hub = Hub(Path(d), "--rate-limit", "0")
            hub.start()
            try:
                for _ in range(args.runs):
                    runs.append(asyncio.run(follow_once(hub, driver, args.mb, args.chunk)))
            finally:
                hub.stop()
    finally:
        driver.quit()
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    print(f"the page following {args.mb} MB in {args.chunk}-byte chunks ({med['chunks']:,} chunks), medians of {args.runs} runs")
    print("| metric | value |\n|---|---:|")
    print(f"| page: chunks/s rendered | {med['page_per_s']:,.0f} |")
    print(f"| anchor: a Python watcher, chunks/s received | {med['anchor_per_s']:,.0f} |")
    print(f"| ratio page / anchor | {med['page_per_s'] / med['anchor_per_s']:.2f}x |")
    print(f"| the raw agent's send rate, chunks/s | {med['agent_send_per_s']:,.0f} |")
    print(f"| page main-thread busy (TaskDuration) | {med['page_busy_s']:.2f} s, {100 * med['page_busy_share']:.0f} % of the time |")
    print(f"| of which script / layout | {med['script_s']:.2f} s / {med['layout_s']:.2f} s |")
    print(f"| lines kept in the DOM | {med['dom_lines']:,.0f} |")
    return [{"name": "dashboard.follow", **med}]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["list", "follow"])
    ap.add_argument("--journal", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--tasks", type=int, default=100_000)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--mb", type=int, default=10)
    ap.add_argument("--chunk", type=int, default=200)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    if args.journal == "postgres":
        hubconf.ON_POSTGRES, hubconf.JOURNAL = True, "postgres"
        hubconf.PG_URL = os.environ.get("ORC_TEST_PG_URL", "")
    rows = bench_list(args) if args.what == "list" else bench_follow(args)
    out = ROOT / "bench" / "results" / "dashboard.json"
    old = json.loads(out.read_text()) if out.exists() else {}
    old[f"{args.what}.{args.journal}" if args.what == "list" else "follow"] = rows
    out.write_text(json.dumps(old, indent=1) + "\n")


if __name__ == "__main__":
    main()
