"""The `luaskills-runtime` command.

Exit status of `run` and `eval`: 0 success, 1 the Lua code failed (or timed out), 2 usage or
request error, 130 interrupted (Ctrl-C cancels the running request, kills the process trees it
started and prints one line on stderr)."""
from __future__ import annotations

import argparse
import json
import sys
import threading
from typing import Any, Callable, List, Optional, Tuple

from luaskills_runtime.engine import LuaEngine
from luaskills_runtime.errors import LuaSkillsError
from luaskills_runtime.lua.runtime_info import engine_info
from luaskills_runtime.mcp.command import add_mcp_parser
from luaskills_runtime.runlua import DEFAULT_TIMEOUT_MS, request_from_mapping

EXIT_OK, EXIT_LUA_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
_REQUEST_ID = "luaskills-runtime-cli"
# How often the main thread wakes while the request runs (Ctrl-C is handled at the next wake).
_WAKE_S = 0.02
# After Ctrl-C: how long to wait for the cancelled request before exiting anyway.
_CANCEL_GRACE_S = 0.12


class _Interrupted(Exception):
    pass


def _run_interruptibly(engine: LuaEngine, work: Callable[[], Any]) -> Any:
    """Run `work` (which runs under request id _REQUEST_ID) on a worker thread while the main
    thread stays free for Ctrl-C: KeyboardInterrupt cancels the request (its process trees die)
    and raises _Interrupted."""
    outcome: List[Tuple[bool, Any]] = []
    done = threading.Event()

    def target() -> None:
        try:
            outcome.append((True, work()))
        except BaseException as error:  # handed to the main thread
            outcome.append((False, error))
        finally:
            done.set()

    worker = threading.Thread(target=target, name="luaskills-runtime-request", daemon=True)
    try:
        worker.start()
        while not done.wait(_WAKE_S):
            pass
    except KeyboardInterrupt:
        engine.cancel(_REQUEST_ID)
        done.wait(_CANCEL_GRACE_S)
        raise _Interrupted() from None
    ok, value = outcome[0]
    if ok:
        return value
    raise value


def _interrupted() -> int:
    sys.stderr.write("luaskills-runtime: interrupted\n")
    sys.stderr.flush()
    return EXIT_INTERRUPTED


def cmd_eval(options) -> int:
    """Evaluate a snippet with run_lua and print its JSON result."""
    try:
        args = json.loads(options.args) if options.args else None
    except ValueError as error:
        print(f"luaskills-runtime: --args is not valid JSON: {error}", file=sys.stderr)
        return EXIT_USAGE
    if options.timeout_ms <= 0:
        print("luaskills-runtime: --timeout-ms must be greater than 0", file=sys.stderr)
        return EXIT_USAGE
    code = sys.stdin.read() if options.code == "-" else options.code
    engine = LuaEngine()
    try:
        result = _run_interruptibly(
            engine, lambda: engine.run_lua(code, args, timeout_ms=options.timeout_ms,
                                           request_id=_REQUEST_ID))
    except _Interrupted:
        return _interrupted()
    except LuaSkillsError as error:
        print(str(error), file=sys.stderr)
        return EXIT_LUA_FAILURE
    finally:
        engine.close()
    print(json.dumps(result, ensure_ascii=False, indent=2))
    return EXIT_OK


def cmd_run(options) -> int:
    """Run a Lua file or snippet as a runlua request and print its Markdown report.

    Exit status: 0 when the code succeeded, 1 when it failed (the report says why), 2 when the
    request itself was rejected (message on stderr)."""
    request = {"task": options.task or "", "timeout_ms": options.timeout_ms}
    if options.code is not None:
        request["code"] = options.code
    elif options.file == "-":
        request["code"] = sys.stdin.read()
    else:
        request["file"] = options.file
    try:
        request["args"] = json.loads(options.args) if options.args is not None else {}
    except ValueError as error:
        print(f"luaskills-runtime: --args is not valid JSON: {error}", file=sys.stderr)
        return EXIT_USAGE
    engine = LuaEngine()
    try:
        parsed = request_from_mapping(request)
        report = _run_interruptibly(
            engine, lambda: engine.runlua_service.run(parsed, _REQUEST_ID))
    except _Interrupted:
        return _interrupted()
    except LuaSkillsError as error:
        print(str(error), file=sys.stderr)
        return EXIT_USAGE
    finally:
        engine.close()
    sys.stdout.write(report.markdown + "\n")
    sys.stdout.flush()
    return EXIT_OK if report.ok else EXIT_LUA_FAILURE


def cmd_ffi_path(options) -> int:
    """Print the path of the library exporting the luaskills C ABI (for LUASKILLS_LIB)."""
    from luaskills_runtime.ffi import library_path
    print(library_path())
    return 0


def cmd_ffi_install(options) -> int:
    """Copy the C ABI library to where the luaskills SDK looks under a runtime root."""
    from luaskills_runtime.ffi import install_library
    try:
        print(install_library(options.runtime_root))
    except OSError as error:
        print(f"luaskills-runtime: ffi-install failed: {error}", file=sys.stderr)
        return 1
    return 0


def _timeout_ms(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def version_text() -> str:
    """What --version prints: the package version, the Lua engine and the timeout guard."""
    info = engine_info()
    return (f"luaskills-runtime {info['version']} (engine {info['engine']}: {info['lua_version']}, "
            f"lupa {info['lupa_version']}, guard {info['guard']})")


class _VersionAction(argparse.Action):
    """--version: computed only when asked for (it starts a Lua state)."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        try:
            text = version_text()
        except LuaSkillsError as error:  # e.g. LUASKILLS_GUARD set to an unknown mechanism
            parser.exit(2, f"luaskills-runtime: {error}\n")
        print(text)
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="luaskills-runtime",
                                     description="Run LuaSkills Lua code on LuaJIT.")
    parser.add_argument("--version", action=_VersionAction,
                        help="print the version, the Lua engine and the timeout guard, then exit")
    sub = parser.add_subparsers(dest="command", required=True)
    p_eval = sub.add_parser("eval", help="evaluate a Lua snippet (run_lua) and print the JSON result")
    p_eval.add_argument("code", help="Lua code (`-` reads it from stdin); `args` holds --args")
    p_eval.add_argument("--args", help="JSON value passed as `args`")
    p_eval.add_argument("--timeout-ms", type=_timeout_ms, default=DEFAULT_TIMEOUT_MS,
                        help=f"time limit in milliseconds (default {DEFAULT_TIMEOUT_MS})")
    p_eval.set_defaults(handler=cmd_eval)
    p_run = sub.add_parser(
        "run", help="run a Lua file or snippet as a runlua request and print the Markdown report",
        description="Exit status: 0 success, 1 the Lua code failed, 2 the request was rejected, "
                    "130 interrupted.")
    source = p_run.add_mutually_exclusive_group(required=True)
    source.add_argument("file", nargs="?",
                        help="Lua file (its folder is the cwd while it runs); `-` reads stdin")
    source.add_argument("-e", dest="code", metavar="CODE", help="Lua code to run instead of a file")
    p_run.add_argument("--args", help="JSON value passed as `args`")
    p_run.add_argument("--task", help="task text shown in the report")
    p_run.add_argument("--timeout-ms", type=_timeout_ms, default=DEFAULT_TIMEOUT_MS,
                       help=f"time limit in milliseconds (default {DEFAULT_TIMEOUT_MS})")
    p_run.set_defaults(handler=cmd_run)
    p_ffi_path = sub.add_parser("ffi-path", help="print the path of the luaskills C ABI library "
                                                 "(LUASKILLS_LIB for the luaskills SDK)")
    p_ffi_path.set_defaults(handler=cmd_ffi_path)
    p_ffi_install = sub.add_parser("ffi-install", help="copy the luaskills C ABI library to "
                                                       "RUNTIME_ROOT/libs, where the SDK looks")
    p_ffi_install.add_argument("runtime_root", metavar="RUNTIME_ROOT")
    p_ffi_install.set_defaults(handler=cmd_ffi_install)
    add_mcp_parser(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    options = build_parser().parse_args(argv)
    return options.handler(options)


if __name__ == "__main__":
    sys.exit(main())
