"""What `make run` writes that holds a secret is readable by its owner only."""

from __future__ import annotations

import json
import re
import stat

import httpx

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


def test_endpoints_name_the_nats_metrics_of_every_server(stack: DevStack) -> None:
    """`make run` serves every NATS server's metrics under prometheus-nats-exporter's
    names (tests/cordon/nats/test_exporter.py checks them against a real server)."""
    described = json.loads((stack.root / "endpoints.json").read_text())
    assert stack.topology is not None
    page = httpx.get(described["nats_metrics"], timeout=10).text
    for server in stack.topology.servers:
        assert f'gnatsd_varz_connections{{server_id="{server.name}"}}' in page, server.name
    assert re.search(r'jetstream_stream_total_messages\{[^}]*stream_name="RECORDS"', page)
    assert re.search(r'jetstream_stream_source_lag\{[^}]*stream_name="AUDIT_SUMMARY"', page)
