"""Static typing of the public API: ``mypy --strict`` over a host script that uses all of it,
mistakes the types must catch, and stubtest of the native modules' .pyi files against the built
extension modules."""
import os
import subprocess
import sys

import pytest

from _process_support import child_env

HERE = os.path.dirname(os.path.abspath(__file__))
SAMPLE = os.path.join(HERE, "typing_host_sample.py")
ENV = child_env()

pytest.importorskip("mypy")


def mypy(*args, cache):
    return subprocess.run([sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(cache),
                           "--no-error-summary", *args],
                          capture_output=True, text=True, timeout=600, env=ENV)


def test_host_sample_passes_mypy_strict(tmp_path):
    done = mypy(SAMPLE, cache=tmp_path / "cache")
    assert done.returncode == 0, done.stdout + done.stderr


def test_host_sample_runs():
    done = subprocess.run([sys.executable, SAMPLE], capture_output=True, text=True, timeout=120,
                          env=ENV)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["24", "18"]


MISTAKES = {
    'engine.create_runtime_lease(sidd="x")': 'Unexpected keyword argument "sidd"',
    'ProcessSession.open("cat", timeout=3)': 'Unexpected keyword argument "timeout"',
    'exec_command(["ls"])': 'incompatible type "list[str]"',
    'engine.run_lua("return 1", {}, "id")': "Too many positional arguments",
    'engine.eval_runtime_lease(lease_id="l", code=1)': 'has incompatible type "int"',
    'ProcessSession.open("cat").read(until_text=5)': 'incompatible type "int"',
    'asyncio.run(AsyncLuaEngine().open_lease("s", ttl=3))': 'Unexpected keyword argument "ttl"',
}


def test_mypy_catches_the_mistakes_of_issue_15(tmp_path):
    lines = ["import asyncio",
             "from luaskills_runtime import LuaEngine",
             "from luaskills_runtime.aio import AsyncLuaEngine",
             "from luaskills_runtime.process import ProcessSession, exec_command",
             "engine = LuaEngine()"]
    first = len(lines) + 1
    lines += list(MISTAKES)
    script = tmp_path / "mistakes.py"
    script.write_text("\n".join(lines) + "\n")
    done = mypy(str(script), cache=tmp_path / "cache")
    assert done.returncode == 1
    for offset, (line, expected) in enumerate(MISTAKES.items()):
        reported = [row for row in done.stdout.splitlines()
                    if row.startswith(f"{script}:{first + offset}:")]
        assert any(expected in row for row in reported), (line, done.stdout)


@pytest.mark.skipif(sys.platform == "win32", reason="the stubs are checked on one platform")
def test_stubtest_native_modules(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "--mypy-config-file",
         os.path.join(HERE, "stubtest_mypy.ini"), "--allowlist",
         os.path.join(HERE, "stubtest_allowlist.txt"),
         "luaskills_runtime._native.exec", "luaskills_runtime._native.luahook",
         "luaskills_runtime._native.process", "luaskills_runtime._native.ringbuf"],
        capture_output=True, text=True, timeout=600, env=ENV, cwd=str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_public_name_has_a_docstring():
    import inspect

    import luaskills_runtime
    import luaskills_runtime.aio
    import luaskills_runtime.process
    import luaskills_runtime.types
    missing = []
    modules = [luaskills_runtime, luaskills_runtime.aio, luaskills_runtime.process,
               luaskills_runtime.types]
    for module in modules:
        for name in module.__all__:
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or inspect.isroutine(obj)):
                continue  # constants and typing aliases
            if not inspect.getdoc(obj):
                missing.append(f"{module.__name__}.{name}")
            if not inspect.isclass(obj) or not obj.__module__.startswith("luaskills_runtime"):
                continue
            for attr in dir(obj):
                if attr.startswith("_") and attr not in ("__enter__", "__aenter__"):
                    continue
                owner = next((k for k in obj.__mro__ if attr in vars(k)), object)
                if owner is object or not owner.__module__.startswith("luaskills_runtime"):
                    continue  # inherited from Python itself (dict keys of TypedDicts etc.)
                member = vars(owner)[attr]
                if inspect.isroutine(member) or isinstance(member, (property, classmethod,
                                                                    staticmethod)):
                    if not inspect.getdoc(getattr(obj, attr)):
                        missing.append(f"{owner.__qualname__}.{attr}")
    assert not missing, sorted(set(missing))


def test_typed_dicts_describe_the_real_payloads(engine):
    from luaskills_runtime.process import ProcessSession, exec_command
    from luaskills_runtime.types import (ExecResult, LeaseCancelPayload, LeaseClosePayload,
                                         LeaseCreatePayload, LeaseEvalPayload, LeaseListPayload,
                                         LeaseStatusPayload, ProcessStatus, ReadResult)

    def check(payload, shape):
        keys = set(payload)
        extra = keys - set(shape.__annotations__)
        assert not extra, (shape.__name__, extra)
        assert set(shape.__required_keys__) <= keys, shape.__name__

    created = engine.create_runtime_lease(sid="typed")
    check(created, LeaseCreatePayload)
    lease_id = created["lease_id"]
    check(engine.eval_runtime_lease(lease_id=lease_id, code="return 1"), LeaseEvalPayload)
    check(engine.eval_runtime_lease(lease_id=lease_id, code="error('x')"), LeaseEvalPayload)
    check(engine.runtime_lease_status(lease_id=lease_id), LeaseStatusPayload)
    listed = engine.list_runtime_leases()
    check(listed, LeaseListPayload)
    for entry in listed["leases"]:
        check(entry, LeaseStatusPayload)
    check(engine.cancel_runtime_lease(lease_id=lease_id), LeaseCancelPayload)
    check(engine.close_runtime_lease(lease_id=lease_id), LeaseClosePayload)
    check(engine.runtime_lease_status(lease_id=lease_id), LeaseStatusPayload)   # a failure
    check(exec_command(program="echo", args=["x"]), ExecResult)
    check(exec_command(program="/no/such/program"), ExecResult)
    with ProcessSession.open("cat") as session:
        session.write("a")
        check(session.read(timeout_ms=1000), ReadResult)
        check(session.status(), ProcessStatus)
        check(session.close(), ProcessStatus)
