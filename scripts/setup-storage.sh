#!/usr/bin/env bash
# Installs what the repository capability (pgtool.repo) and its tests (tests/repo) need, idempotently:
#   - obstore and PyNaCl, runtime dependencies of pgtool.repo, into the project venv;
#   - moto's S3 server into its own venv, .tools/moto-venv: moto pins python-dateutil<3 while kubernetes
#     (a dev dependency) needs >=3, so sharing the project venv would break one of them. The tests only run
#     it as a server process, never import it;
#   - Azurite, Microsoft's Azure Storage emulator, at a pinned version into .tools/node_modules.
# Usage: scripts/setup-storage.sh [VENV]   (default: $PGTOOL_VENV, else ./.venv)
# Needs python3-venv, node and npm (Debian: apt-get install -y python3-venv nodejs npm).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${1:-${PGTOOL_VENV:-$root/.venv}}"
tools="$root/.tools"
AZURITE_VERSION="3.37.0"
MOTO_SPEC="moto[server]>=5.1,<6"

if [ ! -x "$venv/bin/pip" ]; then
    echo "setup-storage: no pip in $venv (build the venv first: bash scripts/setup.sh)" >&2
    exit 1
fi

# Skip pip when the pins are already met: setup runs often and pip's resolver is slow.
have() { # have PYTHON DIST MAJOR MINOR
    "$1" - "$2" "$3" "$4" <<'PY' 2>/dev/null
import importlib.metadata as m, sys
parts = [int(p) for p in m.version(sys.argv[1]).split(".")[:2] if p.isdigit()]
sys.exit(0 if tuple(parts) >= (int(sys.argv[2]), int(sys.argv[3])) else 1)
PY
}

if ! have "$venv/bin/python" obstore 0 12 || ! have "$venv/bin/python" pynacl 1 5; then
    "$venv/bin/pip" install --quiet "obstore>=0.12,<0.13" "pynacl>=1.5"
fi

mkdir -p "$tools"
if [ ! -x "$tools/moto-venv/bin/moto_server" ] || ! have "$tools/moto-venv/bin/python" moto 5 1; then
    python3 -m venv "$tools/moto-venv"
    "$tools/moto-venv/bin/pip" install --quiet "$MOTO_SPEC"
fi

if [ ! -x "$tools/node_modules/.bin/azurite-blob" ] ||
    ! grep -q "\"version\": \"$AZURITE_VERSION\"" "$tools/node_modules/azurite/package.json" 2>/dev/null; then
    if ! command -v npm >/dev/null; then
        echo "setup-storage: npm not found (Debian: apt-get install -y nodejs npm)" >&2
        exit 1
    fi
    npm install --prefix "$tools" --no-audit --no-fund --loglevel=error "azurite@$AZURITE_VERSION"
fi
echo "setup-storage: ready (obstore, pynacl in $venv; moto server in $tools/moto-venv; azurite $AZURITE_VERSION)"
