#!/usr/bin/env bash
# System packages the test suite uses beyond Python: Debian's Chromium for the browser end-to-end test
# (tests/test_e2e_browser.py, driven by Playwright's Python package; never `playwright install`).
# Idempotent: does nothing when chromium is already there. Needs root (CI runs as root) or sudo.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        echo "system-deps: chromium missing and not root; the browser test will be skipped" >&2; exit 0
    fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
