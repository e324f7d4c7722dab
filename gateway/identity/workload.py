"""Workload tokens: a Kubernetes projected service-account token or a SPIFFE JWT-SVID,
verified against its issuer's JWKS, acting as the agent the active pack maps it to.

Why a third kind of caller: an agent running in a cluster already holds a short-lived
token from its platform, rotated for it. Accepting that token means no gateway API
key to hand out, store and rotate per workload. The token proves *which workload*
calls; *what it may do* is policy, so the pack's `workloads:` section
(`cordon.packs.workloads`) maps the subject to an agent, roles and scopes.

Verification is synchronous (it runs on the request path) and uses keys already held:
a JWKS file is re-read when its mtime, size or inode changes (projected volumes rotate
by swapping a symlink); a JWKS URL is fetched off the event loop by `run()`, every
`refresh_s`, and early (at most once per `EARLY_REFRESH_S`) when a token names a key
not held. Such a token is refused meanwhile (401): a caller retries, nothing blocks.

`alg: none`, HMAC and any algorithm not listed for the issuer's kind are refused before a
key is chosen, and the key's own type must fit the algorithm (an RSA key never
verifies an ES256 token, a public key is never an HMAC secret).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import re
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from cordon.errors import AuthError, ConfigError
from cordon.packs.workloads import WorkloadMap
from gateway.identity.callers import Identity
from gateway.identity.refusals import jwt_refusal

__all__ = [
    "ALGORITHMS",
    "EARLY_REFRESH_S",
    "MAX_JWKS_BYTES",
    "WorkloadIssuer",
    "WorkloadVerifier",
    "verifier_for",
]

log = logging.getLogger("cordon.gateway.identity")

Kind = Literal["kubernetes", "spiffe"]
# What each platform signs with; everything else (none, HS*, ...) is refused up front.
ALGORITHMS: dict[str, tuple[str, ...]] = {
    "kubernetes": ("RS256", "ES256"),
    "spiffe": ("RS256", "ES256", "ES384", "PS256"),
}
# Which algorithms a key can verify, by its type (and curve): a JWK's own `alg` narrows it.
KEY_ALGORITHMS = {"RSA": ("RS256", "PS256"), "EC/P-256": ("ES256",), "EC/P-384": ("ES384",)}
LEEWAY_S = 30
REFRESH_S = 300.0
EARLY_REFRESH_S = 30.0  # an unknown kid may not make us hammer the issuer
FETCH_TIMEOUT_S = 5.0
MAX_JWKS_BYTES = 1024 * 1024
SPIFFE_ID = re.compile(r"^spiffe://([a-z0-9._-]+)((?:/[A-Za-z0-9._-]+)+)$")
SERVICE_ACCOUNT = re.compile(
    r"^system:serviceaccount:([a-z0-9](?:[-a-z0-9]*[a-z0-9])?):([a-z0-9](?:[-.a-z0-9]*[a-z0-9])?)$"
)


@dataclass(frozen=True)
class WorkloadIssuer:
    """One identity provider whose workload tokens this gateway accepts."""

    issuer: str | None  # `iss`; a SPIFFE issuer may have none (matched by trust domain)
    audience: str
    jwks_file: Path | None = None
    jwks_url: str | None = None
    trust_domain: str | None = None  # spiffe: the only trust domain its SVIDs may name
    kind: Kind = "kubernetes"
    refresh_s: float = REFRESH_S

    def __post_init__(self) -> None:
        name = self.issuer or self.trust_domain
        if self.kind not in ALGORITHMS:
            raise ConfigError(f"workload issuer {name}: kind is kubernetes or spiffe")
        if not self.audience:
            raise ConfigError(f"workload issuer {name}: audience is required")
        if (self.jwks_file is None) == (self.jwks_url is None):
            raise ConfigError(f"workload issuer {name}: give exactly one of jwks_file, jwks_url")
        if self.kind == "kubernetes" and not self.issuer:
            raise ConfigError("a kubernetes workload issuer needs its issuer (iss)")
        if self.kind == "spiffe" and not self.trust_domain:
            raise ConfigError(f"spiffe workload issuer {name}: trust_domain is required")
        if self.jwks_url is not None:
            _check_url(self.jwks_url)
        if not self.refresh_s > 0:
            raise ConfigError(f"workload issuer {name}: refresh_s must be greater than 0")


def _check_url(url: str) -> None:
    """https anywhere; plain http only to this host (a local JWKS proxy, tests)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme == "https" and host:
        return
    if parts.scheme == "http" and (host == "localhost" or _loopback(host)):
        return
    raise ConfigError(f"jwks_url {url!r} must be https (or http to a loopback address)")


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class _Key:
    kid: str | None
    key: Any  # the cryptography public key
    algorithms: tuple[str, ...]  # what it may verify: its type's, narrowed by its `alg`


@dataclass(frozen=True)
class _Keys:
    """One JWKS, parsed: its signing keys, and those with a kid by kid."""

    by_kid: dict[str, _Key]
    all: tuple[_Key, ...]

    def find(self, kid: Any) -> _Key | None:
        if isinstance(kid, str):
            return self.by_kid.get(kid)
        # No kid: only an issuer with a single key leaves no doubt which one is meant.
        return self.all[0] if kid is None and len(self.all) == 1 else None


NO_KEYS = _Keys({}, ())


def parse_jwks(body: bytes) -> _Keys:
    """The signing keys of a JWKS document; ValueError if it holds none we can use.
    Symmetric (`oct`) and encryption keys are left out: they never verify a token."""
    document = json.loads(body)
    raw_keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(raw_keys, list):
        raise ValueError("a JWKS is an object with a `keys` list")
    usable = [key for key in map(_key, raw_keys) if key is not None]
    if not usable:
        raise ValueError("the JWKS holds no RSA or EC signing key")
    by_kid = {key.kid: key for key in usable if key.kid is not None}
    return _Keys(by_kid, tuple(usable))


def _key(raw: Any) -> _Key | None:
    """One JWK as a verifying key, or None if it cannot verify a token here."""
    import jwt  # on first use: only workload issuers need it (2.6 MB resident)

    if not isinstance(raw, dict) or raw.get("use", "sig") != "sig":
        return None
    kind = f"EC/{raw.get('crv')}" if raw.get("kty") == "EC" else str(raw.get("kty"))
    fits = KEY_ALGORITHMS.get(kind, ())
    declared = raw.get("alg")
    algorithms = tuple(a for a in fits if a == declared) if declared else fits
    if not algorithms:
        return None
    try:
        # The algorithm only picks the key's type here; `algorithms` is what verifies.
        key = jwt.PyJWK(raw, algorithm=algorithms[0]).key
    except jwt.PyJWTError:
        return None  # a broken key is not an error for the others
    kid = raw.get("kid")
    return _Key(kid if isinstance(kid, str) else None, key, algorithms)


class _FileSource:
    """A JWKS file, re-read whenever its mtime, size or inode changes."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._stamp: tuple[int, int, int] | None = None
        self._keys = NO_KEYS
        self._missing = False  # logged once, not per token

    def keys(self) -> _Keys:
        try:
            stat = os.stat(self._path)
        except OSError as exc:
            if not self._missing:
                log.warning("cannot read the JWKS file %s: %s", self._path, exc.strerror)
            self._missing = True
            return self._keys
        self._missing = False
        stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        if stamp != self._stamp:
            self._stamp = stamp
            self._reload()
        return self._keys

    def _reload(self) -> None:
        try:
            with self._path.open("rb") as file:
                body = file.read(MAX_JWKS_BYTES + 1)
            if len(body) > MAX_JWKS_BYTES:
                raise ValueError("larger than 1 MiB")
            self._keys = parse_jwks(body)
        except (OSError, ValueError) as exc:
            # Keep the keys we had: a half-written file must not lock every workload out.
            log.warning("JWKS file %s not used (keeping the previous keys): %s", self._path, exc)

    def want(self) -> None:
        """Nothing to schedule: the file is looked at on every token."""

    async def run(self) -> None:
        return None


class _UrlSource:
    """A JWKS URL, fetched in a thread: every `refresh_s`, and early when asked."""

    def __init__(self, url: str, refresh_s: float, clock: Callable[[], float]) -> None:
        self._url, self._refresh_s, self._clock = url, refresh_s, clock
        self._keys = NO_KEYS
        self._last_try = -float("inf")
        self._wanted = asyncio.Event()

    def keys(self) -> _Keys:
        return self._keys

    def want(self) -> None:
        """A token named a key we do not hold: fetch again, unless we just did."""
        if self._clock() - self._last_try >= EARLY_REFRESH_S:
            self._wanted.set()

    async def refresh(self) -> bool:
        """Fetch now; whether the keys were replaced (a failure keeps the old ones)."""
        self._last_try = self._clock()
        try:
            body = await asyncio.to_thread(_fetch, self._url)
            self._keys = parse_jwks(body)
        except (OSError, ValueError) as exc:
            log.warning("JWKS %s not fetched (keeping the previous keys): %s", self._url, exc)
            return False
        return True

    async def run(self) -> None:
        while True:
            fetched = await self.refresh()
            self._wanted.clear()
            # After a failure, try again as soon as the early-refresh limit allows.
            wait_s = self._refresh_s if fetched else min(self._refresh_s, EARLY_REFRESH_S)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wanted.wait(), wait_s)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A JWKS is fetched from the URL configured, not wherever a response points."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        raise OSError("the JWKS URL redirected; configure the final URL")


_OPENER = urllib.request.build_opener(_NoRedirect)


def _fetch(url: str) -> bytes:
    request = urllib.request.Request(url, headers={"accept": "application/json"})
    with _OPENER.open(request, timeout=FETCH_TIMEOUT_S) as response:
        body: bytes = response.read(MAX_JWKS_BYTES + 1)
    if len(body) > MAX_JWKS_BYTES:
        raise ValueError("the JWKS is larger than 1 MiB")
    return body


_Source = _FileSource | _UrlSource


class WorkloadVerifier:
    """Turns a workload token into the Identity the active pack maps its subject to."""

    def __init__(
        self,
        issuers: Iterable[WorkloadIssuer],
        mapping: Callable[[], WorkloadMap],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._issuers = tuple(issuers)
        self._mapping = mapping
        self._clusters = sum(1 for issuer in self._issuers if issuer.kind == "kubernetes")
        self._sources: dict[WorkloadIssuer, _Source] = {
            issuer: _source(issuer, clock) for issuer in self._issuers
        }

    @property
    def ready(self) -> bool:
        """Whether every issuer's keys are held (a URL's first fetch has landed)."""
        return all(source.keys().all for source in self._sources.values())

    async def refresh(self) -> None:
        """Fetch every JWKS URL now (start-up, tests); files are read as tokens come."""
        for source in self._sources.values():
            if isinstance(source, _UrlSource):
                await source.refresh()

    async def run(self) -> None:
        """Keep every JWKS URL fresh, forever (the runtime runs it as a task)."""
        await asyncio.gather(*(source.run() for source in self._sources.values()))

    def attempt(self, token: str) -> Identity | None:
        """The identity, or None if the token names no workload issuer configured here
        (then it may be another kind of token); AuthError if it names one and fails."""
        try:
            header, claims = _unverified(token)
        except AuthError:
            return None
        issuer = self._issuer_of(claims)
        return None if issuer is None else self._verify(token, header, issuer)

    def verify(self, token: str) -> Identity:
        header, claims = _unverified(token)
        issuer = self._issuer_of(claims)
        if issuer is None:
            raise AuthError("workload token from an unknown issuer")
        return self._verify(token, header, issuer)

    def _issuer_of(self, claims: dict[str, Any]) -> WorkloadIssuer | None:
        iss, domain = claims.get("iss"), _trust_domain(claims.get("sub"))
        for issuer in self._issuers:
            if issuer.issuer is not None and iss == issuer.issuer:
                return issuer
            if issuer.issuer is None and domain is not None and domain == issuer.trust_domain:
                return issuer
        return None

    def _verify(self, token: str, header: dict[str, Any], issuer: WorkloadIssuer) -> Identity:
        alg = header.get("alg")
        if alg not in ALGORITHMS[issuer.kind]:
            raise AuthError(f"workload token's algorithm is not one of {ALGORITHMS[issuer.kind]}")
        source = self._sources[issuer]
        key = source.keys().find(header.get("kid"))
        if key is None:
            source.want()
            raise AuthError("workload token signed with an unknown key")
        if alg not in key.algorithms:
            raise AuthError("workload token's algorithm does not fit its key")
        claims = _decode(token, key, str(alg), issuer)
        subject = _subject(issuer, claims)
        mapped = self._mapping().lookup(subject, issuer.issuer)
        if mapped is None:
            raise AuthError(f"workload {subject} is not mapped to an agent by the active pack")
        if mapped.issuer is None and issuer.kind == "kubernetes" and self._clusters > 1:
            # A service account's name says nothing of its cluster: with two clusters'
            # issuers, an entry naming none would let either cluster act as the agent.
            raise AuthError(
                f"workload {subject}: the pack's entry names no issuer, and more than one "
                "cluster's issuer is configured"
            )
        return Identity(
            agent=mapped.agent, roles=mapped.roles, scopes=mapped.scopes, method="workload"
        )


def verifier_for(
    issuers: tuple[WorkloadIssuer, ...], mapping: Callable[[], WorkloadMap]
) -> WorkloadVerifier | None:
    """The runtime's verifier: None when no workload issuer is configured."""
    return WorkloadVerifier(issuers, mapping) if issuers else None


def _source(issuer: WorkloadIssuer, clock: Callable[[], float]) -> _Source:
    if issuer.jwks_file is not None:
        return _FileSource(issuer.jwks_file)
    assert issuer.jwks_url is not None  # WorkloadIssuer checks one of the two is set
    return _UrlSource(issuer.jwks_url, issuer.refresh_s, clock)


def _unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    import jwt

    try:
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise AuthError("malformed workload token") from exc
    return header, claims


def _trust_domain(subject: Any) -> str | None:
    found = SPIFFE_ID.match(subject) if isinstance(subject, str) else None
    return found.group(1) if found else None


def _decode(token: str, key: _Key, alg: str, issuer: WorkloadIssuer) -> dict[str, Any]:
    import jwt

    required = ["exp", "sub", "aud", *(["iss"] if issuer.issuer else [])]
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key.key,
            algorithms=[alg],
            audience=issuer.audience,
            issuer=issuer.issuer,
            leeway=LEEWAY_S,
            options={"require": required, "enforce_minimum_key_length": True},
        )
    except jwt.PyJWTError as exc:
        raise jwt_refusal(exc, "workload") from exc
    return claims


def _subject(issuer: WorkloadIssuer, claims: dict[str, Any]) -> str:
    """The workload's name, in its platform's form (ASCII by these patterns, so it is
    safe in a record and an error message)."""
    subject = claims.get("sub")
    if issuer.kind == "spiffe":
        if _trust_domain(subject) != issuer.trust_domain:
            raise AuthError("workload token names no SPIFFE ID of the trusted trust domain")
        return str(subject)
    found = SERVICE_ACCOUNT.match(subject) if isinstance(subject, str) else None
    if found is None:
        raise AuthError("workload token's subject is not a Kubernetes service account")
    detail = claims.get("kubernetes.io")
    if not isinstance(detail, dict):
        raise AuthError("workload token lacks the kubernetes.io claim")
    account = detail.get("serviceaccount")
    name = account.get("name") if isinstance(account, dict) else None
    if detail.get("namespace", found[1]) != found[1] or name not in (None, found[2]):
        raise AuthError("workload token's kubernetes.io claim does not match its subject")
    return found[0]
