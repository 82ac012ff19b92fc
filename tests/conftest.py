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
