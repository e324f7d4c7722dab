"""`cordon policy test`: run a pack over a sample call, with no server at all.

The sample is a request body, or `{"request": ..., "response": ..., "identity":
{...}, "endpoint": "chat"}`. The output is the decision the gateway would record,
what it would send upstream, and what it would release of the response.
"""

from __future__ import annotations

from typing import Any

from cordon.errors import OutputBlockedError
from cordon.packs import pack_name, parse_statement
from gateway import policy
from gateway.http import dialects
from gateway.identity import Identity

ENDPOINTS = {
    "chat": dialects.CHAT,
    "embeddings": dialects.EMBEDDINGS,
    "responses": dialects.RESPONSES,
    "messages": dialects.MESSAGES,
}


def run_trial(document: dict[str, Any], sample: dict[str, Any]) -> dict[str, Any]:
    pack = parse_statement(
        {"name": pack_name(document), "revision": 1, "regions": ["*"], "document": document}
    )
    request = sample.get("request", sample)
    dialect = ENDPOINTS[str(sample.get("endpoint", "chat"))]
    who = sample.get("identity") or {}
    identity = Identity(
        agent=str(who.get("agent", "policy-test")),
        roles=tuple(who.get("roles", ())),
        scopes=tuple(who.get("scopes", ())),
        person=who.get("person"),
    )
    decision = policy.Decision()
    sent = policy.apply_input(pack, dialect, request, identity, decision)
    result: dict[str, Any] = {"decision": decision, "request_sent_upstream": None}
    if decision.blocked_by is None:
        result["request_sent_upstream"] = sent
        response = sample.get("response")
        if isinstance(response, dict):
            result["response_released"] = _output(pack, dialect, response, decision)
    result["decision"] = {
        "outcome": decision.outcome,
        "rules": decision.rules,
        "blocked_by": decision.blocked_by,
        "flags": decision.flags,
        "redactions": decision.redactions,
        "classification": decision.classification,
    }
    return result


def _output(
    pack: Any, dialect: dialects.Dialect, response: dict[str, Any], decision: policy.Decision
) -> Any:
    apply = policy.output_policy(pack, decision)
    if apply is None:
        return response
    answer = dict(response)
    try:
        dialect.map_answer(answer, apply)
    except OutputBlockedError as exc:
        decision.fired(exc.rule_id, "block")
        return None
    return answer
