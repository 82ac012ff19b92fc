"""`luaskills-runtime mcp`: options and entry point.  Importing this module does not need the
``mcp`` SDK (an optional extra); running the command does."""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from typing import Any, Optional, Tuple

from luaskills_runtime.options import HostOptions
from luaskills_runtime.runlua import DEFAULT_TIMEOUT_MS

__all__ = ["POLICIES", "add_mcp_parser", "cmd_mcp", "parse_http_address"]

POLICIES = ("default", "trusted", "untrusted")
EXIT_OK, EXIT_USAGE = 0, 2
DEFAULT_HTTP_HOST = "127.0.0.1"


def parse_http_address(text: str) -> Tuple[str, int]:
    """`PORT`, `HOST:PORT` or `[IPv6]:PORT` -> (host, port); the host defaults to 127.0.0.1."""
    host, port_text = DEFAULT_HTTP_HOST, text
    if text.startswith("["):
        end = text.find("]:")
        if end < 0:
            raise argparse.ArgumentTypeError(f"expected [HOST]:PORT, got {text!r}")
        host, port_text = text[1:end], text[end + 2:]
    elif ":" in text:
        host, port_text = text.rsplit(":", 1)
    try:
        port = int(port_text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {port_text!r}") from None
    if not 0 <= port <= 65535 or not host:
        raise argparse.ArgumentTypeError(f"expected [HOST:]PORT with PORT in 0..65535, got {text!r}")
    return host, port


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {value}")
    return value


def add_mcp_parser(sub: Any) -> None:
    """Add the `mcp` subcommand to the CLI's subparsers."""
    parser = sub.add_parser(
        "mcp", help="serve runlua and leases to MCP clients (stdio, or Streamable HTTP)",
        description="Model Context Protocol server: tools runlua, lease_create, lease_eval, "
                    "lease_status, lease_list, lease_close. Serves stdio unless --http is given. "
                    "Needs the mcp extra: pip install 'luaskills-runtime[mcp]'.")
    parser.add_argument("--http", metavar="[HOST:]PORT", type=parse_http_address,
                        help=f"serve Streamable HTTP at http://HOST:PORT/mcp (host "
                             f"{DEFAULT_HTTP_HOST} unless given; port 0 picks a free one)")
    parser.add_argument("--policy", choices=POLICIES, default="default",
                        help="execution policy (only `default` until the runtime has policies)")
    parser.add_argument("--timeout-ms", type=_positive_int, default=DEFAULT_TIMEOUT_MS,
                        help=f"default time limit of runlua and lease_eval calls "
                             f"(default {DEFAULT_TIMEOUT_MS})")
    parser.add_argument("--max-leases", type=_positive_int,
                        help="most leases the server holds at once (all sessions; default no limit)")
    parser.add_argument("--cwd", help="working directory of the server, its runlua calls and leases")
    parser.add_argument("--system-lua-lib", metavar="DIR",
                        help="folder of the system_lua_lib profile (HostOptions.system_lua_lib_dir)")
    parser.set_defaults(handler=cmd_mcp)


def host_options(options: argparse.Namespace) -> HostOptions:
    """HostOptions from the command line; raises ValueError for a policy the runtime lacks."""
    fields = {"system_lua_lib_dir": options.system_lua_lib}
    if any(f.name == "policy" for f in dataclasses.fields(HostOptions)):
        fields["policy"] = options.policy
    elif options.policy != "default":
        raise ValueError(f"--policy {options.policy} is not available: this runtime has no "
                         "execution policies yet (only `default`)")
    return HostOptions(**fields)


async def _stop_on_signal(scope: Any) -> None:
    """SIGTERM/SIGHUP end a stdio server like stdin EOF does: sessions end, their leases close
    and the process trees they started are killed before the process exits."""
    import signal

    import anyio

    wanted = [getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)]
    try:
        receiver = anyio.open_signal_receiver(*wanted)
    except NotImplementedError:  # Windows event loops
        return
    with receiver as signals:
        async for _signal in signals:
            scope.cancel()
            return


def _usage_error(message: str) -> int:
    print(f"luaskills-runtime mcp: {message}", file=sys.stderr)
    return EXIT_USAGE


def cmd_mcp(options: argparse.Namespace) -> int:
    """Run the MCP server until stdin ends (stdio) or SIGINT/SIGTERM (HTTP)."""
    try:
        import anyio

        from luaskills_runtime.aio import AsyncLuaEngine
        from luaskills_runtime.mcp import transport
        from luaskills_runtime.mcp.server import McpRuntime, build_server
    except ImportError as error:
        return _usage_error(f"the MCP SDK is missing ({error}); "
                            "install it with: pip install 'luaskills-runtime[mcp]'")
    try:
        host = host_options(options)
    except ValueError as error:
        return _usage_error(str(error))
    lease_cwd: Optional[str] = None
    if options.cwd is not None:
        if not os.path.isdir(options.cwd):
            return _usage_error(f"--cwd is not a directory: {options.cwd}")
        os.chdir(options.cwd)
        lease_cwd = os.getcwd()
    sock = None
    if options.http is not None:
        try:
            sock = transport.bind_socket(*options.http)
        except OSError as error:
            return _usage_error(f"cannot listen on {options.http[0]}:{options.http[1]}: {error}")
    # Logs go to stderr, never to the protocol's stdout.
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                        format="luaskills-runtime mcp: %(levelname)s %(name)s: %(message)s")

    def announce(url: str) -> None:
        print(f"luaskills-runtime mcp: serving Streamable HTTP at {url}", file=sys.stderr,
              flush=True)

    async def serve() -> None:
        async with AsyncLuaEngine(host) as engine:
            runtime = McpRuntime(engine, timeout_ms=options.timeout_ms,
                                 max_leases=options.max_leases, lease_cwd=lease_cwd)
            server = build_server(runtime)
            if sock is None:
                async with anyio.create_task_group() as group:
                    group.start_soon(_stop_on_signal, group.cancel_scope)
                    await transport.serve_stdio(server)
                    group.cancel_scope.cancel()
            else:
                await transport.serve_http(server, sock, announce)  # uvicorn handles signals

    try:
        anyio.run(serve)
    except KeyboardInterrupt:
        pass
    finally:
        if sock is not None:
            sock.close()
    return EXIT_OK
