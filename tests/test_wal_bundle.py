"""The WAL bundle (`pgtool wal-bundle`): archive-wal and restore-wal run by a bare system python3."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from pgharness import rmtree, run_pgtool, server_writable_dir
from pgtool import wal_bundle
from pgtool.pg.command import run_as_prefix
from pgtool.pg.privileges import make_server_dir, server_user

SYSTEM_PYTHON = "/usr/bin/python3"
SRC_WAL = Path(wal_bundle.__file__).parent / "wal"


@pytest.fixture
def work():
    path = server_writable_dir("pgtool-bundle-")
    yield path
    rmtree(path)


def _as_server(*argv: str) -> subprocess.CompletedProcess[str]:
    """Run argv as the server user, with site-packages off (-S): the stdlib is all there is."""
    return subprocess.run(
        [*run_as_prefix(server_user()), *argv], capture_output=True, text=True, cwd="/", timeout=60
    )


def _segment(cluster, dest: Path) -> tuple[Path, str]:
    with cluster.connect() as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bundle_fill(x int)")
        conn.execute("INSERT INTO bundle_fill SELECT generate_series(1, 1000)")
        name = conn.execute("SELECT pg_walfile_name(pg_current_wal_insert_lsn())").fetchone()[0]
        conn.execute("SELECT pg_switch_wal()")
    copy = dest / f"src-{name}"
    shutil.copyfile(cluster.data_dir / "pg_wal" / name, copy)
    copy.chmod(0o644)
    return copy, name


def test_bundle_archives_and_restores_as_the_server_user(cluster, work):
    bundle = work / "pgtool-wal.pyz"
    made = run_pgtool("wal-bundle", str(bundle))
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip() == str(bundle)
    segment, name = _segment(cluster, work)
    archive = make_server_dir(work / "archive", 0o700)
    restored = make_server_dir(work / "restored", 0o700)

    archived = _as_server(
        SYSTEM_PYTHON,
        "-I",
        "-S",
        str(bundle),
        "archive-wal",
        str(segment),
        name,
        "--archive-dir",
        str(archive),
    )
    assert archived.returncode == 0, archived.stderr
    line = json.loads(archived.stderr.strip().splitlines()[-1])
    assert (line["command"], line["outcome"], line["result"]) == ("archive-wal", "success", "archived")

    dest = restored / name
    back = _as_server(
        SYSTEM_PYTHON, "-I", "-S", str(bundle), "restore-wal", name, str(dest), "--archive-dir", str(archive)
    )
    assert back.returncode == 0, back.stderr
    assert dest.read_bytes() == segment.read_bytes()

    missing = _as_server(
        SYSTEM_PYTHON, "-I", "-S", str(bundle), "restore-wal", "00000099.history", str(restored / "h")
    )
    assert missing.returncode == 126, missing.stderr  # no --archive-dir: bad usage stops recovery
    absent = _as_server(
        SYSTEM_PYTHON, "-I", "-S", str(bundle), "restore-wal", "00000099.history", str(restored / "h"),
        "--archive-dir", str(archive),
    )  # fmt: skip
    assert absent.returncode == 1, absent.stderr


IMPORT_EVERYTHING = """
import sys, zipfile
bundle = sys.argv[1]
sys.path.insert(0, bundle)
names = [n[:-3].replace("/", ".").removesuffix(".__init__") for n in zipfile.ZipFile(bundle).namelist()
         if n.endswith(".py") and n != "__main__.py"]
before = set(sys.modules)
for name in names:
    if name == "pgtool.repo" or name.startswith(("pgtool.repo.", "pgtool.wal.repo_")):
        continue  # loaded only with --repo, with obstore and PyNaCl beside the bundle
    __import__(name)
loaded = set(sys.modules) - before
print(sorted(names))
print(sorted(m for m in loaded if m.split(".")[0] not in sys.stdlib_module_names | {"pgtool"}))
"""


def test_bundle_holds_every_wal_module_and_imports_only_the_stdlib(work):
    bundle = wal_bundle.write_bundle(work / "b.pyz")
    proc = subprocess.run(
        [SYSTEM_PYTHON, "-I", "-S", "-c", IMPORT_EVERYTHING, str(bundle)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    names_line, outside_line = proc.stdout.splitlines()
    modules = set(ast.literal_eval(names_line))
    every = {f"pgtool.wal.{p.stem}" for p in SRC_WAL.glob("*.py") if p.stem != "__init__"}
    assert every <= modules
    assert {"pgtool.repo", "pgtool.repo.store", "pgtool.repo.objformat"} <= modules
    assert outside_line == "[]"


def test_the_bundle_uses_a_repository_with_its_packages_beside_it(work, cluster):
    """As throwaway clusters run it (`cached_bundle`): the repository packages copied beside the bundle
    for this interpreter's ABI, run by the base interpreter as the server user with site-packages off,
    archive into an encrypted local repository and restore from it."""
    import os
    import sys

    bundle = wal_bundle.write_bundle(work / "b.pyz")
    wal_bundle._copy_codecs(bundle.with_suffix(".lib"))
    repo, key = work / "repo", work / "repo.key"
    key.write_bytes(os.urandom(32))
    make_server_dir(repo)
    shutil.chown(key, server_user()) if server_user() else None
    key.chmod(0o600)
    segment, name = _segment(cluster, work)
    python = getattr(sys, "_base_executable", sys.executable)
    common = ["--repo", str(repo), "--repo-key-file", str(key)]
    archived = _as_server(python, "-I", "-S", str(bundle), "archive-wal", str(segment), name, *common)
    assert archived.returncode == 0, archived.stderr
    restored_dir = work / "restored"
    make_server_dir(restored_dir)
    back = _as_server(python, "-I", "-S", str(bundle), "restore-wal", name, str(restored_dir / "X"), *common)
    assert back.returncode == 0, back.stderr
    assert (restored_dir / "X").read_bytes() == segment.read_bytes()


def test_the_bundle_refuses_a_repository_in_one_line(work):
    """--repo needs obstore and PyNaCl, which the stdlib-only bundle does not carry: exit 126 for
    restore-wal (recovery stops), 2 for archive-wal, one line naming the missing dependency."""
    bundle = wal_bundle.write_bundle(work / "b.pyz")
    (work / "x").write_text("1\t0/3000000\tno recovery target specified\n")  # a timeline history file
    for argv, code in (
        (["restore-wal", "000000010000000000000001", str(work / "d"), "--repo", "s3://bucket/p"], 126),
        (["archive-wal", str(work / "x"), "00000002.history", "--repo", "s3://bucket/p"], 2),
    ):
        proc = subprocess.run([SYSTEM_PYTHON, "-I", "-S", str(bundle), *argv], capture_output=True, text=True)
        assert proc.returncode == code, proc.stderr
        assert "--repo needs pgtool installed" in proc.stderr and "Traceback" not in proc.stderr


def test_a_wal_module_importing_a_third_party_package_stops_the_build(tmp_path, monkeypatch):
    package = tmp_path / "pgtool"
    shutil.copytree(SRC_WAL.parent, package, ignore=shutil.ignore_patterns("__pycache__"))
    (package / "wal" / "zz_extra.py").write_text("import psycopg\n")
    monkeypatch.setattr(wal_bundle, "_package_root", lambda: package)
    with pytest.raises(wal_bundle.BundleError, match=r"psycopg \(in pgtool\.wal\.zz_extra\)"):
        wal_bundle.build_bytes()
