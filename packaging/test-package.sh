#!/bin/sh
# Builds the Debian package from an existing release build and tests it on
# this machine: install, the _mimix user, directories and modes, the binary
# run as _mimix, the unit checks, upgrade over itself, remove and purge.
# The package is made from the dev-profile binary the tests use
# (MIMIX_DEB_PROFILE=release for a release build).
#
# It installs and purges the mimix package system-wide, so it runs only as
# root with CI=true or --force (a CI runner or a throwaway machine). Run it
# from the repository root after `cargo build --bin mimix`; needs
# cargo-deb, dpkg-dev (dpkg-shlibdeps) and systemd (systemd-analyze).
set -eu

if [ "${CI:-}" != "true" ] && [ "${1:-}" != "--force" ]; then
    echo "test-package: installs and purges mimix system-wide; set CI=true or pass --force" >&2
    exit 2
fi
[ "$(id -u)" -eq 0 ] || { echo "test-package: must run as root" >&2; exit 2; }

here=$(cd "$(dirname "$0")" && pwd)
fail() { echo "test-package: FAIL: $*" >&2; exit 1; }
passed=0
check() { passed=$((passed + 1)); echo "test-package: ok: $*"; }
expect_stat() { # path, expected "mode owner:group"
    got=$(stat -c '%a %U:%G' "$1")
    [ "$got" = "$2" ] || fail "$1 is $got, expected $2"
    check "$1 is $2"
}

if dpkg-query -W -f='${Status}' mimix 2>/dev/null | grep -q 'ok installed\|config-files'; then
    echo "test-package: purging the mimix package already on this machine"
    dpkg --purge mimix >/dev/null
fi

"$here/check-unit.sh"

# cargo deb prints the path of the package it made. The binary is the one
# the tests built (one profile for everything; cargo deb strips it).
deb=$(cargo deb --no-build --profile "${MIMIX_DEB_PROFILE:-dev}" --deb-revision 0test | tail -n 1)
[ -f "$deb" ] || fail "cargo deb made no package"
dpkg-deb --info "$deb" | sed -n 's/^ \(Depends\|Installed-Size\):/  \1:/p'
dpkg-deb --contents "$deb" | grep ' ./etc/mimix/mimix.toml$' >/dev/null || fail "no /etc/mimix/mimix.toml in $deb"

dpkg -i "$deb"
check "dpkg -i $(basename "$deb")"

# The system user: no login, no home.
entry=$(getent passwd _mimix) || fail "no _mimix user"
echo "$entry" | grep -q ':/nonexistent:/usr/sbin/nologin$' || fail "_mimix is $entry"
passwd -S _mimix | grep -q '^_mimix L' || fail "_mimix has a usable password"
check "user $entry, password locked"

expect_stat /usr/bin/mimix "755 root:root"
expect_stat /etc/mimix/mimix.toml "644 root:root"
expect_stat /var/lib/mimix "700 _mimix:_mimix"
dpkg-query -W -f='${Conffiles}\n' mimix | grep -q '/etc/mimix/mimix.toml' || fail "mimix.toml is not a conffile"
check "/etc/mimix/mimix.toml is a conffile"
[ ! -e /etc/systemd/system/multi-user.target.wants/mimix.service ] || fail "the unit was enabled on install"
check "the unit is installed but not enabled"

/usr/bin/mimix --version
version=$(/usr/bin/mimix --version)
echo "$version" | grep -q '^mimix [0-9]' || fail "mimix --version printed: $version"

# The packaged unit checks out with the real binary in place.
"$here/check-unit.sh" /lib/systemd/system/mimix.service

# The binary works as _mimix against the packaged config and state
# directory, with no capabilities and the unit's umask.
as_mimix() {
    (umask 077 && setpriv --reuid=_mimix --regid=_mimix --init-groups \
        --inh-caps=-all --bounding-set=-all --no-new-privs \
        env -i HOME=/nonexistent PATH=/usr/bin:/bin "$@")
}
as_mimix /usr/bin/mimix status --config /etc/mimix/mimix.toml
expect_stat /var/lib/mimix/store "700 _mimix:_mimix"
as_mimix /usr/bin/mimix init --name init-test --data-dir /var/lib/mimix/init-test
expect_stat /var/lib/mimix/init-test/mimix.toml "600 _mimix:_mimix"
ls /var/lib/mimix/init-test/keys/*.pem >/dev/null || fail "mimix init made no key"
check "mimix init as _mimix: config and key"
rm -rf /var/lib/mimix/init-test

# Reinstalling keeps an edited conffile and the state.
sed -i 's/^name = "mimix"$/name = "edited"/' /etc/mimix/mimix.toml
dpkg -i "$deb" >/dev/null
grep -q '^name = "edited"$' /etc/mimix/mimix.toml || fail "reinstall replaced the edited conffile"
[ -d /var/lib/mimix/store ] || fail "reinstall lost the state"
check "reinstall keeps the edited conffile and the state"

dpkg -r mimix >/dev/null
[ ! -e /usr/bin/mimix ] || fail "remove left /usr/bin/mimix"
[ -d /var/lib/mimix/store ] || fail "remove deleted the state"
[ -f /etc/mimix/mimix.toml ] || fail "remove deleted the conffile"
check "remove keeps /etc/mimix and /var/lib/mimix"

dpkg --purge mimix >/dev/null
[ ! -e /var/lib/mimix ] || fail "purge left /var/lib/mimix"
[ ! -e /etc/mimix ] || fail "purge left /etc/mimix"
getent passwd _mimix >/dev/null || fail "purge removed the _mimix user"
check "purge removes /etc/mimix and /var/lib/mimix, keeps the _mimix user"

echo "package: $passed passed, 0 failed"
