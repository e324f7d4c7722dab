"""The `cordon` command line: `gateway`, `replicator`, `aggregator`, `policy`, `audit`,
`nats`, `keys`, `token` and `dev` subcommands.

Subcommands import their package only when they run, so a gateway process never
loads the replicator, the aggregator or FastAPI.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from cordon.dev import DEV_DIR
from cordon.errors import CordonError

__all__ = ["build_parser", "main"]


def _config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, required=True, help="settings file (JSON)")


def _gateway(args: argparse.Namespace) -> int:
    if args.action == "run":
        from gateway.http.server import run

        run(args.config)
    elif args.action == "seal":
        from gateway.ledger.sealer import run as seal

        seal(args.config)
    else:
        from gateway.ledger.audit_api import run as audit_api

        audit_api(args.config)
    return 0


def _replicator(args: argparse.Namespace) -> int:
    from replicator.service import run

    run(args.config)
    return 0


def _aggregator(args: argparse.Namespace) -> int:
    from aggregator.api import run

    run(args.config)
    return 0


def _dev(args: argparse.Namespace) -> int:
    if args.action == "mock-provider":
        from cordon.dev.mock_provider import run

        run(args.host, args.port, args.behaviour, args.tls_cert, args.tls_key)
        return 0
    from cordon.dev.stack import DevStack

    stack = DevStack(args.dir, fixed_ports=True)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _interrupt)
    try:
        stack.start()
        _print_welcome(stack)
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        print("\nstopping...", flush=True)
        stack.stop()
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _print_welcome(stack: object) -> None:
    from cordon.dev.stack import DevStack

    assert isinstance(stack, DevStack)
    e = stack.endpoints
    eu = e.gateways.get("eu-west", next(iter(e.gateways.values())))
    print(
        f"""
Cordon is up. Endpoints (also in {stack.root / "endpoints.json"}):
  gateways     {", ".join(f"{r}={u}" for r, u in e.gateways.items())}
  audit APIs   {", ".join(f"{r}={u}" for r, u in e.audit_apis.items())}
  aggregator   {e.aggregator}/v1/stats
  replicator   {e.replicator_metrics}
  mock model   {e.mock_provider}
  logs         {stack.root / "logs"}

Try it:
  curl -s {eu}/v1/chat/completions -H 'authorization: Bearer {e.api_key}' \\
       -H 'content-type: application/json' \\
       -d '{{"model": "mock-gpt", "messages": [{{"role": "user", "content": "hello"}}]}}'

  .venv/bin/python -c "from openai import OpenAI
c = OpenAI(base_url='{eu}/v1', api_key='{e.api_key}')
r = c.chat.completions.create(model='mock-gpt', messages=[{{'role': 'user', 'content': 'hi'}}])
print(r.choices[0].message.content)"

Ctrl-C stops everything.""",
        flush=True,
    )


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

    from cordon.cli import audit, keys, policy, provision, token

    policy.add_parser(commands)
    audit.add_parser(commands)
    provision.add_parser(commands)
    token.add_parser(commands)
    keys.add_parser(commands)

    dev = commands.add_parser("dev", help="local development")
    d_actions = dev.add_subparsers(dest="action", required=True)
    up = d_actions.add_parser("up", help="start central + two regions and every process locally")
    up.add_argument("--dir", type=Path, default=DEV_DIR, help="where state and logs go")
    mock = d_actions.add_parser("mock-provider", help="serve the mock OpenAI-style provider")
    mock.add_argument("--host", default="127.0.0.1")
    mock.add_argument("--port", type=int, default=8600)
    mock.add_argument(
        "--behaviour",
        choices=[
            "ok",
            "500",
            "429",
            "slow",
            "break-stream",
            "garbage",
            "garbage-stream",
            "echo-error",
            "huge",
        ],
        default="ok",
        help="answer normally, or misbehave on every call (for failover drills)",
    )
    mock.add_argument("--tls-cert", help="serve HTTPS with this certificate (PEM)")
    mock.add_argument("--tls-key", help="the certificate's private key (PEM)")
    dev.set_defaults(func=_dev)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except CordonError as exc:
        print(f"cordon {args.command}: {exc}", file=sys.stderr)
        return 2
    return code
