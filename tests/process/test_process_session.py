"""ProcessSession: reads, writes, status, close/kill and the reference's validation texts."""
import os
import sys
import time

import pytest

from luaskills_runtime import LuaSkillsError
from luaskills_runtime.process import ProcessSession

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX commands (sh, cat)")

PY = sys.executable


def _glibc_at_least(major, minor):
    try:
        version = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError):
        return False
    if not version.startswith("glibc "):
        return False
    have = tuple(int(part) for part in version.split()[1].split(".")[:2])
    return have >= (major, minor)


def sh(script, **kwargs):
    return ProcessSession.open("sh", ["-c", script], **kwargs)


def read_all(session, timeout_ms=5000):
    """Everything until both streams end."""
    out, err = "", ""
    deadline = time.monotonic() + timeout_ms / 1000
    while time.monotonic() < deadline:
        result = session.read(timeout_ms=200)
        out += result["stdout"]
        err += result["stderr"]
        if not result["timed_out"] and not result["stdout"] and not result["stderr"]:
            return out, err   # returned without output and without timeout: both at EOF
    raise AssertionError("streams did not end")


def test_echo_round_trip_through_cat():
    with ProcessSession.open("cat") as session:
        assert isinstance(session.pid, int) and session.pid > 0
        assert session.write("ping 1\n") is True
        result = session.read(timeout_ms=5000, until_text="1\n")
        assert result == {
            "stdout": "ping 1\n", "stderr": "",
            "stdout_encoding": "utf-8", "stderr_encoding": "utf-8",
            "stdout_lossy": False, "stderr_lossy": False,
            "stdout_base64": None, "stderr_base64": None,
            "timed_out": False,
        }


def test_read_returns_as_soon_as_output_arrives():
    with sh("sleep 0.3; echo late; read _") as session:
        start = time.monotonic()
        result = session.read(timeout_ms=10000)
        elapsed = time.monotonic() - start
        assert result["stdout"] == "late\n" and not result["timed_out"]
        assert 0.2 < elapsed < 5


def test_read_times_out_without_output():
    with ProcessSession.open("sleep", ["30"]) as session:
        start = time.monotonic()
        result = session.read(timeout_ms=150)
        elapsed = time.monotonic() - start
        assert result["timed_out"] is True and result["stdout"] == "" and result["stderr"] == ""
        assert 0.14 <= elapsed < 3


def test_read_returns_at_eof_without_timeout():
    with sh("exit 0") as session:
        start = time.monotonic()
        result = session.read(timeout_ms=10000)
        assert result["timed_out"] is False and result["stdout"] == ""
        assert time.monotonic() - start < 5


def test_stdout_and_stderr_are_separate():
    with sh("echo out; echo err >&2") as session:
        out, err = read_all(session)
        assert (out, err) == ("out\n", "err\n")


def test_max_bytes_limits_each_stream_and_keeps_the_rest():
    with sh("printf 0123456789; printf abcdefghij >&2; read _") as session:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:   # both streams buffered
            seq, held_out, held_err, _, _ = session._streams()
            if held_out == 10 and held_err == 10:
                break
            time.sleep(0.01)
        first = session.read(max_bytes=4)
        assert (first["stdout"], first["stderr"]) == ("0123", "abcd")
        second = session.read(max_bytes=100)
        assert (second["stdout"], second["stderr"]) == ("456789", "efghij")


def test_output_buffered_before_close_stays_readable():
    with sh("echo one; echo two >&2; read _") as session:
        session.read(timeout_ms=5000, until_text="two")  # wait until both are there ...
    # ... they were drained by that read; now leave some unread across the close
    session = sh("echo kept; echo also >&2; read _")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and session._streams()[1:3] != (5, 5):
        time.sleep(0.01)
    final = session.close(timeout_ms=5000)   # stdin EOF ends `read _`, which then fails
    assert final == {"running": False, "exited": True, "success": False, "code": 1}
    result = session.read(timeout_ms=1000)
    assert (result["stdout"], result["stderr"], result["timed_out"]) == ("kept\n", "also\n", False)
    again = session.read(timeout_ms=1000)
    assert (again["stdout"], again["stderr"], again["timed_out"]) == ("", "", False)


def test_close_closes_stdin_and_returns_the_exit_status():
    session = ProcessSession.open("cat")
    session.write("bye\n")
    final = session.close(timeout_ms=5000)
    assert final == {"running": False, "exited": True, "success": True, "code": 0}
    assert session.read(timeout_ms=1000)["stdout"] == "bye\n"
    assert session.close() == final            # cached, idempotent
    assert session.kill() is True
    assert session.status() == final
    with pytest.raises(LuaSkillsError, match=r"^process\.session\.write: stdin is closed$"):
        session.write("more")
    with pytest.raises(LuaSkillsError, match=r"^process\.session\.write: stdin is closed$"):
        session.write()


def test_exit_code_and_signal_death():
    with sh("exit 7") as session:
        deadline = time.monotonic() + 5
        while session.status()["running"] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert session.status() == {"running": False, "exited": True, "success": False, "code": 7}
        assert session.close() == {"running": False, "exited": True, "success": False, "code": 7}
    with sh("kill -TERM $$") as session:
        deadline = time.monotonic() + 5
        while session.status()["running"] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert session.status() == {"running": False, "exited": True, "success": False, "code": None}


def test_close_kills_a_child_that_ignores_stdin_after_the_timeout():
    session = ProcessSession.open("sleep", ["30"])
    assert session.status() == {"running": True, "exited": False, "success": None, "code": None}
    start = time.monotonic()
    final = session.close(timeout_ms=200)
    elapsed = time.monotonic() - start
    assert final == {"running": False, "exited": True, "success": False, "code": None}
    assert 0.19 <= elapsed < 3


def test_kill_then_write_reports_the_broken_pipe():
    session = ProcessSession.open("cat")
    assert session.kill() is True
    assert session.kill() is True
    with pytest.raises(LuaSkillsError, match=r"^process\.session\.write: write: Broken pipe"):
        session.write("x" * 100000)


def test_write_values_are_converted_like_the_reference():
    with ProcessSession.open("cat") as session:
        session.write("s ", b"b ", 7, " ", 1.5, " ", 2.0, " ", 1e20, " ", -0.0, " ", True, " ",
                      False, " ", float("nan"), " ", float("inf"), " end")
        out = session.read(timeout_ms=5000, until_text="end")["stdout"]
        assert out == "s b 7 1.5 2 100000000000000000000 0 true false NaN inf end"
        with pytest.raises(LuaSkillsError, match=r"^process\.session\.write: unsupported value nil$"):
            session.write(None)
        with pytest.raises(LuaSkillsError, match=r"^process\.session\.write: unsupported value table$"):
            session.write("before ", ["x"])
        # the values before the bad one were written, as the reference does
        assert session.read(timeout_ms=5000, until_text="before ")["stdout"] == "before "
        with pytest.raises(LuaSkillsError, match=r"^process\.session\.write: string must be valid UTF-8$"):
            session.write(b"\xff")


def test_missing_program_fails_at_open_not_as_exit_127():
    with pytest.raises(LuaSkillsError,
                       match=r"^process\.session\.open: posix_spawn: No such file or directory$"):
        ProcessSession.open("luaskills-no-such-program")
    with pytest.raises(LuaSkillsError, match=r"^process\.session\.open: chdir: No such file"):
        ProcessSession.open("true", cwd="/luaskills/no/such/dir")


def test_cwd_and_args_without_shell(tmp_path):
    with ProcessSession.open("sh", ["-c", 'pwd; printf "%s|" "$@"', "argv0", "a b", "$HOME", ""],
                             cwd=str(tmp_path)) as session:
        out, _ = read_all(session)
        assert out == f"{os.path.realpath(tmp_path)}\na b|$HOME||"


def test_child_inherits_only_stdio(tmp_path):
    other = ProcessSession.open("sleep", ["30"])   # its pipes must not leak into the next child
    try:
        with ProcessSession.open(PY, ["-c", "import os; print(sorted(map(int, os.listdir('/proc/self/fd'))))"]) as session:
            out, _ = read_all(session)
            fds = eval(out)
            assert fds[:3] == [0, 1, 2]
            if _glibc_at_least(2, 34):   # posix_spawn closes everything else (closefrom)
                assert fds == [0, 1, 2, 3]   # + the directory listing's own fd
    finally:
        other.kill()


def test_child_has_default_sigpipe():
    # Python ignores SIGPIPE; the child must get the default back (yes | head ends quickly).
    with sh("yes | head -c 10; echo; echo done") as session:
        out, _ = read_all(session, timeout_ms=10000)
        assert out.endswith("done\n")


def test_encodings():
    with ProcessSession.open("cat", stdin_encoding="latin1", stdout_encoding="base64") as session:
        session.write("é€")
        result = session.read(timeout_ms=5000)
        assert result["stdout"] == "6T8=" and result["stdout_base64"] == "6T8="
        assert result["stdout_encoding"] == "base64" and result["stdout_lossy"] is False
    with ProcessSession.open("cat", encoding="UTF8") as session:
        session.write("\u00e9")
        assert session.read(timeout_ms=5000)["stdout"] == "\u00e9"
    with sh(r"printf '\377ok'") as session:
        result = session.read(timeout_ms=5000, until_text="ok")
        assert result["stdout"] == "\ufffdok" and result["stdout_lossy"] is True
        assert result["stdout_base64"] == "/29r"
    with ProcessSession.open("cat", stdin_encoding="gbk") as session:
        with pytest.raises(LuaSkillsError, match="^process.session.write: gbk encode failed without replacement$"):
            session.write("\U0001F600")


@pytest.mark.parametrize("kwargs, message", [
    ({"program": ""}, "process.session.open: program must not be empty"),
    ({"program": "  \t"}, "process.session.open: program must not be empty"),
    ({"program": 5}, "process.session.open: program must be a string, got number"),
    ({"program": None}, "process.session.open: program must be a string, got nil"),
    ({"program": "a\0b"}, "process.session.open: program must not contain NUL bytes"),
    ({"program": b"\xff"}, "process.session.open: program must be valid UTF-8"),
    ({"program": "true", "args": "x"}, "process.session.open: args must be an array table, got string"),
    ({"program": "true", "args": 3}, "process.session.open: args must be an array table, got number"),
    ({"program": "true", "args": ["ok", 3]}, "process.session.open: args must be a string, got number"),
    ({"program": "true", "args": ["\0"]}, "process.session.open: args must not contain NUL bytes"),
    ({"program": "true", "cwd": " "}, "process.session.open: cwd must not be empty"),
    ({"program": "true", "cwd": 1}, "process.session.open: cwd must be a string, got number"),
    ({"program": "true", "encoding": "nope"}, "process.session.open: unsupported text encoding `nope`"),
    ({"program": "true", "stdout_encoding": 1}, "process.session.open: stdout_encoding must be a string, got number"),
    ({"program": "true", "stdin_encoding": "x"}, "process.session.open: unsupported text encoding `x`"),
    ({"program": "true", "buffer_limit_bytes": 0}, "process.session.open: buffer_limit_bytes must be a positive number, got number"),
    ({"program": "true", "buffer_limit_bytes": -5}, "process.session.open: buffer_limit_bytes must be a positive number, got number"),
    ({"program": "true", "buffer_limit_bytes": "1"}, "process.session.open: buffer_limit_bytes must be a positive number, got string"),
    ({"program": "true", "buffer_limit_bytes": True}, "process.session.open: buffer_limit_bytes must be a positive number, got boolean"),
    ({"program": "true", "buffer_limit_bytes": float("nan")}, "process.session.open: buffer_limit_bytes must be a positive number, got number"),
])
def test_open_validation_texts(kwargs, message):
    with pytest.raises(LuaSkillsError) as info:
        ProcessSession.open(**kwargs)
    assert str(info.value) == message


@pytest.mark.parametrize("kwargs, message", [
    ({"timeout_ms": 0}, "process.session.read: timeout_ms must be a positive number, got number"),
    ({"timeout_ms": "1"}, "process.session.read: timeout_ms must be a positive number, got string"),
    ({"max_bytes": -1}, "process.session.read: max_bytes must be a positive number, got number"),
    ({"max_bytes": {}}, "process.session.read: max_bytes must be a positive number, got table"),
    ({"until_text": ""}, "process.session.read: until_text must not be empty"),
    ({"until_text": 5}, "process.session.read: until_text must be a string, got number"),
])
def test_read_validation_texts(kwargs, message):
    with ProcessSession.open("cat") as session:
        with pytest.raises(LuaSkillsError) as info:
            session.read(**kwargs)
        assert str(info.value) == message


def test_close_validation_text():
    with ProcessSession.open("cat") as session:
        with pytest.raises(LuaSkillsError) as info:
            session.close(timeout_ms=0)
        assert str(info.value) == "process.session.close: timeout_ms must be a positive number, got number"


def test_fractional_numbers_truncate_like_the_reference():
    # 0.5 passes the positivity check and becomes 0: a zero-byte drain, a one-byte buffer.
    # stdout closes after "abc": its EOF says every byte went through the one-byte buffer
    with sh("printf abc; exec >&-; read _", buffer_limit_bytes=0.5) as session:
        assert session.read(timeout_ms=5000, max_bytes=0.5)["stdout"] == ""
        deadline = session._deadline(5000)
        seq, _, _, stdout_eof, _ = session._streams()
        while not stdout_eof and session._now_ms() < deadline:
            session._wait_change(seq, deadline)
            seq, _, _, stdout_eof, _ = session._streams()
        assert stdout_eof
        assert session.read(timeout_ms=1000)["stdout"] == "c"   # newest byte only


def test_write_to_a_dead_child_with_default_sigpipe_raises_instead_of_killing_the_host():
    # A host that restored SIGPIPE's default (common for CLI tools) must get the error back.
    import subprocess
    script = (
        "import signal, sys\n"
        "signal.signal(signal.SIGPIPE, signal.SIG_DFL)\n"
        "from luaskills_runtime.process import ProcessSession\n"
        "s = ProcessSession.open('true')\n"
        "s._wait_exit(5000)\n"
        "try:\n"
        "    s.write('x' * 200000)\n"
        "except Exception as error:\n"
        "    print('raised:', error)\n"
        "s.close()\n"
        "print('alive')\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    done = subprocess.run([PY, "-c", script], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "raised: process.session.write: write: Broken pipe\nalive\n"
