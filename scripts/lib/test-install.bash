#!/usr/bin/env bash
# Tests scripts/install: installs cvmem into a temporary PREFIX, then runs
# the installed `cvmem doctor` and two short `cvmem run`s from a directory
# outside the checkout, with a bare environment (no CVMEM_* variables, no
# cargo, the checkout on no path), and checks that each took QEMU, the
# plugin and efiboot from PREFIX, not from the checkout or the cache:
#
#   doctor                       exits 0 and says "installed in PREFIX",
#                                naming PREFIX's QEMU, plugin and efiboot
#   run selftest.elf             a default VM: exits 0, the printed QEMU
#                                command line runs PREFIX's QEMU and plugin
#   run --vm-type tdx tdx.elf    a TD the modelled KVM stops (mmio-private):
#                                exits 5
#   run --vm-type tdx --kernel bzImage   a TD that starts from PREFIX's
#                                efiboot.fd at the reset vector, which
#                                loads the kernel: a made-up bzImage header
#                                with nothing behind it, which efiboot
#                                refuses (isa-debug-exit 3: exit 7)
#
# The guest images are copied out of the checkout first. Reuses the cached
# QEMU build ($CVMEM_QEMU or scripts/build-qemu) and the release build: a
# few seconds once they exist. scripts/test runs it; prints
# 'install test: N passed, N failed'.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.bash"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/cvmem-test-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix

checks=0 failures=0
check() {  # check WHAT COMMAND...: COMMAND must succeed
  local what=$1; shift
  checks=$((checks + 1))
  if ! "$@"; then printf 'FAIL: %s\n' "$what" >&2; failures=$((failures + 1)); fi
}

"$CVMEM_TOP/scripts/install" "$prefix" 2>"$tmp/install.log" \
  || { cat "$tmp/install.log" >&2; cvmem_die "scripts/install $prefix failed"; }
for f in bin/cvmem bin/cvmem-ctl bin/cvmem-snp-verify lib/cvmem/libcvmem.so \
         libexec/cvmem/qemu-system-x86_64 share/cvmem/efiboot.fd share/cvmem/efiboot.elf \
         share/cvmem/qemu-plugin-cvm.h share/doc/cvmem/index.html share/doc/cvmem/install.html; do
  check "installed $f" test -s "$prefix/$f"
done

mkdir -p "$tmp/work"
make -s -C "$CVMEM_TOP/guest-tests" O="$CVMEM_GUEST_BUILD" \
  "$CVMEM_GUEST_BUILD/selftest.elf" "$CVMEM_GUEST_BUILD/tdx.elf" >&2 \
  || cvmem_die "the guest images do not build"
cp "$CVMEM_GUEST_BUILD/selftest.elf" "$CVMEM_GUEST_BUILD/tdx.elf" "$tmp/work/"
# What cvmem run checks of a bzImage (the boot protocol's "HdrS" at 0x202,
# version 2.15, one setup sector) and no kernel: a TD's efiboot.fd starts,
# accepts the TD's memory, reads it through fw_cfg and gives up.
python3 -c '
import struct, sys
b = bytearray(8192)
b[0x1f1] = 1
b[0x202:0x206] = b"HdrS"
struct.pack_into("<H", b, 0x206, 0x020f)
open(sys.argv[1], "wb").write(b)' "$tmp/work/bzImage"
# As a user would run it: HOME and a PATH with the system's tools only.
installed() {
  (cd "$tmp/work" && timeout --kill-after=5 120 \
     env -i HOME="$HOME" PATH=/usr/sbin:/usr/bin:/sbin:/bin "$prefix/bin/cvmem" "$@")
}

rc=0
installed doctor >"$tmp/doctor.log" 2>&1 || rc=$?
check "cvmem doctor exits 0 (it exited $rc)" test $rc = 0
check "doctor says it is installed in $prefix" grep -qF "ok       installed in $prefix:" "$tmp/doctor.log"
check "doctor's QEMU is $prefix's" grep -qxF "ok       QEMU: $prefix/libexec/cvmem/qemu-system-x86_64" "$tmp/doctor.log"
check "doctor's plugin is $prefix's" grep -qxF "ok       plugin: $prefix/lib/cvmem/libcvmem.so" "$tmp/doctor.log"
check "doctor's efiboot.fd is $prefix's" grep -qxF "ok       efiboot.fd: $prefix/share/cvmem/efiboot.fd" "$tmp/doctor.log"
check "doctor runs the plugin in QEMU" grep -q "^ok       the plugin runs in QEMU in enforcing mode" "$tmp/doctor.log"

# run LOG STATUS ARGS...: the installed cvmem run, which must exit STATUS
# and print a QEMU command line made of PREFIX's QEMU and plugin.
run() {
  local log=$tmp/$1 want=$2 rc=0; shift 2
  installed run "$@" </dev/null >"$log" 2>&1 || rc=$?
  check "cvmem run $* exits $want (it exited $rc)" test $rc = "$want"
  check "cvmem run $* runs $prefix's QEMU" grep -qF "\$ $prefix/libexec/cvmem/qemu-system-x86_64 " "$log"
  # shlex quotes the -plugin argument (its '=' and ',').
  check "cvmem run $* loads $prefix's plugin" grep -qF -- "-plugin '$prefix/lib/cvmem/libcvmem.so," "$log"
}
run default.log 0 --vm-type default --kernel selftest.elf
check "the default VM's test passed" grep -q "^cvmem summary: the guest asked QEMU to exit with status 1 (isa-debug-exit)$" "$tmp/default.log"
run tdx.log 5 --vm-type tdx --kernel tdx.elf --append mmio-private
check "the TD was stopped" grep -q "^cvmem summary: VM stopped by the modelled KVM" "$tmp/tdx.log"
run efiboot.log 7 --vm-type tdx -m 256M --kernel bzImage
check "the TD's firmware is $prefix's efiboot.fd" grep -qF -- "-bios $prefix/share/cvmem/efiboot.fd " "$tmp/efiboot.log"
check "the TD started from it" grep -q "^  tdx start  *from TDVF at the reset vector" "$tmp/efiboot.log"
check "efiboot ran and refused the kernel" grep -q "^FAIL: efiboot: .*bzImage" "$tmp/efiboot.log"

if [ $failures != 0 ]; then
  for l in install doctor default tdx efiboot; do
    printf '\n--- %s.log\n' "$l" >&2
    tail -n 25 "$tmp/$l.log" >&2
  done
fi
printf 'install test: %d passed, %d failed\n' $((checks - failures)) $failures
[ $failures = 0 ]
