"""`cordon gateway run`: serve one replica with uvicorn."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

# nats-py imports aiohttp whenever it is installed (for websocket connections, which
# a replica never makes); refusing the import keeps ~10 MB out of every replica.
sys.modules.setdefault("aiohttp", None)  # type: ignore[arg-type]

import uvicorn  # noqa: E402

from gateway import settings as settings_module  # noqa: E402
from gateway.http.app import create_app  # noqa: E402
from gateway.http.connections import guarded_protocol  # noqa: E402
from gateway.runtime import build_runtime  # noqa: E402


def run(config_path: Path) -> None:
    settings = settings_module.load(config_path)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    uvicorn.run(
        create_app(build_runtime(settings)),
        host=settings.host,
        port=settings.port,
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
