#!/usr/bin/env bash
# Browser tests (Galata/Playwright in Debian's Chromium): the status bar and the live panel,
# the cell footers and the Carbon sidebar in JupyterLab, and the same in Notebook 7.
#
#   scripts/test_browser.sh [playwright test arguments...]
#
# Needs carbon_magic installed in .venv (server extension and labextension enabled).
# Installs Debian's chromium when it is missing (as root, with apt-get) and the npm
# dependencies of labextension/ui-tests from the lockfile; never downloads a browser.
# JupyterLab is started by Playwright (webServer in playwright.config.js) on port 8888
# with labextension/ui-tests/jupyter_server_test_config.py. Screenshots are written to
# build/screenshots/ (`make screenshots` copies them to docs/images/ for the README).
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

# Test the extension as the sources are now: build it, and refresh the copy the editable
# install put in the venv (a copy of the build of its day; a link would let the next
# pip install write through it into the build folder).
(cd "$ROOT/labextension" && jlpm build)
INSTALLED="$(python -c 'import sys; print(sys.prefix)')/share/jupyter/labextensions/carbon_magic"
if [ -d "$INSTALLED" ] && [ ! -L "$INSTALLED" ]; then
    rm -rf "$INSTALLED/static" "$INSTALLED/schemas"
    cp -R "$ROOT/carbon_magic/labextension/static" "$ROOT/carbon_magic/labextension/schemas" \
        "$ROOT/carbon_magic/labextension/package.json" "$INSTALLED/"
fi

mkdir -p "$ROOT/build/screenshots"
# The tests compare the footers with the extension's own formatting of the ledger's
# records, and check the server's JSON against its TypeScript interface.
(cd "$ROOT/labextension" && jlpm build:unit)
cd "$ROOT/labextension/ui-tests"
jlpm install --immutable
jlpm playwright test "$@"
