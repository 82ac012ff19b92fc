import os

import pytest

# Tests run against the in-place build (`python setup.py build_ext --inplace`) or an installed
# package; prefer the source tree when it has been built.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def engine():
    from luaskills_runtime import LuaEngine

    with LuaEngine() as eng:
        yield eng


@pytest.fixture
def child_env():
    """Environment for child Pythons (examples, probes) that import the package under test."""
    from _process_support import child_env as make

    return make()


@pytest.fixture
def lease_env(tmp_path):
    """(RuntimeLeases with a fake clock and no sweeper, the clock), torn down after the test."""
    from _lease_support import make_leases

    engine, leases, clock = make_leases(tmp_path)
    yield leases, clock
    leases.shutdown()
    engine.close()


@pytest.fixture
def jit_off_hook():
    """VMs created during the test get the jit-off-hook guard (LUASKILLS_JIT_GUARD=off): for tests
    of that mechanism's own behaviour (the JIT off in guarded VMs, jit.on refusing)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("LUASKILLS_JIT_GUARD", "off")
    yield
    mp.undo()


def _live_native_objects():
    """Live (notifiers, rings, processes) summed over the extension modules' copies of the native
    core, or None unless this is an LSR_DEBUG build (LUASKILLS_DEBUG=1)."""
    from luaskills_runtime._native import process, ringbuf

    counts = [module._debug_live_counts() for module in (ringbuf, process)]
    if counts[0] is None or counts[1] is None:
        return None
    return tuple(a + b for a, b in zip(*counts))


@pytest.fixture(autouse=True)
def no_native_leak(request):
    """In debug builds: no notifier, ring or process of the native core outlives the test that
    made it (objects of module- or session-scoped fixtures are counted before the test starts)."""
    before = _live_native_objects()
    yield
    if before is None:
        return
    import gc
    import time

    deadline = time.monotonic() + 2.0
    while True:   # finalisers of dropped sessions and exec runs may still be on their way
        gc.collect()
        after = _live_native_objects()
        if all(a <= b for a, b in zip(after, before)) or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert all(a <= b for a, b in zip(after, before)), (
        f"native objects leaked by {request.node.nodeid}: (notifiers, rings, processes) "
        f"{before} -> {after}")
