import os
import sys

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
def jit_off_hook():
    """VMs created during the test get the jit-off-hook guard (LUASKILLS_JIT_GUARD=off): for tests
    of that mechanism's own behaviour (the JIT off in guarded VMs, jit.on refusing)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("LUASKILLS_JIT_GUARD", "off")
    yield
    mp.undo()
