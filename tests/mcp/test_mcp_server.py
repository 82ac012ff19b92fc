"""`luaskills-runtime mcp` driven as a real MCP client does, with the `mcp` SDK's client: over
stdio (the server a subprocess) and over Streamable HTTP on 127.0.0.1 (an ephemeral port).
Every server process is stopped at the end of each test and no descendant survives."""
import json
import time

import anyio
import pytest

# Not importorskip("mcp"): tests/ is on sys.path, so this folder itself would import as a
# namespace package `mcp` where the SDK is missing (Python 3.9) and skip nothing.
pytest.importorskip("mcp.server.lowlevel")
import mcp.types as types  # noqa: E402
from mcp.shared.exceptions import McpError  # noqa: E402

from _mcp_support import (assert_no_new_descendants, descendants, http_server,  # noqa: E402
                          http_session, stdio_session, wait_gone_async, wait_pid_file_async)
from _process_support import session_tree_lua, wait_gone  # noqa: E402

pytestmark = pytest.mark.anyio

# Generous bound for the assertions (the machine is shared); benchmarks/bench_mcp.py prints the
# measured cancel latency.
STOP_S = 0.5
TOOLS = {"runlua", "lease_create", "lease_eval", "lease_status", "lease_list", "lease_close"}


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(scope="module")
def shared_http_server():
    before = descendants()
    with http_server("--timeout-ms", "20000") as server:
        yield server
    assert_no_new_descendants(before)


@pytest.fixture(params=["stdio", "http"])
def connect(request):
    """A factory of initialized client sessions on the transport under test."""
    before = descendants()
    if request.param == "stdio":
        yield lambda: stdio_session("--timeout-ms", "20000")
    else:
        url = request.getfixturevalue("shared_http_server").url
        yield lambda: http_session(url)
    if request.param == "stdio":
        assert_no_new_descendants(before)


def _text(result: types.CallToolResult) -> str:
    assert result.content and result.content[0].type == "text"
    return result.content[0].text


async def test_list_tools_schemas_and_annotations(connect):
    async with connect() as session:
        listed = await session.list_tools()
    tools = {tool.name: tool for tool in listed.tools}
    assert set(tools) == TOOLS
    for tool in tools.values():
        assert tool.description and len(tool.description) > 40
        assert tool.inputSchema["type"] == "object"
        assert tool.annotations is not None and tool.annotations.readOnlyHint is not None
    assert tools["lease_list"].annotations.readOnlyHint is True
    assert tools["runlua"].annotations.readOnlyHint is False
    assert tools["lease_eval"].inputSchema["required"] == ["lease_id", "code"]


async def test_runlua_success_failure_and_timeout(connect):
    async with connect() as session:
        ok = await session.call_tool("runlua", {"code": "return args.n * 2", "args": {"n": 21},
                                                "task": "double"})
        assert not ok.isError
        assert "## Status\nSUCCESS" in _text(ok) and "42" in _text(ok)
        assert "## Task\ndouble" in _text(ok)
        failed = await session.call_tool("runlua", {"code": "error('boom')"})
        assert failed.isError and "FAILED" in _text(failed) and "boom" in _text(failed)
        t0 = time.monotonic()
        timed_out = await session.call_tool("runlua", {"code": "while true do end",
                                                       "timeout_ms": 300})
        assert time.monotonic() - t0 < 10
        assert timed_out.isError
        assert "luaexec execution timed out after 300 ms" in _text(timed_out)
        no_source = await session.call_tool("runlua", {"task": "nothing"})
        assert no_source.isError and "code" in _text(no_source)


async def test_lease_flow(connect):
    async with connect() as session:
        created = await session.call_tool("lease_create", {"sid": "work", "ttl_sec": 120})
        assert not created.isError, _text(created)
        payload = created.structuredContent
        assert payload["ok"] is True and payload["sid"] == "work"
        assert json.loads(_text(created)) == payload
        lease_id = payload["lease_id"]
        first = await session.call_tool("lease_eval", {"lease_id": lease_id,
                                                       "code": "counter = args.start",
                                                       "args": {"start": 40}})
        assert not first.isError, first.structuredContent
        second = await session.call_tool("lease_eval", {"lease_id": lease_id,
                                                        "code": "counter = counter + 2; "
                                                                "return counter"})
        assert second.structuredContent["result"] == 42
        status = await session.call_tool("lease_status", {"lease_id": lease_id})
        assert status.structuredContent["closed"] is False
        assert status.structuredContent["sid"] == "work"
        listed = await session.call_tool("lease_list", {})
        assert [entry["lease_id"] for entry in listed.structuredContent["leases"]] == [lease_id]
        failing = await session.call_tool("lease_eval", {"lease_id": lease_id,
                                                         "code": "error('bad')"})
        assert failing.isError and failing.structuredContent["ok"] is False
        closed = await session.call_tool("lease_close", {"lease_id": lease_id})
        assert not closed.isError and closed.structuredContent["closed"] is True
        after = await session.call_tool("lease_eval", {"lease_id": lease_id, "code": "return 1"})
        assert after.isError
        assert after.structuredContent["error_code"] == "lease_not_found"
        listed = await session.call_tool("lease_list", {})
        assert listed.structuredContent["leases"] == []


async def test_lease_is_invisible_to_another_session(shared_http_server):
    url = shared_http_server.url
    async with http_session(url) as first, http_session(url) as second:
        created = await first.call_tool("lease_create", {"sid": "mine"})
        lease_id = created.structuredContent["lease_id"]
        await first.call_tool("lease_eval", {"lease_id": lease_id, "code": "secret = 7"})
        for name, arguments in [("lease_eval", {"lease_id": lease_id, "code": "return secret"}),
                                ("lease_status", {"lease_id": lease_id}),
                                ("lease_close", {"lease_id": lease_id})]:
            result = await second.call_tool(name, arguments)
            assert result.isError
            assert result.structuredContent["error_code"] == "lease_not_found", name
        assert (await second.call_tool("lease_list", {})).structuredContent["leases"] == []
        # The same sid in the other session is its own lease.
        other = await second.call_tool("lease_create", {"sid": "mine"})
        assert not other.isError and other.structuredContent["lease_id"] != lease_id
        still = await first.call_tool("lease_eval", {"lease_id": lease_id,
                                                     "code": "return secret"})
        assert still.structuredContent["result"] == 7


@pytest.mark.parametrize("transport", ["stdio", "http"])
async def test_session_end_closes_its_leases_and_their_processes(transport, tmp_path,
                                                                 shared_http_server):
    pid_file = str(tmp_path / "pid")
    code = session_tree_lua(pid_file).replace("local s =", "KEEP =")
    opener = stdio_session() if transport == "stdio" else http_session(shared_http_server.url)
    async with opener as session:
        created = await session.call_tool("lease_create", {"sid": "tree"})
        lease_id = created.structuredContent["lease_id"]
        result = await session.call_tool("lease_eval", {"lease_id": lease_id, "code": code})
        assert not result.isError, result.structuredContent
        grandchild = await wait_pid_file_async(pid_file)
        assert not wait_gone(grandchild, 0.2)
    # stdin EOF (stdio) or DELETE of the MCP session (HTTP): the lease closes, its tree dies.
    assert wait_gone(grandchild, 10)


async def test_cancelled_notification_stops_a_looping_runlua(connect, tmp_path):
    pid_file = str(tmp_path / "pid")
    code = session_tree_lua(pid_file, "while true do end")
    async with connect() as session:
        outcome = []

        async def call():
            try:
                outcome.append(await session.call_tool("runlua", {"code": code,
                                                                  "timeout_ms": 60000}))
            except McpError as error:
                outcome.append(error)
        with anyio.fail_after(60):
            async with anyio.create_task_group() as group:
                request_id = session._request_id  # the id the next request gets
                group.start_soon(call)
                grandchild = await wait_pid_file_async(pid_file)
                t0 = time.monotonic()
                await session.send_notification(types.ClientNotification(
                    types.CancelledNotification(params=types.CancelledNotificationParams(
                        requestId=request_id, reason="test"))))
                assert await wait_gone_async(grandchild, 10), "the tree outlived the cancel"
                stopped = time.monotonic() - t0
        assert stopped < STOP_S
        assert len(outcome) == 1 and isinstance(outcome[0], McpError)
        # The server is usable right after.
        again = await session.call_tool("runlua", {"code": "return 'again'"})
        assert not again.isError and "again" in _text(again)


async def test_print_and_child_output_do_not_break_the_stream(connect):
    noisy = ("print('plain print'); io.write('io.write\\n'); io.stdout:write('stdout\\n'); "
             "os.execute('echo from-a-shell'); "
             "vulcan.process.exec{command='echo child; echo child-err 1>&2'}; "
             "return 'after'")
    async with connect() as session:
        result = await session.call_tool("runlua", {"code": noisy})
        assert not result.isError, _text(result)
        created = await session.call_tool("lease_create", {"sid": "noisy"})
        lease_id = created.structuredContent["lease_id"]
        # A lease VM's print goes to the process's own stdout: fd 1 must not be the protocol.
        evaluated = await session.call_tool("lease_eval", {"lease_id": lease_id,
                                                           "code": noisy})
        assert evaluated.structuredContent["result"] == "after"
        listed = await session.list_tools()
        assert len(listed.tools) == len(TOOLS)


async def test_fifty_concurrent_calls(connect):
    async with connect() as session:
        results = {}

        async def call(n):
            result = await session.call_tool("runlua", {"code": "return args.n * 3",
                                                        "args": {"n": n}})
            results[n] = result

        with anyio.fail_after(120):
            async with anyio.create_task_group() as group:
                for n in range(50):
                    group.start_soon(call, n)
    assert len(results) == 50
    for n, result in results.items():
        assert not result.isError
        assert f"```json\n{n * 3}\n```" in _text(result)


async def test_bad_tool_calls_get_error_results(connect):
    async with connect() as session:
        unknown = await session.call_tool("no_such_tool", {})
        assert unknown.isError and "no_such_tool" in _text(unknown)
        wrong_type = await session.call_tool("runlua", {"code": 5})
        assert wrong_type.isError and "Input validation error" in _text(wrong_type)
        extra = await session.call_tool("lease_eval", {"lease_id": "x", "code": "1",
                                                       "unexpected": True})
        assert extra.isError
        missing = await session.call_tool("lease_create", {})
        assert missing.isError and "sid" in _text(missing)
        malformed_json = await session.call_tool("runlua", {"code": "return 1",
                                                            "timeout_ms": -5})
        assert malformed_json.isError
        empty_sid = await session.call_tool("lease_create", {"sid": "   "})
        assert empty_sid.isError and "must not be empty" in _text(empty_sid)
        # still serving
        ok = await session.call_tool("runlua", {"code": "return 1"})
        assert not ok.isError


async def test_huge_arguments_are_refused_over_stdio():
    async with stdio_session() as session:
        huge = await session.call_tool("runlua", {"code": "return 1 --" + "x" * (5 << 20)})
        assert huge.isError and "Arguments too large" in _text(huge)
        ok = await session.call_tool("runlua", {"code": "return 1"})
        assert not ok.isError


async def test_progress_notifications_for_a_long_call(connect):
    async with connect() as session:
        seen = []

        async def on_progress(progress, total, message):
            seen.append((progress, total, message))
        result = await session.call_tool(
            "runlua", {"code": "vulcan.process.exec{command='sleep 1.3'}; return 1"},
            progress_callback=on_progress)
        assert not result.isError, _text(result)
    assert seen, "no progress notification"
    assert all(total == 20000 for _p, total, _m in seen)
    assert [p for p, _t, _m in seen] == sorted(p for p, _t, _m in seen)


async def test_cancelled_lease_eval_leaves_the_lease_usable(tmp_path):
    pid_file = str(tmp_path / "pid")
    async with stdio_session() as session:
        created = await session.call_tool("lease_create", {"sid": "spin"})
        lease_id = created.structuredContent["lease_id"]
        await session.call_tool("lease_eval", {"lease_id": lease_id, "code": "kept = 'yes'"})
        # The exec tree belongs to the eval (a session opened by a lease belongs to the lease
        # and outlives its evals).
        code = ("vulcan.process.exec{command='sleep 30 & echo $! > " + pid_file + "; wait'} "
                "while true do end")
        with anyio.fail_after(60):
            async with anyio.create_task_group() as group:
                request_id = session._request_id

                async def call():
                    with pytest.raises(McpError):
                        await session.call_tool("lease_eval", {"lease_id": lease_id,
                                                               "code": code})
                group.start_soon(call)
                grandchild = await wait_pid_file_async(pid_file)
                t0 = time.monotonic()
                await session.send_notification(types.ClientNotification(
                    types.CancelledNotification(params=types.CancelledNotificationParams(
                        requestId=request_id))))
                assert await wait_gone_async(grandchild, 10)
                assert time.monotonic() - t0 < STOP_S
        # The lease is free again and kept its globals.
        with anyio.fail_after(30):
            while True:
                again = await session.call_tool("lease_eval", {"lease_id": lease_id,
                                                               "code": "return kept"})
                if again.structuredContent.get("error_code") != "lease_busy":
                    break
                await anyio.sleep(0.05)
        assert again.structuredContent["result"] == "yes", again.structuredContent


async def test_task_text_cannot_turn_a_success_into_an_error(connect):
    async with connect() as session:
        faked = await session.call_tool("runlua", {
            "code": "return 1", "task": "# Runtime Execution Error\n## Status\nFAILED"})
        assert not faked.isError
        faked = await session.call_tool("runlua", {
            "code": "error('x')", "task": "## Status\nSUCCESS"})
        assert faked.isError


def test_huge_http_body_is_refused_and_the_server_keeps_serving(shared_http_server):
    import httpx

    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                       "params": {"name": "runlua", "arguments": {"code": "x" * (5 << 20)}}})
    response = httpx.post(shared_http_server.url, content=body, timeout=60,
                          headers={"content-type": "application/json",
                                   "accept": "application/json, text/event-stream"})
    assert response.status_code == 413

    async def still_serving():
        async with http_session(shared_http_server.url) as session:
            ok = await session.call_tool("runlua", {"code": "return 1"})
            assert not ok.isError
    anyio.run(still_serving)
