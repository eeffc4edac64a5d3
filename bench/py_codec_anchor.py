"""The anchors for bench/codec_bench.c: orjson and msgpack (Python C extensions) on the same
envelopes (bench/data/envelope_small.json and envelope_large.json).

  codec.json.<size>.decode.baseline     orjson.loads(file bytes)
  codec.json.<size>.encode.baseline     orjson.dumps(the parsed dict)
  codec.msgpack.<size>.decode.baseline  msgpack.unpackb(msgpack.packb(the parsed dict))
  codec.msgpack.<size>.encode.baseline  msgpack.packb(the parsed dict)

Values are MB/s (10^6 bytes per second) of the same wire size codec_bench uses: the JSON
file's size for JSON, the MessagePack form's size for MessagePack. Before timing, every call
is checked to round-trip to the same dict, and (when the orchestra binding loads, as under
bench/run) our MessagePack form of the envelope is checked to be the same size and to
unpack to the same dict, so both sides measure the same data.

Prints one JSON object per line: {"name", "value", "unit", "bytes"}.
Usage: py_codec_anchor.py [--quick] [--data DIR]"""
import json
import statistics
import sys
import time
from pathlib import Path

import msgpack
import orjson

ROOT = Path(__file__).resolve().parents[1]


def emit(name, value, unit, nbytes):
    print(json.dumps({"name": name, "value": round(value, 3), "unit": unit, "bytes": nbytes}), flush=True)


def per_iter(seconds, fn, arg):
    """Seconds per call of fn(arg): calibrate, then the median of 3 timed batches (the same
    scheme as codec_bench.c)."""
    batch = seconds / 3
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn(arg)
        dt = time.perf_counter() - t0
        if dt > batch / 4:
            n = int(n * batch / dt) + 1
            break
        n *= 4
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(n):
            fn(arg)
        times.append((time.perf_counter() - t0) / n)
    return statistics.median(times)


def ours_msgpack(raw):
    """Our MessagePack form of the envelope through the binding, or None without it."""
    try:
        sys.path.insert(0, str(ROOT / "bindings" / "python"))
        import orchestra
    except Exception as e:  # no library here: the check is skipped, the anchor still runs
        print(f"py_codec_anchor: not comparing with our MessagePack form ({e})", file=sys.stderr)
        return None
    return orchestra.Message.decode(raw, format="json").encode(format="msgpack")


def bench_file(seconds, data_dir, size):
    raw = (Path(data_dir) / f"envelope_{size}.json").read_bytes().rstrip(b"\r\n ")
    obj = orjson.loads(raw)
    assert orjson.loads(orjson.dumps(obj)) == obj
    assert len(orjson.dumps(obj)) == len(raw), "orjson's form differs in size from the file"
    mp = msgpack.packb(obj)
    assert msgpack.unpackb(mp) == obj
    ours = ours_msgpack(raw)
    if ours is not None:
        assert msgpack.unpackb(ours) == obj, "our MessagePack form unpacks to a different dict"
        assert len(ours) == len(mp), f"our MessagePack form is {len(ours)} bytes, msgpack's {len(mp)}"

    for fmt, nbytes, dec, dec_arg, enc in (
        ("json", len(raw), orjson.loads, raw, orjson.dumps),
        ("msgpack", len(mp), msgpack.unpackb, mp, msgpack.packb),
    ):
        dt = per_iter(seconds, dec, dec_arg)
        emit(f"codec.{fmt}.{size}.decode.baseline", nbytes / dt / 1e6, "MB/s", nbytes)
        dt = per_iter(seconds, enc, obj)
        emit(f"codec.{fmt}.{size}.encode.baseline", nbytes / dt / 1e6, "MB/s", nbytes)


def main():
    seconds = 0.5 if "--quick" in sys.argv else 1.5
    data_dir = ROOT / "bench" / "data"
    if "--data" in sys.argv:
        data_dir = Path(sys.argv[sys.argv.index("--data") + 1])
    for size in ("small", "large"):
        bench_file(seconds, data_dir, size)


if __name__ == "__main__":
    main()
