"""deploy/prometheus: every alert is unit-tested with promtool, explains itself and links
a runbook that exists, and asks only for metrics the code exports."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
TESTS = ROOT / "deploy" / "prometheus" / "tests" / "alerts.test.yml"
PACKAGES = ("cordon", "gateway", "replicator", "aggregator")


def _rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _alerts() -> list[dict[str, Any]]:
    return [rule for rule in _rules() if "alert" in rule]


# Cordon's own metrics, and the NATS servers' as prometheus-nats-exporter names them.
METRIC = re.compile(r"\b((?:cordon|gnatsd_varz|jetstream)_[a-z0-9_]+)")


def exported_metrics() -> set[str]:
    """Every metric name the code declares (prometheus_client), with the series names a
    histogram or counter adds; and the NATS names `cordon nats exporter` serves as the
    exporter does (tests/cordon/nats/test_exporter.py checks a real server yields them)."""
    names: set[str] = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            names |= set(re.findall(r'"(cordon_[a-z0-9_]+)"', path.read_text()))
    suffixes = ("_bucket", "_sum", "_count", "_created")
    return names | {n + s for n in names for s in suffixes} | nats_metric_names()


def nats_metric_names() -> set[str]:
    from cordon.nats.exporter import metric_names

    return set(metric_names())


def test_every_alert_says_what_it_means_and_links_its_runbook() -> None:
    alerts = _alerts()
    assert len(alerts) >= 12
    for alert in alerts:
        annotations = alert.get("annotations", {})
        assert {"summary", "description", "runbook_url"} <= set(annotations), alert["alert"]
        assert alert.get("labels", {}).get("severity") in ("page", "ticket"), alert["alert"]
        runbook = annotations["runbook_url"].split("/blob/main/")[-1]
        assert runbook == f"docs/runbooks/{alert['alert']}.md"
        text = (ROOT / runbook).read_text()
        for heading in ("What it means", "How to confirm", "What to do"):
            assert f"## {heading}" in text, (runbook, heading)


def test_rules_ask_only_for_metrics_the_code_exports() -> None:
    exported = exported_metrics()
    for rule in _rules():
        asked = set(METRIC.findall(rule["expr"]))
        assert asked <= exported, (rule.get("alert") or rule.get("record"), asked - exported)


def test_every_alert_has_a_unit_test() -> None:
    tested = set(re.findall(r"alertname:\s*(\w+)", TESTS.read_text()))
    assert {a["alert"] for a in _alerts()} <= tested


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool not on PATH: `make test` installs Debian's prometheus package")
    return found


def test_promtool_accepts_the_rules(promtool: str) -> None:
    result = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_fires_as_its_unit_test_says(promtool: str) -> None:
    result = subprocess.run(
        [promtool, "test", "rules", str(TESTS)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
