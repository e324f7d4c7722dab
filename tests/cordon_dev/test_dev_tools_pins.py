"""The baseline pack pins the dev tool server's tools as that server lists them now:
edit a dev tool and these fail until `deploy/packs/default.yaml` pins it again (a
stale pin would hide the tool from every caller, as a "rug pull" is hidden)."""

from __future__ import annotations

import yaml

from cordon.packs import tools
from cordon_dev import tool_server
from cordon_dev.stack import BASELINE_PACK, DEV_APP, DEV_TOOLS, render_baseline
from gateway.identity.callers import Identity
from gateway.policy.tools import decide


def _dev_tools(text: str) -> tools.ToolServer:
    server = tools.parse(yaml.safe_load(text)["tools"]).server(DEV_TOOLS)
    assert server is not None
    return server


async def _listed() -> dict[str, str]:
    """Each tool's digest, of its definition as the wire's tools/list carries it."""
    listed = await tool_server.build().list_tools()
    dumped = (tool.model_dump(by_alias=True, mode="json", exclude_none=True) for tool in listed)
    return {each["name"]: tools.tool_digest(each) for each in dumped}


async def test_each_pinned_digest_is_the_dev_tool_servers_current_definition() -> None:
    listed = await _listed()
    pinned = {grant.name: grant.digest for grant in _dev_tools(BASELINE_PACK.read_text()).tools}
    stale = {
        name: listed.get(name) for name, digest in pinned.items() if listed.get(name) != digest
    }
    assert stale == {}, f"re-pin these in {BASELINE_PACK} (name: current digest): {stale}"


async def test_the_dev_app_may_call_every_pinned_tool_but_send_email() -> None:
    caller = Identity(DEV_APP["agent"], tuple(DEV_APP["roles"]), tuple(DEV_APP["scopes"]))
    policy = tools.parse(yaml.safe_load(BASELINE_PACK.read_text())["tools"])
    listed = await _listed()
    decided = {name: decide(policy, caller, DEV_TOOLS, name, d) for name, d in listed.items()}
    assert {name for name, access in decided.items() if access.allowed} >= {
        "echo",
        "contact",
        "fail",
    }
    assert decided["send_email"].reason == "not_allowed"


def test_the_stack_rewrites_only_the_dev_tool_servers_url() -> None:
    written = yaml.safe_load(BASELINE_PACK.read_text())
    rendered = yaml.safe_load(render_baseline("http://127.0.0.1:1/mcp"))
    assert _dev_tools(yaml.safe_dump(rendered)).url == "http://127.0.0.1:1/mcp"
    rendered["tools"]["servers"][0]["url"] = written["tools"]["servers"][0]["url"]
    assert rendered == written
