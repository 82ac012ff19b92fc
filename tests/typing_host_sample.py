"""A host script that uses every public API, checked with ``mypy --strict`` by
tests/test_typing.py (and run there too, so it stays honest).  Not collected by pytest."""
from __future__ import annotations

import asyncio
from typing import Any, Dict, List, Optional

from luaskills_runtime import HostOptions, Lease, LeaseError, LuaEngine, LuaSkillsError
from luaskills_runtime.aio import (AsyncLease, AsyncLuaEngine, AsyncProcessSession,
                                   exec_command as async_exec)
from luaskills_runtime.process import ProcessSession, exec_command
from luaskills_runtime.types import (ExecResult, LeaseCreatePayload, LeaseEvalPayload,
                                     LeaseListPayload, LeaseStatusPayload, ProcessStatus,
                                     ReadResult)


def sync_host() -> List[Any]:
    seen: List[Any] = []
    options = HostOptions(max_memory_bytes=64 * 1024 * 1024, main_pool=(1, 2, 60),
                          policy="default", fs_roots=("/tmp",), env_allow=("HOME",),
                          output=lambda stream, text: None)
    with LuaEngine(options) as engine:
        seen.append(engine.run_lua("return args.n * 2", {"n": 21}, request_id="r1"))
        seen.append(engine.cancel("r1"))
        report: str = engine.execute_runlua_request_inline({"code": "return 1"}, request_id="q")
        seen.append(report.startswith("#"))
        seen.append(engine.execute_runlua_request_json_inline('{"code": "return 2"}'))
        seen.append(engine.cancel_runlua("q"))
        created: LeaseCreatePayload = engine.create_runtime_lease(sid="host-a", ttl_sec=60)
        lease_id: Optional[str] = created.get("lease_id")
        assert lease_id is not None
        evaluated: LeaseEvalPayload = engine.eval_runtime_lease(lease_id=lease_id,
                                                                code="return 5", timeout_ms=1000)
        seen.append(evaluated.get("result"))
        status: LeaseStatusPayload = engine.runtime_lease_status(lease_id=lease_id)
        seen.append(status["ok"])
        listed: LeaseListPayload = engine.list_runtime_leases(sid="host-a")
        seen.append(len(listed.get("leases", [])))
        seen.append(engine.cancel_runtime_lease(lease_id=lease_id).get("cancelled"))
        seen.append(engine.close_runtime_lease(lease_id=lease_id)["ok"])
        seen.append(engine.create_runtime_lease_json('{"sid": "host-b"}'))
        system = engine.create_system_runtime_lease(sid="sys-a")
        seen.append(engine.system_runtime_lease_status(lease_id=system.get("lease_id", "")))
        seen.append(engine.list_system_runtime_leases())
        with engine.open_lease("host-c", ttl_sec=30, policy="untrusted") as lease:
            handle: Lease = lease
            value: Any = handle.eval("return args.x", {"x": 1}, timeout_ms=500,
                                     request_context={"request": {}}, tool_config={"k": 1})
            seen.append(value)
            lease_status = handle.status()
            seen.append((lease_status["generation"], lease_status.get("policy")))
            seen.append(handle.cancel())
            try:
                handle.eval("error('x')")
            except LeaseError as error:
                code: str = error.error_code
                payload: Dict[str, Any] = error.payload
                seen.append((code, payload["ok"]))
        try:
            engine.run_lua("error('boom')")
        except LuaSkillsError as error:
            seen.append(str(error))
        seen.append(engine.closed)
    with ProcessSession.open("cat", [], buffer_limit_bytes=4096) as session:
        session.write("hi\n")
        read: ReadResult = session.read(timeout_ms=1000, until_text="hi")
        seen.append(read["stdout"])
        state: ProcessStatus = session.status()
        seen.append(state["running"])
        seen.append(session.kill())
        closed: ProcessStatus = session.close(timeout_ms=100)
        seen.append(closed["exited"])
    result: ExecResult = exec_command(program="echo", args=["ok"], timeout_ms=5000)
    seen.append(result["stdout"])
    return seen


async def async_host() -> List[Any]:
    seen: List[Any] = []
    async with AsyncLuaEngine(HostOptions(), max_workers=2) as engine:
        seen.append(await engine.run_lua("return 1", request_id="a1"))
        seen.append(await engine.cancel("a1"))
        seen.append(await engine.execute_runlua_request_inline({"code": "return 3"}))
        seen.append(await engine.execute_runlua_request_json_inline('{"code": "return 3"}'))
        seen.append(await engine.cancel_runlua("none"))
        created = await engine.create_runtime_lease(sid="aio-a")
        lease_id = created.get("lease_id", "")
        seen.append((await engine.eval_runtime_lease(lease_id=lease_id, code="return 1"))["ok"])
        seen.append(await engine.eval_runtime_lease_json(
            '{"lease_id": "%s", "code": "return 1"}' % lease_id))
        seen.append((await engine.close_runtime_lease(lease_id=lease_id))["ok"])
        async with await engine.open_lease("aio-b") as lease:
            handle: AsyncLease = lease
            seen.append(await handle.eval("return 2", timeout_ms=1000))
            seen.append((await handle.status()).get("sid"))
            seen.append(await handle.cancel())
            seen.append((handle.lease_id, handle.sid, handle.generation))
        try:
            await asyncio.wait_for(engine.run_lua("while true do end"), 0.1)
        except asyncio.TimeoutError:
            seen.append("timed out")
    async with await AsyncProcessSession.open("cat", []) as session:
        await session.write("x\n")
        read: ReadResult = await session.read(timeout_ms=1000, until_text="x")
        seen.append(read["stdout"])
        seen.append(session.status()["running"])
        seen.append(session.kill())
        state: ProcessStatus = await session.close(timeout_ms=100)
        seen.append(state["exited"])
    done: ExecResult = await async_exec("echo ok")
    seen.append(done["ok"])
    return seen


if __name__ == "__main__":
    print(len(sync_host()), len(asyncio.run(async_host())))
