"""How the reference's serde/serde_json words request errors, for every JSON request parser
(runlua, leases, later surfaces) so hosts see the same detail texts."""
from __future__ import annotations

import json
from typing import Any, Optional

from luaskills_runtime._ref.rust import rust_float

U64_MAX = 2**64 - 1


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


def u64_detail(value: Any) -> Optional[str]:
    """serde's complaint about a JSON value read as u64, or None when it is one.  A literal
    beyond u64 is read by serde_json as a float, so it is refused as a floating point."""
    if isinstance(value, bool) or not isinstance(value, int):
        return f"invalid type: {unexpected(value)}, expected u64"
    if value < 0:
        return f"invalid value: integer `{value}`, expected u64"
    if value > U64_MAX:
        return f"invalid type: {unexpected(float(value))}, expected u64"
    return None


# Python's json messages -> serde_json's wording.
_JSON_MESSAGES = {
    "Expecting value": "expected value",
    "Extra data": "trailing characters",
    "Expecting property name enclosed in double quotes": "key must be a string",
    "Expecting ':' delimiter": "expected `:`",
    "Expecting ',' delimiter": "expected `,` or `}`",
    "Unterminated string starting at": "EOF while parsing a string",
    "Invalid control character at":
        "control character (\\u0000-\\u001F) found while parsing a string",
}


def json_error_detail(error: json.JSONDecodeError) -> str:
    """serde_json's text for a JSON syntax error: `<message> at line L column C`.

    serde_json counts columns in bytes and names the column of the character it complains about
    (Python names the same one, in characters); at the end of the input it names the column of
    the last character (0 on an empty line) and says what it was parsing there: a string, a
    value, a list or an object.
    """
    text = error.doc
    if error.msg.startswith("Unterminated string") or not text[error.pos:].strip(_JSON_SPACE):
        line_start = text.rfind("\n") + 1
        column = len(text[line_start:].encode("utf-8", "surrogatepass"))
        return (f"EOF while parsing {_eof_context(text)} at line {text.count(chr(10)) + 1} "
                f"column {column}")
    line_start = text.rfind("\n", 0, error.pos) + 1
    column = len(text[line_start:error.pos].encode("utf-8", "surrogatepass")) + 1
    message = _JSON_MESSAGES.get(error.msg, error.msg[:1].lower() + error.msg[1:])
    return f"{message} at line {error.lineno} column {column}"


_JSON_SPACE = " \t\n\r"


def _eof_context(text: str) -> str:
    """What serde_json was parsing when `text` ended: the innermost open string or container,
    or a value when the text ends where one must follow."""
    stack = []
    last = ""
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
            continue
        if char in _JSON_SPACE:
            continue
        last = char
        if char == '"':
            in_string = True
        elif char in "[{":
            stack.append(char)
        elif char in "]}" and stack:
            stack.pop()
    if in_string:
        return "a string"
    if not stack or last in ",:":
        return "a value"
    return "a list" if stack[-1] == "[" else "an object"


class JsonSyntaxError(ValueError):
    """Request text that is not JSON; str() is serde_json's detail text."""


class _ObjectWithDuplicates(dict):
    """A JSON object that named a key twice (serde refuses such a struct: `duplicate field`)."""
    duplicate_keys: tuple = ()


def _object_pairs(pairs):
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj  # the common case stays a plain dict
    obj = _ObjectWithDuplicates(pairs)
    seen, dups = set(), []
    for key, _ in pairs:
        if key in seen:
            dups.append(key)
        seen.add(key)
    obj.duplicate_keys = tuple(dups)
    return obj


def _reject_constant(name: str):
    raise ValueError(name)


_DECODER = json.JSONDecoder(object_pairs_hook=_object_pairs, parse_constant=_reject_constant)
_SCAN = _DECODER.scan_once


def request_text(data) -> Any:
    """Request bytes as text (anything else is returned as it is); bytes that are not UTF-8
    raise JsonSyntaxError naming where, as serde_json does for a byte slice."""
    if not isinstance(data, (bytes, bytearray)):
        return data
    data = bytes(data)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        column = error.start - (data.rfind(b"\n", 0, error.start) + 1) + 1
        raise JsonSyntaxError(f"invalid unicode code point at line {line} column {column}") from None


def load_json(text: str) -> Any:
    """Decode request JSON as serde_json would accept it (no NaN/Infinity); objects that repeat
    a key carry `duplicate_keys`.  Raises JsonSyntaxError with serde_json's wording."""
    try:
        if text[:1] == "{" and text[-1:] == "}":  # the usual request: scan it without the regexes
            try:
                obj, end = _SCAN(text, 0)
                if end == len(text):
                    return obj
            except (StopIteration, ValueError):
                pass  # the full decode below reports the error in detail
        return _DECODER.decode(text)
    except json.JSONDecodeError as error:
        raise JsonSyntaxError(json_error_detail(error)) from None
    except RecursionError:
        raise JsonSyntaxError("recursion limit exceeded") from None
    except ValueError as error:  # NaN / Infinity literals, which JSON does not have
        raise JsonSyntaxError(f"expected value (got `{error}`)") from None
