"""Red team, HTTP: every endpoint of every API, with no credential, a wrong one, another
role's and another region's, and the right one.

The audit APIs' and the central view's routes are read from their own OpenAPI
documents, so a route added later without a check fails here.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.helpers import audit_get, chat, eventually

REGION, OTHER = "eu-west", "us-east"
PATH_VALUES = {"{seq}": "1", "{region}": REGION, "{size}": "0"}
QUERY = {
    "/v1/consistency": {"old_size": 1, "new_size": 1},
    "/v1/export": {"from_seq": 1, "to_seq": 1},
    "/v1/people": {"pseudonym": "nobody"},
}
OPEN = {"/healthz", "/metrics"}  # probes and Prometheus; no data
# What an allowed caller gets where it is not a 200: the witness never judges an empty
# tree, so its verdict on size 0 is a 404. Anything else (a 500 too) fails.
ANSWERS = {f"/v1/witness/{REGION}/checkpoints/0": 404}


def _routes(base: str) -> list[str]:
    """Every GET route the app documents, with its path parameters filled in."""
    paths = httpx.get(base + "/openapi.json").json()["paths"]
    routes = []
    for path, operations in paths.items():
        if "get" not in operations:
            continue
        for name, value in PATH_VALUES.items():
            path = path.replace(name, value)
        routes.append(path)
    return sorted(routes)


def _status(base: str, path: str, token: str | None) -> int:
    headers = {"authorization": f"Bearer {token}"} if token is not None else {}
    response = httpx.get(base + path, params=QUERY.get(path), headers=headers, timeout=30)
    if response.status_code in (401, 403):
        assert "detail" in response.json() or "error" in response.json()  # JSON, explained
    return response.status_code


def _check(base: str, allowed: dict[str, str], refused: dict[str, str]) -> None:
    routes = [r for r in _routes(base) if r not in OPEN]
    assert routes, f"{base} documents no routes"
    for path in routes:
        assert _status(base, path, None) == 401, path
        assert _status(base, path, "cordon_not-a-token") == 401, path
        for who, token in refused.items():
            assert _status(base, path, token) == 403, f"{who} on {path}"
        for who, token in allowed.items():
            assert _status(base, path, token) == ANSWERS.get(path, 200), f"{who} on {path}"
    for path in OPEN & set(_routes(base)):
        assert _status(base, path, None) == 200, path


def _sealed(endpoints: dict[str, Any]) -> None:
    """The region has a record under a checkpoint, so each audit route has an answer (a
    200) for an auditor, whenever this test runs: not a 404 or 409 for want of one."""
    assert chat(endpoints["gateways"][REGION], endpoints["api_key"]).status_code == 200
    proof = "/v1/records/1/proof"
    eventually(lambda: audit_get(endpoints, REGION, proof).status_code == 200, timeout=20)


def test_the_regional_audit_api_answers_only_auditors_of_its_region(
    endpoints: dict[str, Any],
) -> None:
    _sealed(endpoints)
    tokens = endpoints["tokens"]
    _check(
        endpoints["audit_apis"][REGION],
        allowed={"auditor": tokens["auditor"], f"auditor-{REGION}": tokens[f"auditor-{REGION}"]},
        refused={
            f"auditor-{OTHER}": tokens[f"auditor-{OTHER}"],
            "sre": tokens["sre"],
            "admin": tokens["admin"],
        },
    )


def test_the_central_view_answers_auditors_and_sres(endpoints: dict[str, Any]) -> None:
    tokens = endpoints["tokens"]
    _check(
        endpoints["aggregator"],
        allowed={"auditor": tokens["auditor"], "sre": tokens["sre"]},
        refused={"admin": tokens["admin"]},
    )


@pytest.mark.parametrize(
    ("role", "status"),
    [(None, 401), ("bogus", 401), ("auditor", 403), ("sre", 403), ("admin", 200)],
)
def test_a_replicas_admin_surface_answers_admins_only(
    endpoints: dict[str, Any], role: str | None, status: int
) -> None:
    token = {None: None, "bogus": "cordon_bogus"}.get(role, endpoints["tokens"].get(role or ""))
    headers = {"authorization": f"Bearer {token}"} if token else {}
    response = httpx.get(endpoints["gateways"][REGION] + "/v1/cordon/policy", headers=headers)
    assert response.status_code == status
    if status != 200:  # in the caller's API shape (OpenAI's)
        expected = "invalid_api_key" if status == 401 else "permission_denied"
        assert response.json()["error"]["code"] == expected
    else:
        assert "active_revision" in response.json()
