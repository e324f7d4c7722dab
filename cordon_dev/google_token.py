"""A mock of Google's OAuth token endpoint (`oauth2.googleapis.com/token`), in raw ASGI.

It takes the `jwt-bearer` grant a service-account key makes (what
`gateway.upstream.google_auth` posts) and answers an access token, recording each
token it hands out so a mock Vertex AI can accept exactly those. It has no public key
to check the assertion's signature with, so it checks only that the assertion is a
well-formed RS256 JWT with an audience and a scope. Refusals are in Google's shape:
400 with `error` and `error_description`.
"""

from __future__ import annotations

import json
import secrets
from typing import Any
from urllib.parse import parse_qs

import jwt

from cordon_dev.mock_asgi import Receive, Send, body, respond

__all__ = ["GRANT_TYPE", "serve_token", "service_account_key"]

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"


def service_account_key(
    token_uri: str, key_id: str = "k1", email: str = "gateway@cordon-test.iam.gserviceaccount.com"
) -> tuple[str, Any]:
    """A service-account key file's text, as Google issues it, with a fresh RSA key
    whose tokens come from `token_uri`; and its public key (to verify assertions)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    document = {
        "type": "service_account",
        "project_id": "cordon-test",
        "private_key_id": key_id,
        "private_key": pem,
        "client_email": email,
        "client_id": "1234567890",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
    }
    return json.dumps(document), private.public_key()


async def serve_token(receive: Receive, send: Send, issued: set[str]) -> None:
    """Answer one token request (the ASGI request's body is read from `receive`);
    a token handed out is added to `issued`."""
    try:
        form = parse_qs((await body(receive)).decode(), strict_parsing=True)
    except (UnicodeDecodeError, ValueError):
        form = {}
    grant_type = form.get("grant_type", [""])[0]
    if grant_type != GRANT_TYPE:
        await _refuse(send, "unsupported_grant_type", "Invalid grant_type: " + grant_type[:100])
        return
    assertion = form.get("assertion", [""])[0]
    problem = _problem(assertion)
    if problem:
        await _refuse(send, "invalid_grant", problem)
        return
    token = "ya29.mock-" + secrets.token_urlsafe(32)
    issued.add(token)
    answer = {"access_token": token, "expires_in": 3600, "token_type": "Bearer"}
    await respond(send, 200, json.dumps(answer).encode())


def _problem(assertion: str) -> str | None:
    """What is wrong with the assertion, or None (its signature is not checked)."""
    if not assertion:
        return "Missing required parameter: assertion"
    try:
        header = jwt.get_unverified_header(assertion)
        claims: dict[str, Any] = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError:
        return "Invalid JWT: not a well-formed JWT"
    if header.get("alg") != "RS256":
        return "Invalid JWT: the algorithm must be RS256"
    for name in ("iss", "aud", "scope"):
        if not isinstance(claims.get(name), str) or not claims[name]:
            return f"Invalid JWT: no {name} claim"
    iat, exp = claims.get("iat"), claims.get("exp")
    if not isinstance(iat, int) or not isinstance(exp, int) or not 0 < exp - iat <= 3600:
        return "Invalid JWT: iat and exp must be integers at most an hour apart"
    return None


async def _refuse(send: Send, error: str, description: str) -> None:
    answer = {"error": error, "error_description": description}
    await respond(send, 400, json.dumps(answer).encode())
