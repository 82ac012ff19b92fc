#!/bin/sh
# Installs what native/tests_windows/run.sh needs on Debian 12: the mingw-w64 cross compiler for
# 64-bit Windows and a 64-bit Wine to run the harness headless.  Run as root (or via sudo).
set -eu
export DEBIAN_FRONTEND=noninteractive
start=$(date +%s)
apt-get update
apt-get install -y --no-install-recommends gcc-mingw-w64-x86-64 wine64
end=$(date +%s)
# Debian's wine64 package puts the loader in /usr/lib/wine, not on PATH; run.sh looks there too.
x86_64-w64-mingw32-gcc --version | head -n 1
/usr/lib/wine/wine64 --version 2>/dev/null || wine64 --version
echo "install-windows-toolchain: done in $((end - start)) s"
