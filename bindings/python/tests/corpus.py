"""A seeded generator of varied envelopes for the interoperability tests.

Each case is a model: the envelope's fields plus a typed payload. `as_json_dict` renders it
the way the JSON codec writes it (binary payload as base64), `as_msgpack_dict` the way the
MessagePack codec writes it (binary payload as bytes)."""
from __future__ import annotations

import base64
import random
import string

INT64_MIN, UINT64_MAX = -(1 << 63), (1 << 64) - 1

_UNICODE = ["é", "ü", "ß", "中文", "日本語", "😀", "𝄞", "\u2028", "\u00a0", "Ω", "👩‍💻", "\ufeff"]
_ESCAPES = ['"', "\\", "/", "\n", "\r", "\t", "\b", "\f", "\x00", "\x01", "\x1f", "\x7f"]


def rand_text(r: random.Random, max_len: int = 24) -> str:
    parts = []
    for _ in range(r.randint(0, max_len)):
        k = r.random()
        if k < 0.6:
            parts.append(r.choice(string.ascii_letters + string.digits + " .-_:"))
        elif k < 0.8:
            parts.append(r.choice(_UNICODE))
        else:
            parts.append(r.choice(_ESCAPES))
    return "".join(parts)


def rand_int(r: random.Random, wide: bool) -> int:
    k = r.random()
    if k < 0.3:
        return r.randint(-200, 200)
    if k < 0.6:
        return r.randint(-(1 << 40), 1 << 40)
    if k < 0.8:
        return r.choice([INT64_MIN, (1 << 63) - 1, UINT64_MAX, 1 << 63, -(1 << 32), 1 << 53])
    if wide:  # beyond 64 bits: JSON keeps it exactly; MessagePack cannot carry it
        return r.choice([1 << 70, -(1 << 80), 10 ** 30])
    return r.randint(INT64_MIN, UINT64_MAX)


def rand_value(r: random.Random, depth: int, wide: bool):
    k = r.random()
    if depth <= 0 or k < 0.45:
        return r.choice([
            lambda: rand_text(r), lambda: rand_int(r, wide), lambda: r.uniform(-1e6, 1e6),
            lambda: r.choice([True, False, None]), lambda: r.choice([0.5, -0.0 + 0, 1e300, 2.5e-8]),
        ])()
    if k < 0.75:
        return [rand_value(r, depth - 1, wide) for _ in range(r.randint(0, 4))]
    return {rand_text(r, 8): rand_value(r, depth - 1, wide) for _ in range(r.randint(0, 4))}


class Case:
    def __init__(self, fields: dict, payload_kind: str, payload, unknown: dict):
        self.fields = fields            # envelope fields except payload/contentType
        self.payload_kind = payload_kind  # "none" | "json" | "text" | "binary"
        self.payload = payload
        self.unknown = unknown          # unknown top-level fields (kept by the codec)

    def _common(self) -> dict:
        d = dict(self.fields)
        d.update(self.unknown)
        return d

    def _render(self, binary) -> dict:
        d = self._common()
        if self.payload_kind == "json":
            d["payload"] = self.payload
        elif self.payload_kind == "text":
            d["contentType"] = "text/plain"
            d["payload"] = self.payload
        elif self.payload_kind == "binary":
            d["contentType"] = "application/octet-stream"
            d["payload"] = binary(self.payload)
        return d

    def as_json_dict(self) -> dict:
        """As the JSON codec writes it: binary payload as base64."""
        return self._render(lambda b: base64.b64encode(b).decode())

    def as_msgpack_dict(self) -> dict:
        """As the MessagePack codec writes it: binary payload as bytes."""
        return self._render(lambda b: b)


def generate(n: int, seed: int, wide_ints: bool) -> list[Case]:
    r = random.Random(seed)
    cases = []
    for i in range(n):
        f: dict = {"id": f"m-{i}-" + rand_text(r, 6) or "x", "type": r.choice(
            ["task.stream", "agent.register", "a.b.c", "session.join", "x"]) }
        if r.random() < 0.8: f["timestamp"] = r.randint(0, 1 << 45)
        if r.random() < 0.7: f["version"] = r.choice(["1.0", "2.1", ""])
        if r.random() < 0.7: f["source"] = rand_text(r)
        if r.random() < 0.5: f["target"] = rand_text(r)
        if r.random() < 0.4: f["correlationId"] = rand_text(r)
        if r.random() < 0.3: f["replyTo"] = rand_text(r)
        if r.random() < 0.4: f["ttl"] = r.randint(0, 1 << 40)
        if r.random() < 0.5: f["priority"] = r.randint(0, 3)
        if r.random() < 0.6:
            h = {}
            for _ in range(r.randint(1, 4)):
                h[rand_text(r, 10)] = rand_text(r) if r.random() < 0.6 else rand_value(r, 2, wide_ints)
            f["headers"] = h
        if r.random() < 0.15:
            f["metadata"] = {"retryCount": r.randint(0, 5), "deliveryTag": rand_text(r, 8)}
        unknown = {}
        if r.random() < 0.3:
            for _ in range(r.randint(1, 3)):
                unknown["x-" + rand_text(r, 6)] = rand_value(r, 3, wide_ints)
        kind = r.choice(["none", "json", "json", "text", "binary"])
        payload = None
        if kind == "json":
            payload = rand_value(r, r.randint(0, 6), wide_ints)
        elif kind == "text":
            payload = rand_text(r, 200)
        elif kind == "binary":
            payload = bytes(r.getrandbits(8) for _ in range(r.randint(0, 300)))
        cases.append(Case(f, kind, payload, unknown))
    return cases
