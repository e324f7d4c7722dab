"""deploy/grafana: the three dashboards, generated from one file, with stable uids and a
$datasource variable, and asking only for metrics the code exports."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from tests.deploy.test_prometheus import METRIC, exported_metrics

GRAFANA = Path(__file__).resolve().parents[2] / "deploy" / "grafana"
UIDS = {
    "replication.json": "cordon-replication",
    "regions.json": "cordon-regions",
    "audit.json": "cordon-audit",
}


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("generate", GRAFANA / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_dashboards_are_what_the_generator_writes() -> None:
    rendered = _generator().render()
    assert set(rendered) == set(UIDS)
    for name, text in rendered.items():
        assert (GRAFANA / "dashboards" / name).read_text() == text, (
            f"run deploy/grafana/generate.py ({name})"
        )


def test_each_dashboard_keeps_its_uid_and_picks_its_datasource() -> None:
    for name, uid in UIDS.items():
        board = json.loads((GRAFANA / "dashboards" / name).read_text())
        assert board["uid"] == uid
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"], panel["title"]


def test_every_panel_asks_only_for_exported_metrics() -> None:
    exported = exported_metrics()
    for name in UIDS:
        board = json.loads((GRAFANA / "dashboards" / name).read_text())
        for panel in board["panels"]:
            for target in panel["targets"]:
                asked = set(METRIC.findall(target["expr"]))
                assert asked and asked <= exported, (name, panel["title"], asked - exported)
