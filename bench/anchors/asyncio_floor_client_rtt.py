#!/usr/bin/env python3
"""asyncio_floor_client_rtt.py: the least an asyncio WebSocket client can do per round trip,
as a bound for the client scenario of bench/ws_bench.py: an asyncio.Protocol that writes one
prebuilt masked frame with transport.write, and data_received completes one future when the
whole echo is in. No parsing beyond the frame's length, no masking work (zero mask key), no
extension, no library: one write, one read and two turns of the asyncio loop per round trip,
which every asyncio client needs. Not a usable client: it measures what asyncio itself costs.

    python3 asyncio_floor_client_rtt.py --url ws://127.0.0.1:PORT/ [--size 64]
                                        [--duration 3] [--warmup 0.5] [--count K]

Same loop and output as websockets_client_rtt.py: a --size-byte binary message (a fresh
counter in its first 8 bytes, checked in the echo), --warmup seconds unmeasured, then
--duration seconds (or --count round trips). Prints one JSON line: {"name", "api", "size",
"round_trips", "seconds", "rtt_per_s", "mean_us"}.
"""
import asyncio
import base64
import os
import sys
import time
from urllib.parse import urlsplit

import rtt_cli   # beside this file: the clients' shared command line and result line


class _Echo(asyncio.Protocol):
    def __init__(self):
        self.buf = bytearray()
        self.need = 0          # bytes that complete the awaited echo (0: the handshake's end)
        self.waiter = None

    def data_received(self, data):
        self.buf += data
        w = self.waiter
        if w is None:
            return
        done = (b"\r\n\r\n" in self.buf) if self.need == 0 else len(self.buf) >= self.need
        if done:
            self.waiter = None
            w.set_result(None)

    def connection_lost(self, exc):
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection lost"))


async def run(a):
    loop = asyncio.get_running_loop()
    u = urlsplit(a.url)
    tr, pr = await loop.create_connection(_Echo, u.hostname, u.port or 80)
    key = base64.b64encode(os.urandom(16)).decode()
    pr.waiter = loop.create_future()
    tr.write((f"GET {u.path or '/'} HTTP/1.1\r\nHost: {u.netloc}\r\nUpgrade: websocket\r\n"
              f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    await pr.waiter
    head, _, rest = bytes(pr.buf).partition(b"\r\n\r\n")
    if b" 101 " not in head.split(b"\r\n")[0]:
        sys.exit(f"asyncio_floor_client_rtt: handshake refused: {head[:80]!r}")
    pr.buf = bytearray(rest)
    if a.size < 8 or a.size > 125:
        sys.exit("asyncio_floor_client_rtt: --size must be 8..125 (one short frame)")
    base = bytearray(os.urandom(a.size))
    # A masked binary frame with a zero mask key: the payload goes on the wire as it is.
    frame = bytearray(bytes([0x82, 0x80 | a.size]) + bytes(4)) + base
    reply_len = 2 + a.size
    pr.need = reply_len
    counter = 0

    async def loop_rt(until, count):
        nonlocal counter
        n = 0
        while (count and n < count) or (not count and time.perf_counter() < until):
            counter += 1
            frame[6:14] = counter.to_bytes(8, "little")
            pr.waiter = loop.create_future()
            tr.write(bytes(frame))
            await pr.waiter
            if pr.buf[0] != 0x82 or pr.buf[2:reply_len] != frame[6:]:
                sys.exit("asyncio_floor_client_rtt: wrong echo")
            del pr.buf[:reply_len]
            n += 1
        return n

    await loop_rt(time.perf_counter() + a.warmup, 0)
    t0 = time.perf_counter()
    n = await loop_rt(t0 + a.duration, a.count)
    secs = time.perf_counter() - t0
    tr.close()
    rtt_cli.report("asyncio.floor.client.rtt", a.size, n, secs)


def main():
    asyncio.run(run(rtt_cli.parse_args()))


if __name__ == "__main__":
    main()
