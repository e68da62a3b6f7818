"""`pgtool verify --base --repo`: the CLI runs the base drill over a repository and records every drill,
pass or fail, in the repository's evidence chain (evidence/base/), which `pgtool.evidence` verifies."""

from __future__ import annotations

import json

import pytest
from repo_pitr_support import RepoPrimary, flip_byte, repo_backend, rewrite_object, start_repo_primary

from pgharness import run_pgtool
from pgtool.evidence import repo_log
from pgtool.repo import wal_name


@pytest.fixture(params=["local", "s3"])
def repo_primary(request, pg_major, work_dir, monkeypatch):
    backend = repo_backend(request.param, request, work_dir)
    primary = start_repo_primary(pg_major, work_dir, backend, monkeypatch)
    yield primary
    primary.cleanup()


def _records(primary: RepoPrimary) -> list[dict]:
    repo = primary.repo
    return [json.loads(repo.read_bytes(info.name)) for info in repo.list("evidence/base/")]


def test_verify_base_repo_passes_then_fails_and_records_both(repo_primary: RepoPrimary) -> None:
    primary = repo_primary
    assert primary.backend is not None
    primary.sql("CREATE TABLE t (i int PRIMARY KEY)")
    stamp = primary.basebackup_to_repo()
    names = []
    for n in range(2):
        primary.sql("INSERT INTO t SELECT generate_series(%s::int, %s::int)", (n * 100, n * 100 + 99))
        names.append(primary.switch_wal())
    env = {**primary.backend.env, "PGTOOL_ARCHIVE_DIR": ""}
    ok = run_pgtool("verify", "--base", "--repo", primary.backend.url, env=env, timeout=600)
    assert ok.returncode == 0, ok.stderr
    assert stamp in ok.stdout
    [passed] = _records(primary)
    assert passed["outcome"] == "passed" and passed["backup"]["id"] == stamp
    assert passed["backup"]["backup_manifest_sha256"]
    assert passed["wal"]["last_segment"] == names[-1]

    rewrite_object(primary.repo, wal_name(names[0]), flip_byte)
    bad = run_pgtool("verify", "--base", "--repo", primary.backend.url, env=env, timeout=600)
    assert bad.returncode == 1, bad.stderr
    assert names[0] in bad.stderr
    records = _records(primary)
    assert [r["outcome"] for r in records] == ["passed", "failed"]
    assert records[1]["prev_sha256"] == records[0]["sha256"]  # one chain
    assert names[0] in records[1]["error"]
    assert repo_log.PREFIX != "evidence/base/"  # dumps and base drills keep separate chains


def test_verify_base_with_repo_and_directories_is_usage(repo_primary: RepoPrimary, tmp_path) -> None:
    assert repo_primary.backend is not None
    proc = run_pgtool(
        "verify", "--base", "--repo", repo_primary.backend.url, "--base-dir", str(tmp_path),
        env=repo_primary.backend.env,
    )  # fmt: skip
    assert proc.returncode == 2 and "not both" in proc.stderr
