#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# The host side of the `control-noflush` guest test: a VMM that zaps a
# memslot's mappings and "forgets" the TLB flush KVM would do, so that the
# missing-flush detector (flush-check=on) has something to report.
#
#   guest-tests/control/noflush.sh SOCKET LOG
#
# Waits for the guest's "CONTROL: ready bar=... flag=..." line (the guest,
# guest-tests/tests/control.c, has just written the ivshmem BAR, so QEMU's
# softTLB holds its translation), zaps the BAR's range without a flush, then
# writes the flag the guest polls. The guest's next read of the BAR goes
# through the stale translation: the detector must name this zap.
set -euo pipefail
sock=$1 log=$2
source "$(dirname "$0")/common.sh"
wait_ready "$log"

echo "{\"cmd\":\"zap\",\"gpa\":$bar,\"size\":4096,\"flush\":false}" | "$ctl" "$sock" - \
  || fail "zap without flush"
"$ctl" "$sock" write gpa="$flag" value=0x600d || fail "writing the flag"
echo "control script: zapped $(printf %#x $bar) without a flush"
