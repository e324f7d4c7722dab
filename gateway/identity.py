"""Authenticate callers: gateway API keys mapped to service identities.

Keys are looked up by their SHA-256, so the table never holds what a caller sent
and a lookup costs the same whatever key arrives.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from gateway.errors import AuthError
from gateway.settings import ApiKeyIdentity


class ApiKeyAuthenticator:
    def __init__(self, keys: Mapping[str, ApiKeyIdentity]) -> None:
        self._by_digest = {_digest(key): identity for key, identity in keys.items()}

    def authenticate(self, authorization: str | None, x_api_key: str | None) -> ApiKeyIdentity:
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
        if identity is None:
            raise AuthError("invalid API key")
        return identity


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()
