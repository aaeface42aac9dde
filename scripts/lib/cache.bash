# The cache outside the checkout: where it is, and which QEMU builds it
# keeps. Sourced by lib/common.bash, scripts/setup and scripts/build-qemu;
# tested by lib/test-cache.bash (no QEMU build needed). Source it; do not
# run it.

# Everything cvmem keeps between runs lives here: the setup stamp
# (setup.stamp), the QEMU source (src/), the QEMU builds (qemu-<hash>/,
# qemu-vanilla-<hash>/), ccache's objects for them (ccache/) and the Linux
# guest's packages and initramfs (linux/). A new empty directory makes a run
# start as on a fresh machine (CVMEM_FRESH=1 scripts/test).
CVMEM_CACHE="${CVMEM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cvmem}"

# How many complete builds of each kind cvmem_cache_prune keeps (a build is
# about 1 GiB with its objects).
CVMEM_KEEP_PATCHED=3
CVMEM_KEEP_VANILLA=1

# cvmem_cache_prune DIR [KEEP...]
#
# Removes all but the newest complete QEMU builds in DIR: CVMEM_KEEP_PATCHED
# of the patched ones (qemu-<16 hex digits>) and CVMEM_KEEP_VANILLA of the
# vanilla ones (qemu-vanilla-<16 hex digits>). A build is complete when it
# has .complete (build-qemu writes it last), and its age is that file's
# mtime. Each KEEP (a build's path or name, e.g. the one just built) stays
# whatever its age and counts towards its kind's limit.
#
# Never removed: builds without .complete (under way in another run, or
# left by a killed one, which build-qemu redoes when it builds that key
# again), symlinks and other non-directories, and every other name in DIR
# (src/, linux/, ccache/, the lock, names that only look like builds).
# build-qemu calls it holding its lock, so no other build-qemu is writing a
# build meanwhile. It works with zero, one or many builds of each kind,
# under set -euo pipefail, and never fails its caller: a build it cannot
# remove is reported on stderr and left.
cvmem_cache_prune() {
  local dir=$1; shift
  local -A keep=()
  local k
  for k in "$@"; do
    k=${k%/} k=${k##*/}
    [ -z "$k" ] || keep["$k"]=1
  done
  [ -d "$dir" ] || return 0

  local restore paths=()
  restore=$(shopt -p nullglob || true)
  shopt -s nullglob
  paths=("$dir"/qemu-*)
  eval "$restore"

  local kind re limit path name mtime kept line
  local -a builds
  for kind in "qemu-[0-9a-f]{16} $CVMEM_KEEP_PATCHED" "qemu-vanilla-[0-9a-f]{16} $CVMEM_KEEP_VANILLA"; do
    read -r re limit <<< "$kind"
    builds=() kept=0
    for path in "${paths[@]}"; do
      name=${path##*/}
      [[ "$name" =~ ^${re}$ ]] || continue
      if [ ! -d "$path" ] || [ -L "$path" ] || [ ! -f "$path/.complete" ]; then continue; fi
      if [ -n "${keep[$name]:-}" ]; then kept=$((kept + 1)); continue; fi
      mtime=$(stat -c %.9Y -- "$path/.complete" 2>/dev/null) || continue
      # Names are checked above (hex digits only), so lines are safe to sort.
      builds+=("$mtime $name")
    done
    [ ${#builds[@]} -gt 0 ] || continue
    # Newest first; equal times in name order, so the result does not
    # depend on the order of the directory.
    mapfile -t builds < <(printf '%s\n' "${builds[@]}" | LC_ALL=C sort -k1,1nr -k2,2)
    for line in "${builds[@]}"; do
      name=${line#* }
      if [ "$kept" -lt "$limit" ]; then kept=$((kept + 1)); continue; fi
      printf '%s: removing the old build %s\n' "${0##*/}" "$dir/$name" >&2
      # Incomplete first, so that nobody takes it for a finished build
      # while it goes.
      rm -f -- "$dir/$name/.complete" && rm -rf -- "${dir:?}/$name" \
        || printf '%s: warning: could not remove %s\n' "${0##*/}" "$dir/$name" >&2
    done
  done
  return 0
}
