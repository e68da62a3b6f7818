"""status --repo when the repository cannot be used, or holds nothing yet: one problem line each, never a
traceback and never a window (the window itself is checked end to end in
tests/physical/test_physical_repo_basebackup.py)."""

from __future__ import annotations

from pgtool.status.model import Thresholds
from pgtool.status.repo_window import repo_base_backups_section


def test_no_repository_there(tmp_path):
    section = repo_base_backups_section(str(tmp_path / "nothing"), None, Thresholds())
    [problem] = section.problems
    assert problem.message.startswith("cannot read the repository")
    assert "window" not in section.data


def test_empty_repository_on_each_backend(backend, monkeypatch):
    backend.open(create=True)
    for key, value in backend.env.items():  # the store reads the cloud's standard environment
        if key.startswith(("AWS_", "AZURE_")):
            monkeypatch.setenv(key, value)
    section = repo_base_backups_section(backend.url, None, Thresholds())
    messages = [p.message for p in section.problems]
    assert any("no complete base backup in" in m for m in messages)
    assert "the WAL archive holds no segments" in messages
    assert section.data["window"] is None


def test_a_key_for_a_cleartext_repository_is_refused(local_backend, tmp_path):
    local_backend.open(create=True)
    key = tmp_path / "repo.key"
    key.write_bytes(b"x" * 32)
    section = repo_base_backups_section(local_backend.url, str(key), Thresholds())
    [problem] = section.problems
    assert "cannot read the repository" in problem.message
