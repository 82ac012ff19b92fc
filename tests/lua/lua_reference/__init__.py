"""Reference LuaJIT binaries for the dialect test (see build_luajit.py)."""
