"""Policy packs: the published form, its hash, and the rules the gateway enforces.

A pack document is the YAML a policy owner writes (shape of shared/seeds/). What
travels through NATS is a published pack: the document plus an integer revision
that only increases, the publish time and the SHA-256 of the canonical document.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from gateway import redaction
from gateway.errors import PackError

RECORD_CONTENT_MODES = ("none", "redacted", "full")
# fail_mode `open` needs the durable spool; until it exists such a pack is refused.
FAIL_MODES = ("closed",)
# Rule types this replica can enforce. A pack asking for anything else is refused
# rather than half-enforced: the last good pack stays active and the reason is logged.
ENFORCEABLE = {("output_filter", "redact"), ("input_filter", "redact"), ("input_filter", "block")}


def canonical_bytes(document: Any) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def document_hash(document: Any) -> str:
    return "sha256:" + hashlib.sha256(canonical_bytes(document)).hexdigest()


@dataclass(frozen=True)
class Rule:
    id: str
    type: str
    action: str
    patterns: tuple[str, ...] = ()


@dataclass(frozen=True)
class Pack:
    name: str
    revision: int
    hash: str
    record_content: str = "redacted"
    fail_mode: str = "closed"
    rules: tuple[Rule, ...] = ()
    published_at: float | None = None
    document: dict[str, Any] = field(default_factory=dict, compare=False)

    def rules_of(self, rule_type: str) -> tuple[Rule, ...]:
        return tuple(rule for rule in self.rules if rule.type == rule_type)


def publish_form(document: dict[str, Any], revision: int, published_at: float) -> dict[str, Any]:
    return {
        "revision": revision,
        "hash": document_hash(document),
        "published_at": published_at,
        "document": document,
    }


def pack_name(document: dict[str, Any]) -> str:
    meta = document.get("pack")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not meta["name"]:
        raise PackError("pack.name is required")
    name: str = meta["name"]
    if not name.replace("-", "").replace("_", "").isalnum():
        raise PackError(f"pack.name {name!r} may hold only letters, digits, '-' and '_'")
    return name


def _parse_rule(index: int, raw: Any) -> Rule:
    if not isinstance(raw, dict):
        raise PackError(f"policies[{index}] must be a map")
    rule = Rule(
        id=str(raw.get("name") or f"rule-{index}"),
        type=str(raw.get("type", "")),
        action=str(raw.get("action", "")),
        patterns=tuple(str(p) for p in raw.get("patterns") or ()),
    )
    if (rule.type, rule.action) not in ENFORCEABLE:
        raise PackError(
            f"policies[{index}] ({rule.id}): {rule.type}/{rule.action} is not enforceable by "
            "this gateway version"
        )
    unknown = redaction.unknown_patterns(rule.patterns)
    if unknown:
        raise PackError(f"policies[{index}] ({rule.id}): unknown patterns {unknown}")
    return rule


def _rules(document: dict[str, Any]) -> tuple[Rule, ...]:
    policies = document.get("policies") or []
    if isinstance(policies, dict):  # the `chain:` + `policy:` form carries no filters
        return ()
    if not isinstance(policies, list):
        raise PackError("policies must be a list or a chain map")
    return tuple(_parse_rule(i, raw) for i, raw in enumerate(policies))


def parse_published(published: dict[str, Any]) -> Pack:
    """Validate a published pack and build the enforceable form; `PackError` if not."""
    document = published.get("document")
    revision = published.get("revision")
    if not isinstance(document, dict):
        raise PackError("published pack has no document")
    if not isinstance(revision, int) or isinstance(revision, bool) or revision < 1:
        raise PackError("revision must be a positive integer")
    digest = document_hash(document)
    if published.get("hash") != digest:
        raise PackError("content hash does not match the document")
    record_content = str(document.get("record_content", "redacted"))
    fail_mode = str(document.get("fail_mode", "closed"))
    if record_content not in RECORD_CONTENT_MODES:
        raise PackError(f"record_content must be one of {RECORD_CONTENT_MODES}")
    if fail_mode not in FAIL_MODES:
        raise PackError(f"fail_mode must be one of {FAIL_MODES}")
    return Pack(
        name=pack_name(document),
        revision=revision,
        hash=digest,
        record_content=record_content,
        fail_mode=fail_mode,
        rules=_rules(document),
        published_at=_published_at(published.get("published_at")),
        document=document,
    )


def _published_at(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def decode_published(data: bytes) -> Pack:
    try:
        published = json.loads(data)
    except ValueError as exc:
        raise PackError("published pack is not JSON") from exc
    if not isinstance(published, dict):
        raise PackError("published pack is not a JSON object")
    return parse_published(published)


DEFAULT_PACK = Pack(name="builtin-default", revision=0, hash="sha256:" + "0" * 64)
