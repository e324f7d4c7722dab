"""An open provider response, as every path through `gateway.upstream` returns it."""

from __future__ import annotations

from collections.abc import AsyncIterator

from cordon.errors import (
    HttpClientError,
    ResponseTooLargeError,
    UpstreamError,
    UpstreamTooLargeError,
)
from gateway.upstream import httpclient

__all__ = ["UpstreamResponse"]


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
