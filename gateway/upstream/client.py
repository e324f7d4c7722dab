"""Provider calls: the target's own credentials, its timeouts, and a live response.

`open()` returns as soon as the response headers are in, so a stream can be
relayed chunk by chunk. The HTTP client is gateway.upstream.httpclient (see there for why
not aiohttp or httpx on this path).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

from cordon.errors import (
    ConnectTimeout,
    HttpClientError,
    ResponseTimeout,
    ResponseTooLargeError,
    UpstreamError,
    UpstreamTimeout,
    UpstreamTooLargeError,
)
from gateway.upstream import httpclient
from gateway.upstream.providers import Target

ANTHROPIC_VERSION = "2023-06-01"


def auth_headers(target: Target, passthrough: Mapping[str, str]) -> dict[str, str]:
    """Headers for the provider: the target's own key, never the caller's."""
    headers = {"content-type": "application/json", "user-agent": "cordon-gateway"}
    if target.api == "anthropic":
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


class UpstreamClient:
    def __init__(
        self, guard: httpclient.AddressGuard | None = None, ca_bundle: str | None = None
    ) -> None:
        self._client = httpclient.HttpClient(guard=guard, ca_bundle=ca_bundle)

    @property
    def http(self) -> httpclient.HttpClient:
        return self._client

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._client.close()

    async def open(
        self, target: Target, path: str, body: bytes, passthrough: Mapping[str, str]
    ) -> UpstreamResponse:
        timeouts = target.timeouts
        try:
            response = await self._client.post(
                target.base_url + path,
                body,
                auth_headers(target, passthrough),
                connect=timeouts.connect,
                first_byte=timeouts.first_byte,
                total=timeouts.total,
            )
        except (ConnectTimeout, ResponseTimeout) as exc:
            raise UpstreamTimeout(f"{target.id}: {exc}") from exc
        except HttpClientError as exc:
            raise UpstreamError(f"{target.id}: {exc}") from exc
        return UpstreamResponse(response)
