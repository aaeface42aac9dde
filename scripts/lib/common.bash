# Shared by the scripts in scripts/: locations, the build steps every script
# needs, and the QEMU command line for a guest test. Source it; do not run it.

CVMEM_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CVMEM_CACHE="${CVMEM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cvmem}"
CVMEM_GUEST_BUILD="${CVMEM_GUEST_BUILD:-$CVMEM_TOP/target/guest-tests}"
CVMEM_PLUGIN_DEFAULT="$CVMEM_TOP/target/release/libcvmem.so"
# Debian's unpatched QEMU from bookworm-backports: audit mode.
CVMEM_DEBIAN_QEMU=/usr/bin/qemu-system-x86_64

# Firmware for the source-built QEMU (bios-256k.bin, linuxboot_dma.bin, ...).
CVMEM_FIRMWARE_ARGS=(-L /usr/share/seabios -L /usr/lib/ipxe/qemu -L /usr/share/qemu)

cvmem_die() { printf '%s: error: %s\n' "$(basename "$0")" "$*" >&2; exit 1; }

# Sets CVMEM_QEMU to the patched QEMU, building it if needed (cached).
cvmem_need_qemu() {
  if [ -z "${CVMEM_QEMU:-}" ]; then
    CVMEM_QEMU=$("$CVMEM_TOP/scripts/build-qemu" | tail -n 1) || cvmem_die "build-qemu failed"
  fi
  [ -x "$CVMEM_QEMU" ] || cvmem_die "no QEMU at $CVMEM_QEMU"
  export CVMEM_QEMU
}

# Sets CVMEM_PLUGIN to libcvmem.so, building it (release) if needed.
cvmem_need_plugin() {
  if [ -z "${CVMEM_PLUGIN:-}" ]; then
    (cd "$CVMEM_TOP" && cargo build --release --quiet -p cvmem) || cvmem_die "cargo build failed"
    CVMEM_PLUGIN=$CVMEM_PLUGIN_DEFAULT
  fi
  [ -f "$CVMEM_PLUGIN" ] || cvmem_die "no plugin at $CVMEM_PLUGIN"
  export CVMEM_PLUGIN
}

# Builds every guest-test image into $CVMEM_GUEST_BUILD.
cvmem_need_guest_images() {
  make -s -C "$CVMEM_TOP/guest-tests" O="$CVMEM_GUEST_BUILD" >&2 || cvmem_die "guest images do not build"
}

# The QEMU command line every guest test starts from (kvm-unit-tests style:
# serial on stdout, isa-debug-exit at 0xf4 for the verdict, no reboot).
cvmem_guest_cmdline() {
  local qemu=$1 image=$2
  CVMEM_CMD=("$qemu" -machine pc -cpu max -m 256M -display none -nodefaults
             -serial stdio -no-reboot -device isa-debug-exit,iobase=0xf4,iosize=0x04
             "${CVMEM_FIRMWARE_ARGS[@]}" -kernel "$image")
}
