"""Several hubs on one PostgreSQL (docs/operations.md, "Running several hubs"), with real
processes: three orchestra-hub executables sharing one database (a schema of its own per test),
the example agents in C, Python and Node given the hubs' URLs (their home hub first), and web
clients on python websockets connected to different hubs.

Needs ORC_TEST_PG_URL (scripts/pg start; ctest's hub.cluster runs this file through
Tests/pg/with_server.sh). The outage test starts a PostgreSQL server of its own
(scripts/pg with a private ORC_PG_DIR) so that stopping it touches nothing else."""
import asyncio
import collections
import json
import os
import subprocess
import time
import types
import uuid

import pytest
from websockets.asyncio.client import connect

from conftest import ROOT, Agents, Hub, Web, envelope, raw_agent, wait_agents, wait_until

PG_URL = os.environ.get("ORC_TEST_PG_URL", "")
pytestmark = pytest.mark.skipif(not PG_URL, reason="several hubs need PostgreSQL (ORC_TEST_PG_URL; scripts/pg start)")

# Short leases and heartbeats so that a dead hub's work moves on within seconds.
HUB_FLAGS = ("--rate-limit", "0", "--heartbeat-ms", "1000", "--lease-ms", "4000", "--hub-timeout-ms", "3000")
LANGS = ("c", "python", "node")


def schema_url(url):
    import psycopg
    schema = "c_" + uuid.uuid4().hex[:16]
    with psycopg.connect(url, autocommit=True) as c:
        c.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema}"


class Cluster:
    """Hubs hub-a, hub-b, hub-c... on one journal, each in a directory of its own."""

    def __init__(self, tmp_path, n=3, url=PG_URL, flags=HUB_FLAGS):
        self.journal = schema_url(url)
        self.dir = tmp_path
        self.hubs = []
        for i in range(n):
            name = "hub-" + "abcdefgh"[i]
            d = tmp_path / name
            d.mkdir()
            self.hubs.append(Hub(d, "--hub-id", name, *flags, journal=self.journal))
        self.agent_home = {}
        self.agent_procs = []

    def start(self):
        for h in self.hubs:
            h.start()
        self.secret = self.hubs[0].add_key("k1")
        self.token = self.hubs[0].token("alice")
        return self

    def urls_from(self, home):
        """The hubs' URLs, `home` first, then the others in order."""
        i = self.hubs.index(home)
        return ",".join(h.url for h in self.hubs[i:] + self.hubs[:i])

    def agent(self, lang, agent_id, home, capabilities=("shell",), max_concurrency=8):
        a = Agents(types.SimpleNamespace(url=self.urls_from(home)), self.dir)
        a.start(lang, agent_id, "k1", self.secret, capabilities=capabilities, max_concurrency=max_concurrency)
        self.agent_home[agent_id] = home
        self.agent_procs.append(a)
        return a

    def hub_of(self, agent_id):
        return self.agent_home[agent_id]

    def finished_lines(self):
        """task.finished log lines of every hub: taskId -> how many times."""
        n = collections.Counter()
        for h in self.hubs:
            for e in h.events("task.finished"):
                n[e["taskId"]] += 1
        return n

    def stop(self):
        for a in self.agent_procs:
            a.stop_all()
        for h in self.hubs:
            h.stop()


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path)
    yield c
    c.stop()


def offsets_of(events):
    return [e["headers"]["offset"] for e in events if "offset" in e.get("headers", {})]


def check_streams(events, task_ids, expect, may_lose=frozenset()):
    """Every task's chunks once and in seq order within each attempt (a task whose hub died
    under it may have run again: each attempt's stream starts at seq 0), the last attempt's
    spelling `expect`, every earlier one a prefix of it; one task.result each. For the tasks in
    `may_lose`, a chunk may be missing: chunks carry no acknowledgement, and the ones an agent
    wrote to a hub in the instant it was killed are lost with it (docs/operations.md, "When a
    hub dies"); those left are still once each, in order, each the one its seq names."""
    pieces = expect.splitlines(keepends=True)
    by_attempt = collections.defaultdict(lambda: collections.defaultdict(list))
    results = collections.Counter()
    for e in events:
        tid = e["payload"].get("taskId")
        if tid not in task_ids:
            continue
        if e["type"] == "task.stream":
            by_attempt[tid][e["payload"]["attempt"]].append(e["payload"])
        elif e["type"] == "task.result":
            results[tid] += 1
    for tid in task_ids:
        attempts = by_attempt[tid]
        assert attempts, (tid, "no chunk")
        last = max(attempts)
        for n, chunks in attempts.items():
            seqs = [c["seq"] for c in chunks]
            if tid in may_lose:
                assert seqs == sorted(set(seqs)), (tid, chunks)
                assert all(c["seq"] < len(pieces) and c["data"] == pieces[c["seq"]] for c in chunks), (tid, chunks)
                continue
            assert seqs == list(range(len(chunks))), (tid, chunks)
            text = "".join(c["data"] for c in chunks)
            if n == last:
                assert text == expect, (tid, chunks)
            else:
                assert expect.startswith(text), (tid, chunks)
        assert results[tid] == 1, (tid, results[tid])


async def test_900_tasks_on_three_hubs_run_once_and_stream_everywhere(cluster):
    """Three hubs, an agent of each language on each hub, a submitter on each hub with a
    session watched from the next hub: 900 tasks, each finished once, each chunk seen once and
    in order by its submitter and by the watcher on the other hub; tasks cross hubs."""
    c = cluster.start()
    a, b, hc = c.hubs
    ids = []
    for hub in c.hubs:
        for lang in LANGS:
            agent_id = f"{lang}-{hub.dir.name}"
            c.agent(lang, agent_id, hub, max_concurrency=6)
            ids.append(agent_id)
    webs = []
    try:
        submitters = [await Web.open(h, c.token) for h in c.hubs]
        watchers = [await Web.open(c.hubs[(i + 1) % 3], c.token) for i in range(3)]
        webs += submitters + watchers
        # Every hub lists the cluster's agents, with the hub each is on.
        for w in submitters:
            await wait_agents(w, ids, 60)
        listed = (await submitters[0].request("agents.list", {}))["payload"]["agents"]
        assert {x["id"]: x["hubId"] for x in listed if x["id"] in ids} == {i: c.hub_of(i).dir.name for i in ids}
        for i, w in enumerate(watchers):
            r = await w.request("session.join", {"sessionId": f"s-{i}"})
            assert r["type"] == "session.updated", r

        expect = "one\ntwo\n"
        per_hub = 300
        task_ids = [[f"t{i}-{n:03d}" for n in range(per_hub)] for i in range(3)]

        async def submit_all(i):
            w = submitters[i]
            replies = await asyncio.gather(*[
                w.request("task.submit", {"taskId": tid, "type": "shell", "sessionId": f"s-{i}",
                                          "parameters": {"command": "echo one; echo two"}}, timeout=60)
                for tid in task_ids[i]])
            assert all(r["type"] == "task.submitted" for r in replies), [r for r in replies if r["type"] != "task.submitted"][:3]

        # Hub A's tasks first, while hubs B and C are idle: they take part of them (a hub
        # runs what it can and leaves the rest queued for any hub); then B's and C's.
        await submit_all(0)
        await asyncio.gather(submit_all(1), submit_all(2))
        for i in range(3):
            w = submitters[i]
            await w.wait(lambda w=w, i=i: len({e["payload"]["taskId"] for e in w.of("task.result")} & set(task_ids[i])) == per_hub,
                         180, f"the results of hub {i}'s 300 tasks")
        for i in range(3):
            want = set(task_ids[i])
            await watchers[i].wait(lambda i=i, want=want: len({e["payload"]["taskId"] for e in watchers[i].of("task.result")} & want) == per_hub,
                                   60, f"the watcher of s-{i} to see every result")

        with a.db() as db:
            ran_on = dict(db.execute("SELECT id, agent_id FROM tasks").fetchall())
        for i in range(3):
            results = {e["payload"]["taskId"]: e["payload"] for e in submitters[i].of("task.result")}
            for tid in task_ids[i]:
                assert results[tid]["success"] is True, results[tid]
            # The submitter watches no session: it gets its tasks' chunks and results itself.
            check_streams(submitters[i].events, set(task_ids[i]), expect)
            # The watcher on the next hub: every event of the session once, offsets 1, 2, 3...
            check_streams(watchers[i].events, set(task_ids[i]), expect)
            offs = offsets_of(watchers[i].events)
            assert offs == list(range(1, len(offs) + 1)), offs[:20]

        # Tasks crossed hubs: some of A's ran on the agents of B and C. (Whether B's and C's
        # cross depends on who is busier; the next test pins it.)
        ran_at = collections.Counter(c.hub_of(ran_on[t]).dir.name for t in task_ids[0])
        assert ran_at["hub-b"] > 0 and ran_at["hub-c"] > 0, ran_at
        # Each task finished once, in the journal and in the hubs' logs.
        with a.db() as db:
            rows = db.execute("SELECT state, count(*) FROM tasks GROUP BY state").fetchall()
            assert dict(rows) == {"succeeded": 900}, rows
        # Each ran once: accepted at one attempt only (an agent may reject an assignment, e.g.
        # busy: the next attempt goes elsewhere, which is not a second run).
        accepted = collections.Counter(e["taskId"] for h in c.hubs for e in h.events("task.accepted"))
        assert sorted(accepted.values()) == [1] * 900, [t for t, n in accepted.items() if n != 1]
        finished = c.finished_lines()
        assert sorted(finished.values()) == [1] * 900, [t for t, n in finished.items() if n != 1]
        # No batch was rolled back: the hubs' claims of the tasks submitted on them do not wait
        # for each other (two such claims, each waiting for the other hub's reservation,
        # deadlocked and PostgreSQL rolled one hub's batch back).
        failed = [e for h in c.hubs for e in h.events("journal.commit_failed")]
        assert not failed, failed[:3]
    finally:
        for w in webs:
            await w.close()


async def test_submitted_on_one_hub_runs_on_another(cluster):
    """A task pinned to an agent of hub B, and one needing a capability only hub C's agent has,
    both submitted on hub A: they run there, and A's submitter sees their output and results."""
    c = cluster.start()
    a, b, hc = c.hubs
    c.agent("python", "only-b", b)
    c.agent("node", "gpu-c", hc, capabilities=("shell", "gpu"))
    web = await Web.open(a, c.token)
    try:
        await wait_agents(web, ["only-b", "gpu-c"], 60)
        pinned = await web.submit("echo pinned", agentId="only-b")
        gpu = await web.submit("echo gpu", capabilities=["gpu"])
        r1, r2 = await web.result(pinned, 60), await web.result(gpu, 60)
        assert r1["success"] is True and r2["success"] is True, (r1, r2)
        assert [e["payload"]["data"] for e in web.of("task.stream", pinned)] == ["pinned\n"]
        assert [e["payload"]["data"] for e in web.of("task.stream", gpu)] == ["gpu\n"]
        # The journal says where each was submitted, which hub held it and which agent ran it.
        with a.db() as db:
            rows = dict((r[0], tuple(r[1:])) for r in db.execute("SELECT id, submit_hub, hub_id, agent_id FROM tasks").fetchall())
        assert rows[pinned] == ("hub-a", "hub-b", "only-b") and rows[gpu] == ("hub-a", "hub-c", "gpu-c"), rows
        # task.cancel on hub A reaches a task running on hub C.
        long = await web.submit("echo started; sleep 60", capabilities=["gpu"])
        await web.wait(lambda: web.of("task.stream", long), 60, "the long task to start")
        r = await web.request("task.cancel", {"taskId": long})
        assert r["type"] != "error", r
        res = await web.result(long, 30)
        assert res["success"] is False, res
    finally:
        await web.close()


async def test_a_hub_takes_results_from_the_moment_it_listens(tmp_path):
    """A task submitted on hub A right after A starts listening, run by an agent of hub B that
    was up before: its result reaches A's submitter. (The result goes to A through A's inbox,
    which is numbered in A's row of the hubs table: A writes that row before it listens. It was
    written by A's first heartbeat, a quarter of a second later, and B's post of a result that
    came before it had nowhere to go: the submitter waited for ever.)"""
    c = Cluster(tmp_path, n=2)
    a, b = c.hubs
    try:
        b.start()
        c.secret = b.add_key("k1")
        c.token = b.token("alice")
        c.agent("c", "only-b", b)
        wb = await Web.open(b, c.token)
        try:
            await wait_agents(wb, ["only-b"], 60)
        finally:
            await wb.close()
        for round_ in range(3):   # a fresh start of A each time
            a.start()
            web = await Web.open(a, c.token)
            try:
                tid = await web.submit(f"echo round {round_}", agentId="only-b")
                r = await web.result(tid, 15)
                assert r["success"] is True, r
                assert [e["payload"]["data"] for e in web.of("task.stream", tid)] == [f"round {round_}\n"]
            finally:
                await web.close()
            a.stop()
    finally:
        c.stop()


async def test_a_claim_does_not_wait_for_a_row_another_transaction_locked(tmp_path):
    """A hub's claim of a task nobody reserved (submitted here, placed here) skips the row when
    another transaction has it locked (another hub reserving or claiming it) instead of
    waiting: two hubs that each waited for the other's lock deadlocked, and PostgreSQL rolled
    one hub's whole batch back after a second. The hub goes on meanwhile, and claims the task
    once the lock is gone."""
    import psycopg
    c = Cluster(tmp_path, n=1).start()
    a = c.hubs[0]
    c.agent("python", "solo", a, max_concurrency=1)
    web = await Web.open(a, c.token)
    try:
        await wait_agents(web, ["solo"], 60)
        long = await web.submit("echo long; sleep 60")
        await web.wait(lambda: web.of("task.stream", long), 30, "the long task to start")
        x = await web.submit("echo x")   # queued: the agent is busy
        with psycopg.connect(c.journal) as lock:   # a transaction of its own, open until rollback
            assert lock.execute("SELECT state, hub_id FROM tasks WHERE id = %s FOR UPDATE", (x,)).fetchone() == ("queued", None)
            # The agent gets room: the hub claims x, finds its row locked and goes on.
            assert (await web.request("task.cancel", {"taskId": long}))["type"] != "error"
            await web.result(long, 10)
            # Acknowledged after its commit, which is pipelined behind the claim's batch: with the
            # row still locked, a claim that waited for it would hold this answer back until the
            # request times out.
            y = await web.submit("echo y")
            await asyncio.sleep(1)
            assert not web.of("task.result", x)
            lock.rollback()
        rx, ry = await web.result(x, 15), await web.result(y, 15)
        assert rx["success"] is True and ry["success"] is True, (rx, ry)
        assert [e["payload"]["data"] for e in web.of("task.stream", x)] == ["x\n"]
        assert not a.events("journal.commit_failed")
    finally:
        await web.close()
        c.stop()


async def test_kill_9_of_a_hub_under_load(cluster):
    """Hub B is killed (SIGKILL) while its agents run tasks submitted on A and C: the agents
    fail over, every acknowledged task finishes exactly once, and a watcher that was on B
    resumes on C from its last offset without a gap."""
    c = cluster.start()
    a, b, hc = c.hubs
    for hub in c.hubs:
        for lang in LANGS:
            c.agent(lang, f"{lang}-{hub.dir.name}", hub, max_concurrency=4)
    ids = [f"{lang}-{h.dir.name}" for h in c.hubs for lang in LANGS]
    webs = []
    try:
        sub_a, sub_c = await Web.open(a, c.token), await Web.open(hc, c.token)
        watcher = await Web.open(b, c.token)
        webs += [sub_a, sub_c, watcher]
        await wait_agents(sub_a, ids, 60)
        assert (await watcher.request("session.join", {"sessionId": "load"}))["type"] == "session.updated"
        expect = "start\nend\n"
        cmd = "echo start; sleep 0.4; echo end"
        tids = {"a": [f"ka-{n:03d}" for n in range(150)], "c": [f"kc-{n:03d}" for n in range(150)]}

        async def submit(w, ids_):
            for tid in ids_:
                r = await w.request("task.submit", {"taskId": tid, "type": "shell", "sessionId": "load",
                                                    "parameters": {"command": cmd}}, timeout=60)
                assert r["type"] == "task.submitted", r

        await asyncio.gather(submit(sub_a, tids["a"][:75]), submit(sub_c, tids["c"][:75]))
        # Hub B's agents are busy with tasks from A and C when it dies.
        await sub_a.wait(lambda: len(sub_a.of("task.result")) >= 10, 60, "the first results")
        def b_busy():
            with a.db() as db:
                return db.execute("SELECT count(*) FROM tasks WHERE hub_id = 'hub-b' AND state = 'assigned'").fetchone()[0]
        await asyncio.to_thread(wait_until, lambda: b_busy() > 0, 30, "hub B's agents to run tasks", 0.01)
        last = max(offsets_of(watcher.events))
        b.kill9()
        # More work while B is gone.
        await asyncio.gather(submit(sub_a, tids["a"][75:]), submit(sub_c, tids["c"][75:]))
        # The watcher comes back on C and resumes from the last offset it saw.
        await watcher.closed
        seen_before = list(watcher.events)
        again = await Web.open(hc, c.token)
        webs.append(again)
        r = await again.request("session.join", {"sessionId": "load", "lastOffset": last})
        assert r["type"] == "session.updated", r
        for w, key in ((sub_a, "a"), (sub_c, "c")):
            want = set(tids[key])
            await w.wait(lambda w=w, want=want: want <= {e["payload"]["taskId"] for e in w.of("task.result")}, 180,
                         f"every result on hub {key}")
        everything = set(tids["a"]) | set(tids["c"])
        # What the watcher saw up to the offset it resumed from, then after it on C.
        before = [e for e in seen_before if 0 < e.get("headers", {}).get("offset", 0) <= last]
        await again.wait(lambda: everything <= {e["payload"]["taskId"] for e in before + again.of("task.result")
                                                if e["type"] == "task.result"}, 60,
                         "the resumed watcher to see every result")

        # B's agents went on elsewhere.
        listed = {x["id"]: x for x in (await sub_a.request("agents.list", {}))["payload"]["agents"]}
        for lang in LANGS:
            x = listed[f"{lang}-hub-b"]
            assert x["status"] != "offline" and x["hubId"] in ("hub-a", "hub-c"), x
        # Every acknowledged task succeeded, and its result was recorded once.
        for w, key in ((sub_a, "a"), (sub_c, "c")):
            results = collections.Counter(e["payload"]["taskId"] for e in w.of("task.result"))
            assert all(results[t] == 1 for t in tids[key]), [t for t in tids[key] if results[t] != 1]
            assert all(e["payload"]["success"] for e in w.of("task.result")), [e for e in w.of("task.result") if not e["payload"]["success"]][:3]
        with a.db() as db:
            states = dict(db.execute("SELECT state, count(*) FROM tasks GROUP BY state").fetchall())
        assert states == {"succeeded": 300}, states
        # One task.finished line per task; B's last lines may have died with it (the line
        # follows the commit).
        with a.db() as db:
            by_b = {t for (t,) in db.execute("SELECT id FROM tasks WHERE hub_id = 'hub-b'").fetchall()}
        finished = c.finished_lines()
        assert all(finished[t] == 1 or (t in by_b and finished[t] == 0) for t in everything), \
            {t: finished[t] for t in everything if finished[t] != 1}
        # The watcher's offsets: up to the kill and after the resume, each once, no gap; every
        # task's chunks once and in order, and its result once, across both connections.
        after = offsets_of(again.events)
        assert offsets_of(before) == list(range(1, last + 1))
        bad = next((i for i, o in enumerate(after) if o != last + 1 + i), None)
        assert bad is None, (last, bad, after[max(0, bad - 5):bad + 5])
        # Tasks whose last attempt ran on one of B's agents may miss a chunk written to B as
        # it died.
        with a.db() as db:
            on_b = {t for (t,) in db.execute("SELECT id FROM tasks WHERE right(agent_id, 6) = '-hub-b'").fetchall()}
        check_streams(before + again.events, everything, expect, may_lose=on_b)
        # The survivors saw B die and said so.
        wait_until(lambda: any(e.get("hubId") == "hub-b" for h in (a, hc) for e in h.events("hub.dead")), 20, "hub.dead for hub-b")
        # Each hub judges from the heartbeats it read last (once a second): A may say so a
        # second after C did.
        def cluster_of_a():
            return {x["hubId"]: x for x in a.health()["cluster"]["hubs"]}
        wait_until(lambda: cluster_of_a()["hub-b"]["alive"] is False, 10, "hub A's /health to list hub-b as dead")
        hubs = cluster_of_a()
        assert hubs["hub-b"]["alive"] is False and hubs["hub-a"]["alive"] and hubs["hub-c"]["alive"], hubs
    finally:
        for w in webs:
            await w.close()


@pytest.fixture
def own_pg(tmp_path):
    """A PostgreSQL server of this test's own (stopped and started by it)."""
    d = f"/tmp/orc-pg-outage-{uuid.uuid4().hex[:8]}"
    env = dict(os.environ, ORC_PG_DIR=d)
    pg = os.path.join(ROOT, "scripts", "pg")
    url = subprocess.run([pg, "start"], env=env, capture_output=True, text=True, check=True, timeout=120).stdout.strip()
    ctl = types.SimpleNamespace(url=url,
                                pause=lambda: subprocess.run([pg, "pause"], env=env, check=True, timeout=60),
                                resume=lambda: subprocess.run([pg, "resume"], env=env, check=True, timeout=60))
    yield ctl
    subprocess.run([pg, "stop"], env=env, timeout=120)


async def test_database_stopped_for_5_seconds_under_load(tmp_path, own_pg):
    """PostgreSQL stops for 5 s while two hubs run tasks: submits answer DB_001, /health says
    degraded, no hub exits; once it is back every acknowledged task finishes exactly once and
    its output reaches the watcher."""
    c = Cluster(tmp_path, n=2, url=own_pg.url)
    c.start()
    a, b = c.hubs
    webs = []
    try:
        c.agent("c", "c-a", a, max_concurrency=8)
        c.agent("python", "py-b", b, max_concurrency=8)
        sub = await Web.open(a, c.token)
        watcher = await Web.open(b, c.token)
        webs += [sub, watcher]
        await wait_agents(sub, ["c-a", "py-b"], 60)
        assert (await watcher.request("session.join", {"sessionId": "o"}))["type"] == "session.updated"
        acked, refused = [], []
        stop = asyncio.Event()

        async def load():
            n = 0
            while not stop.is_set() and n < 2000:
                tid = f"o-{n:04d}"
                n += 1
                r = await sub.request("task.submit", {"taskId": tid, "type": "shell", "sessionId": "o",
                                                      "parameters": {"command": "echo x; sleep 0.2; echo y"}}, timeout=60)
                if r["type"] == "task.submitted":
                    acked.append(tid)
                else:
                    assert r["type"] == "error", r
                    refused.append(r["payload"]["code"])
                await asyncio.sleep(0.02)

        loader = asyncio.create_task(load())
        await sub.wait(lambda: len(sub.of("task.result")) >= 5, 60, "the first results")
        own_pg.pause()
        down_at = time.monotonic()
        degraded = await asyncio.to_thread(wait_until, lambda: a.health()["status"] == "degraded", 10, "hub A to say degraded")
        assert a.health()["journal"]["status"] == "unreachable"
        await asyncio.sleep(max(0, 5 - (time.monotonic() - down_at)))
        assert a.proc.poll() is None and b.proc.poll() is None, "a hub exited while the database was away"
        own_pg.resume()
        await asyncio.to_thread(wait_until, lambda: a.health()["status"] == "ok" and b.health()["status"] == "ok", 30,
                                "both hubs to say ok again")
        await asyncio.sleep(1)
        stop.set()
        await loader
        assert degraded
        assert refused and set(refused) == {"DB_001"}, collections.Counter(refused)
        assert len(acked) > 20, len(acked)
        await sub.wait(lambda: set(acked) <= {e["payload"]["taskId"] for e in sub.of("task.result")}, 120,
                       "every acknowledged task's result")
        results = collections.Counter(e["payload"]["taskId"] for e in sub.of("task.result"))
        assert all(results[t] == 1 for t in acked), [t for t in acked if results[t] != 1]
        assert all(e["payload"]["success"] for e in sub.of("task.result"))
        with a.db() as db:
            rows = dict(db.execute("SELECT id, state FROM tasks").fetchall())
        assert all(rows.get(t) == "succeeded" for t in acked), {t: rows.get(t) for t in acked if rows.get(t) != "succeeded"}
        finished = c.finished_lines()
        assert all(finished[t] == 1 for t in acked), {t: finished[t] for t in acked if finished[t] != 1}
        # The watcher on hub B: every acknowledged task's output and result, once, in order.
        await watcher.wait(lambda: set(acked) <= {e["payload"]["taskId"] for e in watcher.of("task.result")}, 60,
                           "the watcher to see every result")
        check_streams(watcher.events, set(acked), "x\ny\n")
        offs = offsets_of(watcher.events)
        assert offs == list(range(1, len(offs) + 1)), offs[:20]
        for h in c.hubs:
            assert h.events("journal.unreachable") and h.events("journal.reconnected"), h.dir.name
    finally:
        for w in webs:
            await w.close()
        c.stop()


async def test_trust_holds_across_hubs(cluster):
    """Revoking a user's tokens (on hub A's journal) closes their connection on hub B and
    refuses them on C; a disabled key closes its agent on another hub; a nonce seen by one hub
    is a replay on another; another user's task and session stay closed on every hub."""
    c = cluster.start()
    a, b, hc = c.hubs
    bob_token = a.token("bob")
    alice = await Web.open(a, c.token)
    bob = await Web.open(b, bob_token)
    try:
        # Ownership holds whichever hub asks.
        tid = await alice.submit("echo mine", sessionId="s-alice")
        for rq, payload in (("task.get", {"taskId": tid}), ("task.cancel", {"taskId": tid}),
                            ("session.join", {"sessionId": "s-alice", "lastOffset": 0})):
            r = await bob.request(rq, payload)
            assert r["type"] == "error" and r["payload"]["code"] == "AUTH_001", (rq, r)

        # A registration's nonce is refused on another hub.
        ts = int(time.time() * 1000)
        ws1, r1 = await raw_agent(a, "nonce-agent", "k1", c.secret, ts=ts, nonce="cluster-nonce-0001")
        assert r1["type"] == "agent.registered", r1
        await ws1.close()
        ws2, r2 = await raw_agent(hc, "nonce-agent", "k1", c.secret, ts=ts, nonce="cluster-nonce-0001")
        assert r2["type"] == "error" and r2["payload"]["code"] == "AUTH_001", r2
        await ws2.close()

        # Revoking bob's tokens closes his connection on hub B, and C refuses the token.
        a.cli("token", "revoke", "--user", "bob")
        assert await asyncio.wait_for(bob.closed, 10) == 1008
        ws = await connect(f"{hc.url}/web?token={bob_token}")
        m = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert m["payload"]["code"] == "AUTH_001" and "revoked" in m["payload"]["message"], m
        await ws.close()

        # A disabled key: its agent on hub C is closed, and no hub lets it register again.
        key2 = a.add_key("k2")
        ws3, r3 = await raw_agent(hc, "agent-k2", "k2", key2)
        assert r3["type"] == "agent.registered", r3
        a.cli("key", "disable", "k2")
        async def closed(ws):
            try:
                async for _ in ws:
                    pass
            except Exception:
                pass
            return ws.close_code
        assert await asyncio.wait_for(closed(ws3), 10) == 1008
        for h in c.hubs:
            ws4, r4 = await raw_agent(h, "agent-k2", "k2", key2)
            assert r4["type"] == "error" and r4["payload"]["code"] == "AUTH_001", (h.dir.name, r4)
            await ws4.close()
    finally:
        await alice.close()
        await bob.close()
