"""Build standalone `luajit` binaries from the LuaJIT sources bundled in lupa's sdist.

Two flavours: `compat52` (built with -DLUAJIT_ENABLE_LUA52COMPAT, the dialect of the reference,
whose mlua feature `luajit52` builds LuaJIT that way) and `plain` (lupa's own configuration).
Binaries are cached under ``$XDG_CACHE_HOME/luaskills-runtime/luajit-lupa-<version>/`` (or
~/.cache/...), keyed by the installed lupa version, so only the first run downloads (pip, ~20 s)
and builds (make, ~10-20 s each); later runs find the files.

Run as a script to build both and print their paths:  python3 tests/lua/lua_reference/build_luajit.py
"""
from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

FLAVOURS = {"compat52": "-DLUAJIT_ENABLE_LUA52COMPAT", "plain": ""}
SOURCE_DIR = "third-party/luajit21"  # where lupa's sdist keeps LuaJIT


class BuildUnavailable(Exception):
    """The reference binary cannot be built here (no network, no compiler); str() says why."""


def lupa_version() -> str:
    return importlib.metadata.version("lupa")


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "luaskills-runtime" / f"luajit-lupa-{lupa_version()}"


def _run(command, cwd=None, env=None, timeout=600) -> None:
    try:
        done = subprocess.run(command, cwd=cwd, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=timeout)
    except FileNotFoundError as error:
        raise BuildUnavailable(f"{command[0]} not found: {error}") from None
    except subprocess.TimeoutExpired:
        raise BuildUnavailable(f"{' '.join(command)} took more than {timeout} s") from None
    if done.returncode != 0:
        tail = done.stdout.decode("utf-8", "replace")[-2000:]
        raise BuildUnavailable(f"{' '.join(command)} failed (exit {done.returncode}):\n{tail}")


def sdist_path() -> Path:
    """lupa's sdist in the cache, fetched with `pip download` when missing."""
    version = lupa_version()
    target = cache_dir() / f"lupa-{version}.tar.gz"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lsr-lupa-sdist-") as scratch:
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                   "--no-binary", ":all:", "-d", scratch, f"lupa=={version}"]
        # pip runs the sdist's setup.py to read its metadata, and lupa's setup.py then builds
        # its bundled LuaJITs (minutes); LUPA_NO_LUAJIT=true (its own option) skips that.
        _run(command, env=dict(os.environ, LUPA_NO_LUAJIT="true"))
        found = list(Path(scratch).glob("lupa-*.tar.gz"))
        if not found:
            raise BuildUnavailable(f"pip download left no lupa sdist in {scratch}")
        partial = target.with_suffix(".part")
        shutil.copyfile(found[0], partial)
        os.replace(partial, target)
    return target


def luajit_path(flavour: str) -> Path:
    """The cached binary of `flavour` (built on first use); raises BuildUnavailable."""
    if flavour not in FLAVOURS:
        raise ValueError(f"unknown flavour {flavour!r}")
    if sys.platform == "win32":
        raise BuildUnavailable("the reference luajit is built with make on POSIX systems only")
    binary = cache_dir() / flavour / "luajit"
    if binary.exists():
        return binary
    archive = sdist_path()
    with tempfile.TemporaryDirectory(prefix="lsr-luajit-build-") as scratch:
        prefix = f"lupa-{lupa_version()}/{SOURCE_DIR}/"
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(prefix)]
            if not members:
                raise BuildUnavailable(f"{archive.name} has no {SOURCE_DIR}")
            for member in members:
                member.name = member.name[len(prefix):]
                if not member.name:
                    continue
                # the "data" filter (Python >= 3.12, backported) refuses unsafe members
                if hasattr(tarfile, "data_filter"):
                    tar.extract(member, scratch, filter="data")
                else:
                    tar.extract(member, scratch)
        _run(["make", "-j2", "BUILDMODE=static", f"XCFLAGS={FLAVOURS[flavour]}"], cwd=scratch)
        built = Path(scratch) / "src" / "luajit"
        binary.parent.mkdir(parents=True, exist_ok=True)
        partial = binary.with_suffix(".part")
        shutil.copyfile(built, partial)
        os.chmod(partial, 0o755)
        os.replace(partial, binary)
    return binary


if __name__ == "__main__":
    for name in FLAVOURS:
        print(name, luajit_path(name))
