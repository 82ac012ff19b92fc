"""The MCP tools the server offers: names, JSON schemas, descriptions written for a model, and
MCP tool annotations.  Pure data (no SDK objects), so the README and tests can read it too."""
from __future__ import annotations

from typing import Any, Dict, List

#: Largest tool-call arguments the server accepts, as JSON bytes (the Streamable HTTP transport
#: refuses bodies over 4 MiB before this; stdio has no limit of its own).
MAX_ARGUMENTS_BYTES = 4 * 1024 * 1024

_TIMEOUT_DOC = ("time limit in milliseconds; the code is stopped (and every process it started "
                "killed) when it runs longer. Default: the server's --timeout-ms.")

TOOLS: List[Dict[str, Any]] = [
    {
        "name": "runlua",
        "description": (
            "Run a Lua (LuaJIT) snippet or file in a fresh, isolated VM and get a Markdown "
            "report: the task, SUCCESS or FAILED, what the code printed and the values it "
            "returned (or the error). The `vulcan` library is available: vulcan.process.exec "
            "runs commands, vulcan.process.session keeps a process open, vulcan.fs / vulcan.json "
            "and the `io` library work as usual. Nothing survives between calls; use the lease "
            "tools to keep state. Give `code` or `file`. The result is an error when the code "
            "failed, timed out or the request is malformed."),
        "inputSchema": {
            "type": "object",
            "properties": {
                "code": {"type": "string", "description": "Lua source to run."},
                "file": {"type": "string",
                         "description": "Path of a Lua file to run instead of `code`; its folder "
                                        "is the working directory while it runs."},
                "args": {"description": "Any JSON value; the code sees it as `args`."},
                "timeout_ms": {"type": "integer", "minimum": 1, "description": _TIMEOUT_DOC},
                "task": {"type": "string",
                         "description": "One line saying what the code is for (report heading)."},
            },
            "additionalProperties": False,
        },
        "annotations": {"title": "Run Lua", "readOnlyHint": False, "destructiveHint": True,
                        "idempotentHint": False, "openWorldHint": True},
    },
    {
        "name": "lease_create",
        "description": (
            "Create a lease: a persistent Lua VM whose globals survive between lease_eval calls "
            "(for multi-step work that builds up state). `sid` names it; a second lease with the "
            "same sid fails unless `replace` is true (replaces an idle one). The lease expires "
            "after `ttl_sec` seconds (1..3600, default 600) and is closed when this MCP session "
            "ends. Returns the lease payload; keep its `lease_id`."),
        "inputSchema": {
            "type": "object",
            "properties": {
                "sid": {"type": "string", "minLength": 1,
                        "description": "Name of the lease (unique within this session)."},
                "ttl_sec": {"type": "integer", "minimum": 1, "maximum": 3600,
                            "description": "Seconds until the lease expires (default 600)."},
                "replace": {"type": "boolean",
                            "description": "Replace an idle lease of the same sid."},
            },
            "required": ["sid"],
            "additionalProperties": False,
        },
        "annotations": {"title": "Create lease", "readOnlyHint": False, "destructiveHint": False,
                        "idempotentHint": False, "openWorldHint": False},
    },
    {
        "name": "lease_eval",
        "description": (
            "Run Lua code inside a lease created by lease_create. Globals set by earlier evals "
            "are still there (use globals, not `local`, for values to keep). `return` a value to "
            "get it back as `result` in the payload. Same `vulcan` library as runlua. The result "
            "is an error (with `error_code` and `message`) when the code failed, timed out or "
            "the lease is gone."),
        "inputSchema": {
            "type": "object",
            "properties": {
                "lease_id": {"type": "string", "description": "The lease_id from lease_create."},
                "code": {"type": "string", "description": "Lua source to run in the lease."},
                "args": {"description": "Any JSON value; the code sees it as `args`."},
                "timeout_ms": {"type": "integer", "minimum": 1, "description": _TIMEOUT_DOC},
            },
            "required": ["lease_id", "code"],
            "additionalProperties": False,
        },
        "annotations": {"title": "Evaluate in lease", "readOnlyHint": False,
                        "destructiveHint": True, "idempotentHint": False, "openWorldHint": True},
    },
    {
        "name": "lease_status",
        "description": "Show one lease of this session: sid, generation, expiry, closed/expired.",
        "inputSchema": {
            "type": "object",
            "properties": {"lease_id": {"type": "string",
                                        "description": "The lease_id from lease_create."}},
            "required": ["lease_id"],
            "additionalProperties": False,
        },
        "annotations": {"title": "Lease status", "readOnlyHint": True, "destructiveHint": False,
                        "idempotentHint": True, "openWorldHint": False},
    },
    {
        "name": "lease_list",
        "description": "List the open leases of this session (their status payloads).",
        "inputSchema": {"type": "object", "properties": {}, "additionalProperties": False},
        "annotations": {"title": "List leases", "readOnlyHint": True, "destructiveHint": False,
                        "idempotentHint": True, "openWorldHint": False},
    },
    {
        "name": "lease_close",
        "description": ("Close a lease of this session: its VM and every process it started are "
                        "gone; later evals on it fail with lease_not_found."),
        "inputSchema": {
            "type": "object",
            "properties": {"lease_id": {"type": "string",
                                        "description": "The lease_id from lease_create."}},
            "required": ["lease_id"],
            "additionalProperties": False,
        },
        "annotations": {"title": "Close lease", "readOnlyHint": False, "destructiveHint": True,
                        "idempotentHint": True, "openWorldHint": False},
    },
]

TOOL_NAMES = frozenset(tool["name"] for tool in TOOLS)
