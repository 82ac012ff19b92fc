"""How the reference's serde/serde_json words request errors, for the JSON request parsers
(runlua, leases and the C ABI) so hosts see the same detail texts."""
from __future__ import annotations

import json
from decimal import Decimal
from typing import Any


def rust_float(number: float) -> str:
    """Rust's Display of an f64: shortest round-trip digits, never an exponent."""
    if number != number:
        return "NaN"
    if number in (float("inf"), float("-inf")):
        return "inf" if number > 0 else "-inf"
    text = format(Decimal(repr(number)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def unexpected(value: Any) -> str:
    """serde's `Unexpected` display of a JSON value (floats keep a decimal point, as serde's
    WithDecimalPoint does)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean `{'true' if value else 'false'}`"
    if isinstance(value, int):
        return f"integer `{value}`"
    if isinstance(value, float):
        text = rust_float(value)
        if value == value and value not in (float("inf"), float("-inf")) and "." not in text:
            text += ".0"
        return f"floating point `{text}`"
    if isinstance(value, str):
        return "string " + json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "sequence"
    if isinstance(value, dict):
        return "map"
    return f"value of Python type {type(value).__name__}"


def utf8_error_text(error: UnicodeDecodeError) -> str:
    """Rust's `Utf8Error` display for the first invalid sequence Python found (both follow the
    Unicode "maximal subpart" rule, so the lengths agree)."""
    if error.reason == "unexpected end of data":
        return f"incomplete utf-8 byte sequence from index {error.start}"
    return f"invalid utf-8 sequence of {error.end - error.start} bytes from index {error.start}"


# ---- serde_json's error positions -------------------------------------------------------------
# serde_json ends a type error with " at line L column C", C counting the bytes consumed on that
# line.  Requests are decoded with json first (fast); only when one is refused is the text walked
# again to find where the refused value sits.

_JSON_SPACE = " \t\n\r"
_SCAN_VALUE = json.scanner.make_scanner(json.JSONDecoder())


def _skip_space(text: str, index: int) -> int:
    while index < len(text) and text[index] in _JSON_SPACE:
        index += 1
    return index


def _member_start(text: str, index: int, key: str) -> int:
    """Start of the value of `key` in the object starting at `index` (its first occurrence)."""
    index = _skip_space(text, index + 1)  # past "{"
    while index < len(text) and text[index] == '"':
        name, index = json.decoder.scanstring(text, index + 1)
        index = _skip_space(text, _skip_space(text, index) + 1)  # past ":"
        if name == key:
            return index
        index = _skip_space(text, _SCAN_VALUE(text, index)[1])
        if text[index:index + 1] == ",":
            index = _skip_space(text, index + 1)
    raise KeyError(key)


def _item_start(text: str, index: int, position: int) -> int:
    index = _skip_space(text, index + 1)  # past "["
    for _ in range(position):
        index = _skip_space(text, _SCAN_VALUE(text, index)[1])
        index = _skip_space(text, index + 1)  # past ","
    return index


def value_span(text: str, path) -> tuple:
    """(start, end) indexes in valid JSON `text` of the value at `path` (object keys and array
    indexes from the top)."""
    index = _skip_space(text, 0)
    for step in path:
        index = _item_start(text, index, step) if isinstance(step, int) else _member_start(text, index, step)
    return index, _SCAN_VALUE(text, index)[1]


def serde_position(text: str, index: int) -> str:
    """serde_json's " at line L column C" once it has consumed text[:index]."""
    line_start = text.rfind("\n", 0, index) + 1
    column = len(text[line_start:index].encode("utf-8", "surrogatepass"))
    return f" at line {text.count(chr(10), 0, index) + 1} column {column}"


def located(detail: str, text: str, path, at_start: bool = False) -> str:
    """`detail` with the position serde_json gives it for the value at `path`: the end of the
    value (missing fields: its closing brace; scalars: their last character), or, for a map or
    sequence refused without being read (at_start), just before it."""
    try:
        start, end = value_span(text, path)
    except (KeyError, IndexError, ValueError, StopIteration):
        return detail
    return detail + serde_position(text, start if at_start else end)


def _open_container(text: str, end: int) -> str:
    """The innermost `{` or `[` still open in text[:end] (strings skipped), or ""."""
    stack, in_string, escaped = [], False, False
    for char in text[:end]:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "{[":
            stack.append(char)
        elif char in "}]" and stack:
            stack.pop()
    return stack[-1] if stack else ""


def eof_syntax_detail(text: str, error: json.JSONDecodeError):
    """serde_json's detail when the text ended inside a value (`EOF while parsing an object` /
    `a list` / `a string` / `a value`, positioned at the very end), or None when json's error is
    not at the end of the text."""
    message = error.msg
    if message.startswith("Unterminated string"):  # json found no closing quote: the text ended
        what = "a string"
    elif text[error.pos:].strip(_JSON_SPACE):
        return None
    elif message == "Expecting property name enclosed in double quotes":
        what = "a value" if text[:error.pos].rstrip(_JSON_SPACE).endswith(",") else "an object"
    elif message == "Expecting ':' delimiter":
        what = "an object"
    elif message == "Expecting ',' delimiter":
        what = "a list" if _open_container(text, error.pos) == "[" else "an object"
    else:
        what = "a value"
    return f"EOF while parsing {what}" + serde_position(text, len(text))
