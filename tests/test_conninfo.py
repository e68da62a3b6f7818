"""DSNs for client binaries, read by libpq's own parser; malformed ones are usage errors that hide secrets."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from pgharness import run_pgtool
from pgtool.errors import EXIT_USAGE, UsageError
from pgtool.pg import command, conninfo

OVERRIDES = {"dbname": "shop's db", "application_name": "pgtool backup"}


@pytest.mark.parametrize(
    "dsn",
    [
        "",
        "host=/tmp/s port=5433 dbname=postgres user=backup",
        "host = db1  dbname=postgres",
        "postgresql://backup@db.internal:5433/postgres",
        "postgres://db1,db2:5433/app?target_session_attrs=read-write",
        "postgresql://[::1]:5432/postgres",
        "postgresql:///postgres?host=/var/run/postgresql",
        "host=db dbname='my db'",
        "postgresql://host?user=a:b@c/db",  # libpq reads `host?user=a` as the user, `b` as the password
    ],
)
def test_libpq_args_mean_to_libpq_what_the_dsn_meant_with_the_overrides(dsn):
    expected = {**conninfo_to_dict(dsn), **OVERRIDES}
    secrets = {k: expected.pop(k) for k in ("password", "sslpassword") if k in expected}
    with command.libpq_args(dsn, **OVERRIDES) as (args, env):
        got = conninfo_to_dict(args)
        if secrets:
            assert got.pop("service") == "pgtool"
            assert Path(env["PGSERVICEFILE"]).read_text().splitlines()[1:] == [
                f"{k}={v}" for k, v in secrets.items()
            ]
        assert got == expected


@pytest.mark.parametrize(
    "dsn",
    [
        "host=db password=s3cret sslpassword=k3y",
        "postgresql://app:s3cret@db/shop?sslpassword=k3y",
        "postgresql://db/shop?%70assword=s3cret&sslpassword=k3y",  # a percent-escaped keyword
    ],
)
def test_password_and_sslpassword_go_to_a_private_service_file_never_argv(dsn):
    with command.libpq_args(dsn, dbname="other") as (args, env):
        assert "s3cret" not in args and "k3y" not in args
        assert conninfo_to_dict(args)["dbname"] == "other"
        path = Path(env["PGSERVICEFILE"])
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        assert path.parent.name.startswith("pgtool-secrets-")
        assert "s3cret" in path.read_text() and "k3y" in path.read_text()
        assert env["PGCONNECT_TIMEOUT"] == "10"
    assert not path.parent.exists()


def test_a_dsn_naming_its_own_service_gets_the_password_through_a_passfile():
    with command.libpq_args("service=prod password='a:b\\\\c'") as (args, env):
        assert conninfo_to_dict(args) == {"service": "prod"}
        assert "PGSERVICEFILE" not in env
        assert Path(env["PGPASSFILE"]).read_text() == "*:*:*:*:a\\:b\\\\c\n"
    with pytest.raises(UsageError, match="service="), command.libpq_args("service=prod sslpassword=k"):
        pass


def test_a_password_ending_in_a_space_goes_to_a_passfile():
    """libpq trims trailing whitespace from a service file's lines."""
    with command.libpq_args("host=db password='pw ' sslpassword=k") as (_args, env):
        assert Path(env["PGSERVICEFILE"]).read_text() == "[pgtool]\nsslpassword=k\n"
        assert Path(env["PGPASSFILE"]).read_text() == "*:*:*:*:pw \n"


@pytest.mark.parametrize(
    ("dsn", "secret"),
    [
        ("postgresql://u:secret@host:notaport/db", "secret"),
        ("host=x password=secret unterminated='", "secret"),
        ("host=x password='sec ret", "sec ret"),
        ("postgresql://u:sec%zzret@h/db", "zzret"),  # libpq quotes the bad token back
        ("host=x port=5432,abc password=secret", "secret"),
        ("host=x sslmode=bogus sslpassword=secret", "secret"),
        ("host=x connect_timeout=soon password=secret", "secret"),
    ],
)
def test_a_malformed_dsn_is_a_usage_error_that_hides_the_password(dsn, secret):
    with pytest.raises(UsageError) as err, command.libpq_args(dsn):
        pass
    assert secret not in err.value.one_line()
    assert "invalid DSN" in err.value.one_line()


def test_a_malformed_dsn_exits_2_without_the_password_whichever_command_reads_it(tmp_path):
    env = {"PGTOOL_DSN": "postgresql://u:secret@127.0.0.1:notaport/db"}
    for args in (["backup", "--dest", str(tmp_path)], ["status"], ["verify", "--backup-dir", str(tmp_path)]):
        proc = run_pgtool(*args, env=env, timeout=60)
        assert proc.returncode == EXIT_USAGE, (args, proc.stderr)
        assert "secret" not in proc.stderr + proc.stdout
        assert "invalid DSN" in proc.stderr


def test_parse_keeps_what_libpq_reads():
    assert conninfo.parse("postgresql://a@h:5433/d?sslmode=require") == {
        "user": "a",
        "host": "h",
        "port": "5433",
        "dbname": "d",
        "sslmode": "require",
    }
    assert conninfo.parse("") == {}
