"""Configuration files as our users write them (the seeds' files): a `gateway:` block
checked key by key, a pack named after its file, the named policies honoured or
refused, and `cordon policy lint` saying what a sidecar would refuse at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest

from cordon.errors import DocumentError
from cordon.packs import chain, config_file, parse_document
from cordon.packs.lint import check_file

SEEDS = Path(__file__).resolve().parents[2] / "seed_configs"


@pytest.mark.parametrize("name", sorted(p.name for p in SEEDS.glob("*.yaml")))
def test_every_seed_file_lints_clean(name: str) -> None:
    _, problems = check_file(SEEDS / name)
    assert problems == []


def lint(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "cordon.yaml"
    path.write_text(text)
    return [str(p) for p in check_file(path)[1]]


def test_an_unknown_gateway_key_is_named_with_its_line(tmp_path: Path) -> None:
    problems = lint(tmp_path, "gateway:\n  listen_port: 1\n  mdoe: local\npolicies: []\n")
    assert len(problems) == 1
    assert problems[0].startswith(f"{tmp_path / 'cordon.yaml'}:3: gateway.mdoe: unknown key 'mdoe'")


@pytest.mark.parametrize(
    ("text", "where", "why"),
    [
        ("gateway:\n  mode: cloud\n", "gateway.mode", "mode must be one of local, region"),
        ("gateway:\n  listen_port: 70000\n", "gateway.listen_port", "a port number"),
        ("gateway:\n  config_poll_interval: soon\n", "gateway.config_poll_interval", "duration"),
        ("gateway:\n  mode: region\n", "gateway.mode", "needs region_settings"),
    ],
)
def test_a_malformed_gateway_setting_is_named(
    tmp_path: Path, text: str, where: str, why: str
) -> None:
    (problem,) = lint(tmp_path, text)
    assert f": {where}: " in problem and why in problem


@pytest.mark.parametrize(
    ("policies", "where", "why"),
    [
        ("  chain: [audit-logger, rate-limiter]\n", "policies.chain[1]", "not one Cordon knows"),
        (
            "  chain: [audit-logger]\n  policy:\n    audit-logger:\n      immutable: false\n",
            "policies.policy.audit-logger.immutable",
            "false cannot be honoured",
        ),
        (
            "  chain: [audit-logger]\n  policy:\n    audit-logger:\n      log_all_access: false\n",
            "policies.policy.audit-logger.log_all_access",
            "false cannot be honoured",
        ),
        (
            "  chain: [audit-logger]\n  policy:\n    audit-logger:\n      rotate: daily\n",
            "policies.policy.audit-logger.rotate",
            "has no setting 'rotate'",
        ),
        (
            "  chain: []\n  policy:\n    audit-logger:\n      retention_days: 30\n",
            "policies.policy.audit-logger",
            "not in policies.chain",
        ),
    ],
)
def test_a_named_policy_cordon_cannot_honour_refuses_the_pack(
    tmp_path: Path, policies: str, where: str, why: str
) -> None:
    (problem,) = lint(tmp_path, "pack: {name: p}\npolicies:\n" + policies)
    assert f": {where}: " in problem and why in problem


def test_audit_logger_retention_is_read_from_the_chain() -> None:
    document = {
        "pack": {"name": "p"},
        "policies": {"chain": ["audit-logger"], "policy": {"audit-logger": {"retention_days": 9}}},
    }
    parse_document(document)
    assert chain.audit_logger(document).retention_days == 9.0


def test_a_pack_without_pack_is_named_after_its_file() -> None:
    gateway, pack = config_file.split(
        {"gateway": {"listen_port": 1}, "policies": []}, "x/side car.yml"
    )
    assert gateway == {"listen_port": 1}
    assert pack["pack"] == {"name": "side-car"}


def test_fragments_merge_gateway_keys_in_order() -> None:
    merged = config_file.merge(
        [
            {"gateway": {"listen_port": 1, "mode": "local"}, "policies": []},
            {"gateway": {"listen_port": 2}},
        ]
    )
    assert merged == {"gateway": {"listen_port": 2, "mode": "local"}, "policies": []}


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("60s", 60.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("500ms", 0.5),
        ("1.5s", 1.5),
        (" 10 s ", 10.0),
        ("90", 90.0),
        (".5s", 0.5),
        (2, 2.0),
        (0.25, 0.25),
    ],
)
def test_intervals(text: object, seconds: float) -> None:
    assert config_file.parse_interval(text) == seconds


@pytest.mark.parametrize(
    "text", ["0s", "0", 0, -5, "-5s", "soon", "5 minutes", "", "nan", float("inf"), True]
)
def test_intervals_refused(text: object) -> None:
    with pytest.raises(DocumentError):
        config_file.parse_interval(text)


def test_a_yaml_alias_bomb_is_refused_at_once(tmp_path: Path) -> None:
    """A few hundred bytes of nested aliases would expand to billions of nodes."""
    levels = ["a0: &a0 [email, email, email, email, email, email, email, email, email]"]
    for n in range(1, 9):
        levels.append(f"a{n}: &a{n} [" + ", ".join([f"*a{n - 1}"] * 9) + "]")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(levels) + "\npolicies: []\n")
    (problem,) = check_file(path)[1]
    assert "aliases (*name) are not accepted" in str(problem) and ":2:" in str(problem)
