"""A second topology for the replicator's failure drills: each region's leaf connection
runs through a `WanLink` the tests delay and partition, and replicators are started,
killed and counted here without disturbing the shared stack."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cordon_dev.stack import DevStack


@pytest.fixture(scope="package")  # stopped once tests/replicator is done
def wan_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevStack]:
    dev = DevStack(tmp_path_factory.mktemp("cordon-wan"), wan=True)
    try:
        dev.start()
        yield dev
    finally:
        dev.stop()
