#!/bin/sh
# Cross-compiles the Windows process core and its harness with mingw-w64 (warnings are errors),
# compiles every other Windows C source of the package the same way, and runs the harness under
# Wine, headless.  Needs x86_64-w64-mingw32-gcc and wine64 (Debian:
# .ci/install-windows-toolchain.sh).  Exit status is the harness's (0 = all passed).
#
# Environment: WINE (wine loader to use), WINEPREFIX (default: a per-user prefix under /tmp,
# created on first use), LSR_WIN_BUILD (output directory, default: a fresh temp directory).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
native=$(cd "$here/.." && pwd)
CC=${CC:-x86_64-w64-mingw32-gcc}

if [ -z "${WINE:-}" ]; then
    for candidate in wine64 /usr/lib/wine/wine64 wine; do
        if command -v "$candidate" >/dev/null 2>&1; then WINE=$candidate; break; fi
    done
fi
command -v "$CC" >/dev/null 2>&1 || { echo "run.sh: $CC not found" >&2; exit 2; }
[ -n "${WINE:-}" ] || { echo "run.sh: wine64 not found" >&2; exit 2; }

out=${LSR_WIN_BUILD:-$(mktemp -d /tmp/lsr-win-build.XXXXXX)}
mkdir -p "$out"

flags="-std=c11 -O2 -Wall -Wextra -Werror -I$native -I$here"
core="$native/proc_windows.c $native/drain_windows.c $native/tree_windows.c \
      $native/winerr_windows.c $native/lsr_error.c $native/notify.c $native/ringbuf.c"
start=$(date +%s)
# shellcheck disable=SC2086
"$CC" $flags -municode -o "$out/lsrchild.exe" "$here/lsrchild.c" &
child_build=$!
# shellcheck disable=SC2086
"$CC" $flags -o "$out/harness.exe" "$here/harness.c" $core
wait "$child_build"
# Every other C source a Windows build compiles (setup.py: every native/*.c but the *_posix.c
# ones, e.g. exec.c and the timeout guard's luahook.c and luaapi_windows.c), compiled only: the
# harness links the process core alone.  New files join by themselves.  Sources written against
# the CPython API (ffi_json.c) are left out, as the Cython modules are: they need the Windows
# Python headers, which a POSIX host lacks; the Windows wheel job compiles them.
others=""
cpython=""
for source in "$native"/*.c; do
    case "$source" in *_posix.c) continue ;; esac
    case " $(echo $core) " in *" $source "*) continue ;; esac
    if grep -q '^#include <Python\.h>' "$source"; then cpython="$cpython $source"; continue; fi
    others="$others $source"
done
mkdir -p "$out/objects"
# shellcheck disable=SC2086
(cd "$out/objects" && "$CC" $flags -c $others)
echo "run.sh: also compiled$(for source in $others; do printf ' %s' "$(basename "$source")"; done)"
echo "run.sh: not compiled (CPython API):$(for source in $cpython; do printf ' %s' "$(basename "$source")"; done)"
echo "run.sh: built with -Wall -Wextra -Werror in $(( $(date +%s) - start )) s"

export WINEDEBUG=-all
export WINEARCH=win64
export WINEDLLOVERRIDES="mscoree,mshtml=;winemenubuilder.exe=d"
export WINEPREFIX=${WINEPREFIX:-/tmp/lsr-wine-$(id -u)}
unset DISPLAY || true
if [ ! -d "$WINEPREFIX" ]; then
    start=$(date +%s)
    "$WINE" wineboot --init >/dev/null 2>&1 || true
    echo "run.sh: created Wine prefix $WINEPREFIX in $(( $(date +%s) - start )) s"
fi

start=$(date +%s)
set +e
"$WINE" "$out/harness.exe" 2>&1
rc=$?
set -e
echo "run.sh: harness ran in $(( $(date +%s) - start )) s (exit $rc)"
# Stop the wineserver of this prefix (and any process the harness may have left in it).
wineserver=$(dirname "$(command -v "$WINE")")/wineserver
[ -x "$wineserver" ] || wineserver=wineserver
WINEPREFIX=$WINEPREFIX "$wineserver" -k >/dev/null 2>&1 || true
[ -z "${LSR_WIN_BUILD:-}" ] && rm -rf "$out"
exit $rc
