"""The long-lived parts of one replica, wired together: its region (records, packs,
reports), the provider client, the signing key, the packs it enforces, its clock.

`Runtime` takes its collaborators as arguments, so a gateway can be assembled with
other ones (a local log, an in-process engine, the fast test lane's in-memory region:
`cordon_dev.inprocess`); `build_runtime` makes the production set from settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from cordon.errors import ConfigError, PackError, RecordCommitError, RegionUnreachableError
from cordon.log.enrolment import load_signer
from cordon.log.keys import SigningKey
from cordon.packs import Pack, signing
from gateway import metrics, records, telemetry
from gateway.backplane import Backplane
from gateway.identity import Authenticator
from gateway.identity.delegation import DelegationVerifier
from gateway.identity.workload import verifier_for
from gateway.policy.activation import REPORT_EVERY_S, PackState, applied_report
from gateway.records.recorder import Recorder
from gateway.records.spool import Spool
from gateway.settings import GatewaySettings
from gateway.telemetry import Tracing
from gateway.upstream import UpstreamClient, classifier, providers
from gateway.upstream.client import Proxies
from gateway.upstream.egress import EgressPolicy
from gateway.upstream.routing import Breakers, Router

__all__ = ["Clock", "Runtime", "build_runtime"]

log = logging.getLogger("cordon.gateway")
Clock = Callable[[], float]  # seconds since the epoch (pack expiry, ages)


def build_runtime(settings: GatewaySettings) -> Runtime:
    """The production replica: the region's NATS, the provider client, the enrolled key."""
    from gateway.nats_backplane import NatsBackplane  # only replicas load the NATS client

    key, enrolment = load_signer(settings.signing_key_file, settings.enrolment_file)
    backplane = NatsBackplane(
        settings.audit_nats,
        settings.xr_nats,
        settings.region,
        settings.replica,
        settings.commit_timeout_s,
    )
    return Runtime(settings, backplane, key, enrolment)


class Runtime:
    def __init__(
        self,
        settings: GatewaySettings,
        backplane: Backplane,
        key: SigningKey,
        enrolment: bytes,
        upstream: UpstreamClient | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.settings = settings
        self.backplane = backplane
        self.clock = clock
        self.in_flight = 0  # model calls being served (settings.max_concurrent_calls)
        # The in-process SDK serves calls on its callers' threads as well as its loop's.
        self._slots = threading.Lock()
        resource = {"cordon.region": settings.region, "cordon.replica": settings.replica}
        self.tracing = Tracing(telemetry.enabled_by(os.environ), resource)
        self.key, self.enrolment = key, enrolment
        verifier = (
            DelegationVerifier(settings.delegation_issuers) if settings.delegation_issuers else None
        )
        self.workloads = verifier_for(
            settings.workload_issuers, lambda: self.packs.active.workloads
        )
        self.auth = Authenticator(settings.api_keys, verifier, self.workloads)
        self.breakers = Breakers(settings.breaker_threshold, settings.breaker_cooldown_s)
        self.egress = EgressPolicy(
            settings.allowed_upstreams, settings.allow_loopback_upstreams, settings.allowed_env
        )
        self.pack_env = self.egress.environment(os.environ)  # all a pack may read
        try:
            self.default_targets = self._targets({"providers": {"targets": list(settings.targets)}})
        except PackError as exc:
            raise ConfigError(f"gateway targets: {exc}") from exc
        try:
            trusted = signing.trust_root(settings.pack_trust)
        except PackError as exc:
            raise ConfigError(f"pack_trust: {exc}") from exc
        if not trusted:
            log.warning("no pack_trust configured: only the built-in default pack can be enforced")
        self.packs = PackState(
            settings.pack_name, settings.region, settings.state_dir, self.route, trusted
        )
        self.upstream = upstream or self._upstream_client()
        self.spool = Spool(settings.state_dir / "fail-open.spool", settings.spool_max_bytes)
        self._tasks: list[asyncio.Task[None]] = []
        self._report_due = asyncio.Event()  # an applied report should go out now
        self.recorder: Recorder | None = None
        # Where a sidecar reads its policy and whether that works (the status endpoint).
        self.source_status: Callable[[], dict[str, Any]] | None = None

    def _upstream_client(self) -> UpstreamClient:
        ca_bundle = str(self.settings.ca_bundle) if self.settings.ca_bundle else None
        proxies = Proxies.from_environ(os.environ)
        return UpstreamClient(self.egress.check_address, ca_bundle, proxies)

    def route(self, pack: Pack) -> Router:
        """The routing a pack asks for; the gateway's own targets if it names none. A
        provider or classifier the egress policy refuses refuses the pack."""
        # In-process (`place: sdk`) each call goes to the governed client's own provider
        # with its own key (`Call.pinned`): the pack's targets say only which providers
        # the pack knows, in which regions, for which models; their keys are not read.
        targets = self._targets(pack.document, with_secrets=self.settings.place != "sdk")
        if pack.classifier is not None:
            # an unset variable or a refused address refuses the pack now
            self.egress.check_url(classifier.resolve_url(pack.classifier, self.pack_env))
        balance = providers.balance_of(pack.document)
        return Router(targets or self.default_targets, self.breakers, balance)

    def _targets(
        self, document: Mapping[str, Any], with_secrets: bool = True
    ) -> tuple[providers.Target, ...]:
        store = self.settings.secret_store_dir
        targets = providers.targets_from(document, self.pack_env, store, with_secrets)
        for target in targets:  # a secret that cannot be used refuses the pack here
            for url in (target.base_url, *_credential_urls(target)):
                self.egress.check_url(url)
        return targets

    def _pack_age(self) -> float:
        published = self.packs.active.signed_at
        return max(0.0, self.clock() - published) if published else 0.0

    async def start(self) -> None:
        """Come up with the last good pack even if NATS is away; connect as soon as it is back.

        Until then the replica is not ready and every call fails closed (503).
        """
        self.packs.load_last_good()
        if self.settings.place != "sdk":  # it serves /metrics (gateway.metrics)
            metrics.on()
        metrics.PACK_REVISION.set(self.packs.active.revision)
        metrics.PACK_AGE.set_function(self._pack_age)
        metrics.PACK_EXPIRED.set_function(lambda: float(self.packs.active.expired(self.clock())))
        metrics.PACK_DISABLED.set_function(lambda: float(not self.packs.active.enabled))
        await self.upstream.start()
        self._tasks.append(asyncio.create_task(self._connect_then_watch()))
        if self.workloads is not None:  # keeps the workload issuers' JWKS URLs fresh
            self._tasks.append(asyncio.create_task(self.workloads.run()))

    async def _connect_then_watch(self) -> None:
        while True:
            try:
                await self._connect()
                break
            except (RegionUnreachableError, RecordCommitError) as exc:
                log.warning("region not reachable yet (%s); retrying", exc)
                await self.backplane.close()
                await asyncio.sleep(0.5)
        self._tasks.append(asyncio.create_task(self._ship_spool()))
        self._tasks.append(asyncio.create_task(self._report_applied_forever()))
        await self._follow_packs()

    async def _ship_spool(self) -> None:
        """Whenever NATS is back and the spool holds records, send them, in order, and the
        voids owed for spent numbers; forever: whatever goes wrong is logged and counted,
        and shipping is tried again."""
        metrics.SPOOL_DEPTH.set_function(lambda: self.spool.depth)
        metrics.SPOOL_OLDEST.set_function(self._spool_oldest_age)
        metrics.SPOOL_FILL.set_function(lambda: self.spool.fill_ratio)
        metrics.SPOOL_TORN.inc(self.spool.torn)
        while True:
            await self._commit_owed_voids()
            if self.spool.depth and self.ready and self.recorder is not None:
                try:
                    shipped = await self.recorder.ship(self.spool)
                    log.info("shipped %d spooled records", shipped)
                except RecordCommitError as exc:
                    metrics.SPOOL_SHIP_FAILURES.inc()
                    log.warning("spooled records not shipped yet: %s", exc)
                except Exception:
                    metrics.SPOOL_SHIP_FAILURES.inc()
                    log.exception("shipping the fail-open spool failed; trying again")
            await asyncio.sleep(0.5)

    async def _commit_owed_voids(self) -> None:
        """Numbers spent without a record get their voids even if no call comes after."""
        recorder = self.recorder
        if recorder is None or not recorder.owes_voids or not recorder.connected:
            return
        try:
            await recorder.commit_voids()
        except RecordCommitError as exc:
            log.warning("owed void records not committed yet: %s", exc)

    def _spool_oldest_age(self) -> float:
        oldest = self.spool.oldest_ms
        return max(0.0, time.time() - oldest / 1000) if oldest else 0.0

    async def _connect(self) -> None:
        sink = await self.backplane.connect()
        recorder = Recorder(
            sink,
            self.settings.region,
            self.settings.replica,
            self.key,
            self.settings.max_record_bytes,
        )
        await recorder.resume(self.spool)
        await self.backplane.enrol(self.key.key_id, self.enrolment)
        self.recorder = recorder

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.upstream.close()
        await self.backplane.close()
        await asyncio.to_thread(self.tracing.shutdown)  # its export blocks: not on the loop

    def admit(self) -> bool:
        """Take a place for one more call in flight; False if all
        `max_concurrent_calls` are taken (`leave` gives it back)."""
        with self._slots:
            if self.in_flight >= self.settings.max_concurrent_calls:
                return False
            self.in_flight += 1
            return True

    def leave(self) -> None:
        with self._slots:
            self.in_flight -= 1

    async def commit(self, record: dict[str, Any], fail_open: bool) -> int | None:
        """Commit one call's record: its stream sequence, or None if it was spooled
        (`fail_open` and the stream away). `RecordCommitError` if neither was possible."""
        recorder = self.recorder
        committed = time.perf_counter()
        try:
            if recorder is None:
                raise RecordCommitError("not connected to the regional NATS yet")
            seq = await recorder.commit(record, self.spool if fail_open else None)
        except RecordCommitError:
            metrics.COMMIT_FAILURES.inc()
            raise
        metrics.COMMIT.observe(time.perf_counter() - committed)
        if seq is None:  # spooled: the answer goes out ahead of its record's commit
            metrics.FAIL_OPEN_ANSWERS.inc()
        return seq

    def can_record(self, fail_open: bool) -> bool:
        """Whether a record could be committed (or spooled, `fail_open`) now."""
        recorder = self.recorder
        return (recorder is not None and recorder.connected) or fail_open

    @property
    def ready(self) -> bool:
        return self.backplane.ready and self.recorder is not None

    async def _follow_packs(self) -> None:
        """Offer every revision of the replica's pack as it comes; report what is
        enforced whenever the watch (re)starts and after each change."""
        async for update in self.backplane.pack_updates(self.packs.pack_name):
            if update.refused is not None:  # unreadable before it could be offered
                self.packs.refuse(update.refused, update.origin or {})
                outcome: str = "rejected"
            elif update.value is None:  # a (re)started watch
                self._report_due.set()
                continue
            else:
                outcome = self.packs.offer(update.value, update.replayed, update.origin)
            if outcome == "activated":
                metrics.PACK_REVISION.set(self.packs.active.revision)
                self._report_due.set()
                await self.retention_shortfall()  # logs what is missing
            elif outcome == "rejected":
                metrics.PACK_REJECTIONS.inc()
                await self._record_rejection()
                self._report_due.set()  # the rejection shows in status

    async def _report_applied_forever(self) -> None:
        """Alive, not stale: the replicator hears from this replica every few seconds
        while its pack watch is live (a dead watch must show as stale), at once after
        a change or a (re)started watch, and again shortly after a report that failed."""
        while True:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for swallows a cancel that
            # lands as the report falls due, and `stop()` then waited on this forever
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(REPORT_EVERY_S):
                    await self._report_due.wait()
            self._report_due.clear()
            if self.backplane.watching and not await self._report_applied():
                await asyncio.sleep(0.5)
                self._report_due.set()

    async def retention_shortfall(self) -> dict[str, Any] | None:
        """How RECORDS falls short of the retention the active pack asks, read from the
        stream each time; None when it keeps records at least that long.

        A replica may not change a stream (its NATS identity cannot: a runtime role
        that could lengthen retention could shorten it); provisioning raises it
        (`cordon nats provision`), longer only."""
        wanted = self.packs.active.retention_days
        if wanted is None:
            return None
        if not self.backplane.ready:  # unknown is not fine: say it could not be read
            error = "the region's records stream is not reachable"
            return {"records_days": None, "pack_days": wanted, "error": error}
        try:
            kept = await self.backplane.records_retention_days()
        except Exception as exc:  # the region's own error, whichever backplane it is
            return {"records_days": None, "pack_days": wanted, "error": str(exc)}
        if kept is None or kept >= wanted:  # None: kept forever
            return None
        log.warning(
            "RECORDS keeps records %s days, the pack asks %s: run `cordon nats provision`",
            kept,
            wanted,
        )
        return {"records_days": kept, "pack_days": wanted}

    async def _record_rejection(self) -> None:
        """Leave a record of the refused pack in the region's stream, like any decision."""
        rejection = self.packs.last_rejection
        if rejection is None or self.recorder is None:
            return
        record = records.pack_rejection(
            region=self.settings.region,
            replica=self.settings.replica,
            active=self.packs.active,
            claimed=rejection.claimed,
            reason=rejection.reason,
        )
        try:
            await self.recorder.commit(record)
        except RecordCommitError as exc:
            log.error("record of a pack rejection not committed: %s", exc)

    async def _report_applied(self) -> bool:
        """Tell the replicator what this replica enforces; whether that was sent."""
        report = applied_report(self.packs, self.settings.replica)
        try:
            await self.backplane.report_applied(self.settings.replica, report)
        except Exception as exc:  # the region's own error, whichever backplane it is
            log.warning("applied report not sent (trying again shortly): %s", exc)
            return False
        return True


def _credential_urls(target: providers.Target) -> tuple[str, ...]:
    """`translated.credential_urls`, loaded only for a target whose wire is translated
    (the others have no credentials that send the gateway elsewhere)."""
    if target.wire not in providers.TRANSLATED:
        return ()
    from gateway.upstream import translated

    return translated.credential_urls(target)
