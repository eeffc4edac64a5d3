#!/usr/bin/env python3
"""websockets_client_rtt.py: round trips per second of a python `websockets` client on one
connection against an echo server at --url: the anchor for "the Python binding's client, one
connection, round trips per second: at least 2x a python websockets client against the same
server".

    python3 websockets_client_rtt.py --url ws://127.0.0.1:PORT/ [--api asyncio|sync]
                                     [--size 64] [--duration 3] [--warmup 0.5] [--count K]

Sends a --size-byte binary message, waits for its echo, checks it, and repeats: --warmup
seconds unmeasured, then --duration seconds (or --count round trips). --api asyncio uses the
asyncio client (websockets >= 13: websockets.asyncio.client; older: websockets.connect), sync
the threading client (websockets.sync.client). No compression, no keepalive pings. Prints one
JSON line: {"name", "api", "size", "round_trips", "seconds", "rtt_per_s", "mean_us"}.
"""
import asyncio
import sys
import time

import rtt_cli   # beside this file: the clients' shared command line and result line
import websockets


def report(api, size, n, secs):
    rtt_cli.report("python.websockets.client.rtt", size, n, secs, api=api, websockets=websockets.__version__)


async def run_asyncio(a):
    try:
        from websockets.asyncio.client import connect
    except ImportError:  # websockets < 13
        from websockets import connect
    gen = rtt_cli.payloads(a.size)
    async with connect(a.url, compression=None, ping_interval=None, max_size=None) as ws:
        async def loop(until, count):
            n = 0
            while (count and n < count) or (not count and time.perf_counter() < until):
                msg = next(gen)
                await ws.send(msg)
                if await ws.recv() != msg:
                    sys.exit("websockets_client_rtt: wrong echo")
                n += 1
            return n
        await loop(time.perf_counter() + a.warmup, 0)
        t0 = time.perf_counter()
        n = await loop(t0 + a.duration, a.count)
        report("asyncio", a.size, n, time.perf_counter() - t0)


def run_sync(a):
    import inspect
    from websockets.sync.client import connect
    gen = rtt_cli.payloads(a.size)
    extra = {"ping_interval": None} if "ping_interval" in inspect.signature(connect).parameters else {}
    with connect(a.url, compression=None, max_size=None, **extra) as ws:
        def loop(until, count):
            n = 0
            while (count and n < count) or (not count and time.perf_counter() < until):
                msg = next(gen)
                ws.send(msg)
                if ws.recv() != msg:
                    sys.exit("websockets_client_rtt: wrong echo")
                n += 1
            return n
        loop(time.perf_counter() + a.warmup, 0)
        t0 = time.perf_counter()
        n = loop(t0 + a.duration, a.count)
        report("sync", a.size, n, time.perf_counter() - t0)


def main():
    a = rtt_cli.parse_args(lambda ap: ap.add_argument("--api", choices=["asyncio", "sync"], default="asyncio"))
    if a.api == "asyncio":
        asyncio.run(run_asyncio(a))
    else:
        run_sync(a)


if __name__ == "__main__":
    main()
