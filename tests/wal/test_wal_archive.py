"""archive-wal and restore-wal through the real console script, on real WAL segments."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zstandard
from walsegments import complete_segment

from pgharness import pgtool_argv, run_pgtool
from pgtool.wal.archive import SYSTEM_ID_FILE, TEMP_PREFIX, list_archive, read_archived
from pgtool.wal.header import read_long_header
from pgtool.wal.names import format_lsn, parse_wal_name
from pgtool.wal_bundle import server_command


def archive(src, name, archive_dir, *extra, env=None):
    return run_pgtool("archive-wal", str(src), name, "--archive-dir", str(archive_dir), *extra, env=env)


def restore(name, dest, archive_dir):
    return run_pgtool("restore-wal", name, str(dest), "--archive-dir", str(archive_dir))


def summary(proc) -> dict:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    event = json.loads(lines[0])
    for key in ("event", "command", "outcome", "duration_s", "level", "timestamp", "exit_code"):
        assert key in event, key
    assert "Traceback" not in proc.stderr
    return event


def temporaries(archive_dir: Path) -> list[str]:
    return [p.name for p in archive_dir.iterdir() if p.name.startswith(TEMP_PREFIX)]


@pytest.mark.all_versions
@pytest.mark.parametrize("compress", ["none", "zstd", "lz4"])
def test_archive_then_restore_round_trip(segment, archive_dir, work_dir, compress):
    src, name = segment
    proc = archive(src, name, archive_dir, "--compress", compress)
    assert proc.returncode == 0, proc.stderr
    event = summary(proc)
    assert (event["event"], event["outcome"], event["result"]) == ("run finished", "success", "archived")
    stored = archive_dir / (name + {"none": "", "zstd": ".zst", "lz4": ".lz4"}[compress])
    assert stored.is_file()
    if compress == "zstd":
        assert stored.stat().st_size < src.stat().st_size
        assert zstandard.ZstdDecompressor().decompress(stored.read_bytes()) == src.read_bytes()
    if compress == "lz4":  # a standard lz4 frame: the lz4 command line tool reads it
        out = subprocess.run(["lz4", "-dc", str(stored)], capture_output=True, check=True).stdout
        assert out == src.read_bytes()
    assert int((archive_dir / SYSTEM_ID_FILE).read_text()) == read_long_header(str(src)).system_identifier
    assert [f.name for f in list_archive(str(archive_dir))] == [name]
    assert temporaries(archive_dir) == []

    dest = work_dir / "restored"
    proc = restore(name, dest, archive_dir)
    assert proc.returncode == 0, proc.stderr
    assert summary(proc)["outcome"] == "success"
    assert dest.read_bytes() == src.read_bytes()
    assert not [p for p in work_dir.iterdir() if p.name.startswith(TEMP_PREFIX)]


@pytest.mark.parametrize(
    ("first", "second"), [("none", "none"), ("zstd", "none"), ("none", "zstd"), ("lz4", "zstd")]
)
def test_identical_duplicate_is_success_in_any_compression(segment, archive_dir, first, second):
    src, name = segment
    assert archive(src, name, archive_dir, "--compress", first).returncode == 0
    before = {p.name: p.read_bytes() for p in archive_dir.iterdir()}
    proc = archive(src, name, archive_dir, "--compress", second)
    assert proc.returncode == 0, proc.stderr
    assert summary(proc)["result"] == "already archived"
    assert {p.name: p.read_bytes() for p in archive_dir.iterdir()} == before


@pytest.mark.parametrize("first", ["none", "zstd"])
def test_different_duplicate_fails_and_leaves_the_archive_untouched(segment, archive_dir, work_dir, first):
    src, name = segment
    assert archive(src, name, archive_dir, "--compress", first).returncode == 0
    before = {p.name: p.read_bytes() for p in archive_dir.iterdir()}
    changed = work_dir / "changed"
    data = bytearray(src.read_bytes())
    data[len(data) // 2] ^= 0xFF
    changed.write_bytes(bytes(data))
    proc = archive(changed, name, archive_dir)
    assert proc.returncode == 1
    event = summary(proc)
    assert event["event"] == "run failed"
    stored = name + (".zst" if first == "zstd" else "")
    assert str(archive_dir / stored) in event["error"]
    assert str(changed) in event["error"]
    assert {p.name: p.read_bytes() for p in archive_dir.iterdir()} == before


def test_segment_of_another_system_is_refused_unless_allowed(pg15, pg18, archive_dir, work_dir):
    src15, name15 = complete_segment(pg15, work_dir)
    src18, name18 = complete_segment(pg18, work_dir)
    assert archive(src15, name15, archive_dir).returncode == 0
    proc = archive(src18, name18, archive_dir)
    assert proc.returncode == 1
    sys15 = read_long_header(str(src15)).system_identifier
    sys18 = read_long_header(str(src18)).system_identifier
    assert str(sys18) in summary(proc)["error"]
    assert str(sys15) in summary(proc)["error"]
    assert not (archive_dir / name18).exists() or name18 == name15

    # Without the recorded identifier (an archive made before pgtool), the segments themselves decide.
    (archive_dir / SYSTEM_ID_FILE).unlink()
    assert archive(src18, name18, archive_dir).returncode == 1
    assert int((archive_dir / SYSTEM_ID_FILE).read_text()) == sys15

    other = archive_dir.parent / "other"
    other.mkdir()
    assert archive(src18, name18, other).returncode == 0
    proc = archive(src18, name18, archive_dir, "--allow-system-id-change")
    # Same name as the archived PG15 segment would be a differing duplicate (still refused).
    assert proc.returncode == (0 if name18 != name15 else 1), proc.stderr
    if name18 != name15:
        assert int((archive_dir / SYSTEM_ID_FILE).read_text()) == sys18
        assert (archive_dir / name18).read_bytes() == src18.read_bytes()


def test_history_backup_and_partial_files(segment, archive_dir, work_dir):
    src, name = segment
    history = work_dir / "00000002.history"
    # Timeline 2 forks inside this segment: timeline 1's .partial of it is still archivable.
    fork = format_lsn(parse_wal_name(name).start_lsn() + 0x100)
    history.write_text(f"1\t{fork}\tno recovery target specified\n")
    backup_name = f"{name}.00000028.backup"
    backup = work_dir / backup_name
    backup.write_text(f"START WAL LOCATION: 0/3000028 (file {name})\n")
    partial_name = f"{name}.partial"
    for path, wal_name in [(history, "00000002.history"), (backup, backup_name), (src, partial_name)]:
        proc = archive(path, wal_name, archive_dir, "--compress", "zstd")
        assert proc.returncode == 0, proc.stderr
        assert read_archived(str(archive_dir), wal_name) == path.read_bytes()
        dest = work_dir / f"restored-{wal_name}"
        assert restore(wal_name, dest, archive_dir).returncode == 0
        assert dest.read_bytes() == path.read_bytes()
    assert [f.name for f in list_archive(str(archive_dir))] == [backup_name, partial_name, "00000002.history"]


def test_bad_usage_and_bad_input_are_one_line_with_low_codes(segment, archive_dir, work_dir):
    src, name = segment
    cases = [
        (archive(src, "not-a-wal-name", archive_dir), 2),
        (archive(src, name, work_dir / "missing"), 1),
        (archive(work_dir / "nope", name, archive_dir), 1),
        (run_pgtool("archive-wal", str(src)), 2),
        (archive(src, "000000010000000000000099", archive_dir), 1),  # content of another segment
    ]
    truncated = work_dir / "truncated"
    truncated.write_bytes(src.read_bytes()[: 8192 * 3])
    cases.append((archive(truncated, name, archive_dir), 1))
    for proc, code in cases:
        assert proc.returncode == code, proc.stderr
        assert summary(proc)["event"] == "run failed"
    assert list(archive_dir.iterdir()) == [archive_dir / SYSTEM_ID_FILE] or not list(archive_dir.iterdir())


def test_archive_dir_from_environment(segment, archive_dir):
    src, name = segment
    proc = run_pgtool("archive-wal", str(src), name, env={"PGTOOL_ARCHIVE_DIR": str(archive_dir)})
    assert proc.returncode == 0, proc.stderr
    assert (archive_dir / name).is_file()


def test_unwritable_archive_dir_fails_clearly(segment, work_dir):
    src, name = segment
    locked = work_dir / "locked"
    locked.mkdir(mode=0o755)  # owned by root, written by the server user: permission denied
    os.chmod(src, 0o644)
    proc = subprocess.run(
        [
            "runuser",
            "-u",
            "postgres",
            "--",
            *shlex.split(server_command()),  # what the server user can run
            "archive-wal",
            str(src),
            name,
            "--archive-dir",
            str(locked),
        ],
        capture_output=True,
        text=True,
        cwd="/",
    )
    assert proc.returncode == 1, proc.stderr
    assert "Permission denied" in summary(proc)["error"]
    assert list(locked.iterdir()) == []


def test_disk_full_fails_clearly_and_leaves_nothing(segment, work_dir):
    src, name = segment
    small = work_dir / "small"
    small.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(small)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        proc = archive(src, name, small)
        assert proc.returncode == 1
        assert "No space left on device" in summary(proc)["error"]
        assert not (small / name).exists()
        assert temporaries(small) == []
    finally:
        subprocess.run(["umount", str(small)], check=True)


def test_killed_between_write_and_rename_leaves_no_half_file(segment, archive_dir):
    src, name = segment
    # The fault is injected from outside, into the unchanged program: strace kills archive-wal with
    # SIGKILL at the one system call that would give the fsynced temporary its final name (link, or
    # rename where hard links are missing), and makes that call fail so it never takes effect.
    publish = "link,linkat,rename,renameat,renameat2"
    strace = ["strace", "-f", "-qq", "-o", os.devnull, "-P", str(archive_dir / name)]
    strace += ["-e", f"trace={publish}", "-e", f"inject={publish}:error=EIO:signal=SIGKILL"]
    proc = subprocess.run(
        [*strace, *pgtool_argv(), "archive-wal", str(src), name, "--archive-dir", str(archive_dir)],
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr  # strace ends as its tracee did
    temp = archive_dir / temporaries(archive_dir)[0]
    assert temp.name.startswith(TEMP_PREFIX + name)
    assert temp.stat().st_size == src.stat().st_size  # complete, only its name was missing
    assert not (archive_dir / name).exists()
    assert [f.name for f in list_archive(str(archive_dir))] == []  # never mistaken for a segment
    assert temporaries(archive_dir)

    retried = archive(src, name, archive_dir)
    assert retried.returncode == 0, retried.stderr
    assert summary(retried).get("removed_temporaries") == 1
    assert temporaries(archive_dir) == []
    assert (archive_dir / name).read_bytes() == src.read_bytes()


def test_old_temporary_of_another_host_is_removed(segment, archive_dir):
    src, name = segment
    stale = archive_dir / f"{TEMP_PREFIX}{name}.1.deadbeef"  # pid 1 is alive: only the age makes it stale
    stale.write_bytes(b"partial")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    fresh = archive_dir / f"{TEMP_PREFIX}{name}.1.cafecafe"
    fresh.write_bytes(b"partial")
    assert archive(src, name, archive_dir).returncode == 0
    assert not stale.exists()
    assert fresh.exists()  # a live writer's temporary is left alone


@pytest.mark.parametrize(
    "damage", ["truncate-zst", "flip-zst", "truncate-lz4", "flip-lz4", "truncate-plain", "garbage-plain"]
)
def test_restore_of_a_damaged_file_stops_recovery(segment, archive_dir, work_dir, damage):
    src, name = segment
    suffix = {"zst": ".zst", "lz4": ".lz4", "plain": ""}[damage.split("-")[1]]
    compress = {".zst": "zstd", ".lz4": "lz4", "": "none"}[suffix]
    assert archive(src, name, archive_dir, "--compress", compress).returncode == 0
    stored = archive_dir / (name + suffix)
    data = bytearray(stored.read_bytes())
    if damage.startswith("truncate"):
        data = data[: len(data) - 1000]
    elif damage.startswith("flip"):
        data[len(data) // 2] ^= 0xFF
    else:
        data[:64] = b"\0" * 64
    stored.chmod(0o644)
    stored.write_bytes(bytes(data))
    dest = work_dir / "restored"
    proc = restore(name, dest, archive_dir)
    assert proc.returncode == 126, proc.stderr
    assert summary(proc)["event"] == "run failed"
    assert not dest.exists()
    assert not [p for p in work_dir.iterdir() if p.name.startswith(TEMP_PREFIX)]


def test_restore_missing_is_1_and_real_errors_are_126(segment, archive_dir, work_dir):
    src, name = segment
    proc = restore(name, work_dir / "x", archive_dir)
    assert proc.returncode == 1
    assert summary(proc)["outcome"] == "not found"
    assert restore("00000009.history", work_dir / "x", archive_dir).returncode == 1
    assert restore(name, work_dir / "x", work_dir / "no-such-archive").returncode == 126
    assert restore("garbage", work_dir / "x", archive_dir).returncode == 126
    assert run_pgtool("restore-wal", name).returncode == 126
    assert archive(src, name, archive_dir).returncode == 0
    assert restore(name, work_dir / "no-such-dir" / "x", archive_dir).returncode == 126
    assert not (work_dir / "x").exists()


def test_help_shows_an_example_command():
    for command, example in [("archive-wal", "archive_command = "), ("restore-wal", "restore_command = ")]:
        proc = run_pgtool(command, "--help")
        assert proc.returncode == 0
        assert example in proc.stdout
        assert "%p" in proc.stdout and "%f" in proc.stdout


def test_log_level_and_format_follow_pgtool_settings(segment, archive_dir):
    src, name = segment
    quiet = archive(src, name, archive_dir, env={"PGTOOL_LOG_LEVEL": "warning"})
    assert quiet.returncode == 0
    assert quiet.stderr == ""
    console = run_pgtool(
        "restore-wal", "00000007.history", "/nonexistent/x", "--archive-dir", str(archive_dir),
        env={"PGTOOL_LOG_FORMAT": "console"},
    )  # fmt: skip
    assert console.returncode == 1
    assert "run finished" in console.stderr and 'outcome="not found"' in console.stderr


def _imports(*args: str) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", pgtool_argv()[0], *args], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {
        line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")
    }


def test_the_per_segment_path_imports_only_what_it_needs(segment, archive_dir, work_dir):
    src, name = segment
    heavy = {
        "argparse",
        "json",
        "re",
        "dataclasses",
        "typing",
        "inspect",
        "threading",
        "zstandard",
        "rich",
        "typer",
    }
    archived = _imports("archive-wal", str(src), name, "--archive-dir", str(archive_dir))
    assert "pgtool.wal.archiving" in archived
    assert not heavy & archived, heavy & archived
    restored = _imports("restore-wal", name, str(work_dir / "r"), "--archive-dir", str(archive_dir))
    assert "pgtool.wal.restoring" in restored
    assert not heavy & restored, heavy & restored
