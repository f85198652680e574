#!/usr/bin/env bash
# System packages the test suite uses beyond Python, installed from Debian's packages when missing:
#   chromium    the browser end-to-end test (tests/test_e2e_browser.py, driven by Playwright's Python
#               package pointed at /usr/bin/chromium; never `playwright install`)
#   postgresql  the server binaries for the throwaway PostgreSQL the store/ledger tests start (tests/pg.py)
# Idempotent: installs only what is missing. Needs root (CI runs as root) or sudo; without either, the
# tests that need a missing package are skipped with the reason.
set -euo pipefail
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
    missing+=(postgresql)
fi
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo"; else
        echo "system-deps: missing ${missing[*]} and not root: the tests that need them will be skipped" >&2
        exit 0
    fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "system-deps: missing ${missing[*]} and no apt-get: the tests that need them will be skipped" >&2
    exit 0
fi
echo "system-deps: installing ${missing[*]} (Debian packages) for the tests"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
