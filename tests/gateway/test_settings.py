"""A replica's settings: one file for every pod of a StatefulSet, each pod its own
replica with its own signing key and enrolment (`{hostname}`)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from gateway.settings import from_mapping

SEED = {"url": "nats://127.0.0.1:4222", "nkey_seed_file": "/var/run/secrets/cordon/x.nk"}


def test_each_pod_names_itself_and_finds_its_own_key() -> None:
    settings = from_mapping(
        {
            "region": "eu-west",
            "replica": "{hostname}",
            "audit_nats": SEED,
            "xr_nats": SEED,
            "signing_key_file": "/var/run/secrets/cordon/{hostname}.key",
            "enrolment_file": "/var/run/secrets/cordon/{hostname}.enrolment",
        },
        Path("/etc/cordon"),
    )
    host = socket.gethostname()
    assert settings.replica == host
    assert settings.signing_key_file == Path(f"/var/run/secrets/cordon/{host}.key")
    assert settings.enrolment_file == Path(f"/var/run/secrets/cordon/{host}.enrolment")


def test_the_sealer_reads_its_pseudonym_secret_from_a_mounted_file(tmp_path: Path) -> None:
    from gateway.ledger.sealer import SealerSettings

    (tmp_path / "pseudonym.secret").write_text("regional-secret\n")
    config = tmp_path / "sealer.json"
    config.write_text(
        json.dumps(
            {
                "region": "eu-west",
                "audit_nats": SEED,
                "xr_nats": SEED,
                "pseudonym_key_file": "pseudonym.secret",
                "signing_key_file": "sealer.key",
                "enrolment_file": "sealer.enrolment",
            }
        )
    )
    assert SealerSettings.load(config).pseudonym_key == b"regional-secret"
