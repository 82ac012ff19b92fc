"""Text encodings of managed process IO (SPEC section 2).

Process output is decoded with :func:`decode_text` into ``{text, encoding, lossy, base64}`` and
stdin text is encoded with :func:`encode_text`, each in one of the :class:`TextMode` modes a label
such as ``"UTF8"`` or ``"cp936"`` selects (:func:`parse_encoding`, :func:`normalize_encoding`).

Error messages are the reference's bare texts; callers prefix their own function name
(``process.session.open: unsupported text encoding `x```).
"""
from __future__ import annotations

import binascii
import re
import sys
from enum import Enum
from typing import Dict, NamedTuple, Optional, Union

from luaskills_runtime.text import _gb18030
from luaskills_runtime._ref.rust import RUST_WHITE_SPACE
from luaskills_runtime.errors import LuaSkillsError

__all__ = [
    "TextMode",
    "DecodedText",
    "parse_encoding",
    "normalize_encoding",
    "default_mode",
    "decode_text",
    "encode_text",
]

_IS_WINDOWS = sys.platform == "win32"


class TextMode(str, Enum):
    """An encoding mode; the value is the reference's stable "requested label"."""

    UTF8 = "utf-8"
    SYSTEM = "system"
    OEM = "oem"
    GBK = "gbk"
    GB18030 = "gb18030"
    LATIN1 = "latin1"
    BASE64 = "base64"

    @property
    def requested_label(self) -> str:
        """The label results report before any decoding happened (e.g. exec spawn errors)."""
        return self.value

    def __str__(self) -> str:
        return self.value


_LABELS: Dict[str, TextMode] = {
    "utf-8": TextMode.UTF8,
    "utf8": TextMode.UTF8,
    "system": TextMode.SYSTEM,
    "ansi": TextMode.SYSTEM,
    "acp": TextMode.SYSTEM,
    "oem": TextMode.OEM,
    "console": TextMode.OEM,
    "gbk": TextMode.GBK,
    "cp936": TextMode.GBK,
    "windows-936": TextMode.GBK,
    "gb18030": TextMode.GB18030,
    "latin1": TextMode.LATIN1,
    "latin-1": TextMode.LATIN1,
    "iso-8859-1": TextMode.LATIN1,
    "bytes": TextMode.BASE64,
    "base64": TextMode.BASE64,
}

# to_ascii_lowercase folds A-Z only (str.lower would also fold e.g. KELVIN SIGN to "k").
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _label_text(label: Union[str, bytes]) -> str:
    if isinstance(label, str):
        return label
    if isinstance(label, (bytes, bytearray, memoryview)):
        # Callers that must report non-UTF-8 labels in their own words check before calling.
        return bytes(label).decode("utf-8", "replace")
    raise TypeError(f"encoding label must be str or bytes, not {type(label).__name__}")


def parse_encoding(label: Union[str, bytes]) -> TextMode:
    """The reference's ``RuntimeTextEncoding::parse``: trim, ASCII-lowercase, look up.

    A blank label is an error here (as for the ``encoding`` fields of Lua specs); raises
    ``LuaSkillsError("unsupported text encoding `<label as given>`")``.
    """
    text = _label_text(label)
    mode = _LABELS.get(text.strip(RUST_WHITE_SPACE).translate(_ASCII_LOWER))
    if mode is None:
        raise LuaSkillsError(f"unsupported text encoding `{text}`")
    return mode


def default_mode() -> TextMode:
    """``system`` on Windows, ``utf-8`` elsewhere."""
    return TextMode.SYSTEM if _IS_WINDOWS else TextMode.UTF8


def normalize_encoding(
    label: Union[str, bytes, None], default: Optional[TextMode] = None
) -> TextMode:
    """Like :func:`parse_encoding`, but a missing or blank label selects ``default``
    (:func:`default_mode` when None) -- the rule for ``HostOptions.default_text_encoding``."""
    if label is None or not _label_text(label).strip(RUST_WHITE_SPACE):
        return default if default is not None else default_mode()
    return parse_encoding(label)


class DecodedText(NamedTuple):
    """Decoded bytes plus how they were interpreted."""

    text: str
    #: the encoding actually used, e.g. "utf-8", "gbk", "windows-936", "windows-oem-437"
    encoding: str
    #: whether replacement or a fallback happened
    lossy: bool
    #: standard base64 of the raw bytes when lossy (and always in base64 mode), else None
    base64: Optional[str]

    def as_dict(self) -> dict:
        return {"text": self.text, "encoding": self.encoding, "lossy": self.lossy, "base64": self.base64}


def _b64encode(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def _decode_utf8(data: bytes) -> DecodedText:
    # Strict first: valid input (the common case) keeps its BOM and reports nothing.
    try:
        return DecodedText(data.decode("utf-8"), "utf-8", False, None)
    except UnicodeDecodeError:
        # Python's "replace" substitutes maximal subparts, exactly as Rust's from_utf8_lossy.
        return DecodedText(data.decode("utf-8", "replace"), "utf-8", True, _b64encode(data))


def _decode_gb(data: bytes, label: str) -> DecodedText:
    text, had_errors = _gb18030.decode(data)
    return DecodedText(text, label, had_errors, _b64encode(data) if had_errors else None)


def _decode_latin1(data: bytes) -> DecodedText:
    return DecodedText(data.decode("latin-1"), "latin1", False, None)


def _decode_base64(data: bytes) -> DecodedText:
    encoded = _b64encode(data)
    return DecodedText(encoded, "base64", False, encoded)


def decode_text(data: bytes, mode: TextMode) -> DecodedText:
    """Decode process output bytes in ``mode``; never raises for any input bytes."""
    mode = TextMode(mode)
    data = bytes(data)
    if mode is TextMode.UTF8:
        return _decode_utf8(data)
    if mode is TextMode.SYSTEM or mode is TextMode.OEM:
        if not _IS_WINDOWS:
            return _decode_utf8(data)
        return _windows_code_pages().decode(data, oem=mode is TextMode.OEM)
    if mode is TextMode.GBK or mode is TextMode.GB18030:
        return _decode_gb(data, mode.value)
    if mode is TextMode.LATIN1:
        return _decode_latin1(data)
    return _decode_base64(data)


_SURROGATES = re.compile("[\ud800-\udfff]")


def _as_utf8_text(text: Union[str, bytes]) -> str:
    if isinstance(text, str):
        if not text.isascii() and _SURROGATES.search(text):
            raise LuaSkillsError("string must be valid UTF-8")
        return text
    try:
        return bytes(text).decode("utf-8")
    except UnicodeDecodeError:
        raise LuaSkillsError("string must be valid UTF-8") from None


def encode_text(text: Union[str, bytes], mode: TextMode) -> bytes:
    """Encode stdin text in ``mode``.

    The reference encodes Rust strings, so the text must be valid Unicode: ``bytes`` (a Lua
    string) are decoded as strict UTF-8 first and a ``str`` must not hold lone surrogates,
    otherwise ``LuaSkillsError("string must be valid UTF-8")``.  (The reference's callers reject
    such Lua strings before encoding, in their own words; callers that word it differently,
    e.g. ``stdin must be a valid UTF-8 string``, check first.)

    Errors: ``gbk encode failed without replacement`` / ``gb18030 encode failed without
    replacement`` for unmappable characters; ``base64 decode failed: <detail>`` with the Rust
    base64 0.22 texts; on Windows ``windows-<cp> encode failed`` /
    ``windows-<cp> encode required replacement`` (``windows-oem-<cp>`` for oem).
    """
    mode = TextMode(mode)
    if mode is TextMode.UTF8 and isinstance(text, (bytes, bytearray, memoryview)):
        raw = bytes(text)
        _as_utf8_text(raw)
        return raw
    unicode_text = _as_utf8_text(text)
    if mode is TextMode.UTF8:
        return unicode_text.encode("utf-8")
    if mode is TextMode.SYSTEM or mode is TextMode.OEM:
        if not _IS_WINDOWS:
            return unicode_text.encode("utf-8")
        return _windows_code_pages().encode(unicode_text, oem=mode is TextMode.OEM)
    if mode is TextMode.GBK or mode is TextMode.GB18030:
        encoded = _gb18030.encode(unicode_text, gbk=mode is TextMode.GBK)
        if encoded is None:
            raise LuaSkillsError(f"{mode.value} encode failed without replacement")
        return encoded
    if mode is TextMode.LATIN1:
        # One "?" per character above U+00FF.
        return unicode_text.encode("latin-1", "replace")
    return _strict_base64_decode(unicode_text.encode("utf-8"))


# --- base64 mode: the Rust base64 0.22 STANDARD engine --------------------------------------

_B64_SYMBOLS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_VALUE = {symbol: value for value, symbol in enumerate(_B64_SYMBOLS)}
_B64_NOT_SYMBOL = re.compile(rb"[^A-Za-z0-9+/]")
_PAD = 0x3D


def _strict_base64_decode(data: bytes) -> bytes:
    """Decode canonical padded standard base64 (the only form STANDARD accepts)."""
    try:
        decoded: Optional[bytes] = binascii.a2b_base64(data)
    except binascii.Error:
        decoded = None
    # STANDARD accepts exactly the canonical encodings, so a round trip is the whole check.
    if decoded is not None and binascii.b2a_base64(decoded, newline=False) == data:
        return decoded
    raise LuaSkillsError(f"base64 decode failed: {_base64_error(data)}")


def _base64_error(data: bytes) -> str:
    """The Display text of the DecodeError the Rust engine reports first for ``data``."""
    length = len(data)
    remainder = length % 4
    # A stray final byte (e.g. a newline) is reported before anything else.
    if remainder == 1 and data[-1] != _PAD and data[-1] not in _B64_VALUE:
        return f"Invalid symbol {data[-1]}, offset {length - 1}."
    # Every quad but the last is plain symbols ("=" included as invalid).
    suffix_start = max(0, length - remainder - (4 if remainder == 0 else 0))
    bad = _B64_NOT_SYMBOL.search(data, 0, suffix_start)
    if bad is not None:
        return f"Invalid symbol {data[bad.start()]}, offset {bad.start()}."
    morsels = []
    padding = 0
    first_padding = 0
    last_symbol = 0
    for offset in range(suffix_start, length):
        byte = data[offset]
        if byte == _PAD:
            if offset - suffix_start < 2:
                return f"Invalid symbol {byte}, offset {offset}."
            if padding == 0:
                first_padding = offset
            padding += 1
            continue
        if padding:
            return f"Invalid symbol {_PAD}, offset {first_padding}."
        last_symbol = byte
        if byte not in _B64_VALUE:
            return f"Invalid symbol {byte}, offset {offset}."
        morsels.append(_B64_VALUE[byte])
    if length and len(morsels) < 2:
        return f"Invalid input length: {suffix_start + len(morsels)}"
    if (padding + len(morsels)) % 4:
        return "Invalid padding"
    packed = 0
    for shift, morsel in zip((26, 20, 14, 8), morsels):
        packed |= morsel << shift
    unused_bits = 0xFFFFFFFF >> (len(morsels) * 6 // 8 * 8)
    if packed & unused_bits:
        return f"Invalid last symbol {last_symbol}, offset {suffix_start + len(morsels) - 1}."
    # Unreachable: the round trip only fails for input the engine rejects.
    raise AssertionError(f"base64 input {data!r} rejected without a reason")


# --- system / oem modes on Windows ----------------------------------------------------------

_MB_ERR_INVALID_CHARS = 0x00000008
_INT_MAX = 2**31 - 1


class _Kernel32:
    """The four kernel32 calls the Windows code page modes use, through ctypes."""

    def __init__(self) -> None:
        import ctypes
        from ctypes import wintypes

        self._ctypes = ctypes
        dll = ctypes.WinDLL("kernel32", use_last_error=True)
        self._get_acp = dll.GetACP
        self._get_acp.argtypes = []
        self._get_acp.restype = wintypes.UINT
        self._get_oemcp = dll.GetOEMCP
        self._get_oemcp.argtypes = []
        self._get_oemcp.restype = wintypes.UINT
        self._mb2wc = dll.MultiByteToWideChar
        self._mb2wc.argtypes = [
            wintypes.UINT, wintypes.DWORD, ctypes.c_char_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int,
        ]
        self._mb2wc.restype = ctypes.c_int
        self._wc2mb = dll.WideCharToMultiByte
        self._wc2mb.argtypes = [
            wintypes.UINT, wintypes.DWORD, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p,
            ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p,
        ]
        self._wc2mb.restype = ctypes.c_int

    def get_acp(self) -> int:
        return int(self._get_acp())

    def get_oemcp(self) -> int:
        return int(self._get_oemcp())

    def multi_byte_to_wide_char(self, code_page: int, flags: int, data: bytes, units: int):
        """(result, UTF-16LE bytes written); ``units`` 0 asks for the length only."""
        size = min(len(data), _INT_MAX)
        if units == 0:
            return self._mb2wc(code_page, flags, data, size, None, 0), b""
        buffer = (self._ctypes.c_uint16 * units)()
        written = self._mb2wc(code_page, flags, data, size, buffer, units)
        return written, bytes(buffer)[: max(written, 0) * 2]

    def wide_char_to_multi_byte(self, code_page: int, wide: bytes, size: int, want_default: bool):
        """(result, bytes written, whether the default character was used)."""
        ctypes = self._ctypes
        units = min(len(wide) // 2, _INT_MAX)
        source = ctypes.create_string_buffer(wide, len(wide))
        if size == 0:
            return self._wc2mb(code_page, 0, source, units, None, 0, None, None), b"", False
        target = ctypes.create_string_buffer(size)
        used_default = ctypes.c_int(0)
        used_ptr = ctypes.byref(used_default) if want_default else None
        written = self._wc2mb(code_page, 0, source, units, target, size, None, used_ptr)
        return written, target.raw[: max(written, 0)], bool(used_default.value)


class _WindowsCodePages:
    """The ANSI / OEM code page conversions of the reference (MultiByteToWideChar with
    MB_ERR_INVALID_CHARS, retried without it when that fails, which marks the text lossy;
    WideCharToMultiByte with default flags, which allows best-fit characters)."""

    def __init__(self, api) -> None:
        self._api = api

    def _code_page(self, oem: bool):
        if oem:
            code_page = self._api.get_oemcp()
            return code_page, f"windows-oem-{code_page}"
        code_page = self._api.get_acp()
        return code_page, f"windows-{code_page}"

    def decode(self, data: bytes, oem: bool) -> DecodedText:
        code_page, label = self._code_page(oem)
        if not data:
            return DecodedText("", label, False, None)
        api = self._api
        strict_units, _ = api.multi_byte_to_wide_char(code_page, _MB_ERR_INVALID_CHARS, data, 0)
        if strict_units > 0:
            flags, lossy, units = _MB_ERR_INVALID_CHARS, False, strict_units
        else:
            flags, lossy = 0, True
            units, _ = api.multi_byte_to_wide_char(code_page, 0, data, 0)
        written = 0
        wide = b""
        if units > 0:
            written, wide = api.multi_byte_to_wide_char(code_page, flags, data, units)
        if units <= 0 or written <= 0:
            return DecodedText(data.decode("utf-8", "replace"), label, True, _b64encode(data))
        text, _ = _gb18030.decode_utf16_lossy(wide, "utf-16-le")
        return DecodedText(text, label, lossy, _b64encode(data) if lossy else None)

    def encode(self, text: str, oem: bool) -> bytes:
        code_page, label = self._code_page(oem)
        if not text:
            return b""
        api = self._api
        wide = text.encode("utf-16-le")
        size, _, _ = api.wide_char_to_multi_byte(code_page, wide, 0, False)
        if size <= 0:
            raise LuaSkillsError(f"{label} encode failed")
        # Windows rejects a used-default-char pointer for UTF-7/UTF-8 code pages; the reference
        # passes one anyway and so fails every write on a UTF-8 ANSI code page.  Those code
        # pages never substitute a default character for valid text, so none is asked for.
        want_default = code_page not in (65000, 65001)
        written, encoded, used_default = api.wide_char_to_multi_byte(
            code_page, wide, size, want_default
        )
        if written <= 0:
            raise LuaSkillsError(f"{label} encode failed")
        if used_default:
            raise LuaSkillsError(f"{label} encode required replacement")
        return encoded


_code_pages: Optional[_WindowsCodePages] = None


def _windows_code_pages() -> _WindowsCodePages:
    global _code_pages
    if _code_pages is None:
        _code_pages = _WindowsCodePages(_Kernel32())
    return _code_pages
