"""A region-mode sidecar's own rules: the `policies` of its file, added to every pack
the region sends, unless that pack forbids it (`local_overlay: forbid`).

An overlay can only add rules (filters, blocks, identity and classification rules),
never remove or loosen the region's: the region's providers, record content, fail mode
and every rule of its pack stay as they are. The overlay's rules are read against the
region pack's own vocabulary (its detectors and lexicons), named `local/<name>` in the
records, and every record says the overlay was applied (`pack.origin.overlay`, its
digest). A pack that forbids overlays is enforced as the region sent it, and the
status says the overlay was left out.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from typing import Any

from cordon.errors import ConfigError, DocumentError, PackError
from cordon.packs import Pack, canonical_bytes, parse_document

__all__ = ["FORBID", "OVERLAY_KEYS", "Overlay"]

log = logging.getLogger("cordon.sidecar.overlay")
FORBID = "forbid"
OVERLAY_KEYS = frozenset({"pack", "policies"})  # what a region-mode file may add


class Overlay:
    def __init__(self, document: dict[str, Any], file: str) -> None:
        extra = sorted(set(document) - OVERLAY_KEYS)
        if extra:
            raise ConfigError(
                f"{file}: {extra[0]}: in region mode the region's pack decides it; a "
                "sidecar's file may only add policies"
            )
        policies = document.get("policies") or []
        if not isinstance(policies, list):
            raise ConfigError(f"{file}: policies: an overlay is a list of rules")
        self.policies = policies
        try:  # read now, against the built-in vocabulary: a broken rule stops the start
            parse_document({"pack": {"name": "overlay"}, "policies": self._renamed()})
        except DocumentError as exc:
            raise ConfigError(f"{file}: {'.'.join(map(str, exc.path))}: {exc}") from exc
        self.digest = "sha256:" + hashlib.sha256(canonical_bytes(policies)).hexdigest()
        self.forbidden_by: str | None = None  # the pack that last refused the overlay

    def apply(self, pack: Pack) -> Pack:
        """`pack` with the overlay's rules after its own (PackError if they cannot be
        read against it, which refuses the pack, as any unreadable rule would)."""
        if not self.policies:
            return pack
        if pack.document.get("local_overlay") == FORBID:
            self.forbidden_by = f"{pack.name} r{pack.revision}"
            log.warning(
                "%s forbids local overlays: enforcing it without this sidecar's rules",
                self.forbidden_by,
            )
            return pack
        self.forbidden_by = None
        vocabulary = {
            k: v for k, v in pack.document.items() if k in ("pack", "detectors", "lexicons")
        }
        try:
            rules = parse_document({**vocabulary, "policies": self._renamed()}).rules
        except DocumentError as exc:
            raise PackError(
                f"this sidecar's overlay cannot be read against {pack.name}: {exc}"
            ) from exc
        origin = {**(pack.origin or {}), "overlay": self.digest}
        return dataclasses.replace(pack, rules=pack.rules + rules, origin=origin)

    def _renamed(self) -> list[Any]:
        return [_renamed(index, rule) for index, rule in enumerate(self.policies)]

    def status(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "rules": len(self.policies),
            "forbidden_by": self.forbidden_by,
        }


def _renamed(index: int, rule: Any) -> Any:
    """The rule as records name it: `local/<name>`, never a region rule's name."""
    if isinstance(rule, dict):
        return {**rule, "name": f"local/{rule.get('name') or f'rule-{index}'}"}
    return rule
