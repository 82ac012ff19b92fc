#!/usr/bin/env bash
# Checks the source distribution the way a platform without a wheel uses it:
#   1. builds the sdist (python -m build --sdist) from a clean copy of the tree and checks it holds
#      every tracked file under native/, src/ and examples/ (a Windows-only file the Linux build
#      never reads still counts);
#   2. builds a wheel from the unpacked sdist (build's isolated, fresh environment);
#   3. installs that wheel into a fresh venv and, from outside the checkout, runs the README's
#      main job (luaskills-runtime run examples/system_report.lua, the copy from the sdist) and
#      `luaskills-runtime --version`;
#   4. shows the wheel's platform tag with `auditwheel show` when auditwheel is installed.
# Any warning in the sdist or wheel build logs fails the check (the build must be clean).
# Needs `build` (and, optionally, auditwheel) in the running Python: .ci/requirements-dist.txt.
# LSR_SDIST_OUT=DIR keeps a copy of the checked sdist there (the release workflow uploads it).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
python=${PYTHON:-python}

work=$(mktemp -d /tmp/lsr-sdist.XXXXXX)
trap 'rm -rf "$work"' EXIT
start=$(date +%s)

# setuptools warns "byte-compiling is disabled" when PYTHONDONTWRITEBYTECODE is set; that is this
# machine's setting, not the project's, so builds run without it.
build() { env -u PYTHONDONTWRITEBYTECODE "$python" -m build "$@"; }

# The sdist is built from a clean copy of the tree (the files git tracks or would track): a
# checkout that was built before has an egg-info whose SOURCES.txt setuptools would merge into the
# sdist, hiding a file MANIFEST.in misses.
srcdir=.
if command -v git >/dev/null && git -C "$root" rev-parse --git-dir >/dev/null 2>&1; then
  mkdir "$work/tree"
  git -C "$root" ls-files -z -c -o --exclude-standard |
    while IFS= read -r -d '' path; do if [ -e "$path" ]; then printf '%s\n' "$path"; fi; done >"$work/files"
  tar -cf - -T "$work/files" | tar -xf - -C "$work/tree"
  srcdir="$work/tree"
fi

echo "check-sdist: building the sdist"
build --sdist --outdir "$work/dist" "$srcdir" >"$work/sdist.log" 2>&1 || { cat "$work/sdist.log"; exit 1; }
sdist=$(ls "$work"/dist/*.tar.gz)
if grep -i -n "warning" "$work/sdist.log"; then
  echo "check-sdist: the sdist build printed warnings (above)" >&2
  exit 1
fi

mkdir "$work/src"
tar -xzf "$sdist" -C "$work/src"
unpacked=$(ls -d "$work"/src/*/)
if command -v git >/dev/null && git -C "$root" rev-parse --git-dir >/dev/null 2>&1; then
  missing=0
  while IFS= read -r path; do
    if [ ! -e "$unpacked/$path" ]; then
      echo "check-sdist: missing from the sdist: $path" >&2
      missing=1
    fi
  done < <(git -C "$root" ls-files native src examples LICENSE CHANGELOG.md README.md)
  [ "$missing" = 0 ] || exit 1
fi

echo "check-sdist: building a wheel from $(basename "$sdist")"
build --wheel --outdir "$work/wheel" "$unpacked" >"$work/wheel.log" 2>&1 || { cat "$work/wheel.log"; exit 1; }
wheel=$(ls "$work"/wheel/*.whl)
if grep -i -n "warning" "$work/wheel.log"; then
  echo "check-sdist: the wheel build printed warnings (above)" >&2
  exit 1
fi

echo "check-sdist: installing $(basename "$wheel") into a fresh venv"
"$python" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet "$wheel"

# From outside the checkout, so that nothing of the source tree can be imported by accident.
cd "$work"
report=$("$work/venv/bin/luaskills-runtime" run "$unpacked/examples/system_report.lua")
case "$report" in
  "# Runtime Execution Result"*"## Status"*SUCCESS*) ;;
  *) printf '%s\n' "$report"; echo "check-sdist: the README's main job failed" >&2; exit 1 ;;
esac
"$work/venv/bin/luaskills-runtime" --version
cd "$root"

if command -v auditwheel >/dev/null; then
  auditwheel show "$wheel"
else
  echo "check-sdist: auditwheel not installed, platform tag not shown"
fi
if [ -n "${LSR_SDIST_OUT:-}" ]; then
  mkdir -p "$LSR_SDIST_OUT"
  cp "$sdist" "$LSR_SDIST_OUT/"
fi
echo "check-sdist: passed in $(( $(date +%s) - start )) s"
