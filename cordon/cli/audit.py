"""`cordon audit ...`: export a range of a region's records, and verify a bundle offline.

export   fetch records FROM..TO from a regional audit API as a bundle file, with an
         auditor token (CORDON_AUDIT_TOKEN, or --token; the variable keeps it out of
         the process list and shell history)
verify   check a bundle offline against the region's public key, pinned by the auditor
         (--trust-key, or --trust-keys for several regions); the key a bundle carries
         proves nothing. Exit 0 all good, 1 verification failed or no key pinned (each
         problem printed), 2 unreadable.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from cordon.errors import UnreadableBundleError

PAGE = 10_000  # the audit API's largest bundle


def export(args: argparse.Namespace) -> int:
    """One bundle file, or one per page of 10,000 records (OUT.0001.json, ...)."""
    import urllib.error
    import urllib.request

    token = args.token or os.environ.get("CORDON_AUDIT_TOKEN")
    if not token:
        print("cordon audit export: no auditor token: set CORDON_AUDIT_TOKEN", file=sys.stderr)
        return 2
    pages = list(range(args.from_seq, args.to_seq + 1, PAGE))
    for number, first in enumerate(pages, start=1):
        last = min(first + PAGE - 1, args.to_seq)
        out = (
            args.out if len(pages) == 1 else args.out.with_suffix(f".{number:04d}{args.out.suffix}")
        )
        url = f"{args.api.rstrip('/')}/v1/export?from_seq={first}&to_seq={last}"
        try:
            request = urllib.request.Request(url, headers={"authorization": f"Bearer {token}"})
            with urllib.request.urlopen(request, timeout=600) as response:
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
        pins = _pinned_keys(args)
        region = str(data.get("region")) if isinstance(data, dict) else ""
        report = bundle.verify(data, pins.get(region, pins.get("*")))
    except (OSError, ValueError, UnreadableBundleError) as exc:
        print(f"cordon audit verify: unreadable: {exc}", file=sys.stderr)
        return 2
    for problem in report.problems:
        print(f"FAIL {problem}")
    counts = (
        f"{report.records} records, {report.enrolments} enrolments, "
        f"{report.checkpoints} checkpoints checked; {len(report.problems)} problems"
    )
    if not report.pinned:
        print(
            f"NOT VERIFIED: {counts} against the key the bundle carries, which proves "
            f"nothing. Pin {report.region}'s public key from a source you trust: "
            "--trust-key HEX|FILE, or --trust-keys FILE ({region: hex})"
        )
        return 1
    print(f"{'OK' if report.ok else 'FAILED'}: {counts}")
    return 0 if report.ok else 1


def _pinned_keys(args: argparse.Namespace) -> dict[str, bytes]:
    """Region -> raw public key; "*" for a --trust-key that names no region."""
    pins: dict[str, bytes] = {}
    if args.trust_keys is not None:
        named = json.loads(args.trust_keys.read_text())
        if not isinstance(named, dict):
            raise ValueError(f"{args.trust_keys}: expected {{region: hex public key}}")
        pins |= {str(region): _raw_key(str(value)) for region, value in named.items()}
    if args.trust_key is not None:
        path = Path(args.trust_key)
        pins["*"] = _raw_key(path.read_text() if path.is_file() else args.trust_key)
    return pins


def _raw_key(hex_key: str) -> bytes:
    raw = bytes.fromhex(hex_key.strip())
    if len(raw) != 32:
        raise ValueError("a regional public key is 32 bytes of hex (raw Ed25519)")
    return raw


def add_parser(commands: Any) -> None:
    audit = commands.add_parser("audit", help="export and verify a region's records")
    actions = audit.add_subparsers(dest="action", required=True)
    p = actions.add_parser("export", help="fetch a range of records as a verifiable bundle")
    p.add_argument("--api", required=True, help="the regional audit API's base URL")
    p.add_argument("--from", dest="from_seq", type=int, default=1)
    p.add_argument("--to", dest="to_seq", type=int, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--token", help="auditor token (prefer the CORDON_AUDIT_TOKEN variable)")
    p.set_defaults(func=export)
    p = actions.add_parser(
        "verify", help="verify a bundle offline (exit 0 good, 1 failed, 2 unreadable)"
    )
    p.add_argument("bundle", type=Path)
    p.add_argument(
        "--trust-key",
        metavar="HEX|FILE",
        help="the region's public key (hex, or a file holding it), from a source you trust",
    )
    p.add_argument(
        "--trust-keys",
        type=Path,
        metavar="FILE",
        help='JSON {"region": "hex public key", ...}, e.g. endpoints.json regional_public_keys',
    )
    p.set_defaults(func=verify)
