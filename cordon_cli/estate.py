"""`cordon nats identities` and `cordon nats render`: a deployment's NATS servers from
its one description (deploy/nats/estate.yaml).

`identities` makes an nkey user per role (the seed in a 0600 file, kept if it is there
already: running it again rotates nothing) and lists their public keys; `render`
writes every server's config from the description and those public keys. Configs hold
no secret: a region's leaf seed is read from `$CORDON_LEAF_SEED`, which its servers
get from a Secret.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

LEAF_SEED_VARIABLE = "$CORDON_LEAF_SEED"


def _description(path: Path) -> Any:
    import yaml

    from cordon.estate.plan import describe

    return describe(yaml.safe_load(path.read_text()))


def identities(args: argparse.Namespace) -> int:
    from cordon.estate.identities import Identity, new_identity, public_key_of
    from cordon.estate.plan import identity_names

    description = _description(args.estate)
    out: Path = args.out
    public = {}
    for name in identity_names(description.estate.regions):
        seed_file = out / f"{name}.nk"
        each = (
            Identity(public_key_of(seed_file), str(seed_file))
            if seed_file.exists()
            else new_identity(seed_file)
        )
        public[name] = each.public_key
    (out / "public-keys.json").write_text(json.dumps(public, indent=2) + "\n")
    print(f"{len(public)} identities in {out} (seeds 0600; public keys in public-keys.json)")
    return 0


def render(args: argparse.Namespace) -> int:
    from cordon.estate.plan import Material, render

    description = _description(args.estate)
    estate = description.estate
    material = Material(
        public_keys=json.loads(args.public_keys.read_text()),
        leaf_seeds=dict.fromkeys(estate.regions, LEAF_SEED_VARIABLE),
        tls=description.node_tls(),
    )
    configs = render(estate, material)
    for cluster in (estate.central, *estate.regions.values()):
        folder: Path = args.out / cluster.name
        folder.mkdir(parents=True, exist_ok=True)
        for node in cluster.nodes:
            # Named as the server's pod is (the host's first label): a StatefulSet pod
            # starts `nats-server -c <its name>.conf`.
            (folder / f"{node.host.split('.')[0]}.conf").write_text(configs[node.name])
        print(
            f"{cluster.name}: {len(cluster.nodes)} servers, streams and buckets R{cluster.replicas}"
        )
    return 0


def add_parsers(actions: Any) -> None:
    estate_help = "the estate's description (deploy/nats/estate.yaml)"
    p = actions.add_parser("identities", help="an nkey user per role (seeds kept if present)")
    p.add_argument("--estate", type=Path, default=Path("deploy/nats/estate.yaml"), help=estate_help)
    p.add_argument("--out", type=Path, required=True, help="folder for the seeds (0600)")
    p.set_defaults(func=identities)
    p = actions.add_parser("render", help="every server's config from the description")
    p.add_argument("--estate", type=Path, default=Path("deploy/nats/estate.yaml"), help=estate_help)
    p.add_argument(
        "--public-keys", type=Path, required=True, help="public-keys.json from `identities`"
    )
    p.add_argument("--out", type=Path, required=True, help="folder: <place>/<pod>.conf")
    p.set_defaults(func=render)
