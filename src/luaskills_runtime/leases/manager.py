"""Runtime leases (SPEC 9): persistent Lua VMs keyed by a stable SID.

LeaseManager holds the lease tables (active leases, SID index, tombstones, generations) under
one lock that is never held while Lua runs: an eval takes the lease's own busy lock (try-lock,
so a busy lease is reported, never waited for) and releases the manager lock before running.
Terminal leases leave a tombstone for an hour so stale ids get a precise answer.  One sweeper
thread per manager retires expired leases and frees their VMs (and the process sessions their
code opened) without waiting for the next call.

RuntimeLeases is the request layer the engine's methods call: it parses requests, builds lease
VMs and turns manager errors into `{"ok": false, "error_code", "message"}` payloads.
"""
from __future__ import annotations

import json
import os
import threading
import time
import weakref
from typing import Any, Callable, Dict, List, Optional

from luaskills_runtime._ref.rust import os_error_text
from luaskills_runtime.errors import LuaSkillsError
from luaskills_runtime.leases.requests import (
    RequestShapeError, decode_request, host_visible_path, normalize_optional_path,
    normalize_path_list, normalize_sid, parse_create, parse_eval, parse_lease, parse_list,
    resolve_ttl, shape_error,
)
from luaskills_runtime.leases.vm import (
    EvalFailure, LeasePaths, LeaseVM, default_system_lua_lib_dir,
)

PUBLIC = "public"
SYSTEM = "system_lua_lib"
MAX_ACTIVE_LEASES = 8
TOMBSTONE_TTL_SEC = 3_600
CLOSE_WAIT_SEC = 10.0  # how long engine.close() waits for a cancelled eval to hand its VM back
SWEEPER_MAX_WAIT_SEC = 60.0

LEASE_CLOSED, LEASE_EXPIRED, LEASE_REPLACED = "lease_closed", "lease_expired", "lease_replaced"


def unix_ms() -> int:
    return time.time_ns() // 1_000_000


class LeaseError(Exception):
    """A lease-level failure, answered as a payload."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    def payload(self) -> dict:
        return {"ok": False, "error_code": self.code, "message": self.message}


def _terminal_message(code: str, lease_id: str) -> str:
    if code == LEASE_CLOSED:
        return f"runtime session lease `{lease_id}` is closed"
    if code == LEASE_EXPIRED:
        return f"runtime session lease `{lease_id}` is expired"
    if code == LEASE_REPLACED:
        return f"runtime session lease `{lease_id}` was replaced"
    return f"runtime session lease `{lease_id}` is not active"


def _busy(lease_id: str) -> LeaseError:
    return LeaseError("lease_busy", f"runtime session lease `{lease_id}` is busy")


def lease_not_found(lease_id: str) -> LeaseError:
    """The error for an id no lease has (the MCP server answers foreign ids with it too)."""
    return LeaseError("lease_not_found", f"runtime session lease `{lease_id}` was not found")


def _check_identity(lease_id: str, sid: str, generation: int, expected_sid: Optional[str],
                    expected_generation: Optional[int]) -> None:
    if expected_sid is not None and sid != expected_sid:
        raise LeaseError("lease_sid_mismatch",
                         f"runtime session lease `{lease_id}` belongs to sid `{sid}`, not `{expected_sid}`")
    if expected_generation is not None and generation != expected_generation:
        raise LeaseError("lease_generation_mismatch",
                         f"runtime session lease `{lease_id}` generation mismatch: "
                         f"expected {expected_generation}, actual {generation}")


def _check_profile(lease_id: str, profile: str, expected: Optional[str]) -> None:
    if expected is not None and profile != expected:
        raise LeaseError("lease_profile_mismatch",
                         f"runtime session lease `{lease_id}` belongs to profile `{profile}`, not `{expected}`")


class Tombstone:
    __slots__ = ("sid", "lease_id", "generation", "profile", "code", "retired_at")

    def __init__(self, lease: "Lease", code: str, now: float):
        self.sid, self.lease_id = lease.sid, lease.lease_id
        self.generation, self.profile = lease.generation, lease.profile
        self.code, self.retired_at = code, now

    def error(self) -> LeaseError:
        return LeaseError(self.code, f"{_terminal_message(self.code, self.lease_id)} "
                                     f"(sid `{self.sid}`, generation {self.generation})")


class Lease:
    """One active lease.  `busy` is held for the whole of an eval (and while a management call
    inspects the lease); its VM is used only by the holder."""

    def __init__(self, sid: str, lease_id: str, generation: int, profile: str,
                 ttl_sec: Optional[int], paths: LeasePaths, lvm: Optional[LeaseVM]):
        self.sid, self.lease_id, self.generation, self.profile = sid, lease_id, generation, profile
        self.ttl_sec = ttl_sec
        self.paths = paths
        self.lvm = lvm
        self.busy = threading.Lock()
        self.expires_at: Optional[float] = None
        self.expires_at_unix_ms: Optional[int] = None
        self.terminal: Optional[str] = None  # set (under the manager lock) when retired
        self.closed = False
        # What list shows: expiry and expired flag as of creation or the end of the last eval
        # (the reference lists a snapshot taken then, not live values).
        self.snapshot = (None, False)
        self._identity: Optional[dict] = None

    def refresh(self, now: float, wall_ms: int) -> None:
        if self.ttl_sec is None:
            self.expires_at = self.expires_at_unix_ms = None
        else:
            self.expires_at = now + self.ttl_sec
            self.expires_at_unix_ms = wall_ms + self.ttl_sec * 1000

    def is_expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def inactive_error(self, now: float) -> Optional[LeaseError]:
        if self.terminal is not None:
            return LeaseError(self.terminal, f"{_terminal_message(self.terminal, self.lease_id)} "
                                             f"(sid `{self.sid}`, generation {self.generation})")
        if self.closed:
            return LeaseError(LEASE_CLOSED, f"runtime session lease `{self.lease_id}` is closed")
        if self.is_expired(now):
            return LeaseError(LEASE_EXPIRED, f"runtime session lease `{self.lease_id}` is expired")
        return None

    def identity_fields(self) -> dict:
        fields = self._identity
        if fields is None:  # fixed for the lease's life: built once
            fields = self._identity = {
                "sid": self.sid,
                "lease_id": self.lease_id,
                "generation": self.generation,
                "profile": self.profile,
                "lifetime": "finite" if self.ttl_sec is not None else "infinite",
                "cwd": host_visible_path(self.paths.cwd),
                "system_lua_lib": host_visible_path(self.paths.system_lua_lib_dir),
            }
        payload = fields.copy()
        payload["expires_at_unix_ms"] = self.expires_at_unix_ms
        return payload

    def take_snapshot(self, now: float) -> None:
        self.snapshot = (self.expires_at_unix_ms, self.is_expired(now))

    def snapshot_payload(self) -> dict:
        expires_at_unix_ms, expired = self.snapshot
        payload = self.identity_fields()
        payload.update(
            ok=self.terminal is None and not self.closed and not expired,
            workspace_root=host_visible_path(self.paths.workspace_root),
            ttl_sec=self.ttl_sec,
            expires_at_unix_ms=expires_at_unix_ms,
            closed=self.closed,
            expired=expired,
        )
        return payload

    def status_payload(self, now: float) -> dict:
        expired = self.is_expired(now)
        payload = self.identity_fields()
        payload.update(
            ok=self.terminal is None and not self.closed and not expired,
            workspace_root=host_visible_path(self.paths.workspace_root),
            ttl_sec=self.ttl_sec,
            closed=self.closed,
            expired=expired,
        )
        return payload


class _Tables:
    """Context manager of LeaseManager._tables (a class: cheaper than a generator on every
    call)."""

    __slots__ = ("manager", "retired")

    def __init__(self, manager: "LeaseManager"):
        self.manager = manager
        self.retired: List[Lease] = []

    def __enter__(self) -> List[Lease]:
        manager = self.manager
        manager._lock.acquire()
        try:
            if manager._closed:
                raise LuaSkillsError("LuaEngine is closed")
            manager._prune_locked(self.retired)
        except BaseException:
            manager._lock.release()
            self._free_retired()
            raise
        return self.retired

    def __exit__(self, *exc) -> bool:
        self.manager._lock.release()
        self._free_retired()
        return False

    def _free_retired(self) -> None:
        for lease in self.retired:
            LeaseManager._free(lease)


def _list_order(payload: dict):
    return (payload["sid"], payload["generation"], payload["lease_id"])


class LeaseManager:
    """The lease tables of one engine.  `clock` (monotonic seconds) and `wall_ms` (Unix ms) can be
    injected; with a fake clock call sweep() after moving it."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic,
                 wall_ms: Callable[[], int] = unix_ms, max_active: int = MAX_ACTIVE_LEASES,
                 tombstone_ttl: float = TOMBSTONE_TTL_SEC, sweeper: bool = True):
        self.clock = clock
        self.wall_ms = wall_ms
        self.max_active = max_active
        self.tombstone_ttl = tombstone_ttl
        self._lock = threading.Lock()
        self._leases: Dict[str, Lease] = {}
        self._sid_index: Dict[str, str] = {}
        self._tombstones: Dict[str, Tombstone] = {}
        self._generations: Dict[str, int] = {}
        self._sequence = 0
        self._closed = False
        self._use_sweeper = sweeper
        self._sweeper: Optional[threading.Thread] = None
        # Re-entrant: the cyclic GC may collect a forgotten engine inside the sweeper thread
        # while it holds this lock, and engine.__del__ -> shutdown() takes it again.
        self._wake = threading.Condition(threading.RLock())
        self._wake_pending = False
        # clock time the sleeping sweeper wakes at; +inf while it is awake (sweeping), so a poke
        # then always registers and the next wait returns at once
        self._planned_wake = float("inf")

    # ---- lock + deferred VM teardown -------------------------------------------------------
    def _tables(self) -> "_Tables":
        """`with self._tables() as retired:` holds the manager lock with expired leases pruned;
        leases retired meanwhile have their VMs closed after the lock is released (killing
        sessions can take a moment)."""
        return _Tables(self)

    @staticmethod
    def _free(lease: Lease) -> None:
        """Close a retired lease's VM; the caller holds its busy lock, released here."""
        try:
            if lease.lvm is not None:
                lease.lvm.close()
                lease.lvm = None
        finally:
            lease.busy.release()

    def _prune_locked(self, retired: List[Lease]) -> None:
        now = self.clock()
        expired = [lease for lease in self._leases.values()
                   if lease.expires_at is not None and now >= lease.expires_at]
        for lease in expired:
            if lease.busy.acquire(False):  # a busy lease is refreshed when its eval ends
                self._retire_locked(lease, LEASE_EXPIRED, now)
                retired.append(lease)
        # tombstones are kept in retirement order (the clock is monotonic): drop from the front
        stones = self._tombstones
        horizon = now - self.tombstone_ttl
        while stones:
            oldest = next(iter(stones))
            if stones[oldest].retired_at > horizon:
                break
            del stones[oldest]

    def _retire_locked(self, lease: Lease, code: str, now: float) -> None:
        lease.terminal = code
        self._leases.pop(lease.lease_id, None)
        if self._sid_index.get(lease.sid) == lease.lease_id:
            del self._sid_index[lease.sid]
        self._tombstones[lease.lease_id] = Tombstone(lease, code, now)

    # ---- operations ------------------------------------------------------------------------
    def insert(self, profile: str, sid: str, ttl_sec: Optional[int], replace: bool,
               paths: LeasePaths, lvm: Optional[LeaseVM]) -> dict:
        """Register a new lease (its VM already built) and return the create payload."""
        with self._tables() as retired:
            now = self.clock()
            existing_id = self._sid_index.get(sid)
            if existing_id is not None:
                existing = self._leases.get(existing_id)
                if existing is None:
                    del self._sid_index[sid]
                elif existing.busy.acquire(False):
                    inactive = existing.inactive_error(now)
                    if inactive is None and not replace:
                        existing.busy.release()
                        raise LeaseError("lease_exists",
                                         f"runtime session SID `{sid}` already has lease `{existing_id}`")
                    self._retire_locked(existing, inactive.code if inactive else LEASE_REPLACED, now)
                    retired.append(existing)
                elif replace:
                    raise LeaseError("lease_busy",
                                     f"runtime session SID `{sid}` cannot replace busy lease `{existing_id}`")
                else:
                    raise LeaseError("lease_exists",
                                     f"runtime session SID `{sid}` already has lease `{existing_id}`")
            if len(self._leases) >= self.max_active:
                raise LeaseError("lease_limit_exceeded", "runtime session lease limit exceeded")
            self._sequence += 1
            generation = self._generations.get(sid, 0) + 1
            self._generations[sid] = generation
            lease_id = f"rt_{self.wall_ms()}_{self._sequence}"
            lease = Lease(sid, lease_id, generation, profile, ttl_sec, paths, lvm)
            lease.refresh(now, self.wall_ms())
            lease.take_snapshot(now)
            self._leases[lease_id] = lease
            self._sid_index[sid] = lease_id
            payload = lease.identity_fields()
            payload.update(ok=True, workspace_root=host_visible_path(paths.workspace_root),
                           ttl_sec=ttl_sec)
        self._poke_sweeper(lease.expires_at)
        return payload

    def _find_locked(self, lease_id: str, sid: Optional[str], generation: Optional[int],
                     profile: Optional[str]) -> Lease:
        """The active lease with its busy lock taken, or the tombstone's / not-found error."""
        lease = self._leases.get(lease_id)
        if lease is not None:
            if not lease.busy.acquire(False):
                raise _busy(lease_id)
            try:
                _check_identity(lease_id, lease.sid, lease.generation, sid, generation)
                _check_profile(lease_id, lease.profile, profile)
            except LeaseError:
                lease.busy.release()
                raise
            return lease
        stone = self._tombstones.get(lease_id)
        if stone is not None:
            _check_identity(lease_id, stone.sid, stone.generation, sid, generation)
            _check_profile(lease_id, stone.profile, profile)
            raise stone.error()
        raise lease_not_found(lease_id)

    def begin_eval(self, lease_id: str, sid: Optional[str], generation: Optional[int],
                   profile: Optional[str]) -> Lease:
        """Claim a lease for one eval: returns it with its busy lock held (finish_eval releases)."""
        with self._tables():
            lease = self._find_locked(lease_id, sid, generation, profile)
            now = self.clock()
            inactive = lease.inactive_error(now)
            if inactive is not None:
                lease.busy.release()
                raise inactive
            lease.refresh(now, self.wall_ms())
            if lease.lvm is not None:
                lease.lvm.begin()
            return lease

    def finish_eval(self, lease: Lease, result: Any, failure: Optional[str]) -> dict:
        """Record the outcome of an eval, release the lease and return the eval payload."""
        try:
            with self._lock:
                now = self.clock()
                if failure is None:
                    lease.refresh(now, self.wall_ms())
                    payload = lease.identity_fields()
                    payload.update(ok=True, result=result)
                else:
                    payload = LeaseError("eval_failed", failure).payload()
                if self._leases.get(lease.lease_id) is lease:
                    lease.take_snapshot(now)
        finally:
            lease.busy.release()
        self._poke_sweeper(lease.expires_at)
        return payload

    def status(self, lease_id: str, sid: Optional[str], generation: Optional[int],
               profile: Optional[str]) -> dict:
        with self._tables():
            lease = self._find_locked(lease_id, sid, generation, profile)
            try:
                now = self.clock()
                inactive = lease.inactive_error(now)
                if inactive is not None:
                    raise inactive
                return lease.status_payload(now)
            finally:
                lease.busy.release()

    def list(self, sid: Optional[str], profile: Optional[str]) -> dict:
        with self._tables():
            leases = [lease.snapshot_payload() for lease in self._leases.values()
                      if (sid is None or lease.sid == sid)
                      and (profile is None or lease.profile == profile)]
        leases.sort(key=_list_order)
        return {"ok": True, "leases": leases}

    def close(self, lease_id: str, sid: Optional[str], generation: Optional[int],
              profile: Optional[str]) -> dict:
        with self._tables() as retired:
            lease = self._find_locked(lease_id, sid, generation, profile)
            now = self.clock()
            lease.closed = True
            payload = lease.status_payload(now)
            payload["ok"] = True
            self._retire_locked(lease, LEASE_CLOSED, now)
            retired.append(lease)  # its VM (and sessions) go before this call returns
        return payload

    def cancel(self, lease_id: str, sid: Optional[str], generation: Optional[int],
               profile: Optional[str], message: str) -> dict:
        """Stop the lease's running eval.  Unlike the other calls a busy lease is the point here,
        so identity checks run without taking its busy lock."""
        with self._tables():
            lease = self._leases.get(lease_id)
            if lease is None:
                stone = self._tombstones.get(lease_id)
                if stone is None:
                    raise lease_not_found(lease_id)
                _check_identity(lease_id, stone.sid, stone.generation, sid, generation)
                _check_profile(lease_id, stone.profile, profile)
                raise stone.error()
            _check_identity(lease_id, lease.sid, lease.generation, sid, generation)
            _check_profile(lease_id, lease.profile, profile)
            cancelled = False
            if lease.busy.locked() and lease.lvm is not None:
                lease.lvm.cancel(message.format(lease_id=lease_id))
                cancelled = True
            payload = lease.identity_fields()
            payload.update(ok=True, cancelled=cancelled)
            return payload

    def kill_processes(self, lease_id: str) -> bool:
        """Kill the process sessions and exec trees the lease's VM started (a cancelled eval
        blocked in a read or exec returns at once).  False when there is no such lease."""
        with self._lock:
            lease = self._leases.get(lease_id)
            lvm = lease.lvm if lease is not None else None
        if lvm is None:
            return False
        lvm.vm.kill_resources()
        return True

    # ---- expiry ----------------------------------------------------------------------------
    def sweep(self) -> float:
        """Retire expired leases and stale tombstones now; returns seconds until the next
        deadline (idle leases' expiry or a tombstone's end), capped at SWEEPER_MAX_WAIT_SEC."""
        with self._tables():
            now = self.clock()
            deadlines = [lease.expires_at for lease in self._leases.values()
                         if lease.expires_at is not None and not lease.busy.locked()]
            deadlines += [stone.retired_at + self.tombstone_ttl for stone in self._tombstones.values()]
        if not deadlines:
            return SWEEPER_MAX_WAIT_SEC
        return min(max(min(deadlines) - now, 0.0), SWEEPER_MAX_WAIT_SEC)

    def _poke_sweeper(self, deadline: Optional[float]) -> None:
        """A lease now expires at `deadline`: start the sweeper (first finite lease), or wake it
        if it planned to sleep past that.  Most calls only push a deadline later: no wake-up,
        no thread switch on the eval path."""
        if not self._use_sweeper or deadline is None or deadline >= self._planned_wake:
            return  # (an unlocked read: a sweeper that is awake has planned_wake = +inf)
        with self._wake:
            if self._closed:
                return
            if self._sweeper is None:
                self._sweeper = threading.Thread(
                    target=_sweeper_loop, args=(weakref.ref(self), self._wake),
                    name="luaskills-lease-sweeper", daemon=True)
                self._sweeper.start()
            elif deadline >= self._planned_wake:
                return
            self._wake_pending = True
            self._wake.notify()

    def active_count(self) -> int:
        with self._lock:
            return len(self._leases)

    # ---- shutdown --------------------------------------------------------------------------
    def shutdown(self, message: str = "LuaEngine is closing") -> None:
        """Close every lease: cancel running evals, kill the sessions, free the VMs; stop the
        sweeper.  Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            leases = list(self._leases.values())
            for lease in leases:
                lease.terminal = LEASE_CLOSED
            self._leases.clear()
            self._sid_index.clear()
            self._tombstones.clear()
        with self._wake:
            sweeper, self._sweeper = self._sweeper, None
            self._wake_pending = True
            self._wake.notify()
        for lease in leases:
            if lease.lvm is not None:
                lease.lvm.cancel(message)
                lease.lvm.vm.kill_resources()  # a blocked session read returns once its child dies
        for lease in leases:
            got = lease.busy.acquire(timeout=CLOSE_WAIT_SEC)
            try:
                if lease.lvm is not None:
                    lease.lvm.close(release_heap=got)  # an eval still running keeps its heap
                    if got:
                        lease.lvm = None
            finally:
                if got:
                    lease.busy.release()
        if sweeper is not None and sweeper is not threading.current_thread():
            sweeper.join()


def _sweeper_loop(manager_ref, wake: threading.Condition) -> None:
    """Body of the sweeper thread.  It keeps only a weak reference to the manager between
    rounds so a host that forgets engine.close() does not keep the engine alive through it."""
    while True:
        manager = manager_ref()
        if manager is None or manager._closed:
            return
        try:
            timeout = manager.sweep()
        except LuaSkillsError:  # closed meanwhile
            return
        with wake:
            manager._planned_wake = manager.clock() + timeout
            del manager
            wake.wait_for(lambda: _pending(manager_ref), timeout)
            target = manager_ref()
            if target is not None:
                target._wake_pending = False
                target._planned_wake = float("inf")
            del target


def _pending(manager_ref) -> bool:
    manager = manager_ref()
    return manager is None or manager._wake_pending or manager._closed


# ---- request layer --------------------------------------------------------------------------

CANCEL_MESSAGE = "runtime session lease `{lease_id}` eval was cancelled by the host"


_ENCODER = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _unserializable(value):
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _reusable_c_encoder():
    """json's C encoder, built once: JSONEncoder.encode builds a new one per call, a cost that
    shows on the eval path.  No circular check: payloads are trees built by lua_to_json (which
    refuses cycles).  None where the C encoder is missing or has another signature."""
    try:
        from json.encoder import c_make_encoder, encode_basestring
        encode = c_make_encoder(None, _unserializable, encode_basestring, None, ":", ",",
                                True, False, True)
        if "".join(encode({"b": [1.5, None], "a": "\u00e9"}, 0)) != '{"a":"\u00e9","b":[1.5,null]}':
            return None
        return encode
    except (ImportError, TypeError):
        return None


_C_ENCODE = _reusable_c_encoder()


def dump_payload(payload: dict) -> str:
    """Compact JSON with sorted keys, as serde_json writes the reference's payloads."""
    if _C_ENCODE is not None:
        return "".join(_C_ENCODE(payload, 0))
    return _ENCODER.encode(payload)


class RuntimeLeases:
    """What LuaEngine's lease methods call.  Each method takes the request as JSON text
    (from_json=True) or as a dict and returns the payload dict."""

    def __init__(self, engine_state, *, clock: Callable[[], float] = time.monotonic,
                 wall_ms: Callable[[], int] = unix_ms, sweeper: bool = True):
        self.state = engine_state
        self.manager = LeaseManager(clock=clock, wall_ms=wall_ms, sweeper=sweeper)

    def _system_dir(self) -> str:
        return self.state.options.system_lua_lib_dir or default_system_lua_lib_dir()

    def _paths(self, request, profile: str) -> LeasePaths:
        paths = LeasePaths(
            cwd=normalize_optional_path(request.cwd, "cwd"),
            workspace_root=normalize_optional_path(request.workspace_root, "workspace_root"),
            lua_roots=normalize_path_list(request.lua_roots, "lua_roots"),
            c_roots=normalize_path_list(request.c_roots, "c_roots"),
            mounts=request.mounts,
        )
        if paths.mounts is not None and not isinstance(paths.mounts, dict):
            raise LuaSkillsError("runtime lease mounts must be one JSON object when present")
        if profile == SYSTEM:
            system_dir = self._system_dir()
            try:
                os.makedirs(system_dir, exist_ok=True)
            except OSError as error:
                raise LuaSkillsError(
                    f"failed to create system_lua_lib_dir {system_dir}: {os_error_text(error)}") from None
            paths.system_lua_lib_dir = system_dir
            if paths.cwd is None:
                paths.cwd = system_dir
            if system_dir not in paths.lua_roots:
                paths.lua_roots.insert(0, system_dir)
        return paths

    @staticmethod
    def _parse(parser, raw: Any, what: str, from_json: bool):
        data = decode_request(raw, what, from_json=from_json)
        try:
            return parser(data)
        except RequestShapeError as error:
            raise shape_error(what, error) from None

    def create(self, raw: Any, profile: str, *, from_json: bool) -> dict:
        request = self._parse(parse_create, raw, "create", from_json)
        sid = normalize_sid(request.sid)
        ttl_sec = resolve_ttl(profile == SYSTEM, request.ttl_sec)
        paths = self._paths(request, profile)
        lvm = LeaseVM(self.state, paths)
        try:
            payload = self.manager.insert(profile, sid, ttl_sec, request.replace, paths, lvm)
            if payload.get("ok"):
                lvm.vm.set_log_fields(luaskills_sid=sid, luaskills_lease_id=payload["lease_id"])
            return payload
        except LeaseError as error:
            lvm.close()
            return error.payload()
        except BaseException:
            lvm.close()
            raise

    def eval(self, raw: Any, profile: str, *, from_json: bool) -> dict:
        request = self._parse(parse_eval, raw, "eval", from_json)
        if request.sid is not None:
            request.sid = normalize_sid(request.sid)
        if request.timeout_ms == 0:
            raise LuaSkillsError("runtime session eval timeout_ms must be greater than 0")
        try:
            lease = self.manager.begin_eval(request.lease_id, request.sid, request.generation, profile)
        except LeaseError as error:
            return error.payload()
        result = failure = None
        try:
            result = lease.lvm.eval(request)
        except EvalFailure as error:
            failure = str(error)
        except BaseException:
            self.manager.finish_eval(lease, None, "eval interrupted")  # hand the lease back
            raise
        return self.manager.finish_eval(lease, result, failure)

    def _lease_call(self, method, raw: Any, what: str, profile: str, from_json: bool, *extra) -> dict:
        request = self._parse(parse_lease, raw, what, from_json)
        sid = normalize_sid(request.sid) if request.sid is not None else None
        try:
            return method(request.lease_id, sid, request.generation, profile, *extra)
        except LeaseError as error:
            return error.payload()

    def status(self, raw: Any, profile: str, *, from_json: bool) -> dict:
        return self._lease_call(self.manager.status, raw, "status", profile, from_json)

    def close(self, raw: Any, profile: str, *, from_json: bool) -> dict:
        return self._lease_call(self.manager.close, raw, "close", profile, from_json)

    def cancel(self, raw: Any, profile: str, *, from_json: bool) -> dict:
        return self._lease_call(self.manager.cancel, raw, "cancel", profile, from_json, CANCEL_MESSAGE)

    def list(self, raw: Any, profile: str, *, from_json: bool) -> dict:
        request = self._parse(parse_list, raw, "list", from_json)
        sid = normalize_sid(request.sid) if request.sid is not None else None
        return self.manager.list(sid, profile)

    def shutdown(self) -> None:
        self.manager.shutdown()
