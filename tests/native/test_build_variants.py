"""Compile-time variants, each built into a temporary directory and tested there:
LSR_NO_ADDCHDIR (cwd where posix_spawn_file_actions_addchdir_np is missing, glibc < 2.29) and
the LSR_DEBUG build (fault injection: a drainer whose malloc fails tells its readers)."""
import glob
import os
import subprocess
import sys

import pytest

from _build_variant import CI_VARIANT, build_variant, run_tests

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX spawn fallbacks")

# every cwd test, plus spawn failures and teardown (the fallback spawns the tree's root)
CWD_TESTS = ("process/test_process_cwd.py", "process/test_exec_run.py",
             "process/test_process_session.py", "process/test_process_teardown.py",
             "-k", "cwd or missing or spawn or setsid-session_close")


@pytest.fixture(scope="module")
def variant(tmp_path_factory):
    """The package built as .ci/run checks it: LSR_DEBUG and LSR_NO_ADDCHDIR (built once)."""
    if os.environ.get("LSR_VARIANT_UNDER_TEST"):
        pytest.skip("already running inside a variant build")
    return build_variant(str(tmp_path_factory.mktemp("variant")), **CI_VARIANT)


@pytest.mark.timeout(600)
def test_cwd_without_addchdir(variant):
    (module,) = glob.glob(os.path.join(variant, "luaskills_runtime", "_native", "process*.so"))
    with open(module, "rb") as f:
        assert b"vfork" in f.read()   # the fallback is what this build spawns with
    result = run_tests(variant, *CWD_TESTS)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and " failed" not in result.stdout


DRAINER_MALLOC_FAILS = """
from luaskills_runtime import LuaSkillsError
from luaskills_runtime._native.process import _debug_fail_drainer_malloc
from luaskills_runtime.process import ProcessSession
assert _debug_fail_drainer_malloc(True) is True
session = ProcessSession.open("sh", ["-c", "echo hi; sleep 0.2"])
try:
    session.read(timeout_ms=10_000, until_text="never printed")
except LuaSkillsError as error:
    print("raised:", error)
session.kill()
again = ProcessSession.open("sh", ["-c", "echo again"])   # the next drainer starts normally
print("next:", again.read(timeout_ms=10_000, until_text="again")["stdout"].strip())
again.close()
"""


@pytest.mark.timeout(600)
def test_drainer_malloc_failure_reaches_the_reader(variant):
    result = subprocess.run([sys.executable, "-c", DRAINER_MALLOC_FAILS], capture_output=True,
                            text=True, env=dict(os.environ, PYTHONPATH=variant), timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "raised: process.session.read: malloc: Cannot allocate memory", "next: again"]

