"""Python: `async for` over orchestra.Queue (batch pop through the readiness fd) against
asyncio.Queue, with the same producer: a thread that hands over pre-built messages (for
asyncio.Queue through loop.call_soon_threadsafe, the documented way to feed it from another
thread). A second pair uses a producer coroutine on the loop itself.

Prints one JSON object per line: {"name", "value", "unit"}."""
import asyncio
import json
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bindings" / "python"))
import orchestra  # noqa: E402


def emit(name, value, unit):
    print(json.dumps({"name": name, "value": round(value, 3), "unit": unit}), flush=True)


def make_msgs(n):
    tmpl = orchestra.Message("bench.item", payload=b"\x01" * 8)
    return [tmpl.clone() for _ in range(n)]


async def orc_thread_producer(msgs):
    q = orchestra.Queue(capacity=4096)

    def produce():
        for m in msgs:
            q.push(m)
        q.close()
    t = threading.Thread(target=produce)
    t0 = time.perf_counter()
    t.start()
    count = 0
    async for _ in q:
        count += 1
    dt = time.perf_counter() - t0
    t.join()
    assert count == len(msgs)
    return count / dt


async def asyncio_thread_producer(msgs):
    loop = asyncio.get_running_loop()
    q = asyncio.Queue(maxsize=4096)
    done = object()

    def produce():
        for m in msgs:
            loop.call_soon_threadsafe(q.put_nowait, m)
        loop.call_soon_threadsafe(q.put_nowait, done)
    t = threading.Thread(target=produce)
    t0 = time.perf_counter()
    t.start()
    count = 0
    while True:
        m = await q.get()
        if m is done:
            break
        count += 1
    dt = time.perf_counter() - t0
    t.join()
    assert count == len(msgs)
    return count / dt


async def orc_coroutine_producer(msgs):
    q = orchestra.Queue(capacity=4096)

    async def produce():
        for i, m in enumerate(msgs):
            q.push(m)
            if i % 256 == 255:
                await asyncio.sleep(0)
        q.close()
    t0 = time.perf_counter()
    task = asyncio.create_task(produce())
    count = 0
    async for _ in q:
        count += 1
    await task
    return count / (time.perf_counter() - t0)


async def asyncio_coroutine_producer(msgs):
    q = asyncio.Queue(maxsize=4096)
    done = object()

    async def produce():
        for m in msgs:
            await q.put(m)
        await q.put(done)
    t0 = time.perf_counter()
    task = asyncio.create_task(produce())
    count = 0
    while (await q.get()) is not done:
        count += 1
    await task
    return count / (time.perf_counter() - t0)


def main():
    quick = "--quick" in sys.argv
    n = 50_000 if quick else 200_000
    msgs = make_msgs(n)
    emit("python.async_for.thread_producer.baseline", asyncio.run(asyncio_thread_producer(msgs)), "msg/s")
    emit("python.async_for.thread_producer", asyncio.run(orc_thread_producer(msgs)), "msg/s")
    emit("python.async_for.coroutine_producer.baseline", asyncio.run(asyncio_coroutine_producer(msgs)), "msg/s")
    emit("python.async_for.coroutine_producer", asyncio.run(orc_coroutine_producer(msgs)), "msg/s")


if __name__ == "__main__":
    main()
