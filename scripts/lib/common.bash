# Shared by the scripts in scripts/: locations, the build steps every script
# needs, the QEMU command line for a guest test and the verdict on its run.
# Source it; do not run it.

CVMEM_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# CVMEM_CACHE and the build pruning.
source "$CVMEM_TOP/scripts/lib/cache.bash"
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

# Sets CVMEM_CMD to run firmware image FD (guest-tests/firmware/*.S) as
# -bios on q35 under QEMU, with isa-debug-exit for its verdict.
cvmem_firmware_cmdline() {
  local qemu=$1 fd=$2
  CVMEM_CMD=("$qemu" -machine q35 -cpu max -m 256M -display none -nodefaults
             -serial stdio -no-reboot -device isa-debug-exit,iobase=0xf4,iosize=0x04
             "${CVMEM_FIRMWARE_ARGS[@]}" -bios "$fd")
}

# Sets CVMEM_LINUX to the directory with the Debian kernel (vmlinuz) and
# the test initramfs (initrd.cpio), fetching and building them if needed
# (scripts/linux-guest, cached).
cvmem_need_linux() {
  if [ -z "${CVMEM_LINUX:-}" ]; then
    CVMEM_LINUX=$("$CVMEM_TOP/scripts/linux-guest" | tail -n 1) || cvmem_die "linux-guest failed"
  fi
  [ -f "$CVMEM_LINUX/vmlinuz" ] && [ -f "$CVMEM_LINUX/initrd.cpio" ] || cvmem_die "no kernel and initrd in $CVMEM_LINUX"
  export CVMEM_LINUX
}

# The QEMU command line of a Linux guest test: the Debian kernel booted
# directly with the test initramfs, its console on the serial port and so on
# stdout. APPEND goes after the runner's kernel arguments. panic=-1 with
# -no-reboot makes a kernel panic end QEMU at once instead of waiting for
# the timeout; /init ends with a power-off (QEMU exit status 0). BOOT says
# who loads the kernel:
#   seabios           SeaBIOS and QEMU's linuxboot option ROM (default)
#   ovmf [FILE]       OVMF as -bios (FILE beside the kernel, default
#                     OVMF.fd: Debian bookworm's), loading the kernel
#                     through fw_cfg
#   efiboot [ARGS]    SeaBIOS starts guest-tests/boot/efiboot.c as a
#                     Multiboot image with ARGS as its command line; it
#                     hands the kernel (module 1) and initramfs (module 2)
#                     EFI boot information (unaccepted memory, ACPI)
#   disk [FILE]       OVMF as -bios (FILE as for ovmf) boots disk.img
#                     (scripts/lib/make-disk-image) from a virtio-blk disk:
#                     GRUB loads the kernel and initramfs from it with its
#                     own command line, and APPEND reaches it as an SMBIOS
#                     OEM string, which grub.cfg appends
cvmem_linux_cmdline() {
  local qemu=$1 append=$2 boot=${3:-seabios} vmtype=${4:-none} kargs
  kargs="console=ttyS0 panic=-1${append:+ $append}"
  local machine=pc
  [[ "$boot" != ovmf* ]] && [[ "$boot" != disk* ]] || machine=q35
  # A TD's efiboot is a firmware (efiboot.fd), started as OVMF is.
  if [[ "$boot" == efiboot* ]] && [ "$vmtype" = tdx ]; then machine=q35 boot="efiboot-fd${boot#efiboot}"; fi
  CVMEM_CMD=("$qemu" -machine $machine -cpu max -m 1G -display none -nodefaults
             -serial stdio -no-reboot "${CVMEM_FIRMWARE_ARGS[@]}")
  case "$boot" in
    ovmf|ovmf\ *)
      # Debian's OVMF (scripts/linux-guest keeps it beside the kernel) as
      # -bios, loading the kernel through fw_cfg, as a TD is started with
      # TDVF and an SNP guest with OVMF.
      local fw=${boot#ovmf}; fw=${fw# }
      CVMEM_CMD+=(-bios "$CVMEM_LINUX/${fw:-OVMF.fd}" -kernel "$CVMEM_LINUX/vmlinuz"
                  -initrd "$CVMEM_LINUX/initrd.cpio" -append "$kargs") ;;
    disk|disk\ *)
      # OVMF finds no kernel in fw_cfg and boots the disk's removable-media
      # path (\EFI\BOOT\BOOTX64.EFI: GRUB). snapshot=on: the cached image
      # stays as built. A TD's or SNP guest's virtio devices get what QEMU
      # gives them when the machine has a confidential-guest-support object
      # (hw/core/machine.c, machine_run_board_init()): disable-legacy=on
      # and iommu_platform=on, so that the driver maps its buffers through
      # the DMA API (shared bounce buffers) instead of handing the device
      # private addresses.
      local fw=${boot#disk}; fw=${fw# } dev=virtio-blk-pci,drive=disk0
      [ "$vmtype" != tdx ] && [ "$vmtype" != snp ] || dev+=",disable-legacy=on,iommu_platform=on"
      CVMEM_CMD+=(-bios "$CVMEM_LINUX/${fw:-OVMF.fd}"
                  -drive "if=none,id=disk0,format=raw,snapshot=on,file=$CVMEM_LINUX/disk.img"
                  -device "$dev")
      [ -z "$append" ] || CVMEM_CMD+=(-smbios "type=11,value=${append//,/,,}") ;;
    seabios)
      CVMEM_CMD+=(-kernel "$CVMEM_LINUX/vmlinuz" -initrd "$CVMEM_LINUX/initrd.cpio" -append "$kargs") ;;
    efiboot-fd|efiboot-fd\ *)
      # guest-tests/boot/efiboot-tdvf.S: the TD starts from efiboot.fd at
      # the reset vector, which loads the kernel through fw_cfg and takes
      # its own arguments from the fw_cfg file opt/cvmem/efiboot.
      local args=${boot#efiboot-fd}; args=${args# }
      CVMEM_CMD+=(-device isa-debug-exit,iobase=0xf4,iosize=0x04
                  -bios "$CVMEM_GUEST_BUILD/efiboot.fd" -kernel "$CVMEM_LINUX/vmlinuz"
                  -initrd "$CVMEM_LINUX/initrd.cpio" -append "$kargs")
      [ -z "$args" ] || CVMEM_CMD+=(-fw_cfg "name=opt/cvmem/efiboot,string=${args//,/,,}") ;;
    efiboot|efiboot\ *)
      # Multiboot modules are "FILE ARGS" separated by commas (",," for one).
      local mod1="$CVMEM_LINUX/vmlinuz $kargs" mod2="$CVMEM_LINUX/initrd.cpio"
      CVMEM_CMD+=(-device isa-debug-exit,iobase=0xf4,iosize=0x04
                  -kernel "$CVMEM_GUEST_BUILD/efiboot.elf" -append "${boot#efiboot}"
                  -initrd "${mod1//,/,,},${mod2//,/,,}") ;;
    *) cvmem_die "unknown Linux boot '$boot'" ;;
  esac
}

# Appends the plugin to CVMEM_CMD: vm-type=VMTYPE (none: no vm-type) and
# more arguments PARGS (k=v,...); nothing if both are empty or none. Sets
# CVMEM_PARGS to the argument string ("" without the plugin).
cvmem_add_plugin() {
  local vm_type=$1 more=$2
  CVMEM_PARGS=""
  [ "$vm_type" = none ] || CVMEM_PARGS="vm-type=$vm_type"
  [ -z "$more" ] || CVMEM_PARGS="${CVMEM_PARGS:+$CVMEM_PARGS,}$more"
  [ -z "$CVMEM_PARGS" ] && return
  # Nobody is at the monitor of a test run: a VM the modelled KVM stops
  # must end QEMU rather than wait paused until the timeout.
  [[ ",$CVMEM_PARGS" == *,vm-stop=* ]] || CVMEM_PARGS+=",vm-stop=exit"
  CVMEM_CMD+=(-plugin "$CVMEM_PLUGIN,$CVMEM_PARGS")
}

# Judges a guest-test run that should pass, from its log and QEMU's exit
# status RC: the guest printed a SUMMARY line with no unexpected failure and
# left through isa-debug-exit with 0 (status 1, or EXIT_RC); a run that timed out
# (RC 124 or 137, after TIMEOUT seconds) fails. With the plugin loaded
# (MODE enforcing or audit; none without it) the plugin must have reported
# that mode and printed its summary, and for each line of SUMMARY_RE (extended
# regular expressions, one a line) a line of the log must match. EXIT_RC (default 1) is the status a passing run ends with:
# 0 for a Linux guest, which powers off. Sets CVMEM_VERDICT to PASS, SKIP
# (every check skipped) or FAIL, and CVMEM_WHY.
cvmem_judge_pass() {
  local log=$1 rc=$2 timeout=$3 mode=$4 summary_re=$5 exit_rc=${6:-1} summary
  summary=$(grep -a '^SUMMARY:' "$log" | tail -n 1 || true)
  CVMEM_VERDICT=FAIL CVMEM_WHY=""
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then CVMEM_WHY="timeout after $timeout s"
  elif [ -z "$summary" ]; then CVMEM_WHY="no SUMMARY line (QEMU exit status $rc)"
  elif [ "$rc" != "$exit_rc" ]; then CVMEM_WHY="$summary (exit status $rc)"
  elif [[ "$summary" =~ ([0-9]+)\ tests,\ 0\ unexpected\ failures(,\ ([0-9]+)\ skipped)? ]]; then
    if [ "${BASH_REMATCH[3]:-0}" = "${BASH_REMATCH[1]}" ]; then CVMEM_VERDICT=SKIP CVMEM_WHY="every check skipped"
    else CVMEM_VERDICT=PASS
    fi
  else CVMEM_WHY="$summary"
  fi
  # With the plugin loaded, it must have said which mode it ran in and
  # printed its summary.
  if [ "$CVMEM_VERDICT" = PASS ] && [ "$mode" != none ]; then
    # How the run ended, as the summary's title says it: a Linux guest
    # powers off; a test image leaves through isa-debug-exit, a power-off
    # that chose QEMU's exit status. Audit mode cannot know.
    local ending='^cvmem summary: '
    if [ "$mode" = audit ]; then ending+='\(audit mode'
    elif [ "$exit_rc" = 0 ]; then ending+='the guest powered off$'
    else ending+="the guest asked QEMU to exit with status $exit_rc \\(isa-debug-exit\\)$"
    fi
    # Not anchored: under load the install line can land mid-way through a
    # line the guest was printing on the same terminal.
    if ! grep -aq "cvmem: .*mode=$mode" "$log"; then CVMEM_VERDICT=FAIL CVMEM_WHY="plugin did not report mode=$mode"
    elif ! grep -aq '^cvmem summary' "$log"; then CVMEM_VERDICT=FAIL CVMEM_WHY="no plugin summary"
    else cvmem_check_summary "$log" "$ending
$summary_re"
    fi
  fi
}

# Checks a plugin summary in LOG against SUMMARY_RE, extended regular
# expressions one a line, each of which must match a line of LOG. Leaves
# CVMEM_VERDICT alone when all match; otherwise sets it to FAIL and
# CVMEM_WHY to the first that does not.
cvmem_check_summary() {
  local log=$1 summary_re=$2 re
  while IFS= read -r re; do
    if [ -n "$re" ] && ! grep -aEq -- "$re" "$log"; then
      CVMEM_VERDICT=FAIL CVMEM_WHY="plugin summary lacks /$re/"
      local title
      title=$(grep -a '^cvmem summary' "$log" | tail -n 1 || true)
      [ -z "$title" ] || CVMEM_WHY+=" (it says: ${title#cvmem summary: })"
      break
    fi
  done <<< "$summary_re"
}

# Runs a guest test's `check` commands (one a line, split at spaces, run
# from the top of the tree) after QEMU has exited: @TRACE@ becomes TRACE
# (the test's trace file) and @LOG@ becomes LOG. Each must exit 0. Sets
# CVMEM_VERDICT to PASS or FAIL and CVMEM_WHY to the failing command's last
# line of output (all its output goes to LOG).
cvmem_run_checks() {
  local log=$1 trace=$2 checks=$3 cmd out rc
  CVMEM_VERDICT=PASS CVMEM_WHY=""
  while IFS= read -r cmd; do
    [ -n "$cmd" ] || continue
    cmd=${cmd//@TRACE@/$trace}
    cmd=${cmd//@LOG@/$log}
    set +e
    # shellcheck disable=SC2086 # check commands are split at spaces on purpose
    out=$(cd "$CVMEM_TOP" && $cmd 2>&1)
    rc=$?
    set -e
    # Into the log after the command ran: a check that greps the log must
    # not find its own pattern there.
    printf '$ %s\n%s\n' "$cmd" "$out" >> "$log"
    if [ $rc != 0 ]; then
      CVMEM_VERDICT=FAIL CVMEM_WHY="check failed: ${out##*$'\n'}"
      return
    fi
  done <<< "$checks"
}
