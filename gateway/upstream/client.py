"""Provider calls: the target's own credentials, its timeouts, and a live response.

`open()` returns as soon as the response headers are in, so a stream can be
relayed chunk by chunk. The HTTP client is gateway.upstream.httpclient (see there for why
not aiohttp or httpx on this path).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from cordon import jsoncodec
from cordon.errors import (
    ConnectTimeout,
    HttpClientError,
    ResponseTimeout,
    ResponseTooLargeError,
    UpstreamError,
    UpstreamTimeout,
    UpstreamTooLargeError,
)
from gateway.upstream import bedrock, httpclient
from gateway.upstream.providers import AZURE, BEDROCK, Target

ANTHROPIC_VERSION = "2023-06-01"


def auth_headers(target: Target, passthrough: Mapping[str, str]) -> dict[str, str]:
    """Headers for the provider: the target's own key, never the caller's."""
    headers = {"content-type": "application/json", "user-agent": "cordon-gateway"}
    for name in ("traceparent", "tracestate"):  # W3C trace context travels on
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


class UpstreamResponse:
    """An open provider response: status and headers now, the body when asked."""

    def __init__(self, response: httpclient.Response) -> None:
        self._response = response
        self.status = response.status
        self.headers = response.headers

    async def read(self, limit: int | None = None) -> bytes:
        try:
            return await self._response.read(limit)
        except ResponseTooLargeError as exc:
            raise UpstreamTooLargeError(str(exc)) from exc
        except HttpClientError as exc:
            raise UpstreamError(f"provider broke off its answer: {exc}") from exc

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.chunks():
                yield chunk
        except HttpClientError as exc:
            raise UpstreamError(f"provider broke off its stream: {exc}") from exc

    def close(self) -> None:
        """Drop the connection: cancels a provider call still in flight."""
        self._response.close()

    def release(self) -> None:
        self._response.release()


class TranslatedResponse(UpstreamResponse):
    """A provider's answer already read and put in the caller's API shape (a dialect
    the gateway translates, such as Bedrock's): the same surface as `UpstreamResponse`."""

    def __init__(self, status: int, body: bytes) -> None:  # no connection behind it
        self.status = status
        self.headers = {"content-type": "application/json"}
        self._body = body

    async def read(self, limit: int | None = None) -> bytes:
        if limit is not None and len(self._body) > limit:
            raise UpstreamTooLargeError(f"provider answer exceeds {limit} bytes")
        return self._body

    async def chunks(self) -> AsyncIterator[bytes]:
        yield self._body

    def close(self) -> None:
        return None

    def release(self) -> None:
        return None


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
        if target.wire == BEDROCK:
            return await self._bedrock(target, path, body, model)
        timeouts = target.timeouts
        try:
            response = await self._client.post(
                target.url(path, model),
                body,
                auth_headers(target, passthrough),
                connect=timeouts.connect,
                first_byte=timeouts.first_byte,
                total=timeouts.total,
                proxy=target.proxy or self._proxies.for_url(target.base_url),
            )
        except (ConnectTimeout, ResponseTimeout) as exc:
            raise UpstreamTimeout(f"{target.id}: {exc}") from exc
        except HttpClientError as exc:
            raise UpstreamError(f"{target.id}: {exc}") from exc
        return UpstreamResponse(response)

    async def _bedrock(
        self, target: Target, path: str, body: bytes, model: str
    ) -> TranslatedResponse:
        """A chat completion through Bedrock's Converse API, translated both ways."""
        if path != "/chat/completions":
            return _openai_error(400, "Bedrock targets serve chat completions only")
        try:
            converse = bedrock.to_converse(jsoncodec.loads(body))
        except UpstreamError as exc:
            return _openai_error(400, str(exc))
        data = jsoncodec.dumps(converse)
        where = bedrock.url(target.base_url, model)
        headers = bedrock.sign(where, data, target.api_key, target.region or "")
        timeouts = target.timeouts
        try:
            response = await self._client.post(
                where,
                data,
                headers,
                connect=timeouts.connect,
                first_byte=timeouts.first_byte,
                total=timeouts.total,
                proxy=target.proxy or self._proxies.for_url(target.base_url),
            )
            raw = await response.read(MAX_TRANSLATED)
        except (ConnectTimeout, ResponseTimeout) as exc:
            raise UpstreamTimeout(f"{target.id}: {exc}") from exc
        except HttpClientError as exc:
            raise UpstreamError(f"{target.id}: {exc}") from exc
        if response.status != 200:
            return _openai_error(response.status, _bedrock_message(raw))
        try:
            answer = jsoncodec.loads(raw)
        except ValueError:
            return _openai_error(502, "Bedrock's answer was not JSON; nothing was released")
        translated = bedrock.from_converse(answer, model)
        return TranslatedResponse(200, jsoncodec.dumps(translated))


MAX_TRANSLATED = 16 * 1024 * 1024  # a Bedrock answer is read whole before it is translated


def _openai_error(status: int, message: str) -> TranslatedResponse:
    kind = "invalid_request_error" if status < 500 else "api_error"
    error = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    return TranslatedResponse(status, jsoncodec.dumps(error))


def _bedrock_message(raw: bytes) -> str:
    try:
        found = jsoncodec.loads(raw)
    except ValueError:
        return "Bedrock refused the call"
    message = (found.get("message") or found.get("Message")) if isinstance(found, dict) else None
    return str(message or "Bedrock refused the call")
