#!/usr/bin/env python3
"""python_ws_client_rtt.py: round trips per second of the Python binding's client
(orchestra.Client on asyncio) on one connection against an echo server at --url; the same
loop as anchors/websockets_client_rtt.py (the python `websockets` client), so bench/ws_bench.py
can compare the two against the same server in the same run.

    ORCHESTRA_LIBRARY=build/liborchestra.so PYTHONPATH=bindings/python \\
    python3 bench/python_ws_client_rtt.py --url ws://127.0.0.1:PORT/ [--size 64]
                                          [--duration 3] [--warmup 0.5] [--count K]

Sends a --size-byte binary message, awaits its echo, checks it, repeats: --warmup seconds
unmeasured, then --duration seconds (or --count round trips). No compression, no heartbeat
pings. Prints one JSON line: {"name", "api", "size", "round_trips", "seconds", "rtt_per_s",
"mean_us"}.
"""
import asyncio
import sys
import time
from pathlib import Path

from orchestra import Client, Runtime

sys.path.insert(0, str(Path(__file__).resolve().parent / "anchors"))
import rtt_cli  # noqa: E402  (bench/anchors/rtt_cli.py: the shared command line and result line)


async def run(a):
    gen = rtt_cli.payloads(a.size)
    runtime = {"default": lambda: None, "thread": Runtime.shared, "embedded": Runtime.for_loop}[a.runtime]()
    async with Client(a.url, ping_interval=None, runtime=runtime) as ws:
        async def loop(until, count):
            n = 0
            while (count and n < count) or (not count and time.perf_counter() < until):
                msg = next(gen)
                await ws.send(msg)
                if await ws.recv() != msg:
                    sys.exit("python_ws_client_rtt: wrong echo")
                n += 1
            return n
        await loop(time.perf_counter() + a.warmup, 0)
        t0 = time.perf_counter()
        n = await loop(t0 + a.duration, a.count)
        secs = time.perf_counter() - t0
    rtt_cli.report("orchestra.python.client.rtt", a.size, n, secs, runtime=a.runtime)


def main():
    def add(ap):
        ap.add_argument("--runtime", choices=["default", "thread", "embedded"], default="default",
                        help="the Client's runtime: what Client picks by itself (default), the shared "
                             "runtime with its I/O thread, or the asyncio loop's embedded runtime")
    asyncio.run(run(rtt_cli.parse_args(add)))


if __name__ == "__main__":
    main()
