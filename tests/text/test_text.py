"""Text encodings (SPEC section 2): labels, decode/encode per mode, the WHATWG gb18030 quirks that
encoding_rs gives the reference, and the Rust base64 STANDARD engine's strictness."""
from __future__ import annotations

import base64
import binascii
import codecs
import hashlib
import string
import sys
import threading
from collections import deque

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from luaskills_runtime import text
from luaskills_runtime.text import _gb18030
from luaskills_runtime.errors import LuaSkillsError
from luaskills_runtime.text import (
    DecodedText,
    TextMode,
    decode_text,
    default_mode,
    encode_text,
    normalize_encoding,
    parse_encoding,
)

FFFD = "\ufffd"
ALL_MODES = list(TextMode)


@pytest.fixture
def not_windows(monkeypatch):
    monkeypatch.setattr(text, "_IS_WINDOWS", False)


# --- labels ---------------------------------------------------------------------------------

ALIASES = {
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


@pytest.mark.parametrize("label,mode", sorted(ALIASES.items()))
def test_every_alias_parses_trimmed_and_case_folded(label, mode):
    assert parse_encoding(label) is mode
    assert parse_encoding(label.upper()) is mode
    assert parse_encoding(f" \t{label.title()}\r\n") is mode
    assert parse_encoding(label.encode()) is mode
    assert normalize_encoding(label) is mode


def test_mode_values_are_the_requested_labels():
    assert [m.value for m in TextMode] == [
        "utf-8", "system", "oem", "gbk", "gb18030", "latin1", "base64",
    ]
    assert TextMode.GBK.requested_label == "gbk"
    assert str(TextMode.UTF8) == "utf-8"
    assert TextMode("latin1") is TextMode.LATIN1


@pytest.mark.parametrize(
    "label",
    ["utf-16", "utf_8", "gb2312", "latin", "x", "  foo ", "bytes!", "iso8859-1", "windows-1252"],
)
def test_unknown_label_reports_the_label_as_given(label):
    with pytest.raises(LuaSkillsError) as err:
        parse_encoding(label)
    assert str(err.value) == f"unsupported text encoding `{label}`"
    with pytest.raises(LuaSkillsError):
        normalize_encoding(label)


def test_unicode_white_space_is_trimmed_like_rust():
    assert parse_encoding("\u3000utf-8\u00a0\u2029\x85") is TextMode.UTF8


def test_information_separators_are_not_white_space():
    # str.strip() would remove U+001C..U+001F; Rust's trim does not.
    for sep in "\x1c\x1d\x1e\x1f":
        with pytest.raises(LuaSkillsError, match="unsupported text encoding"):
            parse_encoding(f"{sep}utf-8")


def test_non_ascii_case_is_not_folded():
    for label in ("GB\u212a", "\u0130SO-8859-1", "LAT\u0130N1"):  # KELVIN SIGN, I WITH DOT
        with pytest.raises(LuaSkillsError) as err:
            parse_encoding(label)
        assert str(err.value) == f"unsupported text encoding `{label}`"


def test_blank_label_is_an_error_for_parse_but_the_default_for_normalize(not_windows):
    for blank in ("", "   ", "\t\n"):
        with pytest.raises(LuaSkillsError) as err:
            parse_encoding(blank)
        assert str(err.value) == f"unsupported text encoding `{blank}`"
        assert normalize_encoding(blank) is TextMode.UTF8
        assert normalize_encoding(blank, TextMode.GBK) is TextMode.GBK
    assert normalize_encoding(None) is TextMode.UTF8
    assert normalize_encoding(None, TextMode.LATIN1) is TextMode.LATIN1
    assert normalize_encoding(b"") is TextMode.UTF8


def test_default_mode_per_platform(monkeypatch):
    monkeypatch.setattr(text, "_IS_WINDOWS", False)
    assert default_mode() is TextMode.UTF8
    monkeypatch.setattr(text, "_IS_WINDOWS", True)
    assert default_mode() is TextMode.SYSTEM
    assert normalize_encoding(None) is TextMode.SYSTEM


def test_non_utf8_bytes_label_is_unsupported():
    with pytest.raises(LuaSkillsError) as err:
        parse_encoding(b"utf\xff8")
    assert str(err.value) == "unsupported text encoding `utf\ufffd8`"


def test_non_string_label_is_a_type_error():
    with pytest.raises(TypeError):
        parse_encoding(5)


# --- utf-8 ----------------------------------------------------------------------------------


def test_utf8_valid_text():
    result = decode_text("héllo 中文 😀".encode(), TextMode.UTF8)
    assert result == DecodedText("héllo 中文 😀", "utf-8", False, None)
    assert result.as_dict() == {"text": "héllo 中文 😀", "encoding": "utf-8", "lossy": False, "base64": None}


def test_utf8_bom_is_kept():
    assert decode_text(b"\xef\xbb\xbfhi", TextMode.UTF8).text == "\ufeffhi"


def test_utf8_empty():
    assert decode_text(b"", TextMode.UTF8) == DecodedText("", "utf-8", False, None)


@pytest.mark.parametrize(
    "raw,expected",
    [
        (b"\xff\xfe", FFFD * 2),
        (b"\xf0\x9f\x98A", FFFD + "A"),  # truncated 4-byte sequence: one replacement
        (b"\xed\xa0\x80", FFFD * 3),  # encoded surrogate
        (b"\xc0\x80", FFFD * 2),  # overlong NUL
        (b"\xe0\x80\x80", FFFD * 3),  # overlong
        (b"\xf4\x90\x80\x80", FFFD * 4),  # above U+10FFFF
        (b"\xe1\x80", FFFD),  # truncated at the end
        (b"\xe1\x80A\x80", FFFD + "A" + FFFD),
        (b"a\xf0\x9f\x98\x80\xf0\x9f", "a😀" + FFFD),
    ],
)
def test_utf8_invalid_is_replaced_by_maximal_subparts(raw, expected):
    result = decode_text(raw, TextMode.UTF8)
    assert result == DecodedText(expected, "utf-8", True, base64.b64encode(raw).decode())


def test_utf8_encode():
    assert encode_text("a中😀", TextMode.UTF8) == "a中😀".encode()
    assert encode_text("a中".encode(), TextMode.UTF8) == "a中".encode()
    assert encode_text(bytearray(b"ab"), TextMode.UTF8) == b"ab"


# --- system / oem ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [TextMode.SYSTEM, TextMode.OEM])
def test_system_and_oem_are_utf8_off_windows(not_windows, mode):
    assert decode_text("中".encode(), mode) == DecodedText("中", "utf-8", False, None)
    assert decode_text(b"a\xff", mode) == DecodedText("a" + FFFD, "utf-8", True, "Yf8=")
    assert encode_text("中", mode) == "中".encode()


class FakeKernel32:
    """Stands in for kernel32 in the Windows-branch tests, with Python's cp<N> codecs."""

    def __init__(self, acp=1252, oemcp=437, fail_lossy=False, fail_size=False, fail_write=False):
        self.acp, self.oemcp = acp, oemcp
        self.fail_lossy, self.fail_size, self.fail_write = fail_lossy, fail_size, fail_write
        self.calls = []

    def get_acp(self):
        return self.acp

    def get_oemcp(self):
        return self.oemcp

    def multi_byte_to_wide_char(self, code_page, flags, data, units):
        self.calls.append(("mb2wc", code_page, flags, units))
        codec = f"cp{code_page}"
        if flags & 0x8:
            try:
                wide = data.decode(codec).encode("utf-16-le")
            except UnicodeDecodeError:
                return 0, b""
        elif self.fail_lossy:
            return 0, b""
        else:
            wide = data.decode(codec, "replace").encode("utf-16-le")
        if units == 0:
            return len(wide) // 2, b""
        return min(units, len(wide) // 2), wide[: units * 2]

    def wide_char_to_multi_byte(self, code_page, wide, size, want_default):
        self.calls.append(("wc2mb", code_page, size, want_default))
        source = wide.decode("utf-16-le")
        encoded = source.encode(f"cp{code_page}", "replace")
        if size == 0:
            return (0 if self.fail_size else len(encoded)), b"", False
        if self.fail_write:
            return 0, b"", False
        try:
            source.encode(f"cp{code_page}")
            used = False
        except UnicodeEncodeError:
            used = True
        return len(encoded), encoded, used and want_default


@pytest.fixture
def fake_windows(monkeypatch):
    def install(**kwargs):
        api = FakeKernel32(**kwargs)
        monkeypatch.setattr(text, "_IS_WINDOWS", True)
        monkeypatch.setattr(text, "_code_pages", text._WindowsCodePages(api))
        return api

    return install


def test_windows_system_decode_reports_the_ansi_code_page(fake_windows):
    api = fake_windows(acp=1252)
    assert decode_text("café".encode("cp1252"), TextMode.SYSTEM) == DecodedText(
        "café", "windows-1252", False, None
    )
    # strict probe, then the conversion with the same strict flag
    assert [c[2] for c in api.calls] == [0x8, 0x8]


def test_windows_oem_decode_reports_the_oem_code_page(fake_windows):
    fake_windows(oemcp=437)
    assert decode_text(b"\x82t\x82", TextMode.OEM) == DecodedText("été", "windows-oem-437", False, None)


def test_windows_decode_lossy_when_strict_conversion_fails(fake_windows):
    api = fake_windows(acp=1252)
    raw = b"a\x81b"  # 0x81 is unassigned in Python's cp1252
    assert decode_text(raw, TextMode.SYSTEM) == DecodedText(
        "a" + FFFD + "b", "windows-1252", True, base64.b64encode(raw).decode()
    )
    assert [c[2] for c in api.calls] == [0x8, 0, 0]


def test_windows_decode_falls_back_to_lossy_utf8(fake_windows):
    fake_windows(acp=1252, fail_lossy=True)
    raw = "中".encode() + b"\x81"
    assert decode_text(raw, TextMode.SYSTEM) == DecodedText(
        "中" + FFFD, "windows-1252", True, base64.b64encode(raw).decode()
    )


def test_windows_decode_empty(fake_windows):
    api = fake_windows(acp=936)
    assert decode_text(b"", TextMode.SYSTEM) == DecodedText("", "windows-936", False, None)
    assert api.calls == []


def test_windows_encode(fake_windows):
    fake_windows(acp=1252, oemcp=437)
    assert encode_text("café", TextMode.SYSTEM) == "café".encode("cp1252")
    assert encode_text("é", TextMode.OEM) == b"\x82"
    assert encode_text("", TextMode.SYSTEM) == b""


def test_windows_encode_replacement_is_an_error(fake_windows):
    fake_windows(acp=1252, oemcp=437)
    with pytest.raises(LuaSkillsError) as err:
        encode_text("中", TextMode.SYSTEM)
    assert str(err.value) == "windows-1252 encode required replacement"
    with pytest.raises(LuaSkillsError) as err:
        encode_text("中", TextMode.OEM)
    assert str(err.value) == "windows-oem-437 encode required replacement"


def test_windows_encode_failures(fake_windows):
    fake_windows(acp=1252, fail_size=True)
    with pytest.raises(LuaSkillsError) as err:
        encode_text("x", TextMode.SYSTEM)
    assert str(err.value) == "windows-1252 encode failed"
    fake_windows(acp=1252, fail_write=True)
    with pytest.raises(LuaSkillsError) as err:
        encode_text("x", TextMode.SYSTEM)
    assert str(err.value) == "windows-1252 encode failed"


def test_windows_utf8_code_page_does_not_ask_for_the_default_char(fake_windows):
    api = fake_windows(acp=65001)
    assert encode_text("中", TextMode.SYSTEM) == "中".encode()
    assert api.calls[-1] == ("wc2mb", 65001, 3, False)
    api = fake_windows(acp=1252)
    encode_text("a", TextMode.SYSTEM)
    assert api.calls[-1] == ("wc2mb", 1252, 1, True)


@pytest.mark.skipif(sys.platform != "win32", reason="real kernel32 only on Windows")
def test_windows_real_kernel32_round_trip():
    api = text._Kernel32()
    acp = api.get_acp()
    result = decode_text(b"plain ascii", TextMode.SYSTEM)
    assert result == DecodedText("plain ascii", f"windows-{acp}", False, None)
    assert encode_text("plain ascii", TextMode.SYSTEM) == b"plain ascii"
    assert decode_text(b"x", TextMode.OEM).encoding == f"windows-oem-{api.get_oemcp()}"


# --- gbk / gb18030 decoding: the WHATWG behaviour -------------------------------------------

GB_MODES = [TextMode.GBK, TextMode.GB18030]


def gb(raw, mode=TextMode.GB18030):
    return decode_text(raw, mode)


@pytest.mark.parametrize("mode", GB_MODES)
def test_gb_clean_text_reports_the_mode_label(mode):
    raw = "中文 text".encode("gb18030")
    assert decode_text(raw, mode) == DecodedText("中文 text", mode.value, False, None)


def test_gb_ascii_only():
    assert gb(b"plain") == DecodedText("plain", "gb18030", False, None)
    assert gb(b"") == DecodedText("", "gb18030", False, None)


@pytest.mark.parametrize("mode", GB_MODES)
def test_gb_single_0x80_is_euro_without_error(mode):
    assert decode_text(b"a\x80b", mode) == DecodedText("a€b", mode.value, False, None)


def test_gb_two_byte_euro():
    assert gb(b"\xa2\xe3").text == "€"


def test_gb_a3a0_is_ideographic_space():
    # GB18030 maps 0xA3A0 to U+E5E5; WHATWG maps it to U+3000, like 0xA1A1.
    assert gb(b"\xa3\xa0").text == "\u3000"
    assert gb(b"\xa1\xa1").text == "\u3000"


def test_gb_a8bc_and_its_four_byte_twin():
    assert gb(b"\xa8\xbc").text == "\u1e3f"
    assert gb(b"\x81\x35\xf4\x37").text == "\ue7c7"


MOVED_2022 = [
    (0xA6D9, 0xE78D, 0xFE10), (0xA6DA, 0xE78E, 0xFE12), (0xA6DB, 0xE78F, 0xFE11),
    (0xA6DC, 0xE790, 0xFE13), (0xA6DD, 0xE791, 0xFE14), (0xA6DE, 0xE792, 0xFE15),
    (0xA6DF, 0xE793, 0xFE16), (0xA6EC, 0xE794, 0xFE17), (0xA6ED, 0xE795, 0xFE18),
    (0xA6F3, 0xE796, 0xFE19), (0xFE59, 0xE81E, 0x9FB4), (0xFE61, 0xE826, 0x9FB5),
    (0xFE66, 0xE82B, 0x9FB6), (0xFE67, 0xE82C, 0x9FB7), (0xFE6D, 0xE832, 0x9FB8),
    (0xFE7E, 0xE843, 0x9FB9), (0xFE90, 0xE854, 0x9FBA), (0xFEA0, 0xE864, 0x9FBB),
]


@pytest.mark.parametrize("code,pua,char", MOVED_2022)
def test_gb_2022_codes_decode_to_standard_characters(code, pua, char):
    raw = code.to_bytes(2, "big")
    assert gb(raw) == DecodedText(chr(char), "gb18030", False, None)
    # Python's own codec still says PUA here; that is the difference being corrected.
    assert raw.decode("gb18030") == chr(pua)


@pytest.mark.parametrize("code,pua,char", MOVED_2022)
def test_gb_2022_four_byte_sequences_still_decode(code, pua, char):
    four = chr(char).encode("gb18030")  # Python's GB18030-2005 four-byte code
    assert len(four) == 4
    assert gb(four).text == chr(char)


def test_gb_examples_from_the_index():
    cases = {
        b"\x81\x40": "\u4e02", b"\x81\x7e": "\u4e8a", b"\x81\x80": "\u4e90", b"\x81\xfe": "\u4fa2",
        b"\xfe\x40": "\ufa0c", b"\xfe\x80": "\u4723", b"\xfe\xfe": "\ue4c5",
        b"\x82\x35\x91\x32": "\u9fb9", b"\x84\x31\x83\x30": "\ufe14",
        b"\x90\x30\x81\x30": "\U00010000", b"\xe3\x32\x9a\x35": "\U0010ffff",
        b"\x84\x31\xa4\x39": "\uffff", b"\x81\x30\x81\x30": "\x80",
    }
    for raw, expected in cases.items():
        assert gb(raw) == DecodedText(expected, "gb18030", False, None), raw


def lossy(expected, raw, mode=TextMode.GB18030):
    return DecodedText(expected, mode.value, True, base64.b64encode(raw).decode())


@pytest.mark.parametrize("mode", GB_MODES)
def test_gb_lone_lead_at_end_is_one_error(mode):
    assert decode_text(b"ab\x81", mode) == lossy("ab" + FFFD, b"ab\x81", mode)


def test_gb_ascii_trail_byte_is_decoded_again():
    assert gb(b"\x81\x7f") == lossy(FFFD + "\x7f", b"\x81\x7f")
    assert gb(b"\x81 x") == lossy(FFFD + " x", b"\x81 x")
    assert gb(b"\xff\x40") == lossy(FFFD + "@", b"\xff\x40")


def test_gb_non_ascii_bad_trail_consumes_both_bytes():
    assert gb(b"\x81\xffA") == lossy(FFFD + "A", b"\x81\xffA")
    assert gb(b"\xe3\xff\x9a\x33") == lossy(FFFD * 2, b"\xe3\xff\x9a\x33")


def test_gb_0xff_alone_is_an_error():
    assert gb(b"\xff") == lossy(FFFD, b"\xff")


def test_gb_broken_third_byte_resumes_at_the_second():
    assert gb(b"\x81\x30\x41") == lossy(FFFD + "0A", b"\x81\x30\x41")
    # Python's codec drops the whole sequence instead.
    assert b"\x81\x30\x41".decode("gb18030", "replace") == FFFD


def test_gb_broken_fourth_byte_resumes_at_the_second():
    # 0x30 is ASCII "0", then 0x81 0x41 is a two-byte character.
    assert gb(b"\x81\x30\x81\x41") == lossy(FFFD + "0\u4e04", b"\x81\x30\x81\x41")


def test_gb_truncated_four_byte_at_end_is_one_error():
    assert gb(b"\x81\x30") == lossy(FFFD, b"\x81\x30")
    assert gb(b"\x81\x30\x81") == lossy(FFFD, b"\x81\x30\x81")
    assert gb(b"\xff\x32\x9a\x33") == lossy(FFFD + "2" + FFFD, b"\xff\x32\x9a\x33")


@pytest.mark.parametrize(
    "raw", [b"\x84\x31\xa5\x30", b"\x8f\x39\xfe\x39", b"\xe3\x32\x9a\x36", b"\xfe\x39\xfe\x39"]
)
def test_gb_out_of_range_four_byte_is_one_error_for_four_bytes(raw):
    assert gb(raw + b"z") == lossy(FFFD + "z", raw + b"z")


def test_gb_bom_utf8_switches_and_is_removed():
    raw = b"\xef\xbb\xbf" + "中😀".encode()
    assert gb(raw, TextMode.GBK) == DecodedText("中😀", "gbk", False, None)
    bad = b"\xef\xbb\xbf\xc0\x80"
    assert gb(bad) == lossy(FFFD * 2, bad)


def test_gb_bom_utf16le_switches_and_is_removed():
    raw = b"\xff\xfe" + "中😀".encode("utf-16-le")
    assert gb(raw) == DecodedText("中😀", "gb18030", False, None)


def test_gb_bom_utf16be_switches_and_is_removed():
    raw = b"\xfe\xff" + "中😀".encode("utf-16-be")
    assert gb(raw, TextMode.GBK) == DecodedText("中😀", "gbk", False, None)


@pytest.mark.parametrize(
    "body,expected",
    [
        (b"a\x00b", "a" + FFFD),  # odd final byte
        (b"\x3d\xd8\xa9", FFFD),  # lead surrogate + odd byte: one error
        (b"\x3d\xd8", FFFD),  # lead surrogate at the end
        (b"\xa9\xdc\x03\x26", FFFD + "\u2603"),  # lone trail surrogate
        (b"\x3d\xd8\x03\x26", FFFD + "\u2603"),  # lead surrogate without trail
        (b"\x3d\xd8\x3d\xd8\xa9\xdc", FFFD + "\U0001f4a9"),  # second lead pairs
    ],
)
def test_gb_bom_utf16_errors(body, expected):
    raw = b"\xff\xfe" + body
    assert gb(raw) == lossy(expected, raw)


def test_gb_bom_only_counts_at_the_start():
    raw = b"a\xef\xbb\xbf"
    assert gb(raw).text == "a" + b"\xef\xbb".decode("gb18030") + FFFD


# Fingerprints of WHATWG data, computed from encoding_rs 0.8.35's test data and range tables.
FP_INDEX = "85373408efe24c652c0a2f37997df8c657b0e8a654d07d9f9d97f1ad16609bc6"
FP_FOUR_BYTE_BMP = "efc8b18e905caa9e0ea4187852ab4d90bb671c8c722cca4d6bd4f58746eb3e00"
FP_ENCODE_GB18030 = "31193ed89f860a96113d6fea7931f9811a4fff4fb287b71c0663d4b9e44f647c"
FP_ENCODE_GBK = "63527ac098a953d5d6087cf6650137e15da0ce633eb6aac97df02f45b69748e6"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_gb_whole_two_byte_index_matches_whatwg():
    codes = b"".join(_gb18030.two_byte_code(p) for p in range(23940))
    decoded = gb(codes)
    assert not decoded.lossy and len(decoded.text) == 23940
    assert sha(decoded.text.encode()) == FP_INDEX
    assert "".join(_gb18030.tables().index) == decoded.text
    # one by one as well (no context effects)
    assert all(gb(_gb18030.two_byte_code(p)).text == decoded.text[p] for p in range(0, 23940, 7))


def test_gb_whole_four_byte_bmp_range_matches_whatwg():
    codes = b"".join(_gb18030.four_byte_code(p) for p in range(39420))
    decoded = gb(codes)
    assert not decoded.lossy and len(decoded.text) == 39420
    assert sha(decoded.text.encode()) == FP_FOUR_BYTE_BMP


def test_gb_four_byte_pointer_limits():
    def one(pointer):
        return gb(_gb18030.four_byte_code(pointer)).text

    for pointer in (39420, 39421, 100000, 188998, 188999, 1237576, 1237577, 126 * 12600 - 1):
        assert one(pointer) == FFFD, pointer
    for pointer in (189000, 189001, 500000, 1237575):
        assert one(pointer) == chr(0x10000 + pointer - 189000), pointer


def test_gb_astral_four_byte_sample_matches_formula():
    pointers = range(189000, 1237576, 331)
    decoded = gb(b"".join(_gb18030.four_byte_code(p) for p in pointers))
    assert decoded.text == "".join(chr(0x10000 + p - 189000) for p in pointers)


# --- gbk / gb18030 encoding -----------------------------------------------------------------


def gb_encode(s, mode):
    return encode_text(s, mode)


def test_gb_encode_chinese_round_trip():
    for mode in GB_MODES:
        raw = gb_encode("中文abc", mode)
        assert raw == "中文abc".encode("gb18030")
        assert decode_text(raw, mode).text == "中文abc"


def test_gbk_encodes_euro_as_0x80():
    assert gb_encode("€", TextMode.GBK) == b"\x80"
    assert gb_encode("€", TextMode.GB18030) == b"\xa2\xe3"


@pytest.mark.parametrize("mode", GB_MODES)
def test_gb_encode_e5e5_is_unmappable(mode):
    with pytest.raises(LuaSkillsError) as err:
        gb_encode("a\ue5e5", mode)
    assert str(err.value) == f"{mode.value} encode failed without replacement"


def test_gb_encode_e7c7_is_four_byte_in_gb18030_only():
    assert gb_encode("\ue7c7", TextMode.GB18030) == b"\x81\x35\xf4\x37"
    with pytest.raises(LuaSkillsError, match="^gbk encode failed without replacement$"):
        gb_encode("\ue7c7", TextMode.GBK)


@pytest.mark.parametrize("mode", GB_MODES)
def test_gb_encode_1e3f_is_a8bc(mode):
    assert gb_encode("\u1e3f", mode) == b"\xa8\xbc"


@pytest.mark.parametrize("code,pua,char", MOVED_2022)
def test_gb_encode_2022_characters_are_two_byte(code, pua, char):
    for mode in GB_MODES:
        assert gb_encode(chr(char), mode) == code.to_bytes(2, "big")


@pytest.mark.parametrize("code,pua,char", MOVED_2022)
def test_gb_encode_old_pua_still_maps_to_the_two_byte_code(code, pua, char):
    for mode in GB_MODES:
        assert gb_encode(chr(pua), mode) == code.to_bytes(2, "big")


def test_gb_encode_ideographic_space_uses_the_first_code():
    assert gb_encode("\u3000", TextMode.GBK) == b"\xa1\xa1"


def test_gbk_refuses_four_byte_characters():
    for char in ("\U0001f600", "\u0e01", "\u00ae", "\ufffd"):
        with pytest.raises(LuaSkillsError) as err:
            gb_encode("ok" + char, TextMode.GBK)
        assert str(err.value) == "gbk encode failed without replacement"
        assert len(gb_encode(char, TextMode.GB18030)) == 4


def test_gb18030_encodes_astral():
    assert gb_encode("\U00010000\U0010ffff", TextMode.GB18030) == b"\x90\x30\x81\x30\xe3\x32\x9a\x35"


def test_gb_encode_mixed_specials():
    s = "a\ufe10中\u1e3f€\ue78d😀z"
    assert gb_encode(s, TextMode.GB18030) == (
        b"a\xa6\xd9\xd6\xd0\xa8\xbc\xa2\xe3\xa6\xd9" + "😀".encode("gb18030") + b"z"
    )
    assert gb_encode(s[:-2] + "z", TextMode.GBK) == b"a\xa6\xd9\xd6\xd0\xa8\xbc\x80\xa6\xd9z"


def _encoder_fingerprint(mode):
    def one(cp):
        try:
            return encode_text(chr(cp), mode).hex().encode()
        except LuaSkillsError:
            return b"-"

    cps = [c for c in range(0x80, 0x10000) if not 0xD800 <= c <= 0xDFFF]
    return sha(b"\n".join(one(c) for c in cps))


def test_gb18030_encoder_matches_whatwg_for_every_bmp_character():
    assert _encoder_fingerprint(TextMode.GB18030) == FP_ENCODE_GB18030


def test_gbk_encoder_matches_whatwg_for_every_bmp_character():
    assert _encoder_fingerprint(TextMode.GBK) == FP_ENCODE_GBK


def test_gb_round_trip_can_be_broken_by_a_leading_bom_lookalike():
    # Encoded text that begins EF BB BF is sniffed as UTF-8 on the way back (as in encoding_rs).
    first = _gb18030.tables().index[(0xEF - 0x81) * 190 + 0xBB - 0x41]
    second = next(
        c for c in _gb18030.tables().index if encode_text(c, TextMode.GB18030)[:1] == b"\xbf"
    )
    raw = encode_text(first + second, TextMode.GB18030)
    assert raw.startswith(b"\xef\xbb\xbf")
    assert decode_text(raw, TextMode.GB18030).text != first + second


# --- latin1 ---------------------------------------------------------------------------------


def test_latin1_decodes_every_byte_to_the_same_code_point():
    raw = bytes(range(256))
    result = decode_text(raw, TextMode.LATIN1)
    assert result == DecodedText("".join(map(chr, range(256))), "latin1", False, None)


def test_latin1_encode_replaces_above_ff_with_question_mark():
    assert encode_text("aé\xff", TextMode.LATIN1) == b"a\xe9\xff"
    assert encode_text("a中😀b", TextMode.LATIN1) == b"a??b"
    assert encode_text("é".encode(), TextMode.LATIN1) == b"\xe9"


# --- base64 ---------------------------------------------------------------------------------


def test_base64_mode_decode():
    assert decode_text(b"\x00\x01\x02", TextMode.BASE64) == DecodedText("AAEC", "base64", False, "AAEC")
    assert decode_text(b"", TextMode.BASE64) == DecodedText("", "base64", False, "")


@pytest.mark.parametrize(
    "encoded,raw",
    [("", b""), ("AA==", b"\x00"), ("AAE=", b"\x00\x01"), ("AAEC", b"\x00\x01\x02"), ("/w==", b"\xff")],
)
def test_base64_mode_encode_valid(encoded, raw):
    assert encode_text(encoded, TextMode.BASE64) == raw
    assert encode_text(encoded.encode(), TextMode.BASE64) == raw


@pytest.mark.parametrize(
    "encoded,detail",
    [
        ("AAAA AAA", "Invalid symbol 32, offset 4."),
        ("AA\n", "Invalid symbol 10, offset 2."),
        ("AAAA\n", "Invalid symbol 10, offset 4."),
        ("A$AAA", "Invalid symbol 36, offset 1."),
        ("AB==", "Invalid last symbol 66, offset 1."),
        ("ABC=", "Invalid last symbol 67, offset 2."),
        ("AAA", "Invalid padding"),
        ("AA", "Invalid padding"),
        ("AA=", "Invalid padding"),
        ("AAAAAA", "Invalid padding"),
        ("A", "Invalid input length: 1"),
        ("AAAAA", "Invalid input length: 5"),
        ("AA=A", "Invalid symbol 61, offset 2."),
        ("A===", "Invalid symbol 61, offset 1."),
        ("====", "Invalid symbol 61, offset 0."),
        ("AA==AAAA", "Invalid symbol 61, offset 2."),
        ("AAA=A", "Invalid symbol 61, offset 3."),
        ("AA===", "Invalid symbol 61, offset 2."),
        ("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA-A", "Invalid symbol 45, offset 34."),
        ("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA_AAAA", "Invalid symbol 95, offset 43."),
        ("AAé=", "Invalid symbol 195, offset 2."),
        ("QUJD\r\n", "Invalid symbol 13, offset 4."),
        ("QUJD\n\n\n", "Invalid symbol 10, offset 4."),
    ],
)
def test_base64_mode_encode_rejects_like_rust(encoded, detail):
    with pytest.raises(LuaSkillsError) as err:
        encode_text(encoded, TextMode.BASE64)
    assert str(err.value) == f"base64 decode failed: {detail}"


# --- input validity -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ALL_MODES)
def test_encode_requires_valid_utf8_bytes(mode, not_windows):
    with pytest.raises(LuaSkillsError) as err:
        encode_text(b"a\xffb", mode)
    assert str(err.value) == "string must be valid UTF-8"


@pytest.mark.parametrize("mode", ALL_MODES)
def test_encode_rejects_lone_surrogates(mode, not_windows):
    with pytest.raises(LuaSkillsError, match="^string must be valid UTF-8$"):
        encode_text("a\ud800", mode)


@pytest.mark.parametrize("mode", [m for m in TextMode if m is not TextMode.BASE64])
def test_encode_bytes_and_str_agree(mode, not_windows):
    sample = "abc é ü"
    assert encode_text(sample.encode(), mode) == encode_text(sample, mode)


# --- properties -----------------------------------------------------------------------------


def whatwg_gb18030_model(data: bytes):
    """The Encoding Standard's gb18030 decoder, literally (I/O queue with prepending)."""
    if data.startswith(b"\xef\xbb\xbf"):
        return whatwg_utf8_model(data[3:])
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return whatwg_utf16_model(data[2:], big_endian=data[:2] == b"\xfe\xff")
    index = _gb18030.tables().index  # checked against WHATWG by the fingerprint tests

    def ranges_code_point(pointer):
        if 39419 < pointer < 189000 or pointer > 1237575:
            return None
        if pointer == 7457:
            return 0xE7C7
        if pointer >= 189000:
            return 0x10000 + pointer - 189000
        return ord(_gb18030.four_byte_code(pointer).decode("gb18030"))

    queue = deque(data)
    out, errors = [], 0
    first = second = third = 0
    while True:
        byte = queue.popleft() if queue else None
        if byte is None:
            if first or second or third:
                out.append(FFFD)
                errors += 1
            return "".join(out), errors > 0
        if third:
            if not 0x30 <= byte <= 0x39:
                queue.extendleft((byte, third, second))
                first = second = third = 0
                out.append(FFFD)
                errors += 1
                continue
            pointer = (first - 0x81) * 12600 + (second - 0x30) * 1260 + (third - 0x81) * 10 + byte - 0x30
            first = second = third = 0
            code_point = ranges_code_point(pointer)
            if code_point is None:
                out.append(FFFD)
                errors += 1
            else:
                out.append(chr(code_point))
            continue
        if second:
            if 0x81 <= byte <= 0xFE:
                third = byte
                continue
            queue.extendleft((byte, second))
            first = second = 0
            out.append(FFFD)
            errors += 1
            continue
        if first:
            if 0x30 <= byte <= 0x39:
                second = byte
                continue
            lead, first = first, 0
            pointer = None
            if 0x40 <= byte <= 0x7E or 0x80 <= byte <= 0xFE:
                pointer = (lead - 0x81) * 190 + byte - (0x40 if byte < 0x7F else 0x41)
            if pointer is not None:
                out.append(index[pointer])
                continue
            if byte < 0x80:
                queue.appendleft(byte)
            out.append(FFFD)
            errors += 1
            continue
        if byte < 0x80:
            out.append(chr(byte))
        elif byte == 0x80:
            out.append("\u20ac")
        elif byte <= 0xFE:
            first = byte
        else:
            out.append(FFFD)
            errors += 1


def whatwg_utf8_model(data):
    text_ = data.decode("utf-8", "replace")
    try:
        data.decode("utf-8")
        return text_, False
    except UnicodeDecodeError:
        return text_, True


def whatwg_utf16_model(data, big_endian):
    out, errors = [], 0
    lead_byte = lead_surrogate = None
    for byte in list(data) + [None]:
        if byte is None:
            if lead_byte is not None or lead_surrogate is not None:
                out.append(FFFD)
                errors += 1
            break
        if lead_byte is None:
            lead_byte = byte
            continue
        unit = (lead_byte << 8) + byte if big_endian else (byte << 8) + lead_byte
        lead_byte = None
        if lead_surrogate is not None:
            high, lead_surrogate = lead_surrogate, None
            if 0xDC00 <= unit <= 0xDFFF:
                out.append(chr(0x10000 + ((high - 0xD800) << 10) + unit - 0xDC00))
                continue
            out.append(FFFD)
            errors += 1
            # the unit is processed again
        if 0xD800 <= unit <= 0xDBFF:
            lead_surrogate = unit
        elif 0xDC00 <= unit <= 0xDFFF:
            out.append(FFFD)
            errors += 1
        else:
            out.append(chr(unit))
    return "".join(out), errors > 0


GB_INTERESTING = [0x00, 0x30, 0x35, 0x39, 0x40, 0x41, 0x7E, 0x7F, 0x80, 0x81, 0x82, 0x84, 0x8F,
                  0x90, 0xA0, 0xA1, 0xA3, 0xA6, 0xA8, 0xBB, 0xBC, 0xBF, 0xD9, 0xE3, 0xEF, 0xFE, 0xFF]
gb_like_bytes = st.one_of(
    st.binary(max_size=40),
    st.lists(st.sampled_from(GB_INTERESTING), max_size=40).map(bytes),
    st.lists(
        st.one_of(
            st.sampled_from(GB_INTERESTING).map(lambda b: bytes([b])),
            st.integers(0, 126 * 12600 - 1).map(_gb18030.four_byte_code),
            st.integers(0, 23939).map(_gb18030.two_byte_code),
            st.sampled_from([b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"\xa3\xa0", b"\xa6\xd9"]),
        ),
        max_size=12,
    ).map(b"".join),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(gb_like_bytes)
@example(b"\x81\x30\x81\x41")
@example(b"\xef\xbb\xbf\xff")
@example(b"\xfe\xff\xd8\x00\xd8\x00\xdc\x00\x00")
def test_gb_decoder_equals_the_whatwg_model(raw):
    expected_text, expected_errors = whatwg_gb18030_model(raw)
    for mode in GB_MODES:
        result = decode_text(raw, mode)
        assert result.text == expected_text
        assert result.lossy == expected_errors
        assert result.base64 == (base64.b64encode(raw).decode() if expected_errors else None)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64), st.sampled_from(ALL_MODES))
def test_decode_never_raises(raw, mode):
    result = decode_text(raw, mode)
    assert isinstance(result.text, str)
    assert not any("\ud800" <= c <= "\udfff" for c in result.text)
    if mode is TextMode.BASE64:
        assert result.base64 == result.text == base64.b64encode(raw).decode()
    elif result.lossy:
        assert result.base64 == base64.b64encode(raw).decode()
    else:
        assert result.base64 is None


unicode_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
cjk_text = st.text(
    st.one_of(st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF), st.characters(max_codepoint=0x7F),
              st.characters(min_codepoint=0xE000, max_codepoint=0xFFFF, blacklist_categories=("Cs",))),
    max_size=40,
)
NOT_ROUND_TRIPPING = {chr(pua) for _, pua, _ in MOVED_2022} | {"\ue5e5"}


@settings(max_examples=200, deadline=None)
@given(st.one_of(unicode_text, cjk_text))
def test_gb18030_round_trip(s):
    assume(not NOT_ROUND_TRIPPING.intersection(s))
    raw = encode_text(s, TextMode.GB18030)
    assume(not raw.startswith(b"\xef\xbb\xbf"))
    assert decode_text(raw, TextMode.GB18030) == DecodedText(s, "gb18030", False, None)


@settings(max_examples=200, deadline=None)
@given(st.one_of(unicode_text, cjk_text))
def test_gbk_encode_fails_only_outside_gbk_and_round_trips(s):
    assume(not NOT_ROUND_TRIPPING.intersection(s))
    try:
        raw = encode_text(s, TextMode.GBK)
    except LuaSkillsError as err:
        assert str(err) == "gbk encode failed without replacement"
        assert any(len(encode_text(c, TextMode.GB18030)) == 4 or c == "\ue5e5" for c in s)
        return
    assert all(len(encode_text(c, TextMode.GBK)) <= 2 for c in s)
    assume(not raw.startswith(b"\xef\xbb\xbf"))
    assert decode_text(raw, TextMode.GBK).text == s


@settings(max_examples=200, deadline=None)
@given(unicode_text)
def test_gb18030_encode_fails_only_for_e5e5(s):
    try:
        encode_text(s, TextMode.GB18030)
    except LuaSkillsError:
        assert "\ue5e5" in s
    else:
        assert "\ue5e5" not in s


@settings(max_examples=200, deadline=None)
@given(unicode_text)
def test_utf8_round_trip(s):
    assert decode_text(encode_text(s, TextMode.UTF8), TextMode.UTF8) == DecodedText(s, "utf-8", False, None)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_latin1_byte_identity(raw):
    decoded = decode_text(raw, TextMode.LATIN1)
    assert not decoded.lossy and len(decoded.text) == len(raw)
    assert encode_text(decoded.text, TextMode.LATIN1) == raw


@settings(max_examples=200, deadline=None)
@given(unicode_text)
def test_latin1_encode_one_byte_per_character(s):
    raw = encode_text(s, TextMode.LATIN1)
    assert len(raw) == len(s)
    assert all(b == ord(c) if ord(c) <= 0xFF else b == 0x3F for b, c in zip(raw, s))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_base64_round_trip(raw):
    assert encode_text(decode_text(raw, TextMode.BASE64).text, TextMode.BASE64) == raw


B64_CHARS = string.ascii_letters + string.digits + "+/=" + " \n-_é"


@settings(max_examples=500, deadline=None)
@given(st.text(st.sampled_from(B64_CHARS), max_size=14))
def test_base64_accepts_exactly_canonical_padded_input(s):
    try:
        canonical = base64.b64encode(base64.b64decode(s, validate=True)).decode() == s
    except (binascii.Error, ValueError):
        canonical = False
    try:
        raw = encode_text(s, TextMode.BASE64)
    except LuaSkillsError as err:
        assert not canonical
        assert str(err).startswith("base64 decode failed: ")
        assert str(err).split(": ", 1)[1].split(" ")[0] in ("Invalid",)
    else:
        assert canonical and base64.b64encode(raw).decode() == s


def test_gb_error_counting_is_per_thread():
    clean = "中文".encode("gb18030") * 200
    broken = clean + b"\x81"
    failures = []

    def worker(raw, expect_lossy):
        for _ in range(200):
            if decode_text(raw, TextMode.GBK).lossy is not expect_lossy:
                failures.append(raw)

    threads = [threading.Thread(target=worker, args=(raw, raw is broken))
               for raw in (clean, broken, clean, broken)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures


def test_codec_error_handler_is_registered():
    assert codecs.lookup_error("luaskills-runtime.whatwg-gb18030") is not None
