"""One decision for tools/list and tools/call: declared, approved, unchanged, allowed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cordon.errors import DocumentError
from cordon.packs import parse_document, tools
from cordon.packs.lint import check_file
from gateway.identity import Identity
from gateway.policy.tools import decide

pytestmark = pytest.mark.fast

LOOKUP = {"name": "lookup", "description": "Find a customer.", "inputSchema": {"type": "object"}}
PIN = tools.tool_digest(LOOKUP)
PACK = f"""
pack: {{name: tools-test, version: 1.0.0}}
tools:
  servers:
    - name: crm
      url: https://crm.internal/mcp
      tools:
        - name: lookup
          digest: {PIN}
          allow: {{roles: [analyst], scopes: ["crm:read"]}}
        - name: export
        - name: notes
          digest: {PIN}
    - name: files
      command: [cordon-files, --root, /srv]
      tools:
        - name: read
          digest: {PIN}
          allow: {{agents: [support-bot]}}
"""
ANALYST = Identity("report-bot", roles=("analyst",), scopes=("crm:read", "chat"))
INTERN = Identity("intern-bot", roles=("intern",), scopes=("crm:read",))


def _policy() -> tools.ToolPolicy:
    return parse_document(yaml.safe_load(PACK)).tools


@pytest.mark.parametrize(
    ("caller", "server", "tool", "digest", "allowed", "reason"),
    [
        (ANALYST, "crm", "lookup", PIN, True, ""),
        (INTERN, "crm", "lookup", PIN, False, "not_allowed"),  # role
        (Identity("b", roles=("analyst",)), "crm", "lookup", PIN, False, "not_allowed"),  # scope
        (ANALYST, "crm", "lookup", "sha256:" + "1" * 64, False, "definition_changed"),
        (ANALYST, "crm", "export", PIN, False, "not_approved"),
        (ANALYST, "crm", "delete", PIN, False, "undeclared_tool"),
        (ANALYST, "mail", "send", PIN, False, "undeclared_server"),
        (INTERN, "crm", "notes", PIN, True, ""),  # no allow: every authenticated caller
        (Identity("support-bot"), "files", "read", PIN, True, ""),
        (ANALYST, "files", "read", PIN, False, "not_allowed"),  # agent
    ],
)
def test_one_decision_says_who_sees_and_calls_what(
    caller: Identity, server: str, tool: str, digest: str, allowed: bool, reason: str
) -> None:
    access = decide(_policy(), caller, server, tool, digest)
    assert (access.allowed, access.reason) == (allowed, reason)
    assert access.declared == (reason not in ("undeclared_server", "undeclared_tool"))


def test_a_server_is_a_url_or_a_command_and_the_pack_lints_clean(tmp_path: Path) -> None:
    policy = _policy()
    crm, files = policy.servers
    assert crm.url == "https://crm.internal/mcp" and crm.command == ()
    assert files.command == ("cordon-files", "--root", "/srv") and files.url is None
    path = tmp_path / "pack.yaml"
    path.write_text(PACK)
    assert check_file(path)[1] == []


def _server(**fields: object) -> dict[str, object]:
    return {"servers": [{"name": "c", "url": "https://x", **fields}]}


@pytest.mark.parametrize(
    ("section", "where"),
    [
        (_server(name="Bad_Name"), ["tools", "servers", 0]),
        (_server(name="a__b"), ["tools", "servers", 0]),  # `<server>__<tool>` stays readable
        ({"servers": [{"name": "crm"}]}, ["tools", "servers", 0]),
        (_server(command=["x"]), ["tools", "servers", 0]),
        (_server(url="ftp://x"), ["tools", "servers", 0, "url"]),
        (_server(tools=[{"name": "t", "digest": "md5:1"}]), ["tools", "servers", 0, "tools", 0]),
        (_server(tools=[{"name": "t", "allow": {"teams": ["a"]}}]), ["tools", "servers", 0]),
        ({"servers": [{"name": "c", "url": "https://x"}] * 2}, ["tools", "servers", 1]),
    ],
)
def test_a_malformed_section_names_its_path(section: object, where: list[object]) -> None:
    with pytest.raises(DocumentError) as refused:
        parse_document({"pack": {"name": "p", "version": "1"}, "tools": section})
    assert list(refused.value.path[: len(where)]) == where
