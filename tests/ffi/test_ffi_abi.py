"""The exported C entry points themselves: hostile inputs, load order, threads, shutdown.

Everything that could crash a process runs in a child interpreter."""
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from _ffi_support import child_env, library_path, run_python

# Raw ctypes access to the library, for child interpreters (prepended to their code).
RAW = textwrap.dedent("""
    import ctypes, json, os, sys
    class Buf(ctypes.Structure):
        _fields_ = [("ptr", ctypes.c_void_p), ("len", ctypes.c_size_t)]
    lib = ctypes.CDLL(os.environ["LUASKILLS_LIB"])
    lib.luaskills_ffi_buffer_free.argtypes = [Buf]
    lib.luaskills_ffi_buffer_free.restype = None
    def call(name, data=None, length=None):
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = [Buf], Buf
        if data is None:
            out = fn(Buf(None, length or 0))
        else:
            keep = ctypes.create_string_buffer(data, len(data))
            out = fn(Buf(ctypes.cast(keep, ctypes.c_void_p).value, len(data) if length is None else length))
        text = ctypes.string_at(out.ptr, out.len).decode("utf-8") if out.ptr else ""
        lib.luaskills_ffi_buffer_free(out)
        return json.loads(text)
    def call_no_input(name):
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = [], Buf
        out = fn()
        text = ctypes.string_at(out.ptr, out.len).decode("utf-8")
        lib.luaskills_ffi_buffer_free(out)
        return json.loads(text)
    OPTIONS = {"pool_config": {"min_size": 1, "max_size": 4, "idle_ttl_secs": 60},
               "host_options": {"dependency_dir_name": "", "state_dir_name": "", "database_dir_name": "",
                                "allow_network_download": False, "reserved_entry_names": [],
                                "capabilities": {"enable_managed_io_compat": True}}}
    def new_engine():
        answer = call("luaskills_ffi_engine_new_json", json.dumps({"options": OPTIONS}).encode())
        assert answer["ok"], answer
        return answer["result"]["engine_id"]
""")


def raw(code: str, **kw) -> subprocess.CompletedProcess:
    return run_python(RAW + textwrap.dedent(code), LUASKILLS_LIB=library_path(), **kw)


def test_hostile_requests_answer_error_envelopes():
    result = raw("""
        F = "luaskills_ffi_run_lua_json"
        cases = [
            (None, 0), (None, 5), (b"\\xff\\xfe{}", None), (b'{"code":"\\xe2\\x82', None), (b"", None),
            (b"{", None), (b"nope", None), (b'{"engine_id":1} x', None), (b'{"engine_id":"1"}', None),
            (b'{"engine_id":424242,"code":"return 1"}', None), (b"[]", None), (b"null", None),
            (b'{"engine_id":18446744073709551616,"code":""}', None), (b"[" * 100000, None),
        ]
        for data, length in cases:
            print(json.dumps(call(F, data, length)))
        print(json.dumps(call("luaskills_ffi_engine_free_json", b'{"engine_id":424242}')))
    """)
    assert result.returncode == 0, result.stderr
    answers = [__import__("json").loads(line) for line in result.stdout.splitlines()]
    assert all(answer["ok"] is False for answer in answers)
    errors = [answer["error"] for answer in answers]
    F = "luaskills_ffi_run_lua_json"
    assert errors[0] == f"{F} requires one non-null JSON buffer"
    assert errors[1] == f"{F} received null JSON buffer with non-zero len"
    assert errors[2] == f"{F} received invalid UTF-8 input: invalid utf-8 sequence of 1 bytes from index 0"
    assert errors[3] == f"{F} received invalid UTF-8 input: incomplete utf-8 byte sequence from index 9"
    assert errors[4] == f"{F} received invalid JSON input: EOF while parsing a value at line 1 column 0"
    assert errors[5].startswith(f"{F} received invalid JSON input: ")
    assert errors[6] == f"{F} received invalid JSON input: expected value at line 1 column 1"
    assert errors[7] == f"{F} received invalid JSON input: trailing characters at line 1 column 17"
    assert errors[8] == (f"{F} received invalid JSON input: invalid type: string \"1\", expected u64 "
                         "at line 1 column 16")
    assert errors[9] == "FFI engine 424242 not found"
    assert errors[10].startswith(f"{F} received invalid JSON input: invalid type: sequence")
    assert errors[11] == (f"{F} received invalid JSON input: invalid type: null, expected struct "
                          "RunLuaJsonRequest at line 1 column 4")
    assert "expected u64" in errors[12]
    assert errors[13].startswith(f"{F} received invalid JSON input: ")
    assert errors[14] == "FFI engine 424242 not found"


def test_library_loaded_by_ctypes_before_the_package_is_imported():
    result = raw("""
        assert "luaskills_runtime" not in sys.modules
        print(json.dumps(call_no_input("luaskills_ffi_version_json")))
        engine = new_engine()
        print(json.dumps(call("luaskills_ffi_run_lua_json",
                              json.dumps({"engine_id": engine, "code": "return args.x * 2",
                                          "args": {"x": 21}}).encode())))
        print("luaskills_runtime" in sys.modules)
    """)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines == ['{"ok": true, "result": {"ffi_version": "0.4.2", "protocol": "json-cabi"}}',
                     '{"ok": true, "result": 42}', "True"]


def test_a_copy_of_the_library_works(tmp_path):
    copy = tmp_path / "libluaskills.so"
    shutil.copyfile(library_path(), copy)
    result = run_python(RAW + "print(call_no_input('luaskills_ffi_version_json')['ok'])",
                        LUASKILLS_LIB=str(copy))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"


def test_buffer_clone_free_and_callback_setters():
    result = raw("""
        out, err = Buf(), Buf()
        lib.luaskills_ffi_buffer_clone.argtypes = [ctypes.c_char_p, ctypes.c_size_t,
                                                   ctypes.POINTER(Buf), ctypes.POINTER(Buf)]
        lib.luaskills_ffi_buffer_clone.restype = ctypes.c_int32
        print(lib.luaskills_ffi_buffer_clone(b"hello", 5, ctypes.byref(out), ctypes.byref(err)),
              ctypes.string_at(out.ptr, out.len), err.ptr)
        lib.luaskills_ffi_buffer_free(out)
        print(lib.luaskills_ffi_buffer_clone(None, 0, ctypes.byref(out), ctypes.byref(err)), out.ptr)
        print(lib.luaskills_ffi_buffer_clone(None, 3, ctypes.byref(out), ctypes.byref(err)),
              ctypes.string_at(err.ptr, err.len).decode())
        lib.luaskills_ffi_buffer_free(err)
        print(lib.luaskills_ffi_buffer_clone(b"x", 1, None, ctypes.byref(err)),
              ctypes.string_at(err.ptr, err.len).decode())
        lib.luaskills_ffi_buffer_free(err)
        lib.luaskills_ffi_buffer_free(Buf(None, 0))  # NULL-safe
        lib.luaskills_ffi_buffer_free(Buf(None, 7))
        setter = lib.luaskills_ffi_set_lancedb_provider_json_callback
        setter.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(Buf)]
        setter.restype = ctypes.c_int32
        print(setter(None, None, ctypes.byref(err)), err.ptr)
        print(setter(1234, None, ctypes.byref(err)), ctypes.string_at(err.ptr, err.len).decode())
        lib.luaskills_ffi_buffer_free(err)
        print(setter(1234, None, None))
    """)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "0 b'hello' None"
    assert lines[1] == "0 None"
    assert lines[2] == "1 luaskills_ffi_buffer_clone received null buffer with non-zero len"
    assert lines[3] == "1 luaskills_ffi_buffer_clone requires a non-null output buffer"
    assert lines[4] == "0 None"
    assert lines[5].startswith("1 luaskills_ffi_set_lancedb_provider_json_callback: LanceDB providers "
                               "serve skill databases, and skill packages are outside this runtime")
    assert lines[6] == "1"


def test_two_engines_run_in_parallel_while_lua_runs():
    """A 1.5 s Lua loop on engine A does not block calls on engine B: the GIL is released while
    Lua runs (ctypes drops it, the entry point takes it, lupa drops it around Lua)."""
    result = raw("""
        import threading, time
        a, b = new_engine(), new_engine()
        def slow():
            call("luaskills_ffi_run_lua_json", json.dumps({"engine_id": a, "code":
                 "local t = os.clock() while os.clock() - t < 1.5 do end return 1"}).encode())
        thread = threading.Thread(target=slow)
        thread.start()
        time.sleep(0.2)
        worst, count = 0.0, 0
        while thread.is_alive():
            start = time.monotonic()
            answer = call("luaskills_ffi_run_lua_json",
                          json.dumps({"engine_id": b, "code": "return 7"}).encode())
            assert answer == {"ok": True, "result": 7}, answer
            worst, count = max(worst, time.monotonic() - start), count + 1
        thread.join()
        print(count, worst)
    """)
    assert result.returncode == 0, result.stderr
    count, worst = result.stdout.split()
    assert int(count) >= 20  # a serialised run would answer once, after the loop
    assert float(worst) < 0.75


def test_calls_while_the_interpreter_finalizes_do_not_crash():
    result = raw("""
        import threading
        engine = new_engine()
        request = json.dumps({"engine_id": engine, "code": "return 1"}).encode()
        def hammer():
            while True:
                call("luaskills_ffi_run_lua_json", request)
        for _ in range(3):
            threading.Thread(target=hammer, daemon=True).start()
        import time; time.sleep(0.3)
        print("exiting")
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "exiting"


def test_ffi_path_and_ffi_install(tmp_path):
    env = child_env()
    path = subprocess.run([sys.executable, "-m", "luaskills_runtime", "ffi-path"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert path.returncode == 0, path.stderr
    assert path.stdout.strip() == library_path() and os.path.isfile(path.stdout.strip())
    root = tmp_path / "rt"
    installed = subprocess.run([sys.executable, "-m", "luaskills_runtime", "ffi-install", str(root)],
                               env=env, capture_output=True, text=True, timeout=60)
    assert installed.returncode == 0, installed.stderr
    from luaskills_runtime.ffi import sdk_library_name
    target = root / "libs" / sdk_library_name()
    assert installed.stdout.strip() == str(target) and target.is_file()
    # the SDK finds it under the runtime root without LUASKILLS_LIB
    env.pop("LUASKILLS_LIB", None)
    found = subprocess.run(
        [sys.executable, "-c", "from luaskills import LuaSkillsClient; import sys; "
         "c = LuaSkillsClient(runtime_root=sys.argv[1]); print(c.run_lua('return 6 * 7')); c.close()",
         str(root)], env=env, capture_output=True, text=True, timeout=120)
    assert found.returncode == 0, found.stderr
    assert found.stdout.strip() == "42"


def test_ffi_install_reports_failures(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = subprocess.run([sys.executable, "-m", "luaskills_runtime", "ffi-install", str(blocker)],
                            env=child_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.startswith("luaskills-runtime: ffi-install failed: ")


def test_a_package_that_cannot_be_imported_gives_an_error_envelope():
    result = raw("""
        sys.modules["luaskills_runtime"] = None  # every import of the package now fails
        print(json.dumps(call_no_input("luaskills_ffi_version_json")))
    """)
    assert result.returncode == 0, result.stderr
    answer = __import__("json").loads(result.stdout)
    assert answer["ok"] is False
    assert answer["error"].startswith("luaskills_ffi_version_json: the luaskills_runtime dispatcher "
                                      "failed: No module named 'luaskills_runtime.ffi'")
