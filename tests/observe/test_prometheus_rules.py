"""The shipped Prometheus alert rules and Grafana dashboard: promtool checks and unit-tests the rules, and
every series they use is one loomiq exposes (docs/operations.md)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]
DEPLOY = REPO / "deploy"


def promtool() -> str:
    found = shutil.which("promtool") or next(
        (str(p) for p in (REPO / ".tools" / "bin" / "promtool",) if p.exists()), None)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is required in CI (scripts/test.sh installs it from Debian's prometheus package)")
        pytest.skip("promtool not installed (scripts/test.sh installs it into .tools/bin)")
    return found


def documented() -> set[str]:
    text = (REPO / "docs" / "operations.md").read_text()
    return set(re.findall(r"^\| `(loomiq_[a-z_]+)` \|", text, re.MULTILINE))


def used_series(text: str) -> set[str]:
    names = set(re.findall(r"\b(loomiq_[a-z_]+)", text))
    return {re.sub(r"_(bucket|count|sum)$", "", n) for n in names}


def test_promtool_checks_and_unit_tests_the_rules() -> None:
    tool = promtool()
    check = subprocess.run([tool, "check", "rules", "alerts.yml"], cwd=DEPLOY / "prometheus", capture_output=True,
                           text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    tested = subprocess.run([tool, "test", "rules", "alerts.test.yml"], cwd=DEPLOY / "prometheus",
                            capture_output=True, text=True, check=False)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_rules_and_dashboard_use_only_exposed_series() -> None:
    known = documented()
    rules = used_series((DEPLOY / "prometheus" / "alerts.yml").read_text())
    assert rules and rules <= known, rules - known
    dashboard = json.loads((DEPLOY / "grafana" / "loomiq.json").read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    series = used_series(exprs)
    assert len(series) >= 12 and series <= known, series - known
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
