#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# The host side of the stress tests (tdx-stress, snp-stress, issue 24): a
# VMM that, for as long as the guest runs, zaps random ranges of its first
# 256 MiB, flushes every vCPU's TLB and asks for statistics, at random,
# through the control socket, while the guest's 8 vCPUs convert, accept
# (validate) and touch memory and check what they read. None of it may
# change what the guest sees: a zap only costs refaults. In a TD only the
# shared root is zapped: zapping private leaves removes the pages from the
# Secure EPT, which KVM does only when memory goes away (memslot deletion,
# conversion), and the guest would rightly see its memory lost.
#
#   guest-tests/control/stress.sh SOCKET LOG ROOTS
#
# ROOTS: all or shared. Ends when the plugin's summary is in LOG; exits 1
# if a request fails while the guest still runs.
set -uo pipefail
sock=$1 log=$2 roots=$3
source "$(dirname "$0")/common.sh"
ended() { grep -aq '^cvmem summary:' "$log" 2>/dev/null; }

for _ in $(seq 300); do [ -S "$sock" ] && break; sleep 0.1; done
[ -S "$sock" ] || fail "no control socket at $sock"
zaps=0 flushes=0 stats=0
while ! ended; do
  case $((RANDOM % 4)) in
    0|1)
      gpa=$(( (RANDOM % 65536) * 4096 )) size=$(( (RANDOM % 512 + 1) * 4096 ))
      out=$("$ctl" "$sock" zap gpa=$gpa size=$size roots="$roots" 2>&1) && zaps=$((zaps + 1)) ;;
    2) out=$("$ctl" "$sock" flush kind=all 2>&1) && flushes=$((flushes + 1)) ;;
    3) out=$("$ctl" "$sock" stats 2>&1) && stats=$((stats + 1)) ;;
  esac || { ended && break; fail "a request failed while the guest ran: $out"; }
done
echo "control script: $zaps zaps (roots=$roots), $flushes flushes of all vCPUs, $stats stats while the guest ran"
[ $((zaps + flushes)) -gt 0 ] || fail "the guest ended before any request"
