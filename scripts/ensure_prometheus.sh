#!/usr/bin/env bash
# Make sure Debian's Prometheus server binary is installed, for tests/test_fleet_prometheus.py.
#
#   scripts/ensure_prometheus.sh
#
# Does nothing when `prometheus` is on PATH (or at $PROMETHEUS_PATH). Otherwise, as root,
# installs Debian's `prometheus` package with apt-get, without its recommended exporters,
# and with service starts refused for the duration of the install: the test starts its
# own Prometheus on 127.0.0.1 and no system service may be left listening.
# Not root: on CI (CI=true) that is an error; elsewhere a notice (the test then skips).
set -euo pipefail

PROMETHEUS="${PROMETHEUS_PATH:-prometheus}"

if command -v "$PROMETHEUS" >/dev/null 2>&1; then
    exit 0
fi

if [ "$(id -u)" != "0" ]; then
    message="Prometheus is missing; install Debian's prometheus (apt-get install prometheus)"
    if [ "${CI:-}" = "true" ]; then
        echo "error: $message" >&2
        exit 1
    fi
    echo "notice: $message; the fleet test will be skipped" >&2
    exit 0
fi

# Refuse service starts during the install (invoke-rc.d honours policy-rc.d); keep a
# policy that was there before, remove only the one written here.
POLICY=/usr/sbin/policy-rc.d
written_policy=""
if [ ! -e "$POLICY" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$POLICY"
    chmod 755 "$POLICY"
    written_policy="$POLICY"
fi
cleanup() {
    if [ -n "$written_policy" ]; then
        rm -f "$written_policy"
    fi
}
trap cleanup EXIT

echo "installing Debian's prometheus"
apt-get update -qq
RUNLEVEL=1 DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends prometheus >/dev/null

# Belt and braces: where an init system started the service anyway, stop and disable it.
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now prometheus.service >/dev/null 2>&1 || true
elif command -v service >/dev/null 2>&1; then
    service prometheus stop >/dev/null 2>&1 || true
fi

command -v prometheus >/dev/null
prometheus --version 2>&1 | head -n 1
