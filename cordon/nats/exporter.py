"""NATS server metrics named as the NATS project's own exporter names them.

Kubernetes runs prometheus-nats-exporter (`natsio/prometheus-nats-exporter`, flags
`-varz -jsz=all`) beside each server. Where that binary cannot be had (no package
registry reachable from `make run` ships it), `cordon nats exporter` serves the same
series from the same monitoring endpoints, so one set of dashboards and alerts
(deploy/grafana, deploy/prometheus) reads both.

The names and labels follow nats-io/prometheus-nats-exporter v0.20.1:

- `collector/collector.go`: every number of `/varz` (nested objects flattened with
  `_`) is a gauge `gnatsd_varz_<path>` labelled `server_id`; among the strings only
  `server_id`, `server_name`, `version`, `domain`, `leader`, `name`, `start` and
  `config_load_time` become series: a timestamp as epoch milliseconds, any other as
  a gauge of 1 labelled `value` (`parseDateString`, `newLabelGauge`).
- `collector/jsz.go` (`-jsz=all`: `/jsz?consumers=true&config=true&raft=true`, plus
  `/varz` for the server's name): `jetstream_server_*`, `jetstream_account_*`,
  `jetstream_stream_*` (sources: `jetstream_stream_source_lag`) and
  `jetstream_consumer_*`, each labelled with the server, then account, stream,
  source and consumer labels listed below. A stream's `stream_leader` is its Raft
  leader's server name, empty while it has none.
- `main.go`: `server_id` is the tag given as `tag,url`, else the URL's scheme and
  host (`-use_internal_server_name`: the server's name).

Each scrape reads the servers then (a `Collector`, not a poll loop); a server that
does not answer is left out of that scrape, as the exporter does.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = [
    "JSZ_METRICS",
    "JSZ_QUERY",
    "VARZ_GAUGES",
    "MonitoredServer",
    "NatsExporterCollector",
    "metric_names",
    "parse_server",
    "serve",
]

JSZ_QUERY = "/jsz?consumers=true&config=true&raft=true"  # the exporter's `-jsz=all`
TIMEOUT_S = 5.0  # the exporter's own HTTP client timeout

SERVER_LABELS = ("server_id", "server_name", "cluster", "domain", "meta_leader", "is_meta_leader")
ACCOUNT_LABELS = (*SERVER_LABELS, "account", "account_name", "account_id")
STREAM_LABELS = (
    *ACCOUNT_LABELS,
    "stream_name",
    "stream_leader",
    "is_stream_leader",
    "stream_raft_group",
)
CONSUMER_LABELS = (
    *STREAM_LABELS,
    "consumer_name",
    "consumer_leader",
    "is_consumer_leader",
    "consumer_desc",
)
SOURCE_LABELS = (*STREAM_LABELS, "source_name", "source_api", "source_deliver")
MIRROR_LABELS = (*STREAM_LABELS, "mirror_name", "mirror_api", "mirror_deliver")

# name -> (help, labels), as collector/jsz.go declares them.
JSZ_METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "jetstream_server_jetstream_disabled": ("JetStream disabled or not", SERVER_LABELS),
    "jetstream_server_total_streams": ("Total number of streams in JetStream", SERVER_LABELS),
    "jetstream_server_total_consumers": ("Total number of consumers in JetStream", SERVER_LABELS),
    "jetstream_server_total_messages": ("Total number of stored messages", SERVER_LABELS),
    "jetstream_server_total_message_bytes": ("Total number of bytes stored", SERVER_LABELS),
    "jetstream_server_max_memory": ("JetStream Max Memory", SERVER_LABELS),
    "jetstream_server_max_storage": ("JetStream Max Storage", SERVER_LABELS),
    "jetstream_account_max_memory": ("Account Max Memory in bytes", ACCOUNT_LABELS),
    "jetstream_account_max_storage": ("Account Max Storage in bytes", ACCOUNT_LABELS),
    "jetstream_account_storage_used": ("Bytes used by JetStream storage", ACCOUNT_LABELS),
    "jetstream_account_memory_used": ("Bytes used by JetStream memory", ACCOUNT_LABELS),
    "jetstream_stream_total_messages": ("Messages in a stream", STREAM_LABELS),
    "jetstream_stream_total_bytes": ("Stored bytes of a stream", STREAM_LABELS),
    "jetstream_stream_first_seq": ("First sequence of a stream", STREAM_LABELS),
    "jetstream_stream_last_seq": ("Last sequence of a stream", STREAM_LABELS),
    "jetstream_stream_consumer_count": ("Consumers of a stream", STREAM_LABELS),
    "jetstream_stream_subject_count": ("Subjects in a stream", STREAM_LABELS),
    "jetstream_stream_limit_bytes": ("Configured byte limit, -1 none", STREAM_LABELS),
    "jetstream_stream_limit_messages": ("Configured message limit, -1 none", STREAM_LABELS),
    "jetstream_stream_source_lag": ("Messages a stream source is behind", SOURCE_LABELS),
    "jetstream_stream_source_active_duration_ns": ("Source active duration", SOURCE_LABELS),
    "jetstream_stream_mirror_lag": ("Messages a stream mirror is behind", MIRROR_LABELS),
    "jetstream_stream_mirror_active_duration_ns": ("Mirror active duration", MIRROR_LABELS),
    "jetstream_consumer_delivered_consumer_seq": ("Consumer's delivered seq", CONSUMER_LABELS),
    "jetstream_consumer_delivered_stream_seq": ("Stream seq last delivered", CONSUMER_LABELS),
    "jetstream_consumer_last_delivery_seconds": ("Seconds since last delivery", CONSUMER_LABELS),
    "jetstream_consumer_last_ack_seconds": ("Seconds since last ack", CONSUMER_LABELS),
    "jetstream_consumer_num_ack_pending": ("Pending acks of a consumer", CONSUMER_LABELS),
    "jetstream_consumer_num_redelivered": ("Redelivered messages", CONSUMER_LABELS),
    "jetstream_consumer_num_waiting": ("Inflight pull requests", CONSUMER_LABELS),
    "jetstream_consumer_num_pending": ("Messages not yet delivered", CONSUMER_LABELS),
    "jetstream_consumer_ack_floor_stream_seq": ("Ack floor stream seq", CONSUMER_LABELS),
    "jetstream_consumer_ack_floor_consumer_seq": ("Ack floor consumer seq", CONSUMER_LABELS),
}

# The /varz numbers dashboards and alerts may name (every number is exported; these
# are the ones a test checks a real server yields, so a panel cannot ask for a typo).
VARZ_GAUGES = (
    "connections",
    "total_connections",
    "subscriptions",
    "slow_consumers",
    "in_msgs",
    "out_msgs",
    "in_bytes",
    "out_bytes",
    "mem",
    "cpu",
    "routes",
    "leafnodes",
    "jetstream_stats_storage",
    "jetstream_stats_memory",
    "jetstream_config_max_storage",
    "start",
)
# collector/collector.go: keys never exported, and the strings that are.
_SKIPPED = frozenset(
    {
        "leaf",
        "trusted_operators_claim",
        "cluster_tls_timeout",
        "cluster_cluster_port",
        "cluster_auth_timeout",
        "gateway_port",
        "gateway_auth_timeout",
        "gateway_tls_timeout",
        "gateway_connect_retries",
    }
)
_LABEL_KEYS = frozenset(
    {"server_id", "server_name", "version", "domain", "leader", "name", "start", "config_load_time"}
)


def metric_names() -> frozenset[str]:
    """Every name dashboards and alerts may use: the jsz series and the varz gauges."""
    return frozenset(JSZ_METRICS) | {f"gnatsd_varz_{key}" for key in VARZ_GAUGES}


@dataclass(frozen=True)
class MonitoredServer:
    tag: str  # the `server_id` label
    url: str  # the monitoring base URL, e.g. http://127.0.0.1:8222


def parse_server(argument: str) -> MonitoredServer:
    """`[tag,]url`, as the exporter reads its arguments: without a tag, the URL's
    scheme and host name the server."""
    tag, _, url = argument.rpartition(",")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not a monitoring URL: {url!r}")
    return MonitoredServer(tag or f"{parts.scheme}://{parts.hostname}:{parts.port}", url)


def _get(url: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            body: Any = json.load(response)
    except (OSError, ValueError):
        return None  # a server down is absent from this scrape, not an error
    return body if isinstance(body, dict) else None


def _epoch_ms(text: str) -> float | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000
    except ValueError:
        return None


def _flatten(body: dict[str, Any], path: tuple[str, ...] = ()) -> Iterator[tuple[str, str, Any]]:
    """(metric path, last key, value) for every leaf of a nested /varz object."""
    for key, value in body.items():
        here = (*path, key)
        if isinstance(value, dict):
            yield from _flatten(value, here)
        else:
            yield "_".join(here).replace("/", "_").strip("_"), key, value


def varz_families(samples: Iterable[tuple[str, dict[str, Any]]]) -> list[GaugeMetricFamily]:
    """`gnatsd_varz_*` from each server's /varz, as collector/collector.go names them."""
    families: dict[str, GaugeMetricFamily] = {}

    def family(path: str, labels: tuple[str, ...]) -> GaugeMetricFamily:
        name = f"gnatsd_varz_{path}"
        if name not in families:
            families[name] = GaugeMetricFamily(name, path, labels=list(labels))
        return families[name]

    for tag, varz in samples:
        for path, key, value in _flatten(varz):
            if path in _SKIPPED or isinstance(value, bool):
                continue
            if isinstance(value, int | float):
                family(path, ("server_id",)).add_metric([tag], float(value))
            elif isinstance(value, str) and key in _LABEL_KEYS:
                stamp = _epoch_ms(value) if "T" in value else None
                if stamp is not None:
                    family(path, ("server_id",)).add_metric([tag], stamp)
                else:
                    family(path, ("server_id", "value")).add_metric([tag, value], 1.0)
    return list(families.values())


class _JszFamilies:
    """The jetstream_* families of one scrape, filled server by server."""

    def __init__(self) -> None:
        self.families = {
            name: GaugeMetricFamily(name, text, labels=list(labels))
            for name, (text, labels) in JSZ_METRICS.items()
        }

    def add(self, name: str, labels: list[str], value: Any) -> None:
        if isinstance(value, int | float) and not isinstance(value, bool):
            self.families[name].add_metric(labels, float(value))

    def server(self, tag: str, varz: dict[str, Any], jsz: dict[str, Any]) -> None:
        name = str(varz.get("server_name", ""))
        meta = jsz.get("meta_cluster")
        cluster = str(meta.get("name", "")) if meta else ""
        leader = str(meta.get("leader", "")) if meta else ""
        is_meta = "true" if not meta or leader == name else "false"
        domain = str((jsz.get("config") or {}).get("domain", ""))
        labels = [tag, name, cluster, domain, leader, is_meta]
        config = jsz.get("config") or {}
        self.add("jetstream_server_jetstream_disabled", labels, int(bool(jsz.get("disabled"))))
        self.add("jetstream_server_max_memory", labels, config.get("max_memory"))
        self.add("jetstream_server_max_storage", labels, config.get("max_storage"))
        self.add("jetstream_server_total_streams", labels, jsz.get("streams"))
        self.add("jetstream_server_total_consumers", labels, jsz.get("consumers"))
        self.add("jetstream_server_total_messages", labels, jsz.get("messages"))
        self.add("jetstream_server_total_message_bytes", labels, jsz.get("bytes"))
        for account in jsz.get("account_details") or []:
            self.account(labels, name, account)

    def account(self, server: list[str], name: str, account: dict[str, Any]) -> None:
        acc = str(account.get("name", ""))
        labels = [*server, acc, acc, str(account.get("id", ""))]
        self.add("jetstream_account_max_storage", labels, account.get("reserved_storage"))
        self.add("jetstream_account_max_memory", labels, account.get("reserved_memory"))
        self.add("jetstream_account_storage_used", labels, account.get("storage"))
        self.add("jetstream_account_memory_used", labels, account.get("memory"))
        for stream in account.get("stream_detail") or []:
            self.stream(labels, name, stream)

    def stream(self, account: list[str], name: str, stream: dict[str, Any]) -> None:
        cluster = stream.get("cluster")
        leader = str(cluster.get("leader", "")) if cluster else ""
        is_leader = "true" if not cluster or leader == name else "false"
        labels = [*account, str(stream.get("name", "")), leader, is_leader]
        labels.append(str(stream.get("stream_raft_group", "")))
        state, config = stream.get("state") or {}, stream.get("config")
        self.add("jetstream_stream_total_messages", labels, state.get("messages"))
        self.add("jetstream_stream_total_bytes", labels, state.get("bytes"))
        self.add("jetstream_stream_first_seq", labels, state.get("first_seq"))
        self.add("jetstream_stream_last_seq", labels, state.get("last_seq"))
        self.add("jetstream_stream_consumer_count", labels, state.get("consumer_count", 0))
        self.add("jetstream_stream_subject_count", labels, state.get("num_subjects", 0))
        if config is not None:
            self.add("jetstream_stream_limit_bytes", labels, config.get("max_bytes"))
            self.add("jetstream_stream_limit_messages", labels, config.get("max_msgs"))
        for source in stream.get("sources") or []:
            self.upstream("source", labels, source)
        if stream.get("mirror"):
            self.upstream("mirror", labels, stream["mirror"])
        for consumer in stream.get("consumer_detail") or []:
            self.consumer(labels, name, consumer)

    def upstream(self, kind: str, stream: list[str], info: dict[str, Any]) -> None:
        external = info.get("external") or {}
        labels = [*stream, str(info.get("name", "")), str(external.get("api", ""))]
        labels.append(str(external.get("deliver", "")))
        self.add(f"jetstream_stream_{kind}_lag", labels, info.get("lag", 0))
        self.add(f"jetstream_stream_{kind}_active_duration_ns", labels, info.get("active", 0))

    def consumer(self, stream: list[str], name: str, consumer: dict[str, Any]) -> None:
        cluster, config = consumer.get("cluster"), consumer.get("config") or {}
        leader = str(cluster.get("leader", "")) if cluster else ""
        is_leader = "true" if not cluster or leader == name else "false"
        labels = [*stream, str(consumer.get("name", "")), leader, is_leader]
        labels.append(str(config.get("description", "")))
        delivered, floor = consumer.get("delivered") or {}, consumer.get("ack_floor") or {}
        now = _epoch_ms(str(consumer.get("ts", "")))
        for metric, part in (("last_delivery", delivered), ("last_ack", floor)):
            last = _epoch_ms(str(part.get("last_active", "")))
            if now is not None and last is not None:
                self.add(f"jetstream_consumer_{metric}_seconds", labels, (now - last) / 1000)
        prefix = "jetstream_consumer_"
        self.add(prefix + "delivered_consumer_seq", labels, delivered.get("consumer_seq", 0))
        self.add(prefix + "delivered_stream_seq", labels, delivered.get("stream_seq", 0))
        self.add(prefix + "num_ack_pending", labels, consumer.get("num_ack_pending", 0))
        self.add(prefix + "num_redelivered", labels, consumer.get("num_redelivered", 0))
        self.add(prefix + "num_waiting", labels, consumer.get("num_waiting", 0))
        self.add(prefix + "num_pending", labels, consumer.get("num_pending", 0))
        self.add(prefix + "ack_floor_stream_seq", labels, floor.get("stream_seq", 0))
        self.add(prefix + "ack_floor_consumer_seq", labels, floor.get("consumer_seq", 0))


class NatsExporterCollector(Collector):
    """Reads every server's /varz and /jsz when Prometheus scrapes."""

    def __init__(self, servers: Iterable[MonitoredServer]) -> None:
        self.servers = tuple(servers)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        varz: list[tuple[str, dict[str, Any]]] = []
        jetstream = _JszFamilies()
        for server in self.servers:
            body = _get(server.url.rstrip("/") + "/varz")
            if body is None:
                continue
            varz.append((server.tag, body))
            jsz = _get(server.url.rstrip("/") + JSZ_QUERY)
            if jsz is not None:
                jetstream.server(server.tag, body, jsz)
        yield from varz_families(varz)
        yield from (f for f in jetstream.families.values() if f.samples)


def serve(servers: Iterable[MonitoredServer], host: str, port: int) -> threading.Event:
    """Serve /metrics for `servers` on host:port (a daemon thread); set the returned
    event to let the caller's wait end."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NatsExporterCollector(servers))
    start_http_server(port, addr=host, registry=registry)
    return threading.Event()
