#!/usr/bin/env bash
# Installs Autobahn|Testsuite's `wstest` and prints its path (one line).
#
# autobahntestsuite only runs under Python 2.7, which Debian no longer ships;
# the machine image has pyenv's CPython 2.7.18. The chain is:
#   python3 venv "bootstrap" holding virtualenv<20.22 (requirements-bootstrap.txt)
#   -> virtualenv "py27" on CPython 2.7.18 (requirements-py27.txt, all pinned).
#
# Idempotent: a stamp records what was installed; when it matches, nothing is
# done. Quiet on success (only the path of wstest is printed); on failure the
# tail of the install log goes to stderr.
#
# Environment:
#   NGINXWS_AUTOBAHN_CACHE  where the environments live
#                           (default ~/.cache/nginxws/autobahn)
#   NGINXWS_PYTHON27        the Python 2.7 interpreter
#                           (default $PYENV_ROOT/versions/2.7.18/bin/python)
#   NGINXWS_PYTHON3         the Python 3 that runs virtualenv
#                           (default python3.11, else python3)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${NGINXWS_AUTOBAHN_CACHE:-$HOME/.cache/nginxws/autobahn}"
python27="${NGINXWS_PYTHON27:-${PYENV_ROOT:-$HOME/.pyenv}/versions/2.7.18/bin/python}"
if [[ -z "${NGINXWS_PYTHON3:-}" ]]; then
    if command -v python3.11 >/dev/null 2>&1; then
        NGINXWS_PYTHON3=python3.11
    else
        NGINXWS_PYTHON3=python3
    fi
fi
python3="$NGINXWS_PYTHON3"

if [[ ! -x "$python27" ]]; then
    echo "install-autobahn: Python 2.7 not found at $python27" >&2
    echo "install-autobahn: autobahntestsuite needs CPython 2.7 (pyenv install 2.7.18," \
        "or set NGINXWS_PYTHON27 to a python2.7 interpreter)" >&2
    exit 1
fi

wstest="$cache/py27/bin/wstest"
stamp="$cache/installed.stamp"
log="$cache/install.log"
want="$(cat "$here/requirements-bootstrap.txt" "$here/requirements-py27.txt" \
    | { cat; echo "python27=$python27"; } | sha256sum | cut -d' ' -f1)"

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9

if [[ -x "$wstest" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "$wstest"
    exit 0
fi

fail() {
    echo "install-autobahn: $1 failed; last lines of $log:" >&2
    tail -n 25 "$log" >&2
    exit 1
}

echo "install-autobahn: installing autobahntestsuite under $python27 into $cache (once)" >&2
rm -rf "$cache/bootstrap" "$cache/py27" "$stamp"
: >"$log"
"$python3" -m venv "$cache/bootstrap" >>"$log" 2>&1 || fail "creating the Python 3 venv"
"$cache/bootstrap/bin/pip" install --no-input -r "$here/requirements-bootstrap.txt" \
    >>"$log" 2>&1 || fail "installing virtualenv"
"$cache/bootstrap/bin/virtualenv" --no-periodic-update -p "$python27" "$cache/py27" \
    >>"$log" 2>&1 || fail "creating the Python 2.7 virtualenv"
"$cache/py27/bin/pip" install --no-input -r "$here/requirements-py27.txt" \
    >>"$log" 2>&1 || fail "installing autobahntestsuite"
"$wstest" --autobahnversion >>"$log" 2>&1 || fail "running wstest"

echo "$want" >"$stamp"
echo "$wstest"
