"""`cordon policy ...`: write, sign, check, try and publish policy packs.

keygen   make a policy owner's Ed25519 key pair
lint     check a pack against the schema and the gateway's rules (file:line: path: why)
sign     sign a pack for a revision, an expiry and a set of regions
verify   check a signed pack against trusted public keys
test     run a pack over a sample request (and answer) with no server at all
publish  sign if needed, then put the pack on the central POLICY stream
status   where every pack is: published, and enforced by each replica; rollouts
halt     stop a staged rollout where it is (later waves get nothing more)
resume   carry on a halted rollout: its current wave accepted, the next one opened
rollback publish an earlier revision's content again, as a new, higher revision
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cordon.files import write_private
from cordon_cli.local import DEV_DIR

if TYPE_CHECKING:
    from cordon.nats import Endpoint

DURATION = re.compile(r"^(\d+)([smhd])$")


def _seconds(text: str) -> int:
    match = DURATION.match(text)
    if not match:
        raise argparse.ArgumentTypeError("durations look like 90d, 12h, 30m or 45s")
    return int(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


def _dev_endpoints() -> dict[str, Any] | None:
    path = DEV_DIR / "endpoints.json"
    return json.loads(path.read_text()) if path.exists() else None


def central_endpoint(url: str | None, seed_file: Path | None) -> Endpoint:
    """The publisher's central NATS: --nats-url/--nats-seed, the CORDON_CENTRAL_NATS_URL
    and CORDON_CENTRAL_NATS_SEED variables, or the dev stack's publisher identity."""
    from cordon.nats import Endpoint

    url = url or os.environ.get("CORDON_CENTRAL_NATS_URL")
    seed = seed_file or (Path(s) if (s := os.environ.get("CORDON_CENTRAL_NATS_SEED")) else None)
    if url:
        return Endpoint(url, seed)
    dev = _dev_endpoints()
    if dev is not None:
        return Endpoint.from_settings(dev["nats"]["central"]["publisher"])
    raise SystemExit(
        "no central NATS: pass --nats-url (and --nats-seed), set CORDON_CENTRAL_NATS_URL,"
        " or run `make run`"
    )


def _key_paths(explicit: list[Path] | None) -> list[Path]:
    if explicit:
        return explicit
    dev = _dev_endpoints()
    if dev is not None and dev.get("policy_owner_key"):
        return [Path(dev["policy_owner_key"])]
    raise SystemExit("no signing key: pass --key (made by `cordon policy keygen`)")


def _fail(command: str, message: str) -> int:
    print(f"cordon policy {command}: {message}", file=sys.stderr)
    return 1


def keygen(args: argparse.Namespace) -> int:
    from cordon.log.keys import SigningKey, public_bytes

    if args.out.exists():
        return _fail("keygen", f"{args.out} exists; not overwriting a key")
    key = SigningKey.generate()
    write_private(args.out, key.seed_hex() + "\n")
    public = public_bytes(key.public_key).hex()
    args.out.with_suffix(".pub").write_text(public + "\n")
    print(f"private key  {args.out} (keep it secret)")
    print(f"public key   {public}  (give this to gateways and the replicator as pack_trust)")
    print(f"key id       {key.key_id}")
    return 0


def _lint_problems(path: Path) -> tuple[Any, list[str]]:
    from cordon.packs.lint import check_file

    document, problems = check_file(path)
    return document, [str(p) for p in problems]


def lint(args: argparse.Namespace) -> int:
    failed = 0
    for path in args.files:
        _, problems = _lint_problems(path)
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            failed += 1
        else:
            print(f"{path}: ok")
    return 1 if failed else 0


def _sign(args: argparse.Namespace, document: dict[str, Any], revision: int) -> bytes:
    from cordon.log.keys import SigningKey
    from cordon.packs import pack_name, signing

    keys = [SigningKey.load(path) for path in _key_paths(args.key)]
    statement = signing.statement_bytes(
        document,
        pack_name(document),
        revision,
        int(time.time()) + args.expires_in,
        args.regions.split(","),
    )
    return signing.sign(statement, keys)


def sign(args: argparse.Namespace) -> int:
    document, problems = _lint_problems(args.file)
    if problems:
        return _fail("sign", "\n".join(problems))
    signed = _sign(args, document, args.revision)
    out = args.out or args.file.with_suffix(".signed.json")
    out.write_bytes(signed)
    print(f"signed revision {args.revision} of {document['pack']['name']} -> {out}")
    return 0


def _trusted(hex_keys: list[str]) -> dict[str, bytes]:
    from cordon.packs import signing

    keys: list[str] = []
    for entry in hex_keys:
        path = Path(entry)
        keys.append(path.read_text().strip() if path.exists() else entry)
    return signing.trust_root(keys)


def verify(args: argparse.Namespace) -> int:
    from cordon.errors import PackError
    from cordon.packs import signing

    try:
        pack = signing.decode(args.file.read_bytes(), _trusted(args.trust))
    except (PackError, OSError) as exc:
        return _fail("verify", str(exc))
    expired = " (EXPIRED)" if pack.expired(time.time()) else ""
    print(f"{pack.name} revision {pack.revision} {pack.hash}")
    print(f"signed by {', '.join(pack.signed_by)}; regions {', '.join(pack.regions)}")
    expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(pack.expires_at or 0))
    print(f"expires at {expires}{expired}")
    return 1 if expired else 0


def test(args: argparse.Namespace) -> int:
    from cordon_cli.trial import run_trial

    document, problems = _lint_problems(args.pack)
    if problems:
        return _fail("test", "\n".join(problems))
    try:
        sample = json.loads(args.request.read_text())
    except (OSError, ValueError) as exc:
        return _fail("test", f"{args.request}: {exc}")
    print(json.dumps(run_trial(document, sample), indent=2))
    return 0


def publish(args: argparse.Namespace) -> int:
    from cordon.errors import PublishError
    from replicator.publish import is_signed, latest_revision, publish_signed

    url = central_endpoint(args.nats_url, args.nats_seed)
    try:
        data = args.file.read_bytes()
        if is_signed(data):
            signed = data
        else:
            document, problems = _lint_problems(args.file)
            if problems:
                return _fail("publish", "\n".join(problems))
            revision = (
                args.revision or asyncio.run(latest_revision(url, document["pack"]["name"])) + 1
            )
            signed = _sign(args, document, revision)
        published = asyncio.run(publish_signed(url, signed))
    except (PublishError, OSError) as exc:
        return _fail("publish", str(exc))
    print(
        f"published {published.name} revision {published.revision} "
        f"({published.hash}) at POLICY seq {published.stream_seq}"
    )
    return 0


def _central_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--nats-url", help="central NATS URL, no secret in it (default: the dev stack's)"
    )
    parser.add_argument(
        "--nats-seed", type=Path, help="file holding the publisher's nkey seed (with --nats-url)"
    )


def status(args: argparse.Namespace) -> int:
    """Exit 0 when every live replica is current (or behind for less than
    --behind-after, or waiting for its wave of a rollout), 1 when one is behind for
    longer, a region could not be read, or a rollout is halted. Stale replicas (silent
    for --stale-after) are listed, not counted."""
    from cordon.errors import PublishError
    from replicator.status import collect

    central = central_endpoint(args.nats_url, args.nats_seed)
    regions = _regions(args.regions)
    try:
        found = asyncio.run(
            collect(central, regions, time.time(), args.behind_after, args.stale_after)
        )
    except PublishError as exc:
        return _fail("status", str(exc))
    if args.json:
        print(json.dumps(found.as_dict(), indent=2))
    else:
        for pack in found.packs:
            print(f"pack {pack.pack}: revision {pack.revision} published")
        for replica in found.replicas:
            mark = (
                "  BEHIND"
                if replica.behind
                else "  stale"
                if replica.stale
                else "  held (rollout)"
                if replica.held
                else ""
            )
            refused = f" (refused: {replica.last_rejection})" if replica.last_rejection else ""
            print(
                f"  {replica.region}/{replica.replica}: {replica.pack} "
                f"r{replica.revision}{_since(replica.activated_at)}{mark}{refused}"
            )
        for region in found.unreachable:
            print(f"  {region}: could not be read")
        for rollout in found.rollouts:
            print(_rollout_line(rollout))
    return 1 if found.behind or found.unreachable or found.halted else 0


def _since(epoch: float | None) -> str:
    if epoch is None:
        return ""
    return " since " + time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _rollout_line(rollout: dict[str, Any]) -> str:
    head = f"rollout {rollout['pack']} r{rollout['revision']}"
    if rollout["complete"]:
        return f"{head}: complete"
    waves = " | ".join(",".join(wave) for wave in rollout["waves"])
    where = f"wave {rollout['wave'] + 1} of {len(rollout['waves'])} [{waves}]"
    if rollout["halted"]:
        return f"{head}: HALTED at {where}: {rollout['halted']}"
    return f"{head}: {where}"


def halt(args: argparse.Namespace) -> int:
    from cordon.errors import PublishError
    from replicator.rollout import halt as halt_rollout

    central = central_endpoint(args.nats_url, args.nats_seed)
    reason = f"halted by an operator: {args.reason}" if args.reason else "halted by an operator"
    try:
        state = asyncio.run(halt_rollout(central, args.name, reason))
    except PublishError as exc:
        return _fail("halt", str(exc))
    print(f"rollout of {state.pack} revision {state.revision} halted at wave {state.wave + 1}")
    return 0


def resume(args: argparse.Namespace) -> int:
    from cordon.errors import PublishError
    from replicator.rollout import resume as resume_rollout

    central = central_endpoint(args.nats_url, args.nats_seed)
    try:
        state = asyncio.run(resume_rollout(central, args.name))
    except PublishError as exc:
        return _fail("resume", str(exc))
    print(
        f"rollout of {state.pack} revision {state.revision} resumed: wave {state.wave + 1}"
        " accepted, the next one opens now"
    )
    return 0


def rollback(args: argparse.Namespace) -> int:
    """Revisions never go down: the old content goes out again as latest + 1, signed now
    by the owner's key, after checking the old revision was signed by a trusted key."""
    from cordon.errors import PackError, PublishError
    from cordon.log.keys import SigningKey, public_bytes
    from cordon.packs import signing
    from replicator.publish import latest_revision, publish_signed, published_pack

    central = central_endpoint(args.nats_url, args.nats_seed)
    keys = [SigningKey.load(path) for path in _key_paths(args.key)]
    trust = [public_bytes(k.public_key).hex() for k in keys] + list(args.trust or [])
    try:
        old = signing.decode(
            asyncio.run(published_pack(central, args.name, args.to)), _trusted(trust)
        )
        revision = asyncio.run(latest_revision(central, args.name)) + 1
        statement = signing.statement_bytes(
            old.document, old.name, revision, int(time.time()) + args.expires_in, old.regions
        )
        published = asyncio.run(publish_signed(central, signing.sign(statement, keys)))
    except (PackError, PublishError) as exc:
        return _fail("rollback", str(exc))
    print(
        f"published {published.name} revision {published.revision} with the content of"
        f" revision {args.to} ({published.hash}) at POLICY seq {published.stream_seq}"
    )
    return 0


def _regions(explicit: str | None) -> list[str]:
    if explicit:
        return [r for r in explicit.split(",") if r]
    dev = _dev_endpoints()
    if dev is not None:
        return sorted(dev["nats"]["regions"])
    raise SystemExit("no regions: pass --regions eu-west,us-east")


def _signing_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--key", type=Path, action="append", help="signing key file (repeatable)")
    parser.add_argument(
        "--expires-in", type=_seconds, default=_seconds("90d"), help="validity, e.g. 90d (default)"
    )
    parser.add_argument("--regions", default="*", help="comma-separated regions, or * (default)")


def add_parser(commands: Any) -> None:
    policy = commands.add_parser("policy", help="write, sign, test and publish policy packs")
    actions = policy.add_subparsers(dest="action", required=True)

    p = actions.add_parser("keygen", help="make a policy owner's signing key pair")
    p.add_argument(
        "--out", type=Path, required=True, help="private key file (public key: .pub beside it)"
    )
    p.set_defaults(func=keygen)

    p = actions.add_parser("lint", help="check packs against the schema and the gateway's rules")
    p.add_argument("files", type=Path, nargs="+")
    p.set_defaults(func=lint)

    p = actions.add_parser("sign", help="sign a pack for a revision, expiry and regions")
    p.add_argument("file", type=Path)
    p.add_argument("--revision", type=int, required=True)
    p.add_argument("--out", type=Path, help="where to write (default: FILE.signed.json)")
    _signing_options(p)
    p.set_defaults(func=sign)

    p = actions.add_parser("verify", help="check a signed pack against trusted public keys")
    p.add_argument("file", type=Path)
    p.add_argument("--trust", action="append", required=True, help="public key (hex) or .pub file")
    p.set_defaults(func=verify)

    p = actions.add_parser("test", help="run a pack over a sample request, no server needed")
    p.add_argument("pack", type=Path)
    p.add_argument(
        "--request",
        type=Path,
        required=True,
        help="JSON: a request body, or {request, response, identity}",
    )
    p.set_defaults(func=test)

    p = actions.add_parser("publish", help="sign (unless signed) and publish a pack centrally")
    p.add_argument("file", type=Path, help="a pack (YAML) or a signed pack (JSON)")
    _central_options(p)
    p.add_argument("--revision", type=int, help="default: the last published revision + 1")
    _signing_options(p)
    p.set_defaults(func=publish)

    p = actions.add_parser(
        "status", help="each pack's published revision, and the revision each replica enforces"
    )
    _central_options(p)
    p.add_argument("--regions", help="comma-separated regions (default: the dev stack's)")
    p.add_argument(
        "--behind-after",
        type=_seconds,
        default=_seconds("60s"),
        help="a replica this long behind a published revision fails the command (default 60s)",
    )
    p.add_argument(
        "--stale-after",
        type=_seconds,
        default=_seconds("60s"),
        help="a replica silent this long is stale: listed apart, not counted (default 60s)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=status)

    p = actions.add_parser("halt", help="stop a staged rollout: later waves get nothing more")
    p.add_argument("name", help="the pack")
    p.add_argument("--reason", help="why, for status and the log")
    _central_options(p)
    p.set_defaults(func=halt)

    p = actions.add_parser("resume", help="carry on a halted rollout with its next wave")
    p.add_argument("name", help="the pack")
    _central_options(p)
    p.set_defaults(func=resume)

    p = actions.add_parser(
        "rollback", help="publish an earlier revision's content as a new, higher revision"
    )
    p.add_argument("name", help="the pack")
    p.add_argument("--to", type=int, required=True, metavar="REVISION")
    p.add_argument("--key", type=Path, action="append", help="signing key file (repeatable)")
    p.add_argument(
        "--trust", action="append", help="more keys the old revision may be signed by (hex/.pub)"
    )
    p.add_argument(
        "--expires-in", type=_seconds, default=_seconds("90d"), help="validity, e.g. 90d (default)"
    )
    _central_options(p)
    p.set_defaults(func=rollback)
