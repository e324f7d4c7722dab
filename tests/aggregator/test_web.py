"""The web page an auditor or SRE opens: token login, both regions with their status,
the chart, drill-down to record ids with the command to fetch them, in a real headless
Chromium. It saves screenshots under test-output/web/ for a person to look at."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from cordon_dev.stack import DEV_API_KEY
from tests.browser import Browser, find_chromium
from tests.helpers import eventually
from tests.mcp_agent import call_tool

SHOTS = Path(__file__).resolve().parents[2] / "test-output" / "web"


def test_the_page_needs_a_login_and_only_auditor_or_sre_tokens_get_one(
    endpoints: dict[str, Any],
) -> None:
    base = endpoints["aggregator"]
    assert httpx.get(base + "/ui/").headers["location"] == "/ui/login"
    for token, status in (("nonsense", 401), (endpoints["tokens"]["admin"], 401)):
        refused = httpx.post(base + "/ui/login", data={"token": token})
        assert refused.status_code == status and "cordon_session" not in refused.cookies
    with httpx.Client(base_url=base) as client:
        signed = client.post("/ui/login", data={"token": endpoints["tokens"]["auditor"]})
        assert signed.status_code == 303
        cookie = signed.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        page = client.get("/ui/")
        assert page.status_code == 200
        # Whole when it arrives: no script, nothing fetched from anywhere else.
        html = page.text.lower()
        assert "<script" not in html and "<link" not in html and "@import" not in html
        assert not re.search(r'(src|href)="(https?:)?//', html)
        client.post("/ui/logout")
        assert client.get("/ui/").status_code == 303  # the session is gone
    assert "/ui/" not in json.dumps(httpx.get(base + "/openapi.json").json()["paths"])


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    binary, why = find_chromium()
    if binary is None:
        pytest.skip(why)
    chromium = Browser(binary, tmp_path_factory.mktemp("chromium"))
    try:
        yield chromium
    finally:
        chromium.close()


@pytest.mark.timeout(90)
@pytest.mark.usefixtures("fronted")  # other tests publish packs of their own
def test_an_sre_sees_both_regions_the_chart_and_drills_down(
    endpoints: dict[str, Any], browser: Browser
) -> None:
    since = datetime.now(UTC).isoformat()
    for region in endpoints["gateways"]:
        for _ in range(3):
            httpx.post(
                endpoints["gateways"][region] + "/v1/chat/completions",
                headers={"authorization": f"Bearer {DEV_API_KEY}"},
                json={"model": "mock-gpt", "messages": [{"role": "user", "content": "chart"}]},
            )
    tool_call = call_tool(
        endpoints["mcp"]["eu-west"]["dev-tools"], DEV_API_KEY, "echo", {"text": "x"}
    )
    base = endpoints["aggregator"]
    eventually(
        lambda: (
            sum(
                i["count"]
                for i in httpx.get(
                    base + "/v1/counts",
                    params={"since": since},
                    headers={"authorization": f"Bearer {endpoints['tokens']['sre']}"},
                ).json()["items"]
            )
            >= 7
        ),
        timeout=30,
        interval=0.5,
    )

    browser.goto(base + "/ui/login")
    token = json.dumps(endpoints["tokens"]["sre"])
    browser.evaluate(
        f"document.querySelector('input[name=token]').value = {token};"
        "document.querySelector('form.login').submit()"
    )
    browser.wait_for("location.pathname === '/ui/' && document.readyState === 'complete'")
    for region in endpoints["gateways"]:
        status = browser.evaluate(
            f"document.querySelector('tr.region[data-region=\"{region}\"] .badge')?.textContent"
        )
        assert status in ("verified", "gap", "verification failed", "quiet > 10 min"), status
    drawn = browser.evaluate(
        "[...document.querySelectorAll('svg.chart rect.bar')]"
        ".filter(r => r.getBBox().height > 0).map(r => r.dataset.region)"
    )
    assert set(drawn) >= set(endpoints["gateways"])  # a bar per region, drawn
    assert "result" in tool_call
    tools_table = browser.evaluate(
        "[...document.querySelectorAll('h2')].find(h => h.textContent.startsWith('Tool calls'))"
        "?.nextElementSibling?.innerText"
    )
    assert "dev-tools" in tools_table and "echo" in tools_table  # beside the model calls
    shot = browser.screenshot(SHOTS / "overview.png")
    print(f"screenshot: {shot}")
    assert shot.stat().st_size > 10_000

    browser.goto(base + "/ui/records?since=" + since.replace("+", "%2B"))
    commands = browser.evaluate(
        "[...document.querySelectorAll('code.cmd')].map(c => c.textContent)"
    )
    assert len(commands) >= 6
    for api in endpoints["audit_apis"].values():
        assert any(c.startswith(f"cordon audit export --api {api} --from ") for c in commands)
    print(f"screenshot: {browser.screenshot(SHOTS / 'records.png')}")
