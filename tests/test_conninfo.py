"""DSNs extended for client binaries without the driver: checked against libpq's own parser."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from pgtool.pg import command
from pgtool.pg.conninfo import extend, may_hold_password

OVERRIDES = {"dbname": "shop's db", "application_name": "pgtool backup"}


@pytest.mark.parametrize(
    "dsn",
    [
        "",
        "host=/tmp/s port=5433 dbname=postgres user=backup",
        "host = db1  dbname=postgres",
        "postgresql://backup@db.internal:5433/postgres",
        "postgresql://backup@db.internal/postgres?sslmode=require&connect_timeout=3",
        "postgres://db1,db2:5433/app?target_session_attrs=read-write",
        "postgresql://[::1]:5432/postgres",
        "postgresql:///postgres?host=/var/run/postgresql",
        "postgresql://",
        "postgresql://db/shop?",
        "postgresql://db/shop?sslmode=disable&",
        "host=db dbname=x port=5432 ",
    ],
)
def test_extended_dsn_means_the_same_to_libpq_with_the_overrides(dsn):
    extended = extend(dsn, **OVERRIDES)
    assert extended is not None
    assert conninfo_to_dict(extended) == {**conninfo_to_dict(dsn), **OVERRIDES}


@pytest.mark.parametrize(
    "dsn",
    [
        "host=db password=s3cret",
        "host=db sslpassword=x",
        "postgresql://app:s3cret@db/shop",
        "postgresql://db/shop?password=s3cret",
        "postgresql://host?user=a:b@c/db",  # libpq reads `host?user=a` as the user, `b` as the password
        "postgresql://db/shop?%70assword=s3cret",  # a percent-escaped keyword
        "host=db dbname='my db'",
        "host=db\\",
        "host=db\tdbname=x",
        "shop",  # a bare database name, not a connection string
        "host=db dbname=",  # libpq would read an appended `dbname='x'` as this empty value
        "host=db dbname=  ",
    ],
)
def test_anything_not_plain_is_left_to_libpq(dsn):
    assert extend(dsn, **OVERRIDES) is None


def test_password_detection_is_conservative():
    assert may_hold_password("postgresql://app:pw@db/shop")
    assert may_hold_password("host=db PASSWORD=x")  # invalid for libpq, but never guessed safe
    assert not may_hold_password("postgresql://app@db:5432/shop")  # the port's colon is after the '@'
    assert not may_hold_password("host=db user=app")


def test_generated_plain_dsns_round_trip_through_libpq():
    rng = random.Random(20261124)
    alphabet = "abcxyz019_-./:,@"
    keys = ["host", "port", "dbname", "user", "sslmode", "application_name", "options", "connect_timeout"]
    for _ in range(300):
        params = {k: "".join(rng.choices(alphabet, k=rng.randint(1, 12))) for k in rng.sample(keys, 3)}
        dsn = " ".join(f"{k}={v}" for k, v in params.items())
        extended = extend(dsn, **OVERRIDES)
        assert extended is not None, dsn
        assert conninfo_to_dict(extended) == {**params, **OVERRIDES}, dsn


def test_libpq_args_applies_overrides_and_keeps_the_password_off_argv():
    with command.libpq_args("postgresql://app:s3cret@127.0.0.1:5432/shop", dbname="other") as (conninfo, env):
        assert "s3cret" not in conninfo
        assert conninfo_to_dict(conninfo)["dbname"] == "other"
        assert "s3cret" in Path(env["PGPASSFILE"]).read_text()
        assert env["PGCONNECT_TIMEOUT"] == "10"


def test_a_plain_dsn_needs_no_driver():
    """What lets backup and verify start their first binary before psycopg is imported."""
    script = (
        "import sys\n"
        "from pgtool.pg import command\n"
        "with command.libpq_args('host=db user=app', dbname='x') as (conninfo, env):\n"
        "    print(conninfo)\n"
        "print('psycopg' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["host=db user=app dbname='x'", "False"]
