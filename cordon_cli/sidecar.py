"""`cordon sidecar`: the gateway as one small process beside an application, enforcing
the configuration file our users already have, with its own signed log.

    cordon sidecar --config sidecar.yaml [--config git-synced.yaml] [--config-source URL]
    cordon sidecar key --config sidecar.yaml      # the log's root key, for auditors to pin
    cordon sidecar export --config sidecar.yaml --out bundle.json [--from N] [--to M]
        [--regional-key HEX]   # region mode: the region's public key, which auditors pin
    cordon sidecar key|export --config app.yaml --sdk-worker N ...
        # the log an application governed in-process (cordon_sdk) keeps, worker N

The files are merged in order (a fragment's `gateway:` keys join the first file's).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from cordon.errors import ConfigError

__all__ = ["add_parser"]


def _config(args: argparse.Namespace) -> Any:
    from gateway.sidecar.config import SidecarConfig

    return SidecarConfig.load(args.config, args.config_source)


def run(args: argparse.Namespace) -> int:
    from gateway.sidecar.server import run as serve

    serve(args.config, args.config_source)
    return 0


def _sdk_state(config: Any, args: argparse.Namespace) -> Path:
    """An in-process SDK worker's state directory (`cordon_sdk`: `sdk/worker-N` under
    the file's state_dir, or under the `state_dir` the application passed to govern())."""
    root = args.state_dir or Path(config.state_dir)
    return root / "sdk" / f"worker-{args.sdk_worker}"


def _root_hex(config: Any, args: argparse.Namespace) -> str:
    """The public key an auditor pins for this log: the sidecar's own log root (made
    on first use), or an SDK worker's (read only: its process made it)."""
    from gateway.sidecar.keys import LocalKeys

    if args.sdk_worker is not None:
        return LocalKeys.existing_root_hex(_sdk_state(config, args) / "keys")
    settings = config.settings
    keys = LocalKeys.load_or_create(config.state_dir / "keys", settings.region, settings.replica)
    return keys.root_public_hex


def key(args: argparse.Namespace) -> int:
    """The log's root key (auditors pin it) and, for a sidecar, the key its own packs are
    signed with (an in-process SDK reading them over `policy_url` trusts it)."""
    from gateway.sidecar.keys import LocalKeys

    config = _config(args)
    if config.mode == "region":  # its key is enrolled by the region's, not a local root
        print("cordon sidecar key: region mode: auditors pin the region's key", file=sys.stderr)
        return 2
    try:
        root = _root_hex(config, args)
    except ConfigError as exc:
        print(f"cordon sidecar key: {exc}", file=sys.stderr)
        return 2
    shown = {"region": config.settings.region, "log_root_public_key": root}
    if args.sdk_worker is None:
        settings = config.settings
        keys = LocalKeys.load_or_create(
            config.state_dir / "keys", settings.region, settings.replica
        )
        shown["policy_public_key"] = keys.policy_public_hex
    print(json.dumps(shown))
    return 0


def export(args: argparse.Namespace) -> int:
    from gateway.sidecar.export import export_bundle

    config = _config(args)
    settings = config.settings
    if config.mode == "region":  # the log's enrolment is the region's: its key is the root
        if not args.regional_key:
            print("cordon sidecar export: region mode needs --regional-key", file=sys.stderr)
            return 2
        root = bytes.fromhex(args.regional_key)
    else:
        try:
            root = bytes.fromhex(_root_hex(config, args))
        except ConfigError as exc:
            print(f"cordon sidecar export: {exc}", file=sys.stderr)
            return 2
    state = _sdk_state(config, args) if args.sdk_worker is not None else config.state_dir
    try:
        bundle = asyncio.run(
            export_bundle(state, settings.region, root, args.from_seq, args.to_seq)
        )
    except LookupError as exc:
        print(f"cordon sidecar export: {exc}", file=sys.stderr)
        return 2
    args.out.write_text(json.dumps(bundle))
    print(f"{len(bundle['records'])} records written to {args.out}")
    return 0


ACTIONS = {"run": run, "key": key, "export": export}


def _dispatch(args: argparse.Namespace) -> int:
    return ACTIONS[args.action](args)


def add_parser(commands: Any) -> None:
    p = commands.add_parser(
        "sidecar", help="one small gateway beside an application, with its own signed log"
    )
    p.add_argument("action", nargs="?", default="run", choices=sorted(ACTIONS))
    p.add_argument(
        "--config",
        type=Path,
        action="append",
        required=True,
        help="a configuration file; repeat to merge fragments in order",
    )
    p.add_argument(
        "--config-source", help="the git repository to poll (path or URL), if no file names it"
    )
    p.add_argument("--out", type=Path, help="export: where to write the bundle")
    p.add_argument("--from", dest="from_seq", type=int, default=1, help="export: first sequence")
    p.add_argument("--to", dest="to_seq", type=int, help="export: last (default: newest sealed)")
    p.add_argument(
        "--regional-key", help="export in region mode: the region's public key (hex), as pinned"
    )
    p.add_argument(
        "--sdk-worker",
        type=int,
        help="key, export: the log of the in-process SDK's worker N (state_dir/sdk/worker-N)",
    )
    p.add_argument(
        "--state-dir",
        type=Path,
        help="with --sdk-worker: the state_dir the application passed to govern()",
    )
    p.set_defaults(func=_dispatch)
