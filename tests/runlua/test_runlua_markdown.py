"""runlua Markdown reports, byte for byte (SPEC 8 and the reference's renderers)."""
import json
import math

import pytest
from hypothesis import given, strategies as st

from luaskills_runtime import HostOptions, LuaEngine
from luaskills_runtime.runlua.markdown import format_json_float, pretty_json


@pytest.fixture(scope="module")
def engine():
    with LuaEngine(HostOptions(runlua_pool=(1, 2, 60))) as eng:
        yield eng


def run(engine, **request):
    return engine.execute_runlua_request_inline(request)




def test_success_without_prints_exact_bytes(engine):
    assert run(engine, code="return 42") == (
        "# Runtime Execution Result\n\n## Task\nExecute Lua runtime code\n\n## Status\nSUCCESS\n\n"
        "## Returned Values\n1. \n```json\n42\n```")


def test_success_with_prints_exact_bytes(engine):
    report = run(engine, task="  demo task \n", code='print("a", 1, true, nil) print() return "x"')
    assert report == (
        "# Runtime Execution Result\n\n## Task\ndemo task\n\n## Status\nSUCCESS\n\n"
        "## Printed Output\n```text\na\t1\ttrue\tnil\n\n```\n\n"
        "## Returned Values\n1. \n```text\nx\n```")


def test_several_values_blank_line_between(engine):
    report = run(engine, code='return 1, "two", {3, 4}, {a = {b = true}}, false')
    assert report == ("# Runtime Execution Result\n\n## Task\nExecute Lua runtime code\n"
                      "\n## Status\nSUCCESS\n\n## Returned Values\n1. \n```json\n"
                      "1\n```\n\n2. \n```text\ntwo\n```\n\n3. \n```json\n"
                      "[\n  3,\n  4\n]\n```\n\n4. \n```json\n{\n"'  "a": {\n'
                      '    "b": true\n'"  }\n}\n```\n\n5. \n```json\nfalse\n```")


def test_strings_are_text_blocks_even_when_json_like(engine):
    report = run(engine, code='return "[1, 2]", "line1\\nline2", ""')
    assert report == ("# Runtime Execution Result\n\n## Task\nExecute Lua runtime code\n"
                      "\n## Status\nSUCCESS\n\n## Returned Values\n1. \n```text\n"
                      "[1, 2]\n```\n\n2. \n```text\nline1\nline2\n```\n\n"
                      "3. \n```text\n\n```")


@pytest.mark.parametrize("code", ["return", "local x = 1", "return nil"])
def test_no_values_or_nil_render_null(engine, code):
    assert run(engine, code=code) == ("# Runtime Execution Result\n\n## Task\n"
                                      "Execute Lua runtime code\n\n## Status\nSUCCESS\n"
                                      "\n## Returned Values\n1. \n```json\nnull\n```")


def test_nil_among_values_keeps_positions(engine):
    report = run(engine, code="return nil, 2, nil")
    assert report == ("# Runtime Execution Result\n\n## Task\nExecute Lua runtime code\n"
                      "\n## Status\nSUCCESS\n\n## Returned Values\n1. \n```json\n"
                      "null\n```\n\n2. \n```json\n2\n```\n\n3. \n```json\n"
                      "null\n```")


def test_numbers_follow_the_json_rules(engine):
    report = run(engine, code="return 3.0, 1.5, 1e20, 0/0, 1/0, -0.5e-7, 2^53")
    assert report == ("# Runtime Execution Result\n\n## Task\nExecute Lua runtime code\n"
                      "\n## Status\nSUCCESS\n\n## Returned Values\n1. \n```json\n"
                      "3\n```\n\n2. \n```json\n1.5\n```\n\n3. \n```json\n"
                      "1e20\n```\n\n4. \n```json\nnull\n```\n\n5. \n"
                      "```json\nnull\n```\n\n6. \n```json\n-5e-8\n```\n\n"
                      "7. \n```json\n9007199254740992\n```")


def test_empty_table_and_object_keys(engine):
    report = run(engine, code='return {}, {b = 1, a = 2, [3] = "x"}')
    assert report == ("# Runtime Execution Result\n\n## Task\nExecute Lua runtime code\n"
                      "\n## Status\nSUCCESS\n\n## Returned Values\n1. \n```json\n"
                      "[]\n```\n\n2. \n```json\n{\n"'  "3": "x",\n''  "a": 2,\n'
                      '  "b": 1\n'"}\n```")


def test_unconvertible_values_render_as_text(engine):
    report = run(engine, code="return print, {f = print}, coroutine.create(function() end)")
    values = report.split("## Returned Values\n", 1)[1]
    blocks = values.split("\n\n")
    assert blocks[0].startswith("1. \n```text\nfunction: ")
    assert blocks[1].startswith("2. \n```text\ntable: 0x")
    assert blocks[2].startswith("3. \n```text\nthread: 0x")


def test_string_that_is_not_utf8_renders_empty_like_the_reference(engine):
    assert run(engine, code='return "\\255\\254"') == ("# Runtime Execution Result\n\n"
                                                       "## Task\nExecute Lua runtime code\n"
                                                       "\n## Status\nSUCCESS\n\n"
                                                       "## Returned Values\n1. \n```text\n"
                                                       "\n```")


def test_failure_without_prints_exact_bytes(engine):
    assert run(engine, task="t", code='error("boom")') == (
        "# Runtime Execution Error\n\n## Task\nt\n\n## Status\nFAILED\n\n## Error\n```text\n"
        'runtime error: [string "luaexec"]:4: boom\n```')


def test_failure_with_prints(engine):
    report = run(engine, code='print("before") print("a\\tb") error({}, 0)')
    error = report.split("```text\n", 1)[1].split("\n```", 1)[0]
    assert error.startswith("runtime error: table: 0x")
    assert report == ("# Runtime Execution Error\n\n## Task\nExecute Lua runtime code\n\n"
                      "## Status\nFAILED\n\n## Error\n```text\n" + error + "\n```\n\n"
                      "## Printed Output\n```text\nbefore\na\tb\n```")


def test_error_values_without_position(engine):
    assert run(engine, code='error("plain", 0)') == ("# Runtime Execution Error\n\n"
                                                     "## Task\nExecute Lua runtime code\n"
                                                     "\n## Status\nFAILED\n\n"
                                                     "## Error\n```text\n"
                                                     "runtime error: plain\n```")
    assert run(engine, code="error(nil)") == ("# Runtime Execution Error\n\n## Task\n"
                                              "Execute Lua runtime code\n\n## Status\n"
                                              "FAILED\n\n## Error\n```text\n"
                                              "runtime error: nil\n```")


def test_syntax_error(engine):
    assert run(engine, code="local = 1") == ("# Runtime Execution Error\n\n## Task\n"
                                             "Execute Lua runtime code\n\n## Status\n"
                                             "FAILED\n\n## Error\n```text\n"
                                             'syntax error: [string "luaexec"]:4: \'<name>\' expected near \'=\'\n'
                                             "```")


def test_print_uses_tostring_metamethods(engine):
    report = run(engine, code='print(setmetatable({}, {__tostring = function() return "T!" end}), '
                              '1.5, 10/2, -0.0) return true')
    assert report == ("# Runtime Execution Result\n\n## Task\nExecute Lua runtime code\n"
                      "\n## Status\nSUCCESS\n\n## Printed Output\n```text\n"
                      "T!\t1.5\t5\t-0\n```\n\n## Returned Values\n1. \n```json\n"
                      "true\n```")


def test_args_are_a_local(engine):
    report = engine.execute_runlua_request_json_inline(
        json.dumps({"code": "return args.name, #args.list, args.missing", "args": {
            "name": "n", "list": [1, 2, 3]}}))
    assert report == ("# Runtime Execution Result\n\n## Task\nExecute Lua runtime code\n"
                      "\n## Status\nSUCCESS\n\n## Returned Values\n1. \n```text\n"
                      "n\n```\n\n2. \n```json\n3\n```\n\n3. \n```json\n"
                      "null\n```")


@pytest.mark.parametrize("args", [None, 5, "text", True])
def test_non_container_args_become_an_empty_table(engine, args):
    report = run(engine, code="return type(args), next(args)", args=args)
    assert report == ("# Runtime Execution Result\n\n## Task\nExecute Lua runtime code\n"
                      "\n## Status\nSUCCESS\n\n## Returned Values\n1. \n```text\n"
                      "table\n```\n\n2. \n```json\nnull\n```")


# ---- serde_json compatibility of the JSON blocks ----------------------------------------------

@pytest.mark.parametrize("number, text", [
    (0.0, "0.0"), (-0.0, "-0.0"), (1.5, "1.5"), (0.1, "0.1"), (1e15, "1000000000000000.0"),
    (1e16, "1e16"), (1.2345e16, "1.2345e16"), (1e-5, "0.00001"), (1e-6, "1e-6"),
    (1.5e-7, "1.5e-7"), (123.456, "123.456"), (5e-324, "5e-324"),
    (1.7976931348623157e308, "1.7976931348623157e308"), (-2.5e300, "-2.5e300"),
])
def test_float_layout_matches_ryu(number, text):
    assert format_json_float(number) == text


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_float_text_round_trips(number):
    text = format_json_float(number)
    assert float(text) == number
    assert "+" not in text and "E" not in text


def json_containers(inner):
    # a named function: hypothesis reads a multi-line lambda's source unreliably and then warns
    # that it ignores its argument (an error under filterwarnings=error)
    return st.lists(inner) | st.dictionaries(st.text(), inner)


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(), json_containers,
                    max_leaves=20))
def test_pretty_json_matches_json_dumps_without_floats(value):
    assert pretty_json(value) == json.dumps(value, indent=2, ensure_ascii=False)


def test_pretty_json_escapes_like_serde():
    assert pretty_json("a\"b\\c\n\t\x01\x7f\u2028é") == '"a\\"b\\\\c\\n\\t\\u0001\x7f\u2028é"'
    assert pretty_json({"x": [1.0, math.pi]}) == '{\n  "x": [\n    1.0,\n    3.141592653589793\n  ]\n}'
