#!/usr/bin/env python3
"""websockets_echo.py: a WebSocket echo server on python `websockets` (PyPI, plain asyncio
event loop), an anchor for bench/ws_bench.py.

    python3 websockets_echo.py --port N [--host 127.0.0.1]

Every message is sent back with its type (str or bytes). websockets' defaults otherwise, except:
no permessage-deflate (the load generator does not offer it), no keepalive pings, max_size
64 MiB (the default is 1 MiB; the benchmarks send 1 MiB messages), a listen backlog of 4096.
Uses the asyncio implementation (websockets >= 13), or the legacy one on older versions.
"""
import argparse
import asyncio
import signal
import sys

import websockets

try:
    from websockets.asyncio.server import serve
except ImportError:  # websockets < 13
    from websockets import serve

OPTIONS = dict(compression=None, ping_interval=None, max_size=64 * 1024 * 1024, backlog=4096)


async def echo(ws, path=None):
    try:
        async for message in ws:
            await ws.send(message)
    except websockets.ConnectionClosed:
        pass


async def main(host, port):
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with serve(echo, host, port, **OPTIONS):
        print(f"websockets_echo.py: python {sys.version.split()[0]}, websockets {websockets.__version__}, "
              f"port {port}", file=sys.stderr, flush=True)
        await stop


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    a = ap.parse_args()
    asyncio.run(main(a.host, a.port))
