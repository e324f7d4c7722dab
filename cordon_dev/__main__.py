"""`python -m cordon_dev up` (what `make run` runs) and `python -m cordon_dev
mock-provider`: the local topology and the mock model provider, from a source checkout."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from cordon.errors import CordonError
from cordon_dev import DEV_DIR

MOCK_BEHAVIOURS = (
    "ok",
    "500",
    "429",
    "slow",
    "break-stream",
    "garbage",
    "garbage-stream",
    "echo-error",
    "huge",
    "hostile-surrogate",
    "hostile-number",
    "hostile-duplicate",
)


def _up(args: argparse.Namespace) -> int:
    from cordon_dev.stack import DevStack

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


def _mock_provider(args: argparse.Namespace) -> int:
    from cordon_dev.mock_provider import run

    run(args.host, args.port, args.behaviour, args.tls_cert, args.tls_key)
    return 0


def _tool_server(args: argparse.Namespace) -> int:
    from cordon_dev.tool_server import run

    run(args.host, args.port, args.stdio)
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _print_welcome(stack: object) -> None:
    from cordon_dev.stack import DevStack

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
  NATS metrics {e.nats_metrics}
  mock model   {e.mock_provider}
  MCP          {", ".join(f"{r}={u}" for r, urls in e.mcp.items() for u in urls.values())}
  tool server  {e.tool_server} (direct: ungoverned, for comparison)
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
        prog="python -m cordon_dev", description="Cordon's local topology (not shipped)."
    )
    actions = parser.add_subparsers(dest="action", required=True)
    up = actions.add_parser("up", help="start central + two regions and every process locally")
    up.add_argument("--dir", type=Path, default=DEV_DIR, help="where state and logs go")
    up.set_defaults(func=_up)
    mock = actions.add_parser("mock-provider", help="serve the mock OpenAI-style provider")
    mock.add_argument("--host", default="127.0.0.1")
    mock.add_argument("--port", type=int, default=8600)
    mock.add_argument(
        "--behaviour",
        choices=MOCK_BEHAVIOURS,
        default="ok",
        help="answer normally, or misbehave on every call (for failover drills)",
    )
    mock.add_argument("--tls-cert", help="serve HTTPS with this certificate (PEM)")
    mock.add_argument("--tls-key", help="the certificate's private key (PEM)")
    mock.set_defaults(func=_mock_provider)
    tools = actions.add_parser("tool-server", help="serve the dev MCP tool server")
    tools.add_argument("--host", default="127.0.0.1")
    tools.add_argument("--port", type=int, default=8700)
    tools.add_argument("--stdio", action="store_true", help="speak MCP over stdin/stdout")
    tools.set_defaults(func=_tool_server)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except CordonError as exc:  # e.g. a port already taken: say so, no traceback
        print(f"cordon_dev {args.action}: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    raise SystemExit(main())
