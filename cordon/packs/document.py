"""Policy packs: the document a policy owner writes, and the rules a gateway enforces.

A pack document is the YAML of shared/seeds/. What travels is a signed statement
about it (cordon.packs.signing): name, revision, expiry, regions, content hash.
`parse_document` checks everything the gateway enforces and builds the rules;
`parse_statement` turns a verified statement into the enforceable `Pack`.

Rule types (docs/policy.md has the details):

- `input_filter` / `output_filter`: detectors (`patterns`) and content categories in
  the prompt / the answer (streamed or not); redact, block or flag.
- `content_filter`: content categories in the prompt and/or answer (`applies_to`).
- `identity`: who (roles any-of, scopes all-of) may use which models and routes.
- `classification`: raises the call's level when `patterns` or `categories` are
  found; with `require_scopes`, calls at or above `level` need those scopes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from cordon.errors import DocumentError, PackError
from cordon.packs import chain, classifier, lexicon, rollout, tools
from cordon.packs.classifier import ClassifierHook
from cordon.packs.detectors import DEFAULT_SET, DetectorSet, compile_custom
from cordon.packs.lexicon import Lexicon
from cordon.packs.tools import NO_TOOLS, ToolPolicy
from cordon.packs.workloads import NO_WORKLOADS, WorkloadMap
from cordon.packs.workloads import parse as parse_workloads

RECORD_CONTENT_MODES = ("none", "redacted", "full")
FAIL_MODES = ("closed", "open")
# Whether a region-mode sidecar may add its own rules to this pack (gateway.sidecar.overlay).
OVERLAY_MODES = ("allow", "forbid")
LEVELS = ("public", "internal", "confidential", "restricted")
ROUTES = ("chat", "embeddings", "responses", "messages")
ACTIONS = {
    "input_filter": ("redact", "block", "flag"),
    "output_filter": ("redact", "block", "flag"),
    "content_filter": ("block", "flag", "redact"),
    "identity": ("allow", "block"),
    "classification": ("flag",),
}
DEFAULT_ACTION = {
    "input_filter": "redact",
    "output_filter": "redact",
    "content_filter": "block",
    "identity": "allow",
    "classification": "flag",
}


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
    categories: tuple[str, ...] = ()
    applies_to: str = "both"
    roles: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    routes: tuple[str, ...] = ()
    level: str | None = None
    require_scopes: tuple[str, ...] = ()

    def scans_output(self) -> bool:
        return self.type == "output_filter" or (
            self.type == "content_filter" and self.applies_to in ("output", "both")
        )

    def scans_input(self) -> bool:
        return self.type == "input_filter" or (
            self.type == "content_filter" and self.applies_to in ("input", "both")
        )


@dataclass(frozen=True)
class Rules:
    """What `parse_document` makes of a document."""

    rules: tuple[Rule, ...] = ()
    detectors: DetectorSet = DEFAULT_SET
    lexicon: Lexicon = lexicon.DEFAULT
    default_classification: str = "internal"
    classifier: ClassifierHook | None = None
    tools: ToolPolicy = NO_TOOLS  # the tool servers fronted, and who may call what
    workloads: WorkloadMap = NO_WORKLOADS  # which workload identity acts as which agent


@dataclass(frozen=True)
class Pack:
    name: str
    revision: int
    hash: str
    record_content: str = "redacted"
    fail_mode: str = "closed"
    rules: tuple[Rule, ...] = ()
    detectors: DetectorSet = field(default=DEFAULT_SET, compare=False)
    lexicon: Lexicon = field(default=lexicon.DEFAULT, compare=False)
    default_classification: str = "internal"
    classifier: ClassifierHook | None = field(default=None, compare=False)
    tools: ToolPolicy = field(default=NO_TOOLS, compare=False)
    workloads: WorkloadMap = field(default=NO_WORKLOADS, compare=False)
    signed_at: float | None = None
    expires_at: float | None = None
    regions: tuple[str, ...] = ("*",)
    signed_by: tuple[str, ...] = ()
    document: dict[str, Any] = field(default_factory=dict, compare=False)
    # `pack.enabled: false`: the owner's kill switch. The revision supersedes the ones
    # before it like any other, and every call under it is refused (503 pack_disabled).
    enabled: bool = True
    # Where a sidecar's pack came from: its file's digest, and the git commit and ref it
    # was read at (gateway.sidecar); None for a pack the replicator carried.
    origin: dict[str, str] | None = field(default=None, compare=False)

    def covers(self, region: str) -> bool:
        return "*" in self.regions or region in self.regions

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def unusable(self, now: float) -> tuple[str, str] | None:
        """Why no call may be served under this pack, as (code, message), or None.

        A disabled pack refuses every call; an expired one does under `fail_mode:
        closed` (under `open`, calls go on and their records are flagged)."""
        if not self.enabled:
            return "pack_disabled", f"policy pack {self.name} r{self.revision} is disabled"
        if self.fail_mode == "closed" and self.expired(now):
            return "pack_expired", (
                f"policy pack {self.name} r{self.revision} has expired; no call is served "
                "until a current revision is active"
            )
        return None

    @property
    def retention_days(self) -> float | None:
        """`audit-logger.retention_days` from the `policy:` map (top level or in `policies`)."""
        for holder in (self.document, self.document.get("policies")):
            if isinstance(holder, dict) and isinstance(holder.get("policy"), dict):
                logger = holder["policy"].get("audit-logger")
                if isinstance(logger, dict) and isinstance(
                    logger.get("retention_days"), int | float
                ):
                    return float(logger["retention_days"])
        return None

    def rules_of(self, rule_type: str) -> tuple[Rule, ...]:
        return tuple(rule for rule in self.rules if rule.type == rule_type)

    # What the rules look for, per direction: derived once per pack (a pack never
    # changes), not on every call that enforces it.

    @cached_property
    def input_rules(self) -> tuple[Rule, ...]:
        return tuple(rule for rule in self.rules if rule.scans_input())

    @cached_property
    def output_rules(self) -> tuple[Rule, ...]:
        return tuple(rule for rule in self.rules if rule.scans_output())

    @cached_property
    def classification_rules(self) -> tuple[Rule, ...]:
        return self.rules_of("classification")

    @cached_property
    def input_categories(self) -> tuple[str, ...]:
        """Every category an input or a classification rule names."""
        return categories_of(self.input_rules + self.classification_rules)

    @cached_property
    def output_categories(self) -> tuple[str, ...]:
        return categories_of(self.output_rules)

    @cached_property
    def output_patterns(self) -> tuple[str, ...]:
        return patterns_of(self.output_rules)


def categories_of(rules: tuple[Rule, ...]) -> tuple[str, ...]:
    """The categories `rules` name, each once, in order."""
    return tuple({c: None for rule in rules for c in rule.categories})


def patterns_of(rules: tuple[Rule, ...]) -> tuple[str, ...]:
    """The detectors `rules` name, each once, in order."""
    return tuple({p: None for rule in rules for p in rule.patterns})


def pack_name(document: dict[str, Any]) -> str:
    meta = document.get("pack")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not meta["name"]:
        raise DocumentError("pack.name is required", ["pack"])
    name: str = meta["name"]
    if not name.replace("-", "").replace("_", "").isalnum():
        raise DocumentError(
            f"pack.name {name!r} may hold only letters, digits, '-' and '_'", ["pack", "name"]
        )
    return name


def _names(raw: dict[str, Any], key: str, where: list[str | int]) -> tuple[str, ...]:
    value = raw.get(key) or ()
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise DocumentError(f"{key} must be a list of names", [*where, key])
    return tuple(value)


def _parse_rule(index: int, raw: Any, rules: Rules) -> Rule:
    where: list[str | int] = ["policies", index]
    if not isinstance(raw, dict):
        raise DocumentError("a rule must be a map", where)
    rule_type = str(raw.get("type", ""))
    rule_id = str(raw.get("name") or f"rule-{index}")
    if rule_type not in ACTIONS:
        raise DocumentError(
            f"{rule_id}: type {rule_type!r} is not one of {sorted(ACTIONS)}", [*where, "type"]
        )
    action = str(raw.get("action") or DEFAULT_ACTION[rule_type])
    if action not in ACTIONS[rule_type]:
        raise DocumentError(
            f"{rule_id}: a {rule_type} rule's action is one of "
            f"{ACTIONS[rule_type]}, not {action!r}",
            [*where, "action"],
        )
    rule = Rule(
        id=rule_id,
        type=rule_type,
        action=action,
        patterns=_names(raw, "patterns", where),
        categories=_names(raw, "categories", where),
        applies_to=str(raw.get("applies_to", "both")),
        roles=_names(raw, "roles", where),
        scopes=_names(raw, "scopes", where),
        models=_names(raw, "models", where),
        routes=_names(raw, "routes", where),
        level=raw.get("level"),
        require_scopes=_names(raw, "require_scopes", where),
    )
    _check_rule(rule, rules, where)
    return rule


def _check_rule(rule: Rule, rules: Rules, where: list[str | int]) -> None:
    unknown = rules.detectors.unknown(rule.patterns)
    if unknown:
        raise DocumentError(f"{rule.id}: unknown patterns {unknown}", [*where, "patterns"])
    unknown = [c for c in rule.categories if c not in rules.lexicon.patterns]
    if unknown:
        raise DocumentError(f"{rule.id}: unknown categories {unknown}", [*where, "categories"])
    if rule.applies_to not in ("input", "output", "both"):
        raise DocumentError(
            f"{rule.id}: applies_to is input, output or both", [*where, "applies_to"]
        )
    bad_routes = [r for r in rule.routes if r not in ROUTES]
    if bad_routes:
        raise DocumentError(f"{rule.id}: routes are {ROUTES}, not {bad_routes}", [*where, "routes"])
    if rule.type in ("input_filter", "output_filter", "content_filter") and not (
        rule.patterns or rule.categories
    ):
        raise DocumentError(f"{rule.id}: a filter needs patterns or categories", where)
    if rule.type == "identity" and not (rule.models or rule.routes):
        raise DocumentError(f"{rule.id}: an identity rule names models or routes", where)
    if rule.type == "identity" and not (rule.roles or rule.scopes):
        raise DocumentError(f"{rule.id}: an identity rule names roles or scopes", where)
    if rule.type == "classification" and rule.level not in LEVELS:
        raise DocumentError(f"{rule.id}: level must be one of {LEVELS}", [*where, "level"])


def parse_document(document: Any) -> Rules:
    """Everything the gateway enforces, checked; `DocumentError` names the path if not."""
    if not isinstance(document, dict):
        raise DocumentError("a pack must be a map")
    pack_name(document)
    chain.audit_logger(document)  # named policies: each key honoured or the pack refused
    rollout.parse_rollout(document)  # the replicator stages by it; a broken one is refused
    for key, allowed in (
        ("record_content", RECORD_CONTENT_MODES),
        ("fail_mode", FAIL_MODES),
        ("local_overlay", OVERLAY_MODES),
    ):
        if key in document and document[key] not in allowed:
            raise DocumentError(f"{key} must be one of {allowed}", [key])
    detectors_raw = document.get("detectors") or {}
    lexicons_raw = document.get("lexicons") or {}
    if not isinstance(detectors_raw, dict) or not all(
        isinstance(v, str) for v in detectors_raw.values()
    ):
        raise DocumentError("detectors maps names to regular expressions", ["detectors"])
    if not isinstance(lexicons_raw, dict):
        raise DocumentError("lexicons maps categories to lists of terms", ["lexicons"])
    try:
        detectors = DetectorSet(compile_custom(detectors_raw))
    except PackError as exc:
        raise DocumentError(str(exc), ["detectors"]) from exc
    default_level = str(document.get("default_classification", "internal"))
    if default_level not in LEVELS:
        raise DocumentError(
            f"default_classification must be one of {LEVELS}", ["default_classification"]
        )
    try:
        hook = classifier.parse(document.get("classifier"))
    except PackError as exc:
        raise DocumentError(str(exc), ["classifier"]) from exc
    base = Rules(
        (),
        detectors,
        lexicon.build(lexicons_raw) if lexicons_raw else lexicon.DEFAULT,
        default_level,
        hook,
        tools.parse(document.get("tools")),
        parse_workloads(document.get("workloads")),
    )
    policies = document.get("policies") or []
    if isinstance(policies, dict):  # the `chain:` + `policy:` form carries no filters
        return base
    if not isinstance(policies, list):
        raise DocumentError("policies must be a list of rules or a chain map", ["policies"])
    rules = tuple(_parse_rule(i, raw, base) for i, raw in enumerate(policies))
    return Rules(
        rules,
        base.detectors,
        base.lexicon,
        base.default_classification,
        hook,
        base.tools,
        base.workloads,
    )


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def parse_statement(statement: dict[str, Any], signed_by: tuple[str, ...] = ()) -> Pack:
    """Validate a (verified) statement and build the enforceable form; `PackError` if not."""
    document = statement.get("document")
    revision = statement.get("revision")
    if not isinstance(document, dict):
        raise PackError("signed statement has no document")
    if not isinstance(revision, int) or isinstance(revision, bool) or revision < 1:
        raise PackError("revision must be a positive integer")
    rules = parse_document(document)
    name = pack_name(document)
    if statement.get("name") != name:
        raise PackError("statement name does not match pack.name")
    regions = statement.get("regions")
    if not isinstance(regions, list) or not regions or not all(isinstance(r, str) for r in regions):
        raise PackError('regions must be a non-empty list (["*"] for every region)')
    return Pack(
        name=name,
        revision=revision,
        hash=document_hash(document),
        record_content=str(document.get("record_content", "redacted")),
        fail_mode=str(document.get("fail_mode", "closed")),
        rules=rules.rules,
        detectors=rules.detectors,
        lexicon=rules.lexicon,
        default_classification=rules.default_classification,
        classifier=rules.classifier,
        tools=rules.tools,
        workloads=rules.workloads,
        signed_at=_number(statement.get("signed_at")),
        expires_at=_number(statement.get("expires_at")),
        regions=tuple(regions),
        signed_by=signed_by,
        document=document,
        enabled=(document.get("pack") or {}).get("enabled", True) is not False,
    )


DEFAULT_PACK = Pack(name="builtin-default", revision=0, hash="sha256:" + "0" * 64)
