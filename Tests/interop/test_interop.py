"""Our server with python `websockets` and node `ws` clients; our client with python
`websockets` and node `ws` servers; each with and without permessage-deflate; and both over
TLS (wss) against python `websockets`, with certificates made at test time."""
import asyncio
import json
import os
import ssl
import subprocess
import threading

import pytest
import websockets

from conftest import HERE, Proc, exe, free_port, wait_port
from messages import messages

MODES = [False, True]


@pytest.mark.parametrize("deflate", MODES, ids=["plain", "deflate"])
def test_our_server_with_python_websockets_client(our_server, deflate):
    port = our_server(deflate)

    async def run():
        comp = "deflate" if deflate else None
        async with websockets.connect(f"ws://127.0.0.1:{port}/echo", compression=comp, max_size=None) as ws:
            ext = ws.response.headers.get("Sec-WebSocket-Extensions")
            assert (ext is not None and ext.startswith("permessage-deflate")) == deflate
            for m in messages():
                await ws.send(m)
                assert await ws.recv() == m
            # Fragmented message from the client: reassembled and echoed whole.
            await ws.send(["frag", "mented ", "✓"])
            assert await ws.recv() == "fragmented ✓"
            await ws.send([b"\x00" * 70000, b"\x01" * 10])
            assert await ws.recv() == b"\x00" * 70000 + b"\x01" * 10
            latency = await (await ws.ping(b"p1"))
            assert latency >= 0
            await ws.close(1000, "bye")
            assert ws.close_code == 1000

    asyncio.run(asyncio.wait_for(run(), 30))


@pytest.mark.parametrize("deflate", MODES, ids=["plain", "deflate"])
def test_our_server_with_node_ws_client(our_server, node, deflate):
    port = our_server(deflate)
    r = subprocess.run([node, os.path.join(HERE, "node_client.js"), f"ws://127.0.0.1:{port}/x",
                        "deflate" if deflate else "plain"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["echoed"] == len(messages())
    assert out["code"] == 1000
    assert out["pong"] is True
    assert ("permessage-deflate" in out["extensions"]) == deflate


def python_server(python, port, deflate, *cert_and_key):
    """Tests/interop/python_server.py on `port`; wss when given a certificate and its key."""
    return Proc([python, os.path.join(HERE, "python_server.py"), str(port), "deflate" if deflate else "plain",
                 *cert_and_key], cwd=HERE)


def await_report(srv, timeout=10):
    """Wait for the first JSON line a peer server prints (it prints one when a connection has
    closed, which can be a moment after our client has exited), then stop the server. A server
    that prints none within `timeout` is killed, so the read ends and the test fails."""
    timer = threading.Timer(timeout, srv.p.kill)
    timer.start()
    try:
        report = None
        for line in srv.p.stdout:
            if line.startswith("{"):
                report = json.loads(line)
                break
    finally:
        timer.cancel()
        srv.stop()
    assert report is not None, "the server reported no connection"
    return report


def run_our_client(url, deflate, *extra):
    args = [exe("echo-client"), url] + (["--deflate"] if deflate else []) + list(extra)
    return subprocess.run(args, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("tls", [False, True], ids=["ws", "wss"])
@pytest.mark.parametrize("deflate", MODES, ids=["plain", "deflate"])
def test_our_client_with_python_websockets_server(python, pki, deflate, tls):
    port = free_port()
    srv = python_server(python, port, deflate, *((pki("server.pem"), pki("server.key")) if tls else ()))
    try:
        wait_port(port, srv.p)
        if tls:   # host name checked against the certificate (localhost), chain against --ca
            r = run_our_client(f"wss://localhost:{port}/", deflate, "--ca", pki("ca.pem"))
        else:
            r = run_our_client(f"ws://127.0.0.1:{port}/", deflate)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "closed with 1000" in r.stderr
        out = await_report(srv)
    finally:
        srv.stop()
    assert out.get("error") is None, out
    assert out["echoed"] == len(messages())
    assert ("permessage-deflate" in out["extensions"]) == deflate


@pytest.mark.parametrize("deflate", MODES, ids=["plain", "deflate"])
def test_our_client_with_node_ws_server(node, deflate):
    port = free_port()
    srv = Proc([node, os.path.join(HERE, "node_server.js"), str(port), "deflate" if deflate else "plain"], cwd=HERE)
    try:
        wait_port(port, srv.p)
        r = run_our_client(f"ws://127.0.0.1:{port}/", deflate)
        assert r.returncode == 0, r.stdout + r.stderr
        out = await_report(srv)
    finally:
        srv.stop()
    assert out.get("error") is None, out
    assert out["echoed"] == len(messages())
    assert out["code"] == 1000
    assert ("permessage-deflate" in out["extensions"]) == deflate


def test_echo_client_fails_cleanly_without_a_server():
    port = free_port()
    r = run_our_client(f"ws://127.0.0.1:{port}/", False)
    assert r.returncode == 1
    assert "connection refused" in r.stderr.lower()


def test_echo_server_refuses_bad_arguments():
    r = subprocess.run([exe("echo-server"), "--port", "70000"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "--port" in r.stderr


# ---------------------------------------------------------------------------- TLS (wss)

@pytest.mark.parametrize("deflate", MODES, ids=["plain", "deflate"])
def test_our_wss_server_with_python_websockets_client(our_server, pki, deflate):
    port = our_server(deflate, tls=(pki("server.pem"), pki("server.key")))
    ctx = ssl.create_default_context(cafile=pki("ca.pem"))   # verifies the chain and the host name

    async def run():
        comp = "deflate" if deflate else None
        async with websockets.connect(f"wss://localhost:{port}/echo", ssl=ctx, compression=comp,
                                      max_size=None) as ws:
            tls = ws.transport.get_extra_info("ssl_object")
            assert tls is not None and tls.version() in ("TLSv1.2", "TLSv1.3")
            ext = ws.response.headers.get("Sec-WebSocket-Extensions")
            assert (ext is not None and ext.startswith("permessage-deflate")) == deflate
            for m in messages():
                await ws.send(m)
                assert await ws.recv() == m
            await ws.close(1000, "bye")
            assert ws.close_code == 1000

    asyncio.run(asyncio.wait_for(run(), 30))


def test_our_wss_server_is_refused_by_a_client_that_does_not_trust_it(our_server, pki):
    """The certificate is checked by the peer: a client trusting another CA refuses it."""
    port = our_server(False, tls=(pki("server.pem"), pki("server.key")))
    ctx = ssl.create_default_context(cafile=pki("other-ca.pem"))

    async def run():
        with pytest.raises(ssl.SSLCertVerificationError):
            await websockets.connect(f"wss://localhost:{port}/", ssl=ctx)
        # ...and the server keeps serving the ones that do.
        ok = ssl.create_default_context(cafile=pki("ca.pem"))
        async with websockets.connect(f"wss://127.0.0.1:{port}/", ssl=ok) as ws:
            await ws.send("still here")
            assert await ws.recv() == "still here"

    asyncio.run(asyncio.wait_for(run(), 30))


@pytest.mark.parametrize("cert,ca,why", [
    ("server", "other-ca.pem", "unable to get local issuer certificate"),
    ("wrong", "ca.pem", "hostname mismatch"),
    ("expired", "ca.pem", "certificate has expired"),
], ids=["untrusted-ca", "wrong-host", "expired"])
def test_our_wss_client_refuses_a_bad_certificate(python, pki, cert, ca, why):
    port = free_port()
    srv = python_server(python, port, False, pki(cert + ".pem"), pki(cert + ".key"))
    try:
        wait_port(port, srv.p)
        r = run_our_client(f"wss://localhost:{port}/", False, "--ca", pki(ca))
    finally:
        srv.stop()
    assert r.returncode == 1, r.stdout + r.stderr
    assert why in r.stderr.lower(), r.stderr
