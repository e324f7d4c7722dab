"""Where a local topology (`python -m cordon_dev up`, `make run`) keeps its state: the
CLI reads its endpoints.json when no endpoint is given, so commands work against it
with no flags."""

from pathlib import Path

__all__ = ["DEV_DIR"]

DEV_DIR = Path(".cordon/dev")
