#!/usr/bin/env python3
"""Reference echo server for the conformance suite: python `websockets` (PyPI).

Usage: websockets_echo_server.py --port N [--host H] [--deflate] [--max-size BYTES]
Echoes every message with its opcode (str as text, bytes as binary).
"""
import argparse
import asyncio
import os
import signal

# websockets fails a message of more than 4096 fragments with 1009 (a resource limit of its
# own); the suite's 9.3.x send 4 MiB in 64-byte fragments (65536 frames).
os.environ.setdefault("WEBSOCKETS_MAX_FRAGMENTS", str(1 << 20))

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory


async def echo(ws):
    try:
        async for message in ws:
            await ws.send(message)
    except ConnectionClosed:
        pass


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--deflate", action="store_true")
    parser.add_argument("--max-size", type=int, default=16 * 1024 * 1024)
    args = parser.parse_args()
    # Protocol defaults (15-bit windows, context takeover) rather than websockets' memory-saving
    # ones, so the suite's negotiation cases see what a client offers being answered.
    extensions = [ServerPerMessageDeflateFactory()] if args.deflate else None
    stop = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set_result, None)
    async with serve(echo, args.host, args.port, compression=None, extensions=extensions,
                     max_size=args.max_size, ping_interval=None):
        print(f"listening on {args.host}:{args.port}", flush=True)
        await stop


if __name__ == "__main__":
    asyncio.run(main())
