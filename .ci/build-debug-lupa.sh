#!/usr/bin/env bash
# Build lupa 2.8's luajit21 module from its sdist with LuaJIT's own checks on (LUA_USE_ASSERT,
# LUA_USE_APICHECK) into a cache directory, and print that directory.  The JIT guard's debug soak
# (tests/lua/test_jit_guard_debug_luajit.py) runs with it first on PYTHONPATH: a race between the
# watchdog and the trace recorder shows up there as a failed LuaJIT assertion (abort).
# ~2 minutes on two cores; reused while the cache directory lives.
set -euo pipefail
cache="${LUASKILLS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/luaskills-runtime}/debug-lupa-2.8"
if [ -f "$cache/lupa/.complete" ]; then
  echo "$cache"
  exit 0
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python -m pip install --quiet "Cython>=3.0" setuptools >&2
# pip runs the sdist's setup.py to read its metadata; LUPA_NO_LUAJIT=true keeps lupa's setup.py from
# building its bundled LuaJITs then (as tests/lua/lua_reference/build_luajit.py does).
LUPA_NO_LUAJIT=true python -m pip download --quiet --no-deps --no-binary :all: "lupa==2.8" -d "$work" >&2
tar xzf "$work/lupa-2.8.tar.gz" -C "$work"
src="$work/lupa-2.8"
for bundle in "$src"/third-party/lua*; do
  [ "$(basename "$bundle")" = luajit21 ] || rm -rf "$bundle"   # only the LuaJIT 2.1 module
done
# The sdist carries no git metadata; LuaJIT takes its release number (and so the exported
# version symbol the guard's self-check looks for) from .relver: that of lupa 2.8's wheels.
echo 1774896198 > "$src/third-party/luajit21/.relver"
if ! (cd "$src" && CFLAGS="-DLUA_USE_ASSERT -DLUA_USE_APICHECK -O1 -g" \
      python setup.py build_ext -i --with-lua-checks --with-cython >"$work/build.log" 2>&1); then
  cat "$work/build.log" >&2
  exit 1
fi
mkdir -p "$cache/lupa"
cp "$src/lupa/__init__.py" "$src/lupa/version.py" "$src"/lupa/luajit21.*.so "$cache/lupa/"
touch "$cache/lupa/.complete"
echo "$cache"
