"""Workload tokens (Kubernetes projected service-account tokens, SPIFFE JWT-SVIDs)
verified against a JWKS file or URL, mapped to an agent by the active pack; a
delegation token in `x-cordon-delegation` adds the natural person."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anthropic
import httpx
import httpx2
import jwt
import openai
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from cordon.errors import AuthError, ConfigError, DocumentError
from cordon.packs import parse_document, workloads
from cordon.packs.lint import check
from cordon_dev.inprocess import InProcessGateway, in_process_gateway, wait_for
from gateway.identity import Authenticator, DelegationVerifier, Identity, Issuer, IssuerKey
from gateway.identity.workload import MAX_JWKS_BYTES, WorkloadIssuer, WorkloadVerifier
from gateway.settings import from_mapping

pytestmark = pytest.mark.fast

K8S_ISSUER = "https://kubernetes.default.svc.cluster.local"
AUDIENCE = "cordon-eu-west"
RESEARCHER = "system:serviceaccount:agents:researcher"
PLANNER = "spiffe://example.org/ns/agents/sa/planner"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_KEY_2 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
EC384_KEY = ec.generate_private_key(ec.SECP384R1())
IDP_KEY = ed25519.Ed25519PrivateKey.generate()  # the delegation issuer's
IDP = "https://idp.example.test"
PACK_WORKLOADS = [
    {"subject": RESEARCHER, "agent": "researcher", "roles": ["developer"], "scopes": ["chat"]},
    {"subject": "spiffe://example.org/ns/agents/*", "agent": "planner", "roles": ["analyst"]},
]
MAPPING = workloads.parse(PACK_WORKLOADS)


def public_jwk(key: Any, kid: str) -> dict[str, Any]:
    algorithm = RSAAlgorithm if isinstance(key, rsa.RSAPrivateKey) else ECAlgorithm
    jwk: dict[str, Any] = algorithm.to_jwk(key.public_key(), as_dict=True)
    return {**jwk, "kid": kid, "use": "sig"}


def jwks(*keys: tuple[Any, str]) -> bytes:
    return json.dumps({"keys": [public_jwk(key, kid) for key, kid in keys]}).encode()


def _sign(claims: dict[str, Any], key: Any, kid: str | None, alg: str) -> str:
    headers = {"kid": kid} if kid else {}
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, key, alg, headers)


def k8s_token(
    key: Any = RSA_KEY, kid: str | None = "rsa-1", alg: str = "RS256", **overrides: Any
) -> str:
    now = int(time.time())
    claims = {
        "iss": K8S_ISSUER,
        "aud": [AUDIENCE],
        "sub": RESEARCHER,
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "kubernetes.io": {
            "namespace": "agents",
            "serviceaccount": {"name": "researcher", "uid": "5b1c"},
            "pod": {"name": "researcher-7d9", "uid": "91ab"},
        },
        **overrides,
    }
    return _sign(claims, key, kid, alg)


def svid(key: Any = EC_KEY, kid: str | None = "ec-1", alg: str = "ES256", **overrides: Any) -> str:
    now = int(time.time())
    claims = {"sub": PLANNER, "aud": AUDIENCE, "iat": now, "exp": now + 300, **overrides}
    return _sign(claims, key, kid, alg)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(claims_token: str, alg: str, secret: bytes | None = None) -> str:
    """The token's claims re-sent under `alg`: `none` (no signature) or an HMAC keyed
    with `secret` (the algorithm-confusion attack: a public key used as the secret)."""
    payload = claims_token.split(".")[1]
    head = _b64(json.dumps({"alg": alg, "kid": "rsa-1", "typ": "JWT"}).encode())
    if secret is None:
        return f"{head}.{payload}."
    digest = hmac.new(secret, f"{head}.{payload}".encode(), hashlib.sha256).digest()
    return f"{head}.{payload}.{_b64(digest)}"


def tampered() -> str:
    """A valid token's signature on other claims (another service account)."""
    head, _, signature = k8s_token().split(".")
    other = k8s_token(sub="system:serviceaccount:agents:admin").split(".")[1]
    return f"{head}.{other}.{signature}"


@dataclass
class JwksServer:
    """A JWKS over real loopback HTTP; `body` may be swapped while it serves."""

    body: bytes
    url: str = ""
    hits: int = 0
    _server: ThreadingHTTPServer | None = field(default=None, repr=False)


@pytest.fixture
def jwks_server() -> Iterator[JwksServer]:
    served = JwksServer(jwks((EC_KEY, "ec-1"), (RSA_KEY, "rsa-1")))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            served.hits += 1
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(served.body)))
            self.end_headers()
            self.wfile.write(served.body)

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    served.url = f"http://127.0.0.1:{server.server_address[1]}/keys"
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def write_jwks(path: Path, body: bytes) -> None:
    """As the kubelet rotates a projected file: a new file renamed over the old one."""
    fresh = path.with_suffix(".tmp")
    fresh.write_bytes(body)
    os.replace(fresh, path)


def k8s_issuer(path: Path) -> WorkloadIssuer:
    return WorkloadIssuer(K8S_ISSUER, AUDIENCE, jwks_file=path, kind="kubernetes")


def spiffe_issuer(url: str) -> WorkloadIssuer:
    return WorkloadIssuer(None, AUDIENCE, jwks_url=url, trust_domain="example.org", kind="spiffe")


@pytest.fixture
async def verifier(tmp_path: Path, jwks_server: JwksServer) -> WorkloadVerifier:
    path = tmp_path / "k8s-jwks.json"
    write_jwks(path, jwks((RSA_KEY, "rsa-1"), (EC_KEY, "ec-1")))
    built = WorkloadVerifier([k8s_issuer(path), spiffe_issuer(jwks_server.url)], lambda: MAPPING)
    await built.refresh()
    return built


def test_a_kubernetes_token_acts_as_the_agent_the_pack_maps_it_to(
    verifier: WorkloadVerifier,
) -> None:
    identity = verifier.verify(k8s_token())
    assert identity == Identity(
        agent="researcher", roles=("developer",), scopes=("chat",), method="workload"
    )
    assert verifier.verify(k8s_token(EC_KEY, "ec-1", "ES256")).agent == "researcher"


@pytest.mark.parametrize(
    ("key", "kid", "alg"),
    [(EC_KEY, "ec-1", "ES256"), (RSA_KEY, "rsa-1", "RS256"), (RSA_KEY, "rsa-1", "PS256")],
)
def test_a_spiffe_svid_is_mapped_by_a_glob(
    verifier: WorkloadVerifier, key: Any, kid: str, alg: str
) -> None:
    identity = verifier.verify(svid(key, kid, alg))
    assert (identity.agent, identity.roles, identity.scopes) == ("planner", ("analyst",), ())
    assert identity.method == "workload" and identity.person is None


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (lambda: k8s_token(exp=int(time.time()) - 120), "workload token has expired"),
        (lambda: k8s_token(nbf=int(time.time()) + 600), "not valid yet"),
        (lambda: k8s_token(aud=["cordon-us-east"]), "for another audience"),
        (lambda: svid(aud="cordon-us-east"), "for another audience"),
        (lambda: k8s_token(iss="https://evil.example"), "from an unknown issuer"),
        (lambda: svid(sub="spiffe://evil.example/ns/agents/sa/x"), "from an unknown issuer"),
        (lambda: k8s_token(kid="rsa-9"), "signed with an unknown key"),
        (lambda: svid(kid=None), "signed with an unknown key"),  # two keys: which one?
        (lambda: k8s_token(key=RSA_KEY_2), "signature does not verify"),
        (tampered, "signature does not verify"),
        (lambda: unsigned(k8s_token(), "none"), "algorithm is not one of"),
        (lambda: unsigned(k8s_token(), "HS256", _pem(RSA_KEY)), "algorithm is not one of"),
        (lambda: k8s_token(EC384_KEY, "ec-1", "ES384"), "algorithm is not one of"),
        (lambda: k8s_token(EC_KEY, "rsa-1", "ES256"), "does not fit its key"),
        (lambda: "eyJhbGciOi.not-a.token", "malformed workload token"),
        (lambda: k8s_token(exp=None), "lacks the exp claim"),
        (lambda: svid(exp=None), "lacks the exp claim"),
        (lambda: k8s_token(sub="researcher"), "not a Kubernetes service account"),
        (lambda: k8s_token(**{"kubernetes.io": None}), "lacks the kubernetes.io claim"),
        (
            lambda: k8s_token(**{"kubernetes.io": {"namespace": "ops"}}),
            "does not match its subject",
        ),
        (
            lambda: k8s_token(
                sub="system:serviceaccount:agents:intruder",
                **{"kubernetes.io": {"namespace": "agents"}},
            ),
            "workload system:serviceaccount:agents:intruder is not mapped to an agent "
            "by the active pack",
        ),
    ],
    ids=[
        "expired",
        "not-yet",
        "audience",
        "svid-audience",
        "issuer",
        "trust-domain",
        "unknown-kid",
        "no-kid-of-many",
        "forged",
        "tampered",
        "alg-none",
        "hs256-public-key",
        "es384-for-kubernetes",
        "alg-key-mismatch",
        "garbage",
        "no-exp",
        "svid-no-exp",
        "not-a-service-account",
        "no-kubernetes-claim",
        "kubernetes-claim-mismatch",
        "unmapped",
    ],
)
def test_bad_workload_tokens_are_refused(
    verifier: WorkloadVerifier, token: Callable[[], str], reason: str
) -> None:
    with pytest.raises(AuthError) as caught:
        verifier.verify(token())
    assert reason in str(caught.value) and caught.value.status == 401


def _pem(key: Any) -> bytes:
    return key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


def test_a_rotated_jwks_file_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    write_jwks(path, jwks((RSA_KEY, "rsa-1")))
    verifier = WorkloadVerifier([k8s_issuer(path)], lambda: MAPPING)
    assert verifier.verify(k8s_token()).agent == "researcher"
    with pytest.raises(AuthError, match="unknown key"):
        verifier.verify(k8s_token(RSA_KEY_2, "rsa-2"))
    write_jwks(path, jwks((RSA_KEY, "rsa-1"), (RSA_KEY_2, "rsa-2")))
    assert verifier.verify(k8s_token(RSA_KEY_2, "rsa-2")).agent == "researcher"
    path.write_text("{not json")  # half-written: the keys held stay
    assert verifier.verify(k8s_token(RSA_KEY_2, "rsa-2")).agent == "researcher"


async def test_an_unknown_kid_fetches_the_url_early_at_most_every_30_s(
    jwks_server: JwksServer,
) -> None:
    clock = Clock()
    verifier = WorkloadVerifier([spiffe_issuer(jwks_server.url)], lambda: MAPPING, clock)
    refreshing = asyncio.create_task(verifier.run())
    try:
        await wait_for(lambda: verifier.ready)
        assert jwks_server.hits == 1
        jwks_server.body = jwks((EC_KEY, "ec-1"), (RSA_KEY_2, "rsa-2"))
        clock.now += 31
        with pytest.raises(AuthError, match="unknown key"):  # refused now, fetched soon
            verifier.verify(svid(RSA_KEY_2, "rsa-2", "RS256"))
        await wait_for(lambda: jwks_server.hits == 2)
        await wait_for(lambda: _accepted(verifier, svid(RSA_KEY_2, "rsa-2", "RS256")))
        jwks_server.body = jwks((EC_KEY, "ec-1"), (RSA_KEY, "rsa-3"))
        for _ in range(3):  # within 30 s of the last fetch: no fetch at all
            with pytest.raises(AuthError, match="unknown key"):
                verifier.verify(svid(RSA_KEY, "rsa-3", "RS256"))
        await asyncio.sleep(0.1)
        assert jwks_server.hits == 2
        clock.now += 31
        with pytest.raises(AuthError, match="unknown key"):
            verifier.verify(svid(RSA_KEY, "rsa-3", "RS256"))
        await wait_for(lambda: _accepted(verifier, svid(RSA_KEY, "rsa-3", "RS256")))
        assert jwks_server.hits == 3
    finally:
        refreshing.cancel()


def _accepted(verifier: WorkloadVerifier, token: str) -> bool:
    try:
        verifier.verify(token)
    except AuthError:
        return False
    return True


async def test_an_oversized_or_broken_jwks_keeps_the_keys_held(jwks_server: JwksServer) -> None:
    verifier = WorkloadVerifier([spiffe_issuer(jwks_server.url)], lambda: MAPPING)
    await verifier.refresh()
    jwks_server.body = b" " * (MAX_JWKS_BYTES + 1)
    await verifier.refresh()
    jwks_server.body = b'{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}'  # no signing key
    await verifier.refresh()
    assert verifier.verify(svid()).agent == "planner"


def test_no_keys_yet_is_a_401_not_a_wait(jwks_server: JwksServer) -> None:
    verifier = WorkloadVerifier([spiffe_issuer(jwks_server.url)], lambda: MAPPING)
    assert not verifier.ready
    with pytest.raises(AuthError, match="unknown key"):
        verifier.verify(svid())


def test_the_mapping_is_the_active_packs(verifier: WorkloadVerifier, tmp_path: Path) -> None:
    active = {"map": MAPPING}
    path = tmp_path / "k8s-jwks.json"
    following = WorkloadVerifier([k8s_issuer(path)], lambda: active["map"])
    assert following.verify(k8s_token()).agent == "researcher"
    active["map"] = workloads.parse([{"subject": "system:serviceaccount:*", "agent": "any"}])
    assert following.verify(k8s_token()).agent == "any"
    active["map"] = workloads.NO_WORKLOADS
    with pytest.raises(AuthError, match="not mapped to an agent by the active pack"):
        following.verify(k8s_token())


# --- the authenticator: API keys, delegation tokens, workload tokens, and the person


def delegation(agent: str = "researcher", **overrides: Any) -> str:
    now = int(time.time())
    claims = {"iss": IDP, "aud": AUDIENCE, "sub": "person:alice", "agent": agent}
    claims |= {"iat": now, "exp": now + 300, **overrides}
    return jwt.encode(claims, IDP_KEY, "EdDSA", {"kid": "idp-1"})


@pytest.fixture
def authenticator(verifier: WorkloadVerifier) -> Authenticator:
    idp = Issuer(IDP, AUDIENCE, (IssuerKey("idp-1", _pem(IDP_KEY).decode()),))
    keys = {"sk-app": Identity(agent="app")}
    return Authenticator(keys, DelegationVerifier([idp]), verifier)


def test_a_delegation_header_names_the_person_a_workload_acts_for(
    authenticator: Authenticator,
) -> None:
    identity = authenticator.authenticate(f"Bearer {k8s_token()}", None, delegation())
    assert identity == Identity(
        agent="researcher",
        roles=("developer",),
        scopes=("chat",),
        person="person:alice",
        method="workload",
    )
    assert authenticator.authenticate(None, k8s_token(), "").person is None  # empty: none


@pytest.mark.parametrize(
    ("bearer", "header", "reason"),
    [
        (k8s_token, lambda: delegation("planner"), "for another agent than the workload's"),
        (k8s_token, lambda: delegation(exp=int(time.time()) - 120), "delegation token has expired"),
        (lambda: "sk-app", delegation, "accepted only with a workload token"),
        (delegation, delegation, "accepted only with a workload token"),
    ],
    ids=["other-agent", "expired-delegation", "api-key", "delegation-bearer"],
)
def test_a_delegation_header_that_does_not_fit_is_refused(
    authenticator: Authenticator,
    bearer: Callable[[], str],
    header: Callable[[], str],
    reason: str,
) -> None:
    with pytest.raises(AuthError, match=reason):
        authenticator.authenticate(f"Bearer {bearer()}", None, header())


def test_api_keys_and_delegation_tokens_still_work_beside_workloads(
    authenticator: Authenticator, verifier: WorkloadVerifier
) -> None:
    assert authenticator.authenticate("Bearer sk-app", None).agent == "app"
    delegated = authenticator.authenticate(None, delegation("expense-bot"))
    assert (delegated.method, delegated.person) == ("delegation", "person:alice")
    with pytest.raises(AuthError, match="delegation token from an unknown issuer"):
        authenticator.authenticate(f"Bearer {k8s_token(iss='https://evil.example')}", None)
    alone = Authenticator({}, workloads=verifier)  # no delegation issuer: it says why
    with pytest.raises(AuthError, match="workload token from an unknown issuer"):
        alone.authenticate(f"Bearer {k8s_token(iss='https://evil.example')}", None)
    with pytest.raises(AuthError, match="trusts no delegation issuer"):
        alone.authenticate(f"Bearer {k8s_token()}", None, delegation())


# --- configuration: settings and the pack


def test_settings_read_workload_issuers_relative_to_their_file(tmp_path: Path) -> None:
    raw = {
        "region": "eu-west",
        "replica": "gw-1",
        "audit_nats": {"url": "nats://127.0.0.1:1"},
        "xr_nats": {"url": "nats://127.0.0.1:1"},
        "signing_key_file": "k",
        "enrolment_file": "e",
        "workload_issuers": [
            {"kind": "kubernetes", "issuer": K8S_ISSUER, "audience": AUDIENCE, "jwks_file": "j"},
            {
                "kind": "spiffe",
                "trust_domain": "example.org",
                "audience": AUDIENCE,
                "jwks_url": "https://spire.example.org/keys",
                "refresh_s": 60,
            },
        ],
    }
    k8s, spiffe = from_mapping(raw, tmp_path).workload_issuers
    assert k8s == WorkloadIssuer(K8S_ISSUER, AUDIENCE, jwks_file=tmp_path / "j")
    assert (spiffe.kind, spiffe.issuer, spiffe.refresh_s) == ("spiffe", None, 60.0)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"jwks_url": "http://keys.example.org/jwks"}, "must be https"),
        ({"jwks_url": "file:///etc/jwks.json"}, "must be https"),
        ({"jwks_file": Path("j"), "jwks_url": "https://k.example"}, "exactly one of"),
        ({}, "exactly one of"),
        ({"jwks_file": Path("j"), "kind": "oidc"}, "kind is kubernetes or spiffe"),
        ({"jwks_file": Path("j"), "kind": "spiffe"}, "trust_domain is required"),
        ({"jwks_file": Path("j"), "issuer": None}, "needs its issuer"),
    ],
)
def test_a_workload_issuer_that_cannot_be_trusted_is_a_config_error(
    fields: dict[str, Any], reason: str
) -> None:
    settings: dict[str, Any] = {"issuer": K8S_ISSUER, "audience": AUDIENCE, **fields}
    with pytest.raises(ConfigError, match=reason):
        WorkloadIssuer(**settings)


def test_an_exact_subject_wins_over_a_glob() -> None:
    mapped = workloads.parse(
        [
            {"subject": "spiffe://example.org/*", "agent": "pool"},
            {"subject": PLANNER, "agent": "planner", "scopes": ["chat"]},
        ]
    )
    assert mapped.lookup(PLANNER) == ("planner", (), ("chat",), None)
    assert mapped.lookup("spiffe://example.org/deep/er/path") == ("pool", (), (), None)
    assert mapped.lookup("spiffe://example.com/x") is None


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ({"subject": RESEARCHER}, ["workloads", 0, "agent"]),
        ({"agent": "x"}, ["workloads", 0, "subject"]),
        ({"subject": RESEARCHER, "agent": "x", "roles": "developer"}, ["workloads", 0, "roles"]),
        ({"subject": RESEARCHER, "agent": "x", "person": "p"}, ["workloads", 0, "person"]),
        ("researcher", ["workloads", 0]),
    ],
)
def test_a_bad_workloads_section_refuses_the_pack(raw: Any, path: list[Any]) -> None:
    with pytest.raises(DocumentError) as caught:
        parse_document({"pack": {"name": "p"}, "workloads": [raw]})
    assert list(caught.value.path) == path
    twice = {"pack": {"name": "p"}, "workloads": [PACK_WORKLOADS[0], PACK_WORKLOADS[0]]}
    with pytest.raises(DocumentError, match="listed twice"):
        parse_document(twice)


def test_lint_accepts_workloads_and_names_a_bad_one() -> None:
    good = {"pack": {"name": "p"}, "workloads": PACK_WORKLOADS}
    assert check(good, "pack.yaml") == []
    assert parse_document(good).workloads.lookup(RESEARCHER) == (
        "researcher",
        ("developer",),
        ("chat",),
        None,
    )
    bad = {"pack": {"name": "p"}, "workloads": [{"subject": RESEARCHER, "agent": "x", "x": 1}]}
    (problem,) = check(bad, "pack.yaml")
    assert problem.path == "workloads[0]" and "unknown key" in problem.message


# --- end to end: a replica in-process, the real SDKs


PACK = {"pack": {"name": "default"}, "workloads": PACK_WORKLOADS}
CHAT = [{"role": "user", "content": "hello from a pod"}]


@pytest.fixture
async def gw(tmp_path: Path, jwks_server: JwksServer) -> AsyncIterator[InProcessGateway]:
    path = tmp_path / "k8s-jwks.json"
    write_jwks(path, jwks((RSA_KEY, "rsa-1")))
    issuers = [
        {"kind": "kubernetes", "issuer": K8S_ISSUER, "audience": AUDIENCE, "jwks_file": str(path)},
        {
            "kind": "spiffe",
            "trust_domain": "example.org",
            "audience": AUDIENCE,
            "jwks_url": jwks_server.url,
        },
    ]
    idp = [
        {
            "issuer": IDP,
            "audience": AUDIENCE,
            "keys": [{"kid": "idp-1", "public_key_pem": _pem(IDP_KEY).decode()}],
        }
    ]
    settings = {"workload_issuers": issuers, "delegation_issuers": idp}
    async with in_process_gateway(tmp_path, settings=settings) as gateway:
        await gateway.activate(PACK, revision=2)
        assert gateway.runtime.workloads is not None
        await wait_for(
            lambda: gateway.runtime.workloads is not None and gateway.runtime.workloads.ready
        )
        yield gateway


def _openai(gw: InProcessGateway, token: str, **headers: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        api_key=token,
        base_url="http://gateway/v1",
        http_client=httpx.AsyncClient(transport=httpx.ASGITransport(app=gw.app)),
        default_headers=headers,
        max_retries=0,
    )


def _anthropic(gw: InProcessGateway, token: str) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(  # this SDK speaks httpx2, httpx's successor
        api_key=token,
        base_url="http://gateway",
        http_client=httpx2.AsyncClient(transport=httpx2.ASGITransport(app=gw.app)),
        max_retries=0,
    )


@pytest.mark.parametrize("token", [k8s_token, svid], ids=["kubernetes", "spiffe"])
async def test_a_workload_token_gets_an_answer_recorded_for_its_agent(
    gw: InProcessGateway, token: Callable[[], str]
) -> None:
    raw = await _openai(gw, token()).chat.completions.with_raw_response.create(
        model="mock-gpt",
        messages=CHAT,  # type: ignore[arg-type]
    )
    assert raw.parse().choices[0].message.content
    record = gw.records()[-1]
    assert record["id"] == raw.headers["x-cordon-record-id"]
    assert record["identity_method"] == "workload"
    assert record["agent"] == ("researcher" if token is k8s_token else "planner")


async def test_the_delegation_header_puts_the_person_in_the_record(gw: InProcessGateway) -> None:
    client = _openai(gw, k8s_token(), **{"x-cordon-delegation": delegation()})
    await client.chat.completions.create(model="mock-gpt", messages=CHAT)  # type: ignore[arg-type]
    record = gw.records()[-1]
    assert (record["agent"], record["person"]) == ("researcher", "person:alice")
    other = _openai(gw, k8s_token(), **{"x-cordon-delegation": delegation("planner")})
    with pytest.raises(openai.AuthenticationError, match="another agent"):
        await other.chat.completions.create(model="mock-gpt", messages=CHAT)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (lambda: k8s_token(exp=int(time.time()) - 120), "workload token has expired"),
        (lambda: k8s_token(key=RSA_KEY_2), "signature does not verify"),
        (lambda: svid(sub="spiffe://example.org/ns/other"), "is not mapped to an agent"),
    ],
    ids=["expired", "forged", "unmapped"],
)
async def test_a_bad_workload_token_gets_401_in_each_sdks_shape(
    gw: InProcessGateway, token: Callable[[], str], reason: str
) -> None:
    before = len(gw.records())
    with pytest.raises(openai.AuthenticationError) as refused:
        await _openai(gw, token()).chat.completions.create(model="mock-gpt", messages=CHAT)  # type: ignore[arg-type]
    assert refused.value.status_code == 401
    body = refused.value.response.json()
    assert set(body) == {"error"} and reason in body["error"]["message"]
    with pytest.raises(anthropic.AuthenticationError) as also:
        await _anthropic(gw, token()).messages.create(
            model="mock-claude",
            max_tokens=32,
            messages=CHAT,  # type: ignore[arg-type]
        )
    assert also.value.status_code == 401
    shape = also.value.response.json()
    assert shape["type"] == "error" and reason in shape["error"]["message"]
    assert len(gw.records()) == before  # unauthenticated: counted, not recorded


def test_with_two_clusters_a_service_account_maps_only_through_its_own_issuer(
    tmp_path: Path,
) -> None:
    """A service account's name says nothing of its cluster: with two clusters' issuers
    configured, an entry naming no issuer maps neither, and one naming an issuer maps
    only that cluster's tokens."""
    write_jwks(tmp_path / "a.json", jwks((RSA_KEY, "rsa-1")))
    write_jwks(tmp_path / "b.json", jwks((RSA_KEY_2, "rsa-2")))
    other = "https://other-cluster.example"
    issuers = [
        k8s_issuer(tmp_path / "a.json"),
        WorkloadIssuer(other, AUDIENCE, jwks_file=tmp_path / "b.json", kind="kubernetes"),
    ]
    loose = workloads.parse([{"subject": RESEARCHER, "agent": "researcher"}])
    with pytest.raises(AuthError, match="names no issuer"):
        WorkloadVerifier(issuers, lambda: loose).verify(k8s_token())
    pinned = workloads.parse([{"subject": RESEARCHER, "agent": "researcher", "issuer": K8S_ISSUER}])
    verifier = WorkloadVerifier(issuers, lambda: pinned)
    assert verifier.verify(k8s_token()).agent == "researcher"
    foreign = k8s_token(key=RSA_KEY_2, kid="rsa-2", iss=other)
    with pytest.raises(AuthError, match="not mapped"):
        verifier.verify(foreign)
