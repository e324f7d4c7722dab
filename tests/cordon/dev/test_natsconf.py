"""Rendering deploy/nats/*.conf."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cordon.dev import natsconf
from cordon.dev.topology import plan
from cordon.errors import TemplateError


def test_a_missing_value_is_an_error_not_a_blank() -> None:
    with pytest.raises(TemplateError, match="client_port"):
        natsconf.render("listen: {{host}}:{{client_port}}", {"host": "127.0.0.1"})


def test_rendered_configs_bridge_only_xr(tmp_path: Path) -> None:
    topology = plan(tmp_path)
    central = Path(topology.central.conf_path).read_text()
    assert "{{" not in central
    # the regions' leaf connections log in as users of central's XR account, and only there
    xr = central[central.index("  XR {") : central.index("system_account")]
    assert sorted(re.findall(r'user: "leaf-([\w-]+)"', xr)) == ["eu-west", "us-east"]
    assert "authorization {" not in central[central.index("leafnodes {") :]
    for region in topology.regions.values():
        text = Path(region.server.conf_path).read_text()
        assert "{{" not in text
        remotes = text[text.index("remotes") :]
        assert re.findall(r"account: (\w+)", remotes) == ["XR"]
        assert f'domain: "{region.name}"' in text
