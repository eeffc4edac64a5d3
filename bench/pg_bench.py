#!/usr/bin/env python3
"""bench/pg_bench.py: round trips per second through the hub's PostgreSQL client (build/pg_bench,
Swift, on a Runtime's I/O thread) beside psycopg 3 (bench/pg_anchor.py) on the same server in
the same run, alternating ours and the anchor, medians of the runs (5; 3 with --quick), as a
ratio (ours / anchor, higher is better). Beside statements per second (which on this shared
2-core machine move with whatever else runs), each side's own CPU time per statement over the
timed part (every thread of the process; the server's is not counted), ratio anchor / ours.
Writes bench/results/pg.json.

    bench/pg_bench.py [--quick] [--url URL]

The server: --url, else ORC_TEST_PG_URL, else a throw-away one from scripts/pg (started and
stopped here). Scenarios, all `SELECT $1::int8` prepared, results checked:
  pg.single            one statement at a time (a round trip each)
  pg.pipelined100      100 statements in flight, each its own transaction (one sync each);
                       psycopg: 100 executes in one conn.pipeline() block
  pg.transaction100    transactions of 100 statements (one sync each); same psycopg anchor
"""
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUILD = Path(os.environ.get("ORC_BUILD_DIR", ROOT / "build"))
QUICK = "--quick" in sys.argv
RUNS = 3 if QUICK else 5

# name -> (our mode, count, batch, anchor mode)
SCENARIOS = {
    "pg.single": ("single", 10_000, 1, "single"),
    "pg.pipelined100": ("pipelined", 50_000, 100, "pipelined"),
    "pg.transaction100": ("transaction", 50_000, 100, "pipelined"),
}


def run(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    return r["per_second"], r["cpu_us_per_statement"]


def main():
    url = None
    if "--url" in sys.argv:
        url = sys.argv[sys.argv.index("--url") + 1]
    url = url or os.environ.get("ORC_TEST_PG_URL")
    started = False
    if not url:
        url = subprocess.run([str(ROOT / "scripts" / "pg"), "start"], check=True, capture_output=True,
                             text=True).stdout.strip()
        started = True
    try:
        subprocess.run(["cmake", "--build", str(BUILD), "--target", "pg_bench"], check=True,
                       stdout=subprocess.DEVNULL)
        results = []
        for name, (mode, count, batch, anchor_mode) in SCENARIOS.items():
            if QUICK:
                count //= 4
            ours, anchor, ours_cpu, anchor_cpu = [], [], [], []
            for _ in range(RUNS):
                rate, cpu = run([str(BUILD / "pg_bench"), url, mode, str(count), str(batch)])
                ours.append(rate)
                ours_cpu.append(cpu)
                rate, cpu = run([sys.executable, str(ROOT / "bench" / "pg_anchor.py"), url, anchor_mode,
                                 str(count), str(batch)])
                anchor.append(rate)
                anchor_cpu.append(cpu)
            m, a = statistics.median(ours), statistics.median(anchor)
            mc, ac = statistics.median(ours_cpu), statistics.median(anchor_cpu)
            label = f"psycopg {anchor_mode}" + (f" {batch}" if batch > 1 else "")
            results.append({"name": name, "value": m, "unit": "statements/s", "anchor": label,
                            "anchor_value": a, "ratio": m / a, "target": None, "runs": ours, "anchor_runs": anchor})
            results.append({"name": name + ".cpu", "value": mc, "unit": "client CPU us/statement", "anchor": label,
                            "anchor_value": ac, "ratio": ac / mc, "target": None, "runs": ours_cpu,
                            "anchor_runs": anchor_cpu})
            print(f"{name:18s} ours {m:9,.0f}/s {mc:6.2f} us CPU   psycopg {a:9,.0f}/s {ac:6.2f} us CPU   "
                  f"ratio {m / a:5.2f}x rate, {ac / mc:5.2f}x CPU", flush=True)
        out = ROOT / "bench" / "results" / "pg.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M:%S"), "runs": RUNS,
                                   "results": results}, indent=1) + "\n")
    finally:
        if started:
            subprocess.run([str(ROOT / "scripts" / "pg"), "stop"], check=False)


if __name__ == "__main__":
    main()
