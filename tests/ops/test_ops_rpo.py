"""RPO as one number (`status`): a real primary archiving through pgtool archive-wal into a directory and
into a repository. After a switch the RPO is small; with archive_command broken the backlog grows, the
failures are reported and the RPO grows; --max-rpo makes it a finding (exit 1); --push pushes it."""

from __future__ import annotations

import time

import pytest
from ops_rpo_helpers import RpoPrimary, rpo_primary
from prometheus_client.parser import text_string_to_metric_families

from pgharness import retry

SEGMENT = 16 * 1024 * 1024


def _rpo(doc: dict) -> dict:
    return doc["sections"]["recoverability"]


def _areas(doc: dict) -> list[str]:
    return [p["area"] for p in doc["problems"]]


def _small_rpo_after_a_switch(primary: RpoPrimary, source: str) -> None:
    name = primary.switch_and_wait()
    _code, doc = primary.status()
    rpo = _rpo(doc)
    assert rpo["newest_archived_wal"] >= name
    assert rpo["rpo_source"] == source
    assert rpo["rpo_seconds"] is not None and rpo["rpo_seconds"] < 60, rpo
    assert 0 <= rpo["backlog_bytes"] < SEGMENT and rpo["backlog_segments"] == 0, rpo
    assert rpo["ready_files"] == 0 and rpo["failed_count"] == 0 and rpo["failing"] is False
    assert "recoverability" not in _areas(doc), doc["problems"]
    _code, text = primary.text()
    assert "RPO now: " in text and source in text, text
    assert "archiver failures: 0 since stats reset" in text


def _broken_archiving_grows_backlog_and_rpo(primary: RpoPrimary) -> None:
    primary.set_archive_command("false")
    names = [primary.switch() for _ in range(3)]
    retry(lambda: (primary.archiver()["last_failed_wal"] or "") >= names[0], timeout=60)
    code, first = primary.status()
    rpo = _rpo(first)
    assert code == 1
    assert rpo["backlog_segments"] >= 3 and rpo["backlog_bytes"] >= 3 * SEGMENT, rpo
    assert rpo["ready_files"] >= 3, rpo
    assert rpo["failed_count"] > 0 and rpo["failing"] is True and rpo["last_failed_wal"] >= names[0]
    assert rpo["newest_archived_wal"] < names[0]
    time.sleep(2.5)
    primary.write()
    code, second = primary.status()
    assert _rpo(second)["rpo_seconds"] >= rpo["rpo_seconds"] + 2, (_rpo(second), rpo)
    assert _rpo(second)["backlog_bytes"] > rpo["backlog_bytes"]
    # Over --max-rpo it is a finding of its own, naming the failing archiver as the fix.
    code, doc = primary.status("--max-rpo", "1s")
    assert code == 1
    [problem] = [p for p in doc["problems"] if p["area"] == "recoverability"]
    assert problem["message"].startswith("RPO is ") and "limit 1s" in problem["message"]
    assert "archive_command is failing" in problem["fix"]
    code, text = primary.text("--max-rpo", "1s")
    assert "recoverability: RPO is " in text and "none archived since" in text, text
    # Mended: the backlog drains and the RPO is small again.
    primary.set_archive_command(primary.command)
    retry(lambda: (primary.archiver()["last_archived_wal"] or "") >= names[-1], timeout=120)
    code, doc = primary.status()
    assert _rpo(doc)["backlog_segments"] == 0 and _rpo(doc)["failing"] is False, _rpo(doc)
    assert _rpo(doc)["rpo_seconds"] < 60
    assert "recoverability" not in _areas(doc)


def _max_rpo_alone_decides_the_exit_code(primary: RpoPrimary) -> None:
    primary.switch_and_wait()
    primary.write()  # on the server only: the current segment is not full
    time.sleep(2.5)
    code, doc = primary.status("--max-rpo", "1s")
    assert _rpo(doc)["backlog_bytes"] > 0 and _rpo(doc)["rpo_seconds"] >= 2
    assert code == 1 and _areas(doc) == ["recoverability"], doc["problems"]
    assert "archive_timeout" in doc["problems"][0]["fix"]
    code, doc = primary.status("--max-rpo", "1h")
    assert code == 0, doc["problems"]


def test_rpo_with_an_archive_directory() -> None:
    with rpo_primary("dir") as primary:
        _small_rpo_after_a_switch(primary, "file modification time in --archive-dir")
        _max_rpo_alone_decides_the_exit_code(primary)
        _broken_archiving_grows_backlog_and_rpo(primary)


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_rpo_with_a_repository(kind, request, tmp_path, monkeypatch) -> None:
    from repo_backends import make_backend

    with rpo_primary("repo", make_backend(kind, request, tmp_path), monkeypatch) as primary:
        _small_rpo_after_a_switch(primary, "object last-modified time in the repository")
        _broken_archiving_grows_backlog_and_rpo(primary)


def test_nothing_written_since_the_archived_segment_is_rpo_zero() -> None:
    with rpo_primary("dir") as primary:
        primary.switch_and_wait()

        def quiet() -> bool:
            return _rpo(primary.status()[1])["backlog_bytes"] == 0

        retry(quiet, timeout=30)  # the server's own records after the switch (running xacts) settle
        code, doc = primary.status()
        assert code == 0, doc["problems"]
        assert _rpo(doc)["rpo_seconds"] == 0 and _rpo(doc)["nothing_written_since"] is True
        assert "RPO now: 0s, nothing written since" in primary.text()[1]


def test_without_an_archive_the_server_time_is_used_and_pushed(pushgateway) -> None:
    with rpo_primary("dir") as primary:
        name = primary.switch_and_wait()
        primary.write()
        primary.where = []
        code, doc = primary.status("--pushgateway", pushgateway.url, "--push")
        rpo = _rpo(doc)
        assert rpo["rpo_source"] == "pg_stat_archiver.last_archived_time"
        assert rpo["newest_archived_wal"] == name and rpo["backlog_bytes"] > 0
        pushed = {
            s.name: s.value
            for family in text_string_to_metric_families(pushgateway.metrics_text())
            for s in family.samples
            if s.labels.get("job") == "pgtool-status"
        }
        assert pushed["pgtool_rpo_seconds"] == pytest.approx(rpo["rpo_seconds"], abs=0.1)
        assert pushed["pgtool_archive_backlog_bytes"] == rpo["backlog_bytes"]
        assert pushed["pgtool_archive_backlog_segments"] == rpo["backlog_segments"]
        assert pushed["pgtool_archive_ready_files"] == rpo["ready_files"]
        assert pushed["pgtool_archiver_failed_count"] == 0 and pushed["pgtool_archiver_failing"] == 0
        # Unhealthy (no verify result in the Pushgateway): exit 1, pushed as an unsuccessful run.
        assert code == 1 and pushed["pgtool_last_run_success"] == 0


def test_push_needs_a_pushgateway(cluster) -> None:
    from pgharness import run_pgtool

    proc = run_pgtool("status", "--dsn", cluster.dsn(), "--push", "--k8s", "off")
    assert proc.returncode == 2 and "--push needs --pushgateway" in proc.stderr
    bad = run_pgtool("status", "--dsn", cluster.dsn(), "--max-rpo", "soon", "--k8s", "off")
    assert bad.returncode == 2 and "--max-rpo" in bad.stderr
