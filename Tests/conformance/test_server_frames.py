"""Server suite, frame-level Autobahn groups 1-7, 9, 10 (cases.py) against the echo server
under test: we are a raw client, the server must echo, answer, close or fail as each case says."""
import pytest

from cases import CASES
from engine import run_case

SERVER_CASES = [c for c in CASES if "server" in c.roles]


@pytest.mark.parametrize("case", SERVER_CASES, ids=[c.test_id for c in SERVER_CASES])
def test_case(case, ws_server, deviation, max_size):
    deviation("server", case.id)
    if case.largest_message() > max_size:
        pytest.skip(f"a message of this case passes the server's limit (--max-size {max_size})")
    conn, _ = ws_server.connect(case.test_id)
    run_case(conn, case)
