/* ffi_json.h - the luaskills JSON C ABI (luaskills 0.4.2, include/luaskills_json_ffi.h) exported
 * by this package's `_native.ffi` extension, so hosts built on the luaskills SDKs can
 * `ctypes.CDLL` it and drive this runtime.
 *
 * Every `luaskills_ffi_*_json` entry point takes the GIL, hands the request bytes to the Python
 * dispatcher `luaskills_runtime.ffi.dispatch.dispatch` and returns its answer, the envelope
 * `{"ok":true,"result":...}` / `{"ok":false,"error":"..."}`, in a malloc'd buffer that the caller
 * frees with luaskills_ffi_buffer_free.  Only the CPython API is used (no Cython module state),
 * so the entry points work even when ctypes loads the library before Python imported the package,
 * or loads a copy of the file.  The library only works inside a process that runs Python.
 */
#ifndef LSR_FFI_JSON_H
#define LSR_FFI_JSON_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define LSR_FFI_EXPORT __declspec(dllexport)
#else
#define LSR_FFI_EXPORT __attribute__((visibility("default")))
#endif

/* Request bytes lent by the caller for the duration of one call. */
typedef struct FfiBorrowedBuffer {
    const uint8_t *ptr;
    size_t len;
} FfiBorrowedBuffer;

/* Bytes owned by the library until the caller passes them to luaskills_ffi_buffer_free. */
typedef struct FfiOwnedBuffer {
    uint8_t *ptr;
    size_t len;
} FfiOwnedBuffer;

/* Host callback shape of the luaskills provider setters (request, user_data, out, err). */
typedef int32_t (*lsr_ffi_json_callback)(FfiBorrowedBuffer request, void *user_data,
                                         FfiOwnedBuffer *response_out, FfiOwnedBuffer *error_out);

/* JSON entry points that take one request buffer: X(name without the luaskills_ffi_ prefix). */
#define LSR_FFI_JSON_FUNCTIONS(X)                                   \
    X(engine_new_json)                                              \
    X(engine_free_json)                                             \
    X(run_lua_json)                                                 \
    X(runtime_lease_create_json)                                    \
    X(runtime_lease_eval_json)                                      \
    X(runtime_lease_status_json)                                    \
    X(runtime_lease_list_json)                                      \
    X(runtime_lease_close_json)                                     \
    X(system_runtime_lease_create_json)                             \
    X(system_runtime_lease_eval_json)                               \
    X(system_runtime_lease_status_json)                             \
    X(system_runtime_lease_list_json)                               \
    X(system_runtime_lease_close_json)                              \
    X(load_from_roots_json)                                         \
    X(reload_from_roots_json)                                       \
    X(list_entries_json)                                            \
    X(list_skill_help_json)                                         \
    X(render_skill_help_detail_json)                                \
    X(prompt_argument_completions_json)                             \
    X(is_skill_json)                                                \
    X(skill_name_for_tool_json)                                     \
    X(skill_config_list_json)                                       \
    X(skill_config_get_json)                                        \
    X(skill_config_set_json)                                        \
    X(skill_config_delete_json)                                     \
    X(call_skill_json)                                              \
    X(disable_skill_json)                                           \
    X(system_disable_skill_json)                                    \
    X(enable_skill_json)                                            \
    X(system_enable_skill_json)                                     \
    X(uninstall_skill_json)                                         \
    X(system_uninstall_skill_json)                                  \
    X(install_skill_json)                                           \
    X(system_install_skill_json)                                    \
    X(system_private_install_skill_from_url_manifest_json)          \
    X(update_skill_json)                                            \
    X(system_update_skill_json)                                     \
    X(system_private_update_skill_from_url_manifest_json)

/* JSON entry points without an argument. */
#define LSR_FFI_NO_INPUT_FUNCTIONS(X) \
    X(version_json)                   \
    X(describe_json)

/* Host callback setters: X(name, what the callback would serve). */
#define LSR_FFI_CALLBACK_SETTERS(X)                                          \
    X(set_sqlite_provider_json_callback, "SQLite providers serve skill databases")   \
    X(set_lancedb_provider_json_callback, "LanceDB providers serve skill databases") \
    X(set_host_tool_json_callback, "host tools are called from skill packages")      \
    X(set_skill_operation_progress_json_callback, "progress reports come from skill package operations") \
    X(set_model_embed_json_callback, "model callbacks serve skill packages")         \
    X(set_model_llm_json_callback, "model callbacks serve skill packages")

#define LSR_FFI_DECLARE_JSON(name) LSR_FFI_EXPORT FfiOwnedBuffer luaskills_ffi_##name(FfiBorrowedBuffer input);
#define LSR_FFI_DECLARE_NO_INPUT(name) LSR_FFI_EXPORT FfiOwnedBuffer luaskills_ffi_##name(void);
#define LSR_FFI_DECLARE_SETTER(name, why) \
    LSR_FFI_EXPORT int32_t luaskills_ffi_##name(lsr_ffi_json_callback callback, void *user_data, FfiOwnedBuffer *error_out);

LSR_FFI_JSON_FUNCTIONS(LSR_FFI_DECLARE_JSON)
LSR_FFI_NO_INPUT_FUNCTIONS(LSR_FFI_DECLARE_NO_INPUT)
LSR_FFI_CALLBACK_SETTERS(LSR_FFI_DECLARE_SETTER)

/* Frees a buffer this library returned; NULL-safe (the SDK calls it after every call). */
LSR_FFI_EXPORT void luaskills_ffi_buffer_free(FfiOwnedBuffer buffer);

/* Copies `len` bytes at `ptr` into a library-owned buffer (for host callbacks' answers).
 * Returns 0 with *out set, or 1 with *error_out set to a message (when error_out is not NULL):
 * out NULL, ptr NULL with a non-zero len, or malloc failing. */
LSR_FFI_EXPORT int32_t luaskills_ffi_buffer_clone(const uint8_t *ptr, size_t len, FfiOwnedBuffer *out,
                                                  FfiOwnedBuffer *error_out);

/* Names of every exported entry point, for describe_json (one table, kept by the X-macros). */
extern const char *const lsr_ffi_exported_names[];
extern const size_t lsr_ffi_exported_count;

#endif
