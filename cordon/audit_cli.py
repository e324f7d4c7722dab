"""`cordon audit ...`: export a range of a region's records, and verify a bundle offline.

export   fetch records FROM..TO from a regional audit API as a bundle file
verify   check a bundle with nothing but the region's public key inside it:
         exit 0 all good, 1 verification failed (each problem printed), 2 unreadable
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def export(args: argparse.Namespace) -> int:
    import urllib.error
    import urllib.request

    url = f"{args.api.rstrip('/')}/v1/export?from_seq={args.from_seq}&to_seq={args.to_seq}"
    try:
        with urllib.request.urlopen(url, timeout=600) as response:
            args.out.write_bytes(response.read())
    except urllib.error.HTTPError as exc:
        print(
            f"cordon audit export: {exc.code}: {exc.read().decode(errors='replace')}",
            file=sys.stderr,
        )
        return 1
    except OSError as exc:
        print(f"cordon audit export: {exc}", file=sys.stderr)
        return 1
    print(f"wrote records {args.from_seq}..{args.to_seq} to {args.out}")
    return 0


def verify(args: argparse.Namespace) -> int:
    from gateway import bundle

    try:
        data: Any = json.loads(args.bundle.read_bytes())
        report = bundle.verify(data)
    except (OSError, ValueError, bundle.UnreadableBundleError) as exc:
        print(f"cordon audit verify: unreadable: {exc}", file=sys.stderr)
        return 2
    for problem in report.problems:
        print(f"FAIL {problem}")
    verdict = "OK" if report.ok else "FAILED"
    print(
        f"{verdict}: {report.records} records, {report.enrolments} enrolments, "
        f"{report.checkpoints} checkpoints checked; {len(report.problems)} problems"
    )
    return 0 if report.ok else 1


def add_parser(commands: Any) -> None:
    audit = commands.add_parser("audit", help="export and verify a region's records")
    actions = audit.add_subparsers(dest="action", required=True)
    p = actions.add_parser("export", help="fetch a range of records as a verifiable bundle")
    p.add_argument("--api", required=True, help="the regional audit API's base URL")
    p.add_argument("--from", dest="from_seq", type=int, default=1)
    p.add_argument("--to", dest="to_seq", type=int, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=export)
    p = actions.add_parser(
        "verify", help="verify a bundle offline (exit 0 good, 1 failed, 2 unreadable)"
    )
    p.add_argument("bundle", type=Path)
    p.set_defaults(func=verify)
