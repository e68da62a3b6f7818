"""A base drill that cannot set up its throwaway cluster leaves no directory behind."""

from __future__ import annotations

from pathlib import Path

import pytest
from physical_support import ArchivingPrimary

from pgharness import binaries_for
from pgtool.errors import PgtoolError
from pgtool.obs.metrics import RunReport
from pgtool.pg.privileges import server_user
from pgtool.physical.base_drill import run_base_drill


def test_no_leftover_when_the_cluster_cannot_be_set_up(
    primary: ArchivingPrimary, work_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if server_user() is None:
        pytest.fail("needs root: the server user must be unable to reach the private binaries")
    primary.sql("CREATE TABLE t (i int)")
    primary.basebackup()
    primary.switch_wal()
    # Binaries in a directory only root can enter: the drill must mirror them for the server user,
    # into a cache directory that cannot be created (its parent is a file).
    private = work_dir / "private"
    (private / "pg" / "bin").mkdir(parents=True)
    private.chmod(0o700)
    for tool in binaries_for(primary.major).bindir.iterdir():
        (private / "pg" / "bin" / tool.name).symlink_to(tool)
    blocker = work_dir / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv("PGTOOL_CACHE_DIR", str(blocker / "cache"))
    scratch = work_dir / "drills"
    scratch.mkdir()

    with pytest.raises(PgtoolError, match="cannot create"):
        run_base_drill(
            primary.base_dir,
            primary.archive_dir,
            pg_bindir=str(private / "pg" / "bin"),
            amcheck=False,
            report=RunReport(),
            work_dir=scratch,
        )
    assert list(scratch.iterdir()) == []
