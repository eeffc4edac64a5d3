#!/usr/bin/env python3
"""bench/hub_bench.py: the hub benchmark: tasks per second through one hub with 10 Python agents
(each in its own process) and a web client process keeping --concurrency tasks in flight, and
the end-to-end latency of a 1-chunk task (submit -> result seen by the web client; 1 agent,
1 client, one task at a time). A task: the client submits it, the hub assigns it round-robin,
the agent accepts it, sends one 64-byte task.stream chunk and a small task.result, the hub
forwards both to the submitter.

Implementations (--impl):
  socketio  the anchor, the same dispatch written with python-socketio
            (bench/hub_socketio_anchor.py: AsyncServer on aiohttp, AsyncClient over websocket)
  ours      orchestra-hub: run_ours() below, TO BE FILLED IN (until then it is skipped with a
            note; no number is made up)

Placement (as bench/ws_bench.py): the hub on CPU --server-cpu (1), every agent and client on
CPU --load-cpu (0), all under SCHED_FIFO 10 when allowed (ORC_WS_SCHED / ORC_BENCH_RT, see
ws_bench.priority_prefix). Each scenario runs --runs times (3), implementations interleaved
within a run; the medians are printed as JSON lines, one per implementation and scenario, and
written to bench/results/hub.json; --entries-out FILE writes the rows bench/run merges into
bench/results/latest.json.

Every run's JSON: tasks, seconds, tasks_per_s, p50_ms, p99_ms, server_rss_kb (VmRSS of the hub
after the measured tasks), server_hwm_kb, server_busy (hub CPU time / wall time over the
measured window), load_busy (agents' and clients' CPU time / wall time, all on one core: near
1.0, or 0.95 under SCHED_FIFO's throttling, means the load side, not the hub, set the pace),
server_cpu_us_per_task and load_cpu_us_per_task (the same CPU times per measured task: the hub's
cost of a task whatever side was the bottleneck), agent_tasks (tasks each agent ran, warm-up
included).
"""
import argparse
import ctypes
import json
import os
import select
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from ws_bench import free_port, priority_prefix, raise_nofile  # noqa: E402

ANCHOR = HERE / "hub_socketio_anchor.py"
LOGDIR = Path(os.environ.get("ORC_HUB_BENCH_LOGS", "/tmp"))
CLK_TCK = os.sysconf("SC_CLK_TCK")

THROUGHPUT = dict(agents=10, clients=1, tasks=20000, concurrency=100, warmup=500)
LATENCY = dict(agents=1, clients=1, tasks=2000, concurrency=1, warmup=200)


def log(msg):
    print(f"hub_bench: {msg}", file=sys.stderr, flush=True)


def _child_setup():
    """In each child before exec: more descriptors, and SIGTERM when this process dies (so
    that no hub or agent outlives a killed benchmark; the setting survives the execs of chrt
    and taskset)."""
    raise_nofile()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Child:
    """A process of the stack: pinned, its stdout read as JSON lines with deadlines, its
    stderr in LOGDIR/hub_bench.NAME.log."""

    def __init__(self, name, cmd, cpu, rt, env=None, stdin=True):
        self.name = name
        self.logpath = LOGDIR / f"hub_bench.{name}.log"
        self.log = open(self.logpath, "ab")
        full = list(rt) + ["taskset", "-c", str(cpu)] + list(cmd)
        # chrt and taskset exec the program: the pid is the program's
        self.proc = subprocess.Popen(full, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=self.log, env=env,
                                     preexec_fn=_child_setup, start_new_session=True)
        self.buf = b""

    @property
    def pid(self):
        return self.proc.pid

    def tail(self):
        try:
            return self.logpath.read_text(errors="replace")[-600:].strip()
        except OSError:
            return ""

    def read_json(self, deadline):
        """The next JSON line of the child's stdout, by time.monotonic() deadline."""
        fd = self.proc.stdout.fileno()
        while True:
            nl = self.buf.find(b"\n")
            if nl >= 0:
                line, self.buf = self.buf[:nl], self.buf[nl + 1:]
                if line.startswith(b"{"):
                    return json.loads(line)
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"{self.name}: no answer in time ({self.tail()})")
            r, _, _ = select.select([fd], [], [], min(left, 1.0))
            if r:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"{self.name} exited ({self.proc.wait()}): {self.tail()}")
                self.buf += chunk

    def send(self, line):
        self.proc.stdin.write(line.encode())
        self.proc.stdin.flush()

    def close_stdin(self):
        try:
            if self.proc.stdin and not self.proc.stdin.closed:
                self.proc.stdin.close()
        except OSError:
            pass

    def cpu_s(self):
        f = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / CLK_TCK   # utime, stime (fields 14, 15)

    def status_kb(self, key):
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        return None

    def stop(self):
        self.close_stdin()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def install_signal_handlers():
    """SIGTERM and Ctrl-C (even when started in the background, where SIGINT is ignored) leave
    through the finally blocks that stop the children."""
    def stop(signum, _frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def wait_port(child, port, timeout=20):
    deadline = time.monotonic() + timeout
    while True:
        if child.proc.poll() is not None:
            raise RuntimeError(f"{child.name} exited with {child.proc.returncode}: {child.tail()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{child.name} does not listen on port {port}")
            time.sleep(0.05)


def split(total, parts):
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def percentile(sorted_v, q):
    """Nearest rank."""
    if not sorted_v:
        return None
    k = max(0, min(len(sorted_v) - 1, int(-(-q * len(sorted_v) // 1)) - 1))
    return sorted_v[k]


def run_stack(name, server_cmd, agent_cmd, client_cmd, *, agents, tasks, concurrency, clients,
              warmup, server_cpu, load_cpu, rt, env=None, timeout=180.0):
    """One measurement of a hub stack; every process is stopped on the way out.

    server_cmd(port) -> argv of the hub, which must listen on 127.0.0.1:port;
    agent_cmd(url_port, i) -> argv of agent i: prints {"ready": ID} once registered, on EOF of
      stdin stops and prints {"agent": ID, "tasks": N};
    client_cmd(port, j, tasks, concurrency, warmup) -> argv of web client j: runs the warm-up,
      prints {"ready": true}, runs its tasks on a line of stdin, prints {"tasks", "t_start",
      "t_end" (time.monotonic()), "lat_ms": [...], "errors": [...]}; stops at EOF of stdin
      before the go.
    Returns the run's JSON (module docstring); raises RuntimeError when a process fails, a
    client reports an error, or the agents did not run every task."""
    if min(agents, tasks, concurrency, clients) < 1 or warmup < 0 or clients > tasks:
        raise ValueError(f"{name}: need agents, tasks, concurrency, clients >= 1, clients <= tasks, warmup >= 0")
    children = []
    try:
        port = free_port()
        server = Child(f"{name}.server", server_cmd(port), server_cpu, rt, env, stdin=False)
        children.append(server)
        wait_port(server, port)
        ags = []
        for i in range(agents):
            ags.append(Child(f"{name}.agent", agent_cmd(port, i), load_cpu, rt, env))
            children.append(ags[-1])
        deadline = time.monotonic() + 60
        for c in ags:
            r = c.read_json(deadline)
            if "ready" not in r:
                raise RuntimeError(f"agent: {r}")
        cls = []
        for j, (n, conc, w) in enumerate(zip(split(tasks, clients), split(concurrency, clients),
                                             split(warmup, clients))):
            cls.append(Child(f"{name}.client", client_cmd(port, j, n, max(1, conc), w), load_cpu, rt, env))
            children.append(cls[-1])
        deadline = time.monotonic() + timeout
        for c in cls:
            r = c.read_json(deadline)
            if r.get("ready") is not True:
                raise RuntimeError(f"client: {r}")
        load = ags + cls
        s0, l0, w0 = server.cpu_s(), sum(c.cpu_s() for c in load), time.monotonic()
        for c in cls:
            c.send("go\n")
        deadline = time.monotonic() + timeout
        results = [c.read_json(deadline) for c in cls]
        s1, l1, w1 = server.cpu_s(), sum(c.cpu_s() for c in load), time.monotonic()
        rss, hwm = server.status_kb("VmRSS"), server.status_kb("VmHWM")
        for c in ags:
            c.close_stdin()
        deadline = time.monotonic() + 20
        agent_tasks = [c.read_json(deadline).get("tasks") for c in ags]
    finally:
        for c in reversed(children):
            c.stop()

    errors = [e for r in results for e in r.get("errors", [])]
    if errors:
        raise RuntimeError(f"{name}: clients reported errors: {errors[:5]}")
    done = sum(r["tasks"] for r in results)
    if done != tasks:
        raise RuntimeError(f"{name}: {done} of {tasks} tasks done")
    if sum(agent_tasks) != tasks + warmup:
        raise RuntimeError(f"{name}: the agents ran {sum(agent_tasks)} tasks, {tasks + warmup} were submitted")
    lat = sorted(x for r in results for x in r["lat_ms"])
    seconds = max(r["t_end"] for r in results) - min(r["t_start"] for r in results)
    return {"tasks": done, "seconds": round(seconds, 4), "tasks_per_s": round(done / seconds, 1),
            "p50_ms": round(percentile(lat, 0.50), 3), "p99_ms": round(percentile(lat, 0.99), 3),
            "server_rss_kb": rss, "server_hwm_kb": hwm,
            "server_busy": round((s1 - s0) / (w1 - w0), 3), "load_busy": round((l1 - l0) / (w1 - w0), 3),
            "server_cpu_us_per_task": round((s1 - s0) * 1e6 / done, 1), "load_cpu_us_per_task": round((l1 - l0) * 1e6 / done, 1),
            "agents": agents, "clients": clients, "concurrency": concurrency, "agent_tasks": agent_tasks}


# ---------------------------------------------------------------------------------------------
# the anchor

def socketio_options(loop=None, json_impl=None, sync_handlers=False):
    opts = []
    if loop:
        opts += ["--loop", loop]
    if json_impl:
        opts += ["--json", json_impl]
    if sync_handlers:
        opts += ["--sync-handlers"]
    return opts


def run_socketio(agents, tasks, concurrency, clients=1, warmup=500, server_cpu="1", load_cpu="0",
                 rt=None, timeout=180.0, options=()):
    """The python-socketio anchor (bench/hub_socketio_anchor.py); options: its --loop, --json,
    --sync-handlers (socketio_options)."""
    if rt is None:
        rt, _ = priority_prefix()
    py = [sys.executable, str(ANCHOR)]
    opts = list(options)
    r = run_stack(
        "socketio",
        lambda port: py + ["--role", "server", "--port", str(port)] + opts,
        lambda port, i: py + ["--role", "agent", "--url", f"http://127.0.0.1:{port}",
                              "--agent-id", f"agent-{i}"] + opts,
        lambda port, j, n, conc, w: py + ["--role", "client", "--url", f"http://127.0.0.1:{port}",
                                          "--client-id", f"c{j}", "--tasks", str(n), "--concurrency",
                                          str(conc), "--warmup", str(w), "--deadline", str(timeout)] + opts,
        agents=agents, tasks=tasks, concurrency=concurrency, clients=clients, warmup=warmup,
        server_cpu=server_cpu, load_cpu=load_cpu, rt=rt, timeout=timeout)
    # the anchor's server round-robins every task: each agent ran the same number, give or take one
    if max(r["agent_tasks"]) - min(r["agent_tasks"]) > 1:
        raise RuntimeError(f"socketio: tasks not spread round-robin: {r['agent_tasks']}")
    return r


# ---------------------------------------------------------------------------------------------
# ours: >>> THE LEAD FILLS THIS IN <<<

def run_ours(agents, tasks, concurrency, clients=1, warmup=500, server_cpu="1", load_cpu="0",
             rt=None, timeout=180.0, options=()):
    """orchestra-hub under the same load as run_socketio, returning the same JSON.

    TO BE WRITTEN (the lead): start `orchestra-hub` and our Python agents and web clients
    through run_stack(), as run_socketio does:
      server_cmd(port): orchestra-hub listening on 127.0.0.1:port (agent keys, JWT secret, a
        journal in a temporary directory; --max-load-per-agent / rate limit high enough that
        the hub does not throttle the benchmark, as python-socketio does not);
      agent_cmd(port, i): a Python agent (our SDK) on ws://127.0.0.1:port/agent, agentId
        agent-i, that answers each task.assign with task.accepted, one task.stream chunk of
        64 bytes (seq 0) and task.result {"success": true, "result": {"exitCode": 0}}, and
        speaks run_stack's line protocol on stdin/stdout (see run_stack);
      client_cmd(port, j, n, conc, warmup): a Python web client (our SDK) on /web with a JWT
        that keeps conc tasks in flight, times submit -> task.result, checks the stream chunk
        came first, and speaks the line protocol.
    Until then it raises NotImplementedError, and the harness reports no number for ours."""
    raise NotImplementedError("run_ours: orchestra-hub's side of the hub benchmark is not written yet")


IMPLS = {"socketio": run_socketio, "ours": run_ours}
METRICS = ("tasks_per_s", "p50_ms", "p99_ms", "seconds", "server_rss_kb", "server_hwm_kb", "server_busy", "load_busy",
           "server_cpu_us_per_task", "load_cpu_us_per_task")


def median_of(runs):
    return {k: statistics.median(r[k] for r in runs) for k in METRICS}


def measure(impls, scenarios, runs, params, server_cpu, load_cpu, timeout, options):
    """Runs every (implementation, scenario) `runs` times, interleaved; returns
    {(impl, scenario): {"impl", "scenario", "params", "median", "runs"}} and notes."""
    rt, sched = priority_prefix()
    log(f"scheduling: {sched}; hub on CPU {server_cpu}, agents and clients on CPU {load_cpu}; "
        f"{', '.join(impls)}; {runs} runs")
    out, notes, skip = {}, [], set()
    for i in range(runs):
        for scen in scenarios:
            for impl in impls:
                if impl in skip:
                    continue
                t0 = time.time()
                try:
                    r = IMPLS[impl](**params[scen], server_cpu=server_cpu, load_cpu=load_cpu, rt=rt,
                                    timeout=timeout, options=options if impl == "socketio" else ())
                except NotImplementedError as e:
                    skip.add(impl)
                    notes.append(f"{impl}: skipped: {e}")
                    log(notes[-1])
                    continue
                e = out.setdefault((impl, scen), {"impl": impl, "scenario": scen, "params": params[scen],
                                                  "scheduling": sched, "runs": []})
                e["runs"].append(r)
                log(f"run {i + 1}/{runs}: {impl} {scen}: {r['tasks_per_s']:,.0f} tasks/s, p50 {r['p50_ms']:.2f} ms, "
                    f"p99 {r['p99_ms']:.2f} ms, hub busy {r['server_busy']:.2f} ({r['server_cpu_us_per_task']:.0f} us/task), "
                    f"load busy {r['load_busy']:.2f} ({r['load_cpu_us_per_task']:.0f} us/task), "
                    f"hub RSS {r['server_rss_kb']:,} kB ({time.time() - t0:.1f} s)")
    for e in out.values():
        e["median"] = median_of(e["runs"])
    return out, notes


def entries(out):
    """bench/run rows: ours against the anchor (tasks/s target 5x), the anchor as info rows."""
    rows = []
    so, st = out.get(("socketio", "throughput")), out.get(("socketio", "latency"))
    oo, ot = out.get(("ours", "throughput")), out.get(("ours", "latency"))
    label = "python-socketio (aiohttp)"
    if so and oo:
        v, a = oo["median"]["tasks_per_s"], so["median"]["tasks_per_s"]
        rows.append({"name": "hub.tasks_per_s.10agents", "value": v, "unit": "tasks/s", "anchor": label,
                     "anchor_value": a, "ratio": round(v / a, 3), "target": 5.0,
                     "runs": [r["tasks_per_s"] for r in oo["runs"]], "anchor_runs": [r["tasks_per_s"] for r in so["runs"]]})
    if st and ot:
        for k in ("p50_ms", "p99_ms"):
            v, a = ot["median"][k], st["median"][k]
            rows.append({"name": f"hub.latency.1chunk.{k[:3]}", "value": v, "unit": "ms", "anchor": label,
                         "anchor_value": a, "ratio": round(a / v, 3), "target": None,
                         "runs": [r[k] for r in ot["runs"]], "anchor_runs": [r[k] for r in st["runs"]]})
    info = [(so, "tasks_per_s", "tasks/s", "hub.socketio.tasks_per_s.10agents", "10 agents, 1 client, 100 in flight"),
            (so, "server_rss_kb", "kB", "hub.socketio.server_rss_kb.10agents", "hub VmRSS after the throughput run"),
            (st, "p50_ms", "ms", "hub.socketio.latency.1chunk.p50", "1 agent, 1 client, one task at a time"),
            (st, "p99_ms", "ms", "hub.socketio.latency.1chunk.p99", "1 agent, 1 client, one task at a time")]
    for e, k, unit, name, what in info:
        if e:
            rows.append({"name": name, "value": e["median"][k], "unit": unit, "anchor": None, "anchor_value": None,
                         "ratio": None, "target": None, "runs": [r[k] for r in e["runs"]],
                         "info": f"python-socketio hub anchor: {what}"})
    return rows


def smoke():
    """A functional check of the anchor and the harness (no timing): several agents and
    clients, every task's stream chunk and result back to its submitter, tasks spread
    round-robin, the latency setup; and a server that drops stream chunks is caught."""
    passed = failed = 0

    def check(what, fn):
        nonlocal passed, failed
        try:
            fn()
            passed += 1
            print(f"ok   {what}", flush=True)
        except Exception as e:  # reported, counted, and the run goes on
            failed += 1
            print(f"FAIL {what}: {e}", flush=True)

    def dispatch():
        r = run_socketio(agents=3, tasks=301, concurrency=9, clients=2, warmup=20, rt=[], timeout=60)
        if r["tasks"] != 301 or sum(r["agent_tasks"]) != 321 or not r["p50_ms"] > 0:
            raise RuntimeError(r)

    def latency():
        r = run_socketio(**dict(LATENCY, tasks=50, warmup=5), rt=[], timeout=60)
        if r["tasks"] != 50 or r["agent_tasks"] != [55]:
            raise RuntimeError(r)

    def dropped():
        try:
            run_socketio(agents=2, tasks=100, concurrency=4, warmup=0, rt=[], timeout=20,
                         options=["--drop-stream-every", "7"])
        except RuntimeError as e:
            if "stream chunks before its result" in str(e):
                return
            raise
        raise RuntimeError("the harness accepted results without their stream chunk")

    check("socketio: 3 agents, 2 clients, 301 tasks", dispatch)
    check("socketio: latency setup, 50 tasks", latency)
    check("harness: a missing stream chunk fails the run", dropped)
    print(f"{passed} passed, {failed} failed")
    return failed == 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--impl", default="socketio", help="socketio, ours, or both (comma-separated)")
    ap.add_argument("--scenarios", default="throughput,latency")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="fewer tasks (5,000 and 1,000)")
    ap.add_argument("--agents", type=int, default=THROUGHPUT["agents"])
    ap.add_argument("--clients", type=int, default=THROUGHPUT["clients"])
    ap.add_argument("--tasks", type=int, help=f"throughput tasks ({THROUGHPUT['tasks']})")
    ap.add_argument("--concurrency", type=int, default=THROUGHPUT["concurrency"])
    ap.add_argument("--latency-tasks", type=int, help=f"latency tasks ({LATENCY['tasks']})")
    ap.add_argument("--server-cpu", default="1")
    ap.add_argument("--load-cpu", default="0")
    ap.add_argument("--timeout", type=float, default=180.0, help="seconds for one run's tasks")
    ap.add_argument("--socketio-options", default="", help="extra options of hub_socketio_anchor.py (--loop, --json, --sync-handlers)")
    ap.add_argument("--entries-out")
    ap.add_argument("--smoke", action="store_true", help="functional check of the anchor and the harness (no timing)")
    a = ap.parse_args()
    install_signal_handlers()
    if a.smoke:
        sys.exit(0 if smoke() else 1)
    impls = ["socketio", "ours"] if a.impl == "both" else a.impl.split(",")
    for i in impls:
        if i not in IMPLS:
            sys.exit(f"hub_bench: unknown implementation {i!r}")
    params = {"throughput": dict(THROUGHPUT, agents=a.agents, clients=a.clients, concurrency=a.concurrency,
                                 tasks=a.tasks or (5000 if a.quick else THROUGHPUT["tasks"])),
              "latency": dict(LATENCY, tasks=a.latency_tasks or (1000 if a.quick else LATENCY["tasks"]))}
    scenarios = a.scenarios.split(",")
    for sc in scenarios:
        if sc not in params:
            sys.exit(f"hub_bench: unknown scenario {sc!r}")
    out, notes = measure(impls, scenarios, a.runs, params, a.server_cpu, a.load_cpu, a.timeout,
                         shlex.split(a.socketio_options))
    for e in out.values():
        print(json.dumps({"impl": e["impl"], "scenario": e["scenario"], "runs": len(e["runs"]), **e["median"]}), flush=True)
    res = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": f"{os.uname().nodename} {os.cpu_count()} cores",
           "notes": notes, "results": list(out.values())}
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / "hub.json").write_text(json.dumps(res, indent=1) + "\n")
    if a.entries_out:
        Path(a.entries_out).write_text(json.dumps({"notes": notes, "entries": entries(out)}, indent=2))


if __name__ == "__main__":
    main()
