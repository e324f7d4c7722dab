"""Published packs: what is accepted, what is refused and why."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.errors import PackError
from gateway.packs import decode_published, document_hash, publish_form

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


def encoded(document: dict[str, Any], revision: int = 1, **override: Any) -> bytes:
    return json.dumps({**publish_form(document, revision, 0.0), **override}).encode()


def test_a_seed_style_pack_becomes_enforceable_rules() -> None:
    pack = decode_published(encoded(SEED_STYLE, 3))
    assert pack.name == "pii" and pack.revision == 3
    assert pack.hash == document_hash(SEED_STYLE)
    assert [r.id for r in pack.rules_of("output_filter")] == ["pii-redaction"]
    assert pack.record_content == "redacted" and pack.fail_mode == "closed"


def test_the_chain_form_is_accepted() -> None:
    chain = {
        "pack": {"name": "audit"},
        "policies": {"chain": ["audit-logger"]},
        "policy": {"audit-logger": {"immutable": True, "retention_days": 365}},
    }
    assert decode_published(encoded(chain)).rules == ()


def test_hash_is_stable_under_key_order() -> None:
    reordered = {"policies": SEED_STYLE["policies"], "pack": SEED_STYLE["pack"]}
    assert document_hash(reordered) == document_hash(SEED_STYLE)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (encoded(SEED_STYLE, hash="sha256:" + "0" * 64), "content hash does not match"),
        (encoded(SEED_STYLE, revision=0), "revision must be a positive integer"),
        (encoded(SEED_STYLE, revision="7"), "revision must be a positive integer"),
        (encoded({"policies": []}), "pack.name is required"),
        (encoded({"pack": {"name": "a b"}}), "may hold only letters"),
        (
            encoded(
                {"pack": {"name": "x"}, "policies": [{"type": "content_filter", "action": "block"}]}
            ),
            "content_filter/block is not enforceable",
        ),
        (
            encoded(
                {
                    "pack": {"name": "x"},
                    "policies": [
                        {"type": "output_filter", "action": "redact", "patterns": ["dna"]}
                    ],
                }
            ),
            "unknown patterns",
        ),
        (encoded({"pack": {"name": "x"}, "fail_mode": "open"}), "fail_mode must be one of"),
        (
            encoded({"pack": {"name": "x"}, "record_content": "all"}),
            "record_content must be one of",
        ),
        (b"not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
    ],
)
def test_bad_packs_are_refused_with_the_reason(data: bytes, reason: str) -> None:
    with pytest.raises(PackError, match=reason):
        decode_published(data)
