"""Signed packs and pack documents: what is accepted, what is refused and why."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cordon.errors import PackError
from cordon.log.keys import SigningKey, public_bytes
from cordon.packs import canonical_bytes, document_hash, parse_document, signing

OWNER = SigningKey.generate()
TRUSTED = signing.trust_root([public_bytes(OWNER.public_key).hex()])
SEED_STYLE = {
    "pack": {"name": "pii", "version": "1.0.0", "enabled": True},
    "policies": [
        {
            "name": "pii-redaction",
            "type": "output_filter",
            "action": "redact",
            "patterns": ["email"],
        }
    ],
}


def signed(
    document: dict[str, Any], revision: int = 1, key: SigningKey = OWNER, **fields: Any
) -> bytes:
    statement = {
        "format": signing.FORMAT,
        "name": document.get("pack", {}).get("name"),
        "revision": revision,
        "expires_at": 2**40,
        "regions": ["*"],
        "hash": document_hash(document),
        "signed_at": 0,
        "document": document,
        **fields,
    }
    return signing.sign(canonical_bytes(statement), [key])


def test_a_seed_style_pack_becomes_enforceable_rules() -> None:
    pack = signing.decode(signed(SEED_STYLE, 3), TRUSTED)
    assert pack.name == "pii" and pack.revision == 3
    assert pack.hash == document_hash(SEED_STYLE)
    assert [r.id for r in pack.rules_of("output_filter")] == ["pii-redaction"]
    assert pack.record_content == "redacted" and pack.fail_mode == "closed"
    assert pack.signed_by == (OWNER.key_id,)


def test_the_chain_form_is_accepted() -> None:
    chain = {
        "pack": {"name": "audit"},
        "policies": {
            "chain": ["audit-logger"],
            "policy": {
                "audit-logger": {"immutable": True, "retention_days": 365, "log_all_access": True}
            },
        },
    }
    assert signing.decode(signed(chain), TRUSTED).rules == ()


def test_hash_is_stable_under_key_order() -> None:
    reordered = {"policies": SEED_STYLE["policies"], "pack": SEED_STYLE["pack"]}
    assert document_hash(reordered) == document_hash(SEED_STYLE)


def test_any_change_to_the_signed_statement_breaks_the_signature() -> None:
    envelope = json.loads(signed(SEED_STYLE))
    envelope["statement"] = envelope["statement"].replace('"revision":1', '"revision":9')
    with pytest.raises(PackError, match="no valid signature from a trusted key"):
        signing.decode(json.dumps(envelope).encode(), TRUSTED)


def test_a_second_trusted_signature_is_not_needed_but_is_named() -> None:
    other = SigningKey.generate()
    both = signing.trust_root([public_bytes(k.public_key).hex() for k in (OWNER, other)])
    statement = signing.statement_bytes(SEED_STYLE, "pii", 2, 2**40, ["eu-west"])
    pack = signing.decode(signing.sign(statement, [OWNER, other]), both)
    assert set(pack.signed_by) == {OWNER.key_id, other.key_id} and pack.regions == ("eu-west",)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (signed(SEED_STYLE, key=SigningKey.generate()), "no valid signature from a trusted key"),
        (signed(SEED_STYLE, hash="sha256:" + "0" * 64), "content hash does not match"),
        (signed(SEED_STYLE, revision=0), "revision must be a positive integer"),
        (signed(SEED_STYLE, revision="7"), "revision must be a positive integer"),
        (signed(SEED_STYLE, name="other"), "statement name does not match"),
        (signed(SEED_STYLE, regions=[]), "regions must be a non-empty list"),
        (signed(SEED_STYLE, format="cordon-pack/0"), "is not cordon-pack/1"),
        (b"not json", "not a signed pack"),
        (b'{"statement": 1, "signatures": []}', "not a signed pack"),
    ],
)
def test_bad_signed_packs_are_refused_with_the_reason(data: bytes, reason: str) -> None:
    with pytest.raises(PackError, match=reason):
        signing.decode(data, TRUSTED)


@pytest.mark.parametrize(
    ("document", "reason", "path"),
    [
        ({"policies": []}, "pack.name is required", ("pack",)),
        ({"pack": {"name": "a b"}}, "may hold only letters", ("pack", "name")),
        (
            {"pack": {"name": "x"}, "policies": [{"type": "telepathy"}]},
            "type 'telepathy'",
            ("policies", 0, "type"),
        ),
        (
            {"pack": {"name": "x"}, "policies": [{"type": "output_filter", "patterns": ["dna"]}]},
            "unknown patterns",
            ("policies", 0, "patterns"),
        ),
        (
            {
                "pack": {"name": "x"},
                "policies": [{"type": "content_filter", "categories": ["gossip"]}],
            },
            "unknown categories",
            ("policies", 0, "categories"),
        ),
        (
            {
                "pack": {"name": "x"},
                "policies": [{"type": "identity", "action": "redact", "models": ["m"]}],
            },
            "action is one of",
            ("policies", 0, "action"),
        ),
        (
            {"pack": {"name": "x"}, "policies": [{"type": "identity", "models": ["m"]}]},
            "names roles or scopes",
            ("policies", 0),
        ),
        (
            {"pack": {"name": "x"}, "detectors": {"ticket": "([unclosed"}},
            "not a valid regular expression",
            ("detectors",),
        ),
        (
            {"pack": {"name": "x"}, "detectors": {"email": "x"}},
            "replace a built-in",
            ("detectors",),
        ),
        (
            {"pack": {"name": "x"}, "fail_mode": "sometimes"},
            "fail_mode must be one of",
            ("fail_mode",),
        ),
        (
            {"pack": {"name": "x"}, "record_content": "all"},
            "record_content must be one of",
            ("record_content",),
        ),
    ],
)
def test_bad_documents_are_refused_at_a_path(
    document: dict[str, Any], reason: str, path: tuple[Any, ...]
) -> None:
    with pytest.raises(PackError, match=reason) as caught:
        parse_document(document)
    assert caught.value.path == path  # type: ignore[attr-defined]


def test_custom_detectors_and_lexicon_terms_extend_the_pack() -> None:
    rules = parse_document(
        {
            "pack": {"name": "x"},
            "detectors": {"ticket": r"\bTCK-\d{6}\b"},
            "lexicons": {"violence": ["smash the printer"]},
            "policies": [
                {"type": "input_filter", "patterns": ["ticket"]},
                {"type": "content_filter", "categories": ["violence"]},
            ],
        }
    )
    assert rules.detectors.found("see TCK-123456", ["ticket"]) == ["ticket"]
    assert rules.lexicon.found("I will SMASH the   printer", ["violence"]) == ["violence"]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"[1]",
        b'{"statement": "[1]"}',
        b'{"statement": 7}',
        b'{"statement": "' + b"[" * 100_000 + b'"}',
        b"[" * 100_000,
    ],
    ids=["empty", "a-list", "statement-a-list", "statement-a-number", "deep-statement", "deep"],
)
def test_what_a_stranger_wrote_claims_nothing_and_raises_nothing(data: bytes) -> None:
    """`claimed` names what was refused, and orders a bucket's replay: whatever sits in
    the bucket, it answers (an exception there stopped the replica following policy)."""
    assert signing.claimed(data) == {"name": None, "revision": None, "hash": None}


def test_a_signed_pack_claims_its_name_and_revision() -> None:
    claim = signing.claimed(signed(SEED_STYLE, revision=7))
    assert (claim["name"], claim["revision"]) == ("pii", 7)
