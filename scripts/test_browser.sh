#!/usr/bin/env bash
# Browser test of the status bar and the live panel (Galata/Playwright in Debian's Chromium).
#
#   scripts/test_browser.sh [playwright test arguments...]
#
# Needs carbon_magic installed in .venv (server extension and labextension enabled).
# Installs Debian's chromium when it is missing (as root, with apt-get) and the npm
# dependencies of labextension/ui-tests from the lockfile; never downloads a browser.
# JupyterLab is started by Playwright (webServer in playwright.config.js) on port 8888
# with labextension/ui-tests/jupyter_server_test_config.py. Screenshots of the panel and
# the status bar are written to docs/images/.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
CHROMIUM="${CHROMIUM_PATH:-/usr/bin/chromium}"
export PATH="$VENV/bin:$PATH"
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
export CHROMIUM_PATH="$CHROMIUM"
export CI="${CI:-true}"

if [ ! -x "$CHROMIUM" ]; then
    if [ "$(id -u)" != "0" ]; then
        echo "error: $CHROMIUM is missing; install Debian's chromium (apt-get install chromium)" >&2
        exit 1
    fi
    echo "installing Debian's chromium"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

for listing in "server extension" "labextension"; do
    # shellcheck disable=SC2086
    if ! jupyter $listing list 2>&1 | grep -E "carbon_magic.*enabled" >/dev/null; then
        echo "error: carbon_magic is not an enabled Jupyter $listing; run: $VENV/bin/pip install -e $ROOT" >&2
        exit 1
    fi
done

if (exec 3<>/dev/tcp/127.0.0.1/8888) 2>/dev/null; then
    echo "error: port 8888 is busy; the test server needs it" >&2
    exit 1
fi

mkdir -p "$ROOT/docs/images"
cd "$ROOT/labextension/ui-tests"
jlpm install --immutable
jlpm playwright test "$@"
