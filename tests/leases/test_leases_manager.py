"""Lease manager semantics: ids, generations, replace, busy, limit, tombstones, TTL, list."""
import re
import threading
import time

import pytest

from _lease_support import (close, create, evaluate, KillRecorder, lease_vm, listing, status,
                            wait_until, WALL_BASE_MS)
from luaskills_runtime.leases import PUBLIC, SYSTEM

CREATE_FIELDS = {"ok", "sid", "lease_id", "generation", "profile", "lifetime", "cwd",
                 "workspace_root", "system_lua_lib", "ttl_sec", "expires_at_unix_ms", "policy"}
STATUS_FIELDS = CREATE_FIELDS | {"closed", "expired"}
EVAL_FIELDS = {"ok", "sid", "lease_id", "generation", "profile", "lifetime", "cwd",
               "system_lua_lib", "expires_at_unix_ms", "result", "policy"}
ERROR_FIELDS = {"ok", "error_code", "message"}


def error(payload):
    assert set(payload) == ERROR_FIELDS and payload["ok"] is False, payload
    return payload["error_code"], payload["message"]


# ---- create ------------------------------------------------------------------------------------

def test_create_payload(lease_env):
    leases, clock = lease_env
    payload = create(leases, sid="a", workspace_root="/ws")
    assert set(payload) == CREATE_FIELDS
    assert payload["ok"] is True and payload["sid"] == "a" and payload["generation"] == 1
    assert payload["profile"] == "public" and payload["lifetime"] == "finite"
    assert payload["cwd"] is None and payload["system_lua_lib"] is None
    assert payload["workspace_root"] == "/ws" and payload["ttl_sec"] == 600
    assert payload["lease_id"] == f"rt_{clock.wall_ms()}_1"
    assert payload["expires_at_unix_ms"] == clock.wall_ms() + 600_000


def test_lease_ids_use_wall_ms_and_a_sequence(lease_env):
    leases, clock = lease_env
    first = create(leases, sid="a")["lease_id"]
    clock.advance(1.5)
    second = create(leases, sid="b")["lease_id"]
    assert first == f"rt_{WALL_BASE_MS + 5_000_000}_1"
    assert second == f"rt_{WALL_BASE_MS + 5_001_500}_2"
    assert create(leases, sid="a")["ok"] is False  # refused creates use no sequence number
    assert create(leases, sid="c")["lease_id"].endswith("_3")


def test_generations_count_per_sid(lease_env):
    leases, _ = lease_env
    a1 = create(leases, sid="a")
    b1 = create(leases, sid="b")
    a2 = create(leases, sid="a", replace=True)
    close(leases, lease_id=a2["lease_id"])
    a3 = create(leases, sid="a")
    assert [a1["generation"], b1["generation"], a2["generation"], a3["generation"]] == [1, 1, 2, 3]
    s1 = create(leases, SYSTEM, sid="a", replace=True)  # one SID namespace across profiles
    assert s1["generation"] == 4


def test_lease_exists_without_replace(lease_env):
    leases, _ = lease_env
    first = create(leases, sid="a")
    code, message = error(create(leases, sid="a"))
    assert code == "lease_exists"
    assert message == f"runtime session SID `a` already has lease `{first['lease_id']}`"
    assert status(leases, lease_id=first["lease_id"])["ok"] is True


def test_replace_retires_the_old_lease_and_kills_its_resources(lease_env):
    leases, _ = lease_env
    old = create(leases, sid="a")
    recorder = KillRecorder()
    lease_vm(leases, old["lease_id"]).track(recorder)
    new = create(leases, sid="a", replace=True)
    assert new["ok"] and new["generation"] == 2 and new["lease_id"] != old["lease_id"]
    assert recorder.killed.is_set()
    expected = (f"runtime session lease `{old['lease_id']}` was replaced (sid `a`, generation 1)")
    for call in (status, close):
        assert error(call(leases, lease_id=old["lease_id"])) == ("lease_replaced", expected)
    assert error(evaluate(leases, lease_id=old["lease_id"], code="return 1")) == ("lease_replaced", expected)
    assert [entry["lease_id"] for entry in listing(leases)["leases"]] == [new["lease_id"]]


def test_replace_without_existing_lease_just_creates(lease_env):
    leases, _ = lease_env
    assert create(leases, sid="fresh", replace=True)["generation"] == 1


# ---- busy --------------------------------------------------------------------------------------

class RunningEval:
    """An eval spinning in a thread until cancelled (or its timeout)."""

    def __init__(self, leases, lease_id, code="while true do end", timeout_ms=30_000, args=None):
        self.leases, self.lease_id = leases, lease_id
        self.result = None
        self.thread = threading.Thread(target=self._run, args=(code, timeout_ms, args or {}))
        self.thread.start()
        assert wait_until(lambda: leases.manager._leases[lease_id].busy.locked())

    def _run(self, code, timeout_ms, args):
        self.result = evaluate(self.leases, lease_id=self.lease_id, code=code, timeout_ms=timeout_ms,
                               args=args)

    def stop(self):
        self.leases.cancel({"lease_id": self.lease_id}, PUBLIC, from_json=False)
        self.thread.join(10)
        assert not self.thread.is_alive()
        return self.result


def test_busy_lease_answers_without_blocking(lease_env):
    leases, _ = lease_env
    lease = create(leases, sid="a")
    lease_id = lease["lease_id"]
    running = RunningEval(leases, lease_id)
    try:
        started = time.monotonic()
        busy = ("lease_busy", f"runtime session lease `{lease_id}` is busy")
        assert error(status(leases, lease_id=lease_id)) == busy
        assert error(close(leases, lease_id=lease_id)) == busy
        assert error(evaluate(leases, lease_id=lease_id, code="return 1")) == busy
        assert error(create(leases, sid="a")) == (
            "lease_exists", f"runtime session SID `a` already has lease `{lease_id}`")
        assert error(create(leases, sid="a", replace=True)) == (
            "lease_busy", f"runtime session SID `a` cannot replace busy lease `{lease_id}`")
        listed = listing(leases)["leases"]
        assert [entry["lease_id"] for entry in listed] == [lease_id]  # still listed while busy
        other = create(leases, sid="b")  # the manager itself is not blocked by the eval
        assert evaluate(leases, lease_id=other["lease_id"], code="return 7")["result"] == 7
        assert time.monotonic() - started < 5
    finally:
        result = running.stop()
    assert error(result)[0] == "eval_failed"
    assert status(leases, lease_id=lease_id)["ok"] is True
    assert create(leases, sid="a", replace=True)["generation"] == 2


def test_busy_lease_does_not_expire_mid_eval(lease_env, tmp_path):
    leases, clock = lease_env
    lease = create(leases, sid="a", ttl_sec=10)
    flag = tmp_path / "finish"
    running = RunningEval(leases, lease["lease_id"], code=(
        "while not vulcan.fs.exists(args.flag) do end return 'done'"), args={"flag": str(flag)})
    clock.advance(60)
    leases.manager.sweep()
    assert [e["lease_id"] for e in listing(leases)["leases"]] == [lease["lease_id"]]
    flag.write_text("")
    running.thread.join(10)
    assert running.result["result"] == "done"
    # a successful eval refreshes the TTL from its end
    assert running.result["expires_at_unix_ms"] == clock.wall_ms() + 10_000
    clock.advance(9)
    leases.manager.sweep()
    assert status(leases, lease_id=lease["lease_id"])["ok"] is True


def test_failed_eval_longer_than_ttl_leaves_the_lease_expired(lease_env):
    leases, clock = lease_env
    lease = create(leases, sid="a", ttl_sec=10)
    running = RunningEval(leases, lease["lease_id"])
    clock.advance(60)
    running.stop()
    # as in the reference, only the start of a failed eval counted as activity
    assert error(status(leases, lease_id=lease["lease_id"]))[0] == "lease_expired"


# ---- limit -------------------------------------------------------------------------------------

def test_at_most_eight_active_leases_across_profiles(lease_env):
    leases, _ = lease_env
    ids = [create(leases, sid=f"p{i}")["lease_id"] for i in range(5)]
    ids += [create(leases, SYSTEM, sid=f"s{i}")["lease_id"] for i in range(3)]
    assert error(create(leases, sid="ninth")) == ("lease_limit_exceeded", "runtime session lease limit exceeded")
    assert error(create(leases, SYSTEM, sid="ninth")) == ("lease_limit_exceeded", "runtime session lease limit exceeded")
    # replacing at the limit retires first, so it fits
    assert create(leases, sid="p0", replace=True)["generation"] == 2
    close(leases, lease_id=ids[1])
    assert create(leases, sid="ninth")["ok"] is True
    assert leases.manager.active_count() == 8


# ---- tombstones, not found, identity, profile ---------------------------------------------------

def test_closed_and_unknown_leases(lease_env):
    leases, clock = lease_env
    lease = create(leases, sid="a")
    lease_id = lease["lease_id"]
    closed = close(leases, lease_id=lease_id)
    assert set(closed) == STATUS_FIELDS
    assert closed["ok"] is True and closed["closed"] is True and closed["expired"] is False
    stone = ("lease_closed", f"runtime session lease `{lease_id}` is closed (sid `a`, generation 1)")
    assert error(close(leases, lease_id=lease_id)) == stone
    assert error(status(leases, lease_id=lease_id)) == stone
    assert error(evaluate(leases, lease_id=lease_id, code="return 1")) == stone
    assert error(status(leases, lease_id="rt_1_1")) == (
        "lease_not_found", "runtime session lease `rt_1_1` was not found")
    clock.advance(3599)
    assert error(status(leases, lease_id=lease_id)) == stone
    clock.advance(1)
    assert error(status(leases, lease_id=lease_id)) == (
        "lease_not_found", f"runtime session lease `{lease_id}` was not found")


def test_identity_checks_on_active_leases_and_tombstones(lease_env):
    leases, _ = lease_env
    lease = create(leases, sid="a")
    lease_id = lease["lease_id"]
    sid_mismatch = ("lease_sid_mismatch", f"runtime session lease `{lease_id}` belongs to sid `a`, not `b`")
    gen_mismatch = ("lease_generation_mismatch",
                    f"runtime session lease `{lease_id}` generation mismatch: expected 2, actual 1")
    for call in (status, close):
        assert error(call(leases, lease_id=lease_id, sid="b")) == sid_mismatch
        assert error(call(leases, lease_id=lease_id, generation=2)) == gen_mismatch
        assert error(call(leases, lease_id=lease_id, sid="b", generation=2)) == sid_mismatch
    assert error(evaluate(leases, lease_id=lease_id, code="", sid="b")) == sid_mismatch
    assert error(evaluate(leases, lease_id=lease_id, code="", generation=2)) == gen_mismatch
    assert status(leases, lease_id=lease_id, sid=" a ", generation=1)["ok"] is True
    close(leases, lease_id=lease_id, sid="a", generation=1)
    # a tombstone checks identity before answering its terminal code
    assert error(status(leases, lease_id=lease_id, sid="b")) == sid_mismatch
    assert error(status(leases, lease_id=lease_id, generation=2)) == gen_mismatch


def test_profile_mismatch_on_the_wrong_surface(lease_env):
    leases, _ = lease_env
    public = create(leases, sid="p")["lease_id"]
    system = create(leases, SYSTEM, sid="s")["lease_id"]
    wrong_public = ("lease_profile_mismatch",
                    f"runtime session lease `{public}` belongs to profile `public`, not `system_lua_lib`")
    wrong_system = ("lease_profile_mismatch",
                    f"runtime session lease `{system}` belongs to profile `system_lua_lib`, not `public`")
    assert error(status(leases, SYSTEM, lease_id=public)) == wrong_public
    assert error(evaluate(leases, SYSTEM, lease_id=public, code="return 1")) == wrong_public
    assert error(close(leases, SYSTEM, lease_id=public)) == wrong_public
    assert error(leases.cancel({"lease_id": public}, SYSTEM, from_json=False)) == wrong_public
    assert error(status(leases, lease_id=system)) == wrong_system
    # identity is checked before the profile
    assert error(status(leases, lease_id=system, sid="zz"))[0] == "lease_sid_mismatch"
    assert [e["lease_id"] for e in listing(leases)["leases"]] == [public]
    assert [e["lease_id"] for e in listing(leases, SYSTEM)["leases"]] == [system]
    close(leases, SYSTEM, lease_id=system)
    assert error(status(leases, lease_id=system))[0] == "lease_profile_mismatch"  # tombstones too


# ---- TTL -------------------------------------------------------------------------------------

def test_expiry_and_refresh_on_eval(lease_env):
    leases, clock = lease_env
    lease = create(leases, sid="a", ttl_sec=100)
    lease_id = lease["lease_id"]
    clock.advance(99)
    result = evaluate(leases, lease_id=lease_id, code="return 1")
    assert set(result) == EVAL_FIELDS
    assert result["expires_at_unix_ms"] == clock.wall_ms() + 100_000
    assert listing(leases)["leases"][0]["expires_at_unix_ms"] == result["expires_at_unix_ms"]
    clock.advance(99)
    assert status(leases, lease_id=lease_id)["ok"] is True  # status does not refresh
    clock.advance(1)
    assert error(status(leases, lease_id=lease_id)) == (
        "lease_expired", f"runtime session lease `{lease_id}` is expired (sid `a`, generation 1)")
    assert listing(leases)["leases"] == []


def test_failed_eval_also_refreshes_like_the_reference(lease_env):
    leases, clock = lease_env
    lease_id = create(leases, sid="a", ttl_sec=100)["lease_id"]
    clock.advance(90)
    assert error(evaluate(leases, lease_id=lease_id, code="error('x')"))[0] == "eval_failed"
    clock.advance(90)
    assert status(leases, lease_id=lease_id)["ok"] is True


def test_sweep_frees_expired_vm_and_resources(lease_env):
    leases, clock = lease_env
    lease_id = create(leases, sid="a", ttl_sec=5)["lease_id"]
    recorder = KillRecorder()
    lease_vm(leases, lease_id).track(recorder)
    clock.advance(5)
    assert not recorder.killed.is_set()
    leases.manager.sweep()
    assert recorder.killed.is_set()
    assert leases.manager.active_count() == 0
    assert error(evaluate(leases, lease_id=lease_id, code="return 1"))[0] == "lease_expired"
    # an expired lease no longer blocks its SID, and no replace is needed
    assert create(leases, sid="a")["generation"] == 2


def test_system_leases_without_ttl_never_expire(lease_env):
    leases, clock = lease_env
    lease_id = create(leases, SYSTEM, sid="s")["lease_id"]
    clock.advance(10**7)
    leases.manager.sweep()
    assert status(leases, SYSTEM, lease_id=lease_id)["ok"] is True


def test_sweeper_thread_frees_expired_leases_without_a_call(tmp_path):
    from luaskills_runtime import HostOptions, LuaEngine
    with LuaEngine(HostOptions(system_lua_lib_dir=str(tmp_path / "s"))) as engine:
        lease_id = engine.create_runtime_lease(sid="a", ttl_sec=1)["lease_id"]
        recorder = KillRecorder()
        engine._runtime_leases.manager._leases[lease_id].lvm.vm.track(recorder)
        assert recorder.killed.wait(5)
        assert engine._runtime_leases.manager.active_count() == 0
        assert any(t.name == "luaskills-lease-sweeper" for t in threading.enumerate())
    assert wait_until(lambda: not any(t.name == "luaskills-lease-sweeper" for t in threading.enumerate()), 5)


# ---- status and list --------------------------------------------------------------------------

def test_status_payload(lease_env):
    leases, clock = lease_env
    lease = create(leases, sid="a", ttl_sec=30, workspace_root="/w")
    payload = status(leases, lease_id=lease["lease_id"])
    assert set(payload) == STATUS_FIELDS
    assert payload == {**lease, "closed": False, "expired": False}


def test_list_is_sorted_and_filtered(lease_env):
    leases, clock = lease_env
    b = create(leases, sid="b")
    a1 = create(leases, sid="a")
    clock.advance(1)
    a2 = create(leases, sid="a", replace=True)
    c = create(leases, sid="c")
    listed = listing(leases)
    assert set(listed) == {"ok", "leases"} and listed["ok"] is True
    assert [(e["sid"], e["generation"]) for e in listed["leases"]] == [("a", 2), ("b", 1), ("c", 1)]
    assert all(set(e) == STATUS_FIELDS and e["ok"] is True for e in listed["leases"])
    assert [e["lease_id"] for e in listing(leases, sid="a")["leases"]] == [a2["lease_id"]]
    assert listing(leases, sid="zzz")["leases"] == []
    assert a1["lease_id"] not in {e["lease_id"] for e in listed["leases"]}
    assert {b["lease_id"], c["lease_id"]} <= {e["lease_id"] for e in listed["leases"]}


def test_list_orders_by_lease_id_within_equal_sid_and_generation(lease_env):
    from luaskills_runtime.leases.manager import _list_order
    rows = [{"sid": "a", "generation": 1, "lease_id": "rt_2_10"},
            {"sid": "a", "generation": 1, "lease_id": "rt_2_9"},
            {"sid": "A", "generation": 3, "lease_id": "rt_1_1"}]
    assert [r["lease_id"] for r in sorted(rows, key=_list_order)] == ["rt_1_1", "rt_2_10", "rt_2_9"]


# ---- eval payloads ----------------------------------------------------------------------------

def test_eval_success_payload(lease_env):
    leases, clock = lease_env
    lease = create(leases, sid="a")
    payload = evaluate(leases, lease_id=lease["lease_id"], code="return args.n * 2", args={"n": 21})
    assert set(payload) == EVAL_FIELDS
    assert payload["result"] == 42 and payload["ok"] is True
    for key in ("sid", "lease_id", "generation", "profile", "lifetime", "cwd", "system_lua_lib"):
        assert payload[key] == lease[key]


@pytest.mark.parametrize("code, message", [
    ("error('boom')", "Runtime session eval error: runtime error: runtime_lease:3: boom"),
    ("error({})", "Runtime session eval error: runtime error: table: 0x"),
    ("return (", "Runtime session eval error: syntax error: runtime_lease:4: unexpected symbol near 'end'"),
    ("return function() end", "Cannot convert Lua function to JSON"),
    ("local t = {} t.self = t return t", "Cannot convert cyclic Lua table to JSON"),
])
def test_eval_failed(lease_env, code, message, caplog):
    leases, _ = lease_env
    lease_id = create(leases, sid="a")["lease_id"]
    with caplog.at_level("ERROR", logger="luaskills_runtime"):
        code_, text = error(evaluate(leases, lease_id=lease_id, code=code))
    assert code_ == "eval_failed"
    assert text.startswith(message) if message.endswith("0x") else text == message
    if message.startswith("Runtime session eval error"):
        assert f"[LuaSkill:error] {text}" in caplog.messages
    # a failed eval leaves the lease usable
    assert evaluate(leases, lease_id=lease_id, code="return 5")["result"] == 5


def test_eval_returns_only_the_first_value_and_null_for_none(lease_env):
    leases, _ = lease_env
    lease_id = create(leases, sid="a")["lease_id"]
    assert evaluate(leases, lease_id=lease_id, code="return 1, 2")["result"] == 1
    assert evaluate(leases, lease_id=lease_id, code="x = 1")["result"] is None
    assert evaluate(leases, lease_id=lease_id, code="return {}")["result"] == []
