# SPDX-License-Identifier: GPL-2.0-or-later
#
# Sourced by the control-group scripts: the client, the failure exit, and
# the wait for the guest's "CONTROL: ready bar=... flag=..." line
# (guest-tests/tests/control.c), which sets $bar and $flag.
ctl=${CVMEM_CTL:-$(dirname "${BASH_SOURCE[0]}")/../../target/release/cvmem-ctl}
fail() { echo "control script: FAIL: $*" >&2; exit 1; }

# wait_ready LOG: waits up to 60 s for the guest's ready line in LOG.
wait_ready() {
  local log=$1 line
  for _ in $(seq 600); do
    grep -aq '^CONTROL: ready' "$log" 2>/dev/null && break
    sleep 0.1
  done
  line=$(grep -a '^CONTROL: ready' "$log" | head -n 1) || fail "no ready line from the guest"
  [[ "$line" =~ bar=([0-9a-f]+)\ flag=([0-9a-f]+) ]] || fail "cannot parse '$line'"
  bar=$((16#${BASH_REMATCH[1]})) flag=$((16#${BASH_REMATCH[2]}))
}
