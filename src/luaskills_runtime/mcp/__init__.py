"""luaskills_runtime.mcp: the `luaskills-runtime mcp` server (Model Context Protocol).

A layer above ``luaskills_runtime.aio``: tools ``runlua`` and ``lease_*`` served over stdio or
Streamable HTTP with the official ``mcp`` SDK (``pip install 'luaskills-runtime[mcp]'``).
Importing this package does not import the SDK; ``luaskills_runtime.mcp.server`` and
``luaskills_runtime.mcp.transport`` do.
"""
from luaskills_runtime.mcp.tools import TOOLS

__all__ = ["TOOLS"]
