"""The luaskills-runtime command: `run` (exit 0 / 1 / 2) and `eval`."""
import os
import subprocess
import sys

import pytest

from _process_support import child_env
from luaskills_runtime.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "system_report.lua")


def cli(*argv, cwd=None):
    env = child_env()
    return subprocess.run([sys.executable, "-m", "luaskills_runtime", *argv], capture_output=True,
                          text=True, timeout=60, env=env, cwd=cwd)


def test_run_code_success_prints_the_report():
    done = cli("run", "-e", 'print("hi") return args.x + 1', "--args", '{"x": 41}',
               "--task", "add one")
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        "# Runtime Execution Result\n\n## Task\nadd one\n\n## Status\nSUCCESS\n\n"
        "## Printed Output\n```text\nhi\n```\n\n## Returned Values\n1. \n```json\n42\n```\n")
    assert done.stderr == ""


def test_run_failure_exits_1():
    done = cli("run", "-e", "error('nope', 0)")
    assert done.returncode == 1
    assert done.stdout.startswith("# Runtime Execution Error\n")
    assert "runtime error: nope" in done.stdout


def test_run_timeout_exits_1():
    done = cli("run", "--timeout-ms", "100", "-e", "while true do end")
    assert done.returncode == 1
    assert "luaexec execution timed out after 100 ms" in done.stdout


@pytest.mark.parametrize("argv, message", [
    (["run", "--timeout-ms", "0", "-e", "return 1"], "luaexec timeout_ms must be greater than 0"),
    (["run", "-e", "   "], "luaexec requires code or file"),
    (["run", "missing_script.lua"], "Failed to read luaexec file "),
    (["run", "-e", "return 1", "--args", "{bad"], "--args is not valid JSON"),
    (["run", "--timeout-ms", "-5", "-e", "return 1"],
     "invalid value: integer `-5`, expected u64"),
])
def test_rejected_requests_exit_2_with_the_message_on_stderr(argv, message):
    done = cli(*argv)
    assert done.returncode == 2
    assert done.stdout == ""
    assert message in done.stderr


@pytest.mark.parametrize("argv", [["run"], ["run", "a.lua", "-e", "x"],
                                  ["run", "--timeout-ms", "soon", "-e", "x"]])
def test_usage_errors_exit_2(argv):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2


def test_run_file_uses_its_folder(tmp_path):
    (tmp_path / "note.txt").write_text("from the folder")
    (tmp_path / "script.lua").write_text("return io.open('note.txt'):read('a')")
    done = cli("run", "script.lua", cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith("```text\nfrom the folder\n```\n")


@pytest.mark.skipif(os.name == "nt", reason="the example's POSIX branch is what this checks")
def test_example_system_report():
    done = cli("run", EXAMPLE, "--args", f'{{"probe": ["{sys.executable}", "--version"]}}')
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"kernel": "' in done.stdout and '"probe": "Python ' in done.stdout
    assert f'"script_folder": "{os.path.dirname(EXAMPLE)}"' in done.stdout


def test_eval_still_works(capsys):
    assert main(["eval", "return {args.a, 2}", "--args", '{"a": 1}']) == 0
    assert capsys.readouterr().out == "[\n  1,\n  2\n]\n"


# ---- Ctrl-C -------------------------------------------------------------------------------------

INTERRUPT_LIMIT_S = 0.2


@pytest.mark.parametrize("command", ["run", "eval"])
def test_ctrl_c_cancels_prints_one_line_and_exits_130(tmp_path, command):
    import signal
    import time

    from _process_support import wait_gone

    ready, pid_file = tmp_path / "ready", tmp_path / "pid"
    code = ("vulcan.process.session.open{program='sh', args={'-c', 'sleep 30 & echo $! > "
            f"{pid_file}; wait'}}}}\n"
            f"vulcan.process.exec{{command='touch {ready}'}}\n"
            "while true do end")
    argv = ["run", "-e", code] if command == "run" else ["eval", code]
    env = child_env()
    proc = subprocess.Popen([sys.executable, "-m", "luaskills_runtime", *argv], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not (ready.exists() and pid_file.exists() and pid_file.read_text().strip()):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.01)
        grandchild = int(pid_file.read_text())
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.wait(10)
        elapsed = time.monotonic() - t0
        out, err = proc.communicate()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    assert out == "" and err == "luaskills-runtime: interrupted\n"
    assert elapsed < INTERRUPT_LIMIT_S, elapsed
    assert wait_gone(grandchild, 1.0)


def test_eval_timeout_exits_1_and_run_dash_reads_stdin():
    done = cli("eval", "--timeout-ms", "100", "while true do end")
    assert done.returncode == 1
    assert "luaexec execution timed out after 100 ms" in done.stderr
    env = child_env()
    for argv in (["run", "-"], ["eval", "-"]):
        done = subprocess.run([sys.executable, "-m", "luaskills_runtime", *argv],
                              input="return 6 * 7", capture_output=True, text=True, timeout=60,
                              env=env)
        assert done.returncode == 0, done.stderr
        assert "42" in done.stdout


@pytest.mark.parametrize("argv", [["eval", "return 1", "--args", "{bad"],
                                  ["eval", "--timeout-ms", "0", "return 1"],
                                  ["eval", "--timeout-ms", "soon", "return 1"]])
def test_eval_usage_errors_exit_2_like_run(argv):
    done = cli(*argv)
    assert done.returncode == 2
    assert done.stdout == ""
