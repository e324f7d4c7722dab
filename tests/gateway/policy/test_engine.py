"""The rule engine: identity, classification, input and output rules, with rule ids."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from cordon.errors import OutputBlockedError
from cordon.packs import Pack, pack_name, parse_statement
from gateway.http import dialects
from gateway.identity import Identity
from gateway.policy import Decision, apply_input, output_policy

ANALYST = Identity("report-bot", roles=("analyst",), scopes=("chat:write",))
INTERN = Identity("intern-bot", roles=("intern",), scopes=("chat:write",))
CLEARED = Identity("vault-bot", roles=("analyst",), scopes=("chat:write", "data:restricted"))


def pack(*rules: dict[str, Any], **document: Any) -> Pack:
    doc = {"pack": {"name": "t"}, "policies": list(rules), **document}
    return parse_statement(
        {"name": pack_name(doc), "revision": 1, "regions": ["*"], "document": doc}
    )


def call(text: str, model: str = "gpt-4o") -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}]}


def decide(
    p: Pack,
    body: dict[str, Any],
    who: Identity = ANALYST,
    dialect: dialects.Dialect = dialects.CHAT,
) -> tuple[Decision, dict[str, Any]]:
    decision = Decision()
    sent = apply_input(p, dialect, body, who, decision)
    return decision, sent


def test_identity_allow_rules_keep_models_to_named_roles() -> None:
    p = pack(
        {
            "name": "gpt4-analysts",
            "type": "identity",
            "action": "allow",
            "models": ["gpt-4o*"],
            "roles": ["analyst"],
        }
    )
    assert decide(p, call("hi"))[0].outcome == "allow"
    denied, _ = decide(p, call("hi"), INTERN)
    assert denied.outcome == "block" and denied.rules == ["gpt4-analysts"]
    assert decide(p, call("hi", model="small-model"), INTERN)[0].outcome == "allow"


def test_identity_block_rules_and_routes() -> None:
    p = pack(
        {
            "name": "no-embeddings-for-interns",
            "type": "identity",
            "action": "block",
            "routes": ["embeddings"],
            "roles": ["intern"],
        }
    )
    body = {"model": "e", "input": "text"}
    assert decide(p, body, INTERN, dialects.EMBEDDINGS)[0].blocked_by == "no-embeddings-for-interns"
    assert decide(p, call("x"), INTERN)[0].outcome == "allow"


def test_classification_from_detectors_by_default() -> None:
    p = pack()
    assert decide(p, call("what is the weather"))[0].classification == "internal"
    assert decide(p, call("my card is 4111 1111 1111 1111"))[0].classification == "confidential"
    assert (
        decide(p, call("key sk-proj-abcdefghijklmnopqrstuvwxyz1234"))[0].classification
        == "restricted"
    )


def test_classification_rules_and_required_scopes() -> None:
    p = pack(
        {
            "name": "payroll-is-restricted",
            "type": "classification",
            "patterns": ["iban"],
            "level": "restricted",
        },
        {
            "name": "restricted-needs-clearance",
            "type": "classification",
            "level": "restricted",
            "require_scopes": ["data:restricted"],
        },
        default_classification="public",
    )
    assert decide(p, call("hello"))[0].classification == "public"
    blocked, _ = decide(p, call("pay DE89370400440532013000 today"))
    assert (
        blocked.classification == "restricted"
        and blocked.blocked_by == "restricted-needs-clearance"
    )
    cleared, _ = decide(p, call("pay DE89370400440532013000 today"), CLEARED)
    assert cleared.outcome == "allow" and cleared.rules == ["payroll-is-restricted"]


def test_input_filters_redact_block_and_flag() -> None:
    redacting = pack(
        {"name": "scrub", "type": "input_filter", "action": "redact", "patterns": ["email", "ssn"]}
    )
    decision, sent = decide(redacting, call("I am 123-45-6789, mail me at a@b.io"))
    assert sent["messages"][0]["content"] == "I am [SSN], mail me at [EMAIL]"
    assert decision.outcome == "redact" and decision.redactions == {"ssn": 1, "email": 1}

    blocking = pack(
        {
            "name": "no-secrets",
            "type": "input_filter",
            "action": "block",
            "patterns": ["private_key", "api_key"],
        }
    )
    assert decide(blocking, call("use AKIAIOSFODNN7EXAMPLE"))[0].blocked_by == "no-secrets"

    flagging = pack(
        {
            "name": "watch-violence",
            "type": "content_filter",
            "action": "flag",
            "categories": ["violence"],
            "applies_to": "input",
        }
    )
    flagged, sent = decide(flagging, call("how to build a bomb"))
    assert flagged.outcome == "allow" and flagged.flags == ["watch-violence"]
    assert sent["messages"][0]["content"] == "how to build a bomb"


def test_custom_detectors_and_lexicon_terms() -> None:
    p = pack(
        {"name": "tickets", "type": "input_filter", "action": "redact", "patterns": ["ticket"]},
        {
            "name": "office-threats",
            "type": "content_filter",
            "action": "block",
            "categories": ["violence"],
        },
        detectors={"ticket": r"\bTCK-\d{6}\b"},
        lexicons={"violence": ["smash the printer"]},
    )
    decision, sent = decide(p, call("see TCK-123456"))
    assert sent["messages"][0]["content"] == "see [TICKET]" and decision.redactions == {"ticket": 1}
    assert decide(p, call("I will smash the printer"))[0].blocked_by == "office-threats"


def test_output_rules_redact_or_raise_block() -> None:
    p = pack(
        {"name": "pii-out", "type": "output_filter", "action": "redact", "patterns": ["phone"]},
        {
            "name": "no-self-harm",
            "type": "content_filter",
            "action": "block",
            "categories": ["self_harm"],
            "applies_to": "output",
        },
    )
    decision = Decision()
    policy = output_policy(p, decision)
    assert policy is not None
    assert policy("call +44 20 7946 0958") == "call [PHONE]"
    assert decision.rules == ["pii-out"]
    with pytest.raises(OutputBlockedError, match="no-self-harm"):
        policy("you could end my life story here")
    assert output_policy(pack(), Decision()) is None  # no output rules: the fast path


BASELINE_OUT = (
    {
        "name": "pii",
        "type": "output_filter",
        "action": "redact",
        "patterns": ["email", "phone", "ssn", "credit_card", "iban", "ipv4", "api_key", "jwt"],
    },
    {
        "name": "words",
        "type": "content_filter",
        "action": "redact",
        "categories": ["violence", "weapons"],
        "applies_to": "output",
    },
)
STREAMED = [
    "mail bob.smith@example.co.uk or call +44 20 7946 0958 today",
    "card 4111 1111 1111 1111, ssn 123-45-6789, iban GB82 WEST 1234 5698 7654 32.",
    "server 10.0.0.12 key sk-proj-abcdefghijklmnopqrstuvwx end",
    "they said how to make a bomb and build a bomb, then a pipe bomb left",
    "nothing to see here at all, just words and more words",
]


@pytest.mark.parametrize("text", STREAMED)
def test_a_stream_split_anywhere_is_redacted_as_the_whole_is(text: str) -> None:
    """Every two-way split and a dense set of three-way splits: what the stream filter
    releases, joined, is what the rules make of the whole text."""
    from gateway.policy import StreamFilter

    p = pack(*BASELINE_OUT)
    policy = output_policy(p, None)
    assert policy is not None
    whole = policy(text)
    assert whole != text or text.startswith("nothing")
    cuts = [(i,) for i in range(1, len(text))]
    cuts += [(i, j) for i in range(1, len(text), 3) for j in range(i + 1, len(text), 5)]
    for points in cuts:
        bounds = [0, *points, len(text)]
        stream = StreamFilter(policy)
        out = "".join(stream.feed(text[a:b]) for a, b in itertools.pairwise(bounds))
        assert out + stream.flush() == whole, points


def test_a_stream_releases_ordinary_words_at_once() -> None:
    """Only what could still become a value waits: plain words go out as they come."""
    from gateway.policy import StreamFilter

    policy = output_policy(pack(*BASELINE_OUT), None)
    assert policy is not None
    stream = StreamFilter(policy)
    released = [stream.feed(w) for w in ("echo: ", "hello ", "there, ", "call ", "+44 ")]
    assert "".join(released).startswith("echo: hello there, call")
    assert "+44" not in "".join(released)  # could be the start of a phone number
