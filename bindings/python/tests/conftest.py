import os
import subprocess
import sys
import tempfile
from pathlib import Path

# Tests run against the source tree's package unless an installed one is asked for.
if not os.environ.get("ORCHESTRA_TEST_INSTALLED"):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pytest


@pytest.fixture
def shared_bench() -> Path:
    return Path(__file__).resolve().parents[3] / "bench" / "data"


@pytest.fixture(scope="session")
def pki():
    """A test CA and certificates made now with `openssl` (Tests/support/make-test-pki.sh of
    the repository): a function(name) -> path, e.g. pki("ca.pem")."""
    script = Path(__file__).resolve().parents[3] / "Tests" / "support" / "make-test-pki.sh"
    with tempfile.TemporaryDirectory(prefix="orc-py-pki-") as d:
        r = subprocess.run(["sh", str(script), d], capture_output=True, text=True)
        if r.returncode != 0:
            pytest.fail(f"making the test certificates failed: {r.stdout}{r.stderr}")
        yield lambda name: os.path.join(d, name)
