#!/bin/sh
# bootstrap.sh - install every build and test dependency of dakiya from Debian 12
# packages. Idempotent: packages already present are left alone, and apt is only
# asked when something is missing. Must run as root (or with sudo available).
set -eu

PKGS="build-essential meson ninja-build pkg-config clang lld
libevent-dev libunbound-dev libsqlite3-dev libssl-dev libconfuse-dev libcrypt-dev
libpsl-dev libidn2-dev libcmocka-dev libclang-rt-14-dev libfuzzer-14-dev
python3 python3-pytest python3-yaml python3-dkim python3-nacl swaks libnet-ssleay-perl curl openssl unbound sqlite3 procps
postfix publicsuffix opendkim"

missing=""
for p in $PKGS; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
    missing="$missing $p"
  fi
done

if [ -z "$missing" ]; then
  echo "bootstrap: all dependencies present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "bootstrap: run as root (missing:$missing)" >&2; exit 1; }
  SUDO=sudo
fi
echo "bootstrap: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
# policy-rc.d keeps package installs (unbound) from starting system services;
# the tests start their own instances on loopback.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  $SUDO sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d'
  trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
# postfix is a test peer and the benchmarks' reference (private instances on
# loopback): no system configuration, and policy-rc.d keeps it from starting.
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing
echo "bootstrap: done"
