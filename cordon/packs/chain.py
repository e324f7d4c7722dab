"""The seeds' named policies: `policies: {chain: [...], policy: {<name>: {...}}}`, or a
`policy:` map beside a list of rules.

A chain names built-in policies, applied in order; each takes its settings from the
`policy:` map. Cordon knows one, `audit-logger`, and gives each of its keys a meaning
it enforces:

- `immutable: true`: records are signed and append-only. They always are in Cordon;
  `false` asks for something Cordon will not do, so the pack is refused.
- `retention_days: N`: records are kept at least N days. A replica checks the region's
  `RECORDS` against it (its status says when the stream keeps less); a sidecar's
  local log keeps records that long.
- `log_all_access: true`: every call and every read of the records is itself recorded.
  Always so in Cordon; `false` is refused like `immutable: false`.

Anything else (a policy Cordon does not know, a key it cannot honour, a policy
configured but left out of the chain) refuses the pack with the path to blame, so
nothing in a user's file is silently ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cordon.errors import DocumentError

__all__ = ["AUDIT_LOGGER", "KNOWN", "AuditLogger", "audit_logger"]

AUDIT_LOGGER = "audit-logger"
KNOWN = (AUDIT_LOGGER,)
AUDIT_LOGGER_KEYS = ("immutable", "retention_days", "log_all_access")


@dataclass(frozen=True)
class AuditLogger:
    """What `audit-logger` asks; a pack without one asks Cordon's defaults."""

    retention_days: float | None = None


def audit_logger(document: dict[str, Any]) -> AuditLogger:
    """The pack's named policies, checked; `DocumentError` naming the path if one cannot
    be honoured."""
    policies = document.get("policies")
    settings: dict[str, Any] = {}
    if isinstance(policies, dict):
        chain = _chain(policies)
        settings = _policy_map(policies.get("policy"), ["policies", "policy"], chain)
        for name in chain:
            settings.setdefault(name, {})
    if "policy" in document:
        top = _policy_map(document["policy"], ["policy"], None)
        clash = sorted(set(top) & set(settings))
        if clash:
            raise DocumentError(f"{clash[0]} is configured twice", ["policy", clash[0]])
        settings.update(top)
    if AUDIT_LOGGER not in settings:
        return AuditLogger()
    return _audit_logger(settings[AUDIT_LOGGER], _where(document, AUDIT_LOGGER))


def _chain(policies: dict[str, Any]) -> list[str]:
    chain = policies.get("chain")
    if not isinstance(chain, list) or not all(isinstance(n, str) for n in chain):
        raise DocumentError("chain must be a list of policy names", ["policies", "chain"])
    for index, name in enumerate(chain):
        if name not in KNOWN:
            raise DocumentError(
                f"policy {name!r} is not one Cordon knows (known: {', '.join(KNOWN)})",
                ["policies", "chain", index],
            )
    if len(set(chain)) != len(chain):
        raise DocumentError("a policy is named twice in the chain", ["policies", "chain"])
    unknown = sorted(set(policies) - {"chain", "policy"})
    if unknown:
        raise DocumentError(f"unknown key {unknown[0]!r}", ["policies", unknown[0]])
    return chain


def _policy_map(
    raw: Any, where: list[str | int], chain: list[str] | None
) -> dict[str, dict[str, Any]]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise DocumentError("policy maps policy names to their settings", where)
    for name, settings in raw.items():
        if name not in KNOWN:
            raise DocumentError(
                f"policy {name!r} is not one Cordon knows (known: {', '.join(KNOWN)})",
                [*where, name],
            )
        if chain is not None and name not in chain:
            raise DocumentError(
                f"{name} is configured but not in policies.chain, so it would never run",
                [*where, name],
            )
        if not isinstance(settings, dict):
            raise DocumentError(f"{name} takes a map of settings", [*where, name])
    return dict(raw)


def _where(document: dict[str, Any], name: str) -> list[str | int]:
    top = document.get("policy")
    if isinstance(top, dict) and name in top:
        return ["policy", name]
    return ["policies", "policy", name]


def _audit_logger(settings: dict[str, Any], where: list[str | int]) -> AuditLogger:
    for key in settings:
        if key not in AUDIT_LOGGER_KEYS:
            raise DocumentError(
                f"audit-logger has no setting {key!r} (it takes {', '.join(AUDIT_LOGGER_KEYS)})",
                [*where, key],
            )
    for key in ("immutable", "log_all_access"):
        value = settings.get(key, True)
        if not isinstance(value, bool):
            raise DocumentError(f"audit-logger.{key} is true or false", [*where, key])
        if value is False:
            raise DocumentError(
                f"audit-logger.{key}: false cannot be honoured: Cordon signs and keeps every "
                "record append-only, and records every call and every read of the records",
                [*where, key],
            )
    days = settings.get("retention_days")
    if days is not None and (
        isinstance(days, bool) or not isinstance(days, int | float) or days <= 0
    ):
        raise DocumentError(
            "audit-logger.retention_days is a number of days above 0", [*where, "retention_days"]
        )
    return AuditLogger(float(days) if days is not None else None)
