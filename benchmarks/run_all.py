"""Runs every benchmarks/bench_*.py script, each in its own subprocess, and prints one table of
the results they report (measure, ratio, goal, met or not).

Scripts are found by glob, so a new bench_*.py joins by itself; it reports its rows with
``_timing.report(measure, ratio, goal)``.  Each script's own output is shown as it runs.

Run: python3 benchmarks/run_all.py [--only NAME ...] [--timeout-s 900] [-- ARGS]
     (ARGS go to every script that runs, so give them with --only: the scripts take different
     options, e.g. --only bench_timeout_guard -- --rounds 3.)
Exit status: 0 when every script ran and reported, 1 otherwise (goals not met do not fail it:
the table says so; the numbers of a shared machine are what this run measured).
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from _timing import RESULT_PREFIX, goal_met  # noqa: E402


def run_script(path, extra_args, timeout_s):
    """(rows, problem): the rows a script reported, and why it failed (None when it ran)."""
    env = dict(os.environ)
    src = os.path.join(os.path.dirname(HERE), "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    rows = []
    process = subprocess.Popen([sys.executable, path, *extra_args], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env=env, bufsize=1)
    timed_out = threading.Event()

    def stop():  # a script silent past its time would otherwise block the read loop for good
        timed_out.set()
        process.kill()

    timer = threading.Timer(timeout_s, stop)
    timer.start()
    try:
        for line in process.stdout:
            if line.startswith(RESULT_PREFIX + " "):
                rows.append(json.loads(line[len(RESULT_PREFIX) + 1:]))
                continue
            sys.stdout.write("    " + line)
            sys.stdout.flush()
        code = process.wait()
    finally:
        timer.cancel()
        process.stdout.close()
    if timed_out.is_set():
        return rows, f"timed out after {timeout_s} s"
    if code != 0:
        return rows, f"exit status {code}"
    return rows, None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=None,
                        help="script names to run (e.g. bench_timeout_guard), default all")
    parser.add_argument("--timeout-s", type=float, default=900, help="per script")
    parser.add_argument("extra", nargs=argparse.REMAINDER, help="after --: arguments for the scripts")
    options = parser.parse_args()
    extra = options.extra[1:] if options.extra[:1] == ["--"] else options.extra

    scripts = sorted(glob.glob(os.path.join(HERE, "bench_*.py")))
    if options.only:
        wanted = {name.removesuffix(".py") for name in options.only}
        scripts = [s for s in scripts if os.path.basename(s)[:-3] in wanted]
    table, failures = [], []
    for path in scripts:
        name = os.path.basename(path)[:-3]
        print(f"=== {name}", flush=True)
        start = time.monotonic()
        rows, problem = run_script(path, extra, options.timeout_s)
        print(f"=== {name}: {time.monotonic() - start:.1f} s"
              f"{'' if problem is None else ' -- FAILED: ' + problem}", flush=True)
        if problem is not None:
            failures.append(f"{name}: {problem}")
        table += [(name, row) for row in rows]

    print()
    header = ("script", "measure", "ratio", "goal", "met")
    lines = []
    for name, row in table:
        met = goal_met(row["ratio"], row["goal"])
        lines.append((name.removeprefix("bench_"), row["measure"], f"{row['ratio']:.3f}",
                      row["goal"], {True: "yes", False: "NO", None: "-"}[met]))
    widths = [max(len(str(x)) for x in column) for column in zip(header, *lines)]
    for cells in (header, tuple("-" * w for w in widths), *lines):
        print("  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip())
    # rows without a goal (informational ratios, marked "-") are not counted as goals
    met_count = sum(1 for line in lines if line[4] == "yes")
    goal_count = sum(1 for line in lines if line[4] != "-")
    print(f"\n{met_count} of {goal_count} goals met; {len(scripts)} scripts run")
    for failure in failures:
        print(f"FAILED {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
