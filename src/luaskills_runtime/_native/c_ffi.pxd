# C declarations of native/ffi_json.h (the exported luaskills JSON C ABI).
cdef extern from "ffi_json.h" nogil:
    const char *const lsr_ffi_exported_names[]
    const size_t lsr_ffi_exported_count
