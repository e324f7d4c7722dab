"""What the SDK's tests share: the users' files, byte for byte, and the records an SDK
worker's log holds."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path
from typing import Any

import openai

from cordon.log import envelope
from cordon_sdk import govern
from gateway.records.local_log import LocalLog

ROOT = Path(__file__).resolve().parents[2]
SEEDS = ROOT / "tests" / "seed_configs"
EMAIL = "jane.doe@example.com"
HELLO: list[Any] = [{"role": "user", "content": "hello"}]


def say(text: str) -> str:
    """A prompt the mock answers with `text` (cordon_dev.mock_provider)."""
    return "say-base64: " + base64.b64encode(text.encode()).decode()


def seed(name: str, into: Path) -> Path:
    """A seed configuration file, byte for byte."""
    return Path(shutil.copyfile(SEEDS / name, into / name))


def records(state: Path) -> list[dict[str, Any]]:
    """The decision records an SDK worker's log holds, opened."""
    log = LocalLog(state / "records", read_only=True)
    found = [envelope.decode(data).payload_dict() for _, _, data in log.read_from(1)]
    return [r for r in found if r.get("kind") == "decision"]


def worker(root: Path, n: int = 0) -> Path:
    return root / ".cordon" / "sdk" / f"worker-{n}"


def asking(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


def governed_openai(provider_url: str, config: Path | list[Path]) -> openai.OpenAI:
    """The application's client as it makes it, governed by `config` (no retries: a
    test sees each refusal as it comes)."""
    client = openai.OpenAI(api_key="sk-app", base_url=f"{provider_url}/v1", max_retries=0)
    return govern(client, config=config)
