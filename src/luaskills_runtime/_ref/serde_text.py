"""How the reference's serde/serde_json words request errors, for every JSON request parser
(runlua, leases, the C ABI) so hosts see the same detail texts: value checks, syntax errors with
their positions, positions of refused values, Rust's UTF-8 error text."""
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


def u64_detail(value: Any, type_name: str = "u64") -> Optional[str]:
    """serde's complaint about a JSON value read as an unsigned integer (`type_name` is the Rust
    type serde names: u64, usize), or None when it is one.  A literal beyond u64 is read by
    serde_json as a float, so it is refused as a floating point."""
    if isinstance(value, bool) or not isinstance(value, int):
        return f"invalid type: {unexpected(value)}, expected {type_name}"
    if value < 0:
        return f"invalid value: integer `{value}`, expected {type_name}"
    if value > U64_MAX:
        return f"invalid type: {unexpected(float(value))}, expected {type_name}"
    return None


# ---- serde value checks (the fields of a serde struct) ------------------------------------------

class RequestShapeError(ValueError):
    """A request value serde would refuse; str() is serde's detail text."""


def invalid_type(value: Any, expected: str) -> RequestShapeError:
    return RequestShapeError(f"invalid type: {unexpected(value)}, expected {expected}")


def expect_string(value: Any) -> str:
    if not isinstance(value, str):
        raise invalid_type(value, "a string")
    return value


def expect_optional_string(value: Any) -> Optional[str]:
    return None if value is None else expect_string(value)


def expect_u64(value: Any, type_name: str = "u64") -> int:
    problem = u64_detail(value, type_name)
    if problem is not None:
        raise RequestShapeError(problem)
    return value


def expect_optional_u64(value: Any) -> Optional[int]:
    return None if value is None else expect_u64(value)


def expect_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise invalid_type(value, "a boolean")
    return value


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

    serde_json counts columns in bytes and names the column of the byte it complains about
    (Python names the same character, counted in characters); at the end of the input it names
    the column of the last byte (0 on an empty line) and says what it was parsing there: a
    string, a value, a list or an object.
    """
    text = error.doc
    if error.msg.startswith("Unterminated string") or not text[error.pos:].strip(_JSON_SPACE):
        return f"EOF while parsing {_eof_context(text)}" + serde_position(text, len(text))
    message = _JSON_MESSAGES.get(error.msg, error.msg[:1].lower() + error.msg[1:])
    return message + serde_position(text, error.pos, peeked=True)


def serde_position(text: str, index: int, peeked: bool = False) -> str:
    """serde_json's " at line L column C" once it has consumed text[:index]: C counts the bytes
    consumed on line L.  `peeked`: serde_json also counts the first byte of the character at
    `index`, which it peeked at and refused."""
    line_start = text.rfind("\n", 0, index) + 1
    column = len(text[line_start:index].encode("utf-8", "surrogatepass"))
    if peeked and index < len(text):
        column += 1
    return f" at line {text.count(chr(10), 0, index) + 1} column {column}"


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


# ---- where serde_json refuses a value ------------------------------------------------------------
# serde_json ends a type error with " at line L column C".  Requests are decoded with json first
# (fast); only when a field is refused is the text walked again to find where that value sits.

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
        index = _skip_space(text, _SCAN(text, index)[1])
        if text[index:index + 1] == ",":
            index = _skip_space(text, index + 1)
    raise KeyError(key)


def _item_start(text: str, index: int, position: int) -> int:
    index = _skip_space(text, index + 1)  # past "["
    for _ in range(position):
        index = _skip_space(text, _SCAN(text, index)[1])
        index = _skip_space(text, index + 1)  # past ","
    return index


def value_span(text: str, path) -> tuple:
    """(start, end) indexes in valid JSON `text` of the value at `path` (object keys and array
    indexes from the top)."""
    index = _skip_space(text, 0)
    for step in path:
        index = _item_start(text, index, step) if isinstance(step, int) else _member_start(text, index, step)
    return index, _SCAN(text, index)[1]


def located(detail: str, text: str, path, at_start: bool = False) -> str:
    """`detail` with the position serde_json gives it for the value at `path`: the end of the
    value (missing fields: its closing brace; scalars: their last character), or, for a map or
    sequence refused without being read (at_start), just before it."""
    try:
        start, end = value_span(text, path)
    except (KeyError, IndexError, ValueError, StopIteration):
        return detail
    return detail + serde_position(text, start if at_start else end)


def utf8_error_text(error: UnicodeDecodeError) -> str:
    """Rust's `Utf8Error` display for the first invalid sequence Python found (both follow the
    Unicode "maximal subpart" rule, so the lengths agree)."""
    if error.reason == "unexpected end of data":
        return f"incomplete utf-8 byte sequence from index {error.start}"
    return f"invalid utf-8 sequence of {error.end - error.start} bytes from index {error.start}"
