#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# The host side of the `control` guest tests (guest-tests/tests/control.c),
# run by scripts/guest-test next to QEMU (manifest key `script`):
#
#   guest-tests/control/slot.sh SOCKET LOG
#
# Waits for the guest's "CONTROL: ready bar=... flag=..." line in LOG, sends
# hostile requests (each must get an error, and the plugin must go on
# answering), deletes the ivshmem BAR's memslot and re-creates it as it was,
# then writes the flag the guest polls. Exits non-zero on anything
# unexpected.
set -euo pipefail
sock=$1 log=$2
source "$(dirname "$0")/common.sh"
wait_ready "$log"
echo "control script: BAR at $(printf %#x $bar), flag at $(printf %#x $flag)"

# expect_error DESCRIPTION CVMEM-CTL-ARGS...: the request must be refused.
expect_error() {
  local what=$1 out rc=0; shift
  out=$("$ctl" "$sock" "$@" 2>&1) || rc=$?
  [ $rc = 1 ] && [[ "$out" == *'"ok":false'* ]] || fail "$what: expected an error reply, got ($rc) $out"
  echo "control script: $what -> $out"
}
echo 'this is not JSON' | expect_error "bad JSON" -
echo '{"cmd":"stats","gpa":' | expect_error "truncated JSON" -
expect_error "unknown command" format-disk
expect_error "huge zap" zap gpa=0 size=0xfffffffffffff000
expect_error "huge attribute range" set-attributes gpa=0 size=0x7ffffffffffff000 attributes=0
expect_error "unaligned slot" create-memslot slot=100 gpa=4097 size=4096
expect_error "overlapping slot" create-memslot slot=100 gpa=$bar size=4096
expect_error "slot beyond the address width" create-memslot slot=100 gpa=0x7ffffffff000000 size=4096
expect_error "slot not backed by QEMU's RAM" create-memslot slot=100 gpa=0xf00000000 size=4096
expect_error "no such slot" delete-memslot slot=30000
expect_error "bad slot id" delete-memslot slot=0x20000
# A client that goes away mid-request, ones that send a line too long
# (100 KB, 100 MB), and one that sends garbage bytes: dropped or refused,
# nothing else happens.
python3 - "$sock" <<'PY' || fail "raw clients"
import json, socket, sys
def conn():
    s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); return s
s = conn(); s.sendall(b'{"cmd":"delete-memsl'); s.close()
s = conn(); s.sendall(b'{"cmd":"stats"}\n'); s.close()   # closed before the reply
s = conn(); s.sendall(b'x' * 100000 + b'\n')
reply = s.makefile().readline(); s.close()
assert '"ok":false' in reply and 'longer' in reply, reply
# A 100 MB line: one E2BIG line, then the server closes the connection
# long before it has read the line (the send fails).
s = conn(); cut = False
try:
    s.sendall(b'y' * (100 << 20) + b'\n')
except (BrokenPipeError, ConnectionResetError):
    cut = True
f = s.makefile('rb'); reply = f.readline().decode()
try:
    rest = f.read()
except ConnectionResetError:
    rest = b''
s.close()
assert cut, "the server read a 100 MB line"
r = json.loads(reply)
assert r['ok'] is False and r['error'].startswith('E2BIG: ') and not rest, (reply, rest[:80])
s = conn(); s.sendall(b'\xff\xfe\n'); reply = s.makefile().readline(); s.close()
assert '"ok":false' in reply, reply
print("control script: raw clients handled")
PY
"$ctl" "$sock" stats >/dev/null || fail "the plugin stopped answering"

# The BAR's memslot, as the plugin lists it.
read -r id size flags backing < <("$ctl" "$sock" list-memslots | python3 -c "
import json, sys
r = json.load(sys.stdin)
s = [m for m in r['memslots'] if m['gpa'] == $bar][0]
print(s['slot'], s['size'], s['flags'], s['backing'])") || fail "no memslot at the BAR"
echo "control script: the BAR is slot $id ($size bytes, flags $flags, backing $(printf %#x "$backing"))"
"$ctl" "$sock" delete-memslot slot="$id" || fail "delete"
"$ctl" "$sock" delete-memslot slot="$id" >/dev/null && fail "a second delete succeeded"
"$ctl" "$sock" create-memslot slot="$id" gpa="$bar" size="$size" flags="$flags" backing="$backing" \
  || fail "re-create"
"$ctl" "$sock" stats || fail "stats"
"$ctl" "$sock" write gpa="$flag" value=0x600d || fail "writing the flag"
echo "control script: done"
