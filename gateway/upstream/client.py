"""Provider calls: the target's own credentials, its timeouts, and a live response.

`open()` returns as soon as the response headers are in, so a stream can be
relayed chunk by chunk. The HTTP client is gateway.upstream.httpclient (see there for why
not aiohttp or httpx on this path).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from cordon.errors import (
    ConnectTimeout,
    HttpClientError,
    ResponseTimeout,
    UpstreamError,
    UpstreamTimeout,
)
from gateway.upstream import httpclient
from gateway.upstream.providers import AZURE, TRANSLATED, Target
from gateway.upstream.response import UpstreamResponse

if TYPE_CHECKING:  # loaded with the first translated call (`UpstreamClient._translated`)
    from gateway.upstream.translated import Translator

__all__ = ["SDK_RECORD_HEADER", "Proxies", "UpstreamClient", "UpstreamResponse", "auth_headers"]

ANTHROPIC_VERSION = "2023-06-01"
# Sent by the in-process SDK with each call it forwards: its record's id, so a gateway
# or sidecar the call goes through names it in its own record (records.CallFacts).
SDK_RECORD_HEADER = "x-cordon-sdk-record"


def auth_headers(target: Target, passthrough: Mapping[str, str]) -> dict[str, str]:
    """Headers for the provider: the target's own key, never the caller's."""
    headers = {"content-type": "application/json", "user-agent": "cordon-gateway"}
    for name in ("traceparent", "tracestate", SDK_RECORD_HEADER):  # these travel on
        if name in passthrough:
            headers[name] = passthrough[name]
    if target.wire == AZURE:
        if target.api_key and target.auth == "entra":
            headers["authorization"] = f"Bearer {target.api_key}"
        elif target.api_key:
            headers["api-key"] = target.api_key
    elif target.api == "anthropic":
        headers["anthropic-version"] = passthrough.get("anthropic-version", ANTHROPIC_VERSION)
        if "anthropic-beta" in passthrough:
            headers["anthropic-beta"] = passthrough["anthropic-beta"]
        if target.api_key:
            headers["x-api-key"] = target.api_key
    elif target.api_key:
        headers["authorization"] = f"Bearer {target.api_key}"
    return headers


@dataclass(frozen=True)
class Proxies:
    """The process's proxy settings, as HTTPS_PROXY / HTTP_PROXY / NO_PROXY give them."""

    https: str | None = None
    http: str | None = None
    no_proxy: tuple[str, ...] = ()

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Proxies:
        def get(name: str) -> str | None:
            return environ.get(name) or environ.get(name.lower()) or None

        skip = (get("NO_PROXY") or "").split(",")
        return cls(get("HTTPS_PROXY"), get("HTTP_PROXY"), tuple(s.strip() for s in skip if s))

    def for_url(self, url: str) -> str | None:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        for entry in self.no_proxy:
            entry = entry.lower().lstrip(".")
            if entry == "*" or host == entry or host.endswith("." + entry):
                return None
        return self.https if parts.scheme == "https" else self.http


class UpstreamClient:
    def __init__(
        self,
        guard: httpclient.AddressGuard | None = None,
        ca_bundle: str | None = None,
        proxies: Proxies | None = None,
    ) -> None:
        self._client = httpclient.HttpClient(guard=guard, ca_bundle=ca_bundle)
        self._proxies = proxies or Proxies()
        self._translator: Translator | None = None

    @property
    def http(self) -> httpclient.HttpClient:
        return self._client

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._client.close()

    async def open(
        self,
        target: Target,
        path: str,
        body: bytes,
        passthrough: Mapping[str, str],
        model: str = "",
    ) -> UpstreamResponse:
        if target.wire in TRANSLATED or (path == "/messages" and target.api != "anthropic"):
            return await self._translated().open(target, path, body, model, passthrough)
        where = target.url(path, model)
        return UpstreamResponse(
            await self.post(target, where, body, auth_headers(target, passthrough))
        )

    def _translated(self) -> Translator:
        """The translator of Bedrock's, Gemini's and Anthropic's wires, made on first use:
        its dialects are modules that only a pack naming such a provider needs."""
        if self._translator is None:
            from gateway.upstream.translated import Translator

            self._translator = Translator(self.post, self._client, auth_headers)
        return self._translator

    async def post(
        self, target: Target, where: str, body: bytes, headers: Mapping[str, str]
    ) -> httpclient.Response:
        """POST to `target` under its timeouts and proxy; the response once its headers
        are in. Timeouts are `UpstreamTimeout`, other failures `UpstreamError`."""
        timeouts = target.timeouts
        try:
            return await self._client.request(
                "POST",
                where,
                body,
                headers,
                connect=timeouts.connect,
                first_byte=timeouts.first_byte,
                total=timeouts.total,
                proxy=target.proxy or self._proxies.for_url(target.base_url),
            )
        except (ConnectTimeout, ResponseTimeout) as exc:
            raise UpstreamTimeout(f"{target.id}: {exc}") from exc
        except HttpClientError as exc:
            raise UpstreamError(f"{target.id}: {exc}") from exc
