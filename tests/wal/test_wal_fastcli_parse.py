"""archive-wal/restore-wal's argparse-free parser agrees with argparse on every command line it accepts.

`pgtool.wal.fastcli._quick_parse` saves importing argparse on every WAL segment (docs/developing.md,
start-up budgets). It may decline (None: argparse then parses), but whatever it accepts must parse
exactly as argparse parses it. Generated: every subset of each command's options, in every order
(up to three; larger subsets in one order, as listed or reversed, alternately), with the two
positionals anywhere between them, each value option in both --opt=value and --opt value form,
with and without $PGTOOL_ARCHIVE_DIR (which is settled after parsing: `_resolve`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from pgtool.wal import fastcli

SEGMENT = "000000010000000A000000FF"

# Each option: the tokens of its flag form, or its name and the values to try.
OPTIONS = {
    "archive-wal": [
        ("--archive-dir", ["/wal-archive", "relative dir", "-"]),
        ("--repo", ["s3://bucket/prefix", "/repo dir", "-"]),
        ("--repo-key-file", ["/keys/repo.key", "-"]),
        ("--compress", ["none", "zstd", "lz4"]),
        ("--compress-level", ["3", "-1", "19"]),
        ("--ahead", ["8", "0", "-1"]),
        ("--allow-system-id-change", None),
    ],
    "restore-wal": [
        ("--archive-dir", ["/wal-archive", "relative dir", "-"]),
        ("--repo", ["azure://container/prefix", "-"]),
        ("--repo-key-file", ["/keys/repo.key"]),
        ("--prefetch", ["8", "0", "-2"]),
        ("--allow-unverified", None),
    ],
}
POSITIONALS = {
    "archive-wal": ["pg_wal/" + SEGMENT, SEGMENT],
    "restore-wal": [SEGMENT, "pg_wal/RECOVERYXLOG"],
}


def _spellings(option: tuple[str, list[str] | None], pick: int) -> list[list[str]]:
    """The ways to write one option: a flag as itself; a value option as --opt=value and --opt value."""
    name, values = option
    if values is None:
        return [[name]]
    value = values[pick % len(values)]
    return [[f"{name}={value}"], [name, value]]


def _orders(options: list, size: int) -> Iterator[tuple]:
    """Every subset of `size` options: in every order up to 3 (all pairwise orders are seen), then
    in one order, alternately as listed and reversed (every permutation of 7 options would be millions
    of command lines)."""
    for n, subset in enumerate(itertools.combinations(options, size)):
        if size <= 3:
            yield from itertools.permutations(subset)
        else:
            yield subset[:: 1 - 2 * (n % 2)]


def command_lines(command: str) -> Iterator[list[str]]:
    options = OPTIONS[command]
    first, second = POSITIONALS[command]
    for size in range(len(options) + 1):
        for pick, chosen in enumerate(_orders(options, size)):
            for forms in itertools.product(*(_spellings(option, pick) for option in chosen)):
                slots = len(forms) + 2
                for at in itertools.combinations(range(slots), 2):  # where the positionals go, in order
                    items = iter(forms)
                    argv: list[str] = []
                    for slot in range(slots):
                        if slot == at[0]:
                            argv.append(first)
                        elif slot == at[1]:
                            argv.append(second)
                        else:
                            argv.extend(next(items))
                    yield argv


def argparse_result(command: str, argv: list[str]) -> dict[str, object] | None:
    try:
        return vars(fastcli._parser(command).parse_args(argv))
    except fastcli._UsageError:
        return None


@pytest.mark.parametrize("env_dir", [None, "/from-env"])
@pytest.mark.parametrize("command", ["archive-wal", "restore-wal"])
def test_quick_parse_agrees_with_argparse_on_every_combination(command, env_dir, monkeypatch):
    if env_dir is None:
        monkeypatch.delenv(fastcli.ARCHIVE_DIR_ENV, raising=False)
    else:
        monkeypatch.setenv(fastcli.ARCHIVE_DIR_ENV, env_dir)
    checked = quick_declined = 0
    for argv in command_lines(command):
        expected = argparse_result(command, argv)
        quick = fastcli._quick_parse(command, argv)
        if quick is None:
            quick_declined += 1
            continue
        assert expected is not None, f"quick parse accepted what argparse refuses: {argv}"
        got = {key: getattr(quick, key) for key in expected}
        assert got == expected, argv
        checked += 1
    # The fast path must actually be taken for the forms PostgreSQL runs, not declined wholesale.
    assert checked > 1000 if command == "archive-wal" else checked > 20
    assert fastcli._quick_parse(command, [*POSITIONALS[command], "--archive-dir", "/a"]) is not None


@pytest.mark.parametrize(
    "argv",
    [
        ["--archive-dir", "/a", SEGMENT],  # one positional
        ["--archive-dir", "/a", "p", SEGMENT, "extra"],
        ["--archive", "/a", "p", SEGMENT],  # abbreviation: argparse's to judge
        ["--archive-dir", "-x", "p", SEGMENT],  # a value that looks like an option
        ["--archive-dir=", "p", SEGMENT],
        ["--compress", "brotli", "--archive-dir", "/a", "p", SEGMENT],
        ["--compress-level", "high", "--archive-dir", "/a", "p", SEGMENT],
        ["--allow-unverified", "--archive-dir", "/a", "p", SEGMENT],  # restore-wal's flag
        ["--allow-system-id-change=yes", "--archive-dir", "/a", "p", SEGMENT],
        ["-h"],
        ["--", "--archive-dir", "/a", "p", SEGMENT],
        ["--archive-dir", "/a", "p", SEGMENT, "--compress"],
    ],
)
def test_unusual_command_lines_go_to_argparse(argv, monkeypatch):
    monkeypatch.delenv(fastcli.ARCHIVE_DIR_ENV, raising=False)
    assert fastcli._quick_parse("archive-wal", argv) is None


def test_where_the_archive_is_settles_after_parsing(monkeypatch):
    """--archive-dir or --repo on the command line, else $PGTOOL_ARCHIVE_DIR or $PGTOOL_REPO; both
    given, or neither anywhere, is a usage error. A repository reads its key file from the environment."""
    argv = [*POSITIONALS["restore-wal"]]
    monkeypatch.delenv(fastcli.ARCHIVE_DIR_ENV, raising=False)
    monkeypatch.delenv(fastcli.REPO_ENV, raising=False)
    monkeypatch.setenv(fastcli.REPO_KEY_FILE_ENV, "/keys/repo.key")
    with pytest.raises(fastcli._UsageError, match="required"):
        fastcli._parse("restore-wal", argv)
    with pytest.raises(fastcli._UsageError, match="not both"):
        fastcli._parse("restore-wal", [*argv, "--repo", "s3://b/p", "--archive-dir", "/a"])
    monkeypatch.setenv(fastcli.REPO_ENV, "s3://b/p")
    parsed = fastcli._parse("restore-wal", argv)
    assert (parsed.repo, parsed.archive_dir, parsed.repo_key_file) == ("s3://b/p", None, "/keys/repo.key")
    cli_dir = fastcli._parse("restore-wal", [*argv, "--archive-dir", "/a"])
    assert (cli_dir.repo, cli_dir.archive_dir) == (None, "/a")
    monkeypatch.setenv(fastcli.ARCHIVE_DIR_ENV, "/env-dir")
    with pytest.raises(fastcli._UsageError, match="both"):
        fastcli._parse("restore-wal", argv)
    with pytest.raises(fastcli._UsageError, match="zstd"):
        fastcli._parse(
            "archive-wal", [*POSITIONALS["archive-wal"], "--repo", "s3://b/p", "--compress", "lz4"]
        )
