"""Builds the package with a compile-time variant (a forced fallback path, a debug build) into a
temporary directory and runs selected tests against it in a subprocess.  Used by
tests/native/test_build_variants.py and by .ci/run's debug-build step:

    python tests/_build_variant.py    # LSR_DEBUG + LSR_NO_ADDCHDIR build, ring/process/exec tests
"""
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build_variant(target: str, defines=(), debug=False, extensions=()) -> str:
    """Copies the Python package to target/pkg and builds `extensions` (default: all) into it
    with the given C macros.  Returns the directory to put on PYTHONPATH.  Raises
    CalledProcessError (with the compiler's output) when the build fails."""
    pkg_root = os.path.join(target, "pkg")
    shutil.copytree(os.path.join(ROOT, "src", "luaskills_runtime"),
                    os.path.join(pkg_root, "luaskills_runtime"), dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.pyd"))
    env = dict(os.environ, LUASKILLS_DEFINES=",".join(defines),
               LUASKILLS_EXTENSIONS=",".join(extensions), LUASKILLS_DEBUG="1" if debug else "0")
    subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--force", "--build-lib", pkg_root,
                    "--build-temp", os.path.join(target, "tmp")],
                   cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    return pkg_root


def run_tests(pkg_root: str, *pytest_args: str) -> subprocess.CompletedProcess:
    """Runs pytest on ROOT/tests with the variant package first on the path."""
    env = dict(os.environ, PYTHONPATH=pkg_root, LSR_VARIANT_UNDER_TEST="1")
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           *pytest_args], cwd=os.path.join(ROOT, "tests"), env=env,
                          capture_output=True, text=True)


# The variant .ci/run checks: debug counters and fault injection on, cwd through the fallback.
CI_VARIANT = dict(defines=("LSR_NO_ADDCHDIR",), debug=True)
CI_TESTS = ("native/test_ringbuf.py", "native/test_exec_ringbuf.py", "native/test_build_variants.py",
            "process/test_exec_run.py", "process/test_process_cwd.py",
            "process/test_process_session.py", "process/test_process_tree.py",
            "process/test_process_resources.py", "process/test_process_markers.py",
            "process/test_process_teardown.py")


def main() -> int:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="lsr-variant-") as target:
        pkg = build_variant(target, **CI_VARIANT)
        result = run_tests(pkg, *CI_TESTS)
        sys.stdout.write(result.stdout[-6000:])
        sys.stderr.write(result.stderr[-3000:])
        return result.returncode


if __name__ == "__main__":
    sys.exit(main())
