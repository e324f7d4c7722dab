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

from cordon.errors import CordonError, UnreadableBundleError

PAGE = 10_000  # the audit API's largest bundle


def export(args: argparse.Namespace) -> int:
    """One bundle file, or one per page of 10,000 records (OUT.0001.json, ...); with
    --witness, each page carries the central witness's cosignatures of its checkpoints."""
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
        try:
            page = _get(f"{args.api.rstrip('/')}/v1/export?from_seq={first}&to_seq={last}", token)
            if args.witness:
                page = _with_cosignatures(page, args.witness, token)
        except _Refused as exc:
            print(f"cordon audit export: {exc}", file=sys.stderr)
            return 1
        out.write_bytes(page)
        print(f"wrote records {first}..{last} to {out}")
    return 0


class _Refused(CordonError):
    """An API said no, or could not be reached (its message says which)."""


def _get(url: str, token: str) -> bytes:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, headers={"authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=600) as response:
            body: bytes = response.read()
            return body
    except urllib.error.HTTPError as exc:
        raise _Refused(f"{exc.code}: {exc.read().decode(errors='replace')}") from exc
    except OSError as exc:
        raise _Refused(str(exc)) from exc


def _with_cosignatures(page: bytes, witness: str, token: str) -> bytes:
    """The bundle with the witness's cosignature of each checkpoint it holds."""
    bundle = json.loads(page)
    notes = [bundle["checkpoint"], *(o["checkpoint"] for o in bundle["older_checkpoints"])]
    cosigned = []
    for note in notes:
        size = int(note["note"].split("\n")[1])
        url = f"{witness.rstrip('/')}/v1/witness/{bundle['region']}/checkpoints/{size}"
        verdict = json.loads(_get(url, token))
        cosigned.append({"size": size, "cosignature": verdict.get("cosignature")})
    bundle["witness"] = cosigned
    return json.dumps(bundle).encode()


def verify(args: argparse.Namespace) -> int:
    from cordon.log import bundle

    try:
        data: Any = json.loads(args.bundle.read_bytes())
        pins = _pinned_keys(args)
        region = str(data.get("region")) if isinstance(data, dict) else ""
        witness = _raw_key(_text_or_file(args.witness_key)) if args.witness_key else None
        report = bundle.verify(data, pins.get(region, pins.get("*")), witness)
    except (OSError, ValueError, UnreadableBundleError) as exc:
        print(f"cordon audit verify: unreadable: {exc}", file=sys.stderr)
        return 2
    for problem in report.problems:
        print(f"FAIL {problem}")
    for seq, intent_id in report.open_intents:
        print(
            f"INCOMPLETE stream intent {intent_id} (seq {seq}): the stream began and no "
            "decision record in this range completes it"
        )
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
        pins["*"] = _raw_key(_text_or_file(args.trust_key))
    return pins


def _text_or_file(value: str) -> str:
    path = Path(value)
    return path.read_text() if path.is_file() else value


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
    p.add_argument(
        "--witness",
        metavar="URL",
        help="the central view (aggregator): add its witness's cosignatures to each bundle",
    )
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
    p.add_argument(
        "--witness-key",
        metavar="HEX|FILE",
        help="the central witness's public key: every checkpoint must carry its cosignature",
    )
    p.set_defaults(func=verify)
