"""Policy and output options as hosts use them (nothing here can crash the host, so these run
in-process; the adversarial cases are in test_adversarial.py)."""
import contextlib
import io
import logging

import pytest

from luaskills_runtime import HostOptions, LuaEngine, LuaSkillsError
from luaskills_runtime.options import UNTRUSTED_MEMORY_CAP


def test_unknown_policy_is_refused():
    with pytest.raises(ValueError, match="policy must be one of default, trusted, untrusted"):
        HostOptions(policy="paranoid")


def test_lease_policy_overrides_the_host_policy_and_is_reported():
    with LuaEngine(HostOptions(policy="untrusted")) as engine:
        default_lease = engine.create_runtime_lease(sid="a")
        trusted_lease = engine.create_runtime_lease(sid="b", policy="trusted")
        assert default_lease["policy"] == "untrusted" and trusted_lease["policy"] == "trusted"
        probe = {"code": "return {type(require), type(package.loadlib), type(debug.getlocal)}"}
        assert engine.eval_runtime_lease(lease_id=trusted_lease["lease_id"], **probe)["result"] \
            == ["function", "function", "function"]
        assert engine.eval_runtime_lease(lease_id=default_lease["lease_id"], **probe)["result"] \
            == ["function", "nil", "nil"]
        status = engine.runtime_lease_status(lease_id=trusted_lease["lease_id"])
        assert status["policy"] == "trusted"
        with pytest.raises(LuaSkillsError, match="runtime lease policy must be one of"):
            engine.create_runtime_lease(sid="c", policy="nope")


def test_untrusted_memory_cap_by_default():
    with LuaEngine(HostOptions(policy="untrusted")) as engine:
        lease = engine.create_runtime_lease(sid="a")
        answer = engine.eval_runtime_lease(
            lease_id=lease["lease_id"], code="local s = string.rep('x', 300 * 1024 * 1024) return #s")
        assert answer["ok"] is False
        assert f"memory limit of {UNTRUSTED_MEMORY_CAP} bytes exceeded" in answer["message"]
        assert engine.eval_runtime_lease(lease_id=lease["lease_id"], code="return 1")["result"] == 1


def test_untrusted_reaches_the_lease_cwd_and_the_host_fs_roots(tmp_path):
    cwd, extra, outside = tmp_path / "cwd", tmp_path / "extra", tmp_path / "outside"
    for folder in (cwd, extra, outside):
        folder.mkdir()
        (folder / "f.txt").write_text(folder.name)
    (tmp_path / "tmp").mkdir()   # the engine temp dir is a root too: keep it apart
    options = HostOptions(policy="untrusted", fs_roots=(str(extra),), temp_dir=str(tmp_path / "tmp"))
    with LuaEngine(options) as engine:
        lease = engine.create_runtime_lease(sid="a", cwd=str(cwd))
        code = ("return {vulcan.fs.read('f.txt'), vulcan.fs.read(args.extra), "
                "select(2, pcall(vulcan.fs.read, args.outside))}")
        answer = engine.eval_runtime_lease(
            lease_id=lease["lease_id"], code=code,
            args={"extra": str(extra / "f.txt"), "outside": str(outside / "f.txt")})
        assert answer["result"][:2] == ["cwd", "extra"]
        assert "(outside the policy's fs_roots) is not allowed by the `untrusted` policy" \
            in answer["result"][2]


def test_untrusted_runlua_file_folder_is_a_root(tmp_path):
    (tmp_path / "data.txt").write_text("beside")
    script = tmp_path / "main.lua"
    script.write_text(f"return vulcan.fs.read('{tmp_path}/data.txt')")
    (tmp_path / "tmp").mkdir()   # the engine temp dir is a root too: keep it apart
    with LuaEngine(HostOptions(policy="untrusted", temp_dir=str(tmp_path / "tmp"))) as engine:
        report = engine.execute_runlua_request_inline({"file": str(script)})
        assert "beside" in report
        report = engine.execute_runlua_request_inline(
            {"code": f"return vulcan.fs.read('{tmp_path}/data.txt')"})
        assert "not allowed by the `untrusted` policy" in report   # no file: no such root


OUTPUT_CODE = "print('p') io.write('w\\n') io.stderr:write('e\\n')"


def test_default_output_follows_redirection():
    out, err = io.StringIO(), io.StringIO()
    with LuaEngine() as engine, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        engine.run_lua(OUTPUT_CODE)
    assert out.getvalue() == "p\nw\n" and err.getvalue() == "e\n"


def test_output_to_a_logger(caplog):
    logger = logging.getLogger("lua-output-test")
    with caplog.at_level(logging.INFO, logger="lua-output-test"):
        with LuaEngine(HostOptions(output=logger)) as engine:
            engine.run_lua(OUTPUT_CODE)
    assert [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "lua-output-test"] \
        == [(logging.INFO, "p"), (logging.INFO, "w"), (logging.WARNING, "e")]


def test_output_to_a_file_like_object():
    sink = io.StringIO()
    with LuaEngine(HostOptions(output=sink)) as engine:
        lease = engine.create_runtime_lease(sid="a")
        engine.eval_runtime_lease(lease_id=lease["lease_id"], code=OUTPUT_CODE)
    assert sink.getvalue() == "p\nw\ne\n"


def test_io_output_to_a_file_still_writes_the_file(tmp_path):
    target = tmp_path / "out.txt"
    with LuaEngine(HostOptions(enable_managed_io_compat=False, output=lambda s, t: None)) as e:
        lease = e.create_runtime_lease(sid="a")
        answer = e.eval_runtime_lease(
            lease_id=lease["lease_id"],
            code=f"io.output('{target}') io.write('to file') io.close() io.output(io.stdout) "
                 "return io.type(io.stdout)")
    assert answer["result"] == "file" and target.read_text() == "to file"


def test_a_lone_string_is_one_root_or_name():
    options = HostOptions(fs_roots="/srv/data", env_allow="HOME")
    assert options.fs_roots == ("/srv/data",) and options.env_allow == ("HOME",)
