import asyncio
import select
import threading

import pytest

import orchestra
from orchestra import Message, Policy, Priority, Queue


def msg(i: int, priority=None) -> Message:
    return Message("q.item", payload={"i": i}, priority=priority)


def test_push_pop_fifo_and_priority_lanes():
    q = Queue()
    for i in range(5):
        q.push(msg(i))
    q.push(msg(100, Priority.CRITICAL))
    q.push(msg(50, Priority.LOW))
    assert len(q) == 7
    order = [q.pop(timeout=0).payload["i"] for _ in range(7)]
    assert order == [100, 0, 1, 2, 3, 4, 50]
    with pytest.raises(orchestra.WouldBlock):
        q.pop(timeout=0)


def test_pop_timeout_and_blocking_pop_woken_by_another_thread():
    q = Queue()
    with pytest.raises(orchestra.Timeout):
        q.pop(timeout=0.05)
    got = []
    t = threading.Thread(target=lambda: got.append(q.pop(timeout=None).payload["i"]))
    t.start()
    q.push(msg(7))
    t.join(10)
    assert got == [7]


def test_close_drains_then_reports_closed_and_wakes_blocked_reader():
    q = Queue()
    q.push(msg(1))
    q.close()
    with pytest.raises(orchestra.Closed):
        q.push(msg(2))
    assert q.pop(timeout=0).payload["i"] == 1
    with pytest.raises(orchestra.Closed):
        q.pop(timeout=0)
    q2 = Queue()
    errors = []

    def reader():
        try:
            q2.pop(timeout=None)
        except orchestra.Closed as e:
            errors.append(e)
    t = threading.Thread(target=reader)
    t.start()
    q2.close()
    t.join(10)
    assert len(errors) == 1


def test_fail_carries_the_message():
    q = Queue()
    q.fail("upstream agent crashed")
    with pytest.raises(orchestra.Failed) as e:
        q.pop(timeout=0)
    assert "upstream agent crashed" in str(e.value)


def test_policies_and_drop_callback():
    dropped = []
    q = Queue(capacity=2, policy=Policy.DROP_OLDEST, on_drop=lambda m, r: dropped.append((m.payload["i"], r)))
    for i in range(4):
        q.push(msg(i))
    assert [m.payload["i"] for m in q.pop_batch(10, timeout=0)] == [2, 3]
    assert dropped == [(0, orchestra.DropReason.OVERFLOW), (1, orchestra.DropReason.OVERFLOW)]

    q = Queue(capacity=2, policy=Policy.DROP_NEWEST)
    for i in range(4):
        q.push(msg(i))
    assert [m.payload["i"] for m in q.pop_batch(10, timeout=0)] == [0, 1]

    q = Queue(capacity=1, policy=Policy.REJECT)
    q.push(msg(0))
    m = msg(1)
    with pytest.raises(orchestra.Full):
        q.push(m)
    assert m.payload["i"] == 1  # still ours after a rejected push

    q = Queue(capacity=1, policy=Policy.BLOCK, push_timeout_ms=30)
    q.push(msg(0))
    with pytest.raises(orchestra.Full):
        q.push(msg(1))
    s = q.stats()
    assert s["pushed"] == 1 and s["depth"] == 1


def test_ttl_expiry_is_counted_not_silent():
    dropped = []
    q = Queue(on_drop=lambda m, r: dropped.append(r))
    q.push(Message("x", ttl_ms=0))
    q.push(msg(1))
    assert q.pop(timeout=0).payload["i"] == 1
    assert dropped == [orchestra.DropReason.EXPIRED]
    assert q.stats()["expired"] == 1


def test_readiness_fd():
    q = Queue()
    fd = q.fileno()
    assert select.select([fd], [], [], 0)[0] == []
    q.push(msg(1))
    assert select.select([fd], [], [], 0)[0] == [fd]
    q.pop(timeout=0)
    assert select.select([fd], [], [], 0)[0] == []
    q.close()
    assert select.select([fd], [], [], 0)[0] == [fd]


def test_async_for_with_a_producer_thread_sees_every_message_in_order():
    q = Queue(capacity=1024)
    n = 20000

    def producer():
        for i in range(n):
            q.push(msg(i))
        q.close()

    async def consume():
        seen = []
        async for m in q:
            seen.append(m.payload["i"])
        return seen

    t = threading.Thread(target=producer)
    t.start()
    seen = asyncio.run(consume())
    t.join(10)
    assert seen == list(range(n))


def test_async_for_raises_when_failed():
    q = Queue()

    async def consume():
        async for _ in q:
            pass

    q.push(msg(1))
    q.fail("boom")
    with pytest.raises(orchestra.Failed):
        asyncio.run(consume())


def test_many_threads_lose_and_duplicate_nothing():
    q = Queue(capacity=256)
    producers, per = 4, 5000
    seen = []
    lock = threading.Lock()

    def produce(p):
        for i in range(per):
            q.push(Message("x", payload=p * per + i))

    def consume():
        local = []
        for m in q:
            local.append(m.payload)
        with lock:
            seen.extend(local)
    cs = [threading.Thread(target=consume) for _ in range(3)]
    ps = [threading.Thread(target=produce, args=(p,)) for p in range(producers)]
    for t in cs + ps:
        t.start()
    for t in ps:
        t.join(60)
    q.close()
    for t in cs:
        t.join(60)
    assert sorted(seen) == list(range(producers * per))


def test_spin_us_option_polling_and_sleeping_readers():
    with pytest.raises(orchestra.InvalidArgument, match="spin"):
        Queue(spin_us=-1)
    for spin in (0, 1_000_000):   # sleeps at once / polls up to a second
        q = Queue(spin_us=spin)
        got = []
        t = threading.Thread(target=lambda: got.append(q.pop()))
        t.start()
        m = Message("poll.test")
        q.push(m)
        t.join(5)
        assert not t.is_alive() and got[0].id == m.id
        with pytest.raises(orchestra.Timeout):
            q.pop(timeout=0.03)
