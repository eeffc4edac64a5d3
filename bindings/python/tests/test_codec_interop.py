"""The envelope codecs against Python's own json and msgpack, on 1,200 generated envelopes
each way: Python decodes our output to the expected dict, and our decoder accepts theirs."""
import json
import math

import msgpack
import pytest

import orchestra
from corpus import generate

N = 1200
JSON_CASES = generate(N, seed=20261123, wide_ints=True)
MSGPACK_CASES = generate(N, seed=7, wide_ints=False)


def test_corpus_is_varied():
    kinds = {c.payload_kind for c in JSON_CASES}
    assert kinds == {"none", "json", "text", "binary"}
    assert sum(1 for c in JSON_CASES if c.unknown) > 100
    assert sum(1 for c in JSON_CASES if "headers" not in c.fields) > 100
    text = json.dumps([c.as_json_dict() for c in JSON_CASES], ensure_ascii=False)
    for needle in ("😀", "\\u0000", "\\n", '\\"', "1180591620717411303424"):
        assert needle in text, needle


@pytest.mark.parametrize("ensure_ascii,separators", [
    (True, None), (False, (",", ":")), (False, (", ", ": "))])
def test_json_python_to_us_to_python(ensure_ascii, separators):
    for i, case in enumerate(JSON_CASES):
        expected = case.as_json_dict()
        wire = json.dumps(expected, ensure_ascii=ensure_ascii, separators=separators)
        msg = orchestra.Message.decode(wire.encode("utf-8"))
        ours = json.loads(msg.encode("json"))
        assert ours == expected, f"case {i}"


def test_json_fields_visible_through_the_api():
    for case in JSON_CASES[:300]:
        msg = orchestra.Message.decode(json.dumps(case.as_json_dict()))
        assert msg.id == case.fields["id"]
        assert msg.type == case.fields["type"]
        assert msg.source == case.fields.get("source")
        assert msg.correlation_id == case.fields.get("correlationId")
        assert msg.timestamp == case.fields.get("timestamp")
        assert msg.ttl_ms == case.fields.get("ttl")
        assert int(msg.priority) == case.fields.get("priority", 1)
        assert msg.headers == case.fields.get("headers", {})
        if case.payload_kind == "none":
            assert msg.payload is None
        else:
            assert msg.payload == case.payload


def _same(a, b):
    """Equality that treats floats by value (msgpack floats come back as Python floats)."""
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and (
            a == b or (math.isnan(a) and math.isnan(b)))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(_same, a, b))
    return a == b and type(a) is type(b)


def test_msgpack_python_to_us_to_python():
    for i, case in enumerate(MSGPACK_CASES):
        expected = case.as_msgpack_dict()
        wire = msgpack.packb(expected, use_bin_type=True)
        msg = orchestra.Message.decode(wire, "msgpack")
        ours = msgpack.unpackb(msg.encode("msgpack"), raw=False, strict_map_key=False)
        assert _same(ours, expected), f"case {i}: {ours!r} != {expected!r}"


def test_msgpack_and_json_decode_to_the_same_message():
    for i, case in enumerate(MSGPACK_CASES):
        from_json = orchestra.Message.decode(json.dumps(case.as_json_dict()))
        from_msgpack = orchestra.Message.decode(msgpack.packb(case.as_msgpack_dict(), use_bin_type=True), "msgpack")
        assert _same(json.loads(from_msgpack.encode("json")), json.loads(from_json.encode("json"))), f"case {i}"


def test_our_messages_as_python_sees_them():
    m = orchestra.Message("task.stream", source="agent", target="web:42", payload={"n": 1, "s": "é\n"},
                          headers={"traceId": "abc", "hops": 3}, priority=orchestra.Priority.HIGH,
                          ttl_ms=30000, correlation_id="c1")
    d = json.loads(m.encode())
    assert d["type"] == "task.stream" and d["source"] == "agent" and d["target"] == "web:42"
    assert d["payload"] == {"n": 1, "s": "é\n"}
    assert d["headers"] == {"traceId": "abc", "hops": 3}
    assert d["priority"] == 2 and d["ttl"] == 30000 and d["correlationId"] == "c1"
    assert d["version"] == "1.0" and isinstance(d["timestamp"], int) and len(d["id"]) == 36
    p = msgpack.unpackb(m.encode("msgpack"), raw=False)
    assert p["payload"] == {"n": 1, "s": "é\n"} and p["headers"]["hops"] == 3
    b = orchestra.Message("blob", payload=b"\x00\xff\x10")
    assert msgpack.unpackb(b.encode("msgpack"))["payload"] == b"\x00\xff\x10"
    assert json.loads(b.encode())["payload"] == "AP8Q"


def test_shared_bench_envelopes_round_trip(shared_bench):
    for name in ("envelope_small.json", "envelope_large.json"):
        raw = (shared_bench / name).read_bytes()
        msg = orchestra.Message.decode(raw)
        assert json.loads(msg.encode()) == json.loads(raw)
        assert msgpack.unpackb(msg.encode("msgpack")) == json.loads(raw)
