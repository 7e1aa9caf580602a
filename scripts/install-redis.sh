#!/usr/bin/env bash
# Install Debian's redis-server package: the shared-state integration tests (tests/redis.rs and
# the `serve --state redis://...` tests) start their own redis-server on 127.0.0.1.
#
# Idempotent: when `redis-server --version` works it exits at once without touching apt.
# Non-interactive; installing needs root (or sudo).
#
#   bash scripts/install-redis.sh
#
# The tests never use the system service: each one runs `redis-server` itself on a free loopback
# port with its own temporary directory and no persistence. The package's service is stopped and
# disabled here when an init system started it, so no stray server listens on 6379.
set -euo pipefail

log() { printf '[install-redis] %s\n' "$*"; }
die() { printf '[install-redis] ERROR: %s\n' "$*" >&2; exit 1; }

if [[ $# -gt 0 ]]; then
    printf '[install-redis] unknown argument %s (takes none)\n' "$1" >&2
    exit 2
fi

# --- fast path -------------------------------------------------------------------------------
if version=$(redis-server --version 2>/dev/null); then
    log "already installed: $version; nothing to do"
    exit 0
fi

# --- install ---------------------------------------------------------------------------------
SUDO=""
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || die "run as root (or install sudo)"
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
command -v apt-get >/dev/null || die "no apt-get: install redis-server (or valkey-server) by hand"

log "apt-get update"
$SUDO apt-get update -qq
log "apt-get install redis-server"
# --no-install-recommends: redis-tools is a dependency anyway; the tests speak RESP themselves.
$SUDO apt-get install -y -q --no-install-recommends redis-server >/dev/null

# The package enables a redis-server service on 127.0.0.1:6379; the tests start their own
# servers on free ports, so stop the packaged one if the init system started it.
if command -v systemctl >/dev/null && systemctl is-active --quiet redis-server 2>/dev/null; then
    log "stopping and disabling the packaged redis-server service"
    $SUDO systemctl disable --now redis-server || true
fi

version=$(redis-server --version 2>/dev/null) || die "redis-server installed but does not run"
log "installed: $version"
