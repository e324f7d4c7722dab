"""A sidecar's policy without restarts: its files re-read when they change (and on
SIGHUP), or its repository polled, each new configuration offered to the same
activation a replica's packs go through.

What a source delivers is checked as `cordon policy lint` checks it; a configuration
that does not parse or lint is refused before it is offered (the active pack stays,
and the status endpoint, the log and `cordon_pack_rejections_total` say why). One
that passes is signed with the sidecar's policy key under the next revision, unless
the sidecar trusts named owners (`pack_trust`): then only a pack they signed (`cordon
policy sign`) is offered, and the activation checks their signature.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from cordon.errors import CordonError, DocumentError
from cordon.log.keys import SigningKey
from cordon.packs import config_file, document_hash, lint, signing
from gateway.backplane import PackUpdate
from gateway.policy.activation import PackState
from gateway.policy.sources.update import digest

__all__ = ["Candidates", "file_origin"]

log = logging.getLogger("cordon.sidecar.policy")
LOCAL_VALIDITY_S = 10 * 365 * 86400  # a file's pack lasts until the file changes


def file_origin(name: str, data: bytes) -> dict[str, str]:
    """What a record carries of the policy file a pack was read from, as the file
    source says it when the file changes (gateway.policy.sources)."""
    return {"file": name, "digest": digest(data)}


class Candidates:
    """Turns what a source found into the update to offer (or the refusal to say)."""

    def __init__(
        self,
        packs: PackState,
        policy_key: SigningKey | None,
        fragments: Sequence[dict[str, Any]] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._packs = packs
        self._key = policy_key  # None: only packs signed by the trusted owners
        self._fragments = list(fragments)  # local fragments merged after the pack's file
        self._clock = clock

    @property
    def owners_only(self) -> bool:
        """Only packs the trusted owners signed are offered (`pack_trust` is set)."""
        return self._key is None

    def of(self, name: str, data: bytes, origin: dict[str, str]) -> PackUpdate | None:
        """The update for `data` read from `name`; None if it changes nothing."""
        if self._key is None:
            return PackUpdate(data, origin=origin)  # signed or refused by the activation
        try:
            pack = self._pack_document(name, data)
        except CordonError as exc:
            return PackUpdate(None, origin=origin, refused=str(exc))
        return self.of_document(pack, origin)

    def of_document(self, pack: dict[str, Any], origin: dict[str, str]) -> PackUpdate | None:
        """The update for a pack document already read and checked (at start-up)."""
        if self._key is None:
            return None  # only an owner's signed pack, from the repository
        active = self._packs.active
        same_commit = (active.origin or {}).get("commit") == origin.get("commit")
        if document_hash(pack) == active.hash and same_commit:
            return None  # a touch, or a file read again: nothing to say differently
        revision = max(active.revision, self._packs.floor) + 1
        return PackUpdate(self._sign(pack, revision), origin=origin)

    def _pack_document(self, name: str, data: bytes) -> dict[str, Any]:
        try:
            document, problems = lint.check_text(data.decode(), name)
        except UnicodeDecodeError as exc:
            raise DocumentError(f"{name}: not valid YAML: {exc}") from exc
        if problems:
            raise DocumentError("; ".join(str(problem) for problem in problems))
        merged = config_file.merge([document, *self._fragments])
        _, pack = config_file.split(merged, name)
        if not pack:
            raise DocumentError(f"{name}: holds no policy")
        if pack["pack"]["name"] != self._packs.pack_name:
            raise DocumentError(
                f"{name}: pack {pack['pack']['name']!r} is not {self._packs.pack_name!r} "
                "(a sidecar enforces one pack; renaming it needs a restart)"
            )
        return pack

    def _sign(self, pack: dict[str, Any], revision: int) -> bytes:
        assert self._key is not None
        now = int(self._clock())
        statement = signing.statement_bytes(
            pack, pack["pack"]["name"], revision, now + LOCAL_VALIDITY_S, ["*"], signed_at=now
        )
        return signing.sign(statement, [self._key])
