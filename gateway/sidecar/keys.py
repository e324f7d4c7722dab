"""A local-mode sidecar's own keys, made on its first start under `<state_dir>/keys`,
each file 0600 from its first byte, never replaced once there:

- `log-root.key` plays the regional key for the sidecar's own log: it enrols the
  signing key, and it is the key an auditor pins (`cordon sidecar key`) to verify the
  log offline with `cordon audit verify`, as they pin a region's key.
- `sidecar.key` and `sidecar.enrolment` sign the records and the checkpoints.
- `policy.key` signs a statement of each configuration the sidecar reads from its file
  or its repository, so the pack goes through the same activation as a replica's
  (revision that only increases, last good pack kept, refusals said). It vouches for
  nothing more than "this file was read here"; where a configuration must carry its
  owner's signature, `pack_trust` names the owners and this key signs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cordon.errors import CordonError
from cordon.log.enrolment import enrol
from cordon.log.keys import SigningKey, public_bytes

__all__ = ["LocalKeys"]


@dataclass(frozen=True)
class LocalKeys:
    root: SigningKey
    signer: SigningKey
    enrolment: bytes
    policy: SigningKey

    @classmethod
    def load_or_create(cls, directory: Path, region: str, replica: str) -> LocalKeys:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        root = SigningKey.load_or_create(directory / "log-root.key")
        signer = SigningKey.load_or_create(directory / "sidecar.key")
        enrolment_file = directory / "sidecar.enrolment"
        if _enrolled_as(enrolment_file) != (region, replica):
            # First start, or a new name for this state (a pod's hostname): the root
            # enrols the same key under the name the records will carry.
            from cordon.files import write_private

            write_private(enrolment_file, enrol(root, region, replica, signer))
        policy = SigningKey.load_or_create(directory / "policy.key")
        return cls(root, signer, enrolment_file.read_bytes(), policy)

    @staticmethod
    def existing_root_hex(directory: Path) -> str:
        """The log root's public key in `directory`, made by the log's own writer (an
        SDK worker's): read, nothing created or re-enrolled (`ConfigError` if none)."""
        return public_bytes(SigningKey.load(directory / "log-root.key").public_key).hex()

    @property
    def root_public_hex(self) -> str:
        """What an auditor pins: the raw public key of the log's root, in hex."""
        return public_bytes(self.root.public_key).hex()

    @property
    def policy_public_hex(self) -> str:
        """The key a sidecar trusts for the packs it signs of its own files."""
        return public_bytes(self.policy.public_key).hex()


def _enrolled_as(path: Path) -> tuple[str, str] | None:
    """The (region, replica) an enrolment file names; None if there is none to read."""
    from cordon.log import envelope

    try:
        statement = envelope.decode(path.read_bytes()).payload_dict()
    except (OSError, ValueError, CordonError):
        return None
    return str(statement.get("region")), str(statement.get("replica"))
