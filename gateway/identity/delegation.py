"""Verify signed delegation tokens (JWT, EdDSA or ES256) from configured issuers.

`exp` is required; `nbf` and `aud` are checked; the issuer's key is chosen by the
token's `iss` and `kid`. Claims: `sub` is the natural person; the agent is `agent`,
else `act.sub`, else `azp`; roles from `roles`; scopes from `scope` (space
separated) or `scopes`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cordon.errors import AuthError, ConfigError
from gateway.identity.callers import Identity, TokenVerifier
from gateway.identity.refusals import jwt_refusal

ALGORITHMS = ("EdDSA", "ES256")
LEEWAY_S = 30


@dataclass(frozen=True)
class IssuerKey:
    kid: str | None
    public_key_pem: str


@dataclass(frozen=True)
class Issuer:
    issuer: str
    audience: str
    keys: tuple[IssuerKey, ...]


class DelegationVerifier(TokenVerifier):
    def __init__(self, issuers: Iterable[Issuer]) -> None:
        self._issuers = {i.issuer: i for i in issuers}
        self._keys: dict[tuple[str, str | None], Any] = {}
        for issuer in self._issuers.values():
            for key in issuer.keys:
                try:
                    self._keys[(issuer.issuer, key.kid)] = _load_pem(key.public_key_pem)
                except ValueError as exc:
                    raise ConfigError(f"issuer {issuer.issuer}: unreadable public key") from exc

    def verify(self, token: str) -> Identity:
        import jwt  # on first use: a replica or sidecar without delegation issuers never loads it

        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise AuthError("malformed delegation token") from exc
        issuer = self._issuers.get(str(unverified.get("iss")))
        if issuer is None:
            raise AuthError("delegation token from an unknown issuer")
        key = self._keys.get((issuer.issuer, header.get("kid"))) or self._keys.get(
            (issuer.issuer, None)
        )
        if key is None:
            raise AuthError("delegation token signed with an unknown key")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=list(ALGORITHMS),
                audience=issuer.audience,
                issuer=issuer.issuer,
                leeway=LEEWAY_S,
                options={"require": ["exp", "sub", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            raise jwt_refusal(exc, "delegation") from exc
        return _identity(claims)


def _load_pem(pem: str) -> Any:
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    return load_pem_public_key(pem.encode())


def _identity(claims: dict[str, Any]) -> Identity:
    act = claims.get("act")
    act = act if isinstance(act, dict) else {}
    agent = claims.get("agent") or act.get("sub") or claims.get("azp")
    if not isinstance(agent, str) or not agent:
        raise AuthError("delegation token names no agent (agent, act.sub or azp)")
    scope = claims.get("scope")
    scopes = scope.split() if isinstance(scope, str) else claims.get("scopes") or []
    roles = claims.get("roles") or []
    if not isinstance(scopes, list) or not isinstance(roles, list):
        raise AuthError("delegation token's roles and scopes must be lists")
    identity = Identity(
        agent=agent,
        roles=tuple(str(r) for r in roles),
        scopes=tuple(str(s) for s in scopes),
        person=str(claims["sub"]),
        method="delegation",
    )
    _require_utf8(identity)
    return identity


def _require_utf8(identity: Identity) -> None:
    """Every name lands in the signed record: one that is not valid Unicode (a lone
    surrogate, which the standard library's JSON reader lets through) is refused now,
    before a record could fail to encode."""
    try:
        for name in (identity.agent, identity.person or "", *identity.roles, *identity.scopes):
            name.encode()
    except UnicodeEncodeError as exc:
        raise AuthError("delegation token names hold invalid Unicode") from exc
