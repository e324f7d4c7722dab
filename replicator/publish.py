"""`cordon policy publish FILE`: put a pack on the central `POLICY` stream.

The revision is the previous one plus one unless the file names its own; the
publish is conditional on the stream's last pack of that name, so two owners
publishing at once cannot both get the same revision.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import yaml
from nats.errors import Error as NatsError
from nats.js.errors import NotFoundError

from gateway import packs, subjects
from gateway.errors import PackError
from replicator.errors import PublishError


@dataclass(frozen=True)
class Published:
    name: str
    revision: int
    hash: str
    stream_seq: int


def load_document(path: Path) -> dict[str, Any]:
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise PublishError(f"cannot read pack {path}: {exc}") from exc
    if not isinstance(document, dict):
        raise PublishError(f"{path}: a pack must be a YAML map")
    return document


async def publish(nats_url: str, document: dict[str, Any]) -> Published:
    try:
        name = packs.pack_name(document)
    except PackError as exc:
        raise PublishError(str(exc)) from exc
    document = dict(document)
    explicit = document.pop("revision", None)
    subject = subjects.policy_subject(name)
    nc = await nats.connect(nats_url, name="cordon-policy-publish")
    try:
        js = nc.jetstream()
        try:
            last = await js.get_last_msg(subjects.POLICY_STREAM, subject)
            last_seq, last_revision = last.seq, int(json.loads(last.data or b"{}")["revision"])
        except NotFoundError:
            last_seq, last_revision = 0, 0
        revision = int(explicit) if explicit is not None else last_revision + 1
        if revision <= last_revision:
            raise PublishError(f"revision {revision} is not above the published {last_revision}")
        published = packs.publish_form(document, revision, time.time())
        packs.parse_published(published)  # refuse what no gateway would activate
        ack = await js.publish(
            subject,
            json.dumps(published).encode(),
            headers={"Nats-Expected-Last-Subject-Sequence": str(last_seq)},
        )
        return Published(name, revision, published["hash"], ack.seq)
    except PackError as exc:
        raise PublishError(f"pack refused: {exc}") from exc
    except NatsError as exc:
        raise PublishError(f"publish failed: {exc}") from exc
    finally:
        await nc.close()
