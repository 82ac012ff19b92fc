"""The Markdown document a runlua request answers with (SPEC 8), byte for byte as the reference.

The reference builds its JSON blocks with serde_json's pretty printer; `pretty_json` reproduces that
output (2-space indent, `": "`, serde's string escapes and its shortest float notation such as
`1e20` and `1.5e-7`), which Python's json module writes differently for floats.
"""
from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any, Callable, List, Sequence, Tuple

from luaskills_runtime._ref.rust import rust_trim
from luaskills_runtime.errors import LuaSkillsError
from luaskills_runtime.lua.luajson import lua_to_json

DEFAULT_TASK = "Execute Lua runtime code"

# Rust's str::trim removes Unicode White_Space; Python's str.strip would also remove U+001C..U+001F.
RenderedValue = Tuple[str, str]  # (fence format "json" | "text", block content)


def task_heading(task: str) -> str:
    trimmed = rust_trim(task)
    return trimmed if trimmed else DEFAULT_TASK


def _printed_section(printed: Sequence[str]) -> List[str]:
    if not printed:
        return []
    return ["", "## Printed Output", "```text", "\n".join(printed), "```"]


def render_success(task: str, printed: Sequence[str], values: Sequence[RenderedValue]) -> str:
    lines = ["# Runtime Execution Result", "", "## Task", task_heading(task), "",
             "## Status", "SUCCESS"]
    lines += _printed_section(printed)
    lines += ["", "## Returned Values"]
    for index, (fmt, content) in enumerate(values):
        lines += [f"{index + 1}. ", f"```{fmt}", content, "```"]
        if index + 1 < len(values):
            lines.append("")
    return "\n".join(lines)


def render_error(task: str, printed: Sequence[str], error_text: str) -> str:
    lines = ["# Runtime Execution Error", "", "## Task", task_heading(task), "",
             "## Status", "FAILED", "", "## Error", "```text", error_text, "```"]
    lines += _printed_section(printed)
    return "\n".join(lines)


NULL_VALUE: RenderedValue = ("json", "null")
NO_VALUES: Tuple[RenderedValue, ...] = (NULL_VALUE,)


def render_value(value: Any, inline: Callable[[Any], str]) -> RenderedValue:
    """One returned Lua value: strings as text blocks (the reference shows a string that is not
    valid UTF-8 as an empty block), JSON-convertible values as pretty JSON, anything else (a
    function, a table holding one) as its inline text, which `inline` gives (Lua's tostring)."""
    kind = type(value)
    if kind is bytes:
        try:
            return ("text", value.decode("utf-8"))
        except UnicodeDecodeError:
            return ("text", "")
    if value is None:
        return NULL_VALUE
    if kind is bool:
        return ("json", "true" if value else "false")
    if kind is int:
        return ("json", str(value))
    try:
        data = lua_to_json(value)
    except LuaSkillsError:
        return ("text", inline(value))
    return ("json", pretty_json(data))


# ---- serde_json-compatible pretty printer ----------------------------------------------------

def pretty_json(value: Any) -> str:
    parts: List[str] = []
    _write(value, 0, parts)
    return "".join(parts)


def _write(value: Any, depth: int, out: List[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, float):
        out.append(format_json_float(value))
    elif isinstance(value, str):
        out.append(json.dumps(value, ensure_ascii=False))
    elif isinstance(value, dict):
        if not value:
            out.append("{}")
            return
        inner = "  " * (depth + 1)
        out.append("{\n")
        for index, (key, item) in enumerate(value.items()):
            if index:
                out.append(",\n")
            out.append(inner + json.dumps(str(key), ensure_ascii=False) + ": ")
            _write(item, depth + 1, out)
        out.append("\n" + "  " * depth + "}")
    elif isinstance(value, (list, tuple)):
        if not value:
            out.append("[]")
            return
        inner = "  " * (depth + 1)
        out.append("[\n")
        for index, item in enumerate(value):
            if index:
                out.append(",\n")
            out.append(inner)
            _write(item, depth + 1, out)
        out.append("\n" + "  " * depth + "]")
    else:
        raise TypeError(f"cannot render {type(value).__name__} as JSON")


def format_json_float(number: float) -> str:
    """A finite float as serde_json writes it (ryu's shortest digits and layout rules)."""
    if math.isnan(number) or math.isinf(number):
        return "null"  # serde_json writes non-finite floats as null
    if number == 0.0:
        return "-0.0" if math.copysign(1.0, number) < 0 else "0.0"
    sign = "-" if number < 0 else ""
    # repr gives the shortest round-tripping digits, the same digits ryu picks; write the value
    # as digits * 10^k, then lay it out with ryu's rules (kk = digits before the decimal point).
    _, digit_tuple, k = Decimal(repr(abs(number))).as_tuple()
    digits = "".join(map(str, digit_tuple)).lstrip("0")
    stripped = digits.rstrip("0")
    k += len(digits) - len(stripped)
    digits = stripped
    length = len(digits)
    kk = length + k
    if 0 <= k and kk <= 16:
        return sign + digits + "0" * k + ".0"
    if 0 < kk <= 16:
        return sign + digits[:kk] + "." + digits[kk:]
    if -5 < kk <= 0:
        return sign + "0." + "0" * (-kk) + digits
    if length == 1:
        return f"{sign}{digits}e{kk - 1}"
    return f"{sign}{digits[0]}.{digits[1:]}e{kk - 1}"
