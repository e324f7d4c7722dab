"""Helpers the tests share: calling a gateway, polling, and reading verified records
from a region."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import nats.js.errors
import openai
from nats.aio.client import Client as NATS

from cordon.log.enrolment import Keyring
from cordon.nats import Endpoint, subjects
from cordon_dev.stack import DevStack

T = TypeVar("T")


async def nats_as(endpoint: Any, **options: Any) -> NATS:
    """Connect as a role, given its endpoints.json entry (URL and nkey seed file)."""
    return await Endpoint.from_settings(endpoint).connect(**options)


async def stream_messages(js: Any, stream: str, first: int, last: int) -> list[Any]:
    """Messages `first`..`last` of `stream`, in order: the gets are sent many at a time
    (one at a time, a long stream takes seconds to read)."""
    found: list[Any] = []
    for start in range(first, last + 1, 500):
        seqs = range(start, min(last, start + 499) + 1)
        found += await asyncio.gather(*(js.get_msg(stream, seq) for seq in seqs))
    return found


def bearer(endpoints: dict[str, Any], role: str = "auditor") -> dict[str, str]:
    """The Authorization header of `role`'s dev token (endpoints.json `tokens`)."""
    return {"authorization": f"Bearer {endpoints['tokens'][role]}"}


def authed_get(
    endpoints: dict[str, Any], url: str, role: str = "auditor", **kwargs: Any
) -> httpx.Response:
    """GET as `role`: the audit APIs and the central view want a token."""
    return httpx.get(url, headers=bearer(endpoints, role), **kwargs)


def central_get(
    endpoints: dict[str, Any], path: str, role: str = "auditor", **kwargs: Any
) -> httpx.Response:
    """GET `path` of the central view (the aggregator) as `role`."""
    return authed_get(endpoints, endpoints["aggregator"] + path, role, **kwargs)


def audit_get(endpoints: dict[str, Any], region: str, path: str, **kwargs: Any) -> httpx.Response:
    """GET `path` of `region`'s audit API as an auditor."""
    return authed_get(endpoints, endpoints["audit_apis"][region] + path, **kwargs)


def policy_status(gateway: str, admin_token: str) -> dict[str, Any]:
    """A replica's /v1/cordon/policy, read with an admin token."""
    response = httpx.get(
        gateway + "/v1/cordon/policy", headers={"authorization": f"Bearer {admin_token}"}
    )
    response.raise_for_status()
    status: dict[str, Any] = response.json()
    return status


def central_summary(
    endpoints: dict[str, Any], record_id: str, region: str | None = None
) -> dict[str, Any] | None:
    """The central view's summary of `record_id`, paging through each region's summaries
    (the view returns at most 1,000 at a time)."""
    for name in [region] if region else list(endpoints["gateways"]):
        after = 0
        while True:
            items = authed_get(
                endpoints,
                endpoints["aggregator"] + "/v1/summaries",
                params={"region": name, "after_seq": after, "limit": 1000},
            ).json()["items"]
            found = next((s for s in items if s["id"] == record_id), None)
            if found is not None:
                return found
            if len(items) < 1000:
                break
            after = items[-1]["stream_seq"]
    return None


async def asgi_body(receive: Callable[[], Any]) -> bytes:
    """A request's whole body, as an ASGI app of a test (a stand-in server) reads it."""
    body = b""
    while True:
        event = await receive()
        body += event.get("body", b"")
        if not event.get("more_body"):
            return body


def unique_word() -> str:
    """A unique word without digits, for a test to find its call again: a run of digits
    can be a card number the baseline pack redacts, and the echo would not match."""
    return uuid.uuid4().hex.translate(str.maketrans("0123456789", "ghijklmnop"))


def _one_message(model: str, prompt: str) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": prompt}]}


def chat(
    gateway: str,
    key: str,
    prompt: str = "hello",
    *,
    model: str = "mock-gpt",
    body: Any = None,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
    **kwargs: Any,
) -> httpx.Response:
    """One chat completion posted over plain HTTP to `gateway` (a replica's base URL) as the
    holder of `key` (an API key or a delegation token): the response as it came, whatever
    its status, for the test to read its status, JSON and `x-cordon-record-*` headers.

    `body` replaces the usual one-user-message request; `raw` sends bytes as they are
    (JSON no encoder would write); `kwargs` go to `httpx.post`."""
    if body is None:
        body = _one_message(model, prompt)
    payload: dict[str, Any] = {"content": raw} if raw is not None else {"json": body}
    return httpx.post(
        gateway + "/v1/chat/completions",
        headers={"authorization": f"Bearer {key}", **(headers or {})},
        timeout=timeout,
        **payload,
        **kwargs,
    )


def chat_stream(
    gateway: str,
    key: str,
    prompt: str = "hello",
    *,
    model: str = "mock-gpt",
    body: Any = None,
    timeout: float = 30.0,
) -> AbstractContextManager[httpx.Response]:
    """`chat`, streamed: a context manager giving the response once its headers are in,
    for the test to read its events as they come (`iter_lines`) or all at once (`read`)."""
    if body is None:
        body = {**_one_message(model, prompt), "stream": True}
    return httpx.stream(
        "POST",
        gateway + "/v1/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {key}"},
        timeout=timeout,
    )


def gateway_sdk(gateway: str, key: str, **options: Any) -> openai.OpenAI:
    """The OpenAI SDK pointed at `gateway` as `key`'s holder, as an application uses it.
    It never retries: a refusal must reach the test, not be retried away."""
    return openai.OpenAI(base_url=gateway + "/v1", api_key=key, max_retries=0, **options)


def sdk_chat(
    gateway: str, key: str, prompt: str = "hello", *, model: str = "mock-gpt", **options: Any
) -> Any:
    """One chat completion through the OpenAI SDK (see `gateway_sdk`): the raw response,
    for its `x-cordon-record-*` headers and `.parse()`; a refusal raises the SDK's error."""
    return gateway_sdk(gateway, key, **options).chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": prompt}]
    )


def eventually(probe: Callable[[], T | None], timeout: float = 15.0, interval: float = 0.05) -> T:
    """Poll `probe` until it returns something truthy; fail after `timeout` seconds (a
    generous deadline: it costs nothing when the condition holds, and a loaded machine
    may take a few seconds to carry a pack or a record across processes)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


async def _keyring(js: Any, endpoints: dict[str, Any], region: str) -> Keyring:
    """The region's keyring: its regional key and every key it enrolled in RECORDS."""
    keyring = Keyring(region, bytes.fromhex(endpoints["regional_public_keys"][region]))
    subject = subjects.enrolment_subject(region)
    next_seq = 1
    while True:
        try:
            enrolment = await js.get_msg(
                subjects.RECORDS_STREAM, next_seq, subject=subject, next=True
            )
        except nats.js.errors.NotFoundError:
            return keyring
        keyring.add_enrolment(enrolment.data or b"")
        next_seq = (enrolment.seq or next_seq) + 1


async def stored(
    endpoints: dict[str, Any], region: str, seq: int
) -> tuple[bytes, dict[str, Any], Keyring]:
    """The raw stored record at `seq`, its verified payload, and the keyring that verified it."""
    nc = await nats_as(endpoints["nats"]["regions"][region]["audit"]["provision"])
    try:
        js = nc.jetstream()
        keyring = await _keyring(js, endpoints, region)
        stored = (await js.get_msg(subjects.RECORDS_STREAM, seq)).data or b""
    finally:
        await nc.close()
    return stored, keyring.verify_record(stored), keyring


async def stored_record(endpoints: dict[str, Any], region: str, seq: int) -> dict[str, Any]:
    return (await stored(endpoints, region, seq))[1]


async def find_record(
    endpoints: dict[str, Any], region: str, record_id: str
) -> dict[str, Any] | None:
    """The verified record with this id among the region's newest 200, if it is there."""
    for record in await recent_records(endpoints, region, 200):
        if record.get("id") == record_id:
            return record
    return None


def publish_pack(
    endpoints: dict[str, Any], path: Any, *extra: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """`cordon policy publish` as a policy owner runs it, signed with the dev owner key."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "cordon_cli",
            "policy",
            "publish",
            str(path),
            "--nats-url",
            endpoints["nats"]["central"]["publisher"]["url"],
            "--nats-seed",
            endpoints["nats"]["central"]["publisher"]["nkey_seed_file"],
            "--key",
            endpoints["policy_owner_key"],
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=check,
    )


def published_revision(result: subprocess.CompletedProcess[str]) -> int:
    return int(result.stdout.split("revision ")[1].split()[0])


def cordon_policy_status(
    endpoints: dict[str, Any], *extra: str
) -> subprocess.CompletedProcess[str]:
    """`cordon policy status --json` with the publisher's identity, over every region."""
    publisher = endpoints["nats"]["central"]["publisher"]
    identity = ["--nats-url", publisher["url"], "--nats-seed", publisher["nkey_seed_file"]]
    regions = ["--regions", ",".join(endpoints["gateways"])]
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "cordon_cli",
            "policy",
            "status",
            "--json",
            *identity,
            *regions,
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def enforce(stack: DevStack, url: str, pack_yaml: str, directory: Path) -> int:
    """Publish `pack_yaml` as the dev policy owner and wait until the replica at `url`
    enforces it; returns its revision."""
    assert stack.topology is not None
    publisher = stack.topology.central_endpoint("publisher").to_settings()
    endpoints = {
        "nats": {"central": {"publisher": publisher}},
        "policy_owner_key": str(stack.policy_owner_key),
    }
    path = directory / "pack.yaml"
    path.write_text(pack_yaml)
    revision = published_revision(publish_pack(endpoints, path))
    eventually(lambda: policy_status(url, stack.tokens["admin"])["active_revision"] == revision)
    return revision


async def recent_records(
    endpoints: dict[str, Any], region: str, count: int = 50
) -> list[dict[str, Any]]:
    """The region's newest `count` records (enrolments left out), verified, newest first."""
    nc = await nats_as(endpoints["nats"]["regions"][region]["audit"]["provision"])
    try:
        js = nc.jetstream()
        last = (await js.stream_info(subjects.RECORDS_STREAM)).state.last_seq
        keyring = await _keyring(js, endpoints, region)
        messages = await stream_messages(
            js, subjects.RECORDS_STREAM, max(1, last - count + 1), last
        )
    finally:
        await nc.close()
    return [
        keyring.verify_record(m.data or b"")
        for m in reversed(messages)
        if not str(m.subject).startswith("cordon.enrol.")
    ]


async def replica_records(
    endpoints: dict[str, Any], region: str, replica: str
) -> list[dict[str, Any]]:
    """Every record `replica` committed in `region`, verified, in stream order."""
    nc = await nats_as(endpoints["nats"]["regions"][region]["audit"]["provision"])
    subject = subjects.record_subject(region, replica)
    found: list[dict[str, Any]] = []
    try:
        js = nc.jetstream()
        keyring = await _keyring(js, endpoints, region)
        seq = 1
        while True:
            try:
                message = await js.get_msg(subjects.RECORDS_STREAM, seq, subject=subject, next=True)
            except nats.js.errors.NotFoundError:
                return found
            found.append(keyring.verify_record(message.data or b""))
            seq = (message.seq or seq) + 1
    finally:
        await nc.close()


def gaps_in(records: list[dict[str, Any]]) -> list[int]:
    """The `replica_seq` numbers below the highest that no record or void holds."""
    numbers = {r["replica_seq"] for r in records}
    return [n for n in range(1, max(numbers, default=0) + 1) if n not in numbers]


def pack_document(name: str = "default", marker: str = "x", **extra: Any) -> dict[str, Any]:
    """A small valid pack; `marker` lands in a redaction pattern name-free spot (the
    version), so each call can tell its revisions apart."""
    return {
        "pack": {"name": name, "version": f"1.0.0-{marker}", "enabled": True},
        "policies": [
            {"name": "pii", "type": "output_filter", "action": "redact", "patterns": ["email"]}
        ],
        **extra,
    }


async def publish_document(
    stack: DevStack, document: dict[str, Any], revision: int, regions: tuple[str, ...] = ("*",)
) -> None:
    """Sign `document` as the dev policy owner and put it on POLICY, in-process (no CLI
    start-up per publish: for drills that publish many revisions quickly)."""
    from cordon.log.keys import SigningKey
    from cordon.packs import signing
    from replicator.publish import publish_signed

    assert stack.topology is not None
    statement = signing.statement_bytes(
        document, document["pack"]["name"], revision, int(time.time()) + 86_400, regions
    )
    signed = signing.sign(statement, [SigningKey.load(stack.policy_owner_key)])
    await publish_signed(stack.topology.central_endpoint("publisher"), signed)


async def latest_revision_at_central(stack: DevStack, name: str = "default") -> int:
    from replicator.publish import latest_revision

    assert stack.topology is not None
    return await latest_revision(stack.topology.central_endpoint("publisher"), name)


async def regional_pack_history(stack: DevStack, region: str, name: str = "default") -> list[int]:
    """The revisions written into `region`'s policy bucket, oldest first (the bucket
    keeps the last ten writes), read as the region's gateway identity."""
    from cordon.packs import signing
    from gateway import nats_backplane

    assert stack.topology is not None
    nc = await stack.topology.regions[region].endpoint("xr", "gateway").connect()
    try:
        kv = await nc.jetstream().key_value(subjects.POLICY_BUCKET)
        key = subjects.pack_key(name)
        # Not kv.history(): nats.py's watcher can put its end-of-history marker ahead of
        # the history, and history() then finds no keys. Read up to the key's last write.
        last = await nats_backplane._last_write(kv, key)
        watcher = await kv.watch(key, include_history=True)
        entries: list[Any] = []
        while last and (not entries or entries[-1].revision < last):
            entry = await watcher.updates(timeout=10)  # type: ignore[no-untyped-call]
            if entry is not None:
                entries.append(entry)
        await watcher.stop()  # type: ignore[no-untyped-call]
    finally:
        await nc.close()
    return [int(signing.claimed(e.value or b"")["revision"]) for e in entries if e.value]


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in a Prometheus text page, or None."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    head = f"{name}{{{wanted}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(head + " "):
            return float(line.split()[-1])
    return None
