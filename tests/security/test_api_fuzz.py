"""Every HTTP API with an OpenAPI document, fuzzed with schemathesis and real
credentials: no 5xx, every status and content type it returns documented, every
schema-valid request accepted, every answer in its documented shape.

Twice: in this process (httpx's ASGI transport, over a region and a view kept in
memory and temporary SQLite files), through schemathesis' own coverage phase (every
bound and enum value, and just past each) and its fuzzing phase; and against the
running topology's processes with their real NATS behind them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import positive_data_acceptance
from schemathesis.config import SchemathesisConfig
from schemathesis.core.result import Err
from schemathesis.engine import Status, events, from_schema

from aggregator.api import create_app as aggregator_app
from aggregator.store import ViewStore
from gateway.ledger.audit_api import create_app as audit_app
from tests.aggregator.regional_log import Log
from tests.aggregator.test_api_inprocess import TOKENS, _state
from tests.aggregator.test_store import Central
from tests.gateway.ledger.memory_region import Region

FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))


# Rules between two parameters that OpenAPI cannot state: a schema-valid request can
# break them, and is answered 400 with the rule in `detail` (documented). Every other
# check holds for these operations too.
CROSS_PARAMETER_RULES = {
    "GET /v1/consistency": "old_size is larger than new_size",
    "GET /v1/export": "to_seq is before from_seq, or more than 10,000 records",
}


# -- in this process: schemathesis' coverage and fuzzing phases ----------------------


def _phases(headers: dict[str, str]) -> SchemathesisConfig:
    """Coverage and fuzzing, derandomized and small enough for seconds; the cross-
    parameter rules' 400 is what a schema-valid request breaking them is answered."""
    rule_400 = ["2xx", 400, 401, 403, 404, 409]
    return SchemathesisConfig.from_dict(
        {
            "seed": 23,
            "headers": headers,
            "generation": {"max-examples": 25, "database": "none"},
            "phases": {
                "examples": {"enabled": False},
                "stateful": {"enabled": False},
                "coverage": {"enabled": True},
                "fuzzing": {"enabled": True},
            },
            "operations": [
                {
                    "include-path": label.split(" ", 1)[1],
                    "checks": {"positive_data_acceptance": {"expected-statuses": rule_400}},
                }
                for label in CROSS_PARAMETER_RULES
            ],
        }
    )


def _run_phases(app: Any, headers: dict[str, str]) -> dict[str, Any]:
    """What the two phases found against `app`: failures (operation: check: what),
    the statuses each operation answered, and which phases tested which operations."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=_phases(headers))
    found: dict[str, Any] = {"failures": [], "statuses": {}, "tested": set()}
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished) and event.label:
            _note_scenario(event, found)
        elif isinstance(event, events.NonFatalError | events.FatalError):
            found["failures"].append(f"engine: {event}")
    return found


def _note_scenario(event: events.ScenarioFinished, found: dict[str, Any]) -> None:
    label = str(event.label)
    if event.status != Status.SKIP:
        found["tested"].add((event.phase.name, label))
    statuses = found["statuses"].setdefault(label, set())
    for interaction in event.recorder.interactions.values():
        # The coverage phase also tries undocumented methods (answered 405, which its
        # own unsupported_method check judges); the document speaks for GET.
        if interaction.response is not None and interaction.request.method == "GET":
            statuses.add(interaction.response.status_code)
    for checks in event.recorder.checks.values():
        for check in checks:
            if check.status == Status.FAILURE and check.failure_info is not None:
                what = " | ".join(str(check.failure_info.failure).strip().splitlines()[:3])
                found["failures"].append(f"{label}: {check.name}: {what}")


def _assert_held(app: Any, headers: dict[str, str], document: dict[str, Any]) -> None:
    found = _run_phases(app, headers)
    assert not found["failures"], "\n".join(sorted(set(found["failures"])))
    operations = {f"GET {path}" for path in document["paths"]}
    for phase in ("COVERAGE", "FUZZING"):
        assert {(phase, label) for label in operations} <= found["tested"], phase
    for label, statuses in found["statuses"].items():
        declared = document["paths"][label.split(" ", 1)[1]]["get"]["responses"]
        assert {str(s) for s in statuses} <= set(declared), (label, statuses)
        assert all(s < 500 for s in statuses), (label, statuses)


@pytest.mark.timeout(60)
def test_the_audit_api_in_process_holds_to_its_document(tmp_path: Path) -> None:
    region = Region(tmp_path)
    region.decide(6)
    region.seal()
    app = audit_app(region.state)
    try:
        _assert_held(app, region.headers, app.openapi())
    finally:
        region.close()


@pytest.mark.timeout(60)
def test_the_aggregator_api_in_process_holds_to_its_document(tmp_path: Path) -> None:
    log = Log()
    log.grow(6)
    central = Central(lambda: ViewStore(tmp_path / "view.sqlite3"), log)
    central.consume(*central.summaries(*log.bodies), central.checkpoint())
    app = aggregator_app(_state(central.store))
    try:
        _assert_held(app, {"authorization": f"Bearer {TOKENS['sre']}"}, app.openapi())
    finally:
        central.store.close()


# -- the running processes --------------------------------------------------------------


def _fuzz(openapi_url: str, headers: dict[str, str]) -> list[str]:
    """Each operation of the document, fuzzed; what failed, one line per operation."""
    schema = schemathesis.openapi.from_url(openapi_url)
    failures = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            failures.append(f"unreadable operation: {result.err()}")
            continue
        operation = result.ok()
        run = _runner(operation, headers)
        try:
            run()
        except (Exception, BaseExceptionGroup) as exc:  # schemathesis' failure groups
            failures.append(f"{operation.label}: {_describe(exc)}")
    return failures


def _runner(operation: Any, headers: dict[str, str]) -> Any:
    excluded = [positive_data_acceptance] if operation.label in CROSS_PARAMETER_RULES else []

    @FUZZ
    @given(case=operation.as_strategy())
    def run(case: Any) -> None:
        case.call_and_validate(headers=headers, excluded_checks=excluded)

    return run


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return " || ".join(_describe(each) for each in exc.exceptions)
    return f"{type(exc).__name__}: " + " | ".join(str(exc).strip().splitlines()[:8])


def _bearer(endpoints: dict[str, Any], role: str) -> dict[str, str]:
    return {"authorization": f"Bearer {endpoints['tokens'][role]}"}


@pytest.mark.timeout(300)
def test_the_aggregator_api_holds_to_its_document(endpoints: dict[str, Any]) -> None:
    url = endpoints["aggregator"] + "/openapi.json"
    failures = _fuzz(url, _bearer(endpoints, "auditor"))
    assert not failures, "\n\n".join(failures)


@pytest.mark.timeout(300)
def test_the_regional_audit_api_holds_to_its_document(endpoints: dict[str, Any]) -> None:
    url = endpoints["audit_apis"]["eu-west"] + "/openapi.json"
    failures = _fuzz(url, _bearer(endpoints, "auditor-eu-west"))
    assert not failures, "\n\n".join(failures)
