"""deploy/nats/estate.yaml as a platform engineer renders it: `cordon nats identities`
then `cordon nats render`, and every server's config passes nats-server's own check."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cordon.errors import TemplateError
from cordon.estate.plan import describe
from cordon_dev import certs
from cordon_dev.procs import nats_server_binary

ESTATE = Path(__file__).resolve().parents[2] / "deploy" / "nats" / "estate.yaml"
# A seed is a whole word of 58 characters: a public key (56, starting U) can hold "SU..." inside.
SEED = re.compile(r"\bS[UAO][A-Z2-7]{56}\b")


def _cordon(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cordon_cli", "nats", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def _tls_files(folder: Path) -> None:
    """Certificates under the names estate.yaml's comment gives, as cert-manager would
    mount them (one set serves this check for every server)."""
    leaf = certs.leaf_pki(folder / "made", "127.0.0.1", ("any",))
    route = certs.route_pki(folder / "made" / "route", "127.0.0.1", "any", ("node",))
    for name, source in {
        "leaf-ca.crt": leaf.ca_file,
        "leaf.crt": leaf.central.cert_file,
        "leaf.key": leaf.central.key_file,
        "route-ca.crt": route.ca_file,
        "route.crt": route.nodes["node"].cert_file,
        "route.key": route.nodes["node"].key_file,
    }.items():
        shutil.copy(source, folder / name)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("estate")
    tls = root / "tls"
    tls.mkdir()
    _tls_files(tls)
    estate = root / "estate.yaml"  # the shipped description, TLS files found here
    estate.write_text(ESTATE.read_text().replace("tls_dir: /etc/nats/tls", f"tls_dir: {tls}"))
    keys, out = root / "keys", root / "out"
    _cordon("identities", "--estate", str(estate), "--out", str(keys))
    _cordon(
        "render",
        "--estate",
        str(estate),
        "--public-keys",
        str(keys / "public-keys.json"),
        "--out",
        str(out),
    )
    return estate, keys, out


@pytest.mark.timeout(120)
def test_every_rendered_server_config_passes_nats_servers_check(
    rendered: tuple[Path, Path, Path],
) -> None:
    _, keys, out = rendered
    configs = sorted(out.glob("*/*.conf"))
    assert [f"{c.parent.name}/{c.name}" for c in configs] == [
        f"{place}/nats-{i}.conf" for place in ("central", "eu-west", "us-east") for i in range(3)
    ]
    for config in configs:
        place = config.parent.name
        env = {"PATH": "/usr/bin:/bin"}
        if place != "central":
            env["CORDON_LEAF_SEED"] = (keys / f"leaf-{place}.nk").read_text().strip()
        checked = subprocess.run(
            [nats_server_binary(), "-t", "-c", str(config)],
            capture_output=True,
            text=True,
            timeout=30,
            env=env,
        )
        assert checked.returncode == 0, (config, checked.stderr)


def test_a_rendered_region_is_a_three_zone_cluster_bridged_to_central(
    rendered: tuple[Path, Path, Path],
) -> None:
    _, _, out = rendered
    text = (out / "eu-west" / "nats-1.conf").read_text()
    assert 'server_name: "eu-west-b"' in text and '"az:eu-west-1b"' in text
    assert 'domain: "eu-west"' in text and 'unique_tag: "az:"' in text
    cluster = text[text.index("cluster {") : text.index("leafnodes {")]
    assert cluster.count("nats-route://") == 3 and "verify: true" in cluster
    assert "route-ca.crt" in cluster  # the cluster's own CA, not the leaf CA
    assert 'urls: ["nats-leaf://leaf.central.cordon.example.com:7422"]' in text


def test_rendered_configs_hold_no_seed_and_identities_rotate_nothing(
    rendered: tuple[Path, Path, Path],
) -> None:
    estate, keys, out = rendered
    for config in out.glob("*/*.conf"):
        assert not SEED.search(config.read_text()), config
        if config.parent.name != "central":
            assert "nkey: $CORDON_LEAF_SEED" in config.read_text()
    seeds = {p.name: p.read_bytes() for p in keys.glob("*.nk")}
    assert all(oct(p.stat().st_mode & 0o777) == "0o600" for p in keys.glob("*.nk"))
    _cordon("identities", "--estate", str(estate), "--out", str(keys))
    assert {p.name: p.read_bytes() for p in keys.glob("*.nk")} == seeds


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (lambda d: d["regions"]["eu-west"]["nodes"].pop(), "1, 3 or 5"),
        (lambda d: d["regions"]["us-east"]["nodes"][1].update(zone="us-east-1a"), "zone"),
        (lambda d: d["regions"]["us-east"]["nodes"][0].update(name="eu-west-a"), "name"),
        (lambda d: d["central"]["nodes"][2].pop("host"), "host"),
    ],
)
def test_a_description_that_could_not_keep_a_quorum_is_refused(
    change: object, complaint: str
) -> None:
    doc = yaml.safe_load(ESTATE.read_text())
    change(doc)  # type: ignore[operator]
    with pytest.raises(TemplateError, match=complaint):
        describe(doc)
