import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import orchestra
from orchestra import Message, Metrics, Queue

PKG = str(Path(__file__).resolve().parents[1])


def test_prometheus_and_snapshot():
    m = Metrics()
    m.counter_add("jobs_total", 3)
    m.gauge_set("temperature", 21.5)
    for v in range(1, 1001):
        m.histogram_record("latency_ns", v)
    q = Queue(name="inbox")
    q.push(Message("x"))
    m.register_queue(q, "inbox")
    r = orchestra.Router()
    r.subscribe("a.*", lambda msg: None)
    r.publish(Message("a.b"))
    r.publish(Message("zzz"))
    m.register_router(r, "main")
    text = m.prometheus()
    assert 'orchestra_router_published_total{router="main"} 2' in text
    assert 'orchestra_router_unhandled_total{router="main"} 1' in text
    assert 'orchestra_queue_depth{queue="inbox"} 1' in text
    assert "jobs_total 3" in text
    assert "# TYPE jobs_total counter" in text
    assert 'queue="inbox"' in text
    snap = m.snapshot()
    h = snap["latency_ns"]
    assert h["count"] == 1000
    assert abs(h["p50"] - 500) / 500 < 0.05
    assert h["max"] == 1000
    with pytest.raises(orchestra.InvalidArgument):
        m.counter_add("bad name!", 1)


def test_help_text():
    m = Metrics()
    m.counter_add("jobs_total", 1)
    assert "# HELP jobs_total" not in m.prometheus()
    m.set_help("jobs_total", "Jobs run")
    assert "# HELP jobs_total Jobs run\n# TYPE jobs_total counter\n" in m.prometheus()
    with pytest.raises(orchestra.InvalidArgument):
        m.set_help("jobs_total", "")


def test_unregister_queue_and_router():
    m = Metrics()
    q = Queue(name="inbox")
    r = orchestra.Router()
    m.register_queue(q, "inbox")
    m.register_router(r, "main")
    assert 'queue="inbox"' in m.prometheus()
    m.unregister_queue(q)
    m.unregister_router(r)
    text = m.prometheus()
    assert "orchestra_queue_" not in text and "orchestra_router_" not in text
    assert m._queues == []
    with pytest.raises(orchestra.NotFound):
        m.unregister_queue(q)
    with pytest.raises(orchestra.NotFound):
        m.unregister_router(r)


def test_errors_carry_detail():
    with pytest.raises(orchestra.ParseError) as e:
        Message.decode(b'{"id":"1","type":"x",}')
    assert "byte" in e.value.message
    assert e.value.name == "ORC_EPARSE"


def _run(code: str, **env):
    e = dict(os.environ)
    e.update(env)
    e["PYTHONPATH"] = PKG
    return subprocess.run([sys.executable, "-c", code], env=e, capture_output=True, text=True)


def test_loader_honours_orchestra_library_and_reports_missing_file(tmp_path):
    r = _run("import orchestra", ORCHESTRA_LIBRARY=str(tmp_path / "nope.so"))
    assert r.returncode != 0
    assert "ORCHESTRA_LIBRARY" in r.stderr and "nope.so" in r.stderr


def test_loader_refuses_an_unsupported_version(tmp_path):
    src = tmp_path / "fake.c"
    src.write_text("int orc_version(void) { return 990000; }\n")
    so = tmp_path / "liborchestra.so"
    subprocess.run(["cc", "-shared", "-fPIC", str(src), "-o", str(so)], check=True)
    r = _run("import orchestra", ORCHESTRA_LIBRARY=str(so))
    assert r.returncode != 0
    assert "99.0.0" in r.stderr and "supports" in r.stderr


def test_loader_prefers_the_library_in_the_package_folder(tmp_path):
    # A wheel carries liborchestra.so.0 in the package folder (setup.py); that copy wins over
    # ORCHESTRA_LIBRARY, which is then reported as unused. (Building and installing the wheel
    # itself is the ctest entry python.package.)
    import shutil
    pkg = tmp_path / "orchestra"
    shutil.copytree(Path(PKG) / "orchestra", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copyfile(os.path.realpath(orchestra.library_path), pkg / "liborchestra.so.0")
    e = dict(os.environ, PYTHONPATH=str(tmp_path), ORCHESTRA_LIBRARY=str(tmp_path / "nope.so"))
    code = "import orchestra; print(orchestra.library_path); print(orchestra.library_version)"
    r = subprocess.run([sys.executable, "-c", code], env=e, capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[0] == str(pkg / "liborchestra.so.0")
    assert "ORCHESTRA_LIBRARY" in r.stderr and "not used" in r.stderr
