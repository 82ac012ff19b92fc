"""Serving the MCP server over stdio or Streamable HTTP.

stdio: the protocol gets private copies of the process's stdin and stdout; file descriptor 1
then points at stderr and 0 at the null device, so nothing else in the process (Lua ``print``
and ``io.write`` in a VM that writes to the real stdout, C code, child processes inheriting the
descriptors, a stray Python ``print``) can corrupt the JSON-RPC stream or steal its input.
"""
from __future__ import annotations

import io
import os
import socket
import sys
from typing import Any, Callable, Tuple

import anyio
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings

__all__ = ["HTTP_PATH", "claim_stdio", "serve_http", "serve_stdio"]

HTTP_PATH = "/mcp"
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def claim_stdio() -> Tuple[int, Any]:
    """Take fd 0 and fd 1 for the protocol (see the module docstring); returns the protocol's
    input descriptor and its output as a text file.  The private copies are not inherited by
    child processes."""
    sys.stdout.flush()
    protocol_in = os.dup(0)
    protocol_out = os.dup(1)
    os.dup2(2, 1)
    null_fd = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null_fd, 0)
    os.close(null_fd)
    sys.stdout = sys.stderr
    stdout = io.TextIOWrapper(os.fdopen(protocol_out, "wb"), encoding="utf-8",
                              line_buffering=False)
    return protocol_in, stdout


class _InputLines:
    """The protocol's input lines, read from a descriptor so that cancelling the read never
    waits on a thread stuck in read() (a signal can end the server while the client keeps its
    end open).  POSIX pipes wait on the event loop; elsewhere (Windows, regular files) the read
    runs on a worker thread."""

    _CHUNK = 1 << 16

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._pending = bytearray()
        self._scanned = 0
        self._eof = False
        self._poll = os.name == "posix"

    def __aiter__(self) -> "_InputLines":
        return self

    async def _read_chunk(self) -> bytes:
        if self._poll:
            try:
                await anyio.wait_readable(self._fd)
            except (OSError, NotImplementedError):  # e.g. a regular file: epoll refuses it
                self._poll = False
            else:
                return os.read(self._fd, self._CHUNK)
        return await anyio.to_thread.run_sync(os.read, self._fd, self._CHUNK)

    async def __anext__(self) -> str:
        while True:
            newline = self._pending.find(b"\n", self._scanned)
            if newline >= 0:
                line = bytes(self._pending[:newline + 1])
                del self._pending[:newline + 1]
                self._scanned = 0
                return line.decode("utf-8", "replace")
            self._scanned = len(self._pending)
            if self._eof:
                if not self._pending:
                    raise StopAsyncIteration
                line = bytes(self._pending)
                self._pending.clear()
                return line.decode("utf-8", "replace")
            chunk = await self._read_chunk()
            if chunk:
                self._pending += chunk
            else:
                self._eof = True


async def serve_stdio(server: Server) -> None:
    """Serve one MCP session on the process's stdin/stdout until stdin ends."""
    protocol_in, stdout = claim_stdio()
    try:
        async with stdio_server(_InputLines(protocol_in),  # type: ignore[arg-type]
                                anyio.wrap_file(stdout)) as (read, write):
            await server.run(read, write, server.create_initialization_options())
    finally:
        os.close(protocol_in)


class _StreamableHttpEndpoint:
    """The ASGI endpoint handing every request on HTTP_PATH to the session manager."""

    def __init__(self, manager: StreamableHTTPSessionManager) -> None:
        self.manager = manager

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.manager.handle_request(scope, receive, send)


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port); port 0 picks a free one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
        sock.set_inheritable(False)
    except OSError:
        sock.close()
        raise
    return sock


async def serve_http(server: Server, sock: socket.socket,
                     announce: Callable[[str], None]) -> None:
    """Serve the Streamable HTTP transport on `sock` (one MCP session per client session) until
    SIGINT/SIGTERM; `announce` gets the URL once the socket accepts connections."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.routing import Route

    host = sock.getsockname()[0]
    security = None
    if host in _LOOPBACK or host.startswith("127."):
        # DNS rebinding protection: a browser page must not reach a loopback server.
        security = TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*"],
            allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"])
    manager = StreamableHTTPSessionManager(app=server, stateless=False,
                                           security_settings=security)
    app = Starlette(routes=[Route(HTTP_PATH, endpoint=_StreamableHttpEndpoint(manager))],
                    lifespan=lambda _app: manager.run())
    config = uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False,
                            log_config=None)
    http_server = uvicorn.Server(config)
    port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    announce(f"http://{shown}:{port}{HTTP_PATH}")
    await http_server.serve(sockets=[sock])
