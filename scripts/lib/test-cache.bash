#!/usr/bin/env bash
# Tests the cache bookkeeping of lib/cache.bash (cvmem_cache_prune, which
# scripts/build-qemu runs after each build) on made-up caches in a temporary
# directory: no QEMU build, nothing outside that directory touched.
#
#   scripts/lib/test-cache.bash
#
# Each case builds a cache (empty, missing, only patched builds, only
# vanilla ones, more than the limits with mtimes set by touch -d, a build
# left half done, names that only look like builds, a path with spaces),
# prunes it as build-qemu does, under set -euo pipefail, and compares
# every name left in it with the expected list. scripts/test runs it.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/cache.bash"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/cvmem-test-cache.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

failures=0 cases=0
fail() { printf 'FAIL: %s\n' "$*" >&2; failures=$((failures + 1)); }

# 16-hex-digit keys, as build-qemu's.
P1=1111111111111111 P2=2222222222222222 P3=3333333333333333
P4=4444444444444444 P5=5555555555555555 P6=6666666666666666
V1=aaaaaaaaaaaaaaaa V2=bbbbbbbbbbbbbbbb V3=cccccccccccccccc

# build DIR NAME DAY: a complete build finished on day DAY of January 2024.
build() {
  mkdir -p "$1/$2/build" "$1/$2/src"
  : > "$1/$2/build/qemu-system-x86_64"
  touch -d "2024-01-$3 12:00:00" "$1/$2/.complete"
}
# half DIR NAME: a build under way (or abandoned): no .complete.
half() {
  mkdir -p "$1/$2/build"
  : > "$1/$2/build/build.ninja"
}
# new_cache NAME: a fresh cache directory for one case, with what build-qemu
# and the other scripts keep next to the builds.
new_cache() {
  local c="$tmp/$1"
  mkdir -p "$c/src" "$c/linux"
  : > "$c/build-qemu.lock"
  echo 4 > "$c/setup.stamp"
  printf '%s\n' "$c"
}
# left DIR: every name in DIR (dot files too), sorted, one a line.
left() {
  local restore names=()
  restore=$(shopt -p nullglob dotglob || true)
  shopt -s nullglob dotglob
  names=("$1"/*)
  eval "$restore"
  [ ${#names[@]} -gt 0 ] || return 0
  printf '%s\n' "${names[@]##*/}" | LC_ALL=C sort
}
# expect CASE DIR NAME...: DIR holds exactly the NAMEs (and the files
# new_cache made).
expect() {
  local what=$1 dir=$2 want got; shift 2
  cases=$((cases + 1))
  want=$(printf '%s\n' build-qemu.lock linux setup.stamp src "$@" | LC_ALL=C sort)
  got=$(left "$dir")
  if [ "$got" != "$want" ]; then
    fail "$what: left" $'\n'"$got"$'\n'"expected"$'\n'"$want"
  fi
}
# prune DIR [KEEP...]: as build-qemu does; must succeed.
prune() {
  cvmem_cache_prune "$@" 2>>"$tmp/prune.log" || fail "cvmem_cache_prune $* failed"
}

# A cache that does not exist yet: nothing to do, nothing made.
cases=$((cases + 1))
prune "$tmp/none"
[ ! -e "$tmp/none" ] || fail "missing cache: it was created"

# An empty cache (not even the lock).
c="$tmp/empty"; mkdir -p "$c"
prune "$c"
cases=$((cases + 1))
[ -z "$(left "$c")" ] || fail "empty cache: now holds $(left "$c")"

# The first build on a fresh machine: one patched build, no vanilla one
# (what used to kill build-qemu after a successful build).
c=$(new_cache first)
build "$c" "qemu-$P1" 01
prune "$c" "$c/qemu-$P1"
expect "one patched build" "$c" "qemu-$P1"

# The first vanilla build, no patched one.
c=$(new_cache first-vanilla)
build "$c" "qemu-vanilla-$V1" 01
prune "$c" "$c/qemu-vanilla-$V1/"
expect "one vanilla build" "$c" "qemu-vanilla-$V1"

# Only patched builds, more than the limit: the three newest stay. They
# were made in another order than their age, so that directory order and
# creation order do not help.
c=$(new_cache patched)
build "$c" "qemu-$P3" 03; build "$c" "qemu-$P1" 05; build "$c" "qemu-$P5" 01
build "$c" "qemu-$P2" 04; build "$c" "qemu-$P4" 02
prune "$c" "$c/qemu-$P1"
expect "five patched builds" "$c" "qemu-$P1" "qemu-$P2" "qemu-$P3"

# Only vanilla builds: the newest stays.
c=$(new_cache vanilla)
build "$c" "qemu-vanilla-$V2" 07; build "$c" "qemu-vanilla-$V1" 09; build "$c" "qemu-vanilla-$V3" 08
prune "$c" "$c/qemu-vanilla-$V1"
expect "three vanilla builds" "$c" "qemu-vanilla-$V1"

# The build just made is kept even when it is not the newest (a clock
# that went back) and counts towards the limit: it and the two newest
# others stay.
c=$(new_cache kept-old)
build "$c" "qemu-$P1" 01; build "$c" "qemu-$P2" 02; build "$c" "qemu-$P3" 03
build "$c" "qemu-$P4" 04; build "$c" "qemu-$P5" 05
build "$c" "qemu-vanilla-$V1" 02; build "$c" "qemu-vanilla-$V2" 03
prune "$c" "$c/qemu-$P1"
expect "just built, oldest" "$c" "qemu-$P1" "qemu-$P4" "qemu-$P5" "qemu-vanilla-$V2"
# A vanilla build just made, older than the one there: only it stays.
build "$c" "qemu-vanilla-$V1" 02
prune "$c" "qemu-vanilla-$V1"
expect "vanilla just built, older" "$c" "qemu-$P1" "qemu-$P4" "qemu-$P5" "qemu-vanilla-$V1"

# Everything at once: a half-done build (another run's, older and newer
# than the rest), names that only look like builds, a file and a symlink
# with a build's name; both kinds over their limits. Only complete builds
# of the two exact forms count, and only they go.
c=$(new_cache mixed)
for i in 1 2 3 4 5; do build "$c" "qemu-$(printf '%016d' "$i")" "1$i"; done
build "$c" "qemu-vanilla-$V1" 01; build "$c" "qemu-vanilla-$V2" 02
half "$c" "qemu-$P6"
half "$c" "qemu-vanilla-$V3"
touch -d "2024-01-01" "$c/qemu-$P6"
build "$c" "qemu-$P6-old" 01                 # 16 hex digits, then more
build "$c" "qemu-ABCDEF0123456789" 01        # not lower-case hex
build "$c" "qemu-123456789abcdef" 01         # 15 digits
build "$c" "qemu-0123456789abcdef x" 01      # a space
build "$c" $'qemu-0123456789abcdef\nqemu-1' 01  # a newline
build "$c" "qemu-vanilla-$V3-" 01
build "$c" "qemu-vanilla" 01
: > "$c/qemu-fedcba9876543210"               # a file
build "$tmp" "elsewhere" 01                  # a symlink to a build
ln -s "$tmp/elsewhere" "$c/qemu-0123456789abcdef"
prune "$c" "$c/qemu-0000000000000005"
expect "mixed" "$c" \
  qemu-0000000000000003 qemu-0000000000000004 qemu-0000000000000005 \
  "qemu-$P6" "qemu-vanilla-$V2" "qemu-vanilla-$V3" \
  "qemu-$P6-old" qemu-ABCDEF0123456789 qemu-123456789abcdef \
  "qemu-0123456789abcdef x" $'qemu-0123456789abcdef\nqemu-1' \
  "qemu-vanilla-$V3-" qemu-vanilla qemu-fedcba9876543210 qemu-0123456789abcdef
cases=$((cases + 1))
[ -f "$tmp/elsewhere/.complete" ] || fail "mixed: the symlink's target was removed"
# The half-done build finishes, newest of all: it and the two newest stay.
touch -d "2024-01-20" "$c/qemu-$P6/.complete"
prune "$c" "$c/qemu-$P6"
expect "half-done build finished" "$c" \
  qemu-0000000000000004 qemu-0000000000000005 "qemu-$P6" \
  "qemu-vanilla-$V2" "qemu-vanilla-$V3" \
  "qemu-$P6-old" qemu-ABCDEF0123456789 qemu-123456789abcdef \
  "qemu-0123456789abcdef x" $'qemu-0123456789abcdef\nqemu-1' \
  "qemu-vanilla-$V3-" qemu-vanilla qemu-fedcba9876543210 qemu-0123456789abcdef
# Pruning again changes nothing.
prune "$c"
expect "pruned twice" "$c" \
  qemu-0000000000000004 qemu-0000000000000005 "qemu-$P6" \
  "qemu-vanilla-$V2" "qemu-vanilla-$V3" \
  "qemu-$P6-old" qemu-ABCDEF0123456789 qemu-123456789abcdef \
  "qemu-0123456789abcdef x" $'qemu-0123456789abcdef\nqemu-1' \
  "qemu-vanilla-$V3-" qemu-vanilla qemu-fedcba9876543210 qemu-0123456789abcdef

# A cache path with spaces and glob characters.
c=$(new_cache 'odd [path] * ?')
build "$c" "qemu-$P1" 01; build "$c" "qemu-$P2" 02; build "$c" "qemu-$P3" 03; build "$c" "qemu-$P4" 04
build "$c" "qemu-vanilla-$V1" 01; build "$c" "qemu-vanilla-$V2" 02
prune "$c" "$c/qemu-$P4"
expect "odd cache path" "$c" "qemu-$P2" "qemu-$P3" "qemu-$P4" "qemu-vanilla-$V2"

# Builds finished in the same second: the sub-second mtime decides.
c=$(new_cache same-second)
for i in 1 2 3 4; do
  mkdir -p "$c/qemu-$(printf '%016d' "$i")"
  touch -d "2024-01-01 12:00:00.$i" "$c/qemu-$(printf '%016d' "$i")/.complete"
done
prune "$c"
expect "same second" "$c" qemu-0000000000000002 qemu-0000000000000003 qemu-0000000000000004

# The caller's shell options are left as they were.
cases=$((cases + 1))
shopt -u nullglob
prune "$tmp/mixed"
! shopt -q nullglob || fail "cvmem_cache_prune left nullglob on"
shopt -s nullglob
prune "$tmp/mixed"
shopt -q nullglob || fail "cvmem_cache_prune turned nullglob off"
shopt -u nullglob

if [ "$failures" -gt 0 ]; then
  printf 'cache self-test: %d of %d checks failed; what it removed:\n' "$failures" "$cases" >&2
  sed 's/^/    /' "$tmp/prune.log" >&2
  exit 1
fi
echo "cache self-test passed ($cases checks)"
