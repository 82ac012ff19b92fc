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
