"""A pack's `workloads:` section: which verified workload identity acts as which agent.

A workload token (a Kubernetes projected service-account token, a SPIFFE JWT-SVID;
`gateway.identity.workload`) proves only *which workload* is calling. What that workload
may do is policy, so the pack says it, and a new revision changes it everywhere at once:

    workloads:
      - subject: "system:serviceaccount:agents:researcher"   # exact
        agent: researcher
        roles: [developer]
        scopes: [chat]
      - subject: "spiffe://example.org/ns/agents/*"           # or a glob (fnmatch)
        agent: agents-pool

An exact subject wins over every glob; globs are tried in the pack's order. `*` matches
any run of characters, `/` included (fnmatch, case-sensitive). A subject no entry names
maps to no agent, and the gateway refuses it.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from cordon.errors import DocumentError

__all__ = ["NO_WORKLOADS", "Workload", "WorkloadMap", "parse"]

KEYS = ("subject", "agent", "roles", "scopes", "issuer")
GLOB_CHARACTERS = frozenset("*?[")


class Workload(NamedTuple):
    """What a mapped workload acts as; unpacks as (agent, roles, scopes)."""

    agent: str
    roles: tuple[str, ...]
    scopes: tuple[str, ...]
    # The issuer whose tokens this entry maps; None: any. A Kubernetes subject names no
    # cluster, so with two clusters' issuers configured an entry must name its own.
    issuer: str | None = None


@dataclass(frozen=True, eq=False)
class WorkloadMap:
    exact: dict[str, tuple[Workload, ...]] = field(default_factory=dict)
    globs: tuple[tuple[re.Pattern[str], Workload], ...] = ()

    def lookup(self, subject: str, issuer: str | None = None) -> Workload | None:
        """The entry for `subject` from `issuer`: one naming that issuer, else one
        naming none; exact subjects first, then globs in order."""
        exact = self.exact.get(subject, ())
        candidates = [*exact, *(w for pattern, w in self.globs if pattern.fullmatch(subject))]
        named = [w for w in candidates if w.issuer is not None and w.issuer == issuer]
        anyone = [w for w in candidates if w.issuer is None]
        found = named or anyone
        return found[0] if found else None


NO_WORKLOADS = WorkloadMap()


def parse(raw: Any) -> WorkloadMap:
    """The pack's `workloads` list, checked; `DocumentError` names the path if not."""
    if raw is None:
        return NO_WORKLOADS
    if not isinstance(raw, list):
        raise DocumentError(
            "workloads must be a list of {subject, agent, roles, scopes}", ["workloads"]
        )
    exact: dict[str, tuple[Workload, ...]] = {}
    globs: list[tuple[re.Pattern[str], Workload]] = []
    seen: set[tuple[str, str | None]] = set()
    for index, entry in enumerate(raw):
        subject, workload = _entry(entry, ["workloads", index])
        if (subject, workload.issuer) in seen:
            raise DocumentError(
                f"workload subject {subject!r} is listed twice", ["workloads", index, "subject"]
            )
        seen.add((subject, workload.issuer))
        if not GLOB_CHARACTERS.isdisjoint(subject):
            globs.append((re.compile(fnmatch.translate(subject)), workload))
        else:
            exact[subject] = (*exact.get(subject, ()), workload)
    return WorkloadMap(exact, tuple(globs))


def _entry(entry: Any, where: list[str | int]) -> tuple[str, Workload]:
    if not isinstance(entry, dict):
        raise DocumentError("a workload must be a map", where)
    unknown = sorted(str(k) for k in entry if k not in KEYS)
    if unknown:
        raise DocumentError(f"unknown workload keys {unknown}", [*where, unknown[0]])
    subject, agent = entry.get("subject"), entry.get("agent")
    if not isinstance(subject, str) or not subject.strip():
        raise DocumentError("a workload needs a subject", [*where, "subject"])
    if not isinstance(agent, str) or not agent.strip():
        raise DocumentError(f"workload {subject!r} needs an agent", [*where, "agent"])
    issuer = entry.get("issuer")
    if issuer is not None and (not isinstance(issuer, str) or not issuer.strip()):
        raise DocumentError(f"workload {subject!r}: issuer is a name", [*where, "issuer"])
    roles, scopes = _names(entry, "roles", where), _names(entry, "scopes", where)
    return subject, Workload(agent, roles, scopes, issuer)


def _names(entry: dict[str, Any], key: str, where: list[str | int]) -> tuple[str, ...]:
    value = entry.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise DocumentError(f"{key} must be a list of names", [*where, key])
    return tuple(value)
