"""`luaskills-runtime mcp` at the protocol's edge: malformed JSON-RPC on raw stdio, options
(--policy, --http's default address, --max-leases, --cwd), and the server's exit at stdin EOF."""
import json
import os
import queue
import subprocess
import threading

import anyio
import pytest

# Not importorskip("mcp"): tests/ is on sys.path, so this folder itself would import as a
# namespace package `mcp` where the SDK is missing (Python 3.9) and skip nothing.
pytest.importorskip("mcp.server.lowlevel")

from luaskills_runtime.mcp.command import parse_http_address  # noqa: E402
from _mcp_support import (HttpServer, assert_no_new_descendants, descendants,  # noqa: E402
                          http_server, http_session, server_command, stdio_session)

pytestmark = pytest.mark.anyio
PROTOCOL_VERSION = "2025-06-18"


@pytest.fixture
def anyio_backend():
    return "asyncio"


class RawServer:
    """The stdio server with the test writing JSON-RPC lines itself."""

    def __init__(self, *extra):
        argv, env = server_command()
        self.process = subprocess.Popen(argv + list(extra), env=env, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.lines: "queue.Queue[bytes]" = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(b"")

    def send(self, data: bytes):
        self.process.stdin.write(data)
        self.process.stdin.flush()

    def request(self, request_id, method, params=None):
        message = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        self.send(json.dumps(message).encode() + b"\n")

    def response(self, request_id, timeout=30):
        """The response to request_id (other messages are skipped); every line must be JSON."""
        while True:
            line = self.lines.get(timeout=timeout)
            assert line, "the server closed its stdout"
            message = json.loads(line)  # anything else on stdout would be a corrupted stream
            if message.get("id") == request_id:
                return message

    def close(self):
        self.process.stdin.close()
        try:
            code = self.process.wait(30)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(10)
            self.reader.join(5)
            self.process.stdout.close()
        return code


def _initialize(server: RawServer):
    server.request(0, "initialize", {"protocolVersion": PROTOCOL_VERSION, "capabilities": {},
                                     "clientInfo": {"name": "raw", "version": "0"}})
    assert "result" in server.response(0)
    server.send(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')


def test_malformed_json_rpc_gets_errors_and_the_server_keeps_serving():
    before = descendants()
    server = RawServer()
    try:
        _initialize(server)
        server.send(b"this is not json\n")
        server.send(b'{"jsonrpc":"2.0","id":"x"}\n')                       # no method
        server.send(b"[1, 2, 3]\n")
        server.send(b'{"jsonrpc":"2.0","id":5,"method":"tools/call"}\n')   # no params
        error = server.response(5)
        assert "error" in error
        server.request(6, "no/such/method", {})
        assert server.response(6)["error"]["code"] in (-32601, -32602)  # SDK: unknown method
        server.request(7, "tools/call", {"name": "runlua", "arguments": "not an object"})
        assert "error" in server.response(7)
        server.request(8, "tools/call", {"name": "runlua",
                                         "arguments": {"code": "print('hi') return 3"}})
        result = server.response(8)["result"]
        assert result["isError"] is False and "3" in result["content"][0]["text"]
        assert server.close() == 0   # stdin EOF ends the server cleanly
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait(10)
    assert_no_new_descendants(before)


def test_policy_other_than_default_is_refused_until_the_runtime_has_policies():
    argv, env = server_command()
    result = subprocess.run(argv + ["--policy", "trusted"], env=env, stdin=subprocess.DEVNULL,
                            capture_output=True, timeout=60)
    assert result.returncode == 2
    assert b"--policy trusted is not available" in result.stderr
    assert result.stdout == b""
    bogus = subprocess.run(argv + ["--policy", "root"], env=env, stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=60)
    assert bogus.returncode == 2 and b"invalid choice" in bogus.stderr


def test_policy_default_is_accepted():
    server = RawServer("--policy", "default")
    try:
        _initialize(server)
    finally:
        assert server.close() == 0


def test_http_address_parsing():
    assert parse_http_address("8080") == ("127.0.0.1", 8080)
    assert parse_http_address("0") == ("127.0.0.1", 0)
    assert parse_http_address("localhost:9") == ("localhost", 9)
    assert parse_http_address("[::1]:7") == ("::1", 7)
    for bad in ("", "x", "1:2:x", "70000", "[::1]", ":5"):
        with pytest.raises(Exception):
            parse_http_address(bad)


def test_http_listens_on_loopback_unless_told_otherwise():
    # `--http 0`: no host given.
    before = descendants()
    server = HttpServer(address="0")
    try:
        assert server.url.startswith("http://127.0.0.1:")
        assert not server.url.startswith("http://127.0.0.1:0/")
    finally:
        server.stop()
    assert_no_new_descendants(before)


async def test_max_leases_counts_every_session():
    with http_server("--max-leases", "2") as server:
        async with http_session(server.url) as first, http_session(server.url) as second:
            assert not (await first.call_tool("lease_create", {"sid": "a"})).isError
            assert not (await second.call_tool("lease_create", {"sid": "a"})).isError
            refused = await first.call_tool("lease_create", {"sid": "b"})
            assert refused.isError and refused.structuredContent["error_code"] == "lease_limit"
            replaced = await first.call_tool("lease_create", {"sid": "a", "replace": True})
            assert not replaced.isError, replaced.structuredContent
            lease_id = replaced.structuredContent["lease_id"]
            await first.call_tool("lease_close", {"lease_id": lease_id})
            assert not (await first.call_tool("lease_create", {"sid": "b"})).isError


async def test_cwd_option(tmp_path):
    (tmp_path / "hello.lua").write_text("return 'from a file'")
    async with stdio_session("--cwd", str(tmp_path)) as session:
        result = await session.call_tool("runlua", {"file": "hello.lua"})
        assert not result.isError and "from a file" in result.content[0].text
        created = await session.call_tool("lease_create", {"sid": "c"})
        assert created.structuredContent["cwd"] == str(tmp_path)


def test_missing_cwd_is_a_usage_error(tmp_path):
    argv, env = server_command()
    result = subprocess.run(argv + ["--cwd", str(tmp_path / "absent")], env=env,
                            stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    assert result.returncode == 2 and b"--cwd is not a directory" in result.stderr


@pytest.mark.skipif(os.name == "nt", reason="POSIX signals")
def test_sigterm_ends_a_stdio_server_and_kills_its_lease_trees(tmp_path):
    import signal

    from _process_support import session_tree_lua, wait_gone, wait_pid_file
    pid_file = tmp_path / "pid"
    before = descendants()
    server = RawServer()
    try:
        _initialize(server)
        server.request(1, "tools/call", {"name": "lease_create", "arguments": {"sid": "t"}})
        lease_id = server.response(1)["result"]["structuredContent"]["lease_id"]
        code = session_tree_lua(str(pid_file)).replace("local s =", "KEEP =")
        server.request(2, "tools/call", {"name": "lease_eval",
                                         "arguments": {"lease_id": lease_id, "code": code}})
        assert server.response(2)["result"]["isError"] is False
        grandchild = wait_pid_file(str(pid_file), 30)
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(30) == 0
        assert wait_gone(grandchild, 10)
    finally:
        server.close()
    assert_no_new_descendants(before)


def test_options_reach_host_options(tmp_path):
    from luaskills_runtime.cli import build_parser
    from luaskills_runtime.mcp.command import host_options

    options = build_parser().parse_args(["mcp", "--system-lua-lib", str(tmp_path),
                                         "--timeout-ms", "1500", "--max-leases", "3"])
    assert host_options(options).system_lua_lib_dir == str(tmp_path)
    assert (options.timeout_ms, options.max_leases, options.http) == (1500, 3, None)
    for bad in (["--timeout-ms", "0"], ["--max-leases", "-1"], ["--http", "x:y"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["mcp"] + bad)
