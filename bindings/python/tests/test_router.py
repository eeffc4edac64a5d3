import threading

import pytest

import orchestra
from orchestra import Action, Message, Router


def test_wildcards_and_unhandled():
    r = Router()
    got = []
    r.subscribe("task.*", lambda m: got.append(("star", m.type)))
    r.subscribe("task.>", lambda m: got.append(("gt", m.type)))
    dead = []
    r.on_unhandled(lambda m: dead.append(m.type))
    assert r.publish(Message("task.stream")).matched == 2
    assert r.publish(Message("task.stream.chunk")).matched == 1
    res = r.publish(Message("agent.register"))
    assert res.unhandled and res.matched == 0
    assert sorted(got) == [("gt", "task.stream"), ("gt", "task.stream.chunk"), ("star", "task.stream")]
    assert dead == ["agent.register"]


def test_bad_patterns_raise_clear_errors():
    r = Router()
    for bad in ["a..b", "", ".a", "a.", "a.>.b"]:
        with pytest.raises(orchestra.InvalidArgument) as e:
            r.subscribe(bad, lambda m: None)
        assert e.value.message
    assert orchestra.subject_matches("a.*", "a.b")
    assert not orchestra.subject_matches("a.*", "a")
    assert orchestra.subject_matches(">", "a.b.c")


def test_handler_failure_is_isolated_and_counted():
    r = Router()
    got = []

    def bad(m):
        raise RuntimeError("handler bug")
    r.subscribe("x", bad)
    r.subscribe("x", lambda m: got.append(1))
    res = r.publish(Message("x"))
    assert res.matched == 2 and res.failed == 1 and got == [1]
    assert r.stats()["handler_failures"] == 1


def test_middleware_stop_and_rewrite():
    r = Router()
    got = []
    r.subscribe("x", lambda m: got.append(m.header("seen")))

    def mw(m):
        if m.header("block") == "yes":
            return Action.STOP
        c = m.clone()
        c.set_header("seen", "mw")
        return c
    r.use(mw)
    assert r.publish(Message("x", headers={"block": "yes"})).stopped
    r.publish(Message("x"))
    assert got == ["mw"]


def test_unsubscribe_releases_the_callback():
    r = Router()
    sid = r.subscribe("x", lambda m: None)
    assert len(r._callbacks) == 1
    assert r.unsubscribe(sid)
    assert r._callbacks == {}
    assert not r.unsubscribe(sid)


def test_publish_from_many_threads():
    r = Router()
    count = [0]
    lock = threading.Lock()

    def h(m):
        with lock:
            count[0] += 1
    r.subscribe("a.>", h)

    def pub():
        for _ in range(500):
            r.publish(Message("a.b"))
    ts = [threading.Thread(target=pub) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    assert count[0] == 2000
