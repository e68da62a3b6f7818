#!/usr/bin/env bash
# Installs barman-cloud-wal-archive (the WAL archiver CloudNativePG's barman-cloud runs per segment), the
# reference of benchmarks/archive_wal_s3.py, into its own venv .tools/barman-venv, idempotently.
# PyPI's barman[cloud,zstandard] (boto3 for S3, zstandard for --zstd) rather than Debian's older
# barman-cli-cloud 3.4: CloudNativePG's images install barman from PyPI. Its own venv, because boto3
# and barman's pins are nothing pgtool depends on. Not part of the test setup: only the benchmark uses it.
# Usage: bash benchmarks/setup-barman.sh   (needs python3-venv; Debian: apt-get install -y python3-venv)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.tools/barman-venv"
BARMAN_SPEC="barman[cloud,zstandard]>=3.14,<4"

if [ -x "$venv/bin/barman-cloud-wal-archive" ] && "$venv/bin/python" -c "import boto3, zstandard" 2>/dev/null; then
    echo "setup-barman: ready ($("$venv/bin/barman-cloud-wal-archive" --version 2>&1) in $venv)"
    exit 0
fi
mkdir -p "$root/.tools"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet "$BARMAN_SPEC"
echo "setup-barman: ready ($("$venv/bin/barman-cloud-wal-archive" --version 2>&1) in $venv)"
