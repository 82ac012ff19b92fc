"""Runs the Windows process core's C harness (native/tests_windows) under Wine.

The harness cross-compiles proc_windows.c / drain_windows.c / tree_windows.c (with lsr_error.c,
the one error writer) with mingw-w64 (-Wall -Wextra -Werror; run.sh also compiles every other
Windows C source, e.g. the timeout guard's luahook.c and luaapi_windows.c, but those written
against the CPython API) and exercises them against real Windows child processes: Job Object and
ToolHelp-snapshot tree teardown, the creation-time cutoff, non-reaping status, output draining and
spawn errors.  Skipped only when the cross compiler or Wine is not installed
(.ci/install-windows-toolchain.sh installs both on Debian).
"""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUN_SH = ROOT / "native" / "tests_windows" / "run.sh"
WINE_CANDIDATES = ("wine64", "/usr/lib/wine/wine64")


def _wine():
    for candidate in WINE_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


def _missing_toolchain():
    if shutil.which("x86_64-w64-mingw32-gcc") is None:
        return "x86_64-w64-mingw32-gcc not installed (.ci/install-windows-toolchain.sh)"
    if _wine() is None:
        return "wine64 not installed (.ci/install-windows-toolchain.sh)"
    return None


pytestmark = pytest.mark.skipif(sys.platform == "win32",
                                reason="runs the Windows harness under Wine on a POSIX host")


def test_windows_process_core_under_wine():
    missing = _missing_toolchain()
    if missing:
        # .ci/run installs the toolchain and sets this, so CI can never skip the harness silently.
        if os.environ.get("LSR_REQUIRE_WINDOWS_HARNESS") == "1":
            pytest.fail(missing)
        pytest.skip(missing)
    env = dict(os.environ, WINE=_wine())
    proc = subprocess.run(["sh", str(RUN_SH)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=900)
    output = proc.stdout.decode("utf-8", "replace").replace("\r\n", "\n")  # Windows CRT text mode
    summary = re.findall(r"^(\d+) passed, (\d+) failed$", output, re.MULTILINE)
    assert proc.returncode == 0, output
    assert summary, "harness printed no summary line:\n" + output
    passed, failed = map(int, summary[-1])
    assert failed == 0 and passed >= 20, output
    assert "built with -Wall -Wextra -Werror" in output, output
    # every other Windows C source compiled too, the timeout guard's among them
    compiled = re.findall(r"^run\.sh: also compiled (.*)$", output, re.MULTILINE)
    assert compiled and {"exec.c", "luahook.c", "luaapi_windows.c"} <= set(compiled[-1].split()), output
    # ... all but the CPython-API ones (no Windows Python headers here), and only those are left out
    left_out = re.findall(r"^run\.sh: not compiled \(CPython API\):(.*)$", output, re.MULTILINE)
    assert left_out, output
    expected = {source.name for source in (ROOT / "native").glob("*.c")
                if re.search(r"^#include <Python\.h>", source.read_text("utf-8"), re.MULTILINE)}
    assert set(left_out[-1].split()) == expected, output
    windows_sources = {source.name for source in (ROOT / "native").glob("*.c")
                       if not source.name.endswith("_posix.c")}
    # the harness links these (lsr_error.c: the one error writer the Windows files use)
    core = {"proc_windows.c", "drain_windows.c", "tree_windows.c", "winerr_windows.c", "lsr_error.c",
            "notify.c", "ringbuf.c"}
    assert set(compiled[-1].split()) == windows_sources - core - expected, output
    # POSIX-only sources (tree_posix.c: Linux teardown) are neither linked nor compiled
    assert not {"tree_posix.c", "proc_posix.c", "drain_posix.c"} & set(compiled[-1].split()), output
