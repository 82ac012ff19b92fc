"""Helpers of the C ABI tests: the library path and subprocesses that see this package."""
import os
import subprocess
import sys

import luaskills_runtime


def library_path() -> str:
    return luaskills_runtime.ffi_library_path()


def child_env(**extra) -> dict:
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(luaskills_runtime.__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([package_root] + sys.path))
    env.update(extra)
    return env


def run_python(code: str, *, cwd=None, timeout: float = 120, **env) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter (adversarial cases must not take pytest down)."""
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=child_env(**env),
                          capture_output=True, text=True, timeout=timeout)
