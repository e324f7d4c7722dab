"""Signed delegation tokens: the natural person, the agent, roles and scopes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import openai
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from cordon_dev.procs import wait_for_http
from cordon_dev.stack import DevStack
from tests.helpers import sdk_chat, stored_record
from tests.mcp_agent import agent_session, initialize

ISSUER = "https://idp.example.test"
AUDIENCE = "cordon-eu-west"
ED_KEY = ed25519.Ed25519PrivateKey.generate()
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def _pem(key: Any) -> str:
    return key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()


@pytest.fixture(scope="module")
def gateway(stack: DevStack) -> Iterator[str]:
    url = stack.start_gateway(
        "eu-west",
        "gw-delegation",
        stack.endpoints.mock_provider,
        extra={
            "delegation_issuers": [
                {
                    "issuer": ISSUER,
                    "audience": AUDIENCE,
                    "keys": [
                        {"kid": "ed-1", "public_key_pem": _pem(ED_KEY)},
                        {"kid": "ec-1", "public_key_pem": _pem(EC_KEY)},
                    ],
                }
            ]
        },
    )
    wait_for_http(url + "/readyz", 30, stack.processes["gateway-eu-west-gw-delegation"].proc)
    yield url
    stack.processes["gateway-eu-west-gw-delegation"].stop()


def token(key: Any = ED_KEY, kid: str = "ed-1", alg: str = "EdDSA", **overrides: Any) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "person:alice",
        "act": {"sub": "agent:expense-bot"},
        "roles": ["finance-analyst"],
        "scope": "chat:write models:read",
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        **overrides,
    }
    return jwt.encode(
        {k: v for k, v in claims.items() if v is not None}, key, algorithm=alg, headers={"kid": kid}
    )


def ask(gateway: str, bearer: str) -> Any:
    return sdk_chat(gateway, bearer, "on behalf of alice")


@pytest.mark.parametrize(
    ("key", "kid", "alg"), [(ED_KEY, "ed-1", "EdDSA"), (EC_KEY, "ec-1", "ES256")]
)
async def test_a_valid_token_puts_the_person_and_agent_in_the_record(
    gateway: str, endpoints: dict[str, Any], key: Any, kid: str, alg: str
) -> None:
    raw = ask(gateway, token(key, kid, alg))
    assert raw.parse().choices[0].message.content == "echo: on behalf of alice"
    record = await stored_record(endpoints, "eu-west", int(raw.headers["x-cordon-record-seq"]))
    assert record["person"] == "person:alice" and record["agent"] == "agent:expense-bot"
    assert record["roles"] == ["finance-analyst"]
    assert record["scopes"] == ["chat:write", "models:read"]
    assert record["identity_method"] == "delegation"


@pytest.mark.parametrize(
    ("bearer", "reason"),
    [
        (lambda: token(exp=int(time.time()) - 120), "expired"),
        (lambda: token(nbf=int(time.time()) + 600), "not valid yet"),
        (lambda: token(aud="cordon-us-east"), "another audience"),
        (lambda: token(iss="https://evil.example"), "unknown issuer"),
        (lambda: token(key=ed25519.Ed25519PrivateKey.generate()), "does not verify"),
        (lambda: token(exp=None), "lacks the exp claim"),
        (lambda: token(act=None), "names no agent"),
        (lambda: "eyJhbGciOi.not-a.token", "malformed"),
        # Signed by the trusted issuer, yet unfit for a record: each used to be a 500
        # (and the lone surrogate a replica_seq spent with no record).
        (lambda: token(roles=5), "must be lists"),
        (lambda: token(sub="person:\ud800"), "invalid Unicode"),
        (lambda: token(act={"sub": "agent:\udc00"}), "invalid Unicode"),
    ],
    ids=[
        "expired",
        "not-yet",
        "audience",
        "issuer",
        "forged",
        "no-exp",
        "no-agent",
        "malformed",
        "roles-not-a-list",
        "person-lone-surrogate",
        "agent-lone-surrogate",
    ],
)
def test_bad_tokens_get_401(gateway: str, bearer: Any, reason: str) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        ask(gateway, bearer())
    assert reason in caught.value.message


def test_api_keys_still_work_beside_tokens(gateway: str, endpoints: dict[str, Any]) -> None:
    assert ask(gateway, endpoints["api_key"]).parse().choices[0].message.content.startswith("echo:")


@pytest.mark.usefixtures("fronted")  # other tests publish packs of their own
async def test_the_mcp_endpoint_takes_the_same_tokens_and_names_their_issuer(
    gateway: str, endpoints: dict[str, Any]
) -> None:
    """An agent's tool calls: the region's delegation tokens work; a token for another
    region (its audience) is refused with the challenge MCP clients follow, whose
    metadata names the issuer this region trusts."""
    async with agent_session(
        f"{gateway}/mcp/dev-tools", {"authorization": f"Bearer {token()}"}
    ) as agent:
        echoed = await agent.call_tool("echo", {"text": "on behalf of alice"})
    assert echoed.content[0].text == "on behalf of alice"  # type: ignore[union-attr]
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    elsewhere = {"authorization": f"Bearer {token(aud='cordon-us-east')}"}
    refused = httpx.post(f"{gateway}/mcp/dev-tools", json=body, headers=elsewhere)
    assert refused.status_code == 401 and "another audience" in refused.json()["error"]["message"]
    challenge = refused.headers["www-authenticate"]
    assert (
        challenge.startswith('Bearer resource_metadata="') and 'error="invalid_token"' in challenge
    )
    metadata = httpx.get(challenge.split('"')[1]).json()
    assert metadata["resource"] == f"{gateway}/mcp/dev-tools"
    assert metadata["authorization_servers"] == [ISSUER]


@pytest.mark.usefixtures("fronted")  # other tests publish packs of their own
def test_a_session_opened_on_one_replica_is_served_by_another(
    gateway: str, endpoints: dict[str, Any]
) -> None:
    """No affinity needed: the session lives in its id, which every replica of the
    region reads (here eu-west's first replica and this module's second one)."""
    first = endpoints["gateways"]["eu-west"]
    headers = {
        "authorization": f"Bearer {endpoints['api_key']}",
        "accept": "application/json, text/event-stream",
    }
    opened = httpx.post(f"{first}/mcp/dev-tools", json=initialize("roaming-agent"), headers=headers)
    session = {**headers, "mcp-session-id": opened.headers["mcp-session-id"]}
    call = {"name": "echo", "arguments": {"text": "roamed"}}
    served = httpx.post(
        f"{gateway}/mcp/dev-tools",
        json={"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": call},
        headers={**session, "mcp-protocol-version": "2025-06-18"},
    )
    assert served.status_code == 200 and served.json()["result"]["content"][0]["text"] == "roamed"
    with httpx.stream("GET", f"{gateway}/mcp/dev-tools", headers=session) as stream:
        assert stream.status_code == 200  # its stream for list changes, on this replica
