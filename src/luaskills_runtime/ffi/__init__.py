"""The luaskills JSON C ABI: the shared library hosts load with ctypes (the luaskills SDKs).

The entry points are C (native/ffi_json.c, in the `_native.ffi` extension); they call
`luaskills_runtime.ffi.dispatch.dispatch`.  This module only locates and installs the library and
imports nothing heavy, so `luaskills-runtime ffi-path` stays fast.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import sys

EXTENSION = "luaskills_runtime._native.ffi"


def library_path() -> str:
    """Absolute path of the shared library that exports the luaskills C ABI."""
    spec = importlib.util.find_spec(EXTENSION)
    if spec is None or not spec.origin:
        raise FileNotFoundError(f"{EXTENSION} is not built (run `python3 setup.py build_ext --inplace`)")
    return os.path.abspath(spec.origin)


def sdk_library_name() -> str:
    """The file name the luaskills SDK looks for under `<runtime_root>/libs`."""
    if sys.platform == "win32":
        return "luaskills.dll"
    if sys.platform == "darwin":
        return "libluaskills.dylib"
    return "libluaskills.so"


def install_library(runtime_root: str) -> str:
    """Copy the library to `<runtime_root>/libs/<sdk name>`, where the SDK finds it without
    LUASKILLS_LIB; returns the installed path.  A copy (not a link): the SDK resolves links, and
    the entry points import the installed package, so the copy keeps working across rebuilds."""
    target_dir = os.path.join(os.path.abspath(runtime_root), "libs")
    os.makedirs(target_dir, exist_ok=True)
    target = os.path.join(target_dir, sdk_library_name())
    temporary = target + ".tmp"
    shutil.copyfile(library_path(), temporary)
    os.replace(temporary, target)  # a host that has the old copy loaded keeps its mapping
    return target
