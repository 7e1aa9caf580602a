#!/usr/bin/env bash
# c4route's whole test suite, from a fresh clone on a fresh Debian machine:
#   1. redis-server for the shared-state integration tests, installed if missing
#      (scripts/install-redis.sh); the tests start their own servers on loopback;
#   2. cargo test: unit, data-driven, snapshot, property and CLI/server integration tests;
#   3. the Kamailio end-to-end suite: installs Kamailio 5.6.3, SIPp and the
#      http_async_client module if missing (kamailio/install.sh), then runs real SIP
#      calls through Kamailio and c4route (kamailio/tests/run.sh).
# Exits non-zero on the first failing stage. Set SKIP_KAMAILIO=1 to skip stage 3;
# C4ROUTE_SKIP_REDIS=1 skips stage 1 and the tests that need redis-server (they say SKIPPED).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TERM_COLOR=never

if [ "${C4ROUTE_SKIP_REDIS:-0}" = 1 ]; then
    echo "== stage 1 skipped (C4ROUTE_SKIP_REDIS=1): the shared-state tests will be SKIPPED"
else
    echo "== stage 1: redis-server for the shared-state tests"
    bash scripts/install-redis.sh
fi

echo "== stage 2: cargo test --workspace"
cargo test --workspace --locked

if [ "${SKIP_KAMAILIO:-0}" = 1 ]; then
    echo "== stage 3 skipped (SKIP_KAMAILIO=1)"
    exit 0
fi

echo "== stage 3: Kamailio end-to-end (real Kamailio + SIPp on loopback)"
cargo build --release --locked --bin c4route
bash kamailio/install.sh
bash kamailio/tests/run.sh
