#!/bin/sh
# Checks mimix's systemd unit:
#   1. `systemd-analyze verify` accepts it without a single message;
#   2. `systemd-analyze security --offline=true` rates its exposure at most
#      MIMIX_MAX_EXPOSURE (default 2.0; 0.0 is best, 10.0 worst).
#
# Usage: check-unit.sh [UNIT_FILE]   (default: mimix.service beside this script)
#
# verify insists that ExecStart's binary exists. When /usr/bin/mimix is not
# installed (before `dpkg -i`), a copy of the unit is verified with a stand-in
# executable in its place, and the script says so. Needs systemd-analyze from
# systemd 250 or later (--offline, --threshold); systemd need not be running.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
unit=${1:-$here/mimix.service}
max=${MIMIX_MAX_EXPOSURE:-2.0}
name=$(basename "$unit")

[ -f "$unit" ] || { echo "check-unit: no unit file $unit" >&2; exit 2; }
command -v systemd-analyze >/dev/null || {
    echo "check-unit: systemd-analyze not found (apt-get install systemd)" >&2
    exit 2
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

# 1. verify: any output (even a warning about an unknown key, which still
# exits 0) is a failure.
bin=$(sed -n 's/^ExecStart=[-@:+!]*\([^ ]*\).*/\1/p' "$unit" | head -n 1)
target=$unit
if [ -n "$bin" ] && [ ! -x "$bin" ]; then
    mkdir "$tmp/unit"
    printf '#!/bin/sh\nexit 0\n' >"$tmp/unit/stand-in"
    chmod 755 "$tmp/unit/stand-in"
    sed "s#^\(ExecStart=[-@:+!]*\)$bin#\1$tmp/unit/stand-in#" "$unit" >"$tmp/unit/$name"
    target=$tmp/unit/$name
    echo "check-unit: $bin is not installed; verifying with a stand-in for it"
fi
if ! systemd-analyze verify --man=no "$target" >"$tmp/verify" 2>&1; then
    cat "$tmp/verify"
    echo "check-unit: FAIL: systemd-analyze verify $name failed" >&2
    exit 1
fi
if [ -s "$tmp/verify" ]; then
    cat "$tmp/verify"
    echo "check-unit: FAIL: systemd-analyze verify $name printed messages" >&2
    exit 1
fi
echo "check-unit: verify $name: ok"

# 2. security: --threshold counts in tenths (20 means 2.0).
threshold=$(awk -v m="$max" 'BEGIN { printf "%d", m * 10 + 0.5 }')
status=0
systemd-analyze security --offline=true --threshold="$threshold" --no-pager \
    "$unit" >"$tmp/security" 2>&1 || status=$?
# The options that still cost exposure, then the verdict.
grep '✗' "$tmp/security" || true
score=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p' "$tmp/security")
if [ -z "$score" ]; then
    cat "$tmp/security"
    echo "check-unit: FAIL: no exposure score from systemd-analyze security" >&2
    exit 1
fi
echo "check-unit: exposure $score (limit $max)"
if [ "$status" -ne 0 ] || ! awk -v s="$score" -v m="$max" 'BEGIN { exit !(s <= m) }'; then
    echo "check-unit: FAIL: exposure $score is above $max" >&2
    exit 1
fi
echo "check-unit: security $name: ok"
