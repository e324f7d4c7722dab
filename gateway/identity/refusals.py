"""What a caller is told when a signed token it sent is refused: the reason in words,
never the token. Delegation and workload tokens share it, so the same fault reads the
same whichever kind of token carried it."""

from __future__ import annotations

from cordon.errors import AuthError

__all__ = ["jwt_refusal"]


# PyJWT's refusals, by class name, and what the caller reads for each.
REASONS = (
    ("ExpiredSignatureError", "has expired"),
    ("ImmatureSignatureError", "is not valid yet"),
    ("InvalidAudienceError", "is for another audience"),
    ("InvalidIssuerError", "from an unknown issuer"),
    ("InvalidSignatureError", "'s signature does not verify"),
)


def jwt_refusal(exc: Exception, kind: str) -> AuthError:
    """The `AuthError` (401) for PyJWT's refusal `exc` of a `kind` token."""
    import jwt  # on first use, as its callers import it

    if isinstance(exc, jwt.MissingRequiredClaimError):
        return AuthError(f"{kind} token lacks the {exc.claim} claim")
    for name, reason in REASONS:
        if isinstance(exc, getattr(jwt, name)):
            joint = "" if reason.startswith("'") else " "
            return AuthError(f"{kind} token{joint}{reason}")
    return AuthError(f"{kind} token rejected: {exc}")
