"""What of a record may leave its region."""

from __future__ import annotations

from cordon.log import envelope
from cordon.log.keys import SigningKey
from gateway.ledger.summaries import leaf_hash, pseudonym, summarize

RECORD = {
    "v": 1,
    "kind": "decision",
    "id": "0190-record",
    "ts": "2026-11-25T10:00:00+00:00",
    "region": "eu-west",
    "replica": "gw-1",
    "replica_seq": 7,
    "person": "alice@example.com",
    "agent": "billing-bot",
    "roles": ["analyst"],
    "scopes": ["chat"],
    "classification": "confidential",
    "pack": {"name": "default", "revision": 3, "hash": "sha256:abc"},
    "model": "gpt-x",
    "route": "openai",
    "outcome": "redact",
    "rules": ["pii"],
    "content": {"messages": [{"role": "user", "content": "the secret plan"}], "answer": "ok"},
}


def test_summary_carries_metadata_and_no_content_or_raw_identity() -> None:
    data = envelope.seal(RECORD, SigningKey.generate()).encode()
    summary = summarize(data, 42, "eu-west", b"regional-secret")
    assert summary["id"] == "0190-record" and summary["stream_seq"] == 42
    assert summary["leaf_hash"] == leaf_hash(data)
    assert summary["outcome"] == "redact" and summary["pack_revision"] == 3
    text = repr(summary)
    for secret in ("the secret plan", "alice@example.com", "billing-bot", "analyst"):
        assert secret not in text
    assert summary["person"] == pseudonym(b"regional-secret", "alice@example.com")


def test_pseudonyms_are_keyed() -> None:
    assert pseudonym(b"k1", "alice") != pseudonym(b"k2", "alice")
    assert pseudonym(b"k1", "alice") == pseudonym(b"k1", "alice")
    assert pseudonym(b"k1", None) is None


def test_an_unreadable_message_is_still_a_leaf() -> None:
    summary = summarize(b"not an envelope", 9, "eu-west", b"k")
    assert summary["kind"] == "unreadable" and summary["leaf_hash"] == leaf_hash(b"not an envelope")


# Every field a decision summary has, and where its value may come from: the region's
# configuration and the gateway's own bookkeeping, closed sets, or keyed pseudonyms.
# Nothing a caller typed. A new field must be added here, with its source, on purpose.
SUMMARY_SCHEMA = {
    "v": "schema version",
    "region": "the sealer's configuration",
    "stream_seq": "the stream",
    "leaf_hash": "a hash of the signed record",
    "kind": "the record kind the replica wrote",
    "id": "a UUID the gateway made",
    "intent": "a UUID the gateway made",
    "replica": "the replica's configuration",
    "replica_seq": "the gateway's counter",
    "ts": "the gateway's clock",
    "outcome": "closed set",
    "pack_name": "the signed pack",
    "pack_revision": "the signed pack",
    "model": "the route's configured model entry, or 'unrouted'",
    "route": "the route's configured target id",
    "classification": "closed set",
    "person": "keyed pseudonym",
    "agent": "keyed pseudonym",
    "enforced_by": "closed set: the replica's configured place",
    "sdk_record": "a UUID the SDK made, in the form the gateway admits, or none",
    "prev": "the summary chain",
}
TOOL_SCHEMA = {
    **SUMMARY_SCHEMA,
    "model": "none: a tool call has no model",
    "tool_server": "a server the signed pack declares, or 'undeclared'",
    "tool": "a tool the signed pack declares, or 'undeclared'",
}


def test_the_summary_schema_is_pinned_and_nothing_a_caller_typed_crosses() -> None:
    hostile = "Jane Roe, oncology, DOB 1970-01-01"
    record = {
        **RECORD,
        "model": hostile,  # a caller may send any model name (answered 404)
        "model_id": None,
        "route": "",
        "person": hostile,
        "agent": hostile,
        "error": hostile,
        "attempts": [hostile],
        "content": {"prompt": hostile, "answer": hostile},
    }
    data = envelope.seal(record, SigningKey.generate()).encode()
    summary = summarize(data, 1, "eu-west", b"regional-secret")
    summary["prev"] = "00" * 32  # added when published (summaries.chained)
    assert set(summary) == set(SUMMARY_SCHEMA)
    assert summary["model"] == "unrouted"
    assert "Jane" not in repr(summary) and "oncology" not in repr(summary)
    routed = summarize(
        envelope.seal({**RECORD, "model_id": "gpt-*"}, SigningKey.generate()).encode(),
        2,
        "eu-west",
        b"regional-secret",
    )
    assert routed["model"] == "gpt-*"


def test_a_tool_calls_summary_names_only_what_the_pack_declares() -> None:
    hostile = "Jane Roe, oncology, DOB 1970-01-01"
    tool = {"method": "tools/call", "server": hostile, "name": hostile}
    record = {
        **RECORD,
        "model": "",
        "model_id": None,
        "route": "mcp:undeclared",
        "tool": {**tool, "server_declared": False, "declared": False},
        "content": {"arguments": {"q": hostile}, "result": hostile},
    }
    summary = summarize(envelope.seal(record, SigningKey.generate()).encode(), 1, "eu-west", b"k")
    summary["prev"] = "00" * 32
    assert set(summary) == set(TOOL_SCHEMA)
    assert (summary["tool_server"], summary["tool"], summary["model"]) == (
        "undeclared",
        "undeclared",
        None,
    )
    assert "Jane" not in repr(summary)
    declared = {**tool, "server": "crm", "name": "lookup", "server_declared": True}
    named = summarize(
        envelope.seal(
            {**record, "tool": {**declared, "declared": True}}, SigningKey.generate()
        ).encode(),
        2,
        "eu-west",
        b"k",
    )
    assert (named["tool_server"], named["tool"]) == ("crm", "lookup")


def test_a_summary_says_where_the_pack_was_enforced_and_which_sdk_record_it_carries() -> None:
    """An SDK's record says `sdk`; a gateway's record of a call an SDK-governed client made
    names the SDK's record; a record from before records named a place was a gateway's."""
    key = SigningKey.generate()
    sdk_id = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"

    def summary_of(**fields: object) -> dict[str, object]:
        return summarize(envelope.seal({**RECORD, **fields}, key).encode(), 1, "eu-west", b"k")

    in_process = summary_of(enforced_by="sdk", id=sdk_id)
    assert (in_process["enforced_by"], in_process["sdk_record"]) == ("sdk", None)
    receipted = summary_of(enforced_by="gateway", sdk_record=sdk_id)
    assert (receipted["enforced_by"], receipted["sdk_record"]) == ("gateway", sdk_id)
    assert summary_of(enforced_by="sidecar")["enforced_by"] == "sidecar"
    older = summarize(envelope.seal(RECORD, key).encode(), 1, "eu-west", b"k")
    assert (older["enforced_by"], older["sdk_record"]) == ("gateway", None)
    # Only the closed set and the admitted id form cross, whatever a record holds.
    hostile = "Jane Roe, oncology"
    odd = summary_of(enforced_by=hostile, sdk_record=hostile)
    assert (odd["enforced_by"], odd["sdk_record"]) == ("other", None)
