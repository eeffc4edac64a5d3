#!/usr/bin/env python3
"""bench/hub_bench.py: the hub benchmark: tasks per second through one hub with 10 agents
(each in its own process) and a web client process keeping --concurrency tasks in flight, and
the end-to-end latency of a 1-chunk task (submit -> result seen by the web client; 1 agent,
1 client, one task at a time). A task: the client submits it, the hub assigns it round-robin,
the agent accepts it, sends one 64-byte task.stream chunk and a small task.result, the hub
forwards both to the submitter.

Implementations (--impl; "both" runs all three):
  socketio  the anchor, the same dispatch written with python-socketio
            (bench/hub_socketio_anchor.py: AsyncServer on aiohttp, AsyncClient over websocket)
  ours      orchestra-hub (run_ours: a fresh journal in a temporary directory, --rate-limit 0,
            --max-load-per-agent 100000, --log-level warn) with Python agents on our SDK
            (bench/hub_agent.py: orchestra.Agent on asyncio, on the embedded runtime the asyncio
            loop runs: Runtime.for_loop()) and our Python web client
            (bench/hub_client.py: JSON envelopes over orchestra.Client or python websockets,
            --transport; the default, auto, takes the one measured faster for the scenario:
            AUTO_TRANSPORT). The 5x target is this one.
  ours-c    the same hub and client with C agents (build/hub_bench_agent, bench/hub_agent.c:
            orc_agent_* with callbacks on the I/O thread); --agent-lang c|both picks it too.

Scenarios (--scenarios, default all): throughput (10 agents, 1 client, 100 in flight), latency
(1 agent, 1 client, one task at a time), memory (ours only: the hub's VmRSS growth per
connected idle agent, 1,000 agents opened by build/hub_bench_agents_idle from one process).

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
cost of a task whatever side was the bottleneck), client_cpu_us_per_task and
agents_cpu_us_per_task (the load's CPU split between the web clients and the agents),
agent_tasks (tasks each agent ran, warm-up included). The memory scenario's JSON: agents,
rss_before_kb, rss_after_kb, bytes_per_agent, hwm_kb, connect_seconds.
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
        c0 = sum(c.cpu_s() for c in cls)
        for c in cls:
            c.send("go\n")
        deadline = time.monotonic() + timeout
        results = [c.read_json(deadline) for c in cls]
        s1, l1, w1 = server.cpu_s(), sum(c.cpu_s() for c in load), time.monotonic()
        c1 = sum(c.cpu_s() for c in cls)
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
            "client_cpu_us_per_task": round((c1 - c0) * 1e6 / done, 1),
            "agents_cpu_us_per_task": round(((l1 - l0) - (c1 - c0)) * 1e6 / done, 1),
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
# ours: orchestra-hub, our agents (Python on orchestra.Agent, or C on orc_agent_*) and our
# Python web client (orchestra.Client)

BUILD = Path(os.environ.get("ORC_BUILD_DIR", ROOT / "build"))
PY_AGENT = HERE / "hub_agent.py"
PY_CLIENT = HERE / "hub_client.py"


def ours_env():
    """The environment of our Python processes: the binding from bindings/python on the
    build's library (ORCHESTRA_LIBRARY as given, else build/liborchestra.so)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "bindings" / "python"), env.get("PYTHONPATH")) if p)
    env.setdefault("ORCHESTRA_LIBRARY", str(BUILD / "liborchestra.so"))
    return env


def need(path):
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise NotImplementedError(f"{path} is not built (cmake --build build)")
    return str(path)


class HubSetup:
    """A fresh journal in a temporary directory with an agent key, a web user and a JWT, made
    with orchestra-hub's own subcommands before the hub starts; removed on exit. The directory
    is made in $ORC_HUB_BENCH_JOURNAL_DIR (hub_bench.py --journal-dir) when set, else in the
    system's temporary directory (on this machine /tmp, ext4 on a virtual disk)."""

    def __init__(self):
        import tempfile
        self.hub = need(BUILD / "orchestra-hub")
        self.dir = Path(tempfile.mkdtemp(prefix="hub_bench.", dir=os.environ.get("ORC_HUB_BENCH_JOURNAL_DIR") or None))
        self.journal = str(self.dir / "var" / "orchestra.db")
        self.key_id = "bench-key"
        self.secret = self.cli("key", "add", self.key_id)
        self.cli("user", "add", "bench", "--password", "bench-password")
        self.token = self.cli("token", "--user", "bench", "--ttl", "86400")

    def cli(self, *args):
        r = subprocess.run([self.hub, *args, "--journal", self.journal], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"orchestra-hub {' '.join(args)}: exit {r.returncode}: {r.stderr.strip()}")
        return r.stdout.strip()

    def server_cmd(self, port, extra=()):
        # no rate limit and no per-agent cap that the benchmark could reach (python-socketio has
        # neither); warnings and errors only in the log (the hub logs each finished task at info)
        return [self.hub, "--host", "127.0.0.1", "--port", str(port), "--journal", self.journal,
                "--rate-limit", "0", "--max-load-per-agent", "100000", "--log-level", "warn", *extra]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        import shutil
        shutil.rmtree(self.dir, ignore_errors=True)


def run_ours(agents, tasks, concurrency, clients=1, warmup=500, server_cpu="1", load_cpu="0",
             rt=None, timeout=180.0, options=(), agent_lang="python", transport="orchestra", agent_options=()):
    """orchestra-hub under the same load as run_socketio, returning the same JSON.

    The hub: a fresh journal (temporary directory) with a key, a user and a JWT made by its CLI
    first; --rate-limit 0, --max-load-per-agent 100000, --log-level warn. Agents (agentId
    agent-i, maxConcurrency 1000): agent_lang "python": bench/hub_agent.py (orchestra.Agent on
    asyncio + uvloop, embedded runtime; agent_options ["--io", "thread"] for the I/O thread),
    "c": build/hub_bench_agent (orc_agent_*, callbacks on the I/O thread).
    Web clients: bench/hub_client.py (JSON envelopes over orchestra.Client on uvloop with
    orjson, as the anchor's client uses uvloop and orjson; transport "websockets" puts the
    python websockets client under the same code). Both answer run_stack's line protocol."""
    if agent_lang not in ("python", "c"):
        raise ValueError(f"agent_lang must be python or c, not {agent_lang!r}")
    if rt is None:
        rt, _ = priority_prefix()
    with HubSetup() as hs:
        env = ours_env()
        if agent_lang == "c":
            c_agent = need(BUILD / "hub_bench_agent")
            agent_cmd = lambda port, i: [c_agent, "--url", f"ws://127.0.0.1:{port}/agent", "--agent-id", f"agent-{i}",
                                         "--key-id", hs.key_id, "--secret", hs.secret, "--max-concurrency", "1000",
                                         *agent_options]
        else:
            agent_cmd = lambda port, i: [sys.executable, str(PY_AGENT), "--url", f"ws://127.0.0.1:{port}/agent",
                                         "--agent-id", f"agent-{i}", "--key-id", hs.key_id, "--secret", hs.secret,
                                         "--max-concurrency", "1000", *agent_options]
        client_cmd = lambda port, j, n, conc, w: [
            sys.executable, str(PY_CLIENT), "--url", f"ws://127.0.0.1:{port}/web", "--token", hs.token,
            "--client-id", f"c{j}", "--tasks", str(n), "--concurrency", str(conc), "--warmup", str(w),
            "--deadline", str(timeout), "--transport", transport]
        name = "ours" if agent_lang == "python" else "ours-c"
        r = run_stack(name, lambda port: hs.server_cmd(port, options), agent_cmd, client_cmd,
                      agents=agents, tasks=tasks, concurrency=concurrency, clients=clients, warmup=warmup,
                      server_cpu=server_cpu, load_cpu=load_cpu, rt=rt, env=env, timeout=timeout)
    r["agent_lang"] = agent_lang
    r["transport"] = transport
    return r


def run_ours_c(*args, **kwargs):
    return run_ours(*args, agent_lang="c", **kwargs)


def hub_health(port):
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
        return json.loads(r.read())


def run_memory(agents=1000, warm=20, settle=6.0, server_cpu="1", load_cpu="0", rt=(), timeout=180.0):
    """Memory per connected agent: the hub (CPU server_cpu) with `warm` agents connected and
    idle (build/hub_bench_agents_idle, one process), VmRSS read; then `agents` more from a
    second process, every one registered and counted healthy by /health, and `settle` seconds
    later (more than the hub's 5 s heartbeat interval, so every agent has sent a heartbeat
    with its systemInfo) VmRSS again: (after - before) / agents bytes. Default scheduling (as
    ws_bench's idle10k): nothing is timed. Returns {"agents", "rss_before_kb", "rss_after_kb",
    "bytes_per_agent", ...}."""
    idle = need(BUILD / "hub_bench_agents_idle")
    children = []
    with HubSetup() as hs:
        try:
            port = free_port()
            server = Child("memory.server", hs.server_cmd(port), server_cpu, rt, stdin=False)
            children.append(server)
            wait_port(server, port)

            def held(prefix, n):
                c = Child(f"memory.agents-{prefix}", [idle, "--url", f"ws://127.0.0.1:{port}/agent", "--key-id", hs.key_id,
                                                      "--secret", hs.secret, "--count", str(n), "--prefix", prefix,
                                                      "--timeout", str(timeout)], load_cpu, rt)
                children.append(c)
                r = c.read_json(time.monotonic() + timeout + 10)
                if r.get("ready") != n:
                    raise RuntimeError(f"memory: {r}")
                return c

            def healthy(n):
                deadline = time.monotonic() + 30
                while True:
                    h = hub_health(port)
                    if h["agents"]["healthy"] >= n:
                        return h
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"memory: /health shows {h['agents']} agents, {n} expected healthy")
                    time.sleep(0.1)

            if warm:
                held("warm-", warm)
                healthy(warm)
            time.sleep(settle)
            before = server.status_kb("VmRSS")
            t0 = time.monotonic()
            main = held("idle-", agents)
            h = healthy(warm + agents)
            seconds = time.monotonic() - t0
            time.sleep(settle)
            after, hwm = server.status_kb("VmRSS"), server.status_kb("VmHWM")
            for c in children[1:]:
                c.close_stdin()
            closed = main.read_json(time.monotonic() + 30)
            if closed.get("closed") != agents:
                raise RuntimeError(f"memory: {closed}")
        finally:
            for c in reversed(children):
                c.stop()
    return {"agents": agents, "warm_agents": warm, "rss_before_kb": before, "rss_after_kb": after, "hwm_kb": hwm,
            "bytes_per_agent": round((after - before) * 1024 / agents, 1), "healthy": h["agents"]["healthy"],
            "connect_seconds": round(seconds, 2)}


IMPLS = {"socketio": run_socketio, "ours": run_ours, "ours-c": run_ours_c}
LABELS = {"socketio": "python-socketio", "ours": "orchestra-hub, Python agents", "ours-c": "orchestra-hub, C agents"}
METRICS = ("tasks_per_s", "p50_ms", "p99_ms", "seconds", "server_rss_kb", "server_hwm_kb", "server_busy", "load_busy",
           "server_cpu_us_per_task", "load_cpu_us_per_task", "client_cpu_us_per_task", "agents_cpu_us_per_task")
MEMORY_METRICS = ("bytes_per_agent", "rss_before_kb", "rss_after_kb", "hwm_kb", "connect_seconds")
MEMORY = dict(agents=1000, warm=20)


def median_of(runs, keys=METRICS):
    return {k: statistics.median(r[k] for r in runs) for k in keys}


# Our web client's transport per scenario with --transport auto: whichever made the scenario
# faster here (bench/README.md, "Hub"). Both are now orchestra.Client on the embedded runtime
# (Runtime.for_loop()): at 100 in flight it took 24.5 us of client CPU per task against 37 for
# python websockets, and 13,040 against 12,626 tasks/s (medians of 3 interleaved runs); one task
# at a time it gives the lower latency. (Before the embedded runtime's early flush, python
# websockets gave about 10% more tasks/s, though orchestra.Client took less CPU per task.)
AUTO_TRANSPORT = {"throughput": "orchestra", "latency": "orchestra"}


def pick_transport(transport, scenario):
    return AUTO_TRANSPORT.get(scenario, "orchestra") if transport == "auto" else transport


def measure(impls, scenarios, runs, params, server_cpu, load_cpu, timeout, options, transport="auto"):
    """Runs every (implementation, scenario) `runs` times, interleaved; returns
    {(impl, scenario): {"impl", "scenario", "params", "median", "runs"}} and notes. The memory
    scenario is the hub's alone (no anchor, no agent language): it runs once per run under the
    key ("ours", "memory") when an implementation of ours is selected."""
    rt, sched = priority_prefix()
    log(f"scheduling: {sched}; hub on CPU {server_cpu}, agents and clients on CPU {load_cpu}; "
        f"{', '.join(impls)}; {runs} runs")
    out, notes, skip = {}, [], set()
    for i in range(runs):
        for scen in scenarios:
            if scen == "memory":
                if not any(x.startswith("ours") for x in impls) or "ours" in skip:
                    continue
                t0 = time.time()
                try:
                    r = run_memory(**params[scen], server_cpu=server_cpu, load_cpu=load_cpu, timeout=timeout)
                except NotImplementedError as e:
                    skip.add("ours")
                    notes.append(f"memory: skipped: {e}")
                    log(notes[-1])
                    continue
                e = out.setdefault(("ours", scen), {"impl": "ours", "scenario": scen, "params": params[scen],
                                                    "scheduling": "default", "runs": []})
                e["runs"].append(r)
                log(f"run {i + 1}/{runs}: hub memory: {r['bytes_per_agent']:,.0f} bytes per connected agent "
                    f"({r['agents']} agents; VmRSS {r['rss_before_kb']:,} -> {r['rss_after_kb']:,} kB; "
                    f"{time.time() - t0:.1f} s)")
                continue
            for impl in impls:
                if impl in skip:
                    continue
                t0 = time.time()
                kw = {"options": options} if impl == "socketio" else {"transport": pick_transport(transport, scen)}
                try:
                    r = IMPLS[impl](**params[scen], server_cpu=server_cpu, load_cpu=load_cpu, rt=rt,
                                    timeout=timeout, **kw)
                except NotImplementedError as e:
                    skip.add(impl)
                    notes.append(f"{impl}: skipped: {e}")
                    log(notes[-1])
                    continue
                e = out.setdefault((impl, scen), {"impl": impl, "scenario": scen, "params": params[scen],
                                                  "scheduling": sched, "runs": []})
                e["runs"].append(r)
                log(f"run {i + 1}/{runs}: {impl} {scen}{'' if impl == 'socketio' else ' (client on ' + r['transport'] + ')'}: "
                    f"{r['tasks_per_s']:,.0f} tasks/s, p50 {r['p50_ms']:.3f} ms, "
                    f"p99 {r['p99_ms']:.3f} ms, hub busy {r['server_busy']:.2f} ({r['server_cpu_us_per_task']:.0f} us/task), "
                    f"load busy {r['load_busy']:.2f} ({r['load_cpu_us_per_task']:.0f} us/task: client "
                    f"{r['client_cpu_us_per_task']:.0f}, agents {r['agents_cpu_us_per_task']:.0f}), hub RSS {r['server_rss_kb']:,} kB ({time.time() - t0:.1f} s)")
    for (impl, scen), e in out.items():
        e["median"] = median_of(e["runs"], MEMORY_METRICS if scen == "memory" else METRICS)
    return out, notes


P99_LIMIT_MS = 1.0     # the aim: p99 under 1 ms on loopback, C agents
TPS_TARGET = 5.0       # at least 5x the anchor's tasks/s with Python agents


def entries(out):
    """bench/run rows: ours against the anchor (tasks/s with Python agents: target 5x; with C
    agents: no target), the 1-chunk latency with C agents against the 1 ms limit (p99) and the
    anchor, memory per connected agent, and the anchor's own numbers as info rows."""
    rows = []
    so, st = out.get(("socketio", "throughput")), out.get(("socketio", "latency"))
    oo, ot = out.get(("ours", "throughput")), out.get(("ours", "latency"))
    co, ct = out.get(("ours-c", "throughput")), out.get(("ours-c", "latency"))
    mem = out.get(("ours", "memory"))
    label = "python-socketio (aiohttp)"

    def ratio_row(name, ours, anchor, key, unit, target, higher=True, anchor_label=label):
        v, a = ours["median"][key], anchor["median"][key]
        rows.append({"name": name, "value": v, "unit": unit, "anchor": anchor_label, "anchor_value": a,
                     "ratio": round(v / a if higher else a / v, 3), "target": target,
                     "runs": [r[key] for r in ours["runs"]], "anchor_runs": [r[key] for r in anchor["runs"]]})

    def info_row(e, key, unit, name, what):
        rows.append({"name": name, "value": e["median"][key], "unit": unit, "anchor": None, "anchor_value": None,
                     "ratio": None, "target": None, "runs": [r[key] for r in e["runs"]], "info": what})

    if so and oo:
        ratio_row("hub.tasks_per_s.10agents", oo, so, "tasks_per_s", "tasks/s", TPS_TARGET)
        ratio_row("hub.cpu_per_task.10agents", oo, so, "server_cpu_us_per_task", "us/task", None, higher=False)
    if so and co:
        ratio_row("hub.tasks_per_s.10agents.c_agents", co, so, "tasks_per_s", "tasks/s", None)
        ratio_row("hub.cpu_per_task.10agents.c_agents", co, so, "server_cpu_us_per_task", "us/task", None, higher=False)
    if ct:
        v = ct["median"]["p99_ms"]
        rows.append({"name": "hub.latency.1chunk.p99", "value": v, "unit": "ms", "anchor": "limit (C agents)",
                     "anchor_value": P99_LIMIT_MS, "ratio": round(P99_LIMIT_MS / v, 3), "target": 1.0,
                     "runs": [r["p99_ms"] for r in ct["runs"]], "anchor_runs": None})
        if st:
            ratio_row("hub.latency.1chunk.p99.vs_socketio", ct, st, "p99_ms", "ms", None, higher=False)
            ratio_row("hub.latency.1chunk.p50", ct, st, "p50_ms", "ms", None, higher=False)
    if ot and st:
        ratio_row("hub.latency.1chunk.python_agents.p50", ot, st, "p50_ms", "ms", None, higher=False)
        ratio_row("hub.latency.1chunk.python_agents.p99", ot, st, "p99_ms", "ms", None, higher=False)
    if mem:
        info_row(mem, "bytes_per_agent", "bytes/agent", f"hub.memory_per_agent.{mem['params']['agents']}",
                 f"orchestra-hub VmRSS growth per connected idle agent ({mem['params']['agents']} from one process)")
    info = [(so, "tasks_per_s", "tasks/s", "hub.socketio.tasks_per_s.10agents", "10 agents, 1 client, 100 in flight"),
            (so, "server_rss_kb", "kB", "hub.socketio.server_rss_kb.10agents", "hub VmRSS after the throughput run"),
            (st, "p50_ms", "ms", "hub.socketio.latency.1chunk.p50", "1 agent, 1 client, one task at a time"),
            (st, "p99_ms", "ms", "hub.socketio.latency.1chunk.p99", "1 agent, 1 client, one task at a time")]
    for e, k, unit, name, what in info:
        if e:
            info_row(e, k, unit, name, f"python-socketio hub anchor: {what}")
    for e, name, what in ((oo, "hub.ours.server_rss_kb.10agents", "orchestra-hub VmRSS after the throughput run (Python agents)"),):
        if e:
            info_row(e, "server_rss_kb", "kB", name, what)
    return rows


def smoke():
    """A functional check of the anchor, ours and the harness (no timing): several agents and
    clients, every task's stream chunk and result back to its submitter, tasks spread
    round-robin (the anchor) or to every agent (ours), the latency setups, our client on both
    transports, the memory scenario on 50 agents; and a server that drops stream chunks (the
    anchor) or an agent that skips them (ours) is caught."""
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

    def ours(lang):
        def fn():
            r = run_ours(agents=3, tasks=301, concurrency=9, clients=2, warmup=20, rt=[], timeout=60, agent_lang=lang)
            if r["tasks"] != 301 or sum(r["agent_tasks"]) != 321 or not r["p50_ms"] > 0 or min(r["agent_tasks"]) == 0:
                raise RuntimeError(r)
        return fn

    def ours_latency():
        r = run_ours(**dict(LATENCY, tasks=50, warmup=5), rt=[], timeout=60, agent_lang="c")
        if r["tasks"] != 50 or r["agent_tasks"] != [55]:
            raise RuntimeError(r)

    def ours_websockets():
        r = run_ours(agents=2, tasks=100, concurrency=4, warmup=0, rt=[], timeout=60, agent_lang="c", transport="websockets")
        if r["tasks"] != 100 or sum(r["agent_tasks"]) != 100:
            raise RuntimeError(r)

    def ours_dropped():
        try:
            run_ours(agents=2, tasks=100, concurrency=4, warmup=0, rt=[], timeout=20, agent_lang="c",
                     agent_options=["--skip-stream-every", "7"])
        except RuntimeError as e:
            if "stream chunks before its result" in str(e):
                return
            raise
        raise RuntimeError("our client accepted results without their stream chunk")

    def memory():
        r = run_memory(agents=50, warm=5, settle=0.5, timeout=60)
        if r["healthy"] != 55 or not r["rss_after_kb"] > 0:
            raise RuntimeError(r)

    check("socketio: 3 agents, 2 clients, 301 tasks", dispatch)
    check("socketio: latency setup, 50 tasks", latency)
    check("harness: a missing stream chunk fails the run", dropped)
    check("ours: 3 Python agents, 2 clients, 301 tasks", ours("python"))
    check("ours: 3 C agents, 2 clients, 301 tasks", ours("c"))
    check("ours: latency setup with a C agent, 50 tasks", ours_latency)
    check("ours: the web client on python websockets, 100 tasks", ours_websockets)
    check("ours: a missing stream chunk fails the run", ours_dropped)
    check("ours: memory scenario with 50 agents", memory)
    print(f"{passed} passed, {failed} failed")
    return failed == 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--impl", default="socketio",
                    help="socketio, ours, ours-c (C agents), or both (= all three; comma-separated)")
    ap.add_argument("--agent-lang", choices=["python", "c", "both"],
                    help="the agents of `ours` in --impl: python (default), c, or both (ours and ours-c)")
    ap.add_argument("--scenarios", default="throughput,latency,memory")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="fewer tasks (5,000 and 1,000) and agents for memory (500)")
    ap.add_argument("--agents", type=int, default=THROUGHPUT["agents"])
    ap.add_argument("--clients", type=int, default=THROUGHPUT["clients"])
    ap.add_argument("--tasks", type=int, help=f"throughput tasks ({THROUGHPUT['tasks']})")
    ap.add_argument("--concurrency", type=int, default=THROUGHPUT["concurrency"])
    ap.add_argument("--latency-tasks", type=int, help=f"latency tasks ({LATENCY['tasks']})")
    ap.add_argument("--memory-agents", type=int, help=f"agents of the memory scenario ({MEMORY['agents']})")
    ap.add_argument("--server-cpu", default="1")
    ap.add_argument("--load-cpu", default="0")
    ap.add_argument("--timeout", type=float, default=180.0, help="seconds for one run's tasks")
    ap.add_argument("--socketio-options", default="", help="extra options of hub_socketio_anchor.py (--loop, --json, --sync-handlers)")
    ap.add_argument("--transport", choices=["auto", "orchestra", "websockets"], default="auto",
                    help="our web client's WebSocket: orchestra.Client, python websockets, or auto (default: "
                         "the faster one measured per scenario, AUTO_TRANSPORT)")
    ap.add_argument("--journal-dir", help="where our hub's temporary journals go (default: the system's "
                    "temporary directory; e.g. /dev/shm to take the disk out)")
    ap.add_argument("--entries-out")
    ap.add_argument("--smoke", action="store_true", help="functional check of the anchor, ours and the harness (no timing)")
    a = ap.parse_args()
    install_signal_handlers()
    if a.journal_dir:
        os.environ["ORC_HUB_BENCH_JOURNAL_DIR"] = a.journal_dir
    if a.smoke:
        sys.exit(0 if smoke() else 1)
    impls = []
    for i in (["socketio", "ours", "ours-c"] if a.impl == "both" else a.impl.split(",")):
        if i == "ours" and a.agent_lang in ("c", "both"):
            impls += ["ours-c"] if a.agent_lang == "c" else ["ours", "ours-c"]
        else:
            impls.append(i)
    impls = list(dict.fromkeys(impls))
    for i in impls:
        if i not in IMPLS:
            sys.exit(f"hub_bench: unknown implementation {i!r}")
    params = {"throughput": dict(THROUGHPUT, agents=a.agents, clients=a.clients, concurrency=a.concurrency,
                                 tasks=a.tasks or (5000 if a.quick else THROUGHPUT["tasks"])),
              "latency": dict(LATENCY, tasks=a.latency_tasks or (1000 if a.quick else LATENCY["tasks"])),
              "memory": dict(MEMORY, agents=a.memory_agents or (500 if a.quick else MEMORY["agents"]))}
    scenarios = a.scenarios.split(",")
    for sc in scenarios:
        if sc not in params:
            sys.exit(f"hub_bench: unknown scenario {sc!r}")
    out, notes = measure(impls, scenarios, a.runs, params, a.server_cpu, a.load_cpu, a.timeout,
                         shlex.split(a.socketio_options), a.transport)
    for e in out.values():
        print(json.dumps({"impl": e["impl"], "scenario": e["scenario"], "runs": len(e["runs"]), **e["median"]}), flush=True)
    res = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": f"{os.uname().nodename} {os.cpu_count()} cores",
           "transport": a.transport, "journal_dir": os.environ.get("ORC_HUB_BENCH_JOURNAL_DIR") or "(system temporary directory)",
           "notes": notes, "results": list(out.values())}
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / "hub.json").write_text(json.dumps(res, indent=1) + "\n")
    if a.entries_out:
        Path(a.entries_out).write_text(json.dumps({"notes": notes, "entries": entries(out)}, indent=2))


if __name__ == "__main__":
    main()
