#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# The host side of panic-control and panic-control-client (issue 24): once
# the guest is ready, one request, which a panic-inject build of the
# plugin makes panic (CVMEM_PANIC_INJECT=control: an EIO reply;
# control_client: the connection closed unanswered). cvmem then stops the
# VM: the guest never sees the flag this script does not write.
#
#   guest-tests/control/panic.sh SOCKET LOG
set -uo pipefail
sock=$1 log=$2
source "$(dirname "$0")/common.sh"
wait_ready "$log"
out=$("$ctl" "$sock" stats 2>&1)
echo "control script: stats -> $out"
case "$out" in
  *'"ok":true'*) fail "the request was answered as if nothing happened" ;;
esac
