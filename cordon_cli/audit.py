"""`cordon audit ...`: the cross-region picture, a region's records, verified bundles.

summary  the central view in the terminal: per region, records by outcome, freshness,
         checkpoints verified and failed, gaps (the aggregator; auditor or SRE token)
enforcement
         where packs were enforced (gateway, sidecar, in-process SDK), and per
         SDK-governed agent its SDK records and its gateway calls with a matching
         receipt, an unmatched one, or none. Exit 3 when an agent has calls without a
         receipt (they went around the SDK) or unmatched receipts (the aggregator)
search   a region's records by person, agent, outcome, model, pack revision, kind and
         time range, each verified (a regional audit API; auditor token)
export   fetch records FROM..TO, or those written from --since until --until, from a
         regional audit API as bundle files, with an auditor token
         (CORDON_AUDIT_TOKEN, or --token; the variable keeps it out of the process
         list and shell history)
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


def _token(args: argparse.Namespace, command: str) -> str | None:
    token: str | None = args.token or os.environ.get("CORDON_AUDIT_TOKEN")
    if not token:
        print(f"cordon audit {command}: no token: set CORDON_AUDIT_TOKEN", file=sys.stderr)
    return token


def export(args: argparse.Namespace) -> int:
    """One bundle file, or one per page of 10,000 records (OUT.0001.json, ...); with
    --witness, each page carries the central witness's cosignatures of its checkpoints.
    With --since/--until, the range is the first to the last record written then; with
    --person, only that person's records, each run of consecutive ones a bundle of its
    own (nobody else's record is exported with them)."""
    token = _token(args, "export")
    if not token:
        return 2
    try:
        ranges = _ranges(args, token)
    except _Refused as exc:
        print(f"cordon audit export: {exc}", file=sys.stderr)
        return 1
    if not ranges:
        print("cordon audit export: no records in that time range", file=sys.stderr)
        return 1
    pages = [
        (first, min(first + PAGE - 1, last))
        for start, last in ranges
        for first in range(start, last + 1, PAGE)
    ]
    total = sum(last - first + 1 for first, last in pages)
    written = 0
    for number, (first, last) in enumerate(pages, start=1):
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
        written += last - first + 1
        done = written * 100 // total
        print(f"[{number}/{len(pages)} {done:3d}%] wrote records {first}..{last} to {out}")
    return 0


def _ranges(args: argparse.Namespace, token: str) -> list[tuple[int, int]]:
    """FROM..TO as given; or the first to the last record written between --since and
    --until; or, with --person, each run of that person's consecutive records."""
    if args.since is None and args.until is None and args.person is None:
        if args.to_seq is None:
            raise _Refused("give --to (and --from), or --since/--until, or --person")
        return [(args.from_seq, args.to_seq)]
    window = {"since": args.since, "until": args.until, "person": args.person}
    seqs = sorted(item["seq"] for item in _search(args.api, token, window))
    if not seqs:
        return []
    if args.person is None:
        return [(seqs[0], seqs[-1])]
    runs = [(seqs[0], seqs[0])]
    for seq in seqs[1:]:
        first, last = runs[-1]
        runs[-1:] = [(first, seq)] if seq == last + 1 else [(first, last), (seq, seq)]
    return runs


def _search(
    api: str, token: str, filters: dict[str, Any], most: int | None = None
) -> list[dict[str, Any]]:
    """Every record the regional search finds for `filters`, page by page."""
    from urllib.parse import urlencode

    found: list[dict[str, Any]] = []
    after = 0
    while True:
        query = {k: v for k, v in filters.items() if v is not None} | {
            "after_seq": after,
            "limit": 1000,
        }
        page = json.loads(_get(f"{api.rstrip('/')}/v1/records/search?{urlencode(query)}", token))
        found += page["items"]
        after = page.get("next_after_seq")
        if after is None or (most is not None and len(found) >= most):
            return found[:most] if most is not None else found


def search(args: argparse.Namespace) -> int:
    token = _token(args, "search")
    if not token:
        return 2
    filters = {
        "person": args.person,
        "agent": args.agent,
        "outcome": args.outcome,
        "model": args.model,
        "pack_revision": args.pack_revision,
        "kind": args.kind,
        "since": args.since,
        "until": args.until,
    }
    try:
        items = _search(args.api, token, filters, args.limit)
    except _Refused as exc:
        print(f"cordon audit search: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(items, indent=2))
        return 0
    rows = [_record_row(item) for item in items]
    _table(["seq", "time", "kind", "outcome", "model or tool", "agent", "person", "ok", "id"], rows)
    print(f"{len(rows)} records")
    return 0


def _record_row(item: dict[str, Any]) -> list[str]:
    record = item.get("record") or {}
    return [
        str(item["seq"]),
        str(record.get("ts", ""))[:23],
        str(item.get("kind", "")),
        str(record.get("outcome") or ""),
        _subject(record),
        str(record.get("agent") or ""),
        str(record.get("person") or ""),
        "yes" if item.get("verified") else "NO",
        str(record.get("id", "")),
    ]


def _subject(record: dict[str, Any]) -> str:
    """What a record is about: its model, or for a tool call (MCP) the tool."""
    tool = record.get("tool")
    if isinstance(tool, dict):
        return f"tool {tool.get('server')}/{tool.get('name')}"
    return str(record.get("model_id") or record.get("model") or "")


def summary(args: argparse.Namespace) -> int:
    """The central view as tables; exit 1 when a region has gaps or failed checkpoints."""
    token = _token(args, "summary")
    if not token:
        return 2
    from urllib.parse import urlencode

    base = args.api.rstrip("/")
    window = urlencode({k: v for k, v in (("since", args.since), ("until", args.until)) if v})
    try:
        fresh = json.loads(_get(f"{base}/v1/freshness", token))["regions"]
        counts = json.loads(_get(f"{base}/v1/counts?{window}", token))["items"]
        gaps = json.loads(_get(f"{base}/v1/gaps", token))
    except _Refused as exc:
        print(f"cordon audit summary: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"freshness": fresh, "counts": counts, "gaps": gaps}, indent=2))
    else:
        _print_summary(fresh, counts, gaps)
    failed = any(gaps["failed_checkpoints"].values()) or gaps["gaps"]
    return 1 if failed else 0


def _print_summary(
    fresh: dict[str, Any], counts: list[dict[str, Any]], gaps: dict[str, Any]
) -> None:
    rows = []
    for region, f in sorted(fresh.items()):
        verified = f["newest_verified_checkpoint"]
        rows.append(
            [
                region,
                str(f["summaries"]),
                str(f["newest_summary_ts"] or "-")[:19],
                str(verified["size"]) if verified else "-",
                str(f["checkpoints_verified"]),
                str(f["checkpoints_failed"]),
                str(f["waiting_for_checkpoint"]),
            ]
        )
    _table(["region", "summaries", "newest", "verified up to", "ok", "FAILED", "waiting"], rows)
    print()
    _table(
        ["region", "outcome", "decisions"],
        [[str(c.get("region")), str(c.get("outcome")), str(c["count"])] for c in counts],
    )
    for gap in gaps["gaps"]:
        print(
            f"GAP {gap['region']}: records {gap['first_seq']}..{gap['last_seq']} missing centrally"
        )
    for region, failures in gaps["failed_checkpoints"].items():
        for failure in failures:
            print(f"FAILED checkpoint {region}/{failure['size']}: {failure['reason']}")


BYPASS = 3  # `cordon audit enforcement`: calls went around an SDK, or a receipt is unmatched
PLACES = ("gateway", "sidecar", "sdk")
AGENT_COUNTS = (
    "sdk_records",
    "gateway_calls_with_receipt",
    "receipts_unmatched",
    "gateway_calls_without_receipt",
)


def enforcement(args: argparse.Namespace) -> int:
    """Where packs were enforced, and each SDK-governed agent's receipts, as tables; exit
    3 when an agent has gateway calls without a receipt or receipts the view cannot
    match, 1 when the aggregator refuses or cannot be reached."""
    token = _token(args, "enforcement")
    if not token:
        return 2
    from urllib.parse import urlencode

    window = {k: v for k, v in (("since", args.since), ("until", args.until)) if v}
    if args.region:
        window["region"] = args.region
    regions: dict[str, Any] = {}
    agents: list[dict[str, Any]] = []
    cursor: str | None = None
    try:
        while True:
            query = urlencode(window | ({"cursor": cursor} if cursor else {}))
            page = json.loads(_get(f"{args.api.rstrip('/')}/v1/enforcement?{query}", token))
            regions, agents = page["regions"], agents + page["agents"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
    except _Refused as exc:
        print(f"cordon audit enforcement: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"regions": regions, "agents": agents}, indent=2))
    else:
        _print_enforcement(regions, agents)
    flagged = any(a["gateway_calls_without_receipt"] or a["receipts_unmatched"] for a in agents)
    return BYPASS if flagged else 0


def _print_enforcement(regions: dict[str, Any], agents: list[dict[str, Any]]) -> None:
    seen = {place for entry in regions.values() for place in entry["by_enforced_by"]}
    places = [*PLACES, *sorted(seen - set(PLACES))]
    _table(
        ["region", *places],
        [
            [region, *(str(entry["by_enforced_by"].get(place, 0)) for place in places)]
            for region, entry in sorted(regions.items())
        ],
    )
    print()
    _table(
        ["region", "agent", "sdk records", "with receipt", "UNMATCHED", "WITHOUT receipt"],
        [[a["region"], a["agent"], *(str(a[count]) for count in AGENT_COUNTS)] for a in agents],
    )
    print(f"{len(agents)} agents with SDK records")
    for a in agents:
        where = f"{a['region']}/{a['agent']}"
        if a["gateway_calls_without_receipt"]:
            print(
                f"BYPASS {where}: {a['gateway_calls_without_receipt']} gateway or sidecar "
                "calls name no SDK record (they went around the SDK)"
            )
        if a["receipts_unmatched"]:
            print(
                f"UNMATCHED {where}: {a['receipts_unmatched']} calls name an SDK record "
                "the view does not hold (forged, or not shipped yet)"
            )


def _table(header: list[str], rows: list[list[str]]) -> None:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)
    ]
    for line in [header, *rows]:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        )


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
    p.add_argument("--to", dest="to_seq", type=int, help="last stream sequence")
    p.add_argument("--since", help="instead of --from/--to: records written from (RFC 3339)")
    p.add_argument("--until", help="... until (exclusive)")
    p.add_argument("--person", help="only this person's records (the raw id the region holds)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--token", help="auditor token (prefer the CORDON_AUDIT_TOKEN variable)")
    p.add_argument(
        "--witness",
        metavar="URL",
        help="the central view (aggregator): add its witness's cosignatures to each bundle",
    )
    p.set_defaults(func=export)

    p = actions.add_parser("summary", help="the central view: regions, outcomes, freshness, gaps")
    p.add_argument("--api", required=True, help="the aggregator's base URL")
    p.add_argument("--since", help="count decisions from (RFC 3339)")
    p.add_argument("--until", help="... until (exclusive)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--token", help="auditor or SRE token (prefer CORDON_AUDIT_TOKEN)")
    p.set_defaults(func=summary)

    p = actions.add_parser(
        "enforcement",
        help="where packs were enforced; SDK-governed agents' receipts (exit 3: bypass seen)",
    )
    p.add_argument("--api", required=True, help="the aggregator's base URL")
    p.add_argument("--since", help="count decisions from (RFC 3339)")
    p.add_argument("--until", help="... until (exclusive)")
    p.add_argument("--region", help="only this region")
    p.add_argument("--json", action="store_true")
    p.add_argument("--token", help="auditor or SRE token (prefer CORDON_AUDIT_TOKEN)")
    p.set_defaults(func=enforcement)

    p = actions.add_parser("search", help="a region's records by person, agent, outcome, ...")
    p.add_argument("--api", required=True, help="the regional audit API's base URL")
    for name in ("person", "agent", "outcome", "model", "kind", "since", "until"):
        p.add_argument(f"--{name}")
    p.add_argument("--pack-revision", type=int)
    p.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--token", help="auditor token (prefer CORDON_AUDIT_TOKEN)")
    p.set_defaults(func=search)

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
