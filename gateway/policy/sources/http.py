"""A replica's signed active pack, polled over HTTP from a gateway or sidecar that
serves it (`GET /v1/cordon/pack`, to tokens with the `policy` role): how an
application governed in-process follows the same policy as the gateway beside it.

Only the signed bytes travel; this source does not judge them. The activation verifies
the owners' signatures against `pack_trust` and refuses what they did not sign, so a
source that lies (or a man in the middle) can at worst withhold a new pack, never
impose one. Each poll sends the last ETag: an unchanged pack costs a 304.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

from cordon.errors import ConfigError, HttpClientError, PolicySourceError
from gateway.policy.sources.update import (
    MAX_SOURCE_BYTES,
    PolicySource,
    SourceUpdate,
    digest,
    redacted_url,
)
from gateway.upstream import httpclient

__all__ = ["PACK_PATH", "HttpSource"]

PACK_PATH = "/v1/cordon/pack"
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
REFETCH_EVERY = 6  # polls: a pack refused for a passing reason is asked for again
TIMEOUT_S = 10.0


class HttpSource(PolicySource):
    """Yields the served pack at start, then whenever its ETag changes."""

    kind = "http"

    def __init__(
        self, url: str, token: str, poll_interval_s: float, ca_bundle: str | None = None
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"policy_url {redacted_url(url)!r} is not an http(s) URL")
        if parts.scheme == "http" and parts.hostname not in LOOPBACK:
            # Signatures keep out a pack nobody trusted, not an older one a man in the
            # middle replays to a worker that has seen none yet.
            raise ConfigError(
                f"policy_url {redacted_url(url)!r}: plain http only to a sidecar on "
                "loopback; use https"
            )
        if not poll_interval_s > 0:
            raise ConfigError(f"poll interval {poll_interval_s!r} must be positive")
        self.url = url.rstrip("/") + PACK_PATH
        self.poll_interval_s = poll_interval_s
        self._token = token
        self._etag: str | None = None
        self._polls = 0
        self._client = httpclient.HttpClient(max_idle_per_origin=1, ca_bundle=ca_bundle)
        super().__init__(redacted_url(url))  # logs, status and records: no credentials

    async def updates(self) -> AsyncIterator[SourceUpdate]:
        while True:
            try:
                found = await self.poll_once()
            except PolicySourceError as exc:
                self._failed(str(exc))
            else:
                self._recovered()
                if found is not None:
                    yield found
            await asyncio.sleep(self.poll_interval_s)

    async def poll_once(self) -> SourceUpdate | None:
        """The served pack if it changed since the last poll; None if not.
        `PolicySourceError` if it could not be read."""
        headers = {"authorization": f"Bearer {self._token}", "accept": "application/json"}
        self._polls += 1
        if self._etag and self._polls % REFETCH_EVERY:  # now and then the whole pack again:
            headers["if-none-match"] = self._etag  # one refused for a passing reason retries
        try:
            response = await self._client.request(
                "GET",
                self.url,
                b"",
                headers,
                connect=TIMEOUT_S,
                first_byte=TIMEOUT_S,
                total=TIMEOUT_S,
            )
            body = await response.read(MAX_SOURCE_BYTES)
        except HttpClientError as exc:
            raise PolicySourceError(f"{self.where}: {exc}") from exc
        if response.status == 304:
            return None
        if response.status != 200:
            raise PolicySourceError(f"{self.where}: answered {response.status}: {body[:200]!r}")
        self._etag = response.headers.get("etag")
        origin = {"url": self.where, "digest": digest(body)}
        revision = response.headers.get("x-cordon-pack-revision")
        if revision:
            origin["served_revision"] = revision
        return SourceUpdate(body, origin)

    def close(self) -> None:
        self._client.close()
