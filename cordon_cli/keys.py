"""`cordon keys new` and `cordon keys enrol`: a region's signing keys for a deployment.

The regional key vouches for every other key of the region: auditors trust its public
key, and it signs an enrolment for each key a process signs with (each gateway
replica, the sealer, the audit API). Keep the regional key offline once the enrolments
exist; a new replica needs only a new enrolment. Keys are written 0600 and never
replaced: running either command again makes only what is missing.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def _key(path: Path) -> Any:
    from cordon.log.keys import SigningKey

    return SigningKey.load_or_create(path)


def new(args: argparse.Namespace) -> int:
    from cordon.log.keys import public_bytes

    key = _key(args.file)
    print(public_bytes(key.public_key).hex())  # what settings and auditors trust
    return 0


def enrol(args: argparse.Namespace) -> int:
    from cordon.files import write_private
    from cordon.log.enrolment import enrol as sign_enrolment
    from cordon.log.keys import SigningKey

    regional = SigningKey.load(args.regional_key)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.names:
        key = _key(args.out / f"{name}.key")
        enrolment = args.out / f"{name}.enrolment"
        if not enrolment.exists():
            write_private(enrolment, sign_enrolment(regional, args.region, name, key))
        print(f"{name}: {name}.key, {name}.enrolment (key {key.key_id})")
    return 0


def add_parser(commands: Any) -> None:
    keys = commands.add_parser("keys", help="a region's signing keys and enrolments")
    actions = keys.add_subparsers(dest="action", required=True)
    p = actions.add_parser("new", help="a signing key (kept if present); prints its public key")
    p.add_argument("file", type=Path, help="where the key's seed goes (0600)")
    p.set_defaults(func=new)
    p = actions.add_parser("enrol", help="a key per process, each enrolled by the regional key")
    p.add_argument("--regional-key", type=Path, required=True)
    p.add_argument("--region", required=True)
    p.add_argument("--out", type=Path, required=True, help="folder: <name>.key, <name>.enrolment")
    p.add_argument(
        "names", nargs="+", help="replica names as settings give them (cordon-gateway-0, sealer)"
    )
    p.set_defaults(func=enrol)
