"""Bearer tokens for Cordon's HTTP APIs: who may call, in which role, for which regions.

Roles: `auditor` (a regional audit API, for the regions named; the central view),
`sre` (the central view), `admin` (a replica's admin surface) and `policy` (a
replica's signed active pack and nothing else: what an in-process SDK reads). A settings file holds
only each token's SHA-256, so reading it gives nobody access. A presented token is
hashed and compared with every stored digest in constant time.

Settings shape: `[{"name": "...", "sha256": "<hex>", "roles": ["auditor"],
"regions": ["eu-west"]}]`; `"regions": ["*"]` is every region.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cordon.errors import AuthError, ConfigError, ForbiddenError

__all__ = ["ROLES", "Grant", "Tokens", "digest", "grant_settings", "new_token"]

ROLES = ("auditor", "sre", "admin", "policy")
EVERY_REGION = "*"


@dataclass(frozen=True)
class Grant:
    """What one token may do; `name` is who it was issued to, for access records."""

    name: str
    roles: frozenset[str]
    regions: frozenset[str]

    def may(self, roles: Iterable[str], region: str | None) -> bool:
        in_region = region is None or EVERY_REGION in self.regions or region in self.regions
        return in_region and not self.roles.isdisjoint(roles)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "cordon_" + secrets.token_urlsafe(32)


def grant_settings(
    name: str, token: str, roles: Iterable[str], regions: Iterable[str]
) -> dict[str, Any]:
    """The settings entry for `token` (its digest, never the token)."""
    return {"name": name, "sha256": digest(token), "roles": list(roles), "regions": list(regions)}


class Tokens:
    def __init__(self, grants: Mapping[str, Grant]) -> None:
        self._grants = dict(grants)  # digest -> grant

    @classmethod
    def from_settings(cls, raw: Any) -> Tokens:
        if not isinstance(raw, list):
            raise ConfigError("tokens must be a list of {name, sha256, roles, regions}")
        grants = {}
        for entry in raw:
            try:
                roles = frozenset(str(r) for r in entry["roles"])
                grant = Grant(str(entry["name"]), roles, frozenset(map(str, entry["regions"])))
                stored = str(entry["sha256"]).lower()
                bytes.fromhex(stored)
            except (KeyError, TypeError, ValueError) as exc:
                raise ConfigError(f"token entry {entry!r:.60}: {exc}") from exc
            if len(stored) != 64 or not roles <= set(ROLES):
                raise ConfigError(f"token {grant.name}: a sha256 hex digest and roles {ROLES}")
            grants[stored] = grant
        return cls(grants)

    def identify(self, authorization: str | None) -> Grant | None:
        """The grant of an `Authorization: Bearer <token>` header, if it is one of ours."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        presented = digest(token.strip())
        found = None
        for stored, grant in self._grants.items():  # every one, whichever matches
            if hmac.compare_digest(presented, stored):
                found = grant
        return found

    def authorize(
        self, authorization: str | None, roles: Iterable[str], region: str | None
    ) -> Grant:
        """The caller's grant; `AuthError` (401) without a known token, `ForbiddenError`
        (403) when it does not carry one of `roles` for `region`."""
        wanted = tuple(roles)
        grant = self.identify(authorization)
        if grant is None:
            raise AuthError("a bearer token is required (Authorization: Bearer <token>)")
        if not grant.may(wanted, region):
            where = f" for {region}" if region else ""
            raise ForbiddenError(
                f"{grant.name} may not do this: needs {' or '.join(wanted)}{where}"
            )
        return grant
