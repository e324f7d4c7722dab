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
from gateway.upstream import bedrock, gemini, httpclient
from gateway.upstream.providers import AZURE, BEDROCK, GEMINI, Target

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
        if target.wire in (BEDROCK, GEMINI):
            return await self._translated(target, path, body, model)
        timeouts = target.timeouts
        try:
            response = await self._client.request(
                "POST",
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

    async def _translated(
        self, target: Target, path: str, body: bytes, model: str
    ) -> TranslatedResponse:
        """A chat completion through a provider whose wire the gateway translates
        (Bedrock's Converse, Gemini's generateContent), translated both ways."""
        name = "Bedrock" if target.wire == BEDROCK else "Gemini"
        if path != "/chat/completions":
            return _openai_error(400, f"{name} targets serve chat completions only")
        try:
            chat = jsoncodec.loads(body)
            request = (bedrock.to_converse if target.wire == BEDROCK else gemini.to_gemini)(chat)
        except UpstreamError as exc:
            return _openai_error(400, str(exc))
        data = jsoncodec.dumps(request)
        if target.wire == BEDROCK:
            where = bedrock.url(target.base_url, model)
            headers = bedrock.sign(where, data, target.api_key, target.region or "")
        else:
            where = gemini.url(target.base_url, model)
            headers = {"content-type": "application/json", "x-goog-api-key": target.api_key}
        raw, status = await self._post_whole(target, where, data, headers)
        if status != 200:
            return _openai_error(status, _provider_message(raw, name))
        try:
            answer = jsoncodec.loads(raw)
        except ValueError:
            return _openai_error(502, f"{name}'s answer was not JSON; nothing was released")
        back = bedrock.from_converse if target.wire == BEDROCK else gemini.from_gemini
        return TranslatedResponse(200, jsoncodec.dumps(back(answer, model)))

    async def _post_whole(
        self, target: Target, where: str, data: bytes, headers: Mapping[str, str]
    ) -> tuple[bytes, int]:
        timeouts = target.timeouts
        try:
            response = await self._client.request(
                "POST",
                where,
                data,
                headers,
                connect=timeouts.connect,
                first_byte=timeouts.first_byte,
                total=timeouts.total,
                proxy=target.proxy or self._proxies.for_url(target.base_url),
            )
            return await response.read(MAX_TRANSLATED), response.status
        except (ConnectTimeout, ResponseTimeout) as exc:
            raise UpstreamTimeout(f"{target.id}: {exc}") from exc
        except HttpClientError as exc:
            raise UpstreamError(f"{target.id}: {exc}") from exc


MAX_TRANSLATED = 16 * 1024 * 1024  # a translated answer is read whole first


def _openai_error(status: int, message: str) -> TranslatedResponse:
    kind = "invalid_request_error" if status < 500 else "api_error"
    error = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    return TranslatedResponse(status, jsoncodec.dumps(error))


def _provider_message(raw: bytes, name: str) -> str:
    """A translated provider's error message (Bedrock: `message`; Gemini: `error.message`)."""
    try:
        found = jsoncodec.loads(raw)
    except ValueError:
        return f"{name} refused the call"
    if not isinstance(found, dict):
        return f"{name} refused the call"
    error = found.get("error")
    nested = error.get("message") if isinstance(error, dict) else None
    return str(found.get("message") or found.get("Message") or nested or f"{name} refused the call")
