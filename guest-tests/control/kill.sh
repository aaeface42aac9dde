#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# The host side of the kill tests (trace-sigterm, trace-sigkill; issue 24):
# waits until the guest runs and its trace has at least BYTES bytes on
# disk, then sends QEMU signal SIG. QEMU is the process that listens on the
# control socket (SO_PEERCRED of a connection to it).
#
#   guest-tests/control/kill.sh SOCKET LOG TRACE SIG BYTES
set -euo pipefail
sock=$1 log=$2 trace=$3 sig=$4 bytes=$5
source "$(dirname "$0")/common.sh"
ended() { grep -aq '^SUMMARY:\|^cvmem summary:' "$log" 2>/dev/null; }

for _ in $(seq 300); do [ -S "$sock" ] && break; sleep 0.1; done
[ -S "$sock" ] || fail "no control socket at $sock"
for _ in $(seq 600); do
  [ "$(stat -c %s "$trace" 2>/dev/null || echo 0)" -ge "$bytes" ] && break
  ended && fail "the guest ended before its trace had $bytes bytes"
  sleep 0.1
done
size=$(stat -c %s "$trace")
[ "$size" -ge "$bytes" ] || fail "the trace has $size bytes after 60 s"
pid=$(python3 - "$sock" <<'PY'
import socket, struct, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
print(struct.unpack("3i", s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[0])
PY
)
[[ "$(cat "/proc/$pid/comm")" == qemu-system-* ]] || fail "pid $pid is not QEMU: $(cat "/proc/$pid/comm")"
ended && fail "the guest ended before the signal"
kill -s "$sig" "$pid"
echo "control script: SIG$sig to QEMU (pid $pid) with $size bytes of trace on disk"
