#!/usr/bin/env bash
# What tests/e2e/test_contrib.py runs the files of contrib/ with: Debian's
# systemd (for `systemd-analyze verify` on the unit; nothing is started, and
# no running systemd is needed) and logrotate. Idempotent and quiet: installs
# only what is missing, and says so before it runs apt-get.
# Usage: tests/contrib/install.sh
set -euo pipefail

missing=()
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
[ -x /usr/sbin/logrotate ] || command -v logrotate >/dev/null 2>&1 || missing+=(logrotate)
if [ "${#missing[@]}" -gt 0 ]; then
    echo "tests/contrib/install.sh: apt-get install ${missing[*]} (for the contrib/ tests)" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
