"""runlua (SPEC 8): one isolated Lua request on a pooled VM, answered with a Markdown report."""
from luaskills_runtime.runlua.service import (DEFAULT_TIMEOUT_MS, RunluaReport, RunluaRequest,
                                              RunluaService, parse_request_json,
                                              request_from_mapping)

__all__ = ["DEFAULT_TIMEOUT_MS", "RunluaReport", "RunluaRequest", "RunluaService",
           "parse_request_json", "request_from_mapping"]
