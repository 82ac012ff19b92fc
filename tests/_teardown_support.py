"""The escape matrix of issue 13, shared by tests/process/test_process_teardown.py and
benchmarks/bench_teardown.py: shell fragments that start one descendant which leaves the root's
process group or session in some way, each findable by a marker in its argv[0]."""
import itertools
import os
import time

import psutil

_counter = itertools.count()


def new_marker() -> str:
    return f"lsrteardown{os.getpid()}x{next(_counter)}"


def escapee(marker: str) -> str:
    """A shell command that runs `sleep 300` with argv[0] = marker."""
    return f'bash -c "exec -a {marker} sleep 300"'


DOUBLE_FORK = """python3 -c 'import os
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execvp("sleep", ["{marker}", "300"])
    os._exit(0)
os.wait()'"""

SETPGID = """python3 -c 'import os
os.setpgid(0, 0)
os.execvp("sleep", ["{marker}", "300"])' &"""

# How one descendant escapes: each is a bash fragment; {E} is the escapee command.
ESCAPES = {
    "background": "{E} &",
    "nohup": "nohup {E} >/dev/null 2>&1 &",
    "ignores_term_hup": "(trap '' TERM HUP; exec {E}) &",
    "setsid": "setsid {E} &",
    "double_fork": DOUBLE_FORK,
    "set_m": "set -m; {E} & set +m",
    "setpgid": SETPGID,
}


ALL = "all"   # every escape of ESCAPES in one tree (the paths that wait for a timeout)


def escapes_script(kind: str, marker: str) -> str:
    """Starts the escapes of `kind` (or ALL), then waits until every escapee runs."""
    kinds = list(ESCAPES) if kind == ALL else [kind]
    script = "".join(ESCAPES[k].replace("{E}", escapee(marker)).replace("{marker}", marker) + "\n"
                     for k in kinds)
    return script + (f"until [ $(pgrep -c -f '^{marker}') -ge {len(kinds)} ]; "
                     "do sleep 0.01; done\n")


def root_script(kind: str, marker: str) -> str:
    return escapes_script(kind, marker) + "echo ready\nsleep 600\n"


def survivors(marker: str):
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            cmdline = proc.info["cmdline"] or []
            if cmdline and cmdline[0] == marker and proc.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(proc.pid)
        except psutil.Error:
            pass
    return found


def assert_gone_within_1s(marker: str) -> None:
    deadline = time.monotonic() + 1.0
    left = survivors(marker)
    while left and time.monotonic() < deadline:
        time.sleep(0.02)
        left = survivors(marker)
    for pid in left:   # never leave strays behind, even when failing
        try:
            os.kill(pid, 9)
        except OSError:
            pass
    assert left == [], f"survivors with marker {marker}: {left}"




def count_and_kill_survivors(marker: str, settle: float = 1.0) -> int:
    """How many marked processes still live `settle` seconds from now; kills them afterwards."""
    time.sleep(settle)
    left = survivors(marker)
    for pid in left:
        try:
            os.kill(pid, 9)
        except OSError:
            pass
    return len(left)
