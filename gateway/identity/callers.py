"""Who is calling: a gateway API key (a service identity) or a signed delegation token.

API keys are looked up by their SHA-256, so the table never holds what a caller
sent. A delegation token is a JWT (EdDSA or ES256) from a configured issuer naming
the natural person (`sub`), the agent acting for them, roles and scopes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from cordon.errors import AuthError


@dataclass(frozen=True)
class Identity:
    agent: str
    roles: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()
    person: str | None = None
    method: str = "api_key"


class TokenVerifier:
    """Anything that turns a delegation token into an Identity (gateway.identity.delegation)."""

    def verify(self, token: str) -> Identity:
        raise NotImplementedError


class Authenticator:
    def __init__(self, keys: Mapping[str, Identity], tokens: TokenVerifier | None = None) -> None:
        self._by_digest = {_digest(key): identity for key, identity in keys.items()}
        self._tokens = tokens

    def authenticate(self, authorization: str | None, x_api_key: str | None) -> Identity:
        """OpenAI clients send `Authorization: Bearer`, Anthropic ones `x-api-key`."""
        token = x_api_key
        if authorization:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() != "bearer" or not value:
                raise AuthError("Authorization header must be 'Bearer <key>'")
            token = value.strip()
        if not token:
            raise AuthError("missing API key: send 'Authorization: Bearer <key>'")
        identity = self._by_digest.get(_digest(token))
        if identity is not None:
            return identity
        if self._tokens is not None and token.count(".") == 2:
            return self._tokens.verify(token)
        raise AuthError("invalid API key")


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()
