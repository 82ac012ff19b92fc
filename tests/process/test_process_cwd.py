"""Working directory of spawned children: also run against the LSR_NO_ADDCHDIR build (the vfork
fallback for C libraries without posix_spawn_file_actions_addchdir_np), by
tests/native/test_build_variants.py."""
import os
import sys

import pytest

from luaskills_runtime import LuaSkillsError
from luaskills_runtime.process import ProcessSession, exec_command

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX programs")


def test_cwd_with_path_lookup_and_args(tmp_path):
    (tmp_path / "f.txt").write_text("here")
    result = exec_command(program="cat", args=["f.txt"], cwd=str(tmp_path))
    assert result["ok"] is True and result["stdout"] == "here", result


def test_cwd_session_sees_its_directory_and_our_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("LSR_CWD_PROBE", "yes")
    with ProcessSession.open("sh", ["-c", 'pwd; echo "$LSR_CWD_PROBE"'], cwd=str(tmp_path)) as s:
        out = s.read(timeout_ms=5000, until_text="yes")["stdout"]
    assert out.split() == [os.path.realpath(tmp_path), "yes"]


def test_cwd_relative_program_path(tmp_path):
    script = tmp_path / "hello.sh"
    script.write_text("#!/bin/sh\necho hello from $(basename \"$PWD\")\n")
    script.chmod(0o755)
    result = exec_command(program="./hello.sh", cwd=str(tmp_path))
    assert result["stdout"] == f"hello from {tmp_path.name}\n", result


def test_cwd_missing_program_is_a_spawn_failure(tmp_path):
    with pytest.raises(LuaSkillsError,
                       match=r"^process\.session\.open: posix_spawn: No such file or directory$"):
        ProcessSession.open("luaskills-no-such-program", cwd=str(tmp_path))


@pytest.mark.parametrize("make_cwd,message", [
    (lambda tmp: str(tmp / "missing"), "chdir: No such file or directory"),
    (lambda tmp: (tmp / "file").write_text("x") and str(tmp / "file"), "chdir: Not a directory"),
])
def test_bad_cwd_is_a_spawn_failure(tmp_path, make_cwd, message):
    with pytest.raises(LuaSkillsError, match=rf"^process\.session\.open: {message}$"):
        ProcessSession.open("true", cwd=make_cwd(tmp_path))


def test_stdin_and_group_with_cwd(tmp_path):
    result = exec_command(program="sh", args=["-c", "cat; ps -o pgid= -p $$"], stdin="in\n",
                          cwd=str(tmp_path))
    lines = result["stdout"].split()
    assert lines[0] == "in" and int(lines[1]) != os.getpgid(0), result
