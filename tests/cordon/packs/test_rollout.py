"""The `rollout:` section a pack owner writes: parsed strictly, planned over the regions
the pack covers, and refused by lint with the path when it is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cordon.errors import DocumentError
from cordon.packs.lint import check_file
from cordon.packs.rollout import parse_duration, parse_rollout

BASE = {"pack": {"name": "p"}}


def test_a_pack_without_a_rollout_goes_everywhere_at_once() -> None:
    assert parse_rollout(BASE) is None


def test_waves_soak_and_halt_conditions_are_read() -> None:
    rollout = parse_rollout(
        {
            **BASE,
            "rollout": {
                "waves": [["eu-west"], ["us-east", "ap-south"]],
                "soak": "10m",
                "halt_on": {"activation_failures": 2, "error_ratio": 0.05, "min_calls": 50},
            },
        }
    )
    assert rollout is not None
    assert rollout.waves == (("eu-west",), ("us-east", "ap-south"))
    assert rollout.soak_s == 600 and rollout.activation_failures == 2
    assert rollout.error_ratio == 0.05 and rollout.min_calls == 50


def test_regions_no_wave_names_go_last_and_uncovered_ones_are_left_out() -> None:
    rollout = parse_rollout({**BASE, "rollout": {"waves": [["eu-west"], ["us-east"]]}})
    assert rollout is not None
    assert rollout.planned(("eu-west", "ap-south")) == (("eu-west",), ("ap-south",))
    assert rollout.planned(("*",)) == (("eu-west",), ("us-east",))


@pytest.mark.parametrize(
    "section",
    [
        {"waves": []},
        {"waves": "eu-west"},
        {"waves": [["eu-west"], ["eu-west"]]},
        {"waves": [["eu-west"]], "soak": "soon"},
        {"waves": [["eu-west"]], "halt_on": {"error_ratio": 2}},
        {"waves": [["eu-west"]], "halt_on": {"activation_failures": 0}},
    ],
)
def test_a_malformed_rollout_is_refused(section: object) -> None:
    with pytest.raises(DocumentError):
        parse_rollout({**BASE, "rollout": section})


def test_durations() -> None:
    assert [parse_duration(v) for v in (90, "45s", "2h", "250ms")] == [90, 45, 7200, 0.25]


def test_lint_names_the_line_of_a_bad_rollout(tmp_path: Path) -> None:
    path = tmp_path / "pack.yaml"
    path.write_text(yaml.safe_dump({**BASE, "rollout": {"waves": [["eu-west"]], "pace": 1}}))
    _, problems = check_file(path)
    assert problems and "rollout" in str(problems[0]) and "pace" in str(problems[0])
    path.write_text(yaml.safe_dump({**BASE, "rollout": {"waves": [["a"], ["a"]]}}))
    _, problems = check_file(path)
    assert problems and "twice" in str(problems[0])
