"""The command line and the result line of the one-connection round-trip clients of
bench/ws_bench.py's client scenario (anchors/websockets_client_rtt.py,
anchors/asyncio_floor_client_rtt.py, python_ws_client_rtt.py), so that they measure the same
loop and report alike."""
import argparse
import json
import os


def parse_args(add=None) -> argparse.Namespace:
    """--url (required), --size 64, --duration 3, --warmup 0.5, --count 0 (0: --duration
    decides); `add(parser)` adds a client's own options."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--warmup", type=float, default=0.5)
    ap.add_argument("--count", type=int, default=0)
    if add is not None:
        add(ap)
    return ap.parse_args()


def payloads(size):
    """Messages of `size` random bytes with a fresh counter in the first 8, so that a stale
    echo is caught."""
    base = bytearray(os.urandom(size))
    i = 0
    while True:
        i += 1
        b = bytes(base)
        if size >= 8:
            b = i.to_bytes(8, "little") + b[8:]
        yield b


def report(name: str, size: int, n: int, secs: float, **extra) -> None:
    """The one JSON line ws_bench.py reads."""
    print(json.dumps({"name": name, "api": "asyncio", **extra, "size": size, "round_trips": n,
                      "seconds": round(secs, 4), "rtt_per_s": round(n / secs, 1),
                      "mean_us": round(secs / n * 1e6, 2)}), flush=True)
