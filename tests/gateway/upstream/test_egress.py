"""Where a replica may send calls: the allow-list, and never a link-local or cloud
metadata address, or loopback outside dev; checked when a pack is activated and again
on every address a name resolves to when connecting."""

from __future__ import annotations

from typing import Any

import pytest

from cordon.errors import ConnectError, PackError
from gateway.upstream.egress import EgressPolicy
from gateway.upstream.httpclient import HttpClient

PRODUCTION = EgressPolicy()  # the defaults: any public https origin, no loopback


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data", "link-local or cloud metadata"),
        ("https://169.254.169.254/v1", "link-local or cloud metadata"),
        ("http://[fe80::1]/v1", "link-local or cloud metadata"),
        ("http://[fd00:ec2::254]/v1", "link-local or cloud metadata"),
        ("http://metadata.google.internal/computeMetadata/v1", "cloud metadata service"),
        ("https://127.0.0.1:8600/v1", "loopback"),
        ("https://[::1]/v1", "loopback"),
        ("https://0.0.0.0/v1", "loopback"),
        ("http://api.openai.com/v1", "not in the replica's allowed_upstreams"),
        ("ftp://api.openai.com/v1", r"not an http\(s\) URL"),
    ],
)
def test_a_pack_cannot_point_a_replica_anywhere(url: str, reason: str) -> None:
    with pytest.raises(PackError, match=reason):
        PRODUCTION.check_url(url)


def test_the_allow_list_decides_among_the_rest() -> None:
    PRODUCTION.check_url("https://api.openai.com/v1")
    azure = EgressPolicy(allowed_upstreams=("https://*.openai.azure.com",))
    azure.check_url("https://eu.openai.azure.com/openai/v1")
    with pytest.raises(PackError, match="allowed_upstreams"):
        azure.check_url("https://api.openai.com/v1")
    dev = EgressPolicy(allowed_upstreams=("http://127.0.0.1:*",), allow_loopback=True)
    dev.check_url("http://127.0.0.1:8600/v1")
    with pytest.raises(PackError, match="link-local"):
        dev.check_url("http://169.254.169.254/")  # loopback allowed is not everything allowed


def test_a_pack_reads_only_the_environment_the_settings_name() -> None:
    environ = {"OPENAI_API_KEY": "k", "AWS_SECRET_ACCESS_KEY": "s", "CORDON_PROVIDER_URL": "u"}
    assert PRODUCTION.environment(environ) == {"OPENAI_API_KEY": "k", "CORDON_PROVIDER_URL": "u"}


async def test_a_name_that_resolves_to_a_refused_address_is_not_connected_to(
    endpoints: dict[str, Any],
) -> None:
    """`localhost` passes as a name at activation; where it leads is checked at connect."""
    port = endpoints["mock_provider"].split(":")[2].split("/")[0]
    guarded = HttpClient(guard=PRODUCTION.check_address)
    with pytest.raises(ConnectError, match="loopback"):
        await guarded.request(
            "POST",
            f"http://localhost:{port}/v1/chat/completions",
            b"{}",
            {},
            connect=2,
            first_byte=2,
            total=2,
        )
    dev = HttpClient(guard=EgressPolicy(allow_loopback=True).check_address)
    response = await dev.request(
        "POST", f"http://localhost:{port}/healthz", b"", {}, connect=2, first_byte=2, total=2
    )
    await response.read()
    assert response.status in (200, 404, 405)
    dev.close()
    guarded.close()
