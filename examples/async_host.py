"""An async agent host: Lua tools behind asyncio (or trio), with timeouts that really stop work.

    PYTHONPATH=src python3 examples/async_host.py            # asyncio
    PYTHONPATH=src python3 examples/async_host.py trio       # trio

It runs a snippet, keeps per-conversation state in a lease, drives an interactive process, and
gives up on a runaway tool call with a timeout: the Lua loop is stopped, the process tree it
started is killed, and the engine keeps serving.
"""
import sys
import time

import anyio

from luaskills_runtime import HostOptions, LeaseError
from luaskills_runtime.aio import AsyncLuaEngine, AsyncProcessSession, exec_command


async def main() -> None:
    options = HostOptions(max_memory_bytes=256 * 1024 * 1024)
    async with AsyncLuaEngine(options, max_workers=4) as engine:
        print("run_lua:", await engine.run_lua("return args.a + args.b", {"a": 1, "b": 2}))

        # One lease per conversation: globals survive between evals.
        async with await engine.open_lease("conversation-42", ttl_sec=600) as lease:
            await lease.eval("notes = {}")
            await lease.eval("table.insert(notes, args.text)", {"text": "hello"})
            print("lease:", await lease.eval("return #notes"))
            try:
                await lease.eval("error('tool failed')")
            except LeaseError as error:
                print("lease error:", error.error_code, "-", error)

        # A runaway tool call: the timeout cancels the task, which stops the Lua loop and kills
        # the `sleep` tree it started.
        started = time.monotonic()
        with anyio.move_on_after(0.3):
            await engine.run_lua("""
                vulcan.process.session.open{program = 'sleep', args = {'60'}}
                while true do end
            """)
        print(f"runaway call stopped after {time.monotonic() - started:.2f} s")
        print("still serving:", await engine.run_lua("return 'yes'"))

        report = await engine.execute_runlua_request_inline(
            {"task": "sum", "code": "return 6 * 7", "timeout_ms": 5000})
        print(report.splitlines()[-2])

    # Processes without Lua: reads wait on the event loop, not on a thread.
    async with await AsyncProcessSession.open("sh", ["-c", "read x; echo got $x"]) as session:
        await session.write("ping\n")
        print("session:", (await session.read(timeout_ms=2000, until_text="got"))["stdout"].strip())
    print("exec:", (await exec_command(program="echo", args=["done"]))["stdout"].strip())


if __name__ == "__main__":
    anyio.run(main, backend=sys.argv[1] if len(sys.argv) > 1 else "asyncio")
