"""luaskills_runtime.aio: the host API for async hosts (asyncio and trio, through anyio).

* :class:`AsyncLuaEngine`: every public ``LuaEngine`` method as a coroutine; cancelling the
  awaiting task stops the Lua work and kills its process trees.
* :class:`AsyncLease`: ``await engine.open_lease(sid)``.
* :class:`AsyncProcessSession` and :func:`exec_command`: process sessions whose reads wait on the
  event loop (no thread per waiter), and one-shot commands.
"""
from luaskills_runtime.aio.engine import AsyncLease, AsyncLuaEngine
from luaskills_runtime.aio.process import AsyncProcessSession, exec_command
from luaskills_runtime.lease_handle import LeaseError

__all__ = ["AsyncLease", "AsyncLuaEngine", "AsyncProcessSession", "LeaseError", "exec_command"]
