"""Fixtures for the interoperability tests: our examples/c programs against python
`websockets` and node `ws` (Debian node-ws), on 127.0.0.1 with free ports."""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.environ.get("ORC_BUILD_DIR", os.path.join(HERE, "..", "..", "build"))
NODE_WS = "/usr/share/nodejs/ws"


def exe(name):
    path = os.path.join(BUILD, name)
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is missing: build the project first (cmake --build build)")
    return path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=10):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            pytest.fail(f"server exited early with {proc.returncode}: {out}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    pytest.fail(f"nothing listens on {port} after {timeout} s")


class Proc:
    """A child process that is always stopped at the end of the test."""

    def __init__(self, args, **kw):
        self.p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)

    def stop(self, sig_timeout=5):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(sig_timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        return self.p.returncode


@pytest.fixture(scope="session")
def pki():
    """A test CA and certificates made now with `openssl` (Tests/support/make-test-pki.sh):
    yields a function(name) -> path, e.g. pki("ca.pem"), pki("server.key")."""
    with tempfile.TemporaryDirectory(prefix="orc-interop-pki-") as d:
        script = os.path.join(HERE, "..", "support", "make-test-pki.sh")
        r = subprocess.run(["sh", script, d], capture_output=True, text=True)
        if r.returncode != 0:
            pytest.fail(f"making the test certificates failed: {r.stdout}{r.stderr}")
        yield lambda name: os.path.join(d, name)


@pytest.fixture
def our_server():
    """Starts examples/c/echo-server; yields a function(deflate, tls=None) -> port, where tls
    is (cert, key) for wss."""
    procs = []

    def start(deflate=False, tls=None):
        port = free_port()
        args = [exe("echo-server"), "--port", str(port)]
        if deflate:
            args.append("--deflate")
        if tls:
            args += ["--tls-cert", tls[0], "--tls-key", tls[1]]
        p = Proc(args)
        procs.append(p)
        wait_port(port, p.p)
        return port

    yield start
    for p in procs:
        rc = p.stop()
        assert rc == 0, f"echo-server exited with {rc} after SIGTERM: {p.p.stdout.read()}"


@pytest.fixture
def node():
    node = shutil.which("node")
    if not node or not os.path.isdir(NODE_WS):
        pytest.fail("node and Debian's node-ws are required (apt-get install nodejs node-ws)")
    return node


@pytest.fixture
def python():
    return sys.executable
