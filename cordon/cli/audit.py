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

from cordon.errors import UnreadableBundleError

PAGE = 10_000  # the audit API's largest bundle


def export(args: argparse.Namespace) -> int:
    """One bundle file, or one per page of 10,000 records (OUT.0001.json, ...)."""
    import urllib.error
    import urllib.request

    pages = list(range(args.from_seq, args.to_seq + 1, PAGE))
    for number, first in enumerate(pages, start=1):
        last = min(first + PAGE - 1, args.to_seq)
        out = (
            args.out if len(pages) == 1 else args.out.with_suffix(f".{number:04d}{args.out.suffix}")
        )
        url = f"{args.api.rstrip('/')}/v1/export?from_seq={first}&to_seq={last}"
        try:
            with urllib.request.urlopen(url, timeout=600) as response:
                out.write_bytes(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            print(f"cordon audit export: {exc.code}: {detail}", file=sys.stderr)
            return 1
        except OSError as exc:
            print(f"cordon audit export: {exc}", file=sys.stderr)
            return 1
        print(f"wrote records {first}..{last} to {out}")
    return 0


def verify(args: argparse.Namespace) -> int:
    from cordon.log import bundle

    try:
        data: Any = json.loads(args.bundle.read_bytes())
        report = bundle.verify(data)
    except (OSError, ValueError, UnreadableBundleError) as exc:
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
