"""The evidence log on constructed records: the chain, tampering, signatures, the auditor's report.

Real drills producing records are in tests/logical/test_logical_evidence.py.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pgharness import run_pgtool
from pgtool.errors import OperationError
from pgtool.evidence import log, signing, summary


def _key_files(tmp_path: Path, name: str = "key") -> tuple[Path, Path]:
    key = Ed25519PrivateKey.generate()
    private, public = tmp_path / f"{name}.pem", tmp_path / f"{name}.pub"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


def _log(directory: Path, outcomes: list[tuple[str, str]], key_file: Path | None = None) -> list[Path]:
    """Records finished at the given times with the given outcomes, signed if key_file is given."""
    sign = None
    if key_file is not None:
        key = signing.load_private_key(key_file)
        sign = lambda message: signing.sign(key, message)  # noqa: E731
    return [
        log.append(directory, {"kind": "dump", "outcome": outcome, "finished_at": when}, sign)
        for when, outcome in outcomes
    ]


DAYS = [(f"2026-10-{d:02d}T03:00:00+00:00", "passed") for d in range(1, 6)]


def _verify(directory: Path, *extra: str) -> tuple[int, str]:
    proc = run_pgtool("evidence", "verify", "--dir", str(directory), *extra)
    return proc.returncode, proc.stdout


def test_an_untouched_chain_verifies_and_each_record_names_its_predecessor(tmp_path):
    files = _log(tmp_path, DAYS)
    records = [json.loads(f.read_bytes()) for f in files]
    assert records[0]["prev_sha256"] == log.GENESIS
    assert [r["prev_sha256"] for r in records[1:]] == [r["sha256"] for r in records[:-1]]
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5]
    code, out = _verify(tmp_path)
    assert code == 0, out
    assert "5 records" in out and records[-1]["sha256"] in out


def test_a_record_is_never_overwritten(tmp_path):
    (path,) = _log(tmp_path, DAYS[:1])
    with pytest.raises(FileExistsError):
        log._write_new(path, b"{}")
    assert json.loads(path.read_bytes())["seq"] == 1


def test_a_deleted_record_is_named(tmp_path):
    files = _log(tmp_path, DAYS)
    files[2].unlink()
    code, out = _verify(tmp_path)
    assert code == 1
    assert f"{files[3].name}: record 3 missing before it" in out


def test_a_one_byte_edit_is_named(tmp_path):
    files = _log(tmp_path, DAYS)
    data = files[1].read_bytes()
    edited = data.replace(b'"outcome":"passed"', b'"outcome":"passet"')
    assert len(edited) == len(data) and edited != data
    files[1].write_bytes(edited)
    code, out = _verify(tmp_path)
    assert code == 1
    assert f"{files[1].name}: edited" in out
    assert files[2].name not in out  # the next record still follows the original


def test_a_duplicate_member_planted_before_the_real_one_is_named(tmp_path):
    """The parser keeps the last "outcome" (failed, which hashes right); a reader sees "passed" first."""
    (path,) = _log(tmp_path, [(DAYS[0][0], "failed")])
    path.write_bytes(b'{"outcome":"passed",' + path.read_bytes()[1:])
    assert log.read_record(path)["outcome"] == "failed"
    code, out = _verify(tmp_path)
    assert code == 1
    assert f"{path.name}: edited (its bytes are not the canonical form of its content)" in out


def test_an_edit_of_the_newest_record_is_named_too(tmp_path):
    files = _log(tmp_path, DAYS)
    files[-1].write_bytes(files[-1].read_bytes().replace(b"T03:00", b"T04:00"))
    code, out = _verify(tmp_path)
    assert code == 1 and f"{files[-1].name}: edited" in out


def test_append_after_a_newest_record_without_a_seq_is_an_operation_error(tmp_path):
    _log(tmp_path, DAYS[:1])
    (tmp_path / "00000002-20261002T030000Z.json").write_text('{"seq": "x"}')
    with pytest.raises(OperationError, match=r"newest record 00000002-20261002T030000Z\.json holds no seq"):
        _log(tmp_path, DAYS[1:2])


def test_reordered_records_are_named(tmp_path):
    files = _log(tmp_path, DAYS)
    second, third = files[1], files[2]
    swap = tmp_path / "swap"
    second.rename(swap)
    third.rename(second)
    swap.rename(third)
    code, out = _verify(tmp_path)
    assert code == 1
    assert f"{second.name}: its name says record 2 but it holds seq 3" in out
    assert f"{third.name}: its name says record 3 but it holds seq 2" in out


def test_signatures_verify_with_the_right_key_and_fail_with_another(tmp_path):
    private, public = _key_files(tmp_path)
    _other_private, other_public = _key_files(tmp_path, "other")
    evidence = tmp_path / "evidence"
    files = _log(evidence, DAYS, private)
    record = json.loads(files[0].read_bytes())
    assert record["signature"]["public_key_sha256"] == signing.fingerprint(signing.load_public_key(public))
    code, out = _verify(evidence, "--public-key-file", str(public))
    assert code == 0 and "5 signatures verified by the given key" in out, out
    code, out = _verify(evidence, "--public-key-file", str(other_public))
    assert code == 1 and f"{files[0].name}: signed by key" in out


def test_a_forged_signature_is_named(tmp_path):
    private, public = _key_files(tmp_path)
    evidence = tmp_path / "evidence"
    files = _log(evidence, DAYS, private)
    record = json.loads(files[3].read_bytes())
    other = signing.sign(Ed25519PrivateKey.generate(), b"something else")
    record["signature"]["value"] = other["value"]  # same key named, wrong signature
    files[3].write_bytes(log.canonical(record) + b"\n")
    for extra in ((), ("--public-key-file", str(public))):
        code, out = _verify(evidence, *extra)
        assert code == 1 and f"{files[3].name}: signature does not verify" in out


def test_an_unsigned_record_fails_when_a_key_is_pinned(tmp_path):
    _private, public = _key_files(tmp_path)
    files = _log(tmp_path / "evidence", DAYS[:2])
    code, out = _verify(tmp_path / "evidence", "--public-key-file", str(public))
    assert code == 1 and f"{files[0].name}: not signed" in out


def test_a_raw_32_byte_key_signs_too(tmp_path):
    key = Ed25519PrivateKey.generate()
    raw = tmp_path / "raw.key"
    raw.write_bytes(key.private_bytes_raw())
    loaded = signing.load_private_key(raw)
    assert signing.fingerprint(loaded.public_key()) == signing.fingerprint(key.public_key())


def test_report_counts_and_the_longest_gap(tmp_path):
    outcomes = [
        ("2026-09-20T00:00:00+00:00", "passed"),  # before the period
        ("2026-10-01T06:00:00+00:00", "passed"),
        ("2026-10-02T06:00:00+00:00", "failed"),
        ("2026-10-03T06:00:00+00:00", "failed"),
        ("2026-10-05T18:00:00+00:00", "passed"),  # 4.5 days after the last success: the longest gap
        ("2026-10-06T06:00:00+00:00", "passed"),
    ]
    _log(tmp_path, outcomes)
    since = datetime(2026, 10, 1, tzinfo=UTC)
    report = summary.build(tmp_path, since, until=datetime(2026, 10, 7, tzinfo=UTC))
    assert (report.run, report.passed, report.failed) == (5, 3, 2)
    assert report.longest_gap_seconds == 4.5 * 86400
    assert report.longest_gap == ("2026-10-01T06:00:00+00:00", "2026-10-05T18:00:00+00:00")
    assert report.chain_ok
    proc = run_pgtool(
        "evidence", "report", "--dir", str(tmp_path), "--since", "2026-10-01", "--format", "json"
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert (data["drills_run"], data["passed"], data["failed"]) == (5, 3, 2)
    text = run_pgtool("evidence", "report", "--dir", str(tmp_path), "--since", "2026-10-01").stdout
    assert "drills run        5" in text and "chain             intact" in text


def test_list_and_show(tmp_path):
    _log(tmp_path, DAYS[:2])
    listed = run_pgtool("evidence", "list", "--dir", str(tmp_path), "--format", "json")
    assert [r["seq"] for r in json.loads(listed.stdout)] == [1, 2]
    shown = run_pgtool("evidence", "show", "2", "--dir", str(tmp_path))
    assert shown.returncode == 0 and json.loads(shown.stdout)["finished_at"] == DAYS[1][0]
    missing = run_pgtool("evidence", "show", "9", "--dir", str(tmp_path))
    assert missing.returncode == 1 and "no evidence record 9" in missing.stderr


def test_list_shows_a_record_edited_into_another_shape(tmp_path):
    _log(tmp_path, DAYS[:1])
    (tmp_path / "00000002-20261002T030000Z.json").write_text('{"databases": 5}')
    listed = run_pgtool("evidence", "list", "--dir", str(tmp_path))
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[1].split()[:2] == ["None", "None"]


def test_no_database_shares_the_evidence_directory():
    """Dumps live under the encoded database name, which never starts with "." (the log's directory)."""
    from pgtool.evidence.drills import EVIDENCE_DIR
    from pgtool.logical.dumps import database_dir

    assert EVIDENCE_DIR.startswith(".")
    for name in (".evidence", "evidence", "..", ".", "./.evidence", "%2Eevidence"):
        assert database_dir(Path("/b"), name).name != EVIDENCE_DIR
        assert not database_dir(Path("/b"), name).name.startswith(".")
