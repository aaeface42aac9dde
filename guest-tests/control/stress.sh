#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-or-later
#
# The host side of the stress tests (tdx-stress, snp-stress, issue 24): a
# VMM that, for as long as the guest runs, at random
#   - zaps random ranges of the first 256 MiB,
#   - flushes every vCPU's TLB,
#   - asks for statistics,
#   - deletes, moves and re-creates the memslot of an ivshmem BAR the guest
#     never touches (found by the address the guest prints, "STRESS:
#     ivshmem bar=..."; KVM_MR_DELETE, KVM_MR_MOVE, KVM_MR_CREATE; a
#     guest_memfd slot, which KVM refuses to move, is deleted and
#     re-created at the new address, as QEMU does),
#   - flips KVM_X86_QUIRK_SLOT_ZAP_ALL (honoured by default VMs only: the
#     others must refuse, as KVM offers the quirk only to them),
# through the control socket, while the guest's 8 vCPUs convert, accept
# (validate) and touch memory and check what they read. None of it may
# change what the guest sees: a zap only costs refaults, and the churned
# slot is not the guest's memory. In a TD only the shared root is zapped:
# zapping private leaves removes the pages from the Secure EPT, which KVM
# does only when memory goes away (memslot deletion, conversion), and the
# guest would rightly see its memory lost.
#
#   guest-tests/control/stress.sh SOCKET LOG ROOTS
#
# ROOTS: all or shared. Ends when the plugin's summary is in LOG; exits 1
# if a request fails while the guest still runs.
set -uo pipefail
sock=$1 log=$2 roots=$3
source "$(dirname "$0")/common.sh"
ended() { grep -aq '^cvmem summary:' "$log" 2>/dev/null; }
start=$SECONDS

for _ in $(seq 300); do [ -S "$sock" ] && break; sleep 0.1; done
[ -S "$sock" ] || fail "no control socket at $sock"
vm_type=$("$ctl" "$sock" stats | python3 -c 'import json, sys; print(json.load(sys.stdin)["vm_type"])') \
  || fail "no stats"

# The ivshmem BAR's memslot, by the address the guest prints: never a RAM
# slot the guest lives in.
bar="" id=""
for _ in $(seq 600); do
  line=$(grep -a '^STRESS: ivshmem bar=' "$log" 2>/dev/null | head -n 1) && [ -n "$line" ] && break
  ended && fail "the guest ended before it printed its BAR"
  sleep 0.1
done
[[ "$line" =~ bar=([0-9a-f]+) ]] || fail "no 'STRESS: ivshmem bar=' line from the guest"
bar=$((16#${BASH_REMATCH[1]}))
read -r id size flags backing < <("$ctl" "$sock" list-memslots | python3 -c "
import json, sys
r = json.load(sys.stdin)
s = [m for m in r['memslots'] if m['gpa'] == $bar]
print(s[0]['slot'], s[0]['size'], s[0]['flags'], s[0]['backing']) if s else print('')") \
  || fail "cannot list the memslots"
[ -n "$id" ] || fail "no memslot at the BAR $(printf %#x "$bar")"
# Where a move puts it: 32 GiB, inside every VM type's address width and
# outside anything QEMU maps.
alt=$((32 << 30))
echo "control script: vm-type=$vm_type, the BAR at $(printf %#x "$bar") is slot $id ($size bytes, flags $flags)"

# The requests, over one connection (a cvmem-ctl a request would cost a
# process each): until the plugin's summary appears in the log.
python3 - "$sock" "$log" "$roots" "$vm_type" "$id" "$bar" "$alt" "$size" "$flags" "$backing" <<'PY'
import json, random, socket, sys, time

sock, log, roots, vm_type = sys.argv[1:5]
slot, bar, alt, size, flags, backing = map(int, sys.argv[5:11])
start = time.monotonic()

def ended():
    with open(log, "rb") as lf:
        return any(line.startswith(b"cvmem summary:") for line in lf)

def gone():
    # QEMU closes (and removes) the socket as it exits, before its summary
    # is written.
    for _ in range(100):
        if ended():
            return
        time.sleep(0.1)
    raise SystemExit("control script: FAIL: the socket closed while the guest ran")

s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sock)
except (FileNotFoundError, ConnectionRefusedError):
    gone()
f = s.makefile("rw")

class Gone(Exception):
    """QEMU closed the socket: it is exiting."""

def request(**req):
    try:
        f.write(json.dumps(req) + "\n")
        f.flush()
        line = f.readline()
    except (BrokenPipeError, ConnectionResetError):
        line = ""
    if not line.endswith("\n"):
        raise Gone()  # nothing, or a reply cut short by QEMU's exit
    return json.loads(line)

counts = dict(zaps=0, zap_alls=0, flushes=0, stats=0, deletes=0, creates=0, moves=0,
              moves_refused=0, quirk_flips=0, quirk_refused=0)
at = bar  # where the BAR's slot is; None while deleted
def one():
    """One random request: its reply and what it counts as."""
    global at
    op = random.randrange(8)
    if op <= 1:
        gpa, npages = random.randrange(65536) * 4096, random.randrange(1, 513)
        r, key = request(cmd="zap", gpa=gpa, size=npages * 4096, roots=roots), "zaps"
    elif op == 2:
        r, key = request(cmd="flush", kind="all"), "flushes"
    elif op == 3:
        r, key = request(cmd="stats"), "stats"
    elif op == 4:
        r, key = request(cmd="zap-all"), "zap_alls"
    elif op <= 6:
        # The BAR's slot: deleted, re-created at either address, or moved.
        if at is None:
            to = random.choice((bar, alt))
            r = request(cmd="create-memslot", slot=slot, gpa=to, size=size, flags=flags,
                        backing=backing)
            key, new = "creates", to
        elif random.randrange(2):
            r, key, new = request(cmd="delete-memslot", slot=slot), "deletes", None
        else:
            to = alt if at == bar else bar
            r, key, new = request(cmd="move-memslot", slot=slot, gpa=to), "moves", to
            if flags & 4 and not r.get("ok"):
                # KVM moves no guest_memfd slot (__kvm_set_memory_region():
                # only create and delete); QEMU deletes and re-creates.
                want = f"EINVAL: private slot {slot} may only be deleted"
                if r.get("error") != want:
                    raise SystemExit(f"control script: FAIL: move: expected {want}, got {r}")
                counts["moves_refused"] += 1
                r = request(cmd="delete-memslot", slot=slot)
                if r.get("ok"):
                    r = request(cmd="create-memslot", slot=slot, gpa=to, size=size,
                                flags=flags, backing=backing)
        if r.get("ok"):
            at = new
    else:
        r = request(cmd="set-zap-quirk", enabled=bool(random.randrange(2)))
        if vm_type != "default":
            # KVM offers the quirk to default VMs only.
            want = f"EINVAL: vm-type={vm_type} does not honour KVM_X86_QUIRK_SLOT_ZAP_ALL"
            if r.get("ok") or r.get("error") != want:
                if ended():
                    return {"ok": True}, None
                raise SystemExit(f"control script: FAIL: set-zap-quirk: expected {want}, got {r}")
            counts["quirk_refused"] += 1
            return r, None
        key = "quirk_flips"
    return r, key

n = 0

while True:
    # The log is read every 64 requests: the guest's end is what stops us.
    if n % 64 == 0 and ended():
        break
    n += 1
    try:
        r, key = one()
    except Gone:
        gone()
        break
    if key is None:
        continue
    if not r.get("ok"):
        if ended():
            break
        raise SystemExit(f"control script: FAIL: a request failed while the guest ran: {r}")
    counts[key] += 1
secs = time.monotonic() - start
print(f"control script: {sum(counts.values())} requests in {secs:.1f} s while the guest ran "
      f"(roots={roots}): " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in counts.items()))
if counts["zaps"] + counts["flushes"] == 0:
    raise SystemExit("control script: FAIL: the guest ended before any request")
if counts["deletes"] + counts["creates"] + counts["moves"] == 0:
    raise SystemExit("control script: FAIL: the guest ended before any memslot change")
PY
