"""`cordon nats exporter`: NATS server metrics for Prometheus, named as the NATS
project's prometheus-nats-exporter names them (cordon/nats/exporter.py).

For where that exporter cannot run: `make run` starts this over every server of the
local topology; Kubernetes runs the real exporter beside each server instead.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
from typing import Any

__all__ = ["add_parsers", "exporter"]

DEFAULT_PORT = 7777  # the exporter's own default


def exporter(args: argparse.Namespace) -> int:
    from cordon.errors import ConfigError
    from cordon.nats.exporter import parse_server, serve

    try:
        servers = [parse_server(each) for each in args.url]
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    stop = serve(servers, args.host, args.port)
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    print(f"serving NATS metrics of {len(servers)} server(s) on {args.host}:{args.port}/metrics")
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    return 0


def add_parsers(actions: Any) -> None:
    p = actions.add_parser(
        "exporter", help="serve NATS server metrics (/varz, /jsz) as prometheus-nats-exporter"
    )
    p.add_argument(
        "--url",
        action="append",
        required=True,
        help="a server's monitoring URL, [tag,]http://host:8222 (the tag is its server_id)",
    )
    p.add_argument("--host", default="0.0.0.0", help="address to listen on")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to listen on")
    p.set_defaults(func=exporter)
