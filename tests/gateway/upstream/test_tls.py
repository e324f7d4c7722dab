"""Provider egress over HTTPS: certificates verified against the configured CA, the
host named (SNI) and checked, through the real SDK, streamed and not."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from cordon_dev.egress_proxy import ConnectProxy
from cordon_dev.procs import wait_for_http
from cordon_dev.stack import DevStack
from tests.helpers import find_record, gateway_sdk


@pytest.fixture(scope="module")
def over_tls(stack: DevStack) -> Iterator[str]:
    """A replica whose `mock-gpt` is served over HTTPS by a certificate for its host,
    and whose `mock-gpt-mini` by a certificate for another name."""
    valid = stack.start_mock("mock-tls", tls="valid")
    wrong = stack.start_mock("mock-wrong-host", tls="wrong-host")
    name = "gateway-eu-west-gw-tls"
    url = stack.start_gateway(
        "eu-west",
        "gw-tls",
        valid,
        extra={
            "targets": [
                {
                    "id": "tls",
                    "provider": {"api": "openai", "base_url": valid},
                    "models": ["mock-gpt"],
                },
                {
                    "id": "wrong-host",
                    "provider": {"api": "openai", "base_url": wrong},
                    "models": ["mock-gpt-mini"],
                },
            ]
        },
    )
    wait_for_http(url + "/readyz", 30, stack.processes[name].proc)
    yield url
    for process in (name, "mock-tls", "mock-wrong-host"):
        stack.processes[process].stop()


def test_a_provider_over_https_answers_whole_and_streamed(
    over_tls: str, endpoints: dict[str, Any]
) -> None:
    sdk = gateway_sdk(over_tls, endpoints["api_key"])
    messages: Any = [{"role": "user", "content": "over tls"}]
    answer = sdk.chat.completions.create(model="mock-gpt", messages=messages)
    assert answer.choices[0].message.content == "echo: over tls"
    stream = sdk.chat.completions.create(model="mock-gpt", messages=messages, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "echo: over tls"


async def test_a_certificate_for_another_host_is_refused(
    over_tls: str, endpoints: dict[str, Any]
) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        gateway_sdk(over_tls, endpoints["api_key"]).chat.completions.create(
            model="mock-gpt-mini", messages=[{"role": "user", "content": "to the wrong host"}]
        )
    assert caught.value.status_code == 502
    record_id = caught.value.response.headers["x-cordon-record-id"]
    record = await find_record(endpoints, "eu-west", record_id)
    assert record is not None and record["status"] == 502
    assert record["attempts"] == ["wrong-host:connect"]  # the handshake failed, not the call


@pytest.fixture(scope="module")
def proxied(stack: DevStack) -> Iterator[tuple[str, ConnectProxy]]:
    """A replica that reaches its HTTPS provider only through a CONNECT proxy."""
    proxy = ConnectProxy()
    valid = stack.start_mock("mock-tls-proxied", tls="valid")
    name = "gateway-eu-west-gw-proxied"
    target = {
        "id": "behind-proxy",
        "provider": {
            "api": "openai",
            "base_url": valid,
            "proxy": f"http://127.0.0.1:{proxy.port}",
        },
    }
    url = stack.start_gateway("eu-west", "gw-proxied", valid, extra={"targets": [target]})
    wait_for_http(url + "/readyz", 30, stack.processes[name].proc)
    yield url, proxy
    stack.processes[name].stop()
    stack.processes["mock-tls-proxied"].stop()
    proxy.stop()


def test_a_provider_behind_a_corporate_proxy_is_reached_through_connect(
    proxied: tuple[str, ConnectProxy], endpoints: dict[str, Any]
) -> None:
    url, proxy = proxied
    sdk = gateway_sdk(url, endpoints["api_key"])
    messages: Any = [{"role": "user", "content": "via the proxy"}]
    assert (
        sdk.chat.completions.create(model="mock-gpt", messages=messages).choices[0].message.content
        == "echo: via the proxy"
    )
    stream = sdk.chat.completions.create(model="mock-gpt", messages=messages, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == (
        "echo: via the proxy"
    )
    assert proxy.tunnels and all(t.startswith("127.0.0.1:") for t in proxy.tunnels)


def test_the_proxy_comes_from_https_proxy_unless_no_proxy_names_the_host() -> None:
    from gateway.upstream.client import Proxies

    proxies = Proxies.from_environ(
        {"HTTPS_PROXY": "http://proxy.corp:3128", "no_proxy": "internal.corp, .svc"}
    )
    assert proxies.for_url("https://api.openai.com/v1") == "http://proxy.corp:3128"
    assert proxies.for_url("https://llm.internal.corp/v1") is None
    assert proxies.for_url("https://gw.team.svc/v1") is None
    assert proxies.for_url("http://api.example.com/v1") is None  # no HTTP_PROXY given
