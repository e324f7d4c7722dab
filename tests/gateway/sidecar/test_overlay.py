"""A region-mode sidecar's own rules: added to every pack the region sends (only ever
adding), named `local/...` in the records with the overlay's digest, and left out when
the region's pack forbids overlays."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cordon.errors import ConfigError
from cordon_dev.inprocess import InProcessGateway, in_process_gateway
from gateway.sidecar.overlay import Overlay

pytestmark = pytest.mark.fast

NO_EMAIL = {"name": "no-email", "type": "output_filter", "action": "redact", "patterns": ["email"]}
NO_PHONE = {"name": "no-phone", "type": "output_filter", "action": "redact", "patterns": ["phone"]}
REGION_PACK: dict[str, Any] = {"pack": {"name": "default"}, "policies": [NO_PHONE]}
PROMPT = "a@example.com +14155552671"


async def said(gw: InProcessGateway) -> str:
    answer = await gw.client.post(
        "/v1/chat/completions",
        json={"model": "mock-gpt", "messages": [{"role": "user", "content": PROMPT}]},
        headers=gw.auth,
    )
    assert answer.status_code == 200
    return str(answer.json()["choices"][0]["message"]["content"])


async def test_an_overlay_adds_its_rules_unless_the_regions_pack_forbids_it(
    tmp_path: Path,
) -> None:
    overlay = Overlay({"pack": {"name": "mine"}, "policies": [NO_EMAIL]}, "sidecar.yaml")
    async with in_process_gateway(tmp_path) as gw:
        gw.runtime.packs.overlay = overlay.apply
        await gw.activate(REGION_PACK, 2)
        assert await said(gw) == "echo: [EMAIL] [PHONE]"  # the region's rule stays
        added = gw.records()[-1]
        await gw.activate({**REGION_PACK, "local_overlay": "forbid"}, 3)
        assert await said(gw) == "echo: a@example.com [PHONE]"
        forbidden = gw.records()[-1]
    assert added["rules"] == ["no-phone", "local/no-email"]  # added after, never instead
    assert added["pack"]["origin"]["overlay"] == overlay.digest
    assert added["pack"]["revision"] == 2  # the region's pack, its revision and hash
    assert "origin" not in forbidden["pack"]
    assert overlay.status()["forbidden_by"] == "default r3"


@pytest.mark.parametrize(
    ("document", "why"),
    [
        ({"providers": {"targets": []}, "policies": []}, "providers: in region mode"),
        ({"fail_mode": "open", "policies": []}, "fail_mode: in region mode"),
        ({"policies": [{**NO_EMAIL, "patterns": ["no_such"]}]}, "unknown patterns"),
        ({"policies": {"chain": ["audit-logger"]}}, "an overlay is a list of rules"),
    ],
)
def test_an_overlay_may_only_add_readable_rules(document: dict[str, Any], why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        Overlay(document, "sidecar.yaml")
