"""Each mock provider keeps its own mode and counts, so a test can run several in one process."""

from __future__ import annotations

import httpx

from cordon_dev.mock_provider import MockProvider

CHAT = {"model": "mock-gpt", "messages": [{"role": "user", "content": "hello"}]}


def _client(provider: MockProvider) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=provider), base_url="http://mock")


async def test_two_instances_keep_their_own_modes_and_stats() -> None:
    failing, healthy = MockProvider(behaviour="500"), MockProvider(behaviour="ok")
    async with _client(failing) as bad, _client(healthy) as good:
        assert (await bad.post("/v1/chat/completions", json=CHAT)).status_code == 500
        answer = await good.post("/v1/chat/completions", json=CHAT)
        assert answer.json()["choices"][0]["message"]["content"] == "echo: hello"
        await good.post("/v1/chat/completions", json=CHAT)

        bad_counts = (await bad.get("/mock/stats")).json()["counts"]
        good_counts = (await good.get("/mock/stats")).json()["counts"]
    assert bad_counts == {"requests /v1/chat/completions": 1}
    assert good_counts == {"requests /v1/chat/completions": 2}
    assert failing.stats["requests /v1/chat/completions"] == 1


async def test_switching_one_instance_at_runtime_leaves_the_other_alone() -> None:
    first, second = MockProvider(), MockProvider()
    async with _client(first) as one, _client(second) as two:
        switched = await one.post("/mock/behaviour", json={"mode": "429"})
        assert switched.json() == {"mode": "429"}
        limited = await one.post("/v1/chat/completions", json=CHAT)
        served = await two.post("/v1/chat/completions", json=CHAT)
    assert (limited.status_code, limited.headers["retry-after"]) == (429, "1")
    assert served.status_code == 200
    assert (first.mode, second.mode) == ("429", "ok")


async def test_the_last_body_and_credentials_are_the_instances_own() -> None:
    first, second = MockProvider(), MockProvider()
    async with _client(first) as one, _client(second):
        await one.post("/v1/chat/completions", json=CHAT, headers={"authorization": "Bearer k1"})
    assert first.last_request == CHAT
    assert first.seen_auth["authorization"] == "Bearer k1"
    assert (second.last_request, second.seen_auth) == ({}, {})
