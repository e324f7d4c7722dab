"""What `make run` writes that holds a secret is readable by its owner only."""

from __future__ import annotations

import stat

from cordon_dev.stack import DevStack


def test_credentials_keys_and_configs_are_0600(stack: DevStack) -> None:
    secret_files = [
        stack.root / "endpoints.json",
        *(stack.root / "config").glob("*.json"),
        *(stack.root / "run" / "nats").glob("*.conf"),
        *(stack.root / "run" / "pki").glob("*.key"),
        *(stack.root / "run" / "nkeys").glob("*.nk"),
        *(p for p in (stack.root / "keys").rglob("*") if p.suffix in (".key", ".secret")),
    ]
    assert len(secret_files) > 30
    loose = [str(p) for p in secret_files if stat.S_IMODE(p.stat().st_mode) != 0o600]
    assert loose == []
