"""`cordon tools digest`: each tool an MCP server lists now, with the digest a pack
pins it by (`cordon.packs.tools.tool_digest`) and whether the pack's pin matches, so
an operator approves definitions after reading them, and CI can gate on a server
whose tools moved under a pack (issue 24).

    cordon tools digest crm --pack pack.yaml            # the pack's server; pins compared
    cordon tools digest --url https://crm.internal/mcp  # any server, no pack
    cordon tools digest --command -- python -m my_server --stdio
    cordon tools digest crm --pack pack.yaml --yaml     # a `tools:` list to paste

Exit 0 when every listed tool is pinned as listed (always, without a pack); 1 when a
tool is `changed`, `unpinned` or `undeclared`; 2 when the server or the pack cannot
be read. The server stack is imported only when the command runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from cordon.errors import PackError, ToolServerError

if TYPE_CHECKING:
    from cordon.packs.tools import ToolServer
    from gateway.mcp.upstream import Upstream

__all__ = [
    "CHANGED",
    "MISSING",
    "PINNED",
    "UNDECLARED",
    "UNPINNED",
    "Row",
    "Target",
    "add_parser",
    "digest",
    "render_table",
    "render_yaml",
    "rows",
]

PINNED, CHANGED, UNPINNED, UNDECLARED = "pinned", "changed", "unpinned", "undeclared"
MISSING = "missing"  # declared in the pack, not listed by the server: reported, not failed
FAILING = (CHANGED, UNPINNED, UNDECLARED)
MAX_PAGES = 50  # as the gateway's catalog: cursors that never end are not followed forever
DESCRIPTION_CHARS = 60


@dataclass(frozen=True)
class Row:
    """One tool: as the server lists it (`digest`), and as the pack pins it."""

    name: str
    digest: str | None  # None: the pack declares it, the server does not list it
    description: str = ""
    status: str | None = None  # None without a pack
    pinned: str | None = None  # the pack's digest, when it has one


@dataclass(frozen=True)
class Target:
    """Where the server is, and what the pack says of it (None without `--pack`)."""

    name: str
    url: str | None
    command: tuple[str, ...]
    server: ToolServer | None = None
    declared: Mapping[str, Mapping[str, Any]] | None = None  # each tool's entry, as written


class _TrailingCommand(argparse.ArgumentParser):
    """Takes everything after `--command` (and an optional `--`) as the server's argv:
    argparse's own REMAINDER loses the words after a `--` (Python 3.11)."""

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        words = list(sys.argv[1:] if args is None else args)
        command: list[str] | None = None
        if "--command" in words:
            at = words.index("--command")
            words, command = words[:at], words[at + 1 :]
            command = command[1:] if command[:1] == ["--"] else command
            if not command:
                self.error("--command needs the server's program (and its arguments)")
        parsed, extra = super().parse_known_args(words, namespace)
        parsed.server_argv = command
        self._check(parsed)
        return parsed, extra

    def _check(self, args: argparse.Namespace) -> None:
        if args.url is not None and args.server_argv is not None:
            self.error("give --url or --command, not both")
        if args.url is not None and not args.url.startswith(("http://", "https://")):
            self.error("--url is the server's http(s) URL (Streamable HTTP)")
        if args.pack is not None and not args.server:
            self.error("--pack needs SERVER: the name the pack declares it under")
        if args.pack is None and args.url is None and args.server_argv is None:
            self.error("say which server: SERVER --pack PACK, --url URL or --command -- PROG ...")


def digest(args: argparse.Namespace) -> int:
    try:
        target = _target(args)
        headers = _headers(target.server, args.secret_store)
        listed = asyncio.run(_list(target, headers, args.timeout))
    except (PackError, ToolServerError) as exc:  # one line, never a traceback
        print(f"cordon tools digest: {_one_line(str(exc))}", file=sys.stderr)
        return 2
    found = rows(listed, target.server)
    if args.yaml:
        print(render_yaml(found, target.declared), end="")
    else:
        print(render_table(target, found), end="")
    return 1 if any(row.status in FAILING for row in found) else 0


def _target(args: argparse.Namespace) -> Target:
    command = tuple(args.server_argv or ())
    shown = urlsplit(args.url).hostname if args.url else Path(command[0]).name if command else None
    name = args.server or shown or "server"
    if args.pack is None:
        return Target(name, args.url, command)
    server, declared = _declared(args.pack, name)
    if args.url is None and not command:
        return Target(name, server.url, server.command, server, declared)
    return Target(name, args.url, command, server, declared)


def _declared(path: Path, name: str) -> tuple[ToolServer, dict[str, Mapping[str, Any]]]:
    """The pack's server `name`, and each of its tools' entries as written (what
    `--yaml` keeps beside the new digest)."""
    from cordon.errors import DocumentError
    from cordon.packs import tools
    from cordon.packs.lint import load

    try:
        document, _ = load(path)
        raw = document.get("tools") if isinstance(document, dict) else None
        policy = tools.parse(raw)
    except DocumentError as exc:
        where = ".".join(str(step) for step in exc.path)
        raise PackError(f"{path}: {where}: {exc}") from exc
    except PackError as exc:
        raise PackError(f"{path}: {exc}") from exc
    server = policy.server(name)
    if server is None:
        names = ", ".join(s.name for s in policy.servers) or "none"
        raise PackError(f"{path} declares no tool server {name!r} (it declares: {names})")
    index = [s.name for s in policy.servers].index(name)
    assert isinstance(raw, dict)  # parse() found the server in it
    written = raw["servers"][index].get("tools") or []
    return server, {entry["name"]: entry for entry in written}


def _headers(server: ToolServer | None, store: Path | None) -> dict[str, str]:
    """The credential header the gateway would send, resolved from this environment."""
    if server is None or server.credentials is None:
        return {}
    from cordon.secretrefs import resolve_secret

    credentials = server.credentials
    try:
        secret = resolve_secret(
            credentials.secret_key_ref, os.environ, store, f"tools.{server.name}"
        )
    except PackError as exc:
        raise ToolServerError(str(exc)) from exc
    value = f"{credentials.scheme} {secret}" if credentials.scheme else secret
    return {credentials.header: value}


async def _list(
    target: Target, headers: Mapping[str, str], within_s: float
) -> dict[str, dict[str, Any]]:
    """Each tool the server lists, by name, every page followed."""
    from gateway.mcp.upstream import connect

    upstream = connect(target.name, target.url, target.command, headers=headers)
    try:
        try:
            async with asyncio.timeout(within_s):
                await upstream.start()
        except TimeoutError as exc:
            why = f"tool server {target.name!r} did not answer within {within_s:g} s"
            raise ToolServerError(why) from exc
        return await _pages(upstream, within_s)
    finally:
        await upstream.close()


async def _pages(upstream: Upstream, within_s: float) -> dict[str, dict[str, Any]]:
    listed: dict[str, dict[str, Any]] = {}
    params: dict[str, Any] = {}
    for _ in range(MAX_PAGES):
        page = await upstream.request("tools/list", params or None, within_s=within_s)
        for definition in page.get("tools") or []:
            if isinstance(definition, dict) and isinstance(definition.get("name"), str):
                listed[definition["name"]] = definition
        cursor = page.get("nextCursor")
        if not isinstance(cursor, str) or not cursor:
            break
        params = {"cursor": cursor}
    return listed


def rows(listed: Mapping[str, Mapping[str, Any]], server: ToolServer | None) -> list[Row]:
    """Each listed tool against the pack's pins (no status without a pack), then the
    tools the pack declares that the server no longer lists."""
    from cordon.packs.tools import tool_digest

    found: list[Row] = []
    for name, definition in listed.items():
        digest = tool_digest(definition)
        described = _description(definition.get("description"))
        if server is None:
            found.append(Row(name, digest, described))
            continue
        grant = server.grant(name)
        pinned = grant.digest if grant is not None else None
        found.append(
            Row(name, digest, described, _status(grant is not None, pinned, digest), pinned)
        )
    if server is not None:
        found += [
            Row(t.name, None, "", MISSING, t.digest) for t in server.tools if t.name not in listed
        ]
    return found


def _status(declared: bool, pinned: str | None, digest: str) -> str:
    if not declared:
        return UNDECLARED
    if pinned is None:
        return UNPINNED
    return PINNED if pinned == digest else CHANGED


def _description(value: Any) -> str:
    """The first line, shortened and printable: a server's text must not steer the
    operator's terminal (escape sequences) while they review it."""
    if not isinstance(value, str) or not value.strip():
        return ""
    first = _printable(value.strip().splitlines()[0])
    if len(first) > DESCRIPTION_CHARS:
        return first[: DESCRIPTION_CHARS - 1].rstrip() + "…"
    return first


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def render_table(target: Target, found: Sequence[Row]) -> str:
    where = target.url or " ".join(target.command)
    lines = [f"{_printable(target.name)}  {_printable(where)}  ({len(found)} tools)"]
    width = max((len(_printable(row.name)) for row in found), default=0)
    status_width = max((len(row.status or "") for row in found), default=0)
    for row in found:
        status = f"{row.status:<{status_width}}  " if row.status is not None else ""
        digest = row.digest or "(not listed by the server)"
        line = f"{status}{_printable(row.name):<{width}}  {digest}  {row.description}"
        lines.append(line.rstrip())
        if row.status == CHANGED:
            lines.append(f"{'':<{status_width}}  {'':<{width}}  pack: {row.pinned}")
    if target.server is not None:
        lines.append(_summary(found))
    return "\n".join(lines) + "\n"


def _summary(found: Sequence[Row]) -> str:
    counts = {s: sum(row.status == s for row in found) for s in (PINNED, *FAILING, MISSING)}
    said = ", ".join(f"{n} {status}" for status, n in counts.items() if n)
    return said or "no tools"


def render_yaml(found: Sequence[Row], declared: Mapping[str, Mapping[str, Any]] | None) -> str:
    """A `tools:` list, ready to paste under the server: each listed tool's name and
    digest, and what the pack already says of it (`allow`, `timeout_s`, `rate`)."""
    lines = ["tools:"]
    for row in found:
        if row.digest is None:
            lines.append(f"  # {_printable(row.name)}: in the pack, not listed by the server")
            continue
        kept = (declared or {}).get(row.name, {})
        if row.description:
            lines.append(f"  # {row.description}")
        if declared is not None and row.name not in declared:
            lines.append("  # new: without `allow`, every authenticated caller may call it")
        entry = {"name": row.name, "digest": row.digest}
        entry.update({k: v for k, v in kept.items() if k not in ("name", "digest")})
        lines += [f"  {'- ' if i == 0 else '  '}{line}" for i, line in enumerate(_entry(entry))]
    return "\n".join(lines) + "\n"


def _entry(entry: Mapping[str, Any]) -> list[str]:
    """One line a key, as packs are written: `allow: {roles: [a]}`, not a block."""
    import yaml

    lines: list[str] = []
    for key, value in entry.items():
        if isinstance(value, dict | list):
            flow = yaml.safe_dump(value, default_flow_style=True, width=1000)
            lines += f"{key}: {flow}".strip().splitlines()
        else:  # a name with a line break in it stays one quoted scalar, indented
            lines += yaml.safe_dump({key: value}, width=1000).strip().splitlines()
    return lines


def add_parser(commands: Any) -> None:
    tools = commands.add_parser("tools", help="MCP tool servers: what they list, pinned by digest")
    actions = tools.add_subparsers(dest="action", required=True, parser_class=_TrailingCommand)
    p = actions.add_parser(
        "digest",
        help="each tool a server lists, its digest, and the pack's pin (exit 1 unless pinned)",
        description="Exit 0: every listed tool pinned as listed (or no --pack); 1: some tool"
        " changed, unpinned or undeclared; 2: the server or the pack could not be read.",
    )
    p.add_argument("server", nargs="?", help="the server's name in --pack (else a display name)")
    p.add_argument(
        "--pack",
        type=Path,
        metavar="PACK.yaml",
        help="a pack YAML: its server SERVER, pins compared",
    )
    p.add_argument("--url", help="a Streamable HTTP server (instead of the pack's)")
    p.add_argument(
        "--command",
        nargs=argparse.REMAINDER,
        dest="server_argv",
        help="a stdio server run as PROG ARGS (last; instead of the pack's)",
    )
    p.add_argument(
        "--secret-store",
        type=Path,
        metavar="DIR",
        help="the secret store directory ({store: NAME} refs)",
    )
    p.add_argument("--yaml", action="store_true", help="print a `tools:` list to paste")
    p.add_argument(
        "--timeout", type=float, default=10.0, metavar="S", help="seconds per step (default 10)"
    )
    p.set_defaults(func=digest)
