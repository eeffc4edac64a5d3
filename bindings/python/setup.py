"""The wheel carries liborchestra.so inside the package (as pyzmq carries libzmq): building the
package runs the project's CMake for the one target `orchestra` and copies the library into
``orchestra/`` as ``liborchestra.so.0``; ``orchestra/_lib.py`` loads that copy first.

Where the library comes from, first match:
  1. ``ORC_BUILD_DIR``: an existing CMake build tree of liborchestra (as ``scripts/build``
     makes); ``cmake --build DIR --target orchestra`` brings its library up to date (a no-op
     when it is) and that library is taken.
  2. the repository's ``build/`` folder when its ``CMakeCache.txt`` is a build of this
     checkout: the same.
  3. otherwise a private build tree under this folder's ``build/`` (kept, so a second install
     is incremental): configured with the tests and benchmarks off, and only the library built.
     It needs what ``scripts/bootstrap`` installs (cmake, ninja, the -dev packages) and Swift
     6.3 on PATH or at /opt/swift.

Metadata lives in pyproject.toml; this file only adds the hook and tags the wheel for the
platform (py3-none-<platform>: ctypes needs no particular Python ABI).
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from setuptools import Distribution, setup
from setuptools.command.build_py import build_py

try:
    from setuptools.command.bdist_wheel import bdist_wheel   # setuptools >= 70.1
except ImportError:   # older setuptools (a --no-build-isolation build) with the wheel package
    from wheel.bdist_wheel import bdist_wheel

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PACKAGED_NAME = "liborchestra.so.0"   # the library's soname, one real file (wheels hold no symlinks)


def _log(msg: str) -> None:
    print(f"orchestra build: {msg}", flush=True)


def _cache_value(build: Path, key: str) -> str | None:
    cache = build / "CMakeCache.txt"
    if not cache.is_file():
        return None
    for line in cache.read_text(errors="replace").splitlines():
        if line.startswith(key + ":"):
            return line.split("=", 1)[1]
    return None


def _environment() -> dict:
    """The build's environment: Swift from PATH, else from /opt/swift (as scripts/build)."""
    env = dict(os.environ)
    if shutil.which("swiftc") is None and Path("/opt/swift/usr/bin/swiftc").exists():
        env["PATH"] = "/opt/swift/usr/bin" + os.pathsep + env.get("PATH", "")
    return env


def _run(cmd: list[str], env: dict) -> None:
    _log(" ".join(cmd))
    subprocess.run(cmd, check=True, env=env)


def _build_tree(private: Path) -> tuple[Path, bool]:
    """The build tree to take the library from, and whether it still needs configuring."""
    given = os.environ.get("ORC_BUILD_DIR")
    if given:
        tree = Path(given).resolve()
        if _cache_value(tree, "CMAKE_PROJECT_NAME") != "orchestra":
            raise SystemExit(f"orchestra build: ORC_BUILD_DIR={given} is not a configured liborchestra "
                             "build tree (no CMakeCache.txt of project orchestra)")
        return tree, False
    repo_build = ROOT / "build"
    home = _cache_value(repo_build, "CMAKE_HOME_DIRECTORY")
    if home and Path(home).resolve() == ROOT:
        return repo_build, False
    if not (ROOT / "CMakeLists.txt").is_file() or not (ROOT / "include" / "orchestra.h").is_file():
        raise SystemExit(f"orchestra build: liborchestra's sources are not at {ROOT} (build the package "
                         "from a clone of the repository, or set ORC_BUILD_DIR to a build tree)")
    return private, not (private / "CMakeCache.txt").is_file()


def build_library(private: Path) -> Path:
    """Builds (or brings up to date) liborchestra and returns the path of the real file."""
    env = _environment()
    for tool in ("cmake", "ninja"):
        if shutil.which(tool, path=env["PATH"]) is None:
            raise SystemExit(f"orchestra build: {tool} not found (Debian: scripts/bootstrap installs it)")
    tree, configure = _build_tree(private)
    if configure:
        _run(["cmake", "-S", str(ROOT), "-B", str(tree), "-G", "Ninja", "-DCMAKE_BUILD_TYPE=Release",
              "-DBUILD_TESTING=OFF", "-DORC_BUILD_BENCH=OFF"], env)
    _log(f"library from the build tree {tree}")
    _run(["cmake", "--build", str(tree), "--target", "orchestra"], env)
    lib = (tree / "liborchestra.so").resolve()
    if not lib.is_file():
        raise SystemExit(f"orchestra build: {tree} built no liborchestra.so")
    return lib


class build_py_with_library(build_py):
    """build_py, then the library into the built package."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return   # an editable install loads the repository's build/ library (orchestra/_lib.py)
        private = Path(self.get_finalized_command("build").build_base).resolve() / "liborchestra"
        lib = build_library(private)
        dest = Path(self.build_lib) / "orchestra" / PACKAGED_NAME
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(lib, dest)
        # The symbol table and debug sections are not needed to load it (its exported
        # dynamic symbols stay): the copy in the wheel shrinks by about a third.
        strip = shutil.which("strip")
        if strip:
            subprocess.run([strip, "--strip-unneeded", str(dest)], check=True)
        os.chmod(dest, 0o755)
        _log(f"packaged {lib.name} as orchestra/{PACKAGED_NAME} ({dest.stat().st_size:,} bytes)")


class NativeDistribution(Distribution):
    """Holds a native library: installed as platform-specific (platlib), like an extension."""

    def has_ext_modules(self) -> bool:
        return True


class platform_wheel(bdist_wheel):
    """Tagged for the platform but for any Python 3: ctypes needs no particular Python ABI."""

    def get_tag(self):
        _, _, plat = super().get_tag()
        return "py3", "none", plat


setup(distclass=NativeDistribution, cmdclass={"build_py": build_py_with_library, "bdist_wheel": platform_wheel})
