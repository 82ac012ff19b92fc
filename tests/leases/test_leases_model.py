"""Stateful property test: the lease manager (with real lease VMs) against a small Python model.

The model is the reference's rules written as plainly as possible: a table of active leases, an
SID index, tombstones kept for an hour, per-SID generations, one sequence for ids, expiry checked
at the start of every call.  Hypothesis drives create / replace / eval / status / close / list /
clock moves / sweeps and compares every answer.
"""
import pytest
from hypothesis import HealthCheck, event, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from _lease_support import FakeClock, WALL_BASE_MS
from luaskills_runtime import HostOptions, LuaEngine, LuaSkillsError
from luaskills_runtime.leases import PUBLIC, SYSTEM, RuntimeLeases

SIDS = st.sampled_from(["a", "b", "c", " a", "d", "e", "f", "g", "h", "i", "j\t"])
PROFILES = st.sampled_from([PUBLIC, SYSTEM])
TTLS = st.sampled_from([None, 0, 1, 30, 600, 5000])
STEPS = st.sampled_from([0.5, 1, 10, 29, 30, 31, 599, 600, 601, 3000, 3599, 3600, 3601])
TERMINAL_TEXT = {"lease_closed": "is closed", "lease_expired": "is expired", "lease_replaced": "was replaced"}


class ModelLease:
    def __init__(self, sid, lease_id, generation, profile, ttl):
        self.sid, self.lease_id, self.generation, self.profile, self.ttl = sid, lease_id, generation, profile, ttl
        self.expires_at = None

    def refresh(self, now):
        self.expires_at = None if self.ttl is None else now + self.ttl


class Model:
    def __init__(self, clock):
        self.clock = clock
        self.active = {}      # lease_id -> ModelLease
        self.by_sid = {}      # sid -> lease_id
        self.stones = {}      # lease_id -> (ModelLease, code, retired_at)
        self.generations = {}
        self.sequence = 0

    def wall(self, t):
        return WALL_BASE_MS + int(round(t * 1000))

    def retire(self, lease, code):
        del self.active[lease.lease_id]
        if self.by_sid.get(lease.sid) == lease.lease_id:
            del self.by_sid[lease.sid]
        self.stones[lease.lease_id] = (lease, code, self.clock.now)

    def prune(self):
        now = self.clock.now
        for lease in list(self.active.values()):
            if lease.expires_at is not None and now >= lease.expires_at:
                self.retire(lease, "lease_expired")
        for lease_id, (_, _, retired_at) in list(self.stones.items()):
            if now - retired_at >= 3600:
                del self.stones[lease_id]

    def create(self, sid, ttl, replace, profile):
        """-> ("raise", text) | ("error", code) | ("ok", ModelLease)"""
        sid = sid.strip()
        if ttl == 0 and profile == PUBLIC:
            return ("raise", "runtime lease ttl_sec must be greater than 0")
        if ttl in (None, 0):
            ttl = None if profile == SYSTEM else (600 if ttl is None else ttl)
        else:
            ttl = min(max(ttl, 1), 3600)
        self.prune()
        existing = self.by_sid.get(sid)
        if existing is not None:
            if not replace:
                return ("error", "lease_exists")
            self.retire(self.active[existing], "lease_replaced")
        if len(self.active) >= 8:
            return ("error", "lease_limit_exceeded")
        self.sequence += 1
        generation = self.generations.get(sid, 0) + 1
        self.generations[sid] = generation
        lease = ModelLease(sid, f"rt_{self.wall(self.clock.now)}_{self.sequence}", generation, profile, ttl)
        lease.refresh(self.clock.now)
        self.active[lease.lease_id] = lease
        self.by_sid[sid] = lease.lease_id
        return ("ok", lease)

    def find(self, lease_id, sid, generation, profile):
        """-> ("error", code, message-or-None) | ("ok", ModelLease)"""
        self.prune()
        record = self.active.get(lease_id)
        code = None
        if record is None:
            if lease_id not in self.stones:
                return ("error", "lease_not_found", f"runtime session lease `{lease_id}` was not found")
            record, code, _ = self.stones[lease_id]
        if sid is not None and sid != record.sid:
            return ("error", "lease_sid_mismatch", None)
        if generation is not None and generation != record.generation:
            return ("error", "lease_generation_mismatch", None)
        if record.profile != profile:
            return ("error", "lease_profile_mismatch", None)
        if code is not None:
            return ("error", code, f"runtime session lease `{lease_id}` {TERMINAL_TEXT[code]} "
                                   f"(sid `{record.sid}`, generation {record.generation})")
        return ("ok", record)

    def listing(self, sid, profile):
        self.prune()
        rows = [lease for lease in self.active.values()
                if lease.profile == profile and (sid is None or lease.sid == sid)]
        rows.sort(key=lambda lease: (lease.sid, lease.generation, lease.lease_id))
        return [lease.lease_id for lease in rows]


class LeaseMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        import tempfile
        self.tmp = tempfile.TemporaryDirectory()
        self.engine = LuaEngine(HostOptions(system_lua_lib_dir=self.tmp.name))
        self.clock = FakeClock()
        self.real = RuntimeLeases(self.engine._state, clock=self.clock.monotonic,
                                  wall_ms=self.clock.wall_ms, sweeper=False)
        self.model = Model(self.clock)
        self.known_ids = ["rt_0_0"]

    def teardown(self):
        self.real.shutdown()
        self.engine.close()
        self.tmp.cleanup()

    # ---- helpers ----------------------------------------------------------------------------
    def pick_identity(self, data, record):
        """Echoed sid / generation: absent, right, or wrong."""
        choices = st.sampled_from(["none", "none", "right", "right", "wrong"])
        sid_choice = data.draw(choices, label="sid echo")
        gen_choice = data.draw(choices, label="generation echo")
        sid = {"none": None, "right": record.sid if record else "a", "wrong": "zz"}[sid_choice]
        gen = {"none": None, "right": record.generation if record else 1, "wrong": 999}[gen_choice]
        return sid, gen

    def pick_target(self, data):
        """(lease_id, surface): mostly a live lease on its own surface, sometimes anything."""
        live = sorted(self.model.active)
        if live and data.draw(st.integers(0, 3), label="aim") > 0:
            lease_id = data.draw(st.sampled_from(live), label="live lease_id")
            own = self.model.active[lease_id].profile
            other = SYSTEM if own == PUBLIC else PUBLIC
            profile = data.draw(st.sampled_from([own, own, own, other]), label="surface")
        else:
            lease_id = data.draw(st.sampled_from(self.known_ids), label="any lease_id")
            profile = data.draw(PROFILES, label="surface")
        return lease_id, profile

    def record_for(self, lease_id):
        if lease_id in self.model.active:
            return self.model.active[lease_id]
        if lease_id in self.model.stones:
            return self.model.stones[lease_id][0]
        return None

    def check_error(self, payload, expected):
        _, code, message = expected
        assert payload["ok"] is False and payload["error_code"] == code, (payload, expected)
        if message is not None:
            assert payload["message"] == message

    # ---- rules ------------------------------------------------------------------------------
    @rule(sid=SIDS, ttl=TTLS, replace=st.booleans(), profile=PROFILES)
    def create(self, sid, ttl, replace, profile):
        fields = {"sid": sid, "replace": replace}
        if ttl is not None:
            fields["ttl_sec"] = ttl
        expected = self.model.create(sid, ttl, replace, profile)
        if expected[0] == "raise":
            with pytest.raises(LuaSkillsError) as info:
                self.real.create(fields, profile, from_json=False)
            assert str(info.value) == expected[1]
            return
        payload = self.real.create(fields, profile, from_json=False)
        if expected[0] == "error":
            assert payload["ok"] is False and payload["error_code"] == expected[1], payload
            return
        lease = expected[1]
        assert payload["ok"] is True, payload
        assert (payload["lease_id"], payload["sid"], payload["generation"], payload["profile"],
                payload["ttl_sec"]) == (lease.lease_id, lease.sid, lease.generation, lease.profile, lease.ttl)
        expected_expiry = None if lease.ttl is None else self.model.wall(self.clock.now) + lease.ttl * 1000
        assert payload["expires_at_unix_ms"] == expected_expiry
        self.known_ids.append(lease.lease_id)

    @rule(data=st.data(), fail=st.booleans())
    def evaluate(self, data, fail):
        lease_id, profile = self.pick_target(data)
        sid, gen = self.pick_identity(data, self.record_for(lease_id))
        code = "error('nope')" if fail else "hits = (hits or 0) + 1 return hits"
        request = {"lease_id": lease_id, "code": code}
        if sid is not None:
            request["sid"] = sid
        if gen is not None:
            request["generation"] = gen
        expected = self.model.find(lease_id, sid, gen, profile)
        payload = self.real.eval(request, profile, from_json=False)
        event(f"eval -> {expected[0] if expected[0] == 'ok' else expected[1]}")
        if expected[0] == "error":
            self.check_error(payload, expected)
            return
        lease = expected[1]
        lease.refresh(self.clock.now)
        if fail:
            assert payload == {"ok": False, "error_code": "eval_failed",
                               "message": "Runtime session eval error: runtime error: runtime_lease:3: nope"}
        else:
            lease.hits = getattr(lease, "hits", 0) + 1
            assert payload["ok"] is True and payload["result"] == lease.hits
            assert payload["expires_at_unix_ms"] == (
                None if lease.ttl is None else self.model.wall(self.clock.now) + lease.ttl * 1000)

    @rule(data=st.data())
    def status(self, data):
        lease_id, profile = self.pick_target(data)
        sid, gen = self.pick_identity(data, self.record_for(lease_id))
        expected = self.model.find(lease_id, sid, gen, profile)
        payload = self.real.status({"lease_id": lease_id, "sid": sid, "generation": gen}, profile,
                                   from_json=False)
        if expected[0] == "error":
            self.check_error(payload, expected)
        else:
            assert payload["ok"] is True and payload["closed"] is False and payload["expired"] is False
            assert payload["generation"] == expected[1].generation

    @rule(data=st.data())
    def close(self, data):
        lease_id, profile = self.pick_target(data)
        sid, gen = self.pick_identity(data, self.record_for(lease_id))
        expected = self.model.find(lease_id, sid, gen, profile)
        payload = self.real.close({"lease_id": lease_id, "sid": sid, "generation": gen}, profile,
                                  from_json=False)
        if expected[0] == "error":
            self.check_error(payload, expected)
        else:
            assert payload["ok"] is True and payload["closed"] is True
            self.model.retire(expected[1], "lease_closed")

    @rule(sid=st.one_of(st.none(), SIDS), profile=PROFILES)
    def listing(self, sid, profile):
        expected = self.model.listing(sid.strip() if sid else None, profile)
        payload = self.real.list({"sid": sid}, profile, from_json=False)
        assert [row["lease_id"] for row in payload["leases"]] == expected

    @rule(seconds=STEPS)
    def advance(self, seconds):
        self.clock.advance(seconds)

    @rule()
    def sweep(self):
        self.real.manager.sweep()
        self.model.prune()

    @invariant()
    def same_number_of_live_vms(self):
        # only meaningful right after a prune; compare after pruning both sides
        self.model.prune()
        self.real.manager.sweep()
        assert self.real.manager.active_count() == len(self.model.active)
        live = {lease_id for lease_id, lease in self.real.manager._leases.items() if lease.lvm is not None}
        assert live == set(self.model.active)


LeaseMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
TestLeaseModel = LeaseMachine.TestCase
