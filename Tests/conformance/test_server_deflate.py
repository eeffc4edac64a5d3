"""Server suite, permessage-deflate (RFC 7692): Autobahn group 13 (negotiation parameters, each
followed by an exchange that would fail if the server did not keep to what it answered), group
12 (compressed echo of many sizes, context taken over across messages) and the 12.9.x
protocol cases. The server under test must have been started with permessage-deflate on."""
import pytest

import wsraw
from deflate_cases import DATA_CASES, PROTOCOL_CASES, exchange_case
from engine import run_case


@pytest.fixture(autouse=True)
def _needs_deflate(deflate_enabled):
    if not deflate_enabled:
        pytest.skip("--no-deflate: the server under test does not implement permessage-deflate")


def negotiate(ws_server, offer, path):
    conn, head = ws_server.connect(path, extensions=offer)
    assert conn.deflate is not None, \
        f"the server did not accept permessage-deflate for the offer {offer!r}: " \
        f"Sec-WebSocket-Extensions {head.get('Sec-WebSocket-Extensions')!r}"
    return conn, wsraw.parse_extensions(head.get("Sec-WebSocket-Extensions"))[0][1]


# id -> (offer, check of the accepted parameters)
def _smwb_at_most(n):
    def check(p):
        assert "server_max_window_bits" in p and int(p["server_max_window_bits"]) <= n, \
            f"offer asked server_max_window_bits={n}; answer {p} (RFC 7692 7.1.2.1)"
    return check


def _has(name):
    def check(p):
        assert name in p, f"the answer must hold {name} when accepting an offer with it (RFC 7692 7.1.1.1); got {p}"
    return check


def _cmwb_at_most(n):
    def check(p):
        if "client_max_window_bits" in p:
            assert int(p["client_max_window_bits"]) <= n, f"client_max_window_bits above the offered {n}: {p}"
    return check


NEGOTIATIONS = {
    "13.1": ("permessage-deflate", lambda p: None),
    "13.2": ("permessage-deflate; client_no_context_takeover", lambda p: None),
    "13.3": ("permessage-deflate; server_no_context_takeover", _has("server_no_context_takeover")),
    "13.4": ("permessage-deflate; client_max_window_bits", lambda p: None),
    "13.5": ("permessage-deflate; client_max_window_bits=10", _cmwb_at_most(10)),
    "13.6": ("permessage-deflate; server_max_window_bits=10", _smwb_at_most(10)),
    "13.7": ("permessage-deflate; server_max_window_bits=9", _smwb_at_most(9)),
    "13.8": ("permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
             "server_max_window_bits=9; client_max_window_bits=9",
             lambda p: (_has("server_no_context_takeover")(p), _smwb_at_most(9)(p), _cmwb_at_most(9)(p))),
    "13.9": ("permessage-deflate; server_max_window_bits=10; client_max_window_bits, permessage-deflate",
             lambda p: None),
}


@pytest.mark.parametrize("cid", list(NEGOTIATIONS))
def test_13_negotiation(ws_server, deviation, cid):
    """13.x: the server accepts the offer with parameters that honour it, then keeps to them:
    its messages inflate with the window it answered and, when it promised no context
    takeover, each with a fresh inflater; it inflates ours compressed as its answer allows."""
    deviation("server", cid)
    offer, check = NEGOTIATIONS[cid]
    conn, params = negotiate(ws_server, offer, cid.replace(".", "_"))
    check(params)
    obs = run_case(conn, exchange_case(cid, offer))
    assert any(getattr(e, "compressed", False) for e in obs.all_events), \
        "the server compressed none of its messages, so the negotiated parameters went unchecked"


INVALID_OFFERS = {
    "13.10.1": "permessage-deflate; server_max_window_bits=7",
    "13.10.2": "permessage-deflate; server_max_window_bits=16",
    "13.10.3": "permessage-deflate; client_max_window_bits=0",
    "13.10.4": "permessage-deflate; unknown_parameter",
    "13.10.5": "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
    "13.10.6": "permessage-deflate; server_no_context_takeover=1",
    "13.10.7": "permessage-deflate; server_max_window_bits=abc",
}


@pytest.mark.parametrize("cid", list(INVALID_OFFERS))
def test_13_10_invalid_offer_declined(ws_server, cid):
    """13.10.x: an offer with an unknown, duplicated or invalid parameter must be declined
    (RFC 7692 5.1): the server answers 101 without permessage-deflate, or refuses the upgrade."""
    offer = INVALID_OFFERS[cid]
    s = ws_server.raw_socket()
    key = wsraw.new_key()
    try:
        s.sendall(wsraw.request_bytes(ws_server.path, f"{ws_server.host}:{ws_server.port}", key=key, extensions=offer))
        head, _ = wsraw.read_head(s)
    finally:
        s.close()
    assert head is not None, "the server closed the connection without an HTTP response"
    code = wsraw.status_code(head)
    if code == 101:
        wsraw.check_upgrade_response(head, key)
        names = [n for n, _ in wsraw.parse_extensions(head.get("Sec-WebSocket-Extensions"))]
        assert "permessage-deflate" not in names, f"the server accepted the invalid offer {offer!r}"
    else:
        assert 400 <= code <= 599, head.start


@pytest.mark.parametrize("case", DATA_CASES + PROTOCOL_CASES, ids=[c.test_id for c in DATA_CASES + PROTOCOL_CASES])
def test_12_compressed(ws_server, deviation, case, max_size):
    """12.x: compressed messages over a plain permessage-deflate session (context takeover on
    both sides), and the 12.9.x protocol cases."""
    deviation("server", case.id)
    if case.largest_message() > max_size:
        pytest.skip(f"a message of this case passes the server's limit (--max-size {max_size})")
    conn, _ = negotiate(ws_server, "permessage-deflate", case.test_id)
    run_case(conn, case)
