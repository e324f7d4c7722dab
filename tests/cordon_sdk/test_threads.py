"""A synchronous client's call is served in the calling thread (`cordon_sdk.here`), on
the engine's one log, key and sequence: many threads, an asynchronous client beside
them, and a synchronous client called from inside a coroutine each leave one record
per call, numbered without a gap, that verify with the pinned key."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import openai
import pytest

from cordon.log import envelope
from cordon_sdk import govern, here, shutdown
from gateway.records.local_log import LocalLog
from tests.cordon_sdk.harness import EMAIL, ROOT, asking, governed_openai, seed, worker
from tests.cordon_sdk.test_govern import cordon
from tests.gateway.sidecar.harness import real_provider_names

THREADS, CALLS = 6, 15


def _records(state: Path) -> list[dict[str, Any]]:
    """Every record the worker's log holds on its records subject, opened, in order."""
    log = LocalLog(state / "records", read_only=True)
    opened = [envelope.decode(data).payload_dict() for _, _, data in log.read_from(1)]
    return [record for record in opened if "replica_seq" in record]


def _replica_seqs(state: Path) -> list[int]:
    return [int(record["replica_seq"]) for record in _records(state)]


def test_calls_from_many_threads_and_an_async_client_each_leave_one_record_in_order(
    tmp_path: Path, provider_url: str
) -> None:
    config = seed("sidecar.yaml", tmp_path)
    base = f"{provider_url}/v1"
    client = governed_openai(provider_url, config)
    concurrent = govern(
        openai.AsyncOpenAI(api_key="sk-app", base_url=base, max_retries=0), config=config
    )
    answered: list[tuple[str, str]] = []  # (record id, answer) per call
    failures: list[BaseException] = []

    def one_thread(n: int) -> None:
        try:
            for k in range(CALLS):
                raw = client.chat.completions.with_raw_response.create(
                    model="mock-gpt", messages=asking(f"thread {n} call {k} {EMAIL}")
                )
                content = raw.parse().choices[0].message.content or ""
                answered.append((raw.headers["x-cordon-record-id"], content))
        except BaseException as exc:  # reported below, with the rest
            failures.append(exc)

    async def asynchronous() -> None:
        try:
            async with concurrent:  # closed on its own loop, before that loop goes
                await asynchronous_calls()
        except BaseException as exc:  # reported below, with the rest
            failures.append(exc)

    async def asynchronous_calls() -> None:
        for k in range(CALLS):
            raw = await concurrent.chat.completions.with_raw_response.create(
                model="mock-gpt", messages=asking(f"async call {k} {EMAIL}")
            )
            content = raw.parse().choices[0].message.content or ""
            answered.append((raw.headers["x-cordon-record-id"], content))

    threads = [threading.Thread(target=one_thread, args=(n,)) for n in range(THREADS)]
    threads.append(threading.Thread(target=lambda: asyncio.run(asynchronous())))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures, failures
    assert len(answered) == (THREADS + 1) * CALLS
    assert all(content.endswith("[EMAIL]") for _, content in answered)

    shutdown()  # as at exit: what was written is sealed
    state = worker(tmp_path)
    ids = Counter(record["id"] for record in _records(state))
    assert {record_id: ids[record_id] for record_id, _ in answered} == {
        record_id: 1 for record_id, _ in answered
    }
    assert _replica_seqs(state) == list(range(1, len(answered) + 1))
    _verifies(config, tmp_path)


def _verifies(config: Path, tmp_path: Path) -> None:
    key = cordon("sidecar", "key", "--config", str(config), "--sdk-worker", "0", cwd=ROOT)
    assert key.returncode == 0, key.stderr
    pinned = json.loads(key.stdout)["log_root_public_key"]
    out = tmp_path / "bundle.json"
    exported = cordon(
        "sidecar", "export", "--config", str(config), "--sdk-worker", "0", "--out", str(out),
        cwd=ROOT,
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    verified = cordon("audit", "verify", str(out), "--trust-key", pinned, cwd=ROOT)
    assert verified.returncode == 0, verified.stdout + verified.stderr


async def test_a_synchronous_client_called_inside_a_coroutine_is_governed(
    tmp_path: Path, provider_url: str
) -> None:
    """This thread already runs a loop, so the call goes to the engine's thread."""
    config = seed("sidecar.yaml", tmp_path)
    client = governed_openai(provider_url, config)
    raw = client.chat.completions.with_raw_response.create(
        model="mock-gpt", messages=asking(f"inside a coroutine, {EMAIL}")
    )
    assert raw.parse().choices[0].message.content == "echo: inside a coroutine, [EMAIL]"
    shutdown()
    assert _replica_seqs(worker(tmp_path)) == [1]


async def test_a_call_on_its_callers_thread_reaches_an_https_provider_through_the_proxy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`https://api.openai.com` through the CONNECT proxy `HTTPS_PROXY` names, its
    certificate checked against `SSL_CERT_FILE`: the engine's own reads on the caller's
    thread (blocking I/O) honour both, as the engine's loop does."""
    config = seed("sidecar.yaml", tmp_path)
    async with real_provider_names(tmp_path, monkeypatch) as providers:
        client = govern(openai.OpenAI(api_key="sk-app", max_retries=0), config=config)

        def ask_twice() -> list[str]:  # on a thread of its own: the provider runs on this loop
            texts = (f"mail {EMAIL} {n}" for n in range(2))
            answers = [
                client.chat.completions.create(model="gpt-4o", messages=asking(t)) for t in texts
            ]
            return [answer.choices[0].message.content or "" for answer in answers]

        answers = await asyncio.to_thread(ask_twice)
        shutdown()
    assert answers == [f"echo: mail [EMAIL] {n}" for n in range(2)]
    # One tunnel: the thread's connection is kept alive for its next call.
    assert providers.proxy.tunnels == ["api.openai.com:443"]
    assert providers.mock.seen_auth["authorization"] == "Bearer sk-app"


def test_threads_that_made_calls_and_ended_leave_no_descriptors_behind(
    tmp_path: Path, provider_url: str
) -> None:
    """A server that starts a thread per request: each thread's loop and its kept-alive
    connection go when the thread does."""
    config = seed("sidecar.yaml", tmp_path)
    client = governed_openai(provider_url, config)

    def one_call() -> None:
        client.chat.completions.create(model="mock-gpt", messages=asking("hello"))

    def in_threads(count: int) -> None:
        for _ in range(count):
            thread = threading.Thread(target=one_call)
            thread.start()
            thread.join(30)
        gc.collect()

    in_threads(3)  # the engine's own descriptors are all open by now
    before = len(os.listdir("/proc/self/fd"))
    in_threads(30)
    assert len(os.listdir("/proc/self/fd")) - before < 5  # a loop and a socket each: 90
    shutdown()


def test_what_an_application_scheduled_on_a_threads_loop_runs_before_the_loop_goes() -> None:
    """While a call is stepped, its thread's loop counts as running, and the application's
    objects may schedule work on it then (the SDK's `AsyncOpenAI` closes a client the
    garbage collector takes in a task): that work runs when the thread ends, it is not
    dropped unawaited."""
    closed = threading.Event()

    async def close_connections() -> None:
        await asyncio.sleep(0)
        closed.set()

    def scheduled_during_a_call() -> None:
        here._loop().create_task(close_connections())

    thread = threading.Thread(target=scheduled_during_a_call)
    thread.start()
    thread.join(10)
    gc.collect()
    assert closed.is_set()


def test_a_call_interrupted_while_its_provider_answers_ends_with_no_answer_and_no_record(
    tmp_path: Path, provider_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C in the calling thread while it reads the provider's answer: the
    interrupt reaches the application, nothing is released or recorded, and the next
    call is served and numbered as if the interrupted one had never been."""
    from gateway.upstream import blocking

    config = seed("sidecar.yaml", tmp_path)
    client = governed_openai(provider_url, config)
    real_feed = blocking.feed_until

    def interrupted(*args: Any, **kwargs: Any) -> bool:
        monkeypatch.setattr(blocking, "feed_until", real_feed)  # once
        raise KeyboardInterrupt

    monkeypatch.setattr(blocking, "feed_until", interrupted)
    with pytest.raises(KeyboardInterrupt):
        client.chat.completions.create(model="mock-gpt", messages=asking(f"first {EMAIL}"))
    answer = client.chat.completions.create(model="mock-gpt", messages=asking(f"next {EMAIL}"))
    assert answer.choices[0].message.content == "echo: next [EMAIL]"
    shutdown()
    (record,) = [r for r in _records(worker(tmp_path)) if r.get("kind") == "decision"]
    assert record["replica_seq"] == 1 and record["content"]["answer"] == "echo: next [EMAIL]"
