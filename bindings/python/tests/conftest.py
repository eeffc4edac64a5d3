import os
import sys
from pathlib import Path

# Tests run against the source tree's package unless an installed one is asked for.
if not os.environ.get("ORCHESTRA_TEST_INSTALLED"):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pytest


@pytest.fixture
def shared_bench() -> Path:
    p = Path(__file__).resolve().parents[3] / ".." / "shared" / "bench"
    if not p.exists():
        pytest.skip("../shared/bench is not beside the repository")
    return p.resolve()
