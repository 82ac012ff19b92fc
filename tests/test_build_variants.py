"""Compile-time fallbacks, each built into a temporary directory and tested there:
LSR_NO_ADDCHDIR (cwd where posix_spawn_file_actions_addchdir_np is missing, glibc < 2.29)."""
import glob
import os
import sys

import pytest

from _build_variant import build_variant, run_tests

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX spawn fallbacks")

# every cwd test, plus spawn failures and teardown (the fallback spawns the tree's root)
CWD_TESTS = ("test_process_cwd.py", "test_exec_run.py", "test_process_session.py",
             "test_process_teardown.py", "-k", "cwd or missing or spawn or setsid-session_close")


@pytest.mark.timeout(600)
def test_cwd_without_addchdir(tmp_path):
    pkg = build_variant(str(tmp_path), defines=["LSR_NO_ADDCHDIR"])
    (module,) = glob.glob(os.path.join(pkg, "luaskills_runtime", "_native", "process*.so"))
    with open(module, "rb") as f:
        assert b"vfork" in f.read()   # the fallback is what this build spawns with
    result = run_tests(pkg, *CWD_TESTS)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and " failed" not in result.stdout
