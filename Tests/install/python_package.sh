#!/usr/bin/env bash
# The Python package as a user gets it: from a copy of the source tree (no build/ folder in it),
# `pip wheel ./bindings/python` and `pip install ./bindings/python` (pip's default isolated
# build), each into a fresh virtual environment, then `import orchestra` with no environment
# variables at all: the library must be the one inside the package, and it must work (a message
# round trip and a WebSocket echo on 127.0.0.1).
#   python_package.sh PYTHON BUILD_DIR SOURCE_DIR
# BUILD_DIR is handed to the build hook as ORC_BUILD_DIR so the library is not compiled again
# (bindings/python/setup.py brings it up to date and copies it).
set -euo pipefail
python=$1; build=$2; src=$3
work=$(mktemp -d /tmp/orc-pypkg.XXXXXX)
trap 'rm -rf "$work"' EXIT
fails=0; passes=0
pass() { passes=$((passes+1)); echo "ok: $1"; }
fail() { fails=$((fails+1)); echo "FAILED: $1"; }

"$(dirname "$0")/copy_source.sh" "$src" "$work/src"
test ! -e "$work/src/build"

check_import() {   # check_import VENV LABEL
  local venv=$1 label=$2
  if (cd "$work" && env -i PATH=/usr/bin:/bin "$venv/bin/python" - "$venv") <<'EOF'
import asyncio, os, sys
import orchestra
venv = os.path.realpath(sys.argv[1])
pkg = os.path.dirname(os.path.realpath(orchestra.__file__))
print("library_version", orchestra.library_version, "from", orchestra.library_path)
assert pkg.startswith(venv + os.sep), pkg
assert os.path.realpath(orchestra.library_path) == os.path.join(pkg, "liborchestra.so.0"), orchestra.library_path
mapped = {line.split()[-1] for line in open("/proc/self/maps") if "liborchestra" in line}
assert mapped == {os.path.join(pkg, "liborchestra.so.0")}, mapped
m = orchestra.Message("task.stream", source="wheel", payload={"data": "hello"})
assert orchestra.Message.decode(m.encode("msgpack"), "msgpack").payload == {"data": "hello"}

async def echo():
    async with orchestra.Server(port=0) as server:
        async def serve():
            async for ev in server:
                if ev.type == "message":
                    await server.send(ev.connection, ev.data)
        task = asyncio.create_task(serve())
        async with orchestra.Client(f"ws://127.0.0.1:{server.port}/") as ws:
            await ws.send("ping")
            assert await ws.recv() == "ping"
        task.cancel()

asyncio.run(asyncio.wait_for(echo(), 30))
EOF
  then pass "$label: import orchestra with no environment, the packaged library, an echo"
  else fail "$label: import orchestra with no environment"; fi
}

# pip wheel, then the wheel into a fresh venv.
"$python" -m venv "$work/venv-wheel"
if ORC_BUILD_DIR="$build" "$work/venv-wheel/bin/pip" wheel -q --no-deps -w "$work/wheels" "$work/src/bindings/python"; then
  pass "pip wheel ./bindings/python"
else
  fail "pip wheel ./bindings/python"
fi
wheel=$(ls "$work"/wheels/orchestra-*.whl 2>/dev/null | head -1 || true)
if [ -n "$wheel" ]; then
  echo "wheel: $(basename "$wheel"), $(stat -c %s "$wheel") bytes"
  "$work/venv-wheel/bin/python" -m zipfile -l "$wheel"
  case "$(basename "$wheel")" in
    orchestra-*-py3-none-linux_*.whl) pass "wheel tagged py3-none-linux" ;;
    *) fail "wheel tag: $(basename "$wheel")" ;;
  esac
  if "$work/venv-wheel/bin/python" -m zipfile -l "$wheel" | grep '^orchestra/liborchestra.so.0 ' >/dev/null; then
    pass "the wheel carries orchestra/liborchestra.so.0"
  else
    fail "the wheel carries no orchestra/liborchestra.so.0"
  fi
  "$work/venv-wheel/bin/pip" install -q "$wheel"
  check_import "$work/venv-wheel" "wheel"
fi

# pip install ./bindings/python straight from the source folder.
"$python" -m venv "$work/venv-install"
if ORC_BUILD_DIR="$build" "$work/venv-install/bin/pip" install -q "$work/src/bindings/python"; then
  pass "pip install ./bindings/python"
  check_import "$work/venv-install" "pip install"
else
  fail "pip install ./bindings/python"
fi

echo "python package: $passes passed, $fails failed"
[ "$fails" -eq 0 ]
