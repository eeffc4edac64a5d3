#!/usr/bin/env python3
"""Reference echo client for the conformance suite: python `websockets` (PyPI).

Usage: websockets_echo_client.py URL
Connects (offering permessage-deflate, websockets' default), echoes every message with its
opcode, exits 0 after a close handshake and 1 when the connection failed.
"""
import asyncio
import os
import sys

# websockets fails a message of more than 4096 fragments with 1009 (a resource limit of its
# own); the suite's 9.3.x send 4 MiB in 64-byte fragments (65536 frames).
os.environ.setdefault("WEBSOCKETS_MAX_FRAGMENTS", str(1 << 20))

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedOK, ConnectionClosed


async def main(url):
    try:
        async with connect(url, max_size=64 * 1024 * 1024, ping_interval=None,
                           open_timeout=5, close_timeout=5) as ws:
            async for message in ws:
                await ws.send(message)
    except ConnectionClosedOK:
        return 0
    except (ConnectionClosed, OSError, Exception) as exc:  # handshake failures included
        print(f"error: {exc!r}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: websockets_echo_client.py URL", file=sys.stderr)
        sys.exit(2)
    sys.exit(asyncio.run(main(sys.argv[1])))
