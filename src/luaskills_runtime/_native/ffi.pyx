# cython: language_level=3
"""The extension that carries the luaskills JSON C ABI (native/ffi_json.c).

Its shared library exports the `luaskills_ffi_*` entry points; hosts load it with ctypes (see
luaskills_runtime.ffi).  From Python it only tells which entry points it exports."""
from luaskills_runtime._native.c_ffi cimport lsr_ffi_exported_names, lsr_ffi_exported_count


def exported_functions():
    """Names of the entry points the library exports, in table order."""
    return [lsr_ffi_exported_names[i].decode("ascii") for i in range(lsr_ffi_exported_count)]
