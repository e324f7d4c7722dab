"""The `cordon` command line: `gateway`, `sidecar`, `replicator`, `aggregator`, `policy`,
`audit`, `nats`, `keys`, `token` and `tools` subcommands. (The local topology is not
the product's: `python -m cordon_dev up`, from a source checkout.)

Subcommands import their package only when they run, so a gateway process never
loads the replicator, the aggregator or FastAPI.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cordon.errors import CordonError

__all__ = ["SERVER_STACK", "build_parser", "main"]

# The `server` extra's top-level modules: without them the processes cannot start, and
# the CLI says which install brings them.
SERVER_STACK = frozenset(
    {
        "fastapi",
        "httptools",
        "psycopg",
        "psycopg_pool",
        "pydantic",
        "starlette",
        "uvicorn",
        "uvloop",
    }
)


def _config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, required=True, help="settings file (JSON)")


def _gateway(args: argparse.Namespace) -> int:
    if args.action == "run" and _is_config_file(args.config):
        from gateway.sidecar.server import run as run_sidecar

        run_sidecar([args.config])  # the seeds' files: a sidecar enforcing them
    elif args.action == "run":
        from gateway.http.server import run

        run(args.config)
    elif args.action == "seal":
        from gateway.ledger.sealer import run as seal

        seal(args.config)
    else:
        from gateway.ledger.audit_api import run as audit_api

        audit_api(args.config)
    return 0


def _is_config_file(path: Path) -> bool:
    """A configuration file as the seeds print them, rather than a replica's settings."""
    import yaml

    from cordon.packs.config_file import is_config_file

    try:
        return is_config_file(yaml.safe_load(path.read_text()))
    except (OSError, yaml.YAMLError):
        return False  # the replica's own loader says what is wrong with it


def _replicator(args: argparse.Namespace) -> int:
    from replicator.service import run

    run(args.config)
    return 0


def _aggregator(args: argparse.Namespace) -> int:
    from aggregator.api import run

    run(args.config)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cordon", description="Cordon: a multi-region AI governance gateway."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    gateway = commands.add_parser("gateway", help="regional data plane processes")
    actions = gateway.add_subparsers(dest="action", required=True)
    _config_arg(actions.add_parser("run", help="serve one gateway replica (OpenAI-compatible API)"))
    _config_arg(
        actions.add_parser(
            "seal", help="turn the region's records into metadata-only summaries, in order"
        )
    )
    _config_arg(actions.add_parser("audit-api", help="serve the read-only regional auditor API"))
    gateway.set_defaults(func=_gateway)

    replicator = commands.add_parser("replicator", help="central policy fan-out")
    r_actions = replicator.add_subparsers(dest="action", required=True)
    _config_arg(
        r_actions.add_parser("run", help="carry published packs to every region; export lag")
    )
    replicator.set_defaults(func=_replicator)

    aggregator = commands.add_parser("aggregator", help="central cross-region audit view")
    a_actions = aggregator.add_subparsers(dest="action", required=True)
    _config_arg(a_actions.add_parser("run", help="consume summaries and serve the view API"))
    aggregator.set_defaults(func=_aggregator)

    from cordon_cli import audit, keys, policy, provision, sidecar, token, tools

    policy.add_parser(commands)
    audit.add_parser(commands)
    provision.add_parser(commands)
    token.add_parser(commands)
    keys.add_parser(commands)
    tools.add_parser(commands)
    sidecar.add_parser(commands)

    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except CordonError as exc:
        print(f"cordon {args.command}: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in SERVER_STACK:
            raise
        print(
            f"cordon {args.command}: this command needs the server stack, which is not"
            f" installed ({exc.name}): pip install 'cordon[server]'",
            file=sys.stderr,
        )
        return 2
    return code
