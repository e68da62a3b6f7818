"""`--repo` URL forms and the repository layout's names (pure functions: no store needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgtool.repo import RepoUsageError, decode_db, dump_prefix, encode_db, parse_repo_url, wal_name
from pgtool.repo.layout import base_prefix, check_name


def test_url_forms():
    assert parse_repo_url("/var/lib/backups/").path == Path("/var/lib/backups")
    assert parse_repo_url("file:///var/lib/backups").path == Path("/var/lib/backups")
    assert parse_repo_url("relative/dir").path == Path.cwd() / "relative/dir"
    s3 = parse_repo_url("s3://my-bucket/prod/db1/")
    assert (s3.kind, s3.bucket, s3.prefix, s3.display()) == (
        "s3",
        "my-bucket",
        "prod/db1",
        "s3://my-bucket/prod/db1",
    )
    az = parse_repo_url("azure://backups")
    assert (az.kind, az.bucket, az.prefix, az.display()) == ("azure", "backups", "", "azure://backups")


@pytest.mark.parametrize(
    "url",
    [
        "",
        "gs://bucket/x",
        "s3://AKIA:secret@bucket/x",  # credentials never come from the URL (argv, logs)
        "azure://container/x?sv=2020&sig=abc",  # nor a SAS token
        "s3://Bad_Bucket/x",
        "azure://a/x",
        "s3://bucket/a/../b",
        "file://host/dir",
        "s3://AKIA:secret@[bucket/x",  # urlsplit's own ValueError (an unclosed IPv6 bracket)
    ],
)
def test_bad_urls_are_usage_errors(url):
    with pytest.raises(RepoUsageError) as info:
        parse_repo_url(url)
    assert "secret" not in info.value.one_line() and "sig=abc" not in info.value.one_line()


def test_layout_names():
    assert wal_name("000000010000000000000001") == "wal/00000001/000000010000000000000001"
    assert wal_name("00000002.history") == "wal/00000002/00000002.history"
    assert wal_name("000000030000000A000000FF.00000028.backup").startswith("wal/00000003/")
    assert wal_name("000000010000000000000001.partial") == "wal/00000001/000000010000000000000001.partial"
    for bad in ("../etc/passwd", "00000001", "000000010000000000000001x"):
        with pytest.raises(RepoUsageError):
            wal_name(bad)
    assert base_prefix("20261206T010000Z") == "base/20261206T010000Z/"
    with pytest.raises(RepoUsageError):
        base_prefix("../x")
    for bad in ("", "/abs", "a//b", "a/./b", "a/../b", "a#1", "a\\b"):
        with pytest.raises(RepoUsageError):
            check_name(bad)


@pytest.mark.parametrize("db", ["app", "my db", "a/b", ".", "..", "%", "ünïcode", "sql_ascii_\udce9", ""])
def test_database_names_map_to_one_reversible_segment(db):
    segment = encode_db(db)
    assert "/" not in segment and segment not in (".", "..", "")
    assert decode_db(segment) == db
    assert dump_prefix(db, "20261206T010000Z") == f"dumps/{segment}/20261206T010000Z/"
