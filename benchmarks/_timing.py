"""Shared timing helpers: best-of-N timing, since this machine is shared and noisy."""
import time


def best_of(fn, repeat=7, number=1):
    """Smallest wall time of `number` calls of fn, over `repeat` rounds, in seconds per call."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - start) / number)
    return best


def ratio_line(label, ours, anchor, goal=None, unit="us", scale=1e6):
    text = f"{label}: {ours * scale:.2f} {unit} vs anchor {anchor * scale:.2f} {unit} -> {ours / anchor:.2f}x"
    if goal:
        text += f" (goal {goal})"
    return text
