"""Client suite, frame-level Autobahn groups 1-7, 9, 10 (cases.py) against the echo client
under test: we are a raw server (no extension negotiated), the client must echo, answer, close
or fail as each case says, then exit (with status 0 after a clean close we started)."""
import pytest

from cases import CASES
from engine import Echo, run_case

CLIENT_CASES = [c for c in CASES if "client" in c.roles]


@pytest.mark.parametrize("case", CLIENT_CASES, ids=[c.test_id for c in CLIENT_CASES])
def test_case(case, ws_client, deviation):
    deviation("client", case.id)
    with ws_client(case.test_id) as client:
        conn = client.handshake()
        run_case(conn, case)
        status = client.wait_exit()
        if isinstance(case.expect, Echo):
            assert status == 0, f"the client exited with status {status} after a clean close"
