"""OAuth access tokens for Vertex AI from a Google service-account key, without google-auth.

A service-account key is the JSON file Google issues (`type: service_account`,
`client_email`, `private_key`, `private_key_id`, `token_uri`). As google-auth does
(RFC 7523, Google's "OAuth 2.0 for server to server applications"), a token is had by
signing a JWT assertion with the key (RS256, `kid` the key's id; claims `iss` the
account, `scope` cloud-platform, `aud` the token URI, `iat`, `exp` an hour later; no
`sub`, which only domain-wide delegation uses) and posting it to `token_uri` as the
`jwt-bearer` grant. The answer's access token is kept until five minutes before it
expires.

The caller passes the key's text on every call, since a secret can rotate: a different
text is a different key, with a token of its own. Concurrent callers of one key share
one refresh. Neither the private key nor a token is ever put in a repr or an error's
text; an error names only fields, statuses and what the token endpoint said.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from cordon import jsoncodec
from cordon.errors import (
    ConnectTimeout,
    HttpClientError,
    PackError,
    ResponseTimeout,
    UpstreamError,
    UpstreamTimeout,
)
from gateway.upstream.httpclient import HttpClient

__all__ = [
    "GRANT_TYPE",
    "LIFETIME",
    "REFRESH_MARGIN",
    "SCOPE",
    "ServiceAccountTokens",
    "is_service_account",
    "token_uri",
]

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
LIFETIME = 3600  # seconds an assertion is valid (Google's maximum)
REFRESH_MARGIN = 300  # a token with less than this many seconds left is refreshed

CONNECT_S = 5.0
FIRST_BYTE_S = 10.0
TOTAL_S = 15.0
MAX_ANSWER_BYTES = 64 * 1024
MAX_KEYS = 16  # keys with a cached token; the least recently refreshed goes first
_ERROR_TEXT = 200  # characters of the endpoint's error and description kept

# What may go into an Authorization header: visible ASCII only, so a token endpoint
# cannot smuggle a line break into the provider request.
_HEADER_SAFE = re.compile(r"[\x21-\x7e]+")
_NOT_PRINTABLE = re.compile(r"[^\x20-\x7e]")
_SHAPE = (
    'a Google service-account key is the JSON file Google issues, with "type": '
    '"service_account", client_email, private_key and token_uri'
)


def is_service_account(text: str) -> bool:
    """Whether `text` is a service-account key file (rather than, say, an API key)."""
    if not text.lstrip().startswith("{"):
        return False
    try:
        document = jsoncodec.loads(text, max_depth=8)
    except ValueError:
        return False
    return isinstance(document, dict) and document.get("type") == "service_account"


def token_uri(key_json: str) -> str:
    """Where the key's tokens come from (checked against the egress policy when a pack
    is activated); `PackError` if the text is not a usable service-account key."""
    return _account(key_json).token_uri


@dataclass(frozen=True, repr=False)
class _Account:
    email: str
    key: RSAPrivateKey
    key_id: str | None
    token_uri: str

    def assertion(self, now: int) -> str:
        claims = {
            "iss": self.email,
            "scope": SCOPE,
            "aud": self.token_uri,
            "iat": now,
            "exp": now + LIFETIME,
        }
        headers = {"kid": self.key_id} if self.key_id else None
        return jwt.encode(claims, self.key, algorithm="RS256", headers=headers)


def _account(key_json: str) -> _Account:
    """The key file read, or a `PackError` that names what is wrong but quotes nothing."""
    try:
        document = jsoncodec.loads(key_json, max_depth=8)
    except ValueError:
        raise PackError(f"the secret is not JSON: {_SHAPE}") from None
    if not isinstance(document, dict) or document.get("type") != "service_account":
        raise PackError(f"the secret is not a service-account key: {_SHAPE}")
    fields: dict[str, str] = {}
    for name in ("client_email", "private_key", "token_uri"):
        value = document.get(name)
        if not isinstance(value, str) or not value:
            raise PackError(f"the service-account key has no {name}: {_SHAPE}")
        fields[name] = value
    key_id = document.get("private_key_id")
    if key_id is not None and not isinstance(key_id, str):
        raise PackError("the service-account key's private_key_id is not a string")
    try:
        uri = urlsplit(fields["token_uri"])
        uri.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        uri = urlsplit("")
    if uri.scheme not in ("http", "https") or not uri.hostname:
        raise PackError("the service-account key's token_uri is not an http(s) URL")
    try:
        key = load_pem_private_key(fields["private_key"].encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise PackError(
            "the service-account key's private_key is not an unencrypted PEM private key"
        ) from None
    if not isinstance(key, RSAPrivateKey):
        raise PackError("the service-account key's private_key is not an RSA key")
    return _Account(fields["client_email"], key, key_id or None, fields["token_uri"])


@dataclass(repr=False)
class _Entry:
    account: _Account
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    token: str | None = None
    refresh_at: float = 0.0  # by the injected clock


class ServiceAccountTokens:
    """Access tokens for service-account keys, each cached until five minutes before
    it expires. `clock` gives seconds since the epoch (tests pass their own)."""

    def __init__(self, http: HttpClient, clock: Callable[[], float] = time.time) -> None:
        self._http = http
        self._clock = clock
        self._entries: dict[str, _Entry] = {}  # by the key's text

    def __repr__(self) -> str:
        return f"<ServiceAccountTokens: tokens for {len(self._entries)} key(s)>"

    async def token(self, key_json: str) -> str:
        """A valid access token for the key `key_json` (the key file's text)."""
        entry = self._entries.get(key_json)
        if entry is not None and self._fresh(entry):
            assert entry.token is not None
            return entry.token
        if entry is None:
            entry = _Entry(_account(key_json))
            self._remember(key_json, entry)
        async with entry.lock:
            if not self._fresh(entry):  # else another caller refreshed it meanwhile
                await self._refresh(entry)
                self._entries.pop(key_json, None)  # now the most recently refreshed
                self._remember(key_json, entry)
        assert entry.token is not None
        return entry.token

    def _fresh(self, entry: _Entry) -> bool:
        return entry.token is not None and self._clock() < entry.refresh_at

    def _remember(self, key_json: str, entry: _Entry) -> None:
        self._entries[key_json] = entry
        while len(self._entries) > MAX_KEYS:  # a rotated-away key is never asked again
            del self._entries[next(iter(self._entries))]

    async def _refresh(self, entry: _Entry) -> None:
        account = entry.account
        started = self._clock()
        body = urlencode({"grant_type": GRANT_TYPE, "assertion": account.assertion(int(started))})
        headers = {
            "content-type": "application/x-www-form-urlencoded",
            "accept": "application/json",
        }
        where = _endpoint(account.token_uri)
        try:
            response = await self._http.request(
                "POST",
                account.token_uri,
                body.encode(),
                headers,
                connect=CONNECT_S,
                first_byte=FIRST_BYTE_S,
                total=TOTAL_S,
            )
            answer = await response.read(MAX_ANSWER_BYTES)
        except (ConnectTimeout, ResponseTimeout) as exc:
            raise UpstreamTimeout(f"Google's token endpoint {where} timed out: {exc}") from exc
        except HttpClientError as exc:
            raise UpstreamError(f"Google's token endpoint {where} failed: {exc}") from exc
        try:
            document: Any = jsoncodec.loads(answer, max_depth=8)
        except ValueError:
            document = None
        if response.status != 200:
            raise UpstreamError(
                f"Google's token endpoint {where} answered {response.status}" + _said(document)
            )
        if not isinstance(document, dict):
            raise UpstreamError(f"Google's token endpoint {where} answered something not JSON")
        token, expires_in = document.get("access_token"), document.get("expires_in", LIFETIME)
        if not isinstance(token, str) or not _HEADER_SAFE.fullmatch(token):
            raise UpstreamError(f"Google's token endpoint {where} answered no usable access_token")
        lifetime = _seconds(expires_in)
        if lifetime is None:
            raise UpstreamError(f"Google's token endpoint {where} answered no usable expires_in")
        # Refreshed five minutes before it expires (or halfway, were it to live less).
        entry.token = token
        entry.refresh_at = started + lifetime - min(REFRESH_MARGIN, lifetime / 2)


def _endpoint(uri: str) -> str:
    """The token URI as an error names it: no user info, no query."""
    parts = urlsplit(uri)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}{parts.path}"


def _said(document: Any) -> str:
    """What an OAuth error answer says (`error`, `error_description`), cut short."""
    if not isinstance(document, dict):
        return ""
    said = [
        _NOT_PRINTABLE.sub("?", value[:_ERROR_TEXT])
        for value in (document.get("error"), document.get("error_description"))
        if isinstance(value, str) and value
    ]
    return ": " + ": ".join(said) if said else ""


def _seconds(value: Any) -> float | None:
    """A positive lifetime in seconds (Google sends an integer; some send a string)."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if 0 < value < 10 * 365 * 86400 else None
