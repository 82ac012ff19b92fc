"""The MCP server: tool calls on an AsyncLuaEngine, leases owned by the MCP session that made
them.

Each MCP session (one stdio connection, one Streamable HTTP session) runs ``Server.run`` and so
enters the server lifespan once: the lifespan yields that session's :class:`SessionLeases` and,
when the session ends (stdin EOF, client disconnect, HTTP DELETE or idle expiry), closes every
lease it still holds.  A session sees only its own leases: their SIDs are prefixed with a
per-session namespace in the engine, ids of other sessions answer ``lease_not_found``.

Cancellation: the SDK cancels the handler's scope on ``notifications/cancelled``; the
AsyncLuaEngine call awaiting underneath stops the Lua work and kills its process trees.
"""
from __future__ import annotations

import contextlib
import itertools
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Dict, List, Mapping, Optional

import anyio
import jsonschema
import mcp.types as types
from mcp.server.lowlevel import Server

from luaskills_runtime._version import __version__
from luaskills_runtime.aio import AsyncLuaEngine
from luaskills_runtime.errors import LuaSkillsError
from luaskills_runtime.leases.manager import lease_not_found
from luaskills_runtime.leases.requests import SID_MAX_BYTES, normalize_sid
from luaskills_runtime.mcp.tools import MAX_ARGUMENTS_BYTES, TOOL_NAMES, TOOLS
from luaskills_runtime.runlua import DEFAULT_TIMEOUT_MS
from luaskills_runtime.types import CreateLeaseFields, EvalLeaseFields

__all__ = ["McpRuntime", "SessionLeases", "build_server", "runlua_failed"]

logger = logging.getLogger("luaskills_runtime.mcp")

#: How often a long call reports progress to a client that sent a progress token.
PROGRESS_INTERVAL_S = 0.5
_session_numbers = itertools.count(1)
_request_numbers = itertools.count(1)


def runlua_failed(markdown: str) -> bool:
    """True when a runlua report says FAILED: its first line is the error heading (the status
    line itself can move, the task heading may span lines)."""
    return markdown.startswith("# Runtime Execution Error")


def _lease_not_found(lease_id: str) -> Dict[str, Any]:
    # The engine's own payload, so a foreign id looks exactly like an unknown one.
    return lease_not_found(lease_id).payload()


@dataclass
class SessionLeases:
    """The leases one MCP session holds: lease_id -> the SID the client gave."""

    namespace: str
    owned: Dict[str, str] = field(default_factory=dict)

    def engine_sid(self, sid: str) -> str:
        """The SID the engine knows the client's `sid` by (namespaced to this session)."""
        return self.namespace + sid

    def client_payload(self, payload: Mapping[str, Any]) -> Dict[str, Any]:
        """The payload as the client sees it: engine SIDs without the session namespace."""
        out = dict(payload)
        sid = out.get("sid")
        if isinstance(sid, str) and sid.startswith(self.namespace):
            out["sid"] = sid[len(self.namespace):]
        message = out.get("message")
        if isinstance(message, str):
            out["message"] = message.replace(self.namespace, "")
        return out


class McpRuntime:
    """What the server needs besides the SDK: the engine, defaults and the lease owners."""

    def __init__(self, engine: AsyncLuaEngine, *, timeout_ms: int = DEFAULT_TIMEOUT_MS,
                 max_leases: Optional[int] = None, lease_cwd: Optional[str] = None) -> None:
        self.engine = engine
        self.timeout_ms = timeout_ms
        self.max_leases = max_leases
        self.lease_cwd = lease_cwd
        self.sessions: List[SessionLeases] = []
        # One compiled validator per tool: jsonschema.validate() re-checks the schema itself on
        # every call (about 2 ms, most of a trivial call's round trip).
        self._validators = {tool["name"]: jsonschema.Draft202012Validator(tool["inputSchema"])
                            for tool in TOOLS}

    # ---- session lifetime ----------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def session_scope(self, _server: Any) -> AsyncIterator[SessionLeases]:
        """The server lifespan, entered once per MCP session: yields the session's leases and
        closes those still open when the session ends."""
        leases = SessionLeases(namespace=f"mcp{next(_session_numbers)}:")
        self.sessions.append(leases)
        try:
            yield leases
        finally:
            with anyio.CancelScope(shield=True):
                self.sessions.remove(leases)
                for lease_id in list(leases.owned):
                    try:
                        # An eval still finishing would make close answer lease_busy.
                        await self.engine.cancel_runtime_lease(lease_id=lease_id)
                        await self.engine.close_runtime_lease(lease_id=lease_id)
                    except LuaSkillsError as error:  # engine closed meanwhile
                        logger.debug("closing lease %s: %s", lease_id, error)
                leases.owned.clear()

    # ---- tool calls ----------------------------------------------------------------------------
    async def call(self, name: str, arguments: Mapping[str, Any], leases: SessionLeases,
                   request_id: Any) -> types.CallToolResult:
        """One tool call of the session owning `leases`; every failure is an isError result."""
        if name not in TOOL_NAMES:
            return _error_text(f"Unknown tool: {name}")
        error = jsonschema.exceptions.best_match(self._validators[name].iter_errors(arguments))
        if error is not None:
            return _error_text(f"Input validation error: {error.message}")
        size = len(json.dumps(arguments, ensure_ascii=False).encode("utf-8", "surrogatepass"))
        if size > MAX_ARGUMENTS_BYTES:
            return _error_text(f"Arguments too large: {size} bytes (limit {MAX_ARGUMENTS_BYTES})")
        try:
            if name == "runlua":
                return await self._runlua(arguments, request_id)
            lease_tools = {"lease_create": self._lease_create, "lease_eval": self._lease_eval,
                           "lease_status": self._lease_status, "lease_list": self._lease_list,
                           "lease_close": self._lease_close}
            payload = await lease_tools[name](arguments, leases)
        except LuaSkillsError as error:
            return _error_text(str(error))
        return _payload_result(leases.client_payload(payload))

    async def _runlua(self, arguments: Mapping[str, Any], request_id: Any) -> types.CallToolResult:
        request = {key: arguments[key] for key in ("code", "file", "args", "task")
                   if key in arguments}
        if "code" not in request and "file" not in request:
            return _error_text("runlua needs `code` or `file`")
        request.setdefault("task", "")
        request["timeout_ms"] = arguments.get("timeout_ms", self.timeout_ms)
        markdown = await self.engine.execute_runlua_request_inline(
            request, request_id=("mcp-runlua", request_id, next(_request_numbers)))
        return types.CallToolResult(content=[types.TextContent(type="text", text=markdown)],
                                    isError=runlua_failed(markdown))

    async def _live_owned(self, leases: SessionLeases) -> None:
        """Forget owned ids the engine no longer has (expired by their ttl)."""
        listed = await self.engine.list_runtime_leases()
        alive = {entry.get("lease_id") for entry in listed.get("leases", [])}
        for lease_id in [i for i in leases.owned if i not in alive]:
            del leases.owned[lease_id]

    async def _lease_create(self, arguments: Mapping[str, Any],
                            leases: SessionLeases) -> Mapping[str, Any]:
        sid = normalize_sid(arguments["sid"])
        limit = SID_MAX_BYTES - len(leases.namespace.encode())
        if len(sid.encode("utf-8", "surrogatepass")) > limit:
            raise LuaSkillsError(f"runtime session sid must not exceed {limit} bytes")
        replace = bool(arguments.get("replace", False))
        if self.max_leases is not None:
            for session in self.sessions:
                await self._live_owned(session)
            held = sum(len(session.owned) for session in self.sessions)
            replacing = replace and sid in leases.owned.values()
            if held >= self.max_leases and not replacing:
                return {"ok": False, "error_code": "lease_limit",
                        "message": f"the server holds its maximum of {self.max_leases} leases; "
                                   "close one first"}
        fields: CreateLeaseFields = {"sid": leases.engine_sid(sid), "replace": replace}
        if "ttl_sec" in arguments:
            fields["ttl_sec"] = arguments["ttl_sec"]
        if self.lease_cwd is not None:
            fields["cwd"] = self.lease_cwd
        payload = await self.engine.create_runtime_lease(fields)
        if payload.get("ok"):
            for old in [i for i, s in leases.owned.items() if s == sid]:
                del leases.owned[old]        # replaced: the engine closed it
            leases.owned[payload["lease_id"]] = sid
        return payload

    async def _lease_eval(self, arguments: Mapping[str, Any],
                          leases: SessionLeases) -> Mapping[str, Any]:
        lease_id = arguments["lease_id"]
        if lease_id not in leases.owned:
            return _lease_not_found(lease_id)
        fields: EvalLeaseFields = {"lease_id": lease_id, "code": arguments["code"],
                                   "timeout_ms": arguments.get("timeout_ms", self.timeout_ms)}
        if "args" in arguments:
            fields["args"] = arguments["args"]
        return await self.engine.eval_runtime_lease(fields)

    async def _lease_status(self, arguments: Mapping[str, Any],
                            leases: SessionLeases) -> Mapping[str, Any]:
        lease_id = arguments["lease_id"]
        if lease_id not in leases.owned:
            return _lease_not_found(lease_id)
        return await self.engine.runtime_lease_status(lease_id=lease_id)

    async def _lease_list(self, arguments: Mapping[str, Any],
                          leases: SessionLeases) -> Mapping[str, Any]:
        listed = await self.engine.list_runtime_leases()
        mine = [leases.client_payload(entry) for entry in listed.get("leases", [])
                if entry.get("lease_id") in leases.owned]
        return {**listed, "leases": mine}

    async def _lease_close(self, arguments: Mapping[str, Any],
                           leases: SessionLeases) -> Mapping[str, Any]:
        lease_id = arguments["lease_id"]
        if lease_id not in leases.owned:
            return _lease_not_found(lease_id)
        payload = await self.engine.close_runtime_lease(lease_id=lease_id)
        leases.owned.pop(lease_id, None)
        return payload


def _error_text(text: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], isError=True)


def _payload_result(payload: Dict[str, Any]) -> types.CallToolResult:
    text = json.dumps(payload, ensure_ascii=False, indent=2)
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)],
                                structuredContent=payload, isError=payload.get("ok") is False)


async def _report_progress(session: Any, token: Any, request_id: Any, total_ms: Optional[int]) -> None:
    """Send a progress notification every PROGRESS_INTERVAL_S until cancelled (the call ended)."""
    started = time.monotonic()
    while True:
        await anyio.sleep(PROGRESS_INTERVAL_S)
        elapsed_ms = int((time.monotonic() - started) * 1000)
        await session.send_progress_notification(
            token, float(elapsed_ms), float(total_ms) if total_ms else None,
            f"running for {elapsed_ms} ms", related_request_id=str(request_id))


def build_server(runtime: McpRuntime) -> Server:
    """The low-level SDK server with the tool handlers bound to `runtime`."""
    server: Server = Server("luaskills-runtime", version=__version__,
                            instructions=("Run Lua (LuaJIT) code with the vulcan library: runlua "
                                          "for one-off snippets, leases for state kept between "
                                          "calls."),
                            lifespan=runtime.session_scope)
    tools = [types.Tool(name=t["name"], description=t["description"],
                        inputSchema=t["inputSchema"],
                        annotations=types.ToolAnnotations(**t["annotations"])) for t in TOOLS]

    @server.list_tools()
    async def list_tools() -> List[types.Tool]:
        return tools

    @server.call_tool(validate_input=False)  # McpRuntime.call validates (compiled schemas)
    async def call_tool(name: str, arguments: Dict[str, Any]) -> types.CallToolResult:
        ctx = server.request_context
        token = ctx.meta.progressToken if ctx.meta is not None else None
        if token is None:
            return await runtime.call(name, arguments, ctx.lifespan_context, ctx.request_id)
        total = arguments.get("timeout_ms", runtime.timeout_ms)
        async with anyio.create_task_group() as group:
            group.start_soon(_report_progress, ctx.session, token, ctx.request_id,
                             total if isinstance(total, int) else None)
            try:
                result = await runtime.call(name, arguments, ctx.lifespan_context,
                                            ctx.request_id)
            finally:
                group.cancel_scope.cancel()
        return result

    return server
