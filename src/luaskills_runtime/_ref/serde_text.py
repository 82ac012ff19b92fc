"""How the reference's serde/serde_json words request errors, for the JSON request parsers
(runlua and leases) so hosts see the same detail texts."""
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
