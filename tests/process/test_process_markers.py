"""read(until_text=...): incremental byte search in the rings, and the decoding fallback."""
import sys
import time

import pytest

from luaskills_runtime.process import ProcessSession

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX commands (sh)")


def sh(script, **kwargs):
    return ProcessSession.open("sh", ["-c", script], **kwargs)


def timed_read(session, **kwargs):
    start = time.monotonic()
    result = session.read(**kwargs)
    return result, time.monotonic() - start


def test_marker_split_across_two_writes_is_found():
    with sh("printf 'xxAB'; sleep 0.4; printf 'CDyy'; read _") as session:
        result, elapsed = timed_read(session, timeout_ms=10000, until_text="BC")
        # the first half alone does not end the wait; the second one does, at once
        assert result["timed_out"] is False
        assert result["stdout"] == "xxABCDyy"
        assert 0.3 < elapsed < 5


def test_marker_on_stderr_and_without_marker_on_stdout():
    with sh("echo noise; sleep 0.2; echo 'ready>' >&2; read _") as session:
        result, elapsed = timed_read(session, timeout_ms=10000, until_text="ready>")
        assert result["timed_out"] is False
        assert result["stdout"] == "noise\n" and result["stderr"] == "ready>\n"
        assert elapsed > 0.1


def test_missing_marker_times_out_but_still_returns_the_output():
    with sh("echo partial; read _") as session:
        result, elapsed = timed_read(session, timeout_ms=300, until_text="never")
        assert result["timed_out"] is True and result["stdout"] == "partial\n"
        assert elapsed >= 0.29


def test_marker_wait_ends_at_eof():
    with sh("echo done") as session:
        result, elapsed = timed_read(session, timeout_ms=10000, until_text="never")
        assert result["timed_out"] is False and result["stdout"] == "done\n"
        assert elapsed < 5


def test_multibyte_marker_split_inside_a_character():
    # "é" is C3 A9: the two bytes arrive in different writes.
    with sh(r"printf 'caf\303'; sleep 0.3; printf '\251!'; read _") as session:
        result, _ = timed_read(session, timeout_ms=10000, until_text="é!")
        assert result["timed_out"] is False and result["stdout"] == "café!"


def test_marker_found_beyond_max_bytes_is_still_a_hit():
    with sh("printf '0123456789END'; read _") as session:
        result, _ = timed_read(session, timeout_ms=10000, until_text="END", max_bytes=4)
        assert result["timed_out"] is False and result["stdout"] == "0123"
        assert session.read(timeout_ms=1000)["stdout"] == "456789END"


def test_marker_after_lots_of_output_crossing_ring_wrap():
    script = "i=0; while [ $i -lt 300 ]; do printf '%0100d' $i; i=$((i+1)); done; printf MARK; read _"
    with sh(script, buffer_limit_bytes=4096) as session:
        result, _ = timed_read(session, timeout_ms=20000, until_text="MARK", max_bytes=1 << 20)
        assert result["timed_out"] is False and result["stdout"].endswith("MARK")
        assert len(result["stdout"]) <= 4096


def test_gbk_marker_uses_the_decoded_text():
    # "好" in GBK is BA C3; "A" (0x41) can appear as a GBK trail byte, so only decoding is right:
    # 0x81 0x41 is one GBK character, not "A".
    with sh(r"printf '\201\101'; sleep 1.5; printf '\272\303'; read _", encoding="gbk") as session:
        result, elapsed = timed_read(session, timeout_ms=300, until_text="A")
        assert result["timed_out"] is True          # no "A" in the decoded text
        assert result["stdout_encoding"] == "gbk"
        result, _ = timed_read(session, timeout_ms=10000, until_text="好")
        assert result["timed_out"] is False and result["stdout"] == "好"


def test_replacement_character_marker_matches_lossy_text():
    with sh(r"printf 'a\377b'; read _") as session:
        result, _ = timed_read(session, timeout_ms=10000, until_text="\ufffd")
        assert result["timed_out"] is False and result["stdout"] == "a\ufffdb"
        assert result["stdout_lossy"] is True and result["stdout_base64"] == "Yf9i"


def test_latin1_marker_above_u00ff_never_matches():
    with sh("printf 'abc'; read _", encoding="latin1") as session:
        result, elapsed = timed_read(session, timeout_ms=200, until_text="€")
        assert result["timed_out"] is True and result["stdout"] == "abc"
    with sh(r"printf 'caf\351'; read _", encoding="latin1") as session:
        result, _ = timed_read(session, timeout_ms=10000, until_text="é")
        assert result["timed_out"] is False and result["stdout"] == "café"


def test_base64_stream_marker_searches_the_encoded_text():
    with sh("printf 'hello'; read _", stdout_encoding="base64") as session:
        result, _ = timed_read(session, timeout_ms=10000, until_text="aGVsbG8")
        assert result["timed_out"] is False and result["stdout"] == "aGVsbG8="
