"""`cordon token new`: issue a bearer token for one of the HTTP APIs' roles.

Prints the token once, and the settings entry (its SHA-256, never the token) to add to
the `tokens` of the audit APIs and the aggregator, or the `admin_tokens` of replicas.
Rotate by issuing a new token, adding its entry, handing it over, then removing the
old entry and restarting the API (docs/security.md).
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def new(args: argparse.Namespace) -> int:
    from cordon.tokens import grant_settings, new_token

    token = new_token()
    entry = grant_settings(args.name, token, [args.role], args.region or ["*"])
    print(f"token (shown once; give it to {args.name} over a private channel):\n  {token}")
    print("settings entry (add it to the APIs' tokens / admin_tokens):")
    print("  " + json.dumps(entry))
    return 0


def add_parser(commands: Any) -> None:
    from cordon.tokens import ROLES

    token = commands.add_parser("token", help="issue bearer tokens for the HTTP APIs")
    actions = token.add_subparsers(dest="action", required=True)
    p = actions.add_parser("new", help="a new token and the settings entry that accepts it")
    p.add_argument("--name", required=True, help="who it is for (recorded on every access)")
    p.add_argument("--role", required=True, choices=ROLES)
    p.add_argument(
        "--region",
        action="append",
        help="a region it is good for (repeat for several); default every region",
    )
    p.set_defaults(func=new)
