"""`pgtool evidence --repo`: the chain real dump drills (`verify --repo`) append to a repository (local, S3,
Azure), listed, shown, reported and verified in place exactly as a directory's, tampering named."""

from __future__ import annotations

import json
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pgharness import run_pgtool
from pgtool.evidence import log

PREFIX = "evidence/dumps/"


def _signing_keys(tmp_path: Path) -> tuple[Path, Path]:
    key = Ed25519PrivateKey.generate()
    private, public = tmp_path / "evidence.pem", tmp_path / "evidence.pub"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


def _two_drills(cluster, database, backend, tmp_path: Path) -> tuple[dict[str, str], Path]:
    """A dump in an encrypted repository, drilled twice (signed records); the CLI environment and the
    public key."""
    database.execute("CREATE TABLE items (id int PRIMARY KEY)")
    database.execute("INSERT INTO items SELECT generate_series(1, 500)")
    repo_key = tmp_path / "repo.key"
    repo_key.write_bytes(os.urandom(32))
    private, public = _signing_keys(tmp_path)
    env = backend.cli_env(PGTOOL_REPO_KEY_FILE=str(repo_key))
    proc = run_pgtool("backup", "--dsn", cluster.dsn(), "--database", database.name, env=env)
    assert proc.returncode == 0, proc.stderr
    for _ in range(2):
        proc = run_pgtool(
            "verify",
            "--dsn",
            cluster.dsn(),
            "--database",
            database.name,
            "--evidence-key-file",
            str(private),
            env=env,
        )
        assert proc.returncode == 0, proc.stderr
    return env, public


def _evidence(env: dict[str, str], action: str, *extra: str, chain: str = "dumps"):
    return run_pgtool("evidence", action, *extra, "--chain", chain, env=env)


def test_the_repository_chain_of_real_drills_lists_shows_reports_and_verifies(
    cluster, database, backend, tmp_path
):
    env, public = _two_drills(cluster, database, backend, tmp_path)

    proc = _evidence(env, "verify", "--public-key-file", str(public))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "chain intact: 2 records, 2 signatures verified by the given key" in proc.stdout

    proc = _evidence(env, "list", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [(r["seq"], r["kind"], r["outcome"], r["signed"]) for r in rows] == [
        (1, "dump", "passed", True),
        (2, "dump", "passed", True),
    ]
    assert rows[0]["what"] == database.name

    proc = _evidence(env, "show", "2")
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["seq"] == 2 and record["databases"][0]["database"] == database.name
    assert record["repo"] in backend.url or backend.url in record["repo"]

    proc = _evidence(env, "report", "--since", "2000-01-01", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert (report["drills_run"], report["passed"], report["chain_ok"]) == (2, 2, True)

    proc = _evidence(env, "list", chain="base")  # no base drill ran: that chain is empty
    assert proc.returncode == 0 and "no evidence records in evidence/base/ in" in proc.stdout

    proc = run_pgtool("evidence", "verify", env=env)  # two chains: which one?
    assert proc.returncode == 2 and "--chain dumps" in proc.stderr

    no_key = {k: v for k, v in env.items() if k != "PGTOOL_REPO_KEY_FILE"}
    proc = _evidence(no_key, "verify")
    assert proc.returncode == 1 and "no key was given" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_edits_and_removals_in_the_repository_are_named(cluster, database, backend, tmp_path):
    """Someone holding the repository key rewrites a record (a valid object, edited content), then
    removes one: the chain names both, as it does in a directory."""
    env, _public = _two_drills(cluster, database, backend, tmp_path)
    repo = backend.open(key_file=env["PGTOOL_REPO_KEY_FILE"], create=False)
    first, second = sorted(i.name for i in repo.list(PREFIX))
    record = json.loads(repo.read_bytes(first))
    record["outcome"] = "failed"
    repo.delete(first)
    repo.put_if_absent(first, log.canonical(record) + b"\n")

    proc = _evidence(env, "verify")
    assert proc.returncode == 1
    assert f"BROKEN  {first[len(PREFIX) :]}: edited" in proc.stdout, proc.stdout

    repo.delete(first)
    proc = _evidence(env, "verify")
    assert proc.returncode == 1
    assert f"{second[len(PREFIX) :]}: record 1 missing before it" in proc.stdout, proc.stdout


def test_a_flipped_byte_in_a_stored_record_is_named_and_the_rest_still_checked(
    cluster, database, local_backend, tmp_path
):
    env, public = _two_drills(cluster, database, local_backend, tmp_path)
    first, second = sorted((Path(local_backend.url) / PREFIX).glob("*.json"))
    data = bytearray(first.read_bytes())
    data[len(data) // 2] ^= 0x01
    first.write_bytes(bytes(data))

    proc = _evidence(env, "verify", "--public-key-file", str(public))
    assert proc.returncode == 1, proc.stderr
    breaks = proc.stdout.splitlines()
    assert breaks[0].startswith(f"BROKEN  {first.name}: damaged object:"), breaks
    assert PREFIX + first.name in breaks[0]
    assert all(second.name not in line for line in breaks)  # it still follows the original
    listed = _evidence(env, "list")
    assert listed.returncode == 0 and f"{first.name}  UNREADABLE" in listed.stdout
