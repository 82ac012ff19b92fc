"""Throughput of luaskills_runtime.text against Python's raw codecs on the same data.

Each line prints our time divided by the anchor's (1.00 = as fast as the bare codec call).
Run: PYTHONPATH=src python3 benchmarks/bench_text.py
"""
import base64
import subprocess
import sys

from _timing import best_of
from luaskills_runtime.text import TextMode, decode_text, encode_text

SIZE = 1 << 20


def ratio(name, ours, anchor):
    t_ours, t_anchor = best_of(ours, repeat=5, number=5), best_of(anchor, repeat=5, number=5)
    print(f"{name:<44} {t_ours / t_anchor:6.2f}x   (anchor {t_anchor * 1e3:7.2f} ms)")


def main():
    chinese = ("中文输出，进程日志 line 1234 " * (SIZE // 40))[: SIZE // 2]
    gb = chinese.encode("gb18030")
    utf8 = chinese.encode("utf-8")
    ascii_log = (b"INFO request handled in 12 ms\n" * (SIZE // 30))[:SIZE]
    # a broken sequence every KiB, as when reads cut multi-byte characters apart
    gb_errors = b"".join(gb[i : i + 1023] + b"\x81" for i in range(0, len(gb), 1023))
    gb_specials = gb.replace("进".encode("gb18030"), b"\xa3\xa0")
    b64 = base64.b64encode(ascii_log).decode()

    print(f"input sizes: gb {len(gb)} B, utf-8 {len(utf8)} B, ascii {len(ascii_log)} B")
    ratio("decode utf-8, valid Chinese", lambda: decode_text(utf8, TextMode.UTF8),
          lambda: utf8.decode("utf-8"))
    ratio("decode gbk, ASCII only", lambda: decode_text(ascii_log, TextMode.GBK),
          lambda: ascii_log.decode("gb18030"))
    ratio("decode gbk, valid Chinese", lambda: decode_text(gb, TextMode.GBK),
          lambda: gb.decode("gb18030"))
    ratio("decode gbk, WHATWG-corrected codes", lambda: decode_text(gb_specials, TextMode.GBK),
          lambda: gb_specials.decode("gb18030"))
    ratio("decode gbk, one error per KiB", lambda: decode_text(gb_errors, TextMode.GBK),
          lambda: gb_errors.decode("gb18030", "replace"))
    ratio("encode gb18030, Chinese", lambda: encode_text(chinese, TextMode.GB18030),
          lambda: chinese.encode("gb18030"))
    ratio("encode gbk, Chinese", lambda: encode_text(chinese, TextMode.GBK),
          lambda: chinese.encode("gb18030"))
    ratio("encode base64 mode (strict decode)", lambda: encode_text(b64, TextMode.BASE64),
          lambda: base64.b64decode(b64))
    ratio("decode base64 mode", lambda: decode_text(ascii_log, TextMode.BASE64),
          lambda: base64.b64encode(ascii_log))

    # First use builds the WHATWG tables; time it in a fresh interpreter against a bare
    # interpreter start-up with the module imported.
    probe = "import time,sys; from luaskills_runtime.text import _gb18030 as g; t=time.perf_counter(); {}; print(time.perf_counter()-t)"
    build = float(subprocess.check_output([sys.executable, "-c", probe.format("g.tables()")]))
    anchor = best_of(lambda: gb.decode("gb18030"), repeat=5, number=1)
    print(f"{'first-use table build':<44} {build / anchor:6.2f}x   "
          f"(of one 1 MiB anchor decode, {build * 1e3:.1f} ms)")


if __name__ == "__main__":
    main()
