"""Who is calling: a gateway API key (a service identity), a signed delegation token,
or a workload token.

API keys are looked up by their SHA-256, so the table never holds what a caller
sent. A delegation token is a JWT (EdDSA or ES256) from a configured issuer naming
the natural person (`sub`), the agent acting for them, roles and scopes. A workload
token is a JWT from the workload's own platform (Kubernetes, SPIFFE;
`gateway.identity.workload`) that the active pack maps to an agent; it carries no
person, so the caller may add one with a delegation token in `x-cordon-delegation`,
accepted only if it names the same agent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Protocol

from cordon.errors import AuthError

__all__ = ["Authenticator", "Identity", "TokenVerifier", "WorkloadTokens"]


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


class WorkloadTokens(Protocol):
    """Workload tokens (gateway.identity.workload.WorkloadVerifier)."""

    def attempt(self, token: str) -> Identity | None:
        """None if the token names no workload issuer configured here."""

    def verify(self, token: str) -> Identity: ...


class Authenticator:
    def __init__(
        self,
        keys: Mapping[str, Identity],
        tokens: TokenVerifier | None = None,
        workloads: WorkloadTokens | None = None,
    ) -> None:
        self._by_digest = {_digest(key): identity for key, identity in keys.items()}
        self._tokens = tokens
        self._workloads = workloads

    def authenticate(
        self, authorization: str | None, x_api_key: str | None, delegation: str | None = None
    ) -> Identity:
        """OpenAI clients send `Authorization: Bearer`, Anthropic ones `x-api-key`;
        `delegation` is the `x-cordon-delegation` header, for a workload's person."""
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
            identity = self._from_token(token)
        # An empty header claims nothing: as if it were not sent.
        return self._on_behalf(identity, delegation) if delegation else identity

    def of_request(self, headers: Mapping[str, str]) -> Identity:
        """`authenticate` with a request's own headers (lower-cased names)."""
        return self.authenticate(
            headers.get("authorization"),
            headers.get("x-api-key"),
            headers.get("x-cordon-delegation"),
        )

    def _from_token(self, token: str) -> Identity:
        """A JWT naming a workload issuer is a workload token; any other, a delegation."""
        if token.count(".") != 2:
            raise AuthError("invalid API key")
        if self._workloads is not None:
            identity = self._workloads.attempt(token)
            if identity is not None:
                return identity
        if self._tokens is not None:
            return self._tokens.verify(token)
        if self._workloads is not None:
            return self._workloads.verify(token)  # says why it is no workload token
        raise AuthError("invalid API key")

    def _on_behalf(self, caller: Identity, delegation: str) -> Identity:
        """The workload, acting for the person the delegation token names: the token
        must be for the very agent the pack maps the workload to."""
        if caller.method != "workload":
            raise AuthError("x-cordon-delegation is accepted only with a workload token")
        if self._tokens is None:
            raise AuthError("x-cordon-delegation: this gateway trusts no delegation issuer")
        delegated = self._tokens.verify(delegation.strip())
        if delegated.agent != caller.agent:
            raise AuthError("the delegation token is for another agent than the workload's")
        return replace(caller, person=delegated.person)


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()
