"""The benchmarks' one timing helper: best-of / median timing (this machine is shared and noisy),
interleaved timing of variants, ratio lines, and the machine-readable result rows that
benchmarks/run_all.py collects.

A script reports each measure that has a goal with ``report(measure, ratio, goal)``: it prints a
line ``RESULT_PREFIX {"measure": ..., "ratio": ..., "goal": ...}`` next to the script's own
output.  ``goal`` is a comparison with a number, e.g. ``"<= 1.05x"``, ``">= 4x"``, ``"<= 8"``.
"""
import json
import re
import statistics
import time

RESULT_PREFIX = "BENCH-RESULT"
_GOAL = re.compile(r"^\s*(<=|>=|<|>)\s*([0-9]*\.?[0-9]+)\s*x?\s*$")


def timings(fn, repeat=7, number=1):
    """Seconds per call of `number` calls of fn, for each of `repeat` rounds."""
    results = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        results.append((time.perf_counter() - start) / number)
    return results


def best_of(fn, repeat=7, number=1):
    """Smallest wall time of `number` calls of fn, over `repeat` rounds, in seconds per call."""
    return min(timings(fn, repeat, number))


def median_of(fn, repeat=7, number=1):
    """Median over `repeat` rounds of the time per call of `number` calls of fn, in seconds."""
    return statistics.median(timings(fn, repeat, number))


def interleaved_best(fns, rounds, number=1):
    """Best seconds per call of each of `fns`, measured in turns round after round so that load
    changes on the shared machine hit all of them alike; in the order of `fns`."""
    best = [float("inf")] * len(fns)
    for _ in range(rounds):
        for slot, fn in enumerate(fns):
            start = time.perf_counter()
            for _ in range(number):
                fn()
            best[slot] = min(best[slot], (time.perf_counter() - start) / number)
    return best


def timed(fn, *args):
    """(seconds, result) of one call fn(*args)."""
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


def ratio_line(label, ours, anchor, goal=None, unit="us", scale=1e6):
    text = f"{label}: {ours * scale:.2f} {unit} vs anchor {anchor * scale:.2f} {unit} -> {ours / anchor:.2f}x"
    if goal:
        text += f" (goal {goal})"
    return text


def goal_met(value, goal):
    """Whether `value` meets `goal` ("<= 1.05x", ">= 4x", "<= 8"); None when goal is not such a
    comparison."""
    match = _GOAL.match(goal or "")
    if match is None:
        return None
    op, bound = match.group(1), float(match.group(2))
    return {"<=": value <= bound, ">=": value >= bound, "<": value < bound, ">": value > bound}[op]


def report(measure, ratio, goal):
    """Print one result row for run_all.py (the script's own output stays as it is)."""
    print(f"{RESULT_PREFIX} " + json.dumps({"measure": measure, "ratio": round(float(ratio), 4),
                                            "goal": goal}), flush=True)


def report_ratio(label, ours, anchor, goal, **line_options):
    """Print ratio_line(...) and report the ratio as a result row."""
    print(ratio_line(label, ours, anchor, goal, **line_options))
    report(label, ours / anchor, goal)
