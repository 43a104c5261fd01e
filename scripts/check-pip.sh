#!/usr/bin/env bash
# `pip install .` from a clean copy of the source tree, offline, with Debian's tools only
# (ctest `python.pip`, label pip; run by scripts/test.sh):
#   1. copies the files a clone would have (tracked + new, not ignored) to WORK/src;
#   2. /usr/bin/python3 -m venv --system-site-packages WORK/venv, then in WORK/src:
#      WORK/venv/bin/pip install --no-build-isolation --no-index .   (README's command);
#   3. the build wrote nothing in WORK/src outside build/, and build/ is ignored by .gitignore;
#   4. from another folder, `import ctxvars` loads the venv's module, which works;
#   5. the core, headers, CMake package and .pc files are under the venv, with no path
#      into the build; python/example (request_log.cpp) builds against them with
#      find_package(ctxvars), and python/test_cross_language.py passes with the venv's
#      ctxvars: C++ called from Python sees each task's values (one core in the process);
#   6. pip uninstall removes the module and the core.
# Usage: scripts/check-pip.sh [WORK]   (default build/pip-check; WORK is emptied first)
# Jobs: CMAKE_BUILD_PARALLEL_LEVEL (default 2).
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$src/build/pip-check}
mkdir -p "$work"
work=$(cd "$work" && pwd)
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2}
export PIP_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_NO_INPUT=1
unset PYTHONPATH VIRTUAL_ENV PYTHONHOME || true
fail() { echo "check-pip: FAILED: $*" >&2; exit 1; }
step() { echo "check-pip: $*"; }
start=$SECONDS

rm -rf "$work/src" "$work/venv" "$work/ext" "$work/elsewhere" "$work/pip.log"
mkdir -p "$work/src" "$work/elsewhere"

# 1. The source tree as a clone has it.
step "copying the source tree to $work/src"
if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  (cd "$src" && git ls-files -z --cached --others --exclude-standard \
     | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
     | xargs -0 cp --parents -t "$work/src")
else
  (cd "$src" && find . -path ./build -prune -o -path ./.git -prune -o -type f -print0 \
     | xargs -0 cp --parents -t "$work/src")
fi
(cd "$work/src" && find . -type f | sort) > "$work/files.before"

# 2. The README's command.
step "python3 -m venv --system-site-packages; pip install --no-build-isolation --no-index ."
/usr/bin/python3 -m venv --system-site-packages "$work/venv" \
  || fail "python3 -m venv (Debian: python3-venv)"
venv="$work/venv"
if ! (cd "$work/src" && "$venv/bin/pip" install --no-build-isolation --no-index . >"$work/pip.log" 2>&1); then
  tail -n 40 "$work/pip.log" >&2
  fail "pip install (log: $work/pip.log)"
fi
step "pip install done ($((SECONDS - start)) s)"

# 3. Nothing outside build/ in the source tree, and build/ is ignored.
(cd "$work/src" && find . -type f | sort) > "$work/files.after"
new=$(comm -13 "$work/files.before" "$work/files.after" | grep -v '^\./build/' || true)
[ -z "$new" ] || fail "pip install wrote in the source tree outside build/: $(echo "$new" | head -n 5)"
[ -d "$work/src/build/pip" ] || fail "no build/pip in the source copy: where did the build go?"
if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  git -C "$src" check-ignore -q --no-index build/pip/x \
    || fail ".gitignore does not ignore build/ (pip's build directory build/pip)"
fi

# 4. import ctxvars from another folder.
cd "$work/elsewhere"
"$venv/bin/python" -X dev -c '
import sys, ctxvars
assert ctxvars.__file__.startswith(sys.argv[1] + "/lib/"), ctxvars.__file__
v = ctxvars.ContextVar("v", default=1)
ctx = ctxvars.copy_context()
t = v.set(2)
assert (v.get(), ctx.run(v.get)) == (2, 1)
v.reset(t)
print("check-pip: import ctxvars from", sys.argv[2], "->", ctxvars.__file__)
' "$venv" "$PWD" || fail "import ctxvars from $PWD"

# 5. A C++ extension against the installed core.
prefix=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("data"))')
[ "$prefix" = "$venv" ] || fail "sysconfig's data path is $prefix, not the venv"
for f in include/ctxvars/python.hpp include/ctxvars/ctxvars.hpp lib/libctxvars_shared.so \
         lib/cmake/ctxvars/ctxvarsConfig.cmake lib/pkgconfig/ctxvars.pc; do
  [ -e "$prefix/$f" ] || fail "$prefix/$f is not installed"
done
if grep -rl -e "$work/src" "$prefix/lib/cmake" "$prefix/lib/pkgconfig" >&2; then
  fail "installed files refer to the build directory"
fi
pc_include=$(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --variable=includedir ctxvars) \
  || fail "pkg-config ctxvars with PKG_CONFIG_PATH=$prefix/lib/pkgconfig"
[ "$(realpath "$pc_include")" = "$(realpath "$prefix/include")" ] \
  || fail "ctxvars.pc's includedir is $pc_include, not $prefix/include"
step "building python/example (request_log) against $prefix"
gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
if ! { cmake -S "$src/python/example" -B "$work/ext" "${gen[@]}" -DPython_EXECUTABLE="$venv/bin/python" \
         -DCMAKE_PREFIX_PATH="$prefix" && cmake --build "$work/ext"; } >"$work/ext.log" 2>&1; then
  tail -n 40 "$work/ext.log" >&2
  fail "building the extension against the installed ctxvars (log: $work/ext.log)"
fi
PYTHONPATH="$work/ext" "$venv/bin/python" -X dev -c '
import sys, ctxvars, request_log
assert ctxvars.__file__.startswith(sys.argv[1]), ctxvars.__file__
assert request_log.__file__.startswith(sys.argv[2]), request_log.__file__
with open("/proc/self/maps") as maps:
    cores = {line.split()[-1] for line in maps if "libctxvars_shared" in line}
assert len(cores) == 1 and next(iter(cores)).startswith(sys.argv[1]), cores
tok = request_log.request_id.set("from-python")
assert request_log.log_line("m") == "[from-python] m", request_log.log_line("m")
request_log.request_id.reset(tok)
print("check-pip: one core,", next(iter(cores)))
' "$venv" "$work/ext" || fail "the extension and ctxvars do not share the installed core"
PYTHONPATH="$work/ext" "$venv/bin/python" -X dev "$src/python/test_cross_language.py" 2>&1 | tail -n 3
[ "${PIPESTATUS[0]}" -eq 0 ] || fail "python/test_cross_language.py against the installed ctxvars"

# 6. pip uninstall takes everything away.
"$venv/bin/pip" uninstall -y ctxvars >/dev/null || fail "pip uninstall"
left=$(cd "$prefix" && ls -d lib/libctxvars* lib/cmake/ctxvars/*.cmake include/ctxvars/*.hpp \
         lib/python3*/site-packages/ctxvars* 2>/dev/null || true)
[ -z "$left" ] || fail "pip uninstall left: $(echo "$left" | head -n 5)"

step "ok ($((SECONDS - start)) s)"
