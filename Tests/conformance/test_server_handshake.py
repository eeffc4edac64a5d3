"""Server suite, opening handshake (RFC 6455 4.1, 4.2): what a valid upgrade gets back and how
invalid ones are refused. Autobahn has no group for it (its 1.x-13.x assume a handshake);
these are the "hs" cases.

Two levels: test_hs_* assert what the RFC requires (an error status, never 101, and the
Sec-WebSocket-Version header on a version mismatch); test_policy_* assert the exact status
codes the project chose (426 for a version mismatch, the RFC's example; 400 for the rest).
The policy tests are skipped for the reference peers, which choose other (allowed) codes.
"""
import socket

import pytest

import wsraw


def handshake_request(ws_server, **kw):
    s = ws_server.raw_socket()
    key = kw.pop("key", wsraw.new_key())
    try:
        s.sendall(wsraw.request_bytes(ws_server.path, f"{ws_server.host}:{ws_server.port}", key=key, **kw))
        head, _ = wsraw.read_head(s)
    finally:
        s.close()
    assert head is not None, "the server closed the connection without an HTTP response"
    return head, key


def refused(head) -> int:
    code = wsraw.status_code(head)
    assert code != 101, f"the server accepted the upgrade: {head.start!r}"
    assert 400 <= code <= 599, f"expected an HTTP error status, got {head.start!r}"
    return code


def test_hs_1_valid_upgrade(ws_server):
    """hs.1: a valid request gets 101 with Upgrade, Connection and the right Sec-WebSocket-Accept,
    and no extension or subprotocol it did not ask for."""
    head, key = handshake_request(ws_server)
    wsraw.check_upgrade_response(head, key)
    assert head.get("Sec-WebSocket-Extensions") is None
    assert head.get("Sec-WebSocket-Protocol") is None


def test_hs_2_header_tokens_and_case(ws_server):
    """hs.2: Connection is a token list and Upgrade's value is case-insensitive (RFC 6455 4.2.1)."""
    head, key = handshake_request(ws_server, connection="keep-alive, Upgrade", upgrade="WebSocket")
    wsraw.check_upgrade_response(head, key)


def test_hs_3_subprotocol_only_one_offered(ws_server):
    """hs.3: a server that picks a subprotocol picks one the client offered (RFC 6455 4.2.2)."""
    head, key = handshake_request(ws_server, protocol="chat.example, superchat.example")
    wsraw.check_upgrade_response(head, key)
    p = head.get("Sec-WebSocket-Protocol")
    assert p is None or p in ("chat.example", "superchat.example"), f"Sec-WebSocket-Protocol: {p!r}"


def test_hs_4_unknown_extension_ignored(ws_server):
    """hs.4: an extension the server does not know is not accepted."""
    head, key = handshake_request(ws_server, extensions="x-unknown-extension; foo=1")
    wsraw.check_upgrade_response(head, key)
    assert "x-unknown-extension" not in (head.get("Sec-WebSocket-Extensions") or "")


def test_hs_5_wrong_version(ws_server, deviation):
    """hs.5: Sec-WebSocket-Version 12 is refused with an error status and a
    Sec-WebSocket-Version header listing 13 (RFC 6455 4.2.2 item 4, 4.4)."""
    deviation("server", "hs.5")
    head, _ = handshake_request(ws_server, version="12")
    refused(head)
    versions = [v.strip() for v in (head.get("Sec-WebSocket-Version") or "").split(",")]
    assert "13" in versions, f"Sec-WebSocket-Version in the refusal: {head.get('Sec-WebSocket-Version')!r}"


BAD_REQUESTS = {
    "hs.6.1-missing-version": dict(version=None),
    "hs.6.2-key-not-base64": dict(key="not a key!"),
    "hs.6.3-key-15-bytes": dict(key="AAAAAAAAAAAAAAAAAAAA"),
    "hs.6.4-key-missing": dict(key=None),
    "hs.6.5-upgrade-missing": dict(upgrade=None),
    "hs.6.6-upgrade-not-websocket": dict(upgrade="h2c"),
    "hs.6.7-connection-missing": dict(connection=None),
    "hs.6.8-connection-without-upgrade": dict(connection="keep-alive"),
    "hs.6.9-http-1.0": dict(http="HTTP/1.0"),
    "hs.6.10-method-post": dict(method="POST"),
}


@pytest.mark.parametrize("name", list(BAD_REQUESTS))
def test_hs_6_invalid_request_refused(ws_server, deviation, name):
    """hs.6.x: a request that is not a valid opening handshake gets an HTTP error, not 101
    (RFC 6455 4.2.1: a GET, HTTP/1.1 or higher, Upgrade: websocket, Connection: Upgrade, a key
    of 16 bytes in base64, Sec-WebSocket-Version)."""
    deviation("server", name.split("-")[0])
    head, _ = handshake_request(ws_server, **BAD_REQUESTS[name])
    refused(head)


POLICY = {
    "426-wrong-version": (dict(version="12"), 426),
    "400-missing-version": (dict(version=None), 400),
    "400-bad-key": (dict(key="not a key!"), 400),
    "400-missing-key": (dict(key=None), 400),
    "400-missing-upgrade": (dict(upgrade=None), 400),
    "400-missing-connection": (dict(connection=None), 400),
}


@pytest.mark.parametrize("name", list(POLICY))
def test_policy_status_codes(ws_server, request, name):
    """hs.policy: the exact status codes liborchestra answers with. The RFC names 400 and 426
    as examples only, so this is the project's choice, not checked on the reference peers."""
    if request.config.getoption("--peer"):
        pytest.skip("project policy, not an RFC requirement: reference peers choose other codes "
                    "(node ws and websockets answer 400 to a version mismatch and 426 to a missing Upgrade)")
    kw, want = POLICY[name]
    head, _ = handshake_request(ws_server, **kw)
    assert wsraw.status_code(head) == want, f"expected {want}, got {head.start!r}"
    if want == 426:
        assert "13" in (head.get("Sec-WebSocket-Version") or ""), "426 without Sec-WebSocket-Version: 13"


def test_hs_7_garbage_then_valid_connection(ws_server):
    """hs.7: a connection that sends garbage instead of a request is refused or dropped, and
    the server keeps serving others."""
    s = ws_server.raw_socket()
    try:
        s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64 + b"\r\n\r\n")
        try:
            head, _ = wsraw.read_head(s)
            if head is not None:
                refused(head)
        except (wsraw.ProtocolViolation, ConnectionError, socket.timeout):
            pass
    finally:
        s.close()
    conn, _ = ws_server.connect("after-garbage")
    conn.send(wsraw.OP_TEXT, b"still here")
    ev = conn.recv_event()
    assert isinstance(ev, wsraw.Message) and ev.payload == b"still here"
    conn.send_close(1000)
    conn.close_socket()
