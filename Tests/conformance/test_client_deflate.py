"""Client suite, permessage-deflate (RFC 7692): the client's offer, answers of every kind
(each followed by an exchange that fails if the client does not keep to the answer), the
group 12 and 12.9.x cases over a plain session, and answers the client must refuse."""
import pytest

import wsraw
from deflate_cases import DATA_CASES, PROTOCOL_CASES, exchange_case
from engine import Echo, run_case
from test_client_handshake import assert_refused
from wsraw import OP_TEXT


@pytest.fixture(autouse=True)
def _needs_deflate(deflate_enabled):
    if not deflate_enabled:
        pytest.skip("--no-deflate: the client under test does not implement permessage-deflate")


def offers(head):
    elements = wsraw.parse_extensions(head.get("Sec-WebSocket-Extensions"))
    pmd = [p for n, p in elements if n == "permessage-deflate"]
    assert pmd, f"the client did not offer permessage-deflate: {head.get('Sec-WebSocket-Extensions')!r}"
    return pmd


def deflate_for_answer(answer: str) -> wsraw.Deflate:
    p = wsraw.parse_extensions(answer)[0][1]
    d = wsraw.Deflate()
    d.our_no_context_takeover = "server_no_context_takeover" in p
    d.peer_no_context_takeover = "client_no_context_takeover" in p
    d.our_max_window_bits = int(p.get("server_max_window_bits") or 15)
    d.peer_max_window_bits = max(int(p.get("client_max_window_bits") or 15), 9)
    return d


def test_13_c0_offer_is_valid(ws_client):
    """13.c0: the offer's parameters are known, valueless or 8-15 as RFC 7692 7.1 defines."""
    with ws_client("13_c0") as client:
        head, _ = client.read_request()
        for p in offers(head):
            for k, v in p.items():
                assert k in ("server_no_context_takeover", "client_no_context_takeover",
                             "server_max_window_bits", "client_max_window_bits"), f"unknown parameter {k}"
                if k.endswith("takeover"):
                    assert v is None
                elif k == "server_max_window_bits":
                    assert v is not None and 8 <= int(v) <= 15
                elif v is not None:
                    assert 8 <= int(v) <= 15
        client.respond(head)
        conn = wsraw.Conn(client.sock, "server")
        conn.send_close(1000)
        conn.recv_frame()


ANSWERS = {
    "13.c1": "permessage-deflate",
    "13.c2": "permessage-deflate; server_no_context_takeover",
    "13.c3": "permessage-deflate; client_no_context_takeover",
    "13.c4": "permessage-deflate; server_max_window_bits=10",
    "13.c5": "permessage-deflate; client_max_window_bits=10",
    "13.c6": "permessage-deflate; client_max_window_bits=9; client_no_context_takeover",
    "13.c7": "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
             "server_max_window_bits=9; client_max_window_bits=9",
}


def _answer_fits(head, answer):
    """client_max_window_bits may be answered only when offered (RFC 7692 7.1.2.2)."""
    if "client_max_window_bits" in answer:
        return any("client_max_window_bits" in p for p in offers(head))
    return True


@pytest.mark.parametrize("cid", list(ANSWERS))
def test_13_c_answer(ws_client, deviation, cid):
    """13.c: the client accepts the answer and keeps to it: with client_no_context_takeover each
    of its messages inflates alone, with client_max_window_bits within that window."""
    deviation("client", cid)
    answer = ANSWERS[cid]
    with ws_client(cid.replace(".", "_")) as client:
        head, rest = client.read_request()
        offers(head)
        if not _answer_fits(head, answer):
            pytest.skip("the client did not offer client_max_window_bits, so it cannot be answered")
        client.respond(head, extensions=answer)
        conn = wsraw.Conn(client.sock, "server", rest, deflate_for_answer(answer))
        obs = run_case(conn, exchange_case(cid, answer))
        assert client.wait_exit() == 0
    assert any(getattr(e, "compressed", False) for e in obs.all_events), \
        "the client compressed none of its messages, so the answered parameters went unchecked"


CASES = DATA_CASES[::3] + PROTOCOL_CASES  # sizes 16 B, 1 KiB, 16 KiB, 128 KiB, text and binary mixed


@pytest.mark.parametrize("case", CASES, ids=[c.test_id for c in CASES])
def test_12_c_compressed(ws_client, deviation, case):
    """12.x over a plain permessage-deflate session with the client under test."""
    deviation("client", case.id)
    with ws_client(case.test_id) as client:
        head, rest = client.read_request()
        offers(head)
        client.respond(head, extensions="permessage-deflate")
        conn = wsraw.Conn(client.sock, "server", rest, deflate_for_answer("permessage-deflate"))
        run_case(conn, case)
        status = client.wait_exit()
        if isinstance(case.expect, Echo):
            assert status == 0


BAD_ANSWERS = {
    "13.c8.1": "permessage-deflate; unknown_parameter",
    "13.c8.2": "permessage-deflate; server_max_window_bits=7",
    "13.c8.3": "permessage-deflate; server_max_window_bits",
    "13.c8.4": "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
    "13.c8.5": "permessage-deflate, permessage-deflate",
    "13.c8.6": "permessage-deflate; client_max_window_bits=16",
}


@pytest.mark.parametrize("cid", list(BAD_ANSWERS))
def test_13_c8_bad_answer_fails(ws_client, deviation, cid):
    """13.c8.x: an answer with an unknown, invalid or duplicated parameter, or the extension
    twice (two extensions claiming RSV1, RFC 7692 5): the client must fail the connection."""
    deviation("client", cid)
    with ws_client(cid.replace(".", "_")) as client:
        head, _ = client.read_request()
        offers(head)
        client.respond(head, extensions=BAD_ANSWERS[cid])
        conn = wsraw.Conn(client.sock, "server")
        conn.send_raw(conn.frame(OP_TEXT, b"must not be echoed"))
        assert_refused(conn)
        assert client.wait_exit() != 0, "the client exited 0 although it had to fail the connection"
