"""What a caller is told when a signed token it sent is refused: the reason in words,
never the token. Delegation and workload tokens share it, so the same fault reads the
same whichever kind of token carried it."""

from __future__ import annotations

from cordon.errors import AuthError

__all__ = ["jwt_refusal"]


def jwt_refusal(exc: Exception, kind: str) -> AuthError:
    """The `AuthError` (401) for PyJWT's refusal `exc` of a `kind` token."""
    import jwt  # on first use, as its callers import it

    if isinstance(exc, jwt.ExpiredSignatureError):
        return AuthError(f"{kind} token has expired")
    if isinstance(exc, jwt.ImmatureSignatureError):
        return AuthError(f"{kind} token is not valid yet")
    if isinstance(exc, jwt.InvalidAudienceError):
        return AuthError(f"{kind} token is for another audience")
    if isinstance(exc, jwt.InvalidIssuerError):
        return AuthError(f"{kind} token from an unknown issuer")
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return AuthError(f"{kind} token lacks the {exc.claim} claim")
    if isinstance(exc, jwt.InvalidSignatureError):
        return AuthError(f"{kind} token's signature does not verify")
    return AuthError(f"{kind} token rejected: {exc}")
