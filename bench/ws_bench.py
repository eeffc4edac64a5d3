#!/usr/bin/env python3
"""bench/ws_bench.py: the WebSocket scenarios of issue 3, every server measured in the same run
by the same load generator (build/ws_loadgen, bench/ws_loadgen.c).

Servers (each started fresh for each scenario, killed after it):
  ours           our echo server (examples/c/echo-server): --ours CMD, $ORC_WS_OURS, or the
                 build's echo-server binary when it exists; skipped with a note otherwise
  raw_echo       build/raw_echo: the cheapest possible echo, the load generator's ceiling
  lws            libwebsockets on its default poll() loop (build/lws_echo)
  lws_libuv      libwebsockets on its libuv backend (build/lws_echo --libuv)
  node_ws        node `ws` (bench/anchors/ws_echo.js, Debian node-ws)
  py_websockets  python `websockets` on asyncio (bench/anchors/websockets_echo.py)

Scenarios (server and load generator pinned with taskset, both under SCHED_FIFO 10 when
allowed; ORC_WS_SCHED=nice for nice -20, ORC_BENCH_RT=0 for default scheduling; see
priority_prefix, and why node runs with --single-threaded under FIFO):
  rtt100   server on CPU 1, load generator on CPU 0: 100 connections, 64-byte binary messages,
           one in flight each. Round trips/s, and the server's CPU time per round trip (user +
           system, and user alone) from /proc/PID/stat over the measured window.
  lat1     server and load generator both on CPU 0: one connection, 64-byte messages; p50/p99.
  tput     server on CPU 1, load generator on CPU 0: one connection, 1 MiB messages, MB/s
           (10^6 bytes of payload echoed per second).
  idle10k  server on CPU 1 (default scheduling): VmRSS after a short warm-up, then after
           10,000 connections are open and idle; (after - before) / 10,000 bytes.
  client   the Python binding's client (bench/python_ws_client_rtt.py, orchestra.Client on
           asyncio: as made inside a running loop, on the loop's embedded runtime; and on the
           shared runtime's I/O thread, "orchestra.thread") against python `websockets` clients
           (bench/anchors/websockets_client_rtt.py, asyncio and sync), one connection, 64-byte
           messages, round trips/s against the lws server; client on CPU 0 with the server on
           CPU 1 ("cross") and on CPU 0 ("same"). Two bounds in the same placements: the C load
           generator on one connection (ws_loadgen rtt --conns 1: what the server, the kernel
           and the VM allow any client) and the least an asyncio client can do
           (bench/anchors/asyncio_floor_client_rtt.py: one write, one read, one future).

Each scenario runs --runs times (5; 3 with --quick; idle10k 3 and 1), servers interleaved
within a run, and medians are reported. Results: a table on stdout, bench/results/ws.json
(every server's medians and runs), and with --entries-out FILE the entries bench/run merges
into bench/results/latest.json (name, value, unit, anchor, anchor_value, ratio, target, runs).
"""
import argparse
import json
import os
import platform
import resource
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = Path(os.environ.get("ORC_BUILD_DIR", ROOT / "build"))
ANCHORS = ROOT / "bench" / "anchors"

LABELS = {
    "ours": "orchestra echo-server",
    "raw_echo": "raw epoll echo (ceiling)",
    "lws": "libwebsockets (poll)",
    "lws_libuv": "libwebsockets (libuv)",
    "node_ws": "node ws",
    "py_websockets": "python websockets",
}

# metric key -> (unit, orientation, description)
METRICS = {
    "rtt100.rps": ("rt/s", "higher", "100 connections, 64 B, one in flight each: round trips/s"),
    "rtt100.cpu_us": ("us/rt", "lower", "server CPU (user+system) per round trip"),
    "rtt100.user_us": ("us/rt", "lower", "server user-space CPU per round trip"),
    "rtt100.server_busy": ("share", "none", "server CPU time / wall time (its core)"),
    "rtt100.loadgen_busy": ("share", "none", "load generator CPU time / wall time (its core)"),
    "lat1.p50": ("us", "lower", "one connection, same core: p50 round trip"),
    "lat1.p99": ("us", "lower", "one connection, same core: p99 round trip"),
    "tput.mbps": ("MB/s", "higher", "1 MiB messages echoed, one connection"),
    "tput.server_busy": ("share", "none", "server CPU time / wall time, 1 MiB scenario"),
    "tput.loadgen_busy": ("share", "none", "load generator CPU time / wall time, 1 MiB scenario"),
    "idle10k.rss_per_conn": ("bytes/conn", "lower", "VmRSS growth per idle connection at 10,000"),
}

# Our rows: (entry name, metric key, anchor, target). The anchor is a server of the same run,
# or ("limit", value) for an absolute bound. Ratios are oriented so that higher is better:
# ours/anchor for "higher" metrics, anchor/ours for "lower" ones (so "at most 1.2x the
# anchor's CPU" is a target of 1/1.2 = 0.83, and "at most 2 KiB per connection" is 2048/ours
# against 1.0). Targets are issue 3's acceptance list; None: shown without a verdict.
OURS = [
    ("ws.rtt.100conn.64B", "rtt100.rps", "node_ws", 1.3),
    ("ws.rtt.100conn.64B.vs_lws_libuv", "rtt100.rps", "lws_libuv", 1.3),
    ("ws.rtt.100conn.64B.vs_lws_poll", "rtt100.rps", "lws", None),
    ("ws.cpu_per_rt.100conn", "rtt100.cpu_us", "lws", round(1 / 1.2, 3)),
    ("ws.user_us_per_rt.100conn", "rtt100.user_us", "lws", None),
    ("ws.latency.1conn.p99", "lat1.p99", "node_ws", 1.0),
    ("ws.latency.1conn.p99.vs_python", "lat1.p99", "py_websockets", 1.0),
    ("ws.latency.1conn.p99.vs_lws", "lat1.p99", "lws", None),
    ("ws.latency.1conn.p50", "lat1.p50", "node_ws", None),
    ("ws.throughput.1MiB", "tput.mbps", "node_ws", 1.5),
    ("ws.throughput.1MiB.vs_lws", "tput.mbps", "lws", 1.0),
    ("ws.idle10k.rss_per_conn", "idle10k.rss_per_conn", ("limit", 2048), 1.0),
    ("ws.idle10k.rss_per_conn.vs_lws", "idle10k.rss_per_conn", "lws", None),
]

procs = []  # everything started, killed on the way out


def log(msg):
    print(f"ws_bench: {msg}", file=sys.stderr, flush=True)


def priority_prefix():
    """How servers and the load generator are scheduled: SCHED_FIFO 10 (chrt) by default, as
    bench/run runs its benchmarks, so that other work on this 2-core machine (other builds)
    does not delay their wake-ups; ORC_WS_SCHED=nice runs them at nice -20 instead, and
    ORC_BENCH_RT=0 (or ORC_WS_SCHED=default) with default scheduling.

    Under SCHED_FIFO on one core a thread of equal priority runs only when the running one
    blocks, and a FIFO process can use at most 95% of its core (RT throttling; the ceiling's
    "busy" shares show it). A multi-threaded server whose helper threads must run while its
    main thread is busy suffers: node's V8 compiles optimised code on background threads that
    never got the core, so node stayed in unoptimised code (40 us of CPU per round trip, 12 us
    otherwise); node therefore runs with --single-threaded under FIFO (V8 compiles and
    collects on the main thread). A server that spins waiting for another of its threads
    would suffer the same way: measure it with ORC_WS_SCHED=nice too."""
    mode = os.environ.get("ORC_WS_SCHED", "fifo")
    if os.environ.get("ORC_BENCH_RT", "1") == "0" or mode == "default":
        return [], "default"
    if mode == "nice":
        probe = subprocess.run(["nice", "-n", "-20", "sh", "-c", "nice"], capture_output=True, text=True)
        return (["nice", "-n", "-20"], "nice -20") if probe.stdout.strip() == "-20" else ([], "default")
    if shutil.which("chrt") and subprocess.run(["chrt", "-f", "10", "true"], capture_output=True).returncode == 0:
        return ["chrt", "-f", "10"], "SCHED_FIFO 10"
    return [], "default"


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_ours(arg):
    if arg:
        return shlex.split(arg), None
    env = os.environ.get("ORC_WS_OURS")
    if env:
        return shlex.split(env), None
    for cand in (BUILD / "echo-server", BUILD / "examples" / "c" / "echo-server", BUILD / "examples" / "echo-server"):
        if cand.is_file() and os.access(cand, os.X_OK):
            return [str(cand)], None
    return None, ("ours: examples/c/echo-server is not built yet (no echo-server in "
                  f"{BUILD}, no --ours/ORC_WS_OURS): our rows are skipped; the anchors and the "
                  "ceiling are reported as info rows")


def server_commands(ours):
    cmds = {}
    if ours:
        cmds["ours"] = ours
    cmds["raw_echo"] = [str(BUILD / "raw_echo")]
    if (BUILD / "lws_echo").exists():
        cmds["lws"] = [str(BUILD / "lws_echo")]
        cmds["lws_libuv"] = [str(BUILD / "lws_echo"), "--libuv"]
    if shutil.which("node") and Path("/usr/share/nodejs/ws").exists():
        cmds["node_ws"] = ["node", str(ANCHORS / "ws_echo.js")]
    cmds["py_websockets"] = [sys.executable, str(ANCHORS / "websockets_echo.py")]
    return cmds


class Server:
    def __init__(self, name, cmd, cpu, rt):
        self.name = name
        self.port = free_port()
        self.log = open(f"/tmp/ws_bench.{name}.log", "ab")
        full = list(rt) + ["taskset", "-c", str(cpu)] + cmd + ["--port", str(self.port)]
        # chrt/nice and taskset exec the server: the pid is the server's
        self.proc = subprocess.Popen(full, stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL,
                                     preexec_fn=raise_nofile)
        procs.append(self.proc)
        deadline = time.time() + 20
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {self.proc.returncode} (see /tmp/ws_bench.{name}.log)")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline:
                    raise RuntimeError(f"{name} does not listen on port {self.port}")
                time.sleep(0.05)

    @property
    def pid(self):
        return self.proc.pid

    def rss_kib(self):
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def loadgen(args, server, cpu, rt, timeout):
    cmd = list(rt) + ["taskset", "-c", str(cpu), str(BUILD / "ws_loadgen")] + args + [
        "--port", str(server.port), "--server-pid", str(server.pid)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, preexec_fn=raise_nofile)
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    if p.returncode != 0 or not lines:
        raise RuntimeError(f"ws_loadgen {' '.join(args)} against {server.name}: exit {p.returncode}: "
                           f"{p.stderr.strip()[-400:]} {lines[-1] if lines else ''}")
    return json.loads(lines[-1])


def scenario_pinned(name, cmd, rt, dur, warm, out):
    """rtt100 and tput (server on CPU 1, load generator on CPU 0), then lat1 (both on CPU 0)."""
    s = Server(name, cmd, 1, rt)
    try:
        r = loadgen(["rtt", "--conns", "100", "--size", "64", "--duration", str(dur), "--warmup", str(warm)],
                    s, 0, rt, dur * 4 + 60)
        out.setdefault("rtt100.rps", []).append(r["rtt_per_s"])
        out.setdefault("rtt100.cpu_us", []).append(r["server_cpu_us_per_rt"])
        out.setdefault("rtt100.user_us", []).append(r["server_user_us_per_rt"])
        out.setdefault("rtt100.server_busy", []).append(round((r["server_user_s"] + r["server_sys_s"]) / r["seconds"], 3))
        out.setdefault("rtt100.loadgen_busy", []).append(round((r["loadgen_user_s"] + r["loadgen_sys_s"]) / r["seconds"], 3))
        r = loadgen(["throughput", "--duration", str(dur), "--warmup", str(warm)], s, 0, rt, dur * 4 + 60)
        out.setdefault("tput.mbps", []).append(r["mb_per_s"])
        out.setdefault("tput.server_busy", []).append(round((r["server_user_s"] + r["server_sys_s"]) / r["seconds"], 3))
        out.setdefault("tput.loadgen_busy", []).append(round((r["loadgen_user_s"] + r["loadgen_sys_s"]) / r["seconds"], 3))
    finally:
        s.stop()
    s = Server(name, cmd, 0, rt)
    try:
        r = loadgen(["rtt", "--conns", "1", "--size", "64", "--duration", str(dur), "--warmup", str(warm)],
                    s, 0, rt, dur * 4 + 60)
        out.setdefault("lat1.p50", []).append(r["p50_us"])
        out.setdefault("lat1.p99", []).append(r["p99_us"])
    finally:
        s.stop()


def scenario_idle(name, cmd, conns, out):
    s = Server(name, cmd, 1, [])
    lg = None
    try:
        loadgen(["rtt", "--conns", "10", "--count", "2000", "--duration", "10", "--warmup", "0"], s, 0, [], 60)
        time.sleep(0.5)
        before = s.rss_kib()
        lg = subprocess.Popen(["taskset", "-c", "0", str(BUILD / "ws_loadgen"), "idle", "--conns", str(conns),
                               "--port", str(s.port)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, preexec_fn=raise_nofile)
        procs.append(lg)
        ready = json.loads(lg.stdout.readline() or "{}")
        if ready.get("ready") != conns:
            lg.kill()
            raise RuntimeError(f"idle: {name}: not ready: {ready} {lg.stderr.read()[-400:]}")
        time.sleep(1.0)
        after = s.rss_kib()
        fds = len(os.listdir(f"/proc/{s.pid}/fd"))
        lg.stdin.close()
        res = json.loads([l for l in lg.stdout.read().splitlines() if l.startswith("{")][-1])
        lg.wait(timeout=60)
        if res.get("errors") or res.get("open_at_end") != conns:
            raise RuntimeError(f"idle: {name}: connections dropped: {res}")
        if fds < conns:
            raise RuntimeError(f"idle: {name}: the server holds {fds} descriptors for {conns} connections")
        out.setdefault("idle10k.rss_per_conn", []).append(round((after - before) * 1024 / conns, 1))
        out.setdefault("idle10k.connect_s", []).append(ready["connect_s"])
    finally:
        if lg and lg.poll() is None:
            lg.kill()
            lg.wait()
        s.stop()


# Clients of the client scenario: (key, command after python3, environment).
def client_commands():
    cmds = {"websockets.asyncio": [str(ANCHORS / "websockets_client_rtt.py"), "--api", "asyncio"],
            "websockets.sync": [str(ANCHORS / "websockets_client_rtt.py"), "--api", "sync"],
            "asyncio.floor": [str(ANCHORS / "asyncio_floor_client_rtt.py")]}
    lib = BUILD / "liborchestra.so"
    if lib.exists():
        cmds["orchestra"] = [str(ROOT / "bench" / "python_ws_client_rtt.py")]
        cmds["orchestra.thread"] = [str(ROOT / "bench" / "python_ws_client_rtt.py"), "--runtime", "thread"]
    return cmds, {"ORCHESTRA_LIBRARY": str(lib), "PYTHONPATH": str(ROOT / "bindings" / "python")}


def scenario_client(rt, dur, warm, out):
    """Python clients, one connection, 64 B, against the lws server: python websockets
    (asyncio and sync), the asyncio floor and the Python binding's orchestra.Client (default
    and I/O thread), then the C load generator on one connection, in two placements: client on
    CPU 0 and server on CPU 1 ("cross"), and both on CPU 0 ("same", where the VM's cross-core
    wake-up latency does not set the pace)."""
    if not (BUILD / "lws_echo").exists():
        return
    cmds, extra_env = client_commands()
    env = dict(os.environ, **extra_env)
    for placement, server_cpu in (("cross", 1), ("same", 0)):
        s = Server("lws", [str(BUILD / "lws_echo")], server_cpu, rt)
        try:
            for key, cmd in cmds.items():
                p = subprocess.run(list(rt) + ["taskset", "-c", "0", sys.executable] + cmd +
                                   ["--url", f"ws://127.0.0.1:{s.port}/", "--duration", str(dur), "--warmup", str(warm)],
                                   capture_output=True, text=True, timeout=dur * 4 + 60, env=env)
                if p.returncode != 0:
                    raise RuntimeError(f"{key} client: {p.stderr[-400:]}")
                r = json.loads([l for l in p.stdout.splitlines() if l.startswith("{")][-1])
                out.setdefault(f"client.{placement}.{key}.rps", []).append(r["rtt_per_s"])
            r = loadgen(["rtt", "--conns", "1", "--size", "64", "--duration", str(dur), "--warmup", str(warm)],
                        s, 0, rt, dur * 4 + 60)
            out.setdefault(f"client.{placement}.c_loadgen.rps", []).append(r["rtt_per_s"])
        finally:
            s.stop()


def smoke(cmds):
    """A functional check of the measuring equipment for ctest (bench.ws_tools), no timing:
    every server echoes what ws_loadgen sends (small binary, 70 kB text, 1 MiB, zero-length),
    holds 300 idle connections, and ws_loadgen notices an echo that raw_echo corrupts."""
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

    def echo_checks(name, cmd):
        s = Server(name, cmd, 1, [])
        try:
            for args in (["rtt", "--conns", "20", "--count", "2000"],
                         ["rtt", "--conns", "3", "--size", "70000", "--text", "--count", "60"],
                         ["rtt", "--conns", "2", "--size", "0", "--count", "100"],
                         ["throughput", "--count", "5"]):
                r = loadgen(args + ["--duration", "30", "--warmup", "0"], s, 0, [], 120)
                want = int(args[args.index("--count") + 1])
                if r["round_trips"] < want or r["errors"]:
                    raise RuntimeError(f"{' '.join(args)}: {r}")
        finally:
            s.stop()

    for name, cmd in cmds.items():
        check(f"{name}: echoes", lambda: echo_checks(name, cmd))
        check(f"{name}: 300 idle connections", lambda: scenario_idle(name, cmd, 300, {}))

    def corrupt():
        s = Server("raw_echo_corrupt", [str(BUILD / "raw_echo"), "--corrupt-every", "50"], 1, [])
        try:
            loadgen(["rtt", "--conns", "5", "--count", "1000", "--duration", "30", "--warmup", "0"], s, 0, [], 120)
        except RuntimeError as e:
            if "corrupted echo" in str(e):
                return
            raise
        finally:
            s.stop()
        raise RuntimeError("ws_loadgen accepted corrupted echoes")
    check("ws_loadgen rejects a corrupted echo", corrupt)
    print(f"{passed} passed, {failed} failed")
    return failed == 0


def median(v):
    return statistics.median(v) if v else None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="3 runs of 1 s (idle10k once)")
    ap.add_argument("--runs", type=int)
    ap.add_argument("--duration", type=float, help="measured seconds per scenario (3; 1 with --quick)")
    ap.add_argument("--ours", help="command of our echo server (it gets --port N appended)")
    ap.add_argument("--servers", help="comma-separated subset of " + ",".join(LABELS))
    ap.add_argument("--scenarios", default="pinned,idle,client", help="subset of pinned,idle,client")
    ap.add_argument("--idle-conns", type=int, default=10000)
    ap.add_argument("--entries-out", help="write bench/run entries (JSON list) here")
    ap.add_argument("--smoke", action="store_true", help="functional check of the tools and servers (ctest)")
    a = ap.parse_args()
    runs = a.runs or (3 if a.quick else 5)
    idle_runs = 1 if a.quick else 3
    dur = a.duration or (1.0 if a.quick else 3.0)
    warm = 0.3 if a.quick else 0.5
    scen = set(a.scenarios.split(","))

    for exe in ("ws_loadgen", "raw_echo"):
        if not (BUILD / exe).exists():
            sys.exit(f"ws_bench: {BUILD / exe} is missing: build first (scripts/build)")
    ours, note = find_ours(a.ours)
    notes = [note] if note else []
    cmds = server_commands(ours)
    if "lws" not in cmds:
        notes.append("lws: build/lws_echo is missing (libwebsockets-dev not installed?): no libwebsockets anchor")
    if "node_ws" not in cmds:
        notes.append("node_ws: node or /usr/share/nodejs/ws is missing: no node ws anchor")
    if a.servers:
        keep = set(a.servers.split(","))
        cmds = {k: v for k, v in cmds.items() if k in keep}
    for n in notes:
        log(n)
    if a.smoke:
        sys.exit(0 if smoke(cmds) else 1)
    rt, sched = priority_prefix()
    if sched == "SCHED_FIFO 10" and "node_ws" in cmds:
        cmds["node_ws"] = ["node", "--single-threaded"] + cmds["node_ws"][1:]
    log(f"scheduling: {sched}; servers: {', '.join(cmds)}; "
        f"{runs} runs of {dur} s")

    samples = {name: {} for name in cmds}
    client = {}
    load_start = os.getloadavg()
    try:
        if "pinned" in scen:
            for i in range(runs):
                for name, cmd in cmds.items():
                    t0 = time.time()
                    scenario_pinned(name, cmd, rt, dur, warm, samples[name])
                    log(f"run {i + 1}/{runs}: {name}: {samples[name]['rtt100.rps'][-1]:,.0f} rt/s, "
                        f"{samples[name]['rtt100.cpu_us'][-1]:.2f} us CPU/rt, p99 {samples[name]['lat1.p99'][-1]:.1f} us, "
                        f"{samples[name]['tput.mbps'][-1]:,.0f} MB/s ({time.time() - t0:.1f} s)")
        if "idle" in scen:
            for i in range(idle_runs):
                for name, cmd in cmds.items():
                    scenario_idle(name, cmd, a.idle_conns, samples[name])
                    log(f"idle {i + 1}/{idle_runs}: {name}: {samples[name]['idle10k.rss_per_conn'][-1]:,.0f} bytes/conn, "
                        f"connected in {samples[name]['idle10k.connect_s'][-1]:.1f} s")
        if "client" in scen:
            for i in range(runs):
                scenario_client(rt, dur, warm, client)
                log(f"client {i + 1}/{runs}: " + ", ".join(f"{k[len('client.'):-len('.rps')]} {v[-1]:,.0f} rt/s"
                                                          for k, v in client.items()))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()

    med = {name: {k: median(v) for k, v in m.items()} for name, m in samples.items()}
    # table: servers x metrics
    keys = [k for k in METRICS if any(k in med[n] for n in med)]
    print(f"{'server':26}" + "".join(f"{k:>22}" for k in keys))
    for name in med:
        row = "".join(f"{med[name][k]:>22,.2f}" if med[name].get(k) is not None else f"{'-':>22}" for k in keys)
        print(f"{LABELS[name]:26}{row}")
    for k, v in client.items():
        print(f"python client, one connection ({k}): {median(v):,.1f} rt/s")

    out = {"date": time.strftime("%Y-%m-%d %H:%M:%S"),
           "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cores",
           "scheduling": sched, "runs": runs, "idle_runs": idle_runs,
           "duration_s": dur, "loadavg_start": load_start, "loadavg_end": os.getloadavg(), "notes": notes, "metrics": {k: {"unit": u, "description": d} for k, (u, _, d) in METRICS.items()},
           "servers": {n: {"label": LABELS[n], "median": med[n], "runs": samples[n]} for n in samples},
           "client": {k: {"median": median(v), "runs": v} for k, v in client.items()}}
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / "ws.json").write_text(json.dumps(out, indent=2) + "\n")

    if a.entries_out:
        Path(a.entries_out).write_text(json.dumps({"notes": notes, "entries": entries(med, samples, client)}, indent=2))


def entries(med, samples, client):
    """Our rows against their anchors, then every anchor and the ceiling as info rows."""
    rows = []
    if "ours" in med:
        for name, key, anchor, target in OURS:
            if key not in med["ours"]:
                continue
            unit, orient, _ = METRICS[key]
            v = med["ours"][key]
            if isinstance(anchor, tuple):   # an absolute limit
                label, av, aruns = f"limit {anchor[1]:,} {unit}", anchor[1], None
            else:
                if anchor not in med or key not in med[anchor]:
                    continue
                label, av, aruns = LABELS[anchor], med[anchor][key], samples[anchor][key]
            ratio = v / av if orient == "higher" else av / v
            rows.append({"name": name, "value": v, "unit": unit, "anchor": label, "anchor_value": av,
                         "ratio": round(ratio, 3), "target": target, "runs": samples["ours"][key],
                         "anchor_runs": aruns})
    for placement, where in (("cross", "client CPU 0, server CPU 1"), ("same", "client and server on CPU 0")):
        ours = client.get(f"client.{placement}.orchestra.rps")
        # (entry suffix, anchor key, anchor label, target)
        for suffix, akey, alabel, target in (
                ("", "websockets.asyncio", "python websockets client (asyncio)", 2.0),
                (".vs_thread", "orchestra.thread", "orchestra.Client on the I/O thread runtime", None),
                (".vs_asyncio_floor", "asyncio.floor", "the least an asyncio client does (asyncio_floor_client_rtt.py)", None),
                (".vs_c_ceiling", "c_loadgen", "the C load generator, one connection (ceiling)", None)):
            anchor = client.get(f"client.{placement}.{akey}.rps")
            if ours and anchor:
                rows.append({"name": f"ws.python_client.1conn.rps.{placement}{suffix}", "value": median(ours),
                             "unit": "rt/s", "anchor": f"{alabel}, {where}", "anchor_value": median(anchor),
                             "ratio": round(median(ours) / median(anchor), 3), "target": target, "runs": ours,
                             "anchor_runs": anchor})
    for server in med:
        if server == "ours":
            continue
        for key, v in med[server].items():
            if key not in METRICS or METRICS[key][1] == "none":  # busy shares: ws.json only
                continue
            rows.append({"name": f"ws.{server}.{key}", "value": v, "unit": METRICS[key][0], "anchor": None,
                         "anchor_value": None, "ratio": None, "target": None, "runs": samples[server][key],
                         "info": METRICS[key][2]})
    for key, v in client.items():
        if ".websockets." in key:
            rows.append({"name": f"ws.py_{key[len('client.'):]}", "value": median(v), "unit": "rt/s",
                         "anchor": None, "anchor_value": None, "ratio": None, "target": None, "runs": v,
                         "info": "python websockets client, one connection, 64 B, against libwebsockets (poll)"})
    return rows


if __name__ == "__main__":
    main()
