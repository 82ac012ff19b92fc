"""Runs one adversarial request in its own process (tests/safety/test_adversarial.py).

argv: surface (run_lua | runlua | lease), policy, Lua code, options JSON.  Lua output is sent to
an in-memory sink, so anything on this process's fd 1 besides the final JSON line was written
behind the host's back.  Prints one JSON line: the request's error text (None on success), its
result, whether a following request on the same engine succeeded, and what the sink received.
The engine is then closed (finalizers run, VMs are freed) before the process exits 0.
"""
import gc
import json
import sys

from luaskills_runtime import HostOptions, LuaEngine, LuaSkillsError


def run(engine, surface, code):
    """(error text or None, result) of one request."""
    if surface == "run_lua":
        try:
            return None, engine.run_lua(code)
        except LuaSkillsError as error:
            return str(error), None
    if surface == "runlua":
        report = engine.execute_runlua_request_inline({"code": code, "timeout_ms": 20000})
        if "## Status\nFAILED" in report:
            return report.split("```text\n", 1)[1].split("\n```", 1)[0], None
        if "```json\n" in report:   # the first returned value
            return None, json.loads(report.split("```json\n", 1)[1].split("\n```", 1)[0])
        return None, report
    lease = engine.create_runtime_lease({"sid": "adversary"})
    answer = engine.eval_runtime_lease({"lease_id": lease["lease_id"], "code": code,
                                        "timeout_ms": 20000})
    engine.close_runtime_lease({"lease_id": lease["lease_id"]})
    if not answer["ok"]:
        return answer["message"], None
    return None, answer.get("result")


def main():
    surface, policy, code, options_json = sys.argv[1:5]
    sink = []
    options = dict(json.loads(options_json), policy=policy,
                   output=lambda stream, text: sink.append([stream, text]))
    engine = LuaEngine(HostOptions(**options))
    error, result = run(engine, surface, code)
    next_error, next_result = run(engine, surface, "return 1 + 1")
    engine.close()
    gc.collect()
    try:
        json.dumps(result)
    except (TypeError, ValueError):
        result = repr(result)
    sys.stdout.write(json.dumps({"error": error, "result": result,
                                 "next_ok": next_error is None, "next_error": next_error,
                                 "sink": sink}) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
