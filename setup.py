"""Build of the native core: the Cython extensions and the C sources each one compiles.

The platform choice is made here, once: POSIX hosts compile the *_posix.c sources, Windows the
*_windows.c ones.  Set LUASKILLS_DEBUG=1 for an unoptimised build with assertions (LSR_DEBUG).
"""
import os
import sys

from Cython.Build import cythonize
from setuptools import Extension, setup

WINDOWS = sys.platform == "win32"
PLATFORM = "windows" if WINDOWS else "posix"
DEBUG = os.environ.get("LUASKILLS_DEBUG") == "1"

RING = ["native/notify.c", "native/ringbuf.c"]
PROCESS = RING + [f"native/proc_{PLATFORM}.c", f"native/drain_{PLATFORM}.c"]
if WINDOWS:  # the Windows core also has its tree-teardown strategies and error helpers
    PROCESS += ["native/tree_windows.c", "native/winerr_windows.c"]
LUAHOOK = ["native/luahook.c", "native/jitguard.c", f"native/luaapi_{PLATFORM}.c"]

# module name (under luaskills_runtime._native) -> C sources it compiles besides its .pyx
EXTENSIONS = {
    "ringbuf": RING,
    "process": PROCESS + ["native/exec.c"],
    "luahook": LUAHOOK,
    "ffi": ["native/ffi_json.c"],  # the exported luaskills JSON C ABI (luaskills_runtime.ffi)
}


def extension(name, c_sources):
    macros = [("LSR_DEBUG", "1")] if DEBUG else [("NDEBUG", "1")]
    if WINDOWS:
        compile_args, libraries = [], ["kernel32"]
    else:
        compile_args = ["-std=c11", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Wno-unused-function"]
        compile_args += ["-O0", "-g"] if DEBUG else ["-O2", "-g0"]
        libraries = ["pthread"]
    return Extension(
        f"luaskills_runtime._native.{name}",
        sources=[f"src/luaskills_runtime/_native/{name}.pyx", *c_sources],
        include_dirs=["native"],
        define_macros=macros,
        extra_compile_args=compile_args,
        libraries=libraries,
    )


setup(
    ext_modules=cythonize(
        [extension(name, sources) for name, sources in EXTENSIONS.items()],
        compiler_directives={"language_level": "3", "boundscheck": DEBUG, "wraparound": False},
        include_path=["src"],
    ),
)
