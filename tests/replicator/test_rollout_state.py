"""A rollout's state changes only by compare-and-set: whoever read it before someone
else changed it cannot write over that change."""

from __future__ import annotations

import dataclasses

import pytest
from nats.aio.client import Client as NATS
from nats.js.errors import KeyWrongLastSequenceError

from cordon.nats import streams, subjects
from replicator.rollout import RolloutState, load_state, save_state


async def test_a_change_made_from_a_stale_read_is_refused(bare_nats: NATS) -> None:
    await streams.ensure_central(bare_nats.jetstream())
    kv = await bare_nats.jetstream().key_value(subjects.REPLICATOR_BUCKET)
    name = "cas-drill"
    state = RolloutState(name, 7, waves=[["eu-west"], ["us-east"]], released={"eu-west": 7})
    await save_state(kv, state, 0)
    read_by_controller = await load_state(kv, name)
    read_by_operator = await load_state(kv, name)

    halted = dataclasses.replace(read_by_operator[0], halted="an operator's halt")
    await save_state(kv, halted, read_by_operator[1])
    advanced = dataclasses.replace(
        read_by_controller[0], wave=1, released={"eu-west": 7, "us-east": 7}
    )
    with pytest.raises(KeyWrongLastSequenceError):
        await save_state(kv, advanced, read_by_controller[1])  # read before the halt
    now, _ = await load_state(kv, name)
    assert now is not None and now.halted == "an operator's halt" and now.wave == 0
    with pytest.raises(KeyWrongLastSequenceError):
        await save_state(kv, state, 0)  # nor can anyone create it twice
