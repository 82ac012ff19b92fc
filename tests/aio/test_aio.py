"""luaskills_runtime.aio under asyncio and trio: real cancellation (task cancel and timeouts) of
run_lua, runlua requests, lease evals and session reads, process trees gone afterwards, no
thread per waiting read, a responsive loop."""
import asyncio
import os
import time

import anyio
import psutil
import pytest

from luaskills_runtime import LeaseError, LuaSkillsError
from luaskills_runtime.aio import AsyncLuaEngine, AsyncProcessSession, exec_command
from _process_support import REPO_ROOT, read_pid_file, session_tree_lua, wait_gone

pytestmark = pytest.mark.anyio

# Generous bound for the assertions (the machine is shared); benchmarks/bench_aio.py prints the
# actual stop latency.
STOP_S = 0.5


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request):
    return request.param


async def _wait_pid(path: str) -> int:
    with anyio.fail_after(10):
        while (pid := read_pid_file(path)) is None:
            await anyio.sleep(0.01)
        return pid


async def _cancel_after_start(coro_fn, started, *, use_wait_for: bool):
    """Run coro_fn() until `started()` says the work runs, then cancel it; returns the seconds
    from the cancel to the task seeing it."""
    if use_wait_for:
        # asyncio.wait_for / anyio.fail_after: a timeout that fires once the work runs
        with anyio.move_on_after(30) as outer:
            async with anyio.create_task_group() as group:
                scope = anyio.CancelScope()

                async def runner():
                    with scope:
                        await coro_fn()
                group.start_soon(runner)
                await started()
                t0 = time.monotonic()
                scope.cancel()
        assert not outer.cancelled_caught
        return time.monotonic() - t0
    with anyio.move_on_after(30) as outer:
        async with anyio.create_task_group() as group:
            group.start_soon(coro_fn)
            await started()
            t0 = time.monotonic()
            group.cancel_scope.cancel()
    assert not outer.cancelled_caught
    return time.monotonic() - t0


@pytest.mark.parametrize("how", ["task", "scope"])
async def test_run_lua_cancel_stops_work_and_kills_tree(anyio_backend, tmp_path, how):
    pid_file = str(tmp_path / "pid")
    async with AsyncLuaEngine() as engine:
        code = session_tree_lua(pid_file) + "while true do end"
        grandchild = []

        async def started():
            grandchild.append(await _wait_pid(pid_file))
        elapsed = await _cancel_after_start(lambda: engine.run_lua(code), started,
                                            use_wait_for=(how == "scope"))
        assert elapsed < STOP_S
        assert wait_gone(grandchild[0], 1.0)
        assert await engine.run_lua("return 1 + 1") == 2   # the VM is usable again


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_asyncio_wait_for_timeout_cancels_run_lua(anyio_backend):
    async with AsyncLuaEngine() as engine:
        t0 = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(engine.run_lua("while true do end"), 0.2)
        assert time.monotonic() - t0 < 0.2 + STOP_S
        assert await engine.run_lua("return 'again'") == "again"
        assert not engine.engine._run_lua_running   # nothing left registered


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_asyncio_task_cancel_of_a_blocked_exec_kills_the_tree(anyio_backend, tmp_path):
    pid_file = str(tmp_path / "pid")
    async with AsyncLuaEngine() as engine:
        code = ("return vulcan.process.exec{command='sleep 30 & echo $! > " + pid_file
                + "; wait'}")
        task = asyncio.ensure_future(engine.run_lua(code))
        pid = await _wait_pid(pid_file)
        t0 = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - t0 < STOP_S
        assert wait_gone(pid, 1.0)


async def test_runlua_request_cancel(anyio_backend, tmp_path):
    pid_file = str(tmp_path / "pid")
    async with AsyncLuaEngine() as engine:
        code = session_tree_lua(pid_file) + "while true do end"
        grandchild = []

        async def started():
            grandchild.append(await _wait_pid(pid_file))
        elapsed = await _cancel_after_start(
            lambda: engine.execute_runlua_request_inline({"code": code, "timeout_ms": 30000}),
            started, use_wait_for=False)
        assert elapsed < STOP_S
        assert wait_gone(grandchild[0], 1.0)
        report = await engine.execute_runlua_request_inline({"code": "return 7"})
        assert "7" in report


async def test_lease_eval_cancel_and_reuse(anyio_backend):
    async with AsyncLuaEngine() as engine:
        async with await engine.open_lease("aio-cancel") as lease:
            assert await lease.eval("n = 41; return n") == 41
            async def eval_forever():
                await lease.eval("while true do end", timeout_ms=30000)

            async def started():
                await anyio.sleep(0.2)  # the eval is running by then
            elapsed = await _cancel_after_start(eval_forever, started, use_wait_for=False)
            assert elapsed < STOP_S
            assert await lease.eval("return n + 1") == 42      # usable, globals kept


async def test_lease_eval_failure_raises_lease_error(anyio_backend):
    async with AsyncLuaEngine() as engine:
        lease = await engine.open_lease("aio-fail")
        with pytest.raises(LeaseError) as info:
            await lease.eval("error('boom')")
        assert info.value.error_code == "eval_failed"
        assert "boom" in str(info.value)
        assert (await lease.status())["sid"] == "aio-fail"
        await lease.close()
        with pytest.raises(LeaseError):
            await lease.status()


async def test_dict_and_json_lease_methods(anyio_backend):
    async with AsyncLuaEngine() as engine:
        created = await engine.create_runtime_lease(sid="aio-dict")
        assert created["ok"]
        lease_id = created["lease_id"]
        payload = await engine.eval_runtime_lease(lease_id=lease_id, code="return 3")
        assert payload["result"] == 3
        text = await engine.eval_runtime_lease_json(
            '{"lease_id": "%s", "code": "return 4"}' % lease_id)
        assert '"result":4' in text.replace(" ", "")
        listed = await engine.list_runtime_leases()
        assert [entry["lease_id"] for entry in listed["leases"]] == [lease_id]
        with pytest.raises(TypeError, match="sidd"):
            await engine.create_runtime_lease(sidd="x")
        assert (await engine.close_runtime_lease(lease_id=lease_id))["ok"]


async def test_session_read_cancel(anyio_backend):
    async with await AsyncProcessSession.open("cat") as session:
        t0 = time.monotonic()
        with anyio.move_on_after(0.1):
            await session.read(timeout_ms=15000)
        assert time.monotonic() - t0 < 0.1 + STOP_S
        await session.write("hello\n")
        result = await session.read(timeout_ms=5000, until_text="hello")
        assert result["stdout"] == "hello\n" and not result["timed_out"]
        pid = session.pid
    assert wait_gone(pid, 1.0)


async def test_session_read_timeout_and_eof(anyio_backend):
    session = await AsyncProcessSession.open("sh", ["-c", "printf ab; sleep 0.2; printf cd"])
    try:
        first = await session.read(timeout_ms=5000, until_text="cd")
        while "cd" not in first["stdout"]:
            first["stdout"] += (await session.read(timeout_ms=5000))["stdout"]
        assert first["stdout"].endswith("abcd")
        t0 = time.monotonic()
        empty = await session.read(timeout_ms=100)
        assert empty["stdout"] == "" and time.monotonic() - t0 < 2
        status = await session.close()
        assert status["exited"] and status["code"] == 0
    finally:
        session.kill()


async def test_thousand_concurrent_reads_add_no_threads(anyio_backend):
    sessions = [await AsyncProcessSession.open("cat") for _ in range(1000)]
    try:
        before = psutil.Process().num_threads()
        peak = [before]
        results = [None] * len(sessions)

        async def reader(i):
            results[i] = await sessions[i].read(timeout_ms=20000, until_text="x")

        async with anyio.create_task_group() as group:
            for i in range(len(sessions)):
                group.start_soon(reader, i)
            await anyio.sleep(0.3)  # every reader is waiting now
            peak.append(psutil.Process().num_threads())
            for session in sessions:
                await session.write("x")
        assert all(r is not None and r["stdout"] == "x" for r in results)
        assert max(peak) - before <= 2, (before, peak)
    finally:
        for session in sessions:
            session.kill()
        for session in sessions:
            await session.close(timeout_ms=1)


async def test_exec_command_cancel_kills_tree(anyio_backend, tmp_path):
    pid_file = str(tmp_path / "pid")
    pids = []

    async def started():
        pids.append(await _wait_pid(pid_file))
    elapsed = await _cancel_after_start(
        lambda: exec_command(f"sleep 30 & echo $! > {pid_file}; wait"), started,
        use_wait_for=False)
    assert elapsed < STOP_S
    assert wait_gone(pids[0], 1.0)
    result = await exec_command(program="echo", args=["hi"])
    assert result["ok"] and result["stdout"] == "hi\n"
    with pytest.raises(TypeError, match="command must be a str, got list"):
        await exec_command(["ls"])  # type: ignore[arg-type]


async def test_loop_stays_responsive_under_four_evals(anyio_backend):
    async with AsyncLuaEngine(max_workers=4) as engine:
        lags = []

        async def ticker():
            while True:
                t0 = time.monotonic()
                await anyio.sleep(0.005)
                lags.append(time.monotonic() - t0 - 0.005)

        async with anyio.create_task_group() as group:
            group.start_soon(ticker)
            await anyio.sleep(0.05)
            async with anyio.create_task_group() as evals:
                for _ in range(4):
                    evals.start_soon(engine.run_lua,
                                     "local x = 0 for i = 1, 3e7 do x = x + i end return x")
            group.cancel_scope.cancel()
        # A blocking call would show the whole eval time (hundreds of ms) as one lag.
        assert max(lags) < 0.25, max(lags)


async def test_engine_errors_pass_through(anyio_backend):
    async with AsyncLuaEngine() as engine:
        with pytest.raises(LuaSkillsError, match="boom"):
            await engine.run_lua("error('boom')")
        assert await engine.cancel("nothing-running") is False
        context = {"request_context": {"session_id": "a1"}, "client_budget": {}, "tool_config": {}}
        assert await engine.run_lua("return vulcan.context.request.session_id",
                                    invocation_context=context) == "a1"


def test_async_host_example_runs(child_env):
    import subprocess
    import sys
    example = os.path.join(REPO_ROOT, "examples", "async_host.py")
    for backend in ("asyncio", "trio"):
        done = subprocess.run([sys.executable, example, backend], capture_output=True, text=True,
                              timeout=120, env=child_env)
        assert done.returncode == 0, done.stderr
        assert "still serving: yes" in done.stdout and "session: got ping" in done.stdout


def test_async_engine_mirrors_every_public_engine_method():
    import inspect

    from luaskills_runtime import LuaEngine
    for name, member in vars(LuaEngine).items():
        if name.startswith("_") or not inspect.isfunction(member):
            continue
        twin = getattr(AsyncLuaEngine, name, None)
        assert twin is not None and inspect.iscoroutinefunction(twin), name
        ours = [(p.name, p.kind) for p in inspect.signature(member).parameters.values()]
        theirs = [(p.name, p.kind) for p in inspect.signature(twin).parameters.values()]
        assert ours == theirs, name


async def test_lease_eval_cancel_while_blocked_in_exec_kills_the_tree(anyio_backend, tmp_path):
    pid_file = str(tmp_path / "pid")
    async with AsyncLuaEngine() as engine:
        async with await engine.open_lease("aio-exec") as lease:
            pids = []

            async def started():
                pids.append(await _wait_pid(pid_file))
            elapsed = await _cancel_after_start(
                lambda: lease.eval(f"return vulcan.process.exec{{command='sleep 30 & echo $! > "
                                   f"{pid_file}; wait'}}", timeout_ms=30000),
                started, use_wait_for=False)
            assert elapsed < STOP_S
            assert wait_gone(pids[0], 1.0)
            assert await lease.eval("return 'usable'") == "usable"


async def test_worker_pool_is_bounded_and_niced(anyio_backend):
    import sys
    import threading

    async with AsyncLuaEngine(max_workers=2, worker_nice=3) as engine:
        results = []

        async def one(i):
            results.append(await engine.run_lua("local s = 0 for i = 1, 2e5 do s = s + 1 end "
                                                "return args.i", {"i": i}))
        async with anyio.create_task_group() as group:
            for i in range(10):
                group.start_soon(one, i)
        assert sorted(results) == list(range(10))
        assert engine._workers.threads == 2
        if sys.platform.startswith("linux"):
            workers = [t for t in threading.enumerate()   # (not the Lua-hook guard's watchdog)
                       if t.name.startswith("luaskills-lua-") and t.name[14:].isdigit()]
            base = os.getpriority(os.PRIO_PROCESS, 0)
            assert workers and all(
                os.getpriority(os.PRIO_PROCESS, t.native_id) == base + 3 for t in workers)


async def test_calls_after_close_say_the_engine_is_closed(anyio_backend):
    engine = AsyncLuaEngine()
    await engine.close()
    assert engine.closed
    with pytest.raises(LuaSkillsError, match="LuaEngine is closed"):
        await engine.run_lua("return 1")
    with pytest.raises(LuaSkillsError, match="LuaEngine is closed"):
        await engine.create_runtime_lease(sid="late")
