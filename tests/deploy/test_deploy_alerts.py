"""alerts/: promtool check rules and promtool test rules, plus the shape every alert must have."""

from __future__ import annotations

import re
import subprocess

import pytest
from deploy_support import REPO, alert_rules, tool

ALERTS = REPO / "alerts"


def test_promtool_check_rules() -> None:
    out = subprocess.run(
        [tool("promtool"), "check", "rules", str(ALERTS / "rules.yaml")], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


@pytest.mark.parametrize("test_file", sorted(p.name for p in (ALERTS / "tests").glob("*_test.yaml")))
def test_promtool_unit_tests(test_file: str) -> None:
    out = subprocess.run(
        [tool("promtool"), "test", "rules", test_file],
        cwd=ALERTS / "tests",
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_every_alert_has_severity_summary_and_runbook() -> None:
    alerts = [rule for rule in alert_rules() if "alert" in rule]
    assert len(alerts) >= 16
    for rule in alerts:
        name = rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"], name
        url = rule["annotations"]["runbook_url"]
        assert url.endswith(f"/runbooks/{name}.md"), url
        runbook = REPO / "runbooks" / f"{name}.md"
        assert runbook.exists(), runbook
        text = runbook.read_text()
        for section in ("Meaning", "Impact", "Diagnosis", "Mitigation"):
            assert re.search(rf"^## {section}\b", text, re.MULTILINE), f"{runbook.name}: no {section} section"


def test_verification_alerts_as_the_contract_says() -> None:
    rules = {rule["alert"]: rule for rule in alert_rules() if "alert" in rule}
    failed = rules["PgtoolVerificationFailed"]
    assert failed["labels"]["severity"] == "critical" and "for" not in failed  # immediate
    assert failed["expr"].strip() == 'pgtool_last_run_success{job="pgtool-verify"} == 0'
    stale = rules["PgtoolVerificationStale"]
    assert stale["labels"]["severity"] == "warning" and "26 * 3600" in stale["expr"]
