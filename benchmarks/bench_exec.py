"""One-shot exec latency against subprocess.run, measured in the same run (best of N).

    python benchmarks/bench_exec.py

Anchors: ``subprocess.run([...], capture_output=True)`` for the same program (and, for stdin,
with ``input=``).  Goal for /bin/true: at most 1.1x the anchor.
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _timing import interleaved_best, ratio_line, report_ratio  # noqa: E402
from luaskills_runtime import LuaEngine  # noqa: E402
from luaskills_runtime.process import ProcessSession, exec_command  # noqa: E402

TRUE = "/bin/true" if os.path.exists("/bin/true") else "true"
CALLS = 40
ROUNDS = 9


def main():
    print(f"== exec latency, best of {ROUNDS} rounds x {CALLS} calls ==")
    # Warm both paths (page cache, the drainer's first start, imports).
    for _ in range(20):
        exec_command(program=TRUE)
        subprocess.run([TRUE], capture_output=True)

    ours, anchor = interleaved_best((lambda: exec_command(program=TRUE),
                                     lambda: subprocess.run([TRUE], capture_output=True)), ROUNDS, CALLS)
    report_ratio(f"exec_command(program='{TRUE}') vs subprocess.run(['{TRUE}'], "
                 "capture_output=True)", ours, anchor, goal="<= 1.1x")

    payload = "x" * 100_000
    ours, anchor = interleaved_best((
        lambda: exec_command(program="cat", stdin=payload),
        lambda: subprocess.run(["cat"], input=payload.encode(), capture_output=True)),
        ROUNDS, CALLS // 2)
    print(ratio_line("exec_command(program='cat', stdin=100 kB) vs subprocess.run(input=...)",
                     ours, anchor))

    command = "head -c 20000000 /dev/zero"
    ours, anchor = interleaved_best((
        lambda: exec_command(command, encoding="latin1"),
        lambda: subprocess.run(command, shell=True, capture_output=True).stdout.decode("latin-1")),
        5, 2)
    print(ratio_line("exec_command(20 MB of output, latin1) vs subprocess.run(shell=True) + "
                     "decode", ours, anchor, unit="ms", scale=1e3))

    with LuaEngine() as engine:
        lua_exec = f"return vulcan.exec{{program='{TRUE}'}}.ok"
        engine.run_lua(lua_exec)
        ours, anchor = interleaved_best((lambda: engine.run_lua(lua_exec),
                                         lambda: subprocess.run([TRUE], capture_output=True)),
                                        ROUNDS, CALLS)
    print(ratio_line(f"run_lua(vulcan.exec{{program='{TRUE}'}}) vs subprocess.run", ours, anchor))

    # The shared drainer thread starts with its first process and stops with its last, so a
    # lone exec pays for starting and joining it; with any session open it is already running.
    print("== the same with the drainer thread already running (one session open) ==")
    session = ProcessSession.open("sleep", ["600"])
    try:
        ours, anchor = interleaved_best((lambda: exec_command(program=TRUE),
                                         lambda: subprocess.run([TRUE], capture_output=True)),
                                        ROUNDS, CALLS)
        report_ratio(f"exec_command(program='{TRUE}') vs subprocess.run (drainer running)",
                     ours, anchor, goal="<= 1.1x")
        ours, anchor = interleaved_best((
            lambda: exec_command(program="cat", stdin=payload),
            lambda: subprocess.run(["cat"], input=payload.encode(), capture_output=True)),
            ROUNDS, CALLS // 2)
        print(ratio_line("exec_command(program='cat', stdin=100 kB) vs subprocess.run(input=...)",
                         ours, anchor))
    finally:
        session.kill()


if __name__ == "__main__":
    main()
