"""Base backups in a repository (pgtool.physical.repo_catalog), on every backend: listed only once the
metadata object is there, read back verified and the same size as recorded, deleted metadata first."""

from __future__ import annotations

import pytest

from basebackup_fakes import fake_base_backup
from pgtool.physical import repo_catalog
from pgtool.physical.base_catalog import METADATA_FILE, read_info
from pgtool.repo import IntegrityError, base_prefix


def _backup(tmp_path, stamp="20260101T000000Z"):
    info = fake_base_backup(tmp_path / "local", stamp, 1, 3)
    directory = tmp_path / "local" / stamp
    (directory / "base.tar").write_bytes(b"tar bytes " * 1000)
    (directory / "pg_tblspc").mkdir()
    (directory / "pg_tblspc" / "16384.tar").write_bytes(b"tablespace")
    info.files = {"base.tar": 10000, "backup_manifest": 2}
    (directory / METADATA_FILE).write_text(info.to_json())
    return info, directory


def test_upload_list_download_delete(backend, tmp_path):
    repo = backend.open()
    info, directory = _backup(tmp_path)
    assert repo_catalog.list_base_backups(repo) == []
    repo_catalog.upload(repo, directory, info.id)
    [listed] = repo_catalog.list_base_backups(repo)
    assert listed.id == info.id and listed.path is None
    local = repo_catalog.download(repo, listed, tmp_path / "fetched")
    assert read_info(local) is not None
    assert (local / "base.tar").read_bytes() == (directory / "base.tar").read_bytes()
    assert (local / "pg_tblspc" / "16384.tar").read_bytes() == b"tablespace"
    repo_catalog.delete(repo, info.id)
    assert repo_catalog.list_base_backups(repo) == []
    assert repo.list(base_prefix(info.id)) == []


def test_half_uploaded_backup_is_not_listed(local_backend, tmp_path):
    repo = local_backend.open()
    info, directory = _backup(tmp_path)
    repo.put_file(base_prefix(info.id) + "base.tar", directory / "base.tar")
    assert repo_catalog.list_base_backups(repo) == []


@pytest.mark.parametrize("damage", ["flip", "truncate-file"])
def test_damaged_backup_fails_download_and_leaves_nothing(local_backend, tmp_path, damage):
    repo = local_backend.open()
    info, directory = _backup(tmp_path)
    repo_catalog.upload(repo, directory, info.id)
    name = base_prefix(info.id) + "base.tar"
    stored = bytearray(b"".join(repo.store.get_stream(name)))
    if damage == "flip":
        stored[len(stored) // 2] ^= 1
    else:
        stored = stored[: len(stored) // 2]
    repo.store.delete(name)
    repo.store.create(name, bytes(stored))
    [listed] = repo_catalog.list_base_backups(repo)
    with pytest.raises(IntegrityError, match=r"base\.tar"):
        repo_catalog.download(repo, listed, tmp_path / "fetched")
    assert not (tmp_path / "fetched" / info.id).exists()
