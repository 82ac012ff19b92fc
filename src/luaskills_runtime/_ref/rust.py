"""Rust standard-library wording: str::trim, f64 Display and io::Error Display."""
from __future__ import annotations

import os
from decimal import Decimal

# What Rust's str::trim strips (Unicode White_Space); str.strip would also strip U+001C..U+001F.
RUST_WHITE_SPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


def rust_trim(text: str) -> str:
    """Rust's str::trim."""
    return text.strip(RUST_WHITE_SPACE)


def is_blank(text: str) -> bool:
    """True when Rust's `text.trim().is_empty()` is."""
    return not text.strip(RUST_WHITE_SPACE)


def rust_float(number: float) -> str:
    """Rust's Display of an f64: shortest round-trip digits, never an exponent
    (1e-7 -> "0.0000001", 1e20 -> "100000000000000000000", -0.0 -> "-0")."""
    if number != number:
        return "NaN"
    if number in (float("inf"), float("-inf")):
        return "inf" if number > 0 else "-inf"
    text = format(Decimal(repr(number)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def os_error_text(error: OSError) -> str:
    """An OS error as Rust's io::Error displays it: `<description> (os error <n>)`."""
    if error.errno is None:
        return str(error)
    return f"{error.strerror or os.strerror(error.errno)} (os error {error.errno})"
