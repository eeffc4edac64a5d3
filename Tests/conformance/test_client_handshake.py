"""Client suite, opening handshake (RFC 6455 4.1): the client's request is checked in every
client test (GET, HTTP/1.1, Host, Upgrade, Connection, a 16-byte key, version 13); here, the
responses a client must refuse. After a bad response we send a text frame anyway: the client
must not echo it, must close the TCP connection and must exit with a non-zero status."""
import base64

import pytest

import wsraw
from wsraw import OP_CLOSE, OP_TEXT, Closed


def test_hs_c1_request_and_fresh_keys(ws_client):
    """hs.c1: a valid request, and a fresh random key per connection (RFC 6455 4.1 item 7)."""
    keys = []
    for i in range(2):
        with ws_client(f"hs_c1_{i}") as client:
            head, _ = client.read_request()
            keys.append(head.get("Sec-WebSocket-Key"))
            client.respond(head)
            conn = wsraw.Conn(client.sock, "server")
            conn.send_close(1000)
            f = conn.recv_frame()
            assert f.opcode == OP_CLOSE
            conn.close_socket()
            assert client.wait_exit() == 0
    assert keys[0] != keys[1], "the client sent the same Sec-WebSocket-Key twice"
    assert all(len(base64.b64decode(k)) == 16 for k in keys)


def _wrong_accept(head):
    return base64.b64encode(b"\x00" * 20).decode()


BAD_RESPONSES = {
    "hs.c2.1-wrong-accept": dict(accept="WRONG"),
    "hs.c2.2-accept-of-another-key": dict(accept=wsraw.accept_key(wsraw.new_key())),
    # Content-Length: 0, so the response is complete without waiting for a body until EOF.
    "hs.c2.3-status-200": dict(status="200 OK", extra=[("Content-Length", "0")]),
    "hs.c2.4-status-426": dict(status="426 Upgrade Required", extra=[("Content-Length", "0")]),
    "hs.c2.5-no-upgrade": dict(upgrade=None),
    "hs.c2.6-upgrade-not-websocket": dict(upgrade="h2c"),
    "hs.c2.7-no-connection": dict(connection=None),
    "hs.c2.8-subprotocol-not-requested": dict(extra=[("Sec-WebSocket-Protocol", "chat")]),
    "hs.c2.9-extension-not-offered": dict(extensions="x-never-offered"),
}


@pytest.mark.parametrize("name", list(BAD_RESPONSES))
def test_hs_c2_bad_response_fails(ws_client, deviation, name):
    """hs.c2.x: a response the client must not accept (RFC 6455 4.1, items 1-6 of the response
    checks): wrong status, Upgrade, Connection or Sec-WebSocket-Accept, a subprotocol or an
    extension it did not ask for."""
    deviation("client", name.split("-")[0])
    with ws_client(name.split("-")[0].replace(".", "_")) as client:
        head, _ = client.read_request()
        if name.endswith("subprotocol-not-requested") and head.get("Sec-WebSocket-Protocol"):
            pytest.skip("the client under test requests subprotocols")
        client.respond(head, **BAD_RESPONSES[name])
        conn = wsraw.Conn(client.sock, "server")
        conn.send_raw(conn.frame(OP_TEXT, b"must not be echoed"))
        assert_refused(conn)
        status = client.wait_exit()
        assert status != 0, "the client exited 0 although the handshake failed"


def assert_refused(conn):
    """The client sends no message and closes TCP (a close frame first is tolerated)."""
    try:
        while True:
            f = conn.recv_frame()
            assert f.opcode == OP_CLOSE, f"the client sent opcode {f.opcode:#x} over a connection it must have failed"
    except Closed:
        pass
    except TimeoutError:
        raise AssertionError("the client did not close the connection after a bad handshake response") from None
