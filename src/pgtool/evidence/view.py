"""What `pgtool evidence` prints: list, show, verify and report, as text or JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pgtool.errors import UsageError
from pgtool.evidence import log


def directory_records(directory: Path) -> log.Records:
    """The chain in a local evidence directory (`--dir`)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UsageError(f"evidence directory {directory} does not exist")
    return log.DirRecords(directory)


def repository_records(url: str, key_file: str | None, chain: str | None) -> log.Records:
    """The chain `chain` (dumps or base) in the repository at `url` (`--repo`), read in place."""
    from pgtool.evidence import repo_log
    from pgtool.repo import open_repository

    if chain not in repo_log.CHAINS:
        raise UsageError(
            "--repo holds two evidence chains: name one with --chain dumps (verify) or --chain base "
            "(verify --base)"
        )
    # Never created by a reader: a missing repository is an error, not an empty chain.
    return repo_log.RepoRecords(open_repository(url, key_file=key_file), repo_log.CHAINS[chain])


def run(
    action: str,
    records: log.Records,
    *,
    record: str | None,
    public_key_file: Path | None,
    since: str | None,
    as_json: bool,
) -> tuple[str, int | None]:
    """The output of `action` and its exit code: None on success, 1 when verify finds the chain broken."""
    if action != "show" and record is not None:
        raise UsageError(f"{action} takes no record argument")
    if action != "report" and since is not None:
        raise UsageError("--since goes with report")
    if action == "list":
        return _list(records, as_json), None
    if action == "show":
        if record is None:
            raise UsageError("show needs a record: its number or file name")
        data = log.load(records, log.find(records, record))
        return json.dumps(data, indent=2, sort_keys=True), None
    public_key = None
    if public_key_file is not None:
        from pgtool.evidence import signing

        public_key = signing.load_public_key(public_key_file)
    if action == "verify":
        return _verify(records, public_key, as_json)
    if since is None:
        raise UsageError("report needs --since DATE")
    from pgtool.evidence import summary

    report = summary.build(records, _parse_since(since))
    if public_key is not None:
        chain = log.verify_chain(records, public_key)
        report.chain_ok, report.chain_breaks = chain.ok, chain.breaks
    return (json.dumps(report.to_dict(), indent=2) if as_json else report.text()), None


def _parse_since(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"--since {text!r} is not an ISO date or time (2026-10-01 or 2026-10-01T00:00Z)"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _row(records: log.Records, name: str) -> dict[str, Any]:
    try:
        r = log.load(records, name)
    except log.UnreadableRecord as exc:
        return {"file": name, "error": exc.message}
    backup = r.get("backup") or {}
    dbs = r.get("databases")
    what = (
        backup.get("id")
        if isinstance(backup, dict) and backup
        # a record edited into another shape is the chain's finding (verify); list still shows it
        else ", ".join(str(d.get("database") if isinstance(d, dict) else d) for d in dbs)
        if isinstance(dbs, list)
        else ""
    )
    return {
        "seq": r.get("seq"),
        "file": name,
        "kind": r.get("kind"),
        "finished_at": r.get("finished_at"),
        "outcome": r.get("outcome"),
        "duration_seconds": r.get("duration_seconds"),
        "what": what,
        "signed": "signature" in r,
    }


def _list(records: log.Records, as_json: bool) -> str:
    rows = [_row(records, name) for name in records.names()]
    if as_json:
        return json.dumps(rows, indent=2)
    if not rows:
        return f"no evidence records in {records.label}"
    lines = []
    for row in rows:
        if "error" in row:
            lines.append(f"{row['file']}  UNREADABLE  {row['error']}")
            continue
        signed = "signed" if row["signed"] else "unsigned"
        lines.append(
            f"{row['seq']!s:>6}  {row['finished_at']}  {row['kind']!s:<4}  {row['outcome']!s:<6}  "
            f"{row['duration_seconds']}s  {signed}  {row['what']}"
        )
    return "\n".join(lines)


def _verify(records: log.Records, public_key: Any, as_json: bool) -> tuple[str, int | None]:
    chain = log.verify_chain(records, public_key)
    if as_json:
        text = json.dumps(
            {
                "ok": chain.ok,
                "records": chain.records,
                "signed": chain.signed,
                "head_sha256": chain.head_sha256,
                "breaks": chain.breaks,
            },
            indent=2,
        )
    elif chain.ok:
        pinned = " by the given key" if public_key is not None else ""
        text = (
            f"chain intact: {chain.records} records, {chain.signed} signatures verified{pinned}; "
            f"head {chain.head_sha256}"
        )
    else:
        text = "\n".join(f"BROKEN  {b}" for b in chain.breaks)
    return text, (1 if not chain.ok else None)
