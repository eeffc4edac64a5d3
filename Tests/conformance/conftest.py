"""Fixtures of the WebSocket conformance suite: the server under test (a running URL or a
command we launch), the client under test (a command we launch against our raw test server),
the server's message size limit, and the reference peers' documented deviations."""
from __future__ import annotations

import base64
import os
import shlex
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from urllib.parse import urlparse

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import wsraw  # noqa: E402
from deviations import DEVIATIONS  # noqa: E402

DEFAULT_MAX_SIZE = 16 * 1024 * 1024


def pytest_addoption(parser):
    g = parser.getgroup("conformance", "WebSocket conformance suite")
    g.addoption("--server-cmd", default=os.environ.get("ORC_CONFORMANCE_SERVER_CMD"),
                help="command that starts the echo server under test; {port}, {host} and {max_size} are "
                     "filled in (env ORC_CONFORMANCE_SERVER_CMD)")
    g.addoption("--ws-server", default=os.environ.get("ORC_CONFORMANCE_SERVER_URL"),
                help="URL of an echo server already running, ws://HOST:PORT/path (env ORC_CONFORMANCE_SERVER_URL)")
    g.addoption("--client-cmd", default=os.environ.get("ORC_CONFORMANCE_CLIENT_CMD"),
                help="command that starts the echo client under test; {url} is filled in "
                     "(env ORC_CONFORMANCE_CLIENT_CMD)")
    g.addoption("--max-size", type=int, default=int(os.environ.get("ORC_CONFORMANCE_MAX_SIZE", DEFAULT_MAX_SIZE)),
                help="the server's message size limit in bytes (passed as {max_size}; default 16 MiB)")
    g.addoption("--peer", default=os.environ.get("ORC_CONFORMANCE_PEER"),
                help="name of a reference peer (node_ws, websockets): its documented deviations "
                     "(deviations.py) become strict xfails")
    g.addoption("--no-deflate", action="store_true",
                help="the peer does not implement permessage-deflate: skip groups 12/13")


def pytest_collection_modifyitems(config, items):
    server = bool(config.getoption("--server-cmd") or config.getoption("--ws-server"))
    client = bool(config.getoption("--client-cmd"))
    if not server and not client:
        raise pytest.UsageError("conformance: give --server-cmd/--ws-server (server suite) and/or "
                                "--client-cmd (client suite)")
    keep, drop = [], []
    for item in items:
        name = os.path.basename(str(item.fspath))
        if (name.startswith("test_server") and not server) or (name.startswith("test_client") and not client):
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def max_size(request) -> int:
    """The message size limit the server under test was started with."""
    return request.config.getoption("--max-size")


@pytest.fixture(scope="session")
def deflate_enabled(request) -> bool:
    return not request.config.getoption("--no-deflate")


class ServerUnderTest:
    def __init__(self, host: str, port: int, path: str, proc: subprocess.Popen | None):
        self.host, self.port, self.path, self.proc = host, port, path, proc

    def check_alive(self):
        if self.proc is not None and self.proc.poll() is not None:
            pytest.fail(f"the server under test exited with status {self.proc.returncode}")

    def connect(self, path: str = "", extensions: str | None = None):
        self.check_alive()
        return wsraw.connect(self.host, self.port, self.path.rstrip("/") + "/" + path, extensions=extensions)

    def raw_socket(self) -> socket.socket:
        self.check_alive()
        s = socket.create_connection((self.host, self.port), timeout=wsraw.TIMEOUT)
        s.settimeout(wsraw.TIMEOUT)
        return s


@pytest.fixture(scope="session")
def ws_server(request, max_size):
    """The echo server under test: --ws-server URL, or --server-cmd launched on a free port."""
    url = request.config.getoption("--ws-server")
    if url:
        u = urlparse(url)
        assert u.scheme == "ws", "only ws:// URLs"
        yield ServerUnderTest(u.hostname, u.port or 80, u.path or "/", None)
        return
    cmd = request.config.getoption("--server-cmd")
    host, port = "127.0.0.1", free_port()
    argv = [a.format(port=port, host=host, max_size=max_size) for a in shlex.split(cmd)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=None, cwd=request.config.invocation_params.dir)
    try:
        deadline = time.monotonic() + 15
        while True:
            if proc.poll() is not None:
                pytest.fail(f"server command exited with status {proc.returncode}: {argv}")
            try:
                socket.create_connection((host, port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"server command did not accept connections on {host}:{port} within 15 s")
                time.sleep(0.05)
        yield ServerUnderTest(host, port, "/", proc)
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class ClientUnderTest:
    """One run of the client under test against our raw server socket."""

    def __init__(self, sock: socket.socket, proc: subprocess.Popen):
        self.sock, self.proc = sock, proc
        self.request: wsraw.HTTPHead | None = None

    def read_request(self) -> tuple[wsraw.HTTPHead, bytes]:
        head, rest = wsraw.read_head(self.sock)
        assert head is not None, "the client closed the connection before sending its handshake"
        self.request = head
        check_client_request(head)
        return head, rest

    def respond(self, head: wsraw.HTTPHead, *, extensions: str | None = None, accept: str | None = None,
                status: str = "101 Switching Protocols", upgrade: str | None = "websocket",
                connection: str | None = "Upgrade", extra: list[tuple[str, str]] = ()) -> None:
        lines = [f"HTTP/1.1 {status}"]
        if upgrade is not None:
            lines.append(f"Upgrade: {upgrade}")
        if connection is not None:
            lines.append(f"Connection: {connection}")
        lines.append(f"Sec-WebSocket-Accept: {accept if accept is not None else wsraw.accept_key(head.get('Sec-WebSocket-Key'))}")
        if extensions is not None:
            lines.append(f"Sec-WebSocket-Extensions: {extensions}")
        lines += [f"{k}: {v}" for k, v in extra]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    def handshake(self, extensions: str | None = None, deflate: wsraw.Deflate | None = None) -> wsraw.Conn:
        head, rest = self.read_request()
        self.respond(head, extensions=extensions)
        return wsraw.Conn(self.sock, "server", rest, deflate)

    def wait_exit(self, timeout: float = wsraw.TIMEOUT) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the client under test did not exit within {timeout} s after the connection ended") from None


def check_client_request(head: wsraw.HTTPHead) -> None:
    """RFC 6455 4.1: what a client's opening handshake must hold."""
    method, _, rest = head.start.partition(" ")
    target, _, version = rest.rpartition(" ")
    assert method == "GET", f"request method {method!r}"
    assert version in ("HTTP/1.1",) or version.startswith("HTTP/1.") and version >= "HTTP/1.1", head.start
    assert head.get("Host"), "no Host header"
    assert head.get("Upgrade") and "websocket" in [t.strip().lower() for t in head.get("Upgrade").split(",")], \
        f"Upgrade: {head.get('Upgrade')!r}"
    assert "upgrade" in head.tokens("Connection"), f"Connection: {head.get('Connection')!r}"
    key = head.get("Sec-WebSocket-Key")
    assert key, "no Sec-WebSocket-Key"
    assert len(base64.b64decode(key, validate=True)) == 16, f"Sec-WebSocket-Key {key!r} is not 16 bytes in base64"
    assert head.get("Sec-WebSocket-Version") == "13", f"Sec-WebSocket-Version: {head.get('Sec-WebSocket-Version')!r}"


@pytest.fixture
def ws_client(request):
    """Starts the client under test against a fresh listening socket; yields a function
    run(path) -> context manager giving a ClientUnderTest with the accepted connection."""
    cmd = request.config.getoption("--client-cmd")
    procs = []

    @contextmanager
    def run(path: str):
        lst = socket.socket()
        lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lst.bind(("127.0.0.1", 0))
        lst.listen(1)
        lst.settimeout(10)
        port = lst.getsockname()[1]
        url = f"ws://127.0.0.1:{port}/{path}"
        argv = [a.format(url=url) for a in shlex.split(cmd)]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                cwd=request.config.invocation_params.dir)
        procs.append(proc)
        try:
            try:
                sock, _ = lst.accept()
            except socket.timeout:
                raise AssertionError(f"the client under test did not connect within 10 s: {argv}") from None
            finally:
                lst.close()
            cut = ClientUnderTest(sock, proc)
            try:
                yield cut
            finally:
                try:
                    sock.close()
                except OSError:
                    pass
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stderr:
                err = proc.stderr.read().decode(errors="replace").strip()
                if err:
                    sys.stderr.write(f"[client {path}] {err[-2000:]}\n")
                proc.stderr.close()

    yield run
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


@pytest.fixture
def deviation(request):
    """deviation(role, case_id): marks the test as a strict xfail when the reference peer named
    by --peer is documented (deviations.py) to deviate on this case in this role."""
    peer = request.config.getoption("--peer")

    def apply(role: str, case_id: str):
        reason = DEVIATIONS.get((peer, role, case_id)) if peer else None
        if reason:
            request.applymarker(pytest.mark.xfail(reason=f"{peer}: {reason}", strict=True, raises=AssertionError))
    return apply
