"""Where a process connects to NATS, and as whom.

An endpoint is a server URL that carries no secret plus, for an nkey identity, the
file that holds the user's nkey seed (written 0600; the server is configured with the
public key only and checks a signature over a fresh challenge, so nothing that could
log in ever crosses the wire or sits in a server config). Settings give an endpoint
as `{"url": ..., "nkey_seed_file": ...}` (the file relative to the settings file), or
as a bare URL for a server that needs no credentials or takes them in the URL.

`url` may name every node of a cluster, comma-separated (`nats://a:4222,nats://b:4222`,
as the `nats` CLI takes them): the client connects to one and, when that node goes
away, to another.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # settings name endpoints in processes that never dial NATS (a sidecar)
    from nats.aio.client import Client as NATS

__all__ = ["Endpoint"]


@dataclass(frozen=True)
class Endpoint:
    url: str
    seed_file: Path | None = None

    @classmethod
    def from_settings(cls, raw: object, base: Path | None = None) -> Endpoint:
        """An endpoint as a settings file gives it; `base` is that file's folder."""
        if isinstance(raw, str):
            return cls(raw)
        if isinstance(raw, Mapping) and isinstance(raw.get("url"), str):
            seed = raw.get("nkey_seed_file")
            if seed is None:
                return cls(raw["url"])
            return cls(raw["url"], (base or Path.cwd()) / str(seed))
        # A ValueError: settings loaders name the file it came from (`cordon.settings`).
        raise ValueError('a NATS endpoint is a URL or {"url": ..., "nkey_seed_file": ...}')

    @property
    def servers(self) -> list[str]:
        """Every server URL this endpoint names."""
        return [url.strip() for url in self.url.split(",") if url.strip()]

    def to_settings(self) -> dict[str, str]:
        settings = {"url": self.url}
        if self.seed_file is not None:
            settings["nkey_seed_file"] = str(self.seed_file)
        return settings

    def options(self) -> dict[str, Any]:
        """`nats.connect` keyword arguments for this endpoint."""
        options: dict[str, Any] = {"servers": self.servers}
        if self.seed_file is not None:
            options["nkeys_seed"] = str(self.seed_file)
        return options

    async def connect(self, **options: Any) -> NATS:
        """A plain connection (for commands and setup; processes use `cordon.nats.connect`)."""
        import nats

        return await nats.connect(**self.options(), **options)
