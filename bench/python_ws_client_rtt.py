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
import argparse
import asyncio
import json
import os
import sys
import time

from orchestra import Client


def payloads(size):
    base = bytearray(os.urandom(size))
    i = 0
    while True:  # a fresh counter in the first bytes, so a stale echo is caught
        i += 1
        b = bytes(base)
        if size >= 8:
            b = i.to_bytes(8, "little") + b[8:]
        yield b


async def run(a):
    gen = payloads(a.size)
    async with Client(a.url, ping_interval=None) as ws:
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
    print(json.dumps({"name": "orchestra.python.client.rtt", "api": "asyncio", "size": a.size, "round_trips": n,
                      "seconds": round(secs, 4), "rtt_per_s": round(n / secs, 1),
                      "mean_us": round(secs / n * 1e6, 2)}), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--warmup", type=float, default=0.5)
    ap.add_argument("--count", type=int, default=0)
    asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    main()
