#!/usr/bin/env bash
# What the browser and real-client tests need beyond the Python test extra:
# Debian's chromium (no browser downloads are possible: Playwright drives the
# system binary, `playwright install` is never run), curl, and the Playwright
# and httpie packages in the running venv.  Idempotent and quiet: installs
# only what is missing.  Usage: tests/browser/install.sh [PYTHON]
set -euo pipefail
PYTHON="${1:-${PYTHON:-python3}}"

missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ "${#missing[@]}" -gt 0 ]; then
    echo "tests/browser/install.sh: apt-get install ${missing[*]} (for the browser and client tests)" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

"$PYTHON" -c 'import playwright' 2>/dev/null || "$PYTHON" -m pip install --quiet playwright
"$PYTHON" -c 'import httpie' 2>/dev/null || "$PYTHON" -m pip install --quiet httpie
