"""Fixtures for the hub's acceptance tests: the real `orchestra-hub` executable on 127.0.0.1,
agents as real processes (examples/c, examples/python, examples/node, or a protocol-level agent
written here with python `websockets`), web clients with python `websockets`, and the SQLite
journal read back with python's sqlite3."""
import asyncio
import hashlib
import hmac
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid

import pytest
import websockets
from websockets.asyncio.client import connect

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
BUILD = os.environ.get("ORC_BUILD_DIR", os.path.join(ROOT, "build"))
# ORC_TEST_JOURNAL=postgres runs every hub of the suite on the PostgreSQL at ORC_TEST_PG_URL
# (scripts/pg), each test in a schema of its own; the default is a SQLite file per test.
JOURNAL = os.environ.get("ORC_TEST_JOURNAL", "sqlite")
PG_URL = os.environ.get("ORC_TEST_PG_URL", "")
ON_POSTGRES = JOURNAL == "postgres"
sqlite_only = pytest.mark.skipif(ON_POSTGRES, reason="about the SQLite journal's files")


def exe(name):
    path = os.path.join(BUILD, name)
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is missing: build the project first (cmake --build build)")
    return path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(pred, timeout=20, what="condition", interval=0.02):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


class Hub:
    """One orchestra-hub process on a fixed port with its journal in tmp_path. Restartable."""

    def __init__(self, tmp_path, *flags, journal=None):
        self.dir = tmp_path
        if journal:
            # Shared with other hubs (several hubs on one PostgreSQL).
            self.journal = journal
        elif ON_POSTGRES:
            if not PG_URL:
                pytest.fail("ORC_TEST_JOURNAL=postgres needs ORC_TEST_PG_URL (scripts/pg start)")
            self.schema = "t_" + uuid.uuid4().hex[:16]
            import psycopg
            with psycopg.connect(PG_URL, autocommit=True) as c:
                c.execute(f"CREATE SCHEMA {self.schema}")
            sep = "&" if "?" in PG_URL else "?"
            self.journal = f"{PG_URL}{sep}options=-csearch_path%3D{self.schema}"
        else:
            self.journal = str(tmp_path / "var" / "orchestra.db")
        self.port = free_port()
        self.flags = list(flags)
        self.proc = None
        self.runs = 0
        self.log_paths = []

    @property
    def url(self):
        return f"ws://127.0.0.1:{self.port}"

    def cli(self, *args, check=True):
        r = subprocess.run([exe("orchestra-hub"), *args, "--journal", self.journal],
                           capture_output=True, text=True, timeout=30)
        if check and r.returncode != 0:
            pytest.fail(f"orchestra-hub {' '.join(args)} failed ({r.returncode}): {r.stderr}")
        return r

    def start(self, *extra):
        assert self.proc is None or self.proc.poll() is not None
        self.runs += 1
        log = self.dir / f"hub-{self.runs}.log"
        self.log_paths.append(log)
        portfile = self.dir / "port"
        if portfile.exists():
            portfile.unlink()
        with open(log, "w") as logf:   # the child keeps its own descriptor
            self.proc = subprocess.Popen(
                [exe("orchestra-hub"), "--port", str(self.port), "--journal", self.journal, "--port-file", str(portfile),
                 "--hub-id-file", str(self.dir / "hub-id"), "--log-level", "debug", *self.flags, *extra],
                stdout=subprocess.DEVNULL, stderr=logf)
        wait_until(lambda: portfile.exists() or self.proc.poll() is not None, 20, "the hub to listen")
        if self.proc.poll() is not None:
            pytest.fail(f"the hub exited with {self.proc.returncode}: {log.read_text()}")
        return self

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail("the hub did not stop within 15 s of SIGTERM")

    def kill9(self):
        self.proc.kill()
        self.proc.wait()

    def logs(self):
        """Every JSON log line of every run, parsed (a line that is not JSON fails the test)."""
        out = []
        for p in self.log_paths:
            for line in p.read_text().splitlines():
                if line.strip():
                    try:
                        out.append(json.loads(line))
                    except ValueError:
                        pytest.fail(f"not a JSON log line: {line!r}")
        return out

    def events(self, name):
        return [e for e in self.logs() if e.get("event") == name]

    def add_key(self, key_id):
        return self.cli("key", "add", key_id).stdout.strip()

    def token(self, user="alice", ttl=3600, role="user"):
        if user not in self.cli("user", "list").stdout.split():
            self.cli("user", "add", user, "--role", role, "--password", "pw-" + user)
        return self.cli("token", "--user", user, "--ttl", str(ttl)).stdout.strip()

    def db(self):
        """The journal for reading it back: sqlite3, or on PostgreSQL psycopg behind the same
        few calls (execute with ? placeholders, fetchone/fetchall, row_factory = sqlite3.Row)."""
        if self.journal.startswith("postgresql://"):
            return PgJournal(self.journal)
        return sqlite3.connect(self.journal, timeout=10)

    def health(self):
        import urllib.request
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=5) as r:
            return json.loads(r.read())


class PgJournal:
    """A psycopg connection answering the sqlite3 calls the tests make."""

    def __init__(self, url):
        import psycopg
        self.conn = psycopg.connect(url, autocommit=True)
        self.row_factory = None

    def execute(self, sql, params=()):
        from psycopg.rows import dict_row
        if sql.strip().upper() == "PRAGMA INTEGRITY_CHECK":
            # A file-level check of SQLite's; PostgreSQL has no file of ours to check.
            sql = "SELECT 'ok'"
        cur = self.conn.cursor(row_factory=dict_row) if self.row_factory else self.conn.cursor()
        return cur.execute(sql.replace("?", "%s"), params)

    def close(self):
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.conn.close()


@pytest.fixture
def hub(tmp_path):
    h = Hub(tmp_path)
    yield h
    h.stop()


def envelope(type_, payload, **extra):
    m = {"id": str(uuid.uuid4()), "type": type_, "timestamp": int(time.time() * 1000), "version": "1.0", "payload": payload}
    m.update(extra)
    return m


class Web:
    """A web client on python websockets: requests matched by correlationId, events kept."""

    def __init__(self, ws):
        self.ws = ws
        self.events = []
        self.replies = {}
        self.waiters = []
        self.reader = asyncio.get_running_loop().create_task(self._read())
        self.closed = asyncio.get_running_loop().create_future()

    @classmethod
    async def open(cls, hub, token, query=""):
        ws = await connect(f"{hub.url}/web?token={token}{query}", max_size=None)
        return cls(ws)

    async def _read(self):
        try:
            async for raw in self.ws:
                m = json.loads(raw)
                if m.get("correlationId"):
                    self.replies[m["correlationId"]] = m
                self.events.append(m)
                for w in list(self.waiters):
                    w[1].set()
        except websockets.ConnectionClosed:
            pass
        finally:
            if not self.closed.done():
                self.closed.set_result(self.ws.close_code)
            for w in self.waiters:
                w[1].set()

    async def request(self, type_, payload, timeout=20, **extra):
        m = envelope(type_, payload, **extra)
        await self.ws.send(json.dumps(m))
        return await self.wait(lambda: self.replies.get(m["id"]), timeout, f"the reply to {type_}")

    async def wait(self, pred, timeout=20, what="an event"):
        ev = asyncio.Event()
        w = (pred, ev)
        self.waiters.append(w)
        try:
            end = time.monotonic() + timeout
            while True:
                v = pred()
                if v:
                    return v
                left = end - time.monotonic()
                if left <= 0 or (self.closed.done() and not pred()):
                    if self.closed.done():
                        pytest.fail(f"connection closed ({self.closed.result()}) while waiting for {what}")
                    pytest.fail(f"timed out after {timeout} s waiting for {what}")
                ev.clear()
                try:
                    await asyncio.wait_for(ev.wait(), left)
                except asyncio.TimeoutError:
                    pass
        finally:
            self.waiters.remove(w)

    def of(self, type_, task_id=None):
        return [e for e in self.events if e["type"] == type_ and (task_id is None or e["payload"].get("taskId") == task_id)]

    async def submit(self, command, **fields):
        payload = {"type": "shell", "parameters": {"command": command}, **fields}
        r = await self.request("task.submit", payload)
        assert r["type"] == "task.submitted", r
        return r["payload"]["taskId"]

    async def result(self, task_id, timeout=30):
        return (await self.wait(lambda: self.of("task.result", task_id), timeout, f"the result of {task_id}"))[0]["payload"]

    async def close(self):
        await self.ws.close()
        self.reader.cancel()


def sign(secret_hex, agent_id, ts, nonce):
    return hmac.new(bytes.fromhex(secret_hex), f"{agent_id}\n{ts}\n{nonce}".encode(), hashlib.sha256).hexdigest()


async def raw_agent(hub, agent_id, key_id, secret_hex, *, ts=None, nonce=None, signature=None, capabilities=("shell",), **extra):
    """Connects to /agent and registers by hand; returns (ws, reply)."""
    ws = await connect(f"{hub.url}/agent", max_size=None)
    ts = int(time.time() * 1000) if ts is None else ts
    nonce = nonce or uuid.uuid4().hex
    sig = signature or sign(secret_hex, agent_id, ts, nonce)
    m = envelope("agent.register", {"agentId": agent_id, "keyId": key_id, "timestamp": ts, "nonce": nonce, "signature": sig,
                                    "capabilities": list(capabilities), "version": "test", **extra})
    await ws.send(json.dumps(m))
    reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
    return ws, reply


class Agents:
    """Agent processes (examples in three languages), stopped at the end of the test."""

    def __init__(self, hub, tmp_path):
        self.hub = hub
        self.dir = tmp_path
        self.procs = {}

    def start(self, lang, agent_id, key_id, secret, capabilities=("shell",), max_concurrency=4):
        env = dict(os.environ, ORC_HUB_URL=self.hub.url, ORC_AGENT_ID=agent_id, ORC_KEY_ID=key_id,
                   ORC_AGENT_SECRET=secret, ORC_AGENT_CAPABILITIES=",".join(capabilities),
                   ORC_MAX_CONCURRENCY=str(max_concurrency),
                   PYTHONPATH=os.path.join(ROOT, "bindings", "python"), ORCHESTRA_LIBRARY=os.path.join(BUILD, "liborchestra.so"),
                   ORCHESTRA_NODE_ADDON=os.path.join(BUILD, "orchestra.node"))
        if lang == "c":
            args = [exe("orchestra-agent-c")]
        elif lang == "python":
            args = [sys.executable, os.path.join(ROOT, "examples", "python", "agent.py")]
        elif lang == "node":
            args = ["node", os.path.join(ROOT, "examples", "node", "agent.js")]
        else:
            raise ValueError(lang)
        with open(self.dir / f"agent-{agent_id}.log", "w") as log:
            self.procs[agent_id] = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
        return self.procs[agent_id]

    def log(self, agent_id):
        return (self.dir / f"agent-{agent_id}.log").read_text()

    def kill9(self, agent_id):
        p = self.procs[agent_id]
        p.kill()
        p.wait()

    def stop_all(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.terminate()
        for p in self.procs.values():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.fixture
def agents(hub, tmp_path):
    a = Agents(hub, tmp_path)
    yield a
    a.stop_all()


async def wait_agents(web, ids, timeout=30):
    """Waits until the hub lists every agent id as online or busy."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        r = await web.request("agents.list", {})
        online = {a["id"] for a in r["payload"]["agents"] if a["status"] != "offline"}
        if set(ids) <= online:
            return
        await asyncio.sleep(0.1)
    pytest.fail(f"agents {ids} did not all register within {timeout} s")
