/* ffi_json.c - the exported luaskills JSON C ABI entry points (see ffi_json.h).
 *
 * Each JSON entry point: refuse politely when Python is not running or is finalizing, take the
 * GIL (ctypes released it), call luaskills_runtime.ffi.dispatch.dispatch(name, data, len) (which
 * imports the package when the library was loaded first), copy the returned bytes into a malloc'd
 * buffer, release the GIL.  Lua runs inside the dispatcher with the GIL released, so calls on
 * other engines and threads proceed meanwhile.  Answers are always a JSON envelope unless malloc
 * itself fails (then {NULL, 0}).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ffi_json.h"

#define LSR_FFI_DISPATCH_MODULE "luaskills_runtime.ffi.dispatch"

/* The dispatcher function, imported once; only read or written with the GIL held. */
static PyObject *lsr_ffi_dispatcher = NULL;

static int lsr_python_finalizing(void)
{
#if PY_VERSION_HEX >= 0x030D0000
    return Py_IsFinalizing();
#else
    return _Py_IsFinalizing();
#endif
}

/* A malloc'd copy of `len` bytes; {NULL, 0} when len is 0 or malloc fails. */
static FfiOwnedBuffer lsr_owned_copy(const void *bytes, size_t len)
{
    FfiOwnedBuffer out = {NULL, 0};
    if (len == 0)
        return out;
    out.ptr = (uint8_t *)malloc(len);
    if (out.ptr == NULL)
        return out;
    memcpy(out.ptr, bytes, len);
    out.len = len;
    return out;
}

/* Appends `text` to `out` as the body of a JSON string (quotes and control characters
 * escaped); stops before overflowing `cap`.  Returns the new length. */
static size_t lsr_json_escape_into(char *out, size_t used, size_t cap, const char *text)
{
    for (const unsigned char *p = (const unsigned char *)text; *p != '\0'; p++) {
        char piece[8];
        size_t n;
        if (*p == '"' || *p == '\\') {
            piece[0] = '\\';
            piece[1] = (char)*p;
            n = 2;
        } else if (*p < 0x20) {
            n = (size_t)snprintf(piece, sizeof piece, "\\u%04x", *p);
        } else {
            piece[0] = (char)*p;
            n = 1;
        }
        if (used + n >= cap)
            break;
        memcpy(out + used, piece, n);
        used += n;
    }
    return used;
}

/* The envelope {"ok":false,"error":"<name>: <reason><detail>"} built without Python, for the
 * cases where Python cannot answer (not running, finalizing, the dispatcher failed). */
static FfiOwnedBuffer lsr_error_envelope(const char *name, const char *reason, const char *detail)
{
    char text[2048];
    size_t used = (size_t)snprintf(text, sizeof text, "{\"ok\":false,\"error\":\"");
    used = lsr_json_escape_into(text, used, sizeof text - 3, name);
    used = lsr_json_escape_into(text, used, sizeof text - 3, ": ");
    used = lsr_json_escape_into(text, used, sizeof text - 3, reason);
    if (detail != NULL)
        used = lsr_json_escape_into(text, used, sizeof text - 3, detail);
    memcpy(text + used, "\"}", 2);
    used += 2;
    return lsr_owned_copy(text, used);
}

/* With the GIL held: the pending Python exception as an error envelope (and cleared). */
static FfiOwnedBuffer lsr_exception_envelope(const char *name)
{
    PyObject *type = NULL, *value = NULL, *traceback = NULL;
    PyErr_Fetch(&type, &value, &traceback);
    PyObject *text = value != NULL ? PyObject_Str(value) : NULL;
    const char *detail = text != NULL ? PyUnicode_AsUTF8(text) : NULL;
    if (detail == NULL)
        PyErr_Clear();
    FfiOwnedBuffer out = lsr_error_envelope(name, "the luaskills_runtime dispatcher failed: ",
                                            detail != NULL ? detail : "(no message)");
    Py_XDECREF(text);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(traceback);
    return out;
}

/* With the GIL held: the dispatcher function (imported on first use), or NULL with an exception
 * set. */
static PyObject *lsr_dispatcher(void)
{
    if (lsr_ffi_dispatcher != NULL)
        return lsr_ffi_dispatcher;
    PyObject *module = PyImport_ImportModule(LSR_FFI_DISPATCH_MODULE);
    if (module == NULL)
        return NULL;
    PyObject *function = PyObject_GetAttrString(module, "dispatch");
    Py_DECREF(module);
    if (function == NULL)
        return NULL;
    lsr_ffi_dispatcher = function; /* kept for the life of the process */
    return function;
}

/* One JSON call: the envelope the dispatcher answers for `name` and the request bytes.
 * Error contract: never fails; a Python that is absent or finalizing, a failing import or
 * dispatcher, or an answer that is not bytes all come back as an {"ok":false} envelope naming
 * the cause; {NULL, 0} only when malloc fails. */
static FfiOwnedBuffer lsr_ffi_call(const char *name, const uint8_t *ptr, size_t len)
{
    if (!Py_IsInitialized())
        return lsr_error_envelope(name, "the Python interpreter is not running", NULL);
    if (lsr_python_finalizing())
        return lsr_error_envelope(name, "the Python interpreter is finalizing", NULL);
    PyGILState_STATE gil = PyGILState_Ensure();
    FfiOwnedBuffer out;
    PyObject *answer = NULL;
    PyObject *dispatcher = lsr_dispatcher();
    if (dispatcher != NULL) {
        PyObject *data;
        if (ptr != NULL) {
            data = PyBytes_FromStringAndSize((const char *)ptr, (Py_ssize_t)len);
        } else {
            data = Py_None;
            Py_INCREF(data);
        }
        if (data != NULL) {
            answer = PyObject_CallFunction(dispatcher, "sOn", name, data, (Py_ssize_t)len);
            Py_DECREF(data);
        }
    }
    if (answer == NULL) {
        out = lsr_exception_envelope(name);
    } else if (!PyBytes_Check(answer)) {
        out = lsr_error_envelope(name, "the luaskills_runtime dispatcher answered a non-bytes value", NULL);
    } else {
        out = lsr_owned_copy(PyBytes_AS_STRING(answer), (size_t)PyBytes_GET_SIZE(answer));
    }
    Py_XDECREF(answer);
    PyGILState_Release(gil);
    return out;
}

#define LSR_FFI_DEFINE_JSON(fn)                                                   \
    FfiOwnedBuffer luaskills_ffi_##fn(FfiBorrowedBuffer input)                    \
    {                                                                             \
        return lsr_ffi_call("luaskills_ffi_" #fn, input.ptr, input.len);          \
    }
#define LSR_FFI_DEFINE_NO_INPUT(fn)                                               \
    FfiOwnedBuffer luaskills_ffi_##fn(void)                                       \
    {                                                                             \
        return lsr_ffi_call("luaskills_ffi_" #fn, NULL, 0);                       \
    }

LSR_FFI_JSON_FUNCTIONS(LSR_FFI_DEFINE_JSON)
LSR_FFI_NO_INPUT_FUNCTIONS(LSR_FFI_DEFINE_NO_INPUT)

/* Writes `message` into *error_out as an owned buffer (when error_out is not NULL). */
static void lsr_set_error(FfiOwnedBuffer *error_out, const char *message)
{
    if (error_out != NULL)
        *error_out = lsr_owned_copy(message, strlen(message));
}

/* Callback setters.  Clearing (callback NULL) succeeds: there is nothing to clear.  Registering
 * fails with a message saying why (every callback kind serves skill packages, which this runtime
 * does not load), so a host learns at registration rather than at a skill call. */
#define LSR_FFI_DEFINE_SETTER(fn, why)                                                          \
    int32_t luaskills_ffi_##fn(lsr_ffi_json_callback callback, void *user_data,                 \
                               FfiOwnedBuffer *error_out)                                       \
    {                                                                                           \
        (void)user_data;                                                                        \
        if (error_out != NULL) {                                                                \
            error_out->ptr = NULL;                                                              \
            error_out->len = 0;                                                                 \
        }                                                                                       \
        if (callback == NULL)                                                                   \
            return 0;                                                                           \
        lsr_set_error(error_out, "luaskills_ffi_" #fn ": " why ", and skill packages are "    \
                                 "outside this runtime (luaskills-runtime runs Lua code through " \
                                 "run_lua and runtime leases)");                                \
        return 1;                                                                               \
    }

LSR_FFI_CALLBACK_SETTERS(LSR_FFI_DEFINE_SETTER)

void luaskills_ffi_buffer_free(FfiOwnedBuffer buffer)
{
    free(buffer.ptr);
}

int32_t luaskills_ffi_buffer_clone(const uint8_t *ptr, size_t len, FfiOwnedBuffer *out,
                                   FfiOwnedBuffer *error_out)
{
    if (error_out != NULL) {
        error_out->ptr = NULL;
        error_out->len = 0;
    }
    if (out == NULL) {
        lsr_set_error(error_out, "luaskills_ffi_buffer_clone requires a non-null output buffer");
        return 1;
    }
    out->ptr = NULL;
    out->len = 0;
    if (ptr == NULL) {
        if (len == 0)
            return 0;
        lsr_set_error(error_out, "luaskills_ffi_buffer_clone received null buffer with non-zero len");
        return 1;
    }
    *out = lsr_owned_copy(ptr, len);
    if (len != 0 && out->ptr == NULL) {
        lsr_set_error(error_out, "luaskills_ffi_buffer_clone: malloc failed");
        return 1;
    }
    return 0;
}

#define LSR_FFI_NAME(fn) "luaskills_ffi_" #fn,
#define LSR_FFI_SETTER_NAME(fn, why) "luaskills_ffi_" #fn,

const char *const lsr_ffi_exported_names[] = {
    LSR_FFI_NO_INPUT_FUNCTIONS(LSR_FFI_NAME)
    LSR_FFI_JSON_FUNCTIONS(LSR_FFI_NAME)
    LSR_FFI_CALLBACK_SETTERS(LSR_FFI_SETTER_NAME)
    "luaskills_ffi_buffer_clone",
    "luaskills_ffi_buffer_free",
};
const size_t lsr_ffi_exported_count = sizeof lsr_ffi_exported_names / sizeof lsr_ffi_exported_names[0];
