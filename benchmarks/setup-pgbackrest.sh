#!/usr/bin/env bash
# Installs pgBackRest (Debian's package) for the local-archiving comparison in benchmarks/wal_replay.py
# and benchdata/wal-drain.md: `pgbackrest archive-push` into a posix repository, per segment. Not part of
# the test setup: only the benchmark uses it. Idempotent.
# Usage: bash benchmarks/setup-pgbackrest.sh   (root, or sudo; Debian/Ubuntu)
set -euo pipefail

if command -v pgbackrest >/dev/null 2>&1; then
    echo "setup-pgbackrest: ready ($(pgbackrest version))"
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq pgbackrest >/dev/null
echo "setup-pgbackrest: ready ($(pgbackrest version))"
