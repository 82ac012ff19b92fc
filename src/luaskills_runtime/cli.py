"""The `luaskills-runtime` command."""
from __future__ import annotations

import argparse
import json
import sys
from typing import List, Optional

from luaskills_runtime.engine import LuaEngine
from luaskills_runtime.errors import LuaSkillsError


def _parse_json_arg(text: str, what: str):
    try:
        return json.loads(text)
    except ValueError as error:
        raise SystemExit(f"luaskills-runtime: {what} is not valid JSON: {error}")


def cmd_eval(options) -> int:
    """Evaluate a snippet with run_lua and print its JSON result."""
    args = _parse_json_arg(options.args, "--args") if options.args else None
    with LuaEngine() as engine:
        try:
            result = engine.run_lua(options.code, args)
        except LuaSkillsError as error:
            print(str(error), file=sys.stderr)
            return 1
    print(json.dumps(result, ensure_ascii=False, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="luaskills-runtime",
                                     description="Run LuaSkills Lua code on LuaJIT.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_eval = sub.add_parser("eval", help="evaluate a Lua snippet (run_lua) and print the JSON result")
    p_eval.add_argument("code", help="Lua code; `args` holds --args")
    p_eval.add_argument("--args", help="JSON value passed as `args`")
    p_eval.set_defaults(handler=cmd_eval)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    options = build_parser().parse_args(argv)
    return options.handler(options)


if __name__ == "__main__":
    sys.exit(main())
