"""Who is calling: gateway API keys (service identities) and signed delegation tokens
naming the natural person, the agent, roles and scopes."""

from gateway.identity import callers, delegation
from gateway.identity.callers import Authenticator, Identity, TokenVerifier
from gateway.identity.delegation import DelegationVerifier, Issuer, IssuerKey

__all__ = [
    "Authenticator",
    "DelegationVerifier",
    "Identity",
    "Issuer",
    "IssuerKey",
    "TokenVerifier",
    "callers",
    "delegation",
]
