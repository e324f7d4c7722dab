"""Vertex AI access tokens from a service-account key, against a real loopback token
endpoint that checks each assertion's signature with the key's public half: fetched
once and cached, refreshed near expiry, a new one for a rotated key, one request for
concurrent callers, and errors that never quote the key or a token."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from cordon.errors import PackError, UpstreamError
from cordon_dev.google_token import serve_token, service_account_key
from cordon_dev.inprocess import serve_in_loop
from cordon_dev.mock_asgi import Message, Receive, Scope, Send, body, respond
from cordon_dev.procs import free_port
from gateway.upstream.google_auth import (
    GRANT_TYPE,
    SCOPE,
    ServiceAccountTokens,
    is_service_account,
)
from gateway.upstream.httpclient import HttpClient

EMAIL = "cordon@project-1.iam.gserviceaccount.com"
START = 1_900_000_000.0


def make_key(key_id: str, token_uri: str) -> tuple[str, rsa.RSAPublicKey]:
    """A service-account key file's text, as Google issues it, and its public key."""
    text, public = service_account_key(token_uri, key_id, EMAIL)
    assert isinstance(public, rsa.RSAPublicKey)
    return text, public


@dataclass
class TokenEndpoint:
    """Google's token endpoint as the tests see it: it verifies each assertion against
    the public keys it knows (by `kid`), then lets the dev mock answer."""

    url: str = ""
    public_keys: dict[str, rsa.RSAPublicKey] = field(default_factory=dict)
    issued: set[str] = field(default_factory=set)
    assertions: list[dict[str, Any]] = field(default_factory=list)
    delay: float = 0.0

    @property
    def token_uri(self) -> str:
        return self.url + "/token"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http" and scope["method"] == "POST"
        assert scope["path"] == "/token"
        headers = dict(scope["headers"])
        assert headers[b"content-type"] == b"application/x-www-form-urlencoded"
        raw = await body(receive)
        form = parse_qs(raw.decode())
        assert form["grant_type"] == [GRANT_TYPE]
        assertion = form["assertion"][0]
        header = jwt.get_unverified_header(assertion)
        public = self.public_keys.get(header.get("kid", ""))
        if public is None:
            message = {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
            await respond(send, 400, json.dumps(message).encode())
            return
        claims = jwt.decode(
            assertion,
            public,
            algorithms=["RS256"],
            audience=self.token_uri,
            options={"verify_exp": False, "verify_iat": False},  # the tests' clock is fake
        )
        assert header["alg"] == "RS256" and header["typ"] == "JWT"
        assert claims["iss"] == EMAIL and claims["scope"] == SCOPE and "sub" not in claims
        assert claims["exp"] - claims["iat"] == 3600
        self.assertions.append(claims)
        if self.delay:
            await asyncio.sleep(self.delay)

        async def replay() -> Message:
            return {"type": "http.request", "body": raw, "more_body": False}

        await serve_token(replay, send, self.issued)


@pytest.fixture
async def endpoint() -> AsyncIterator[TokenEndpoint]:
    server = TokenEndpoint()
    async with serve_in_loop(server) as url:
        server.url = url
        yield server


@pytest.fixture
async def http() -> AsyncIterator[HttpClient]:
    client = HttpClient()
    yield client
    client.close()


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


def keyed(endpoint: TokenEndpoint, key_id: str) -> str:
    text, public = make_key(key_id, endpoint.token_uri)
    endpoint.public_keys[key_id] = public
    return text


async def test_a_token_is_fetched_once_and_cached(
    endpoint: TokenEndpoint, http: HttpClient
) -> None:
    clock = Clock()
    tokens = ServiceAccountTokens(http, clock)
    key = keyed(endpoint, "key-1")
    first = await tokens.token(key)
    clock.now += 60
    assert await tokens.token(key) == first
    assert first in endpoint.issued and len(endpoint.assertions) == 1
    assert endpoint.assertions[0]["iat"] == int(START)
    assert first not in repr(tokens) and "PRIVATE KEY" not in repr(tokens)


async def test_a_token_is_refreshed_five_minutes_before_it_expires(
    endpoint: TokenEndpoint, http: HttpClient
) -> None:
    clock = Clock()
    tokens = ServiceAccountTokens(http, clock)
    key = keyed(endpoint, "key-1")
    first = await tokens.token(key)
    clock.now = START + 3600 - 301  # 5 min 1 s left: still good
    assert await tokens.token(key) == first
    clock.now = START + 3600 - 299  # less than five minutes left
    second = await tokens.token(key)
    assert second != first and len(endpoint.assertions) == 2
    assert endpoint.assertions[1]["iat"] == int(clock.now)
    assert await tokens.token(key) == second and len(endpoint.assertions) == 2


async def test_a_rotated_key_gets_a_token_of_its_own(
    endpoint: TokenEndpoint, http: HttpClient
) -> None:
    tokens = ServiceAccountTokens(http, Clock())
    old, new = keyed(endpoint, "key-1"), keyed(endpoint, "key-2")
    before = await tokens.token(old)
    after = await tokens.token(new)
    assert after != before and len(endpoint.assertions) == 2
    assert await tokens.token(new) == after and len(endpoint.assertions) == 2


async def test_concurrent_callers_share_one_request(
    endpoint: TokenEndpoint, http: HttpClient
) -> None:
    endpoint.delay = 0.2
    tokens = ServiceAccountTokens(http, Clock())
    key = keyed(endpoint, "key-1")
    got = await asyncio.gather(*(tokens.token(key) for _ in range(8)))
    assert len(set(got)) == 1 and len(endpoint.assertions) == 1


@pytest.mark.parametrize(
    "text",
    [
        "AIzaSyD-an-api-key-not-a-file-0123456789",
        '{"type": "authorized_user", "refresh_token": "1//secret-refresh-token"}',
        '{"type": "service_account", "client_email": "a@b.c", "token_uri": '
        '"https://oauth2.googleapis.com/token", "private_key": '
        '"-----BEGIN PRIVATE KEY-----\\nc2VjcmV0LWJ5dGVz\\n-----END PRIVATE KEY-----\\n"}',
    ],
)
async def test_a_secret_that_is_no_service_account_key_is_a_pack_error_quoting_nothing(
    http: HttpClient, text: str
) -> None:
    tokens = ServiceAccountTokens(http, Clock())
    with pytest.raises(PackError) as caught:
        await tokens.token(text)
    message = str(caught.value)
    assert "service" in message
    for secret in ("AIzaSy", "secret-refresh-token", "c2VjcmV0LWJ5dGVz"):
        assert secret not in message
    # No chained error (a parser's message could quote the text) shows in a traceback.
    error = caught.value
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)


def test_is_service_account_tells_a_key_file_from_an_api_key() -> None:
    assert is_service_account(make_key("k", "https://oauth2.googleapis.com/token")[0])
    assert not is_service_account("AIzaSyD-an-api-key")
    assert not is_service_account('{"type": "authorized_user"}')
    assert not is_service_account("{not json")
    assert not is_service_account("[]")


async def test_a_refusal_is_an_upstream_error_with_the_endpoints_words(
    endpoint: TokenEndpoint, http: HttpClient
) -> None:
    tokens = ServiceAccountTokens(http, Clock())
    key, _ = make_key("unknown-to-google", endpoint.token_uri)
    with pytest.raises(UpstreamError) as caught:
        await tokens.token(key)
    message = str(caught.value)
    assert "400" in message and "invalid_grant" in message
    assert "Invalid JWT Signature." in message and endpoint.token_uri in message
    assert "PRIVATE KEY" not in message and json.loads(key)["private_key"][40:80] not in message
    assert not endpoint.issued


async def test_an_unreachable_endpoint_is_an_upstream_error(http: HttpClient) -> None:
    tokens = ServiceAccountTokens(http, Clock())
    key, _ = make_key("k", f"http://127.0.0.1:{free_port('127.0.0.1')}/token")
    with pytest.raises(UpstreamError, match="token endpoint"):
        await tokens.token(key)


async def test_the_dev_mock_refuses_a_wrong_grant_and_a_malformed_assertion() -> None:
    issued: set[str] = set()

    async def ask(form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        async def receive() -> Message:
            return {"type": "http.request", "body": urlencode(form).encode()}

        sent: list[Message] = []

        async def send(message: Message) -> None:
            sent.append(message)

        await serve_token(receive, send, issued)
        return sent[0]["status"], json.loads(sent[1]["body"])

    status, answer = await ask({"grant_type": "client_credentials", "assertion": "x"})
    assert (status, answer["error"]) == (400, "unsupported_grant_type")
    hs256 = jwt.encode({"aud": "a", "scope": SCOPE, "iss": EMAIL}, "k" * 32, algorithm="HS256")
    for assertion in ("not.a.jwt", hs256, ""):
        status, answer = await ask({"grant_type": GRANT_TYPE, "assertion": assertion})
        assert (status, answer["error"]) == (400, "invalid_grant")
    assert not issued
