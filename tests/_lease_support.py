"""Helpers shared by the runtime-lease tests (not a test module itself)."""
from __future__ import annotations

import threading
import time

from luaskills_runtime import HostOptions, LuaEngine
from luaskills_runtime.leases import PUBLIC, RuntimeLeases

WALL_BASE_MS = 1_700_000_000_000


class FakeClock:
    """Monotonic seconds and Unix milliseconds that only move when a test says so."""

    def __init__(self):
        self.now = 5_000.0

    def monotonic(self) -> float:
        return self.now

    def wall_ms(self) -> int:
        return WALL_BASE_MS + int(round(self.now * 1000))

    def advance(self, seconds: float) -> None:
        self.now += seconds


class KillRecorder:
    """A resource a lease VM tracks, standing in for a process session."""

    def __init__(self):
        self.killed = threading.Event()

    def kill(self):
        self.killed.set()
        return True


def make_leases(tmp_path, clock=None, **options):
    """(engine, RuntimeLeases over the engine's state with an injected clock, no sweeper)."""
    options.setdefault("system_lua_lib_dir", str(tmp_path / "system_lua_lib"))
    engine = LuaEngine(HostOptions(**options))
    clock = clock or FakeClock()
    leases = RuntimeLeases(engine._state, clock=clock.monotonic, wall_ms=clock.wall_ms, sweeper=False)
    return engine, leases, clock


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.005) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def lease_vm(leases: RuntimeLeases, lease_id: str):
    """The LuaVM behind an active lease (white-box: to track a fake resource on it)."""
    return leases.manager._leases[lease_id].lvm.vm


# ---- calls on a RuntimeLeases with dict requests (the manager's own surface) ----------------------

def create(leases, profile=PUBLIC, **fields):
    return leases.create(fields, profile, from_json=False)


def evaluate(leases, profile=PUBLIC, **fields):
    return leases.eval(fields, profile, from_json=False)


def status(leases, profile=PUBLIC, **fields):
    return leases.status(fields, profile, from_json=False)


def close(leases, profile=PUBLIC, **fields):
    return leases.close(fields, profile, from_json=False)


def listing(leases, profile=PUBLIC, **fields):
    return leases.list(fields, profile, from_json=False)
