"""The WHATWG gb18030 / GBK codec, as encoding_rs 0.8.35 implements it (GB18030-2022 edition).

The reference decodes `gbk` and `gb18030` text with encoding_rs, which follows the WHATWG Encoding
Standard.  Python's own ``gb18030`` codec tokenises byte streams the same way (a lead byte 0x81-0xFE
followed by 0x30-0x39 starts a four-byte sequence, otherwise a two-byte one) and agrees with WHATWG
on which sequences are valid, but not on every mapping nor on error recovery.  This module runs
Python's codec for speed and corrects it:

Mappings (all verified against the WHATWG index by tests/test_text.py fingerprints):
- 0xA3A0 decodes to U+3000 (Python: U+E5E5), so U+E5E5 cannot be encoded at all.
- 0xA8BC decodes to U+1E3F and the four-byte 0x8135F437 to U+E7C7 (Python keeps the GB18030-2000
  assignment the other way round).
- The 18 two-byte codes that GB18030-2022 moved out of the Private Use Area (0xA6D9.., 0xFE59..)
  decode to their standard characters; their old PUA code points still *encode* to those codes,
  and the standard characters' four-byte sequences still decode to them.
- 0x80 alone decodes to U+20AC; the GBK encoder writes U+20AC as 0x80.
- The GBK encoder writes no four-byte sequences.

Error recovery: every error yields exactly one U+FFFD.  After a bad trail byte that is ASCII, that
byte is decoded again; after a broken four-byte sequence, decoding resumes at its second byte; an
out-of-range but well-formed four-byte sequence is one error; a truncated sequence at the end of the
input is one error.

A UTF-8 or UTF-16 byte order mark at the start switches the decoder to that encoding and is removed
(encoding_rs ``Encoding::decode``).
"""
from __future__ import annotations

import codecs
import re
import threading
from typing import Dict, List, Optional, Tuple

_REPLACEMENT = "\ufffd"
_PY_CODEC = "gb18030"
_ERROR_HANDLER = "luaskills-runtime.whatwg-gb18030"

# GB18030-2022 moved these two-byte codes from PUA to standard characters:
# code -> (PUA code point of GB18030-2005, character of GB18030-2022).
_MOVED_OUT_OF_PUA: Dict[int, Tuple[int, int]] = {
    0xA6D9: (0xE78D, 0xFE10),
    0xA6DA: (0xE78E, 0xFE12),
    0xA6DB: (0xE78F, 0xFE11),
    0xA6DC: (0xE790, 0xFE13),
    0xA6DD: (0xE791, 0xFE14),
    0xA6DE: (0xE792, 0xFE15),
    0xA6DF: (0xE793, 0xFE16),
    0xA6EC: (0xE794, 0xFE17),
    0xA6ED: (0xE795, 0xFE18),
    0xA6F3: (0xE796, 0xFE19),
    0xFE59: (0xE81E, 0x9FB4),
    0xFE61: (0xE826, 0x9FB5),
    0xFE66: (0xE82B, 0x9FB6),
    0xFE67: (0xE82C, 0x9FB7),
    0xFE6D: (0xE832, 0x9FB8),
    0xFE7E: (0xE843, 0x9FB9),
    0xFE90: (0xE854, 0x9FBA),
    0xFEA0: (0xE864, 0x9FBB),
}
# Other two-byte codes whose WHATWG character differs from GB18030-2000.
_OTHER_TWO_BYTE: Dict[int, int] = {0xA3A0: 0x3000, 0xA8BC: 0x1E3F}
# Four-byte pointer 7457 (bytes 81 35 F4 37) is U+E7C7 in WHATWG.
_POINTER_E7C7 = 7457
_BYTES_E7C7 = b"\x81\x35\xf4\x37"
_UNENCODABLE = 0xE5E5
_EURO = "\u20ac"

_LEADS = range(0x81, 0xFF)
_TRAILS = tuple(range(0x40, 0x7F)) + tuple(range(0x80, 0xFF))


def two_byte_code(pointer: int) -> bytes:
    """Bytes of a WHATWG index-gb18030 pointer (0..23939)."""
    lead, trail = divmod(pointer, 190)
    return bytes((lead + 0x81, trail + (0x40 if trail < 0x3F else 0x41)))


def four_byte_code(pointer: int) -> bytes:
    """Bytes of a WHATWG four-byte ("ranges") pointer."""
    b1, rest = divmod(pointer, 12600)
    b2, rest = divmod(rest, 1260)
    b3, b4 = divmod(rest, 10)
    return bytes((b1 + 0x81, b2 + 0x30, b3 + 0x81, b4 + 0x30))


class _Tables:
    """WHATWG tables, derived once from Python's codec plus the corrections above."""

    def __init__(self) -> None:
        codes = bytearray(2 * len(_LEADS) * len(_TRAILS))
        codes[0::2] = b"".join(bytes((lead,)) * len(_TRAILS) for lead in _LEADS)
        codes[1::2] = bytes(_TRAILS) * len(_LEADS)
        index: List[str] = list(codecs.decode(bytes(codes), _PY_CODEC))
        if len(index) != 23940:
            raise RuntimeError("gb18030: Python's codec does not map every two-byte code")
        python_to_whatwg: Dict[str, str] = {}
        overrides = {code: new for code, (_, new) in _MOVED_OUT_OF_PUA.items()}
        overrides.update(_OTHER_TWO_BYTE)
        for code, whatwg in overrides.items():
            raw = code.to_bytes(2, "big")
            pointer = (raw[0] - 0x81) * 190 + raw[1] - (0x40 if raw[1] < 0x7F else 0x41)
            self._correct(python_to_whatwg, index[pointer], chr(whatwg), raw)
            index[pointer] = chr(whatwg)
        self._correct(
            python_to_whatwg, codecs.decode(_BYTES_E7C7, _PY_CODEC), chr(0xE7C7), _BYTES_E7C7
        )
        #: pointer -> character, the WHATWG index-gb18030
        self.index: Tuple[str, ...] = tuple(index)
        #: Python's decoding -> WHATWG's decoding, for the few characters that differ
        self.python_to_whatwg = python_to_whatwg
        self.python_only = _char_class(python_to_whatwg)
        self.to_whatwg = lambda match: python_to_whatwg[match.group()]

        # Encoder: WHATWG uses the first pointer of a character (U+3000 has two).
        first_pointer = dict(zip(reversed(index), range(len(index) - 1, -1, -1)))
        pua_codes = {chr(pua): code.to_bytes(2, "big") for code, (pua, _) in _MOVED_OUT_OF_PUA.items()}
        candidates = set(python_to_whatwg) | set(python_to_whatwg.values()) | set(pua_codes)
        candidates |= {chr(_UNENCODABLE), chr(0xE7C7), _EURO}
        self.specials: Dict[bool, Dict[str, Optional[bytes]]] = {}
        self.special_pattern: Dict[bool, re.Pattern] = {}
        for gbk in (False, True):
            table: Dict[str, Optional[bytes]] = {}
            for char in candidates:
                whatwg = _whatwg_encode_one(char, gbk, first_pointer, pua_codes)
                try:
                    python = char.encode(_PY_CODEC)
                except UnicodeEncodeError:
                    python = None
                if whatwg != python:
                    table[char] = whatwg
            self.specials[gbk] = table
            self.special_pattern[gbk] = _char_class(table)

    @staticmethod
    def _correct(corrections: Dict[str, str], python: str, whatwg: str, raw: bytes) -> None:
        if python == whatwg:
            return
        # Rewriting Python's output character is exact only when nothing else decodes to it.
        if python.encode(_PY_CODEC, "replace") != raw or python in corrections:
            raise RuntimeError(
                f"gb18030: Python's codec maps {raw.hex()} to U+{ord(python):04X} non-uniquely; "
                "luaskills_runtime._gb18030 needs updating for this Python"
            )
        corrections[python] = whatwg


def _whatwg_encode_one(
    char: str, gbk: bool, first_pointer: Dict[str, int], pua_codes: Dict[str, bytes]
) -> Optional[bytes]:
    """The WHATWG gb18030 encoder's steps for one non-ASCII character (None = error)."""
    if ord(char) == _UNENCODABLE:
        return None
    if gbk and char == _EURO:
        return b"\x80"
    if char in pua_codes:
        return pua_codes[char]
    if char in first_pointer:
        return two_byte_code(first_pointer[char])
    if gbk:
        return None
    if ord(char) == 0xE7C7:
        return four_byte_code(_POINTER_E7C7)
    # Everywhere else the four-byte ranges equal Python's (checked over all pointers by the tests).
    return char.encode(_PY_CODEC)


def _char_class(chars) -> re.Pattern:
    body = "".join(f"\\U{ord(c):08x}" for c in sorted(chars))
    return re.compile(f"[{body}]" if body else "(?!)")


_tables: Optional[_Tables] = None
_tables_lock = threading.Lock()


def tables() -> _Tables:
    """The WHATWG tables, built on first use (about 10 ms)."""
    global _tables
    if _tables is None:
        with _tables_lock:
            if _tables is None:
                _tables = _Tables()
    return _tables


# --- decoding -------------------------------------------------------------------------------

_errors_seen = threading.local()


def _recover(data: bytes, pos: int) -> Tuple[str, int, bool]:
    """WHATWG decoding of the one sequence starting at ``pos`` that Python's codec rejected.

    Returns (text, next position, whether it was an error).  Only 0x80 and malformed or
    out-of-range sequences reach here, because Python accepts exactly the sequences WHATWG maps.
    """
    n = len(data)
    lead = data[pos]
    if lead == 0x80:
        return _EURO, pos + 1, False
    if not 0x81 <= lead <= 0xFE:
        return _REPLACEMENT, pos + 1, True
    if pos + 1 >= n:
        return _REPLACEMENT, n, True
    second = data[pos + 1]
    if 0x30 <= second <= 0x39:
        if pos + 2 >= n:
            return _REPLACEMENT, n, True
        if not 0x81 <= data[pos + 2] <= 0xFE:
            return _REPLACEMENT, pos + 1, True
        if pos + 3 >= n:
            return _REPLACEMENT, n, True
        if not 0x30 <= data[pos + 3] <= 0x39:
            return _REPLACEMENT, pos + 1, True
        # Well formed but outside the ranges: one error for all four bytes.
        return _REPLACEMENT, pos + 4, True
    if second < 0x80:
        # An ASCII trail byte is decoded again on its own.
        return _REPLACEMENT, pos + 1, True
    return _REPLACEMENT, pos + 2, True


def _error_handler(exc: UnicodeError):
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    text, next_pos, error = _recover(exc.object, exc.start)
    if error:
        _errors_seen.count = getattr(_errors_seen, "count", 0) + 1
    return text, next_pos


codecs.register_error(_ERROR_HANDLER, _error_handler)


def decode(data: bytes) -> Tuple[str, bool]:
    """Decode like encoding_rs ``GB18030.decode(data)``: (text, had_errors)."""
    if data.startswith(b"\xef\xbb\xbf"):
        return decode_utf8_lossy(data[3:])
    if data.startswith(b"\xff\xfe"):
        return decode_utf16_lossy(data[2:], "utf-16-le")
    if data.startswith(b"\xfe\xff"):
        return decode_utf16_lossy(data[2:], "utf-16-be")
    if data.isascii():
        return data.decode("ascii"), False
    t = tables()
    _errors_seen.count = 0
    text = data.decode(_PY_CODEC, _ERROR_HANDLER)
    had_errors = _errors_seen.count > 0
    if t.python_only.search(text):
        text = t.python_only.sub(t.to_whatwg, text)
    return text, had_errors


def decode_utf8_lossy(data: bytes) -> Tuple[str, bool]:
    """UTF-8 with maximal-subpart U+FFFD replacement (WHATWG, Rust from_utf8_lossy)."""
    try:
        return data.decode("utf-8"), False
    except UnicodeDecodeError:
        return data.decode("utf-8", "replace"), True


_SURROGATE = re.compile("[\ud800-\udfff]")


def decode_utf16_lossy(data: bytes, codec: str) -> Tuple[str, bool]:
    """WHATWG UTF-16: one U+FFFD per unpaired surrogate; an odd final byte is one more error,
    merged with a pending lead surrogate into a single U+FFFD."""
    odd = len(data) % 2
    text = data[: len(data) - odd].decode(codec, "surrogatepass")
    if odd:
        if text and "\ud800" <= text[-1] <= "\udbff":
            text = text[:-1]
        text += _REPLACEMENT
    fixed, unpaired = _SURROGATE.subn(_REPLACEMENT, text)
    return fixed, bool(odd or unpaired)


# --- encoding -------------------------------------------------------------------------------


def encode(text: str, gbk: bool) -> Optional[bytes]:
    """WHATWG GBK (``gbk=True``) or gb18030 encoder; None when a character is unmappable.

    ``text`` must not contain surrogate code points.
    """
    if text.isascii():
        return text.encode("ascii")
    t = tables()
    pattern = t.special_pattern[gbk]
    if pattern.search(text) is None:
        encoded = text.encode(_PY_CODEC)
    else:
        specials = t.specials[gbk]
        parts: List[bytes] = []
        pos = 0
        for match in pattern.finditer(text):
            special = specials[match.group()]
            if special is None:
                return None
            parts.append(text[pos : match.start()].encode(_PY_CODEC))
            parts.append(special)
            pos = match.end()
        parts.append(text[pos:].encode(_PY_CODEC))
        encoded = b"".join(parts)
    # Outside the special characters, Python writes four bytes exactly for what GBK lacks, so
    # the output is longer than ASCII + two bytes per other character (0x80 for the euro) iff
    # some character is outside GBK.
    if gbk:
        ascii_count = len(text.encode("ascii", "ignore"))
        if len(encoded) != 2 * len(text) - ascii_count - text.count(_EURO):
            return None
    return encoded

