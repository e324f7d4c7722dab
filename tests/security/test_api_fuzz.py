"""Every HTTP API with an OpenAPI document, fuzzed with schemathesis and real
credentials: no 5xx, every status and content type it returns documented, every
schema-valid request accepted, every answer in its documented shape."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import positive_data_acceptance

FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))


# Rules between two parameters that OpenAPI cannot state: a schema-valid request can
# break them, and is answered 400 with the rule in `detail` (documented). Every other
# check holds for these operations too.
CROSS_PARAMETER_RULES = {
    "GET /v1/consistency": "old_size is larger than new_size",
    "GET /v1/export": "to_seq is before from_seq, or more than 10,000 records",
}


def _fuzz(openapi_url: str, headers: dict[str, str]) -> list[str]:
    """Each operation of the document, fuzzed; what failed, one line per operation."""
    schema = schemathesis.openapi.from_url(openapi_url)
    failures = []
    for result in schema.get_all_operations():
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
