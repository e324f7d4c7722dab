"""`cordon tools digest` against the real dev tool server, over stdio and over HTTP:
each tool's digest is `tool_digest` of its definition as the server lists it; a pack
pinning those digests exits 0 (`pinned`), a stale pin exits 1 (`changed`, as do
`unpinned` and `undeclared`), `--yaml` is a `tools:` list to paste that keeps the
pack's `allow`, a pack's credential reaches the server, and a server that is not
there is one line on stderr and exit 2."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from cordon.packs.tools import tool_digest
from cordon_cli import build_parser, main
from cordon_dev import tool_server
from cordon_dev.inprocess import serve_in_loop
from cordon_dev.procs import free_port

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]
DEV_TOOLS = [sys.executable, "-m", "cordon_dev", "tool-server", "--stdio"]
WRONG = "sha256:" + "0" * 64


@pytest.fixture(autouse=True)
def _dev_tools_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stdio server is a child of the command: it inherits this environment."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))


@pytest.fixture(scope="module")
async def digests() -> dict[str, str]:
    """Each dev tool's digest, of its definition as the wire's tools/list carries it."""
    listed = await tool_server.build().list_tools()
    dumped = (tool.model_dump(by_alias=True, mode="json", exclude_none=True) for tool in listed)
    return {each["name"]: tool_digest(each) for each in dumped}


def _pack(tmp_path: Path, tools: list[dict[str, Any]], **server: Any) -> Path:
    """A pack whose one tool server, `dev`, runs the dev tool server over stdio."""
    where = server or {"command": DEV_TOOLS}
    document = {
        "pack": {"name": "tools-test", "version": "1.0.0"},
        "tools": {"servers": [{"name": "dev", **where, "tools": tools}]},
    }
    path = tmp_path / "pack.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def _statuses(out: str) -> dict[str, str]:
    """name -> status, from the table's tool lines (`status  name  digest  ...`)."""
    lines = [line.split() for line in out.splitlines()[1:]]
    return {words[1]: words[0] for words in lines if len(words) >= 3 and words[0].isalpha()}


@pytest.mark.servers
def test_a_pack_pinning_what_the_server_lists_exits_0_pinned(
    tmp_path: Path, digests: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    pack = _pack(tmp_path, [{"name": n, "digest": d} for n, d in digests.items()])
    assert main(["tools", "digest", "dev", "--pack", str(pack)]) == 0
    out = capsys.readouterr().out
    assert _statuses(out) == dict.fromkeys(digests, "pinned")
    for name, digest in digests.items():
        assert any(name in line and digest in line for line in out.splitlines())
    assert "Return the text it is given." in out  # what the operator approves, beside it


@pytest.mark.servers
def test_a_stale_pin_exits_1_changed_and_says_what_is_not_approved(
    tmp_path: Path, digests: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    declared = [
        {"name": "echo", "digest": WRONG},
        {"name": "contact"},  # declared, not yet approved
        {"name": "fail", "digest": digests["fail"]},
        {"name": "slow", "digest": digests["slow"]},
        {"name": "retired", "digest": WRONG},  # the server no longer lists it
    ]  # send_email: not declared at all
    assert main(["tools", "digest", "dev", "--pack", str(_pack(tmp_path, declared))]) == 1
    out = capsys.readouterr().out
    assert _statuses(out) == {
        "echo": "changed",
        "contact": "unpinned",
        "fail": "pinned",
        "slow": "pinned",
        "send_email": "undeclared",
        "retired": "missing",
    }
    assert f"pack: {WRONG}" in out and digests["echo"] in out


@pytest.mark.servers
def test_yaml_is_a_tools_list_of_current_digests_keeping_allow(
    tmp_path: Path, digests: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    allow = {"roles": ["mailer"]}
    declared = [{"name": "send_email", "digest": WRONG, "allow": allow, "timeout_s": 5}]
    pack = _pack(tmp_path, declared)
    assert main(["tools", "digest", "dev", "--pack", str(pack), "--yaml"]) == 1
    pasted = yaml.safe_load(capsys.readouterr().out)["tools"]
    assert {tool["name"]: tool["digest"] for tool in pasted} == digests
    kept = next(tool for tool in pasted if tool["name"] == "send_email")
    assert kept == {**declared[0], "digest": digests["send_email"]}
    assert all(set(tool) == {"name", "digest"} for tool in pasted if tool is not kept)


@pytest.fixture(scope="module")
async def http_server() -> AsyncIterator[tuple[str, list[dict[bytes, bytes]]]]:
    """The dev tool server over Streamable HTTP; the headers of each request it got."""
    seen: list[dict[bytes, bytes]] = []
    app = tool_server.app()

    async def recording(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            seen.append(dict(scope["headers"]))
        await app(scope, receive, send)

    async with serve_in_loop(recording, lifespan="on") as base:
        yield f"{base}/mcp", seen


async def _main(argv: list[str]) -> int:
    """The command in a thread: it runs its own event loop, this one serves HTTP."""
    return await asyncio.to_thread(main, argv)


async def test_a_url_lists_each_tool_and_its_digest_without_a_pack(
    http_server: tuple[str, list[dict[bytes, bytes]]],
    digests: dict[str, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, _ = http_server
    assert await _main(["tools", "digest", "--url", url]) == 0
    out = capsys.readouterr().out
    listed = {line.split()[0]: line.split()[1] for line in out.splitlines()[1:]}
    assert listed == digests


async def test_a_packs_url_server_gets_the_packs_credential(
    http_server: tuple[str, list[dict[bytes, bytes]]],
    digests: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, seen = http_server
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "dev-key").write_text("from-the-store\n")
    monkeypatch.setenv("DEV_TOOLS_TOKEN", "from-the-env")
    pins = [{"name": n, "digest": d} for n, d in digests.items()]
    by_env = {"secret_key_ref": {"env": "DEV_TOOLS_TOKEN"}}
    pack = _pack(tmp_path, pins, url=url, credentials=by_env)
    assert await _main(["tools", "digest", "dev", "--pack", str(pack)]) == 0
    assert _statuses(capsys.readouterr().out) == dict.fromkeys(digests, "pinned")
    assert seen[-1][b"authorization"] == b"Bearer from-the-env"
    by_store = {"secret_key_ref": {"store": "dev-key"}, "header": "X-Api-Key", "scheme": ""}
    pack = _pack(tmp_path, pins, url=url, credentials=by_store)
    store = ["--secret-store", str(tmp_path / "store")]
    assert await _main(["tools", "digest", "dev", "--pack", str(pack), *store]) == 0
    assert seen[-1][b"x-api-key"] == b"from-the-store"


def test_an_unreachable_server_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"http://127.0.0.1:{free_port('127.0.0.1')}/mcp"
    assert main(["tools", "digest", "crm", "--url", url, "--timeout", "5"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("cordon tools digest: tool server 'crm'")
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err


def test_a_server_the_pack_does_not_declare_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tools", "digest", "crm", "--pack", str(_pack(tmp_path, []))]) == 2
    assert "declares no tool server 'crm' (it declares: dev)" in capsys.readouterr().err


def test_everything_after_command_is_the_servers_argv() -> None:
    parse = build_parser().parse_args
    args = parse(["tools", "digest", "dev", "--yaml", "--command", "--", "prog", "--yaml", "-x"])
    assert (args.server, args.yaml, args.server_argv) == ("dev", True, ["prog", "--yaml", "-x"])
    assert parse(["tools", "digest", "--command", "prog", "-m"]).server_argv == ["prog", "-m"]
    assert parse(["tools", "digest", "--url", "http://h/mcp"]).server_argv is None
    for wrong in (["dev"], ["--pack", "p.yaml"], ["--url", "http://h", "--command", "p"]):
        with pytest.raises(SystemExit):
            parse(["tools", "digest", *wrong])


@pytest.mark.servers
def test_the_command_needs_no_server_stack(tmp_path: Path) -> None:
    """Listing a server is a client's work: the `server` extra is not needed for it."""
    from cordon_cli import SERVER_STACK

    refuse = "; ".join(f"sys.modules[{name!r}] = None" for name in sorted(SERVER_STACK))
    argv = ["tools", "digest", "--command", "--", *DEV_TOOLS]
    boot = f"import sys; {refuse}; from cordon_cli import main; raise SystemExit(main({argv!r}))"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", boot],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "echo" in result.stdout and "sha256:" in result.stdout
