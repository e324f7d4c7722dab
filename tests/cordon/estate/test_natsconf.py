"""Rendering cordon/estate/templates/*.conf."""

from __future__ import annotations

import re
from pathlib import Path

import nkeys
import pytest

from cordon.errors import TemplateError
from cordon.estate import natsconf
from cordon_dev.topology import plan


def test_a_missing_value_is_an_error_not_a_blank() -> None:
    with pytest.raises(TemplateError, match="client_port"):
        natsconf.render("listen: {{host}}:{{client_port}}", {"host": "127.0.0.1"})


def test_rendered_configs_bridge_only_xr(tmp_path: Path) -> None:
    topology = plan(tmp_path)
    central = Path(topology.central.conf_path).read_text()
    assert "{{" not in central
    # the regions' leaf connections log in as users of central's XR account, and only there
    xr = central[central.index("  XR {") : central.index("system_account")]
    leaf_users = dict(re.findall(r'# leaf-([\w-]+)\n\s+\{nkey: "(U[A-Z2-7]+)"', xr))
    assert sorted(leaf_users) == ["eu-west", "us-east"]
    for region, public_key in leaf_users.items():  # each region's own leaf seed signs for it
        seed = (tmp_path / "nkeys" / f"leaf-{region}.nk").read_bytes()
        assert nkeys.from_seed(bytearray(seed)).public_key.decode() == public_key
    assert "authorization {" not in central[central.index("leafnodes {") :]
    for region in topology.regions.values():
        text = Path(region.server.conf_path).read_text()
        assert "{{" not in text
        remotes = text[text.index("remotes") :]
        assert re.findall(r"account: (\w+)", remotes) == ["XR"]
        assert f'domain: "{region.name}"' in text
