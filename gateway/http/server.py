"""`cordon gateway run`: serve one replica with uvicorn (`serve`, which the sidecar
uses too)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

# Refused so that nothing loads them: nats-py imports aiohttp whenever it is installed
# (for websocket connections, which a replica never makes; ~10 MB), and uvicorn
# watchfiles for --reload, never used here (~1 MB).
for _unused in ("aiohttp", "watchfiles"):
    sys.modules.setdefault(_unused, None)  # type: ignore[arg-type]

import uvicorn  # noqa: E402

from gateway import settings as settings_module  # noqa: E402
from gateway.http.app import create_app  # noqa: E402
from gateway.http.connections import guarded_protocol  # noqa: E402
from gateway.runtime import build_runtime  # noqa: E402
from gateway.settings import GatewaySettings  # noqa: E402

__all__ = ["log_to_stderr", "run", "serve"]


def run(config_path: Path) -> None:
    settings = settings_module.load(config_path)
    log_to_stderr()
    serve(create_app(build_runtime(settings)), settings)


def log_to_stderr() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")


def serve(app: Any, settings: GatewaySettings, fd: int | None = None) -> None:
    """Serve `app` on the settings' host and port (or on the listening socket `fd`)
    until a signal stops it."""
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        fd=fd,
        access_log=False,
        log_level="warning",
        loop="auto",
        # httptools, with slow, oversized and surplus connections refused (connections.py)
        http=guarded_protocol(settings.connections),
        ws="none",  # no route speaks WebSocket: an upgrade request is served as plain HTTP
        lifespan="on",
        # The gateway is the edge: it trusts no X-Forwarded-* and saves the middleware.
        proxy_headers=False,
        server_header=False,
    )
