"""`cordon nats provision`: create or bring up to date every stream and bucket.

It is the one command that uses the provisioning identities; the running processes
cannot change a stream. Streams and buckets keep three copies in a place whose
endpoint names three or more servers (a cluster), one otherwise. Run it at setup, and
again when a replica's `/v1/cordon/policy` shows a `records_retention_shortfall` (a pack
asks to keep records longer than `RECORDS` does): it raises retention to what the
longest valid pack asks, never lowers it. Credentials come from a file, never from the command line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from cordon_cli.local import DEV_DIR


def provision(args: argparse.Namespace) -> int:
    from cordon.estate.plan import replicas_for
    from cordon.nats import Endpoint
    from cordon.nats.provision import DEFAULT_RECORDS_RETENTION_DAYS, Targets
    from cordon.nats.provision import provision as run

    described: dict[str, Any] = json.loads(args.endpoints.read_text())
    nats, base = described["nats"], args.endpoints.parent

    def endpoint(raw: object) -> Endpoint:
        return Endpoint.from_settings(raw, base)

    central = endpoint(nats["central"]["provision"])
    regions = {
        name: (endpoint(region["audit"]["provision"]), endpoint(region["xr"]["provision"]))
        for name, region in nats["regions"].items()
    }
    # A place whose endpoint names three servers is a cluster: R3 (`replicas` overrides).
    replicas = {"central": replicas_for(len(central.servers))}
    replicas |= {name: replicas_for(len(audit.servers)) for name, (audit, _) in regions.items()}
    targets = Targets(
        central=central,
        regions=regions,
        pack_trust=tuple(described.get("pack_trust", ())),
        records_retention_days=args.records_retention_days or DEFAULT_RECORDS_RETENTION_DAYS,
        replicas=replicas | described.get("replicas", {}),
    )
    for region, days in asyncio.run(run(targets)).items():
        kept = "forever" if days is None else f"{days:g} days"
        print(f"{region}: streams and buckets in place; RECORDS keeps records {kept}")
    return 0


def add_parser(commands: Any) -> None:
    nats = commands.add_parser("nats", help="NATS setup (the provisioning identity)")
    actions = nats.add_subparsers(dest="action", required=True)
    p = actions.add_parser("provision", help="create or update every stream and bucket")
    p.add_argument(
        "--endpoints",
        type=Path,
        default=DEV_DIR / "endpoints.json",
        help="the provisioning identities (endpoints.json's shape; default: the dev stack's)",
    )
    p.add_argument(
        "--records-retention-days",
        type=float,
        help="keep RECORDS at least this long (default 365; never shortened)",
    )
    p.set_defaults(func=provision)
    from cordon_cli import estate, natsmetrics

    estate.add_parsers(actions)
    natsmetrics.add_parsers(actions)
